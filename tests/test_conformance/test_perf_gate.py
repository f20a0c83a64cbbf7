"""The perf gate end to end on SwiftShader: the self-test's slow-kernel fault (the UNet's costliest
conv doing its work twice, its results unchanged) passes every accuracy check, is caught by --perf
against the clean build's own times, and the failure names the kernel. (A file of its own: pytest-xdist
hands each file to one worker, and test_gate_exits.py is long already.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_the_perf_gate_catches_and_names_a_kernel_twice_as_slow(tmp_path):
    out = tmp_path / "selftest.json"
    argv = [sys.executable, "-m", "conformance.cli", "selftest", "--faults", "slow-kernel", "--expected-only"]
    argv += ["--model", "sd15-tiny", "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())["faults"]
    assert row["caught"] and row["caught_by"] == "unet/t981-g7.5" and row["localized_kernel"] == row["kernel"]
    assert row["message"].startswith("perf: ") and f"kernels slower: {row['kernel']} " in row["message"]
