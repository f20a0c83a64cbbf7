"""The perf gate (`--perf`): a timed stage on a GPU backend that is slower than the checked-in
baseline for this adapter, by more than the noise measured for it, fails, naming the kernels whose
GPU time grew.

Each timed stage (an entry point called alone: clip, unet, vae, ...) runs RUNS more times after its
accuracy case passed; the page's KernelProfiler (web/lib/profile.js) times every dispatch of each
call. Times are judged by their minimum over the runs (other work on the machine only ever adds
time); the noise of a time is how far its median sits above that minimum, relative to it.

A profiled stage is judged by its GPU time, the sum of its kernels' times in a call: on an H100 the
tiny UNet's wall time (25-51 ms) is mostly the host recording ~700 dispatches and moved 20-50 %
between processes while the kernel sums moved little (benchmarks/results/gpu-2026-12-07-warmup-*).
It fails when its GPU time is more than max(STAGE_MARGIN, NOISE_FACTOR x noise) above the
baseline's, when its wall time is more than max(WALL_MARGIN, NOISE_FACTOR x noise) above (more
dispatches, a host-side regression), or when one kernel is more than max(KERNEL_MARGIN, NOISE_FACTOR
x noise) above its own baseline and the time it added is at least KERNEL_SHARE of the stage's GPU
time. A measurement without kernel times is judged by its wall time with STAGE_MARGIN.

Baselines are conformance/perf/<adapter>.json (one per GPU model, or SwiftShader), written by
`wsd-conformance perf-baseline` from the summaries of one or more --perf runs: with several (each
its own process) every time keeps the lowest minimum, and its noise includes how far the runs'
minimums spread, the between-process noise one run cannot see. Kept with the versions they were
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
WALL_MARGIN = 0.5
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
    dispatch}) as times: the stage's wall time, its GPU time (every dispatch of a call summed) and
    each kernel's summed over its dispatches in a call."""
    per_kernel: dict[str, list[float]] = {}
    runs = bench.get("kernel_runs") or []
    for run in runs:
        totals: dict[str, float] = {}
        for dispatch in run:
            totals[dispatch["kernel"]] = totals.get(dispatch["kernel"], 0.0) + dispatch["ms"]
        for name, ms in totals.items():
            per_kernel.setdefault(name, []).append(ms)
    kernels = {name: times(v) for name, v in sorted(per_kernel.items()) if len(v) == len(runs)}
    gpu = {"gpu": times([sum(d["ms"] for d in run) for run in runs])} if runs and all(runs) else {}
    return {"runs": len(bench["ms"]), **times(bench["ms"]), **gpu, "kernels": kernels}


def _allowed(margin: float, *noises: float) -> float:
    return max(margin, NOISE_FACTOR * max(noises))


def _over(now: dict, then: dict, margin: float) -> tuple[float, float, bool]:
    """(ratio, allowed growth, beyond it) of one time against its baseline."""
    ratio = now["min_ms"] / then["min_ms"]
    allowed = _allowed(margin, now["noise"], then["noise"])
    return ratio, allowed, ratio > 1 + allowed


def _verdict(now: dict, then: dict, margin: float) -> tuple[bool, str]:
    ratio, allowed, beyond = _over(now, then, margin)
    return (
        beyond,
        f"{ratio:.2f}x its baseline (min {now['min_ms']:.2f} ms vs {then['min_ms']:.2f} ms, allowed +{allowed:.0%})",
    )


def judge(measured: dict, base: dict) -> tuple[bool, str, list[dict]]:
    """(slower, message, kernels that grew, slowest growth first) of a measurement against its baseline."""
    by_gpu = bool(measured.get("gpu") and base.get("gpu"))
    stage_now, stage_then = (measured["gpu"], base["gpu"]) if by_gpu else (measured, base)
    slower, text = _verdict(stage_now, stage_then, STAGE_MARGIN)
    text = f"{'GPU' if by_gpu else 'wall'} time {text}"
    if by_gpu:
        wall_slower, wall_text = _verdict(measured, base, WALL_MARGIN)
        slower = slower or wall_slower
        text += f"; wall time {wall_text}"
    grew = []
    for name, now in measured["kernels"].items():
        then = base.get("kernels", {}).get(name)
        if not then or not then["min_ms"]:
            continue
        k_ratio, _, beyond_noise = _over(now, then, KERNEL_MARGIN)
        if beyond_noise and now["min_ms"] - then["min_ms"] >= KERNEL_SHARE * stage_then["min_ms"]:
            grew.append(
                {"kernel": name, "ratio": round(k_ratio, 2), "baseline_ms": then["min_ms"], "ms": now["min_ms"]}
            )
    grew.sort(key=lambda g: -(g["ms"] - g["baseline_ms"]))
    if grew:
        named = (f"{g['kernel']} {g['ratio']:.2f}x ({g['baseline_ms']:.3f} -> {g['ms']:.3f} ms)" for g in grew[:3])
        text += f"; kernels slower: {'; '.join(named)}"
    return slower or bool(grew), text, grew


def merge(measurements: list[dict]) -> dict:
    """One stage measured in several processes as one baseline entry: each time's lowest minimum,
    its highest median, and a noise that covers both each run's own and the spread of the runs'
    minimums. Kernels are kept where every run timed them."""

    def joined(parts: list[dict]) -> dict:
        low = min(p["min_ms"] for p in parts)
        spread = (max(p["min_ms"] for p in parts) - low) / low if low else 0.0
        noise = max(spread, *(p["noise"] for p in parts))
        return {"min_ms": low, "median_ms": max(p["median_ms"] for p in parts), "noise": round(noise, 4)}

    out = {"runs": sum(m["runs"] for m in measurements), **joined(measurements)}
    if all(m.get("gpu") for m in measurements):
        out["gpu"] = joined([m["gpu"] for m in measurements])
    names = set.intersection(*(set(m["kernels"]) for m in measurements))
    out["kernels"] = {n: joined([m["kernels"][n] for m in measurements]) for n in sorted(names)}
    return out


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


def baseline_from(summaries: list[dict]) -> dict:
    """A baseline from the summary.json of one or more --perf runs of one adapter: every timed stage
    they measured (a stage some run lacks is kept from the runs that have it)."""
    rows = [r for summary in summaries for r in summary.get("stages", []) if r.get("perf")]
    if not rows:
        raise PerfError("the summary has no perf measurements: run the gate with --perf on a GPU backend")
    devices = sorted({r["perf"]["device"] for r in rows})
    if len(devices) > 1:
        raise PerfError(
            f"the summaries measured several adapters ({', '.join(devices)}): one baseline is one adapter's"
        )
    measured: dict[str, list[dict]] = {}
    for r in rows:
        measured.setdefault(stage_key(r), []).append(r["perf"]["measured"])
    stages = {key: merge(parts) for key, parts in sorted(measured.items())}
    return {
        "device": devices[0],
        "adapter": rows[0].get("adapter", ""),
        "versions": summaries[0].get("versions", {}),
        "processes": len(summaries),
        "runs": max(s["runs"] for s in stages.values()),
        "stages": stages,
    }


def record(summaries: dict | list[dict], out: Path | None = None) -> tuple[dict, Path]:
    """Write the baseline of one or more --perf runs' summaries (default:
    conformance/perf/<adapter>.json, its folder made); returns it and where it went."""
    baseline = baseline_from(summaries if isinstance(summaries, list) else [summaries])
    out = out or PERF_DIR / f"{baseline['device']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(baseline, indent=1) + "\n")
    return baseline, out
