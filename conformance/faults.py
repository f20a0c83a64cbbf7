"""Faults injected into a built model to prove the harness catches them.

Each fault copies the webgpu build (changed files are rewritten, never edited in place, so
the build cache stays whole), breaks one thing the way a real bug would, and re-signs the
manifest (the bug is in what was built, not a tampered download). `expect` is the stage
that must fail ("load": the model must refuse to open, naming the kernel), `kernel`
whether the failure must name the injected kernel.

Four are WebGPU's own failure classes, written into the built WGSL the way a codegen bug
would emit it: a missing workgroup barrier (a race), a storage buffer typed `array<i8>`
(how TVM stores booleans; WGSL has no 8-bit type), workgroup memory over the device's
limit, and a kernel that also writes into a buffer it should only read (two kernels
aliasing one buffer: each kernel alone is right, the chain is not).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from wsd import manifest as manifests
from wsd.cache import copy_file


@dataclass(frozen=True)
class Fault:
    name: str
    expect: str  # the case (stage[/variant]) that must fail
    what: str
    apply: Callable[[Path, Path], Path] | Rebuilt  # (clean webgpu dist, work folder) -> faulted dist
    kernel: bool = False  # localization must name the injected kernel
    webgpu_only: bool = False  # written into the WGSL: a native build has nothing to break
    families: tuple[str, ...] = ()  # the model families it applies to; empty: every family
    # breaks what only one kind of model has ("inpainting", "lcm"), gated on such a folder; "": any
    model_kind: str = ""
    perf: bool = False  # the results stay right, only the time changes: the perf gate (--perf) catches it

    @property
    def inject(self) -> str:
        """The `wsd build --inject` spec a rebuilt fault is made with ("" for a dist edit)."""
        return f"{self.name}@{self.apply.entry}" if self.rebuilds else ""

    @property
    def shared_code(self) -> bool:
        """A bug in a Python helper of the product (wsd/faults.py SHARED_CODE_FAULTS): it is in every
        build and in the gate's own inputs, so the gate runs with it patched in (`patched`)."""
        from wsd.faults import SHARED_CODE_FAULTS

        return self.rebuilds and self.name in SHARED_CODE_FAULTS

    def patched(self):
        """A context in which the product's code carries the fault (nothing for other faults)."""
        from wsd.faults import shared_code

        return shared_code((self.inject,) if self.shared_code else ())

    def applies_to(self, family: str, model_kind: str = "") -> bool:
        return (not self.families or family in self.families) and self.model_kind == model_kind

    @property
    def rebuilds(self) -> bool:
        """Rebuilt from source (`Rebuilt`), so it can compile fewer entry points."""
        return isinstance(self.apply, Rebuilt)

    def make(self, dist: Path, work: Path, narrow: bool = False) -> Path:
        """The faulted dist. `narrow`: a fault rebuilt from source compiles only the entry points
        its expected stage calls (a minute less per fault; stages that need others then skip)."""
        if not self.rebuilds:
            return self.apply(dist, work)
        if not narrow:
            return self.apply(self.name, dist, work)
        from conformance.stages import STAGES

        stage = next(s for s in STAGES if s.name == self.expect.split("/")[0])
        return self.apply(self.name, dist, work, entries=stage.required())


