"""The perf gate's arithmetic (conformance/perf.py): times from the page's bench answer, the
verdict against a baseline, baselines from a summary, and `diff`/`perf-baseline` on them."""

from __future__ import annotations

import json

import pytest

from conformance import diff, perf
from conformance.cli import main as conformance_main
from conformance.faults import _twice


def bench_answer(stage_ms, kernel_ms: dict[str, list[float]]) -> dict:
    """What web/lib/probes.js bench returns: wall ms per call, and per profiled call every dispatch."""
    runs = len(next(iter(kernel_ms.values())))
    return {
        "ms": stage_ms,
        "kernel_runs": [[{"kernel": k, "ms": v[i]} for k, v in kernel_ms.items()] for i in range(runs)],
    }


def measured(stage_ms, **kernels) -> dict:
    return perf.summarize(bench_answer(stage_ms, kernels))


def test_times_are_the_minimum_and_the_spread_above_it():
    t = perf.times([10.0, 12.0, 11.0, 30.0, 10.5])
    assert t == {"min_ms": 10.0, "median_ms": 11.0, "noise": 0.1}


def test_a_kernel_dispatched_twice_in_a_call_is_summed():
    bench = {"ms": [5.0, 5.0], "kernel_runs": [[{"kernel": "a", "ms": 1.0}, {"kernel": "a", "ms": 2.0}]] * 2}
    assert perf.summarize(bench)["kernels"]["a"]["min_ms"] == 3.0


def test_the_same_times_pass_and_a_stage_with_slower_kernels_fails():
    base = measured([100, 101, 102], conv=[10, 10, 10], softmax=[50, 50, 51])
    slower, text, grew = perf.judge(base, base)
    assert not slower and grew == [] and text.startswith("GPU time 1.00x")
    slower, text, _ = perf.judge(measured([100, 101, 102], conv=[13, 13, 13], softmax=[65, 65, 65]), base)
    assert slower and "GPU time 1.30x its baseline (min 78.00 ms vs 60.00 ms, allowed +15%)" in text


def test_wall_time_is_a_looser_second_check():
    """The host's share of a call moves between processes (an H100 ran the tiny UNet at 25-51 ms
    wall with the same kernels): 30 % more wall time at the same GPU time passes, 60 % fails."""
    base = measured([100, 101, 102], conv=[10, 10, 10], softmax=[50, 50, 51])
    slower, text, _ = perf.judge(measured([130, 131, 132], conv=[10, 10, 10], softmax=[50, 50, 51]), base)
    assert not slower and "wall time 1.30x" in text
    slower, text, _ = perf.judge(measured([160, 161, 162], conv=[10, 10, 10], softmax=[50, 50, 51]), base)
    assert slower and "wall time 1.60x its baseline (min 160.00 ms vs 100.00 ms, allowed +50%)" in text


def test_without_kernel_times_the_wall_time_is_judged():
    base = perf.summarize({"ms": [100, 101, 102]})
    assert "gpu" not in base
    slower, text, _ = perf.judge(perf.summarize({"ms": [130, 131, 132]}), base)
    assert slower and text.startswith("wall time 1.30x its baseline") and "allowed +15%" in text


def test_noise_measured_for_a_stage_widens_what_it_may_move():
    noisy = measured([100, 101, 102], conv=[10, 12.5, 13])  # GPU median 25 % above the minimum
    slower, text, _ = perf.judge(measured([100, 101, 102], conv=[13, 13.1, 13.2]), noisy)
    assert not slower and "GPU time 1.30x" in text and "allowed +75%" in text


def test_a_kernel_twice_as_slow_is_named_even_where_the_stage_hides_it():
    base = measured([1000, 1001, 1002], conv=[10, 10.2, 10.1], softmax=[500, 500, 501])
    now = measured([1005, 1006, 1010], conv=[20, 20.1, 20.2], softmax=[495, 496, 497])
    slower, text, grew = perf.judge(now, base)
    assert slower and [g["kernel"] for g in grew] == ["conv"]
    assert "kernels slower: conv 2.00x (10.000 -> 20.000 ms)" in text


