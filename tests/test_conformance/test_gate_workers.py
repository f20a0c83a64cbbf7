"""The gate under pytest-xdist, as `tox -e conformance` runs it: one worker per model, one report."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys

import pytest

from conformance import gate
from wsd.paths import repo_root

pytestmark = pytest.mark.e2e


def test_two_workers_gate_a_model_each_into_one_report(tmp_path):
    reports = tmp_path / "r"
    argv = [sys.executable, "-m", "pytest", *gate.pytest_args()]
    argv += ["-p", "no:cacheprovider", "-n", "2", "--dist", "loadscope", "-v", "--backend=native"]
    argv += ["-k", "tokenizer or scheduler/euler", "--report-dir", str(reports)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=repo_root())
    assert proc.returncode == 0, proc.stdout[-3000:]

    workers = collections.defaultdict(set)  # model -> the xdist workers its cases ran on
    for worker, model in re.findall(r"\[(gw\d+)\][^\n]*PASSED [^\n]*test_stage\[([^/\]]+)/", proc.stdout):
        workers[model].add(worker)
    assert set(workers) == {"sd15-tiny", "sdxl-tiny"} and all(len(w) == 1 for w in workers.values()), workers
    assert workers["sd15-tiny"] != workers["sdxl-tiny"]

    summary = json.loads((reports / "summary.json").read_text())  # written once, by the controller
    assert [m["name"] for m in summary["models"]] == ["sd15-tiny", "sdxl-tiny"]
    assert {r["model"] for r in summary["stages"]} == {"sd15-tiny", "sdxl-tiny"}
    assert summary["totals"] == {"pass": len(summary["stages"]), "fail": 0, "error": 0, "skip": 0}
    assert len(summary["stages"]) >= 4 and "wsd conformance (sd15-tiny, sdxl-tiny)" in proc.stdout
