"""Faults injected into a built model to prove the harness catches them.

Each fault copies the webgpu build (hard links; changed files are rewritten, never edited
in place, so the build cache stays whole), breaks one thing the way a real bug would, and
re-signs the manifest (the bug is in what was built, not a tampered download). `expect`
is the stage that must fail, `kernel` whether localization must name a kernel.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsd import manifest as manifests
from wsd.cache import copy_file


@dataclass(frozen=True)
class Fault:
    name: str
    expect: str  # the case (stage[/variant]) that must fail
    what: str
    apply: Callable[[Path, Path], Path]  # (clean webgpu dist, work folder) -> faulted dist
    kernel: bool = False  # localization must name the injected kernel


def copy_dist(dist: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(dist, dest, copy_function=lambda src, dst: copy_file(Path(src), Path(dst)))
    return dest


def rewrite(path: Path, data: bytes) -> None:
    path.unlink()  # a new file, never an edit of one another folder might share
    path.write_bytes(data)


def resign(dist: Path) -> None:
    body = {k: v for k, v in manifests.load(dist).items() if k not in ("files", "format")}
    manifests.write(dist, body)


def _tensor(dist: Path, predicate) -> tuple[Path, dict, int]:
    """(shard path, record, byte offset) of the first tensor whose record matches."""
    cache = json.loads((dist / "tensor-cache.json").read_text())
    for shard in cache["records"]:
        for rec in shard["records"]:
            if predicate(rec):
                return dist / shard["dataPath"], rec, rec["byteOffset"]
    raise LookupError("no tensor matches")


def _edit_tensor(dist: Path, predicate, change) -> None:
    path, rec, offset = _tensor(dist, predicate)
    data = bytearray(path.read_bytes())
    arr = np.frombuffer(bytes(data[offset : offset + rec["nbytes"]]), rec["dtype"]).reshape(rec["shape"]).copy()
    new = np.ascontiguousarray(change(arr).astype(rec["dtype"]))
    data[offset : offset + rec["nbytes"]] = new.tobytes()
    rewrite(path, bytes(data))
    cache_path = dist / "tensor-cache.json"
    cache = json.loads(cache_path.read_text())
    for shard in cache["records"]:
        if shard["dataPath"] == path.name:
            shard["md5sum"] = hashlib.md5(bytes(data), usedforsecurity=False).hexdigest()
    rewrite(cache_path, json.dumps(cache).encode())


def perturbed_shard(dist: Path, work: Path) -> Path:
    out = copy_dist(dist, work / "perturbed-shard")
    # A conv weight of the UNet, 2 % off: a converter that rescaled a tensor.
    _edit_tensor(out, lambda r: r["name"].startswith("unet_") and len(r["shape"]) == 4, lambda a: a * 1.02)
    resign(out)
    return out


def transposed_layout(dist: Path, work: Path) -> Path:
    out = copy_dist(dist, work / "transposed-layout")
    # A square projection of the text encoder written transposed (row- vs column-major).
    _edit_tensor(
        out,
        lambda r: r["name"].startswith("clip_") and len(r["shape"]) == 2 and r["shape"][0] == r["shape"][1],
        lambda a: a.T,
    )
    resign(out)
    return out


def _edit_table(dist: Path, name: str, change) -> None:
    path = dist / "schedulers" / name
    table = json.loads(path.read_text())
    change(table)
    rewrite(path, json.dumps(table).encode())


def wrong_scheduler_constant(dist: Path, work: Path) -> Path:
    out = copy_dist(dist, work / "wrong-scheduler-constant")

    def change(t):
        t["coeffs"][3][0] *= 1.01  # one coefficient of one DDIM step, 1 % off

    _edit_table(out, "ddim-10.json", change)
    resign(out)
    return out


def off_by_one_timestep(dist: Path, work: Path) -> Path:
    out = copy_dist(dist, work / "off-by-one-timestep")

    def change(t):
        t["timesteps"] = [x + 1 for x in t["timesteps"]]

    for steps in (4, 10):
        _edit_table(out, f"dpm-solver++-{steps}.json", change)
    resign(out)
    return out


def _rebuilt_with(spec: str, folder: str):
    def apply(dist: Path, work: Path) -> Path:
        from wsd.build import BuildOptions, build

        built = manifests.load(dist)
        opts = BuildOptions(built["model"], random_init=True, target=built["target"], inject=(spec,))
        return build(opts, work / folder, echo=lambda *_: None, progress=False).out

    return apply


# A kernel of the text encoder that forgets its bias: rebuilt with `--inject drop-bias@clip`.
dropped_bias = _rebuilt_with("drop-bias@clip", "dropped-bias")
# CFG's scale applied 10 % too strong inside the UNet: `--inject guidance-scale@unet`.
wrong_guidance_scale = _rebuilt_with("guidance-scale@unet", "wrong-guidance-scale")


def wrong_tokenizer_merge(dist: Path, work: Path) -> Path:
    out = copy_dist(dist, work / "wrong-tokenizer-merge")
    path = out / "tokenizer" / "merges.txt"
    lines = path.read_text().split("\n")
    first = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    del lines[first]  # the highest-priority merge lost: a tokenizer file from another vocabulary
    rewrite(path, "\n".join(lines).encode())
    resign(out)
    return out


FAULTS: tuple[Fault, ...] = (
    Fault("perturbed-shard", "unet", "a UNet weight 2 % off in its shard", perturbed_shard),
    Fault("wrong-scheduler-constant", "scheduler/ddim", "one DDIM coefficient 1 % off", wrong_scheduler_constant),
    Fault("dropped-bias", "clip", "a CLIP kernel that drops its bias add", dropped_bias, kernel=True),
    Fault("transposed-layout", "clip", "a square CLIP weight stored transposed", transposed_layout),
    Fault("off-by-one-timestep", "pipeline", "every DPM-Solver++ timestep one too high", off_by_one_timestep),
    Fault("wrong-tokenizer-merge", "tokenizer", "the first BPE merge missing from merges.txt", wrong_tokenizer_merge),
    Fault("wrong-guidance-scale", "unet", "CFG's guidance applied 10 % too strong", wrong_guidance_scale, kernel=True),
)


def get(name: str) -> Fault:
    for fault in FAULTS:
        if fault.name == name:
            return fault
    raise KeyError(f"unknown fault {name!r}; known: {', '.join(f.name for f in FAULTS)}")
