"""The bisect's search and environments' pins, with injected version-dependent faults."""

from __future__ import annotations

import json

import pytest

from conformance import bisect


def gate_with(faults: dict[str, set[str]], drift: set[str] = frozenset()):
    """A stand-in for the gate on one release: `faults` maps a stage to the releases it fails on."""
    calls = []

    def evaluate(version):
        calls.append(version)
        out = {}
        for stage in ("clip [webgpu]", "unet [webgpu]", "vae [native]"):
            if version in faults.get(stage, ()):
                why = "reference drift beyond the stage's drift bound" if version in drift else "rel_l2 0.3 > 1e-4"
                out[stage] = ("fail", why)
            else:
                out[stage] = ("pass", "")
        return out

    return evaluate, calls


RELEASES = ["0.25.0.post1", "0.26.0", "0.27.0", "0.27.0.post1"]


def by_stage(results):
    return {r.stage: r for r in results}


def test_names_the_first_bad_release_and_a_good_bad_good_history():
    evaluate, calls = gate_with({"unet [webgpu]": {"0.26.0"}, "clip [webgpu]": {"0.27.0", "0.27.0.post1"}})
    got = by_stage(bisect.search(RELEASES, evaluate, echo=lambda *_: None))
    assert (got["unet [webgpu]"].last_good, got["unet [webgpu]"].first_bad) == ("0.25.0.post1", "0.26.0")
    assert [s for _, s in got["unet [webgpu]"].history] == ["pass", "fail", "pass", "pass"]  # good -> bad -> good
    assert (got["clip [webgpu]"].last_good, got["clip [webgpu]"].first_bad) == ("0.26.0", "0.27.0")
    assert got["clip [webgpu]"].kind == "candidate broke" and "rel_l2" in got["clip [webgpu]"].message
    assert got["vae [native]"].first_bad is None
    assert sorted(calls) == sorted(RELEASES)  # each release's gate ran once


def test_many_releases_are_binary_searched_per_stage():
    versions = [f"1.{i}.0" for i in range(20)]
    evaluate, calls = gate_with({"unet [webgpu]": set(versions[13:])})
    got = by_stage(bisect.search(versions, evaluate, echo=lambda *_: None))
    assert (got["unet [webgpu]"].last_good, got["unet [webgpu]"].first_bad) == ("1.12.0", "1.13.0")
    assert len(calls) <= 2 + 5  # the ends, then log2(20) probes


def test_a_moved_reference_is_told_apart_from_a_broken_candidate():
    evaluate, _ = gate_with({"vae [native]": {"0.27.0", "0.27.0.post1"}}, drift={"0.27.0", "0.27.0.post1"})
    got = by_stage(bisect.search(RELEASES, evaluate, echo=lambda *_: None))
    assert got["vae [native]"].first_bad == "0.27.0" and got["vae [native]"].kind == "reference moved"
    assert "first bad" in bisect.table("apache-tvm", list(got.values()))


def test_ranges_and_companion_pins():
    assert bisect.parse_range("0.25.0.post1..0.27.0.post1") == ("0.25.0.post1", "0.27.0.post1")
    with pytest.raises(bisect.WsdError, match="GOOD..BAD"):
        bisect.parse_range("0.25")
    assert bisect.between(["0.24.0", *RELEASES], "0.25.0.post1", "0.27.0") == RELEASES[:3]
    with pytest.raises(bisect.WsdError, match="not a release"):
        bisect.between(RELEASES, "0.25.1", "0.27.0")
    pinned = bisect.constraints_for("apache-tvm", "0.25.0.post1")
    assert "apache-tvm==0.25.0.post1" in pinned and "apache-tvm-ffi==0.1.12" in pinned
    assert "apache-tvm==0.27.0.post1" not in pinned and "torch==2.7.1" in pinned
    assert "apache-tvm-ffi==0.1.15.post2" in bisect.constraints_for("apache-tvm", "0.26.0")


