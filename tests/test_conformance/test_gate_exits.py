"""`tox -e conformance` exits non-zero, naming why, when golden is missing or moved or a stage skips.

Each runs the gate as CI does (pytest on conformance/gate with the plugin's options), native
backend only and a few stages, on a copy of golden/ (the checkout's is never written).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conformance import gate as the_gate
from conformance import golden
from wsd.cli import main
from wsd.paths import repo_root

pytestmark = pytest.mark.e2e


def gate(*args: str, backends: tuple[str, ...] = ("native",)) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pytest", *the_gate.pytest_args()]
    argv += ["-p", "no:cacheprovider", "--model", "sd15-tiny", *(f"--backend={b}" for b in backends), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=repo_root())


@pytest.fixture
def golden_copy(tmp_path):
    shutil.copytree(golden.root("sd15-tiny").parent, tmp_path / "golden")
    return tmp_path / "golden"


def test_a_deleted_golden_manifest_fails_the_gate(golden_copy, tmp_path):
    (golden_copy / "sd15-tiny" / golden.MANIFEST).unlink()
    proc = gate("-k", "clip", "--golden", str(golden_copy), "--report-dir", str(tmp_path / "r"))
    assert proc.returncode != 0
    assert "golden/sd15-tiny/manifest.json is missing" in proc.stdout


def test_a_golden_value_beyond_its_drift_bound_fails_the_gate(golden_copy, tmp_path):
    folder = golden_copy / "sd15-tiny"
    name = golden.file_name("sd15-tiny/clip")
    with np.load(folder / name) as data:
        np.savez_compressed(folder / name, embeddings=data["embeddings"] * (1 + 1e-4))
    manifest = json.loads((folder / golden.MANIFEST).read_text())
    manifest["files"][name]["sha256"] = golden.file_digest(folder / name).hex()  # re-signed: a moved, not edited, file
    (folder / golden.MANIFEST).write_text(json.dumps(manifest))
    proc = gate("-k", "clip", "--golden", str(golden_copy), "--report-dir", str(tmp_path / "r"))
    assert proc.returncode != 0
    assert "reference drift" in proc.stdout and "golden made with" in proc.stdout
    accepted = gate("-k", "clip", "--golden", str(golden_copy), "--accept-drift", "--report-dir", str(tmp_path / "a"))
    assert accepted.returncode == 0, accepted.stdout[-2000:]


def test_a_skipped_stage_fails_the_gate_unless_allowed(tmp_path):
    out = tmp_path / "dist"
    entries = ["--entry", "clip"]  # no vae: the vae stage has nothing to run
    assert (
        main(
            [
                "build",
                "--model",
                "sd15-tiny",
                "--random-init",
                "--target",
                "llvm",
                "--out",
                str(out),
                "--quiet",
                *entries,
            ]
        )
        == 0
    )
    dist = f"native={out / 'sd15-tiny'}"
    proc = gate("-k", "vae and not encode", "--built", dist, "--report-dir", str(tmp_path / "r"))
    assert proc.returncode != 0
    assert "sd15-tiny/vae on native skipped" in proc.stdout and "--allow-skip vae" in proc.stdout
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["skips"] and summary["skips"][0]["reason"].startswith("the native build has no entry point")
    allowed = gate(
        "-k", "vae and not encode", "--built", dist, "--allow-skip", "vae", "--report-dir", str(tmp_path / "a")
    )
    assert allowed.returncode == 0, allowed.stdout[-2000:]


def test_an_injected_webgpu_fault_fails_the_gate_naming_the_kernel(tmp_path):
    """CI's expected failure: a kernel that also writes into the buffer it reads (each kernel is
    right alone) must make the gate exit non-zero, and the chained replay must name it."""
    proc = gate(
        "-k",
        "unet and t981",
        "--inject",
        "clobbered-input",
        "--report-dir",
        str(tmp_path / "r"),
        backends=("webgpu", "native"),
    )
    assert proc.returncode != 0, proc.stdout[-3000:]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    (row,) = [r for r in summary["stages"] if r["backend"] == "webgpu"]
    want = summary["injected_fault"]["kernel"]
    assert row["status"] == "fail" and row["localized_kernel"] == want, row["message"]
    assert "chained on WebGPU" in row["message"] and "changed its input argument" in row["message"]


def test_inject_without_a_gpu_backend_is_a_usage_error(tmp_path):
    """Faults go into the webgpu build: a native-only gate would pass without running one."""
    proc = gate("--inject", "dropped-bias", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 4, proc.stdout[-2000:]  # pytest's usage error, before any case runs
    assert "--inject dropped-bias breaks the webgpu build: add --backend webgpu" in proc.stderr + proc.stdout


def test_perf_without_a_gpu_backend_is_a_usage_error(tmp_path):
    """The perf gate times GPU backends: a native-only --perf run would judge nothing."""
    proc = gate("--perf", "--report-dir", str(tmp_path / "r"))
    assert proc.returncode == 4, proc.stdout[-2000:]
    assert "--perf times GPU backends: add --backend webgpu" in proc.stderr + proc.stdout


def test_a_fault_in_code_the_references_once_shared_fails_the_gate(tmp_path):
    """Issue 33's incident through `--inject`: samplers merged with the folder class's defaults
    (PNDM's leading spacing reaching DPM-Solver++) passed the gate while its references called
    the same merge; with references on diffusers alone it fails. Native only: a bug in the
    product's Python is in every build. (All four such faults: tests/test_conformance/test_harness.py;
    the blind spot itself: tests/test_conformance/test_shared_code_faults.py.)"""
    reports = tmp_path / "r"
    proc = gate("-k", "scheduler", "--inject", "sampler-defaults", "--accept-drift", "--report-dir", str(reports))
    assert proc.returncode != 0, proc.stdout[-3000:]
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["injected_fault"]["name"] == "sampler-defaults"
    # `-k scheduler` built the two entry points its cases call, not the whole model
    assert summary["models"][0]["built_entries"] == {"native": ["scheduler_step", "scale_model_input"]}
    failed = {r["stage"] for r in summary["stages"] if r["status"] == "fail"}
    # DDIM's, PNDM's and LCM's own default is leading: only the samplers whose default differs move
    assert failed == {"scheduler/dpm-solver++", "scheduler/euler", "scheduler/euler-a"}, [
        (r["stage"], r["message"][:200]) for r in summary["stages"]
    ]
