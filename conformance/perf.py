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

GPU and kernel times are judged at the process's pace: the median of its kernels' ratios to their
baselines (where a stage has at least PACE_KERNELS of them). On an H100 every one of the tiny UNet's
210 kernels ran 1.45x slower in one gate process than in the two before it, same build (the GPU's
clock state; benchmarks/results/gpu-2026-12-07-perf-sd15-tiny.txt): judged raw, that clean process
failed. One kernel or a few slowing down leave the median where it is; a slowdown of every kernel
alike cannot be told from the clocks within one process, so it passes unless the pace itself is
beyond PACE_LIMIT (then the stage fails saying so; `bisect --perf` over fresh processes tells them
apart). The clocks also moved between the calls of one process: a kernel's times are taken at the
pace of the stage's fastest call (`summarize`), and a baseline's at its fastest process's (`merge`),
so a kernel's noise is its own, not the clocks' (measured raw, the conv the slow-kernel fault doubles
had a baseline noise of 0.45-0.72 and the doubled conv passed).

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
KERNEL_SHARE = 0.003  # of the stage's GPU time: the slow-kernel fault on the tiny UNet added 0.4 % at pace
NOISE_FACTOR = 3.0
PACE_KERNELS = 8  # kernels a stage needs before their median ratio is taken as the process's pace
PACE_LIMIT = 2.0  # a pace slower than this fails: more than the clock states seen (1.45x)


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
    each kernel's summed over its dispatches in a call, at the pace of the fastest call: a call's
    kernel times are divided by its GPU time over the fastest call's. The H100's clocks moved
    between calls of one process, every kernel alike, and a kernel's noise measured that and
    allowed it 2-3x (a doubled conv passed, benchmarks/results/gpu-2026-12-07-perf-sd15-tiny.txt)."""
    per_kernel: dict[str, list[float]] = {}
    runs = bench.get("kernel_runs") or []
    sums = [sum(d["ms"] for d in run) for run in runs]
    fastest = min(sums) if sums and all(sums) else 0.0
    for run, total in zip(runs, sums, strict=True):
        pace = total / fastest if fastest else 1.0
        totals: dict[str, float] = {}
        for dispatch in run:
            totals[dispatch["kernel"]] = totals.get(dispatch["kernel"], 0.0) + dispatch["ms"]
        for name, ms in totals.items():
            per_kernel.setdefault(name, []).append(ms / pace)
    kernels = {name: times(v) for name, v in sorted(per_kernel.items()) if len(v) == len(runs)}
    gpu = {"gpu": times(sums)} if fastest else {}
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


def pace(measured: dict, base: dict) -> float:
    """The median of the kernels' ratios to their baselines: how fast this process ran everything
    (1.0 where the stage has fewer than PACE_KERNELS kernels in both)."""
    ratios = [
        now["min_ms"] / then["min_ms"]
        for name, now in measured.get("kernels", {}).items()
        if (then := base.get("kernels", {}).get(name)) and then["min_ms"]
    ]
    return statistics.median(ratios) if len(ratios) >= PACE_KERNELS else 1.0


def _at_pace(t: dict, factor: float) -> dict:
    return {**t, "min_ms": round(t["min_ms"] / factor, 4), "median_ms": round(t["median_ms"] / factor, 4)}


def judge(measured: dict, base: dict) -> tuple[bool, str, list[dict]]:
    """(slower, message, kernels that grew, slowest growth first) of a measurement against its baseline."""
    by_gpu = bool(measured.get("gpu") and base.get("gpu"))
    factor = pace(measured, base) if by_gpu else 1.0
    stage_now, stage_then = (_at_pace(measured["gpu"], factor), base["gpu"]) if by_gpu else (measured, base)
    slower, text = _verdict(stage_now, stage_then, STAGE_MARGIN)
    text = f"{'GPU' if by_gpu else 'wall'} time {text}"
    if factor != 1.0:
        text += f" at this process's pace (its kernels' median ratio {factor:.2f}x)"
    if factor > PACE_LIMIT:
        slower = True
        text += f"; every kernel ran {factor:.2f}x slower than its baseline (over {PACE_LIMIT:.1f}x: not clock state)"
    if by_gpu:
        wall_slower, wall_text = _verdict(measured, base, WALL_MARGIN)
        slower = slower or wall_slower
        text += f"; wall time {wall_text}"
    grew = []
    for name, raw in measured["kernels"].items():
        then = base.get("kernels", {}).get(name)
        if not then or not then["min_ms"]:
            continue
        now = _at_pace(raw, factor)
        k_ratio, _, beyond_noise = _over(now, then, KERNEL_MARGIN)
        if beyond_noise and now["min_ms"] - then["min_ms"] >= KERNEL_SHARE * stage_then["min_ms"]:
            grew.append(
                {
                    "kernel": name,
                    "ratio": round(k_ratio, 2),
                    "baseline_ms": then["min_ms"],
                    "ms": now["min_ms"],
                }
            )
    grew.sort(key=lambda g: -(g["ms"] - g["baseline_ms"]))
    if grew:
        named = (f"{g['kernel']} {g['ratio']:.2f}x ({g['baseline_ms']:.3f} -> {g['ms']:.3f} ms)" for g in grew[:3])
        text += f"; kernels slower{' (at pace)' if factor != 1.0 else ''}: {'; '.join(named)}"
    return slower or bool(grew), text, grew


def merge(measurements: list[dict]) -> dict:
    """One stage measured in several processes as one baseline entry: each time's lowest minimum,
    its highest median, and a noise that covers both each run's own and the spread of the runs'
    minimums. Kernels are kept where every run timed them, each process's at the pace of the
    fastest one (scaled by its GPU time over the fastest's, as within a process)."""

    def joined(parts: list[dict]) -> dict:
        low = min(p["min_ms"] for p in parts)
        spread = (max(p["min_ms"] for p in parts) - low) / low if low else 0.0
        noise = max(spread, *(p["noise"] for p in parts))
        return {"min_ms": low, "median_ms": max(p["median_ms"] for p in parts), "noise": round(noise, 4)}

    out = {"runs": sum(m["runs"] for m in measurements), **joined(measurements)}
    paces = [1.0] * len(measurements)
    if all(m.get("gpu") for m in measurements):
        out["gpu"] = joined([m["gpu"] for m in measurements])
        paces = [m["gpu"]["min_ms"] / out["gpu"]["min_ms"] for m in measurements]
    names = set.intersection(*(set(m["kernels"]) for m in measurements))
    out["kernels"] = {
        n: joined([_at_pace(m["kernels"][n], p) for m, p in zip(measurements, paces, strict=True)])
        for n in sorted(names)
    }
    return out


def build_of(manifest: dict) -> dict:
    """What a baseline says about the build it timed: its library's digest (any compiler or
    weights-layout change moves it), the TVM it was compiled with, its dtype and kernel path."""
    library = manifest.get("library", "")
    return {
        "library_sha256": manifest.get("files", {}).get(library, {}).get("sha256", "")[:16],
        "tvm": manifest.get("versions", {}).get("tvm"),
        "dtype": manifest.get("dtype"),
        "subgroup_matrix": bool(manifest.get("build_options", {}).get("subgroup_matrix")),
    }


def other_build(then: dict | None, now: dict) -> str:
    """A note for the verdict where the baseline timed another build (the usual case for a pull
    request: its change is what is judged); empty where it timed this one or says nothing."""
    if not then or then == now:
        return ""
    moved = [f"{k} {then.get(k)} -> {now.get(k)}" for k in now if then.get(k) != now.get(k)]
    return f"; the baseline timed another build ({', '.join(moved)})"


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
    builds: dict[str, dict] = {}
    for r in rows:
        measured.setdefault(stage_key(r), []).append(r["perf"]["measured"])
        if r["perf"].get("build"):
            builds.setdefault(stage_key(r), r["perf"]["build"])
    stages = {key: merge(parts) for key, parts in sorted(measured.items())}
    for key, build in builds.items():
        stages[key]["build"] = build
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
