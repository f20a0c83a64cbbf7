"""`wsd-conformance selftest`: inject each fault of conformance/faults.py and check that the
stage it breaks fails (and, for a kernel fault, that the failure names the kernel).

A clean baseline runs first: a harness that fails on a clean build proves nothing. With
`expected_only`, each fault runs only the cases of the stage that must catch it (the fast
subset CI runs); otherwise every case runs, so the report shows what else a fault breaks.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from conformance import perf
from conformance.faults import FAULTS, Fault, get, injected_kernel
from conformance.harness import Harness
from conformance.stages import all_cases


def _cases_for(fault: Fault, cases: list, expected_only: bool) -> list:
    if not expected_only:
        return cases
    if fault.expect == "load":  # the model must refuse to open: one case shows it
        return cases[:1]
    return [c for c in cases if f"{c.stage.name}/{c.variant}".startswith(fault.expect)]


def verdict(fault: Fault, rows: list[dict], want_kernel: str | None) -> dict:
    """Whether `rows` (the faulted build's results) catch `fault`, and where."""
    failed = {r["stage"]: r for r in rows if r["status"] == "fail"}
    errors = [f"{r['stage']}: {r['message']}" for r in rows if r["status"] == "error"]
    kernel = None
    if fault.expect == "load":
        # Every case must error at opening, the message naming the kernel whose pipeline broke.
        hit = rows[0] if rows and all(r["status"] == "error" for r in rows) else None
        if hit and want_kernel and f"kernel {want_kernel} " in hit["message"]:
            kernel = want_kernel
        caught = hit is not None and "WSD_SHADER" in hit["message"]
        stage = "load"
    else:
        hit = failed.get(fault.expect) or next((r for s, r in failed.items() if s.startswith(fault.expect)), None)
        caught = hit is not None
        kernel = hit["localized_kernel"] if hit else None
        stage = hit["stage"] if hit else None
    if fault.kernel:
        caught = caught and kernel == want_kernel
    return {
        "fault": fault.name,
        "what": fault.what,
        "expect": fault.expect,
        "caught": caught,
        "caught_by": stage if caught else None,
        "failed_stages": sorted(failed),
        "kernel": want_kernel,
        "localized_kernel": kernel,
        "errors": errors[:3],
        "message": hit["message"] if hit else "",
    }


def run(
    echo=print,
    out_dir: Path | None = None,
    names: list[str] | None = None,
    expected_only: bool = False,
    model: str = "sd15-tiny",
) -> dict:
    """Every fault that applies to `model`'s family (or the named ones) against its clean build."""
    from wsd import models

    started = time.perf_counter()
    family = models.get(model).family
    faults = [get(n) for n in names] if names else [f for f in FAULTS if f.applies_to(family)]
    wrong = [f.name for f in faults if not f.applies_to(family)]
    if wrong:
        raise ValueError(f"fault(s) {wrong} do not apply to {model} (family {family})")
    opts = {"out_dir": out_dir} if out_dir else {}
    timed = any(f.perf for f in faults)  # a perf fault is judged against the clean build's own times
    clean = Harness(model=model, backends=("webgpu", "native"), echo=echo, perf=timed, **opts)
    cases = all_cases(clean.model)
    wanted = {c.id: c for f in faults for c in _cases_for(f, cases, expected_only)}
    results = []
    try:
        echo(f"[selftest] baseline: {len(wanted)} case(s) on a clean webgpu build")
        baseline = [clean.run(c, "webgpu") for c in wanted.values()]
        bad = [f"{r['stage']}: {r['status']} {r['message']}" for r in baseline if r["status"] != "pass"]
        if bad:
            return {"baseline": "fail", "baseline_failures": bad, "caught": 0, "total": len(faults), "faults": []}
        work = Path(tempfile.mkdtemp(prefix="wsd-selftest-"))
        times = work / "perf-baseline.json"
        if timed:
            perf.record({"stages": baseline}, times)
        for fault in faults:
            echo(f"[selftest] {fault.name}: {fault.what}")
            with fault.patched():  # a fault in shared Python is in this process's code too
                faulted = fault.make(clean.dist("webgpu"), work, narrow=expected_only)
                h = Harness(
                    model=model,
                    dists={"webgpu": faulted}
                    if fault.shared_code
                    else {"webgpu": faulted, "native": clean.dist("native")},
                    inject=(fault.inject,) if fault.shared_code else (),  # its native build carries it too
                    browser=clean.candidates.browser,
                    golden=clean.golden,
                    out_dir=work / fault.name / "report",
                    echo=echo,
                    accept_drift=fault.shared_code,  # judged by the comparison, not by changed inputs
                    perf=fault.perf,
                    perf_baseline=times if fault.perf else None,
                )
                if not fault.shared_code:
                    h.share_references(clean)  # same inputs and references as the baseline
                    h.candidates.use("native", clean.backend("native"))
                rows = [h.run(c, "webgpu") for c in _cases_for(fault, cases, expected_only)]
            row = verdict(fault, rows, injected_kernel(faulted))
            results.append(row)
            kernel = f", kernel {row['localized_kernel']}" if row["localized_kernel"] else ""
            echo(f"[selftest] {fault.name}: {'caught' if row['caught'] else 'MISSED'} by {row['caught_by']}{kernel}")
    finally:
        clean.close()
    caught = sum(r["caught"] for r in results)
    return {
        "baseline": "pass",
        "caught": caught,
        "total": len(faults),
        "catch_rate": caught / len(faults),
        "expected_only": expected_only,
        "faults": results,
        "wall_s": round(time.perf_counter() - started, 1),
    }
