"""The perf gate (`--perf`): a timed stage on a GPU backend that is slower than the checked-in
baseline for this adapter, by more than the noise measured for it, fails, naming the kernels whose
GPU time grew.

Each timed stage (an entry point called alone: clip, unet, vae, ...) runs RUNS more times after its
accuracy case passed; the page's KernelProfiler (web/lib/profile.js) times every dispatch of each
call. Times are judged by their minimum over the runs (other work on the machine only ever adds
time); the noise of a time is how far its median sits above that minimum, relative to it. A stage
fails when its minimum is more than max(STAGE_MARGIN, NOISE_FACTOR x noise) above the baseline's,
or when one of its kernels is more than max(KERNEL_MARGIN, NOISE_FACTOR x noise) above its own
baseline and the time it added is at least KERNEL_SHARE of the stage (on SwiftShader the tiny UNet's
costliest conv is 0.7 % of its 1.3 s: softmax and attention dominate there).

Baselines are conformance/perf/<adapter>.json (one per GPU model, or SwiftShader), written from a
--perf run's summary by `wsd-conformance perf-baseline` and kept with the versions they were
measured on, like golden/.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

PERF_DIR = Path(__file__).resolve().parent / "perf"
RUNS = 5
# Calls made before timing, for at least this long: an idle GPU clocks up under load (an H100 ran
# the tiny UNet at 41 ms per call in one gate process and 22 ms in the next without it).
WARMUP_MS = 1000
STAGE_MARGIN = 0.15
KERNEL_MARGIN = 0.5
KERNEL_SHARE = 0.005
NOISE_FACTOR = 3.0


class PerfError(Exception):
    pass


def device_key(adapter: dict) -> str:
    """The adapter as a file name: 'nvidia-h100-80gb-hbm3', 'google-swiftshader', ..."""
    vendor = adapter.get("vendor") or ""
    device = adapter.get("device") or adapter.get("architecture") or (adapter.get("description") or "").split(":")[0]
    slug = lambda text: re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")  # noqa: E731
    named = slug(device)
    key = named if vendor and named.startswith(slug(vendor)) else "-".join(filter(None, (slug(vendor), named)))
    return key or "unknown-adapter"


def default_path(adapter: dict) -> Path:
    return PERF_DIR / f"{device_key(adapter)}.json"


def times(values: list[float]) -> dict:
    """min, median and noise ((median - min) / min) of one time over the runs."""
    low, mid = min(values), statistics.median(values)
    return {"min_ms": round(low, 4), "median_ms": round(mid, 4), "noise": round((mid - low) / low, 4) if low else 0.0}


def measure(backend, entry: str, inputs, runs: int = RUNS) -> dict:
    """The stage's wall time per call and each kernel's GPU time, over `runs` calls."""
    return summarize(backend.bench(entry, inputs, runs, warmup_ms=WARMUP_MS))


def summarize(bench: dict) -> dict:
    """`bench`'s answer ({"ms": per call, "kernel_runs": per profiled call, [{kernel, ms}] per
    dispatch}) as times: the stage's, and each kernel's summed over its dispatches in a call."""
    per_kernel: dict[str, list[float]] = {}
    runs = bench.get("kernel_runs") or []
    for run in runs:
        totals: dict[str, float] = {}
        for dispatch in run:
            totals[dispatch["kernel"]] = totals.get(dispatch["kernel"], 0.0) + dispatch["ms"]
        for name, ms in totals.items():
            per_kernel.setdefault(name, []).append(ms)
    kernels = {name: times(v) for name, v in sorted(per_kernel.items()) if len(v) == len(runs)}
    return {"runs": len(bench["ms"]), **times(bench["ms"]), "kernels": kernels}


def _allowed(margin: float, *noises: float) -> float:
    return max(margin, NOISE_FACTOR * max(noises))


def judge(measured: dict, base: dict) -> tuple[bool, str, list[dict]]:
    """(slower, message, kernels that grew, slowest growth first) of a measurement against its baseline."""
    ratio = measured["min_ms"] / base["min_ms"]
    allowed = _allowed(STAGE_MARGIN, measured["noise"], base["noise"])
    grew = []
    for name, now in measured["kernels"].items():
        then = base.get("kernels", {}).get(name)
        if not then or not then["min_ms"]:
            continue
        k_ratio = now["min_ms"] / then["min_ms"]
        beyond_noise = k_ratio > 1 + _allowed(KERNEL_MARGIN, now["noise"], then["noise"])
        if beyond_noise and now["min_ms"] - then["min_ms"] >= KERNEL_SHARE * base["min_ms"]:
            grew.append(
                {"kernel": name, "ratio": round(k_ratio, 2), "baseline_ms": then["min_ms"], "ms": now["min_ms"]}
            )
    grew.sort(key=lambda g: -(g["ms"] - g["baseline_ms"]))
    slower = ratio > 1 + allowed or bool(grew)
    now_ms, then_ms = measured["min_ms"], base["min_ms"]
    text = f"{ratio:.2f}x its baseline (min {now_ms:.2f} ms vs {then_ms:.2f} ms, allowed +{allowed:.0%})"
    if grew:
        named = (f"{g['kernel']} {g['ratio']:.2f}x ({g['baseline_ms']:.3f} -> {g['ms']:.3f} ms)" for g in grew[:3])
        text += f"; kernels slower: {'; '.join(named)}"
    return slower, text, grew


def stage_key(row: dict) -> str:
    return f"{row['backend']}:{row['model']}/{row['stage']}"


def load(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PerfError(
            f"no perf baseline {path}: record one with `wsd-conformance perf-baseline SUMMARY` from a --perf run"
        ) from None
    except json.JSONDecodeError as exc:
        raise PerfError(f"perf baseline {path} is not JSON ({exc}); record it again") from None
    if not isinstance(data.get("stages"), dict):
        raise PerfError(f"perf baseline {path} has no 'stages' table; record it again")
    return data


def baseline_from(summary: dict) -> dict:
    """A baseline from a --perf run's summary.json: every timed stage it measured (one adapter's)."""
    rows = [r for r in summary.get("stages", []) if r.get("perf")]
    if not rows:
        raise PerfError("the summary has no perf measurements: run the gate with --perf on a GPU backend")
    devices = sorted({r["perf"]["device"] for r in rows})
    if len(devices) > 1:
        raise PerfError(f"the summary measured several adapters ({', '.join(devices)}): one baseline is one adapter's")
    stages = {stage_key(r): r["perf"]["measured"] for r in rows}
    return {
        "device": devices[0],
        "adapter": rows[0].get("adapter", ""),
        "versions": summary.get("versions", {}),
        "runs": max(s["runs"] for s in stages.values()),
        "stages": dict(sorted(stages.items())),
    }


def record(summary: dict, out: Path | None = None) -> tuple[dict, Path]:
    """Write the baseline of a --perf run's summary (default: conformance/perf/<adapter>.json, its
    folder made); returns it and where it went."""
    baseline = baseline_from(summary)
    out = out or PERF_DIR / f"{baseline['device']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(baseline, indent=1) + "\n")
    return baseline, out