def copy_dist(dist: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(dist, dest, copy_function=lambda src, dst: copy_file(Path(src), Path(dst)))
    return dest


def rewrite(path: Path, data: bytes) -> None:
    path.unlink()  # a new file, never an edit of one another folder might share
    path.write_bytes(data)


def injected_kernel(dist: Path) -> str | None:
    """The kernel a faulted build's fault was written into (its manifest says), if any."""
    return next(iter(manifests.load(dist).get("injected_faults", {}).values()), None)


def resign(dist: Path, injected: dict[str, str] | None = None) -> None:
    if injected:
        injected = {**manifests.load(dist).get("injected_faults", {}), **injected}
        manifests.resign(dist, injected_faults=injected)
    else:
        manifests.resign(dist)


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


def reused_step_noise(dist: Path, work: Path) -> Path:
    """Euler Ancestral's fresh noise drawn on the first step only: the loop keeps adding that
    step's noise (history slot 1 is never refilled), as a loop caching its noise tensor would."""
    out = copy_dist(dist, work / "reused-step-noise")

    def change(t):
        t["noise"] = [i == 0 for i in range(len(t["noise"]))]

    for steps in (4, 10):
        _edit_table(out, f"euler-a-{steps}.json", change)
    resign(out)
    return out


def late_img2img_noise(dist: Path, work: Path) -> Path:
    """img2img's starting latents noised to the next row's timestep (strength off by one step)."""
    out = copy_dist(dist, work / "late-img2img-noise")

    def change(t):
        t["add_noise"] = [*t["add_noise"][1:], t["add_noise"][-1]]

    for path in sorted((out / "schedulers").glob("*-4.json")):
        _edit_table(out, path.name, change)
    resign(out)
    return out


def restart_ignored(dist: Path, work: Path) -> Path:
    """An img2img loop that takes the full table's rows from its starting step on: DPM-Solver++'s
    first step there is second order, reading a previous prediction it never made."""
    out = copy_dist(dist, work / "restart-ignored")

    def change(t):
        t["restarts"] = {}

    for steps in (4, 10):
        _edit_table(out, f"dpm-solver++-{steps}.json", change)
    resign(out)
    return out


@dataclass(frozen=True)
class Rebuilt:
    """A fault rebuilt from source with `wsd build --inject NAME@ENTRY`: the fault's own name is
    the kind wsd/faults.py knows (one list of names), `entry` the entry point it breaks."""

    entry: str

    def __call__(self, name: str, dist: Path, work: Path, entries: tuple[str, ...] = ()) -> Path:
        from wsd.build import BuildOptions, build

        built = manifests.load(dist)
        inject = (f"{name}@{self.entry}",)
        opts = BuildOptions(built["model"], random_init=True, target=built["target"], inject=inject, entries=entries)
        return build(opts, work / name, echo=lambda *_: None, progress=False).out


def swapped_time_ids(dist: Path, work: Path) -> Path:
    """SDXL's add_time_ids in the generation plan with the crop and the target size swapped
    (the order diffusers concatenates them in: original size, crop top-left, target size)."""
    out = copy_dist(dist, work / "swapped-time-ids")
    plan = manifests.load(out)["generation"]
    ids = plan["constants"]["time_ids"]["data"]
    for half in (0, 6):
        ids[half + 2 : half + 4], ids[half + 4 : half + 6] = ids[half + 4 : half + 6], ids[half + 2 : half + 4]
    manifests.resign(out, generation=plan)  # the copy's own manifest (copy_dist made private files)
    return out


def lora_misrouted(dist: Path, work: Path) -> Path:
    """The manifest's LoRA table with each self-attention's query and key weights swapped (one shape,
    so the merge goes through with wrong numbers): a LoRA's query matrices land on the key weights."""
    out = copy_dist(dist, work / "lora-misrouted")
    table = manifests.load(out)["lora"]
    rows = {row["name"]: row for row in table["layers"]}
    for name, row in rows.items():
        for q, k in ((".attn1.to_q", ".attn1.to_k"), (".self_attn.q_proj", ".self_attn.k_proj")):
            other = rows.get(name.removesuffix(q) + k) if name.endswith(q) else None
            if other:
                row["params"], other["params"] = other["params"], row["params"]
    manifests.resign(out, lora=table)
    return out


def wrong_tokenizer_merge(dist: Path, work: Path) -> Path:
    out = copy_dist(dist, work / "wrong-tokenizer-merge")
    path = out / "tokenizer" / "merges.txt"
    lines = path.read_text().split("\n")
    first = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    del lines[first]  # the highest-priority merge lost: a tokenizer file from another vocabulary
    rewrite(path, "\n".join(lines).encode())
    resign(out)
    return out


def wrong_input_scale(dist: Path, work: Path) -> Path:
    out = copy_dist(dist, work / "wrong-input-scale")

    def change(t):
        t["input_scale"][2] *= 1.02  # Euler's scale_model_input 2 % off on one step

    _edit_table(out, "euler-10.json", change)
    resign(out)
    return out


# --- WGSL-level faults: the shader a kernel ships with, as a codegen bug would have emitted it ---


def _fit(text: str, size: int) -> bytes:
    """`text` as exactly `size` bytes: indentation dropped if too long, spaces appended if short
    (the wasm holds each shader as a length-prefixed string; keeping its length keeps every
    other offset in the file)."""
    data = text.encode()
    if len(data) > size:
        data = re.sub(rb"\n[ ]+", b"\n", data)
    if len(data) > size:
        raise LookupError(f"the patched shader is {len(data) - size} bytes longer than the original")
    return data + b" " * (size - len(data))


def patch_shader(dist: Path, shader: str, change, writable: int | None = None) -> None:
    """Rewrite one kernel's WGSL in the built wasm and in shaders/wgsl.json; with `writable`,
    also mark that buffer argument written in the kernel's launch info (tvmjs binds it
    read-write then)."""
    table_path = dist / "shaders" / "wgsl.json"
    shaders = json.loads(table_path.read_text())
    code = change(shaders[shader])
    lib = dist / manifests.load(dist)["library"]
    wasm = bytearray(lib.read_bytes())
    at = wasm.find(f"\n// Function: {shader}\n".encode())
    if at < 0:
        raise LookupError(f"{shader}'s source is not in {lib.name}")
    start = wasm.rfind(b"//", 0, at)  # the dashes line above the header
    (size,) = struct.unpack("<Q", wasm[start - 8 : start])
    wasm[start : start + size] = _fit(f"//-\n// Function: {shader}\n//-\n{code}", size)
    if writable is not None:
        name = shader.encode()
        entry = wasm.find(struct.pack("<Q", len(name)) + name + struct.pack("<Q", len(name)) + name)
        tag = wasm.find(b"paramWriteAccess:[", entry)
        end = wasm.find(b"]", tag)
        access = json.loads(wasm[tag + 17 : end + 1])
        access[writable] = 1
        wasm[tag + 17 : end + 1] = _fit(json.dumps(access, separators=(",", ":")), end + 1 - tag - 17)
    rewrite(lib, bytes(wasm))
    shaders[shader] = code
    rewrite(table_path, json.dumps(shaders, sort_keys=True).encode())


def _kernels_of(dist: Path, entry: str, shader_has: str) -> list[tuple[str, str, dict, str]]:
    """(kernel, shader, signature, WGSL) of `entry`'s kernels whose WGSL contains `shader_has`, by name."""
    table = json.loads((dist / "kernels.json").read_text())
    shaders = json.loads((dist / "shaders" / "wgsl.json").read_text())
    found = []
    for kernel, info in sorted(table.items()):
        shader = f"{kernel}_kernel"
        if entry in info.get("entries", []) and shader in shaders and shader_has in shaders[shader]:
            found.append((kernel, shader, info, shaders[shader]))
    if not found:
        raise LookupError(f"no kernel of {entry} has {shader_has!r} in its WGSL")
    return found


def missing_barrier(dist: Path, work: Path) -> Path:
    out = copy_dist(dist, work / "missing-barrier")
    # A tiled conv of the UNet: threads fill a shared tile, then read each other's part of it.
    kernel, shader, *_ = next(
        k for k in _kernels_of(out, "unet", "workgroupBarrier();") if k[0].startswith("fused_conv2d")
    )
    patch_shader(out, shader, lambda code: code.replace("workgroupBarrier();", "//rkgroupBarrier();"))
    resign(out, {"missing-barrier": kernel})
    return out


def bool_as_i8(dist: Path, work: Path) -> Path:
    out = copy_dist(dist, work / "bool-as-i8")
    candidates = _kernels_of(out, "clip", ": array<i32>;")
    kernel, shader, *_ = candidates[0]
    patch_shader(out, shader, lambda code: code.replace(": array<i32>;", ": array<i8>; ", 1))
    resign(out, {"bool-as-i8": kernel})
    return out


_WORKGROUP_ARRAY = re.compile(r"(var<workgroup> \w+ ?: array<f32, )(\d+)>;")


def workgroup_over_limit(dist: Path, work: Path) -> Path:
    out = copy_dist(dist, work / "workgroup-over-limit")
    # 40 000 bytes of workgroup memory: over WebGPU's default (16 KiB) and SwiftShader's 32 KiB.
    found = [k for k in _kernels_of(out, "unet", "var<workgroup>") if _WORKGROUP_ARRAY.search(k[3])]
    if not found:
        raise LookupError("no kernel of unet declares a workgroup array<f32, N>")
    kernel, shader, *_ = found[0]
    patch_shader(out, shader, lambda code: _WORKGROUP_ARRAY.sub(r"\g<1>10000>;", code, count=1))
    resign(out, {"workgroup-over-limit": kernel})
    return out


_STORE = re.compile(r"^([ ]*)(\w+_ptr)\[([^\]\n]+)\] = ([^\n]+);$", re.M)


def _clobber_targets(kernel: str, info: dict, code: str) -> list[int]:
    """Inputs `kernel` could overwrite with its result without changing that result: each
    invocation reads the input at the index it stores to (so no other invocation reads that
    element), the input has the output's shape and dtype, and another kernel reads it too
    (kernels.json `readers`), so that only a later reader sees the damage."""
    args, outputs = info["args"], info["outputs"]
    store = _STORE.search(code)
    if len(outputs) != 1 or not store or re.fullmatch(r"reshape\d*", kernel):
        return []  # (a reshape writes back the values it read)
    out, index = args[outputs[0]], store.group(3)
    return [
        i
        for i, a in enumerate(args)
        if i != outputs[0]
        and a.get("readers", 0) >= 2
        and (a["shape"], a["dtype"]) == (out["shape"], out["dtype"])
        and f"{a['name']}_ptr[{index}]" in code
    ]


def clobbered_input(dist: Path, work: Path) -> Path:
    """An elementwise kernel of the UNet that also writes its result back into an input, as an
    in-place buffer reuse gone wrong would: its own output is right, its input's later readers
    get the wrong values. Preferred: the SiLU of the time embedding, which every ResNet block
    reads (a build without --cse); else a GroupNorm-and-SiLU kernel, whose input the block's
    residual add reads later (with --cse the SiLU of the time embedding is taken once, inside
    the time MLP)."""
    out = copy_dist(dist, work / "clobbered-input")
    candidates = []
    for kernel, shader, info, code in _kernels_of(out, "unet", "var<storage, read> "):
        for arg in _clobber_targets(kernel, info, code):
            # one-input kernels first (the SiLU of the time embedding without CSE), SiLUs first
            rank = (len(info["args"]) > 2, "sigmoid" not in kernel)
            candidates.append((rank, kernel, shader, code, info["args"][arg]["name"] + "_ptr"))
    if not candidates:
        raise LookupError("no elementwise kernel of unet reads a value that another kernel reads too")
    # the first whose patched WGSL still fits its place in the wasm (patch_shader refuses others)
    # (a refused patch writes nothing: each candidate's WGSL is still the one read above)
    for _, kernel, shader, code, source in sorted(candidates):
        declared = re.search(rf"@binding\((\d+)\) var<storage, read> {source}\b", code)
        try:  # the launch info indexes bindings
            patch_shader(out, shader, partial(_write_back, source), writable=int(declared.group(1)))
        except LookupError:
            continue
        resign(out, {"clobbered-input": kernel})
        return out
    raise LookupError(f"none of the {len(candidates)} kernels that could clobber an input has room for the extra store")


def _write_back(source: str, code: str) -> str:
    """`code` that also stores its first result into `source` at the same index."""
    code = code.replace(f"var<storage, read> {source}", f"var<storage, read_write> {source}", 1)
    store = _STORE.search(code)
    indent, target, index, _ = store.groups()
    extra = f"\n{indent}{source}[{index}] = {target}[{index}];"
    return code[: store.end()] + extra + code[store.end() :]


def _conv_cost(info: dict) -> int:
    """Multiply-adds of a conv kernel: output elements x its weight's reduction (channels x window)."""
    out = info["args"][info["outputs"][0]]["shape"]
    weights = [a["shape"] for a in info["args"] if len(a["shape"]) == 4 and a["shape"][0] == out[1] != 1]
    return math.prod(out) * max((math.prod(w[1:]) for w in weights), default=1)


def _twice(code: str, entry: str) -> str:
    """The entry point's body run twice over: the same writes of the same values, twice the work."""
    head = re.search(rf"fn {entry}\([^{{]*\) \{{\n", code)
    end = code.rstrip().rfind("}")
    if head is None or end < head.end():
        raise LookupError(f"{entry}: no entry point body found in its WGSL")
    loop = "for (var wsd_twice = 0u; wsd_twice < 2u; wsd_twice++) {\n"
    return f"{code[: head.end()]}{loop}{code[head.end() : end]}}}\n}}\n"


def slow_kernel(dist: Path, work: Path) -> Path:
    """A schedule regression: the UNet's costliest conv does its work twice (right results, 2x its
    time). Nothing but time changes, so only the perf gate sees it."""
    out = copy_dist(dist, work / "slow-kernel")
    convs = [(k, s, info) for k, s, info, _ in _kernels_of(out, "unet", "fn ") if k.startswith("fused_conv2d")]
    kernel, shader, _ = max(convs, key=lambda k: _conv_cost(k[2]))
    patch_shader(out, shader, lambda code: _twice(code, shader))
    resign(out, {"slow-kernel": kernel})
    return out


FAULTS: tuple[Fault, ...] = (
    Fault("perturbed-shard", "unet", "a UNet weight 2 % off in its shard", perturbed_shard),
    Fault("wrong-scheduler-constant", "scheduler/ddim", "one DDIM coefficient 1 % off", wrong_scheduler_constant),
    Fault("dropped-bias", "clip", "a CLIP kernel that drops its bias add", Rebuilt("clip"), kernel=True),
    Fault("transposed-layout", "clip", "a square CLIP weight stored transposed", transposed_layout),
    Fault("off-by-one-timestep", "pipeline", "every DPM-Solver++ timestep one too high", off_by_one_timestep),
    Fault("wrong-tokenizer-merge", "tokenizer", "the first BPE merge missing from merges.txt", wrong_tokenizer_merge),
    Fault("wrong-guidance-scale", "unet", "CFG's guidance applied 10 % too strong", Rebuilt("unet"), kernel=True),
    Fault("wrong-input-scale", "scheduler/euler", "Euler's scale_model_input 2 % off on one step", wrong_input_scale),
    Fault(
        "reused-step-noise",
        "scheduler/euler-a",
        "Euler Ancestral adding step 0's noise on every step",
        reused_step_noise,
    ),
    Fault(
        "late-img2img-noise",
        "pipeline/img2img-euler-a-4-s0.6",
        "img2img's starting latents noised to the next step's timestep (strength off by one step)",
        late_img2img_noise,
    ),
    Fault(
        "restart-ignored",
        "pipeline/img2img-dpm-solver++-4-s0.5",
        "an img2img DPM-Solver++ loop that does not restart its history (second order on its first step)",
        restart_ignored,
    ),
    Fault(
        "mask-inverted",
        "pipeline/inpaint-dpm-solver++-4",
        "an inpainting UNet given the mask inverted (it repaints what it should keep)",
        Rebuilt("unet"),
        model_kind="inpainting",
    ),
    Fault(
        "lcm-guidance-unshifted",
        "pipeline/lcm-4",
        "an LCM-distilled UNet's guidance embedded as g instead of g - 1",
        Rebuilt("unet"),
        model_kind="lcm",
    ),
    Fault(
        "lora-misrouted",
        "pipeline/lora-dpm-solver++-4",
        "a LoRA's query matrices merged into the key weights and back (the manifest's LoRA table misrouted)",
        lora_misrouted,
    ),
    Fault(
        "last-hidden-state",
        "clip",
        "SDXL's text embeddings from the encoders' last hidden state, not the penultimate",
        Rebuilt("clip"),
        families=("sdxl",),
    ),
    Fault(
        "pooled-from-first-encoder",
        "clip",
        "SDXL's pooled embeddings from the first encoder instead of the second's projection",
        Rebuilt("clip"),
        families=("sdxl",),
    ),
    Fault(
        "swapped-time-ids",
        "pipeline",
        "SDXL's time ids with the crop and the target size swapped",
        swapped_time_ids,
        families=("sdxl",),
    ),
    Fault(
        "sampler-defaults",
        "scheduler/dpm-solver++",
        "samplers made from the folder's config with its class's defaults kept (PNDM's leading spacing)",
        Rebuilt("scheduler_step"),
        families=("sd15",),  # SDXL's published config states its spacing: the merge changes nothing there
    ),
    Fault("cfg-swapped", "unet", "classifier-free guidance reading the UNet's two halves swapped", Rebuilt("unet")),
    Fault(
        "time-ids-of-latents",
        "unet",
        "SDXL's add_time_ids from the latents' size, not the image's",
        Rebuilt("unet"),
        families=("sdxl",),
    ),
    Fault(
        "loader-drops-steps-offset",
        "scheduler",
        "the folder loader dropping the scheduler config's steps_offset",
        Rebuilt("scheduler_step"),
    ),
    Fault(
        "prediction-swapped",
        "scheduler",
        "the folder loader reading prediction_type the other way round (epsilon <-> v_prediction)",
        Rebuilt("scheduler_step"),
    ),
    Fault(
        "missing-barrier",
        "unet",
        "a tiled UNet conv without its barriers (a race)",
        missing_barrier,
        kernel=True,
        webgpu_only=True,
    ),
    Fault(
        "bool-as-i8",
        "load",
        "a CLIP kernel's buffer typed array<i8> (no 8-bit WGSL type)",
        bool_as_i8,
        kernel=True,
        webgpu_only=True,
    ),
    Fault(
        "workgroup-over-limit",
        "load",
        "a UNet kernel asking 40 000 bytes of workgroup memory (over the device's limit)",
        workgroup_over_limit,
        kernel=True,
        webgpu_only=True,
    ),
    Fault(
        "slow-kernel",
        "unet/t981-g7.5",
        "the UNet's costliest conv doing its work twice (a schedule 2x slower, the same results)",
        slow_kernel,
        kernel=True,
        webgpu_only=True,
        perf=True,
    ),
    Fault(
        "clobbered-input",
        "unet",
        "a UNet kernel that also writes into the buffer it reads (aliasing; right alone, wrong chained)",
        clobbered_input,
        kernel=True,
        webgpu_only=True,
    ),
)


def get(name: str) -> Fault:
    for fault in FAULTS:
        if fault.name == name:
            return fault
    raise KeyError(f"unknown fault {name!r}; known: {', '.join(f.name for f in FAULTS)}")
