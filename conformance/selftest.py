"""`wsd-conformance selftest`: inject each fault of conformance/faults.py and check that the
stage it breaks fails (and, for a kernel fault, that localization names the kernel).

A clean baseline runs first: a harness that fails on a clean build proves nothing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from conformance.faults import FAULTS
from conformance.harness import Harness, all_cases


def run(echo=print, out_dir: Path | None = None) -> dict:
    started = time.perf_counter()
    clean = Harness(backends=("webgpu", "native"), echo=echo, **({"out_dir": out_dir} if out_dir else {}))
    cases = all_cases(clean.model)
    results = []
    try:
        echo("[selftest] baseline: every case on a clean webgpu build")
        baseline = [clean.run(c, "webgpu") for c in cases]
        bad = [f"{r['stage']}: {r['status']} {r['message']}" for r in baseline if r["status"] != "pass"]
        if bad:
            return {"baseline": "fail", "baseline_failures": bad, "caught": 0, "total": len(FAULTS), "faults": []}
        work = Path(tempfile.mkdtemp(prefix="wsd-selftest-"))
        for fault in FAULTS:
            echo(f"[selftest] {fault.name}: {fault.what}")
            faulted = fault.apply(clean.dist("webgpu"), work)
            h = Harness(
                dists={"webgpu": faulted, "native": clean.dist("native")},
                browser=clean._browser,
                golden=clean.golden,
                out_dir=work / fault.name / "report",
                echo=echo,
            )
            h._ctx, h._refs = clean.ctx, clean._refs  # same inputs and references as the baseline
            h._backends["native"] = clean.backend("native")
            rows = [h.run(c, "webgpu") for c in cases]
            failed = {r["stage"]: r for r in rows if r["status"] == "fail"}
            errors = [f"{r['stage']}: {r['message']}" for r in rows if r["status"] == "error"]
            hit = failed.get(fault.expect) or next((r for s, r in failed.items() if s.startswith(fault.expect)), None)
            caught = hit is not None
            kernel = hit["localized_kernel"] if hit else None
            if fault.kernel:
                from wsd import manifest

                want = next(iter(manifest.load(faulted).get("injected_faults", {}).values()), None)
                caught = caught and kernel == want
            results.append(
                {
                    "fault": fault.name,
                    "what": fault.what,
                    "expect": fault.expect,
                    "caught": caught,
                    "failed_stages": sorted(failed),
                    "localized_kernel": kernel,
                    "errors": errors,
                    "message": hit["message"] if hit else "",
                }
            )
            echo(f"[selftest] {fault.name}: {'caught' if caught else 'MISSED'} (failed: {sorted(failed)})")
            h._backends.pop("native", None)
    finally:
        clean.close()
    caught = sum(r["caught"] for r in results)
    return {
        "baseline": "pass",
        "caught": caught,
        "total": len(FAULTS),
        "catch_rate": caught / len(FAULTS),
        "faults": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