def test_a_kernel_too_small_to_matter_or_too_noisy_is_not_named():
    base = measured([1000, 1001, 1002], big=[900, 900, 900], tiny=[1, 1, 1], noisy=[10, 14, 15])
    now = measured([1000, 1001, 1002], big=[900, 900, 900], tiny=[2, 2, 2], noisy=[20, 21, 21])
    slower, _, grew = perf.judge(now, base)  # tiny: +1 ms < 0.3 % of 911 ms of GPU time
    assert not slower and grew == []  # noisy: 2x, but its baseline spread allows 3 x 40 %


def kernels(n=10, ms=1.0, factor=1.0, **changed) -> dict:
    """n kernels of `ms` each (three runs), all `factor` times slower, some changed on top."""
    times = {f"k{i}": [ms * factor, ms * factor * 1.01, ms * factor * 1.02] for i in range(n)}
    times.update({k: [v * factor, v * factor * 1.01, v * factor * 1.02] for k, v in changed.items()})
    return times


def test_every_kernel_slower_alike_is_the_process_pace_not_a_regression():
    """Measured on an H100: every kernel of a stage 1.45x slower in one clean process (clock state)."""
    base = measured([20, 21, 22], **kernels())
    slower, text, grew = perf.judge(measured([21, 22, 23], **kernels(factor=1.45)), base)
    assert not slower and grew == [], text
    assert "GPU time 1.00x" in text and "median ratio 1.45x" in text


def test_one_kernel_slower_at_a_slow_pace_is_still_named():
    base = measured([20, 21, 22], **kernels())
    now = measured([21, 22, 23], **kernels(factor=1.3, k3=2.0))  # k3: 2x its own, in a 1.3x process
    slower, text, grew = perf.judge(now, base)
    assert slower and [g["kernel"] for g in grew] == ["k3"], text
    assert "kernels slower (at pace): k3 2.00x" in text


def test_a_pace_beyond_any_clock_state_fails():
    base = measured([20, 21, 22], **kernels())
    slower, text, _ = perf.judge(measured([21, 22, 23], **kernels(factor=2.5)), base)
    assert slower and "every kernel ran 2.50x slower" in text


def test_kernel_times_are_at_the_pace_of_the_fastest_call():
    """The H100's clocks moved between calls of one process, every kernel alike: the kernels' noise
    then measured the clocks (40-70 %) and a doubled conv passed within it."""
    calls = kernels(factor=1.0)
    ramped = {k: [v[0], v[0] * 1.6, v[0] * 1.3] for k, v in calls.items()}  # calls 2, 3: slower clocks
    summary = measured([20, 30, 26], **ramped)
    assert summary["gpu"]["noise"] == 0.3  # the stage's GPU time still says how the calls moved
    assert all(k == {"min_ms": 1.0, "median_ms": 1.0, "noise": 0.0} for k in summary["kernels"].values())


def test_a_doubled_kernel_is_named_through_clock_ramps():
    ramp = (1.0, 1.7, 1.6)  # as the H100 baseline's conv: median 60-70 % above its minimum
    base = measured([20, 30, 26], **{k: [v[0] * f for f in ramp] for k, v in kernels().items()})
    slow = kernels(k3=2.0)
    now = measured([22, 31, 27], **{k: [v[0] * f * 1.2 for f in ramp] for k, v in slow.items()})
    slower, text, grew = perf.judge(now, base)
    assert slower and [g["kernel"] for g in grew] == ["k3"], text


def test_few_kernels_set_no_pace():
    base = measured([100, 101, 102], conv=[10, 10, 10], softmax=[50, 50, 51])
    assert perf.pace(measured([100, 101, 102], conv=[20, 20, 20], softmax=[100, 100, 100]), base) == 1.0


