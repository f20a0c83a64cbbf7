"""Localization of a WebGPU-only failure, in three steps that each say what they checked.

The native build runs the failing case with the Relax VM instrumented: every compiled
kernel call is recorded with its arguments after the call (inputs unchanged, outputs
written; destination-passing style) and the address of each argument's buffer.

1. Kernel by kernel: each recorded call is replayed alone on WebGPU with the same inputs;
   the first kernel whose outputs diverge is named, and its inputs and the native outputs
   are saved as an .npz, so the failure reproduces without the model.
2. Chained: when every kernel agrees alone, the calls are replayed on WebGPU the way the VM
   runs them (one GPU buffer per native buffer, outputs feeding the next call), and the
   call list is bisected for the first call after which the GPU buffers no longer match
   native's. That catches what no kernel shows alone: a kernel writing a buffer it should
   only read (aliasing), missing synchronization, runtime state.
3. Data: when the chain agrees too, the WebGPU build's weights, sampler tables and tokenizer
   files are compared with the native build's. Only a difference found there blames data;
   otherwise the verdict is "not reproducible kernel by kernel".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conformance.metrics import compare

BATCH = 16  # kernels per round trip to the page


@dataclass
class Localized:
    kernel: str | None
    index: int  # position in the call sequence
    calls: int
    metrics: dict
    repro: Path | None
    message: str


def native_trace(native, entry: str, inputs: list[np.ndarray], kernels: dict) -> list[dict]:
    from wsd.compat import tensor_address

    calls: list[dict] = []

    def instrument(func, symbol, before_run, ret_value, *args):
        if not before_run and symbol in kernels:
            calls.append(
                {
                    "name": symbol,
                    "args": [a.numpy().copy() for a in args],
                    "addresses": [tensor_address(a) for a in args],
                    "outputs": kernels[symbol]["outputs"],
                }
            )
        return 0  # VMInstrumentReturnKind.NO_OP

    native.model.vm.set_instrument(instrument)
    try:
        native.run(entry, inputs)
    finally:
        native.model.vm.set_instrument(lambda *a: 0)
    return calls


# A kernel diverges when its output is off by more than 0.1 % in relative L2 (fp32). Measured
# on SwiftShader: reordered sums stay below 1e-6, but sin/cos of large arguments (the timestep
# embedding) differ from llvm's libm by ~1e-4 relative, which later layers absorb.
REL_L2 = 1e-3


def threshold(bounds: dict | None) -> float:
    """The per-kernel bound that follows the stage's tolerance: its rel_l2, or the relative error
    its PSNR floor allows (fp16 stages), never below REL_L2 (what fp32 libm differences need)."""
    bounds = bounds or {}
    if "rel_l2" in bounds:
        return max(REL_L2, float(bounds["rel_l2"]))
    if "psnr" in bounds:
        return max(REL_L2, 10 ** (-float(bounds["psnr"]) / 20))
    return REL_L2


def diverges(expected: np.ndarray, got: np.ndarray, rel_l2: float = REL_L2) -> tuple[bool, dict]:
    if expected.dtype.kind in "iub":
        bad = int(np.count_nonzero(expected != got))
        return bad > 0, {"mismatches": bad}
    m = compare(expected, got)
    return not (m["rel_l2"] <= rel_l2) or not math.isfinite(m["rel_l2"]), m


def replay_args(args: list[np.ndarray], outputs: list[int]) -> list[np.ndarray]:
    """A recorded call's arguments for a replay: inputs as recorded, outputs zeroed (the kernel
    must write them)."""
    return [np.zeros_like(a) if i in outputs else a for i, a in enumerate(args)]


def same_kernels(native_dist: Path, webgpu_dist: Path) -> None:
    """Both builds must list the same kernels with the same arguments, or a replay of native's
    calls on WebGPU would call something else."""
    a = json.loads((Path(native_dist) / "kernels.json").read_text())
    b = json.loads((Path(webgpu_dist) / "kernels.json").read_text())
    only = sorted(set(a) ^ set(b))
    differ = sorted(k for k in set(a) & set(b) if a[k]["args"] != b[k]["args"] or a[k]["outputs"] != b[k]["outputs"])
    if only or differ:
        raise ValueError(
            "the native and webgpu builds do not list the same kernels "
            f"(in one only: {only[:5]}; different arguments: {differ[:5]}): they were not built from one module"
        )


def localize(
    native,
    webgpu,
    dist: Path,
    entry: str,
    inputs: list[np.ndarray],
    case_id: str,
    out_dir: Path,
    bounds: dict | None = None,
) -> Localized:
    same_kernels(native.dist, dist)
    kernels = json.loads((Path(dist) / "kernels.json").read_text())
    calls = native_trace(native, entry, inputs, kernels)
    limit = threshold(bounds)
    skipped: list[str] = []
    for start in range(0, len(calls), BATCH):
        batch = calls[start : start + BATCH]
        wire = [
            {
                "name": c["name"],
                "outputs": c["outputs"],
                "args": replay_args(c["args"], c["outputs"]),
            }
            for c in batch
        ]
        results = webgpu.run_kernels(wire)
        for offset, (call, outs) in enumerate(zip(batch, results, strict=True)):
            if isinstance(outs, dict):  # could not be called alone: its inputs still come from native
                skipped.append(call["name"])
                continue
            for k, index in enumerate(call["outputs"]):
                bad, metrics = diverges(call["args"][index], outs[k], limit)
                if bad:
                    repro = save_repro(out_dir, case_id, call, outs)
                    return Localized(
                        call["name"],
                        start + offset,
                        len(calls),
                        metrics,
                        repro,
                        f"first divergent kernel: {call['name']} (call {start + offset + 1} of {len(calls)} "
                        f"in {entry}); inputs saved to {repro}" + _skipped_note(skipped),
                    )
    alone = f"all {len(calls) - len(skipped)} replayable kernels of {entry} agree one by one" + _skipped_note(skipped)
    if hasattr(webgpu, "run_chain"):
        found = chained(webgpu, calls, limit, frozenset(skipped))
        if found is not None:
            index, message = found
            return Localized(
                calls[index]["name"], index, len(calls), {}, None, f"{alone}; chained on WebGPU, {message}"
            )
        alone += f"; chained on WebGPU all {len(calls)} calls agree too"
    data = data_differences(native.dist, dist)
    if data:
        return Localized(None, -1, len(calls), {}, None, f"{alone}: the fault is in data: {'; '.join(data)}")
    return Localized(
        None,
        -1,
        len(calls),
        {},
        None,
        f"{alone}; weights, sampler tables and tokenizer files match the native build's: "
        "not reproducible kernel by kernel (look at the entry's glue, the page or the runtime)",
    )


def chain_plan(calls: list[dict]) -> tuple[list[dict], list[list[int]]]:
    """GPU buffers for a chained replay, laid out as native's memory: one buffer per native
    address, as large as the largest tensor it ever holds, and each (address, shape) a view
    of it. A buffer first touched as an input starts with native's value, one first written
    starts zeroed. (An address that holds tensors of different dtypes gets one buffer per
    dtype: tvmjs views keep their base's dtype.) Returns (buffers, per call its buffer ids)."""
    largest: dict[tuple, int] = {}
    first: dict[tuple, np.ndarray | None] = {}
    for call in calls:
        for i, (addr, value) in enumerate(zip(call["addresses"], call["args"], strict=True)):
            group = (addr, str(value.dtype))
            largest[group] = max(largest.get(group, 0), value.size)
            first.setdefault(group, None if i in call["outputs"] else value)
    buffers: list[dict] = []
    base: dict[tuple, int] = {}
    for group, size in largest.items():
        flat = np.zeros(size, group[1])
        if first[group] is not None:
            flat[: first[group].size] = first[group].reshape(-1)
        base[group] = len(buffers)
        buffers.append({"init": flat, "root": len(buffers)})
    ids: dict[tuple, int] = {}
    plan = []
    for call in calls:
        arg_ids = []
        for addr, value in zip(call["addresses"], call["args"], strict=True):
            key = (addr, value.shape, str(value.dtype))
            if key not in ids:
                root = base[(addr, str(value.dtype))]
                ids[key] = len(buffers)
                buffers.append({"viewOf": root, "shape": list(value.shape), "dtype": str(value.dtype), "root": root})
            arg_ids.append(ids[key])
        plan.append(arg_ids)
    return buffers, plan


def _expected_after(
    calls: list[dict], plan: list[list[int]], buffers: list[dict], upto: int
) -> dict[int, tuple[int, int]]:
    """Buffer id -> (call, argument) whose recorded value the buffer must hold after calls[0..upto].
    Of the views over one buffer only the last one touched is compared (the others' recorded
    values are stale once their bytes were reused under another shape)."""
    last: dict[int, tuple[int, int, int]] = {}  # root -> (buffer id, call, argument)
    for c in range(upto + 1):
        for a, bid in enumerate(plan[c]):
            last[buffers[bid]["root"]] = (bid, c, a)
    return {bid: (c, a) for bid, c, a in last.values()}


def chained(webgpu, calls: list[dict], limit: float = REL_L2, unreplayable: frozenset = frozenset()):
    """Bisect the chained replay for the first call after which a GPU buffer differs from
    native's; (call index, what differs) or None when the whole chain agrees. A kernel the
    page cannot call alone (`unreplayable`) has its outputs written with native's values."""
    if not calls:
        return None
    buffers, plan = chain_plan(calls)
    wire_calls = [
        {"fill": [[ids[i], c["args"][i]] for i in c["outputs"]]}
        if c["name"] in unreplayable
        else {"name": c["name"], "args": ids}
        for c, ids in zip(calls, plan, strict=True)
    ]
    wire_buffers = [{k: v for k, v in b.items() if k != "root"} for b in buffers]

    def probe(upto: int) -> list[tuple[int, int, dict]]:
        want = _expected_after(calls, plan, buffers, upto)
        ids = sorted(want)
        got = webgpu.run_chain(wire_buffers, wire_calls, upto, ids)
        bad = []
        for bid, value in zip(ids, got, strict=True):
            c, a = want[bid]
            off, metrics = diverges(calls[c]["args"][a], value, limit)
            if off:
                bad.append((bid, c, metrics))
        return bad

    last = probe(len(calls) - 1)
    if not last:
        return None
    lo, hi, at_hi = -1, len(calls) - 1, last  # the state is clean before call 0, dirty after call hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        bad = probe(mid)
        if bad:
            hi, at_hi = mid, bad
        else:
            lo = mid
    call = calls[hi]
    written_here = {plan[hi][a] for a in call["outputs"]}
    read_here = {bid for a, bid in enumerate(plan[hi]) if a not in call["outputs"]}
    clobbered = sorted({bid for bid, _, _ in at_hi} & (read_here - written_here))
    where = f"the state first diverges after call {hi + 1} of {len(calls)} ({call['name']})"
    if clobbered:
        args = [a for a, bid in enumerate(plan[hi]) if bid in clobbered]
        return hi, (
            f"{where}: it changed its input argument(s) {args}, which it must only read "
            "(a kernel writing a buffer another kernel reads: aliasing)"
        )
    return hi, (
        f"{where}: its output differs chained though the kernel agrees alone "
        "(synchronization or runtime state between kernels)"
    )


def data_differences(native_dist: Path, webgpu_dist: Path) -> list[str]:
    """What the two builds ship differently: tensors (by name), sampler tables, tokenizer files.
    The manifests' sha256 decide first (both dists were checked whole before use): files that
    agree are not read, so builds of the same weights, whose shards are byte-identical, cost
    no I/O; only when a weight file differs are the tensors loaded and compared by name."""
    from wsd import manifest
    from wsd.params import load_shards

    ours, theirs = manifest.load(native_dist)["files"], manifest.load(webgpu_dist)["files"]

    def same(name: str) -> bool:
        return name in ours and name in theirs and ours[name]["sha256"] == theirs[name]["sha256"]

    found = []
    weights = {n for n in (*ours, *theirs) if n == "tensor-cache.json" or n.endswith(".bin")}
    if not all(same(n) for n in weights):
        native, webgpu = load_shards(Path(native_dist)), load_shards(Path(webgpu_dist))
        for name in sorted(set(native) | set(webgpu)):
            a, b = native.get(name), webgpu.get(name)
            if a is None or b is None:
                found.append(f"tensor {name} is in one build only")
            elif a.shape != b.shape:
                found.append(f"tensor {name} has shape {list(b.shape)} on webgpu, {list(a.shape)} on native")
            elif a.dtype == b.dtype and not np.array_equal(a, b):
                m = compare(a.astype("float64"), b.astype("float64"))
                found.append(f"tensor {name} differs (max_abs {m['max_abs']:.3g})")
    for name in sorted(ours):
        if name.startswith(("schedulers/", "tokenizer")) and not same(name):
            found.append(f"{name} differs")
    return found[:8]


def _skipped_note(skipped: list[str]) -> str:
    if not skipped:
        return ""
    return f" ({len(skipped)} kernel call(s) could not be replayed alone: {', '.join(sorted(set(skipped)))})"


def save_repro(out_dir: Path, case_id: str, call: dict, webgpu_outputs: list[np.ndarray]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{case_id.replace('/', '__')}__{call['name']}.npz"
    arrays = {f"arg{i}": a for i, a in enumerate(call["args"])}
    arrays.update({f"webgpu_out{k}": o for k, o in enumerate(webgpu_outputs)})
    np.savez_compressed(path, kernel=np.array(call["name"]), outputs=np.array(call["outputs"]), **arrays)
    return path


def load_repro(path: Path) -> dict:
    """{name, outputs, args (native outputs in place), webgpu_outputs} from save_repro's file."""
    with np.load(path) as data:
        args = [data[f"arg{i}"] for i in range(sum(k.startswith("arg") for k in data.files))]
        webgpu = [data[k] for k in sorted(k for k in data.files if k.startswith("webgpu_out"))]
        return {
            "name": str(data["kernel"]),
            "outputs": [int(i) for i in data["outputs"]],
            "args": args,
            "webgpu": webgpu,
        }


def case_inputs(case, inputs) -> list[np.ndarray]:
    """The entry point's arguments that replay a failing case kernel by kernel."""
    from conformance.stages import entry_args

    if case.stage.name == "scheduler":  # the first step of the loop reproduces a step fault
        noise, eps = inputs[:2]
        zeros = np.zeros_like(noise)
        return [noise, eps[0], zeros, zeros, zeros, zeros, np.ones(8, "float32")]
    return entry_args(inputs)
