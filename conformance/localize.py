"""Kernel-by-kernel localization of a WebGPU-only failure.

The native build runs the failing case with the Relax VM instrumented: every compiled
kernel call is recorded with its arguments after the call (inputs unchanged, outputs
written; destination-passing style). Each recorded call is then replayed alone on WebGPU
with the same inputs, and the first kernel whose outputs diverge is named. Its inputs and
the native outputs are saved as an .npz, so the failure reproduces without the model.
"""

from __future__ import annotations

import json
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
    calls: list[dict] = []

    def instrument(func, symbol, before_run, ret_value, *args):
        if not before_run and symbol in kernels:
            calls.append(
                {
                    "name": symbol,
                    "args": [a.numpy().copy() for a in args],
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


# A kernel diverges when its output is off by more than 0.1 % in relative L2. Measured on
# SwiftShader: reordered sums stay below 1e-6, but sin/cos of large arguments (the timestep
# embedding) differ from llvm's libm by ~1e-4 relative, which later layers absorb.
REL_L2 = 1e-3


def diverges(expected: np.ndarray, got: np.ndarray) -> tuple[bool, dict]:
    if expected.dtype.kind in "iub":
        bad = int(np.count_nonzero(expected != got))
        return bad > 0, {"mismatches": bad}
    m = compare(expected, got)
    return not (m["rel_l2"] <= REL_L2), m


def replay_args(args: list[np.ndarray], outputs: list[int]) -> list[np.ndarray]:
    """A recorded call's arguments for a replay: inputs as recorded, outputs zeroed (the kernel
    must write them)."""
    return [np.zeros_like(a) if i in outputs else a for i, a in enumerate(args)]


def localize(
    native, webgpu, dist: Path, entry: str, inputs: list[np.ndarray], case_id: str, out_dir: Path
) -> Localized:
    kernels = json.loads((Path(dist) / "kernels.json").read_text())
    calls = native_trace(native, entry, inputs, kernels)
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
                bad, metrics = diverges(call["args"][index], outs[k])
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
    return Localized(
        None,
        -1,
        len(calls),
        {},
        None,
        f"all {len(calls) - len(skipped)} replayable kernels of {entry} agree one by one: "
        "the fault is in data (weights, tables, inputs), not in a kernel" + _skipped_note(skipped),
    )


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
