"""The gate plugin's parts, in this process (the gate itself runs them in processes of its own):
its options, one xdist worker per model, and the reports merged from the workers' parts."""

from __future__ import annotations

import json

import pytest

from conformance import gate_report, options, workers


class Config:
    """The little of pytest's Config these parts read."""

    def __init__(self, **opts):
        self.opts = {"--allow-skip": [], "--model": [], "--built": [], "--weights": None, "--image-size": None, **opts}
        self.stash = pytest.Stash()
        self.pluginmanager = type("PM", (), {"get_plugin": staticmethod(lambda name: None)})()

    def getoption(self, name):
        return self.opts[name]


def row(model: str, stage: str, status: str, message: str = "") -> dict:
    return {
        "model": model,
        "stage": stage,
        "backend": "native",
        "dtype": "float32",
        "status": status,
        "metrics": {"max_abs": 0.0},
        "tolerance": {},
        "ms": {"reference": 1.0, "candidate": 2.0},
        "localized_kernel": None,
        "message": message,
        "reference_drift": None,
    }


def part(model: str, rows: list[dict], out_dir) -> dict:
    return {
        "results": rows,
        "models": [{"name": model}],
        "adapters": {},
        "adapter": {},
        "timings": {"build_s": 1.0, "browser_open_s": 0.0, "reference_s": 0.5, "candidate_s": 0.5},
        "extra": {},
        "out_dir": str(out_dir),
    }


def test_the_models_a_run_gates():
    assert options.model_names(Config()) == [("sd15-tiny", "sd15", False, None), ("sdxl-tiny", "sdxl", False, None)]
    assert options.model_names(Config(**{"--built": ["webgpu=d"]})) == [("sd15-tiny", "sd15", False, None)]
    with pytest.raises(pytest.UsageError, match="--built gates one model"):
        options.model_names(Config(**{"--built": ["webgpu=d"], "--model": ["sd15-tiny", "sdxl-tiny"]}))


def test_a_skip_is_allowed_by_stage_or_family():
    config = Config(**{"--allow-skip": ["unet"]})
    assert options.allowed_skip(config, "unet/t1-g7.5") and options.allowed_skip(config, "unet")
    assert not options.allowed_skip(config, "unetx") and not options.allowed_skip(config, "vae")


def test_each_models_cases_go_to_one_worker():
    split = workers.ModelScopes._split_scope
    assert (
        split(None, "conformance/gate/test_stages.py::test_stage[sdxl-tiny/unet/t1-g7.5[webgpu]]") == "model:sdxl-tiny"
    )


def test_the_workers_parts_make_one_report_in_model_order(tmp_path):
    config = Config()
    later = part("sdxl-tiny", [row("sdxl-tiny", "vae", "pass")], tmp_path)
    first = part("sd15-tiny", [row("sd15-tiny", "vae", "skip", "no entry point")], tmp_path)
    gate_report.write_reports(config, [later, first])
    body = json.loads((tmp_path / "summary.json").read_text())
    assert [r["model"] for r in body["stages"]] == ["sd15-tiny", "sdxl-tiny"]
    assert body["skips"] == [
        {"case": "sd15-tiny/vae", "backend": "native", "reason": "no entry point", "allowed": False}
    ]
    assert body["timings"]["build_s"] == 2.0


def test_a_k_run_builds_only_the_entry_points_its_cases_call():
    from types import SimpleNamespace

    from conformance import plugin
    from conformance.stages import all_cases
    from wsd import models

    def items(*stages):
        cases = [c for c in all_cases("sd15-tiny", "sd15") if c.stage.name in stages]
        return [SimpleNamespace(callspec=SimpleNamespace(params={"conformance_case": (c, "native")})) for c in cases]

    config = Config()
    plugin.pytest_collection_modifyitems(config, items("clip", "scheduler"))
    needed = config.stash[plugin.NEEDED]["sd15-tiny"]
    assert needed == {"clip", "scheduler_step", "scale_model_input"}
    harness = SimpleNamespace(spec=models.get("sd15-tiny"))
    assert plugin._narrowed(harness, needed) == ("clip", "scheduler_step", "scale_model_input")  # build order
    plugin.pytest_collection_modifyitems(config, items("pipeline"))  # every entry point: the whole model
    assert plugin._narrowed(harness, config.stash[plugin.NEEDED]["sd15-tiny"]) == ()
    assert plugin._narrowed(harness, set()) == ()  # nothing selected: nothing to narrow


def test_a_narrowed_run_builds_the_same_entry_points_for_both_targets(tmp_path):
    from conformance.harness import Harness

    h = Harness(model="sd15-tiny", backends=("native",), out_dir=tmp_path, echo=lambda *_: None)
    assert h.build_options("llvm").entries == h.build_options("webgpu").entries == ()
    h.entries = ("clip",)
    assert h.build_options("llvm").entries == h.build_options("webgpu").entries == ("clip",)


@pytest.mark.parametrize("path, sent", [("auto", None), ("tiled", "tiled"), ("tvm", "tvm")])
def test_the_gemm_path_reaches_the_page(tmp_path, path, sent):
    """--gemm-path goes to the page's open (web/lib/assets.js gemmPath), and the page's answer on
    which GEMMs ran lands in the adapter the report shows."""
    from conformance.backends import WebGPUBackend

    class Runner:
        def call(self, what, spec, timeout_s=None):
            self.spec = spec
            return {"adapter": {"vendor": "v"}, "timings": {}, "tiled_gemm_kernels": 42 if sent == "tiled" else 0}

    runner = Runner()
    backend = WebGPUBackend(runner, "/a/x/", tmp_path, gemm_path=path)
    assert runner.spec.get("gemmPath") == sent
    assert backend.adapter.get("tiled_gemm_kernels") == (42 if sent == "tiled" else None)


def test_the_gemm_paths_are_the_pages():
    """The Python callers' choices (wsd.host.modules GEMM_PATHS) are those the page accepts."""
    import re

    from wsd.host.modules import GEMM_PATHS
    from wsd.paths import web_dir

    assets = (web_dir() / "lib" / "assets.js").read_text()
    listed = re.search(r"export const GEMM_PATHS = \[([^\]]*)\];", assets).group(1)
    assert tuple(re.findall(r'"(\w+)"', listed)) == GEMM_PATHS
