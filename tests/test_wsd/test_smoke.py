"""The smoke module compiled for WebGPU, linked, run in Chromium, compared with torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conformance.metrics import compare
from wsd import smoke, versions
from wsd.cli import SMOKE_TOLERANCE, main
from wsd.host.modules import run_entry


def run_in_browser(module, runner, runner_url, kit):
    x = smoke.sample_input()
    _, artifacts = runner_url
    wasm, build_s, link_s = smoke.build_wasm(module, x, artifacts, kit)
    return x, run_entry(runner, f"/a/{wasm.name}", smoke.ENTRY, [x], repeat=2)


@pytest.mark.browser
def test_compiled_module_matches_torch_on_webgpu(runner, runner_url, kit):
    module = smoke.make_module()
    x, result = run_in_browser(module, runner, runner_url, kit)
    with torch.no_grad():
        reference = module(torch.from_numpy(x)).numpy()
    assert compare(reference, result.outputs[0])["max_abs"] <= SMOKE_TOLERANCE
    assert len(result.run_ms) == 2 and result.adapter["vendor"]


@pytest.mark.browser
def test_smoke_catches_a_wrong_weight(runner, runner_url, kit):
    """Parity must fail when the compiled module differs from the reference by one weight."""
    module = smoke.make_module()
    x = smoke.sample_input()
    with torch.no_grad():
        reference = module(torch.from_numpy(x)).numpy()
        module.proj_out.bias[0] += 0.01  # a fault of the kind a bad shard or a dropped bias makes
    _, result = run_in_browser(module, runner, runner_url, kit)
    metrics = compare(reference, result.outputs[0])
    assert metrics["max_abs"] > SMOKE_TOLERANCE
    assert np.isclose(metrics["max_abs"], 0.01, rtol=1e-3)


@pytest.mark.e2e
def test_wsd_smoke_cli_writes_the_report(tmp_path):
    # A child process, as a user runs it (and away from pytest-playwright's event loop).
    report_path = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, "-m", "wsd", "smoke", "--report", str(report_path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["max_abs"] <= SMOKE_TOLERANCE
    assert report["rel_l2"] < 1e-5
    assert set(report) >= {"max_abs", "rel_l2", "adapter", "build_s", "link_s", "run_ms", "versions"}
    assert report["adapter"]["vendor"] and "maxBufferSize" in report["adapter"]["limits"]
    assert set(report["versions"]) == set(versions.NAMES)
    assert all(report["versions"].values())
    assert "smoke: max_abs=" in proc.stdout


def test_cli_webrt_reports_the_cached_kit(kit, capsys):
    assert main(["webrt"]) == 0
    out = capsys.readouterr().out
    assert str(kit.dir) in out and '"tvm"' in out
