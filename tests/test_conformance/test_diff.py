"""`wsd-conformance diff` and `check`: what changed between two runs; git-bisect exit codes."""

from __future__ import annotations

import json

import pytest

from conformance import cli, diff


def summary(tmp_path, name, tvm, rows):
    body = {"versions": {"tvm": tvm, "torch": "2.7.1"}, "stages": rows}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(body))
    return path


def row(stage, backend, status, rel_l2):
    return {
        "model": "m",
        "stage": stage,
        "backend": backend,
        "status": status,
        "outputs": {"noise_pred": {"metrics": {"rel_l2": rel_l2, "cosine": 1.0}}},
    }


def test_diff_names_status_and_metric_changes_with_versions(tmp_path, capsys):
    a = summary(
        tmp_path, "a", "0.25.0.post1", [row("unet", "webgpu", "pass", 1e-6), row("vae", "webgpu", "pass", 1e-7)]
    )
    b = summary(tmp_path, "b", "0.26.0", [row("unet", "webgpu", "error", None), row("vae", "webgpu", "pass", 2e-7)])
    page = tmp_path / "d.html"
    assert cli.main(["diff", str(a), str(b), "--html", str(page)]) == 1  # a status changed
    out = capsys.readouterr().out
    assert "tvm 0.25.0.post1 -> 0.26.0" in out
    assert "CHANGED m/unet [webgpu]: pass -> error" in out
    assert "noise_pred.rel_l2: 1e-07 -> 2e-07" in out
    assert "0.26.0" in page.read_text() and 'class="changed"' in page.read_text()
    same = summary(tmp_path, "c", "0.25.0.post1", [row("unet", "webgpu", "pass", 1e-6)])
    assert cli.main(["diff", str(same), str(same)]) == 0


def test_diff_refuses_a_file_that_is_not_a_summary(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("[]")
    with pytest.raises(diff.WsdError, match="no 'stages' list"):
        diff.load(bad)


@pytest.mark.parametrize(("pytest_code", "bisect_code"), [(0, 0), (1, 1), (2, 125), (4, 125), (5, 125)])
def test_check_speaks_git_bisect(monkeypatch, pytest_code, bisect_code):
    monkeypatch.setattr(cli, "_run", lambda args: pytest_code)
    assert cli.main(["check", "-k", "unet"]) == bisect_code