def row(stage="unet/t981-g7.5", device="nvidia-h100-80gb-hbm3", ms=100.0):
    return {
        "model": "sd15",
        "stage": stage,
        "backend": "dawn",
        "status": "pass",
        "adapter": "nvidia  NVIDIA: 580",
        "ms": {"candidate": ms},
        "perf": {"device": device, "measured": measured([ms, ms + 1, ms + 2], conv=[ms / 10] * 3)},
    }


def test_a_baseline_holds_each_timed_stage_of_one_adapter():
    base = perf.baseline_from([{"versions": {"tvm": "0.27"}, "stages": [row(), row("vae"), {"stage": "tokenizer"}]}])
    assert base["device"] == "nvidia-h100-80gb-hbm3" and base["runs"] == 3 and base["versions"] == {"tvm": "0.27"}
    assert list(base["stages"]) == ["dawn:sd15/unet/t981-g7.5", "dawn:sd15/vae"] and base["processes"] == 1
    with pytest.raises(perf.PerfError, match="no perf measurements"):
        perf.baseline_from([{"stages": [{"stage": "tokenizer"}]}])
    with pytest.raises(perf.PerfError, match="several adapters"):
        perf.baseline_from([{"stages": [row()]}, {"stages": [row("vae", device="google-swiftshader")]}])


def test_a_baseline_from_several_processes_counts_their_spread_as_noise():
    """Two gate processes on one GPU: the lower minimum is kept, and the 20 % between the two
    runs' minimums becomes the noise (each run alone measured 2 %), so 1.5x is then within it."""
    first = {"stages": [row(ms=100.0)]}
    second = {"stages": [row(ms=120.0)]}
    stage = perf.baseline_from([first, second])["stages"]["dawn:sd15/unet/t981-g7.5"]
    assert stage["min_ms"] == 100.0 and stage["noise"] == 0.2 and stage["runs"] == 6
    assert stage["gpu"] == {"min_ms": 10.0, "median_ms": 12.0, "noise": 0.2}
    # the kernel at the faster process's pace: the 1.2x between processes was every kernel alike
    assert stage["kernels"]["conv"] == {"min_ms": 10.0, "median_ms": 10.0, "noise": 0.0}
    slower, _, _ = perf.judge(row(ms=150.0)["perf"]["measured"], stage)
    assert not slower  # 1.5x GPU time against 1 + 3 x 20 %


def test_an_adapter_names_its_baseline_file():
    h100 = {"vendor": "nvidia", "architecture": "", "device": "nvidia-h100-80gb-hbm3", "description": "NVIDIA: 580"}
    assert perf.device_key(h100) == "nvidia-h100-80gb-hbm3"
    assert perf.device_key({"vendor": "intel", "architecture": "gen-12lp"}) == "intel-gen-12lp"
    assert perf.device_key({"vendor": "google", "architecture": "swiftshader"}) == "google-swiftshader"
    assert perf.device_key({}) == "unknown-adapter"
    assert perf.default_path({"vendor": "google", "architecture": "swiftshader"}).name == "google-swiftshader.json"


def test_a_missing_or_broken_baseline_says_how_to_make_one(tmp_path):
    with pytest.raises(perf.PerfError, match="wsd-conformance perf-baseline"):
        perf.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(perf.PerfError, match="not JSON"):
        perf.load(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(perf.PerfError, match="no 'stages'"):
        perf.load(tmp_path / "empty.json")


def test_perf_baseline_writes_what_the_gate_reads(tmp_path, capsys):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"versions": {}, "stages": [row()]}))
    out = tmp_path / "b.json"
    assert conformance_main(["perf-baseline", str(summary), "--out", str(out)]) == 0
    assert perf.load(out)["stages"]["dawn:sd15/unet/t981-g7.5"]["min_ms"] == 100.0
    summary.write_text(json.dumps({"versions": {}, "stages": [{"stage": "clip", "status": "pass"}]}))
    assert conformance_main(["perf-baseline", str(summary), "--out", str(out)]) == 2
    assert "run the gate with --perf" in capsys.readouterr().err


