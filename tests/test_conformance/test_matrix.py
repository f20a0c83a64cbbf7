"""The version matrix: cells, resumable runs, the merged report with first-bad markers."""

from __future__ import annotations

import json

from conformance import envs, matrix


def test_every_cell_of_tvm_torch_python():
    cells = matrix.cells()
    assert len(cells) == 12 and len({c.name for c in cells}) == 12
    assert matrix.parse_cell("python=3.13,torch=2.7.1,tvm=0.26.0") == matrix.Cell("3.13", "2.7.1", "0.26.0")


def test_constraints_for_older_pythons_drop_pins_they_cannot_install():
    text = envs.constraints({"torch": "2.7.1", "apache-tvm": "0.25.0.post1"}, python="3.11")
    assert "numpy==" not in text and "scikit-image==" not in text
    assert "apache-tvm-ffi==0.1.12" in text and "torch==2.7.1" in text


def fake_cell(out, cell, statuses):
    folder = out / cell.name
    folder.mkdir(parents=True)
    rows = [{"stage": s, "backend": "webgpu", "status": st, "message": ""} for s, st in statuses.items()]
    (folder / "summary.json").write_text(json.dumps({"stages": rows}))
    (folder / "cell.json").write_text(json.dumps({**matrix.asdict(cell), "status": "x"}))


def test_merge_marks_the_first_bad_tvm_per_torch_and_python(tmp_path, monkeypatch):
    for tvm, status in (("0.25.0.post1", "pass"), ("0.26.0", "error"), ("0.27.0.post1", "pass")):
        fake_cell(tmp_path, matrix.Cell("3.13", "2.7.1", tvm), {"unet": status, "vae": "pass"})
    body = matrix.merge(tmp_path)
    assert body["first_bad"] == {"unet [webgpu]": ["py3.13-torch2.7.1-tvm0.26.0"]}
    assert "first bad" in (tmp_path / "matrix.html").read_text()
    calls = []
    monkeypatch.setattr(matrix.envs, "make", lambda *a, **k: calls.append(a))
    matrix.run_cell(matrix.Cell("3.13", "2.7.1", "0.26.0"), tmp_path, [], echo=lambda *_: None)
    assert calls == []  # resumed: a finished cell is not rerun


def test_a_cell_whose_python_is_missing_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(matrix.envs, "find_python", lambda v: (_ for _ in ()).throw(envs.WsdError(f"no {v}")))
    body = matrix.run_cell(matrix.Cell("3.99", "2.7.1", "0.26.0"), tmp_path, [], echo=lambda *_: None)
    assert body["status"] == "cannot exist" and "no 3.99" in body["reason"]


def test_a_release_s_known_failures_are_expected_not_first_bad(tmp_path):
    """TVM 0.26.0's WebGPU errors are listed in expectations.toml: the report says expected, with
    the reason, and marks no first bad; a failure that file does not list still is one."""
    statuses = {"sd15-tiny/unet/t1-g7.5": "error", "sd15-tiny/tokenizer": "pass"}
    fake_cell(tmp_path, matrix.Cell("3.13", "2.7.1", "0.25.0.post1"), {k: "pass" for k in statuses})
    fake_cell(tmp_path, matrix.Cell("3.13", "2.7.1", "0.26.0"), statuses)
    body = matrix.merge(tmp_path)
    assert body["first_bad"] == {}
    reason = body["expected"]["sd15-tiny/unet/t1-g7.5 [webgpu]"]["py3.13-torch2.7.1-tvm0.26.0"]
    assert "binding aliasing" in reason
    assert 'class="expected"' in (tmp_path / "matrix.html").read_text()
    later, same = matrix.Cell("3.13", "2.7.1", "0.27.0.post1"), matrix.Cell("3.13", "2.7.1", "0.26.0")
    assert matrix.known_failure(later, "sd15-tiny/unet/t1-g7.5 [webgpu]", "error") is None
    assert matrix.known_failure(same, "sd15-tiny/tokenizer [webgpu]", "error") is None
    assert matrix.known_failure(same, "sd15-tiny/vae [native]", "error") is None
