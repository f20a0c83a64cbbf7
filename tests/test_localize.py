"""Localization's logic on the native build: a replayer that corrupts one kernel is named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conformance import localize
from conformance.cli import main as conformance_main


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    from conformance.backends import NativeBackend
    from wsd.build import BuildOptions, build

    out = tmp_path_factory.mktemp("loc")
    dist = build(
        BuildOptions("sd15-tiny", random_init=True, target="llvm"), out, echo=lambda *_: None, progress=False
    ).out
    return NativeBackend(dist)


class Replayer:
    """Stands in for the page: replays with the native outputs, breaking one kernel's."""

    def __init__(self, calls, broken: str | None, unreplayable: str | None = None):
        self.expected = {id(c): c for c in calls}
        self.by_order = calls
        self.broken, self.unreplayable = broken, unreplayable
        self.seen = 0

    def run_kernels(self, kernels):
        out = []
        for k in kernels:
            call = self.by_order[self.seen]
            self.seen += 1
            assert k["name"] == call["name"]
            assert all(not np.any(k["args"][i]) for i in k["outputs"])  # outputs start zeroed
            if k["name"] == self.unreplayable:
                out.append({"error": f"{k['name']}: cannot be called alone"})
                continue
            outs = [call["args"][i].copy() for i in k["outputs"]]
            if k["name"] == self.broken:
                outs[0] = outs[0] + 1.0
            out.append(outs)
        return out


def ids():
    x = np.zeros((1, 77), "int32")
    x[0, :3] = [801, 320, 802]
    return [x]


def test_first_divergent_kernel_is_named_and_saved(native, tmp_path):
    kernels = json.loads((native.dist / "kernels.json").read_text())
    calls = localize.native_trace(native, "clip", ids(), kernels)
    assert len(calls) > 20 and all(c["outputs"] for c in calls)
    target = next(c["name"] for c in calls if "matmul" in c["name"])
    found = localize.localize(native, Replayer(calls, target), native.dist, "clip", ids(), "m/clip", tmp_path)
    assert found.kernel == target and "first divergent kernel" in found.message
    rec = localize.load_repro(found.repro)
    assert rec["name"] == target and rec["outputs"] == next(c["outputs"] for c in calls if c["name"] == target)
    bad, _ = localize.diverges(rec["args"][rec["outputs"][0]], rec["webgpu"][0])
    assert bad


def test_a_data_fault_is_not_pinned_on_a_kernel(native, tmp_path):
    kernels = json.loads((native.dist / "kernels.json").read_text())
    calls = localize.native_trace(native, "clip", ids(), kernels)
    skip = calls[3]["name"]
    found = localize.localize(native, Replayer(calls, None, skip), native.dist, "clip", ids(), "m/clip", tmp_path)
    assert found.kernel is None
    assert "the fault is in data" in found.message and f"could not be replayed alone: {skip}" in found.message


def test_divergence_threshold():
    x = np.linspace(1, 2, 100, dtype="float32")
    assert not localize.diverges(x, x * (1 + 1e-5))[0]  # reordered sums, libm differences
    assert localize.diverges(x, x * 1.01)[0]
    assert localize.diverges(np.arange(4), np.array([0, 1, 2, 5]))[0]


def test_golden_needs_update_flag(capsys):
    assert conformance_main(["golden"]) == 2
    assert "--update" in capsys.readouterr().out