def test_diff_shows_the_stage_and_the_kernels_that_moved():
    a = {"versions": {}, "stages": [row(ms=100.0)]}
    b = {"versions": {}, "stages": [row(ms=200.0)]}
    out = diff.text(a, b, diff.compare(a, b))
    assert "stage: 100 -> 200 ms (2.00x)" in out and "kernel conv: 10 -> 20 ms (2.00x)" in out
    assert "stage gpu: 10 -> 20 ms (2.00x)" in out  # the kernels' sum per call
    page = diff.html_page(a, b, diff.compare(a, b), ("a", "b"))
    assert "kernel conv: 10 &rarr; 20 ms (2.00x)" in page


def test_a_slow_kernel_runs_its_body_twice_over():
    code = (
        "@group(0) @binding(0) var<storage, read_write> out_ptr : array<f32>;\n"
        "@compute @workgroup_size(64, 1, 1)\n"
        "fn k_kernel(\n  @builtin(local_invocation_id) t : vec3<u32>\n) {\n"
        "  if (t.x > 9u) { return; }\n  out_ptr[t.x] = 1.0f;\n}\n"
    )
    twice = _twice(code, "k_kernel")
    assert "for (var wsd_twice = 0u; wsd_twice < 2u; wsd_twice++) {\n  if (t.x > 9u) { return; }" in twice
    assert twice.endswith("  out_ptr[t.x] = 1.0f;\n}\n}\n") and twice.count("{") == twice.count("}")


@pytest.mark.parametrize("path", sorted(perf.PERF_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_a_checked_in_baseline_passes_itself_and_names_a_doubled_kernel(path):
    """Each GPU model's checked-in baseline (measured on it) loads, judges its own times a pass,
    and fails the same stage with its costliest conv twice as slow, naming it: the H100's full
    UNet hides 0.5 ms in 125 ms of GPU time, so only the kernel check can say it."""
    base = perf.load(path)
    assert base["device"] == path.stem and base["stages"]
    for key, stage in base["stages"].items():
        assert stage["gpu"] and stage["kernels"], key
        assert perf.judge(stage, stage)[0] is False, key
    unets = {k: s for k, s in base["stages"].items() if "/unet/" in k}
    for key, stage in unets.items():
        conv = max((k for k in stage["kernels"] if "conv2d" in k), key=lambda k: stage["kernels"][k]["min_ms"])
        kernels = {**stage["kernels"], conv: perf._at_pace(stage["kernels"][conv], 0.5)}
        slower, text, grew = perf.judge({**stage, "kernels": kernels}, stage)
        assert slower and grew[0]["kernel"] == conv, (key, text)


def test_a_baseline_says_which_build_it_timed_and_the_verdict_notes_another():
    manifest = {
        "library": "sd15.wasm",
        "files": {"sd15.wasm": {"sha256": "ab" * 32}},
        "versions": {"tvm": "0.27.0.post1"},
        "dtype": "float16",
        "build_options": {"subgroup_matrix": True},
    }
    build = perf.build_of(manifest)
    assert build == {"library_sha256": "ab" * 8, "tvm": "0.27.0.post1", "dtype": "float16", "subgroup_matrix": True}
    timed = row()
    timed["perf"]["build"] = build
    stage = perf.baseline_from([{"stages": [timed]}])["stages"]["dawn:sd15/unet/t981-g7.5"]
    assert stage["build"] == build
    assert perf.other_build(stage["build"], build) == "" and perf.other_build(None, build) == ""
    rebuilt = {**build, "library_sha256": "cd" * 8}
    assert perf.other_build(stage["build"], rebuilt) == (
        f"; the baseline timed another build (library_sha256 {'ab' * 8} -> {'cd' * 8})"
    )
