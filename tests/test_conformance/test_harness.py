"""The harness on the native backend: every stage passes, every injected fault is caught by the
stage it breaks (the self-test, natively), golden drift and damage, reports, pages that die."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conformance import faults, golden, report
from conformance.harness import Harness
from conformance.stages import STAGES, all_cases
from wsd import versions


@pytest.fixture(scope="module")
def native_dist(tmp_path_factory):
    from wsd.build import BuildOptions, build

    out = tmp_path_factory.mktemp("native")
    return build(
        BuildOptions("sd15-tiny", random_init=True, target="llvm"), out, echo=lambda *_: None, progress=False
    ).out


@pytest.fixture(scope="module")
def clean(native_dist, tmp_path_factory):
    h = Harness(
        backends=("native",),
        dists={"native": native_dist},
        out_dir=tmp_path_factory.mktemp("rep"),
        echo=lambda *_: None,
    )
    rows = [h.run(c, "native") for c in all_cases()]
    return h, rows


def test_every_stage_passes_natively(clean):
    _, rows = clean
    assert [r["stage"] for r in rows if r["status"] != "pass"] == [], [r["message"] for r in rows]
    assert {r["stage"].split("/")[0] for r in rows} == {
        "tokenizer",
        "clip",
        "unet",
        "vae",
        "vae_encode",
        "image_to_rgba",
        "scheduler",
        "pipeline",
    }


def test_live_reference_matches_the_golden(clean):
    h, rows = clean
    # applied, or the check below holds vacuously (drift is None when there is no golden)
    assert h.golden is not None and h.describe_model()["golden"] == "applied"
    assert all(r["reference_drift"] is None for r in rows), [r["reference_drift"] for r in rows if r["reference_drift"]]


@pytest.fixture(scope="module")
def sdxl_clean(tmp_path_factory):
    """sdxl-tiny's native build and a clean harness on it (SDXL's conditioning faults break it)."""
    from wsd.build import BuildOptions, build

    out = tmp_path_factory.mktemp("native-xl")
    opts = BuildOptions("sdxl-tiny", random_init=True, target="llvm")
    dist = build(opts, out, echo=lambda *_: None, progress=False).out
    h = Harness(model="sdxl-tiny", backends=("native",), dists={"native": dist}, echo=lambda *_: None)
    h.out_dir = tmp_path_factory.mktemp("rep-xl")
    rows = [h.run(c, "native") for c in all_cases("sdxl-tiny")]
    assert [r["stage"] for r in rows if r["status"] != "pass"] == [], [r["message"] for r in rows]
    return h, dist


# Every fault a native build can have, on the first model of a family it applies to.
# (The faults of an inpainting or LCM model: tests/test_conformance/test_user_folders.py, on such folders.)
NATIVE_FAULTS = [
    ("sd15-tiny" if f.applies_to("sd15") else "sdxl-tiny", f)
    for f in faults.FAULTS
    if not f.webgpu_only and not f.model_kind
]


@pytest.mark.parametrize(("model", "fault"), NATIVE_FAULTS, ids=[f"{m}-{f.name}" for m, f in NATIVE_FAULTS])
def test_each_fault_fails_its_stage(model, fault, request, tmp_path):
    if model == "sd15-tiny":
        h, dist = request.getfixturevalue("clean")[0], request.getfixturevalue("native_dist")
    else:
        h, dist = request.getfixturevalue("sdxl_clean")
    faulted = fault.make(dist, tmp_path, narrow=True)  # a rebuilt fault compiles only its stage's entry
    stage = next(s for s in STAGES if s.name == fault.expect.split("/")[0])
    if fault.rebuilds:
        assert set(json.loads((faulted / "manifest.json").read_text())["entry_points"]) == set(stage.required())
    # a fault in shared Python is in this process's code too: the gate's inputs are made with it
    with fault.patched():
        f = Harness(
            model=model, backends=("native",), dists={"native": faulted}, out_dir=tmp_path / "rep", echo=lambda *_: None
        )
        if not fault.shared_code:
            f.share_references(h)
        f.accept_drift = fault.shared_code  # judged by the comparison, not by inputs that moved from golden
        wanted = [c for c in all_cases(model) if c.stage.name == stage.name]
        if "/" in fault.expect:  # a fault only some variants can show: those
            wanted = [c for c in wanted if f"{c.stage.name}/{c.variant}" == fault.expect]
        failed = {r["stage"] for c in wanted if (r := f.run(c, "native"))["status"] == "fail"}
    assert any(s == fault.expect or s.startswith(fault.expect + "/") for s in failed), failed


def test_reports_have_the_stable_schema(clean, tmp_path):
    h, rows = clean
    body = report.summary(rows, {"vendor": "v", "features": ["f"]}, 1.5)
    assert set(body) >= {"versions", "adapter", "stages", "totals", "wall_s"}
    assert set(body["versions"]) >= set(versions.NAMES)
    row = body["stages"][0]
    assert set(row) >= {
        "model",
        "stage",
        "backend",
        "dtype",
        "status",
        "metrics",
        "tolerance",
        "ms",
        "localized_kernel",
        "message",
    }
    assert set(row["metrics"]) >= {"max_abs", "rel_l2", "cosine", "psnr", "ssim"}
    paths = report.write(tmp_path, body)
    assert json.loads(paths["summary"].read_text())["totals"]["pass"] == len(rows)
    page = paths["html"].read_text()
    assert "pipeline" in page and "Where the time went" in page
    assert page.count("__rgba__reference.png") >= 1 or not any(r.get("images", {}).get("rgba") for r in rows)


def golden_of(h, tmp_path, change=None, config_hash=None):
    """A one-case golden folder made from the live clip reference (optionally changed)."""
    store = golden.Golden(tmp_path)
    case = next(c for c in all_cases() if c.stage.name == "clip")
    ref = h.reference(case)
    outputs = change(ref.outputs) if change else ref.outputs
    store.save(case.id, outputs, golden.inputs_digest(ref.inputs))
    store.write_manifest({"model": "sd15-tiny", "config_hash": config_hash or h.spec.config_hash()})
    return case, ref


def gate(h, tmp_path, **kw):
    return Harness(
        backends=("native",),
        dists=h.dists,
        golden=golden.Golden(tmp_path),
        out_dir=tmp_path,
        echo=lambda *_: None,
        **kw,
    )


def test_an_edited_golden_is_an_error_row(clean, tmp_path):
    h, _ = clean
    case, ref = golden_of(h, tmp_path)
    path = tmp_path / golden.file_name(case.id)
    np.savez_compressed(path, embeddings=ref.outputs["embeddings"] * 2)  # edited after the manifest
    row = gate(h, tmp_path).run(case, "native")
    assert row["status"] == "error" and "was edited" in row["message"]


def test_drift_beyond_the_bound_fails_the_gate_naming_versions(clean, tmp_path):
    h, _ = clean
    case, _ = golden_of(h, tmp_path, change=lambda o: {"embeddings": o["embeddings"] * (1 + 1e-5)})
    row = gate(h, tmp_path).run(case, "native")
    assert row["status"] == "fail" and "reference drift" in row["message"]
    assert "golden made with" in row["message"] and "torch" in row["message"] and "--accept-drift" in row["message"]
    accepted = gate(h, tmp_path, accept_drift=True).run(case, "native")
    assert accepted["status"] == "pass" and "reference drift" in accepted["reference_drift"]


def test_drift_within_the_bound_passes(clean, tmp_path):
    h, _ = clean
    case, _ = golden_of(h, tmp_path, change=lambda o: {"embeddings": o["embeddings"] * (1 + 1e-8)})
    row = gate(h, tmp_path).run(case, "native")
    assert row["status"] == "pass" and row["reference_drift"] is None


@pytest.mark.parametrize("damage", ["no-manifest", "no-file", "other-config"])
def test_missing_or_foreign_golden_is_an_error_not_a_skip(clean, tmp_path, damage):
    h, _ = clean
    case, _ = golden_of(h, tmp_path, config_hash="0" * 64 if damage == "other-config" else None)
    if damage == "no-manifest":
        (tmp_path / golden.MANIFEST).unlink()
    other = next(c for c in all_cases() if c.stage.name == "vae")
    row = gate(h, tmp_path).run(other if damage == "no-file" else case, "native")
    assert row["status"] == "error"
    expected = {
        "no-manifest": "manifest.json is missing",
        "no-file": "has no file for",
        "other-config": "made for config",
    }
    assert expected[damage] in row["message"] and "golden --update" in row["message"]


def test_the_seeded_model_gets_its_own_golden_and_a_users_folder_none(clean):
    h, _ = clean
    assert Harness(backends=("native",), echo=lambda *_: None).golden.folder.name == "sd15-tiny"
    assert Harness(backends=("native",), image_size=128, echo=lambda *_: None).golden is None


class DyingPage:
    """A webgpu backend whose page dies or hangs mid-stage (what wsd.host.browser raises)."""

    name = "webgpu"

    def __init__(self, kind):
        self.kind = kind

    def run(self, entry, inputs):
        from wsd.host.browser import BrowserError

        raise BrowserError(self.kind, f"wsd.run: the page {self.kind} during the stage")


@pytest.mark.parametrize("kind", ["crash", "timeout", "js-exception"])
def test_a_page_that_dies_or_hangs_is_an_error_never_a_pass(kind, clean, native_dist):
    h, _ = clean
    resets = []
    g = Harness(backends=("webgpu",), dists={"webgpu": native_dist, "native": native_dist}, echo=lambda *_: None)
    g.share_references(h)
    g.candidates.use("webgpu", DyingPage(kind))
    g.candidates.browser = type("B", (), {"reset_runner": lambda self: resets.append(1)})()
    case = next(c for c in all_cases() if c.stage.name == "clip")
    row = g.run(case, "webgpu")
    assert row["status"] == "error" and f"[{kind}]" in row["message"]
    # after a crash or a timeout the page is not trusted again: the next case reopens it
    assert g.candidates.is_open("webgpu") == (kind == "js-exception")
    assert bool(resets) == (kind != "js-exception")


def test_a_stage_that_raises_is_an_error(clean, native_dist):
    from dataclasses import replace

    h, _ = clean
    case = next(c for c in all_cases() if c.stage.name == "vae")

    def broken(backend, ctx, inputs, params):
        raise RuntimeError("candidate exploded")

    bad = replace(case, stage=replace(case.stage, candidate=broken))
    row = h.run(bad, "native")
    h.results.pop()
    assert row["status"] == "error" and "candidate exploded" in row["message"]
