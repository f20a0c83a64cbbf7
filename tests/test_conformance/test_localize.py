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


def test_without_a_kernel_or_data_difference_nothing_is_blamed(native, tmp_path):
    kernels = json.loads((native.dist / "kernels.json").read_text())
    calls = localize.native_trace(native, "clip", ids(), kernels)
    skip = calls[3]["name"]
    found = localize.localize(native, Replayer(calls, None, skip), native.dist, "clip", ids(), "m/clip", tmp_path)
    assert found.kernel is None
    assert f"could not be replayed alone: {skip}" in found.message
    assert "not reproducible kernel by kernel" in found.message and "data" not in found.message.split(";")[-1][:40]


class NativeChain:
    """Stands in for the page's runChain with the native build's own kernels, chained on CPU
    tensors; `clobber` names a kernel that also writes its result over its first input."""

    def __init__(self, native, clobber: str | None = None):
        self.native, self.clobber, self.probes = native, clobber, 0

    def run_chain(self, buffers, calls, upto, fetch):
        import tvm

        from wsd.compat import tensor

        self.probes += 1
        tensors = []
        for b in buffers:
            if "init" in b:
                tensors.append(tensor(np.array(b["init"]), tvm.cpu()))
            else:
                tensors.append(tensors[b["viewOf"]]._create_view(tuple(b["shape"]), b["dtype"]))
        for call in calls[: upto + 1]:
            if "fill" in call:
                for i, value in call["fill"]:
                    tensors[i].copyfrom(np.ascontiguousarray(value))
                continue
            args = [tensors[i] for i in call["args"]]
            self.native.model.lib.get_function(call["name"], True)(*args)
            if call["name"] == self.clobber:
                args[0].copyfrom(np.full(args[0].shape, 7.0, args[0].dtype))
        return [tensors[i].numpy() for i in fetch]


def test_a_clean_chain_agrees(native):
    kernels = json.loads((native.dist / "kernels.json").read_text())
    calls = localize.native_trace(native, "clip", ids(), kernels)
    assert localize.chained(NativeChain(native), calls) is None
    # a kernel the page cannot call alone gets native's outputs written instead
    assert localize.chained(NativeChain(native), calls, unreplayable=frozenset({calls[3]["name"]})) is None


def test_the_chain_names_a_kernel_that_writes_its_input(native, tmp_path):
    kernels = json.loads((native.dist / "kernels.json").read_text())
    calls = localize.native_trace(native, "clip", ids(), kernels)

    def read_again(i, c):  # a later call reads the same tensor (same buffer, same value) as an input
        return any(
            addr == c["addresses"][0] and j not in later["outputs"] and np.array_equal(arg, c["args"][0])
            for later in calls[i + 1 :]
            for j, (addr, arg) in enumerate(zip(later["addresses"], later["args"], strict=True))
        )

    # the first call of a float kernel whose first input is read again later
    culprit = next(
        i
        for i, c in enumerate(calls)
        if 0 not in c["outputs"]
        and c["args"][0].dtype == np.float32
        and read_again(i, c)
        and [x["name"] for x in calls].index(c["name"]) == i
    )
    chain = NativeChain(native, clobber=calls[culprit]["name"])
    index, message = localize.chained(chain, calls)
    assert index == culprit and "changed its input argument(s) [0]" in message
    assert chain.probes <= 2 + int(np.ceil(np.log2(len(calls))))  # bisected, not walked call by call
    # through localize(): every kernel agrees alone, so the chain is what names it
    chain.run_kernels = Replayer(calls, None).run_kernels
    found = localize.localize(native, chain, native.dist, "clip", ids(), "m/clip", tmp_path)
    assert found.kernel == calls[culprit]["name"] and "agree one by one; chained on WebGPU" in found.message


def test_data_differences_name_the_tensor_and_the_table(native, tmp_path):
    import shutil

    from conformance.faults import _edit_table, _edit_tensor, resign

    other = tmp_path / "other"
    shutil.copytree(native.dist, other)
    assert localize.data_differences(native.dist, other) == []
    _edit_tensor(other, lambda r: r["name"] == "clip_0", lambda a: a + 1)
    _edit_table(other, "ddim-10.json", lambda t: t["coeffs"][0].__setitem__(0, 2.0))
    resign(other)  # as every fault does: a dist is checked whole before it is localized
    found = localize.data_differences(native.dist, other)
    assert any(f.startswith("tensor clip_0 differs") for f in found) and "schedulers/ddim-10.json differs" in found


def test_both_builds_must_list_the_same_kernels(native, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(native.dist, other)
    table = json.loads((other / "kernels.json").read_text())
    table.pop(sorted(table)[0])
    (other / "kernels.json").write_text(json.dumps(table))
    with pytest.raises(ValueError, match="do not list the same kernels"):
        localize.same_kernels(native.dist, other)


def test_threshold_follows_the_stage_tolerance():
    assert localize.threshold({"rel_l2": 1e-5}) == localize.REL_L2  # fp32: never below libm's noise
    assert localize.threshold({"rel_l2": 5e-2}) == 5e-2
    assert abs(localize.threshold({"psnr": 35.0}) - 10 ** (-35 / 20)) < 1e-12  # fp16 stages
    assert localize.threshold(None) == localize.REL_L2


def test_divergence_threshold():
    x = np.linspace(1, 2, 100, dtype="float32")
    assert not localize.diverges(x, x * (1 + 1e-5))[0]  # reordered sums, libm differences
    assert localize.diverges(x, x * 1.01)[0]
    assert localize.diverges(np.arange(4), np.array([0, 1, 2, 5]))[0]


def test_golden_needs_update_flag(capsys):
    assert conformance_main(["golden"]) == 2
    assert "--update" in capsys.readouterr().out