def test_verdicts_keep_each_models_rows(tmp_path):
    """The gate runs two models: a stage failing on one must not be hidden by the other's pass
    (the keys once lacked the model, and the later row won)."""
    import json

    from conformance import envs

    rows = [
        {"model": "sd15-tiny", "stage": "vae", "backend": "webgpu", "status": "error", "message": "aliasing"},
        {"model": "sdxl-tiny", "stage": "vae", "backend": "webgpu", "status": "pass"},
    ]
    (tmp_path / "summary.json").write_text(json.dumps({"stages": rows}))
    got = envs.verdicts(tmp_path / "summary.json")
    assert got == {"sd15-tiny/vae [webgpu]": ("error", "aliasing"), "sdxl-tiny/vae [webgpu]": ("pass", "")}


def test_the_table_puts_broken_stages_first_and_says_always_good():
    evaluate, _ = gate_with({"unet [webgpu]": {"0.26.0"}})
    text = bisect.table("apache-tvm", bisect.search(RELEASES, evaluate, echo=lambda *_: None))
    lines = text.splitlines()
    assert lines[2].startswith("unet [webgpu]") and "0.26.0" in lines[2]
    assert sum("good in every release" in line for line in lines) == 2  # clip and vae


def test_a_failure_listed_in_expectations_is_reported_as_expected():
    from conformance.expectations import Expectation

    known = (Expectation("apache-tvm", ("0.26.0",), "webgpu", ("unet",), "fail", "a known Dawn aliasing error"),)
    evaluate, _ = gate_with({"unet [webgpu]": {"0.26.0"}, "clip [webgpu]": {"0.27.0"}})
    got = by_stage(bisect.search(RELEASES, evaluate, echo=lambda *_: None, package="apache-tvm", known=known))
    assert (got["unet [webgpu]"].kind, got["unet [webgpu]"].because) == ("expected", "a known Dawn aliasing error")
    assert got["clip [webgpu]"].kind == "candidate broke"  # not listed: still breakage
    assert "expected: a known Dawn aliasing error" in bisect.table("apache-tvm", list(got.values()))


def test_the_expectations_file_is_well_formed():
    from conformance import expectations

    entries = expectations.load()
    assert entries and all(e.because and e.seen for e in entries)


def test_bisect_perf_judges_every_release_by_the_good_ends_times(tmp_path):
    """`bisect --perf`: the good end runs with --perf and writes the baseline; the others run judged
    against it, and a stage that got slower is reported as such, not as a broken candidate."""
    seen = {}
    times = {"runs": 3, "min_ms": 10.0, "median_ms": 10.1, "noise": 0.01, "kernels": {}}

    def evaluate_with(version, extra):
        seen[version] = extra
        summary = tmp_path / version / "summary.json"
        summary.parent.mkdir()
        row = {"model": "sd15", "stage": "unet/t981-g7.5", "backend": "dawn", "status": "pass", "adapter": "nvidia"}
        summary.write_text(json.dumps({"stages": [{**row, "perf": {"device": "nvidia-h100", "measured": times}}]}))
        slower = version in ("0.27.0", "0.27.0.post1")
        slowed = ("fail", "perf: 1.40x its baseline (min 14.00 ms vs 10.00 ms, allowed +15%)")
        verdict = slowed if slower else ("pass", "")
        return {"sd15/unet/t981-g7.5 [dawn]": verdict}, summary

    baseline = tmp_path / "out" / "perf-baseline.json"
    evaluate = bisect.perf_evaluate(RELEASES, evaluate_with, baseline)
    got = by_stage(bisect.search(RELEASES, evaluate, echo=lambda *_: None))["sd15/unet/t981-g7.5 [dawn]"]
    assert seen[RELEASES[0]] == ["--perf"]
    assert all(seen[v] == ["--perf", "--perf-baseline", str(baseline)] for v in RELEASES[1:])
    assert json.loads(baseline.read_text())["stages"]["dawn:sd15/unet/t981-g7.5"]["min_ms"] == 10.0
    assert (got.last_good, got.first_bad, got.kind) == ("0.26.0", "0.27.0", "got slower")
    assert "got slower: perf: 1.40x" in bisect.table("apache-tvm", [got])
