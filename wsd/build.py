"""`wsd build`: a diffusers folder in, a servable WebGPU bundle (or a native module) out.

Phases, in order: load (or write and load a seeded random folder), capture (torch.export
-> Relax per entry point), passes (wsd.passes), build (relax.build), validate (every WGSL
shader through Dawn), link (the .wasm against the web runtime kit), params (tensor-cache
shards), then the schedulers' tables, the tokenizer files and the manifest. The result is
cached by a key of every input, so an unchanged rebuild is a copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wsd import cache, manifest, models, versions
from wsd.errors import BuildError, WsdError
from wsd.passes.options import DTYPES, PassOptions
from wsd.progress import Phases

SUBGROUP_SHADERS = "shaders/subgroup-matrix.json"  # --subgroup-matrix: entry point -> WGSL the page swaps in
TILED_SHADERS = "shaders/tiled-gemm.json"  # the same GEMMs for devices without subgroup matrices
TARGETS = ("webgpu", "llvm")
# What the compiled output depends on besides its inputs: the compiler's own files, by glob (a new
# pass file changes the key without anyone listing it). The CLI, the server and the harness's
# helpers are not here: they do not change what a build writes.
COMPILER_SOURCES = (
    "capture.py",
    "compat.py",
    "entries.py",
    "params.py",
    "schedulers.py",
    "build.py",
    "wgsl.py",
    "manifest.py",
    "requirements.py",
    "faults.py",
    "kernels.py",
    "tiled_gemm.py",
    "generation.py",
    "lora.py",
    "weights.py",
    "passes/*.py",
    "models/*.py",
    "js/validate_wgsl.js",
)


@dataclass(frozen=True)
class BuildOptions:
    model: str | None  # a preset (random-init) or the family of --weights; None: from model_index.json
    weights: str | None = None  # a diffusers folder; None with random_init
    random_init: bool = False
    seed: int = 0
    dtype: str = "float32"
    target: str = "webgpu"
    tune_db: str | None = None
    validate_pipelines: bool = False  # also create every compute pipeline (slow on SwiftShader)
    entries: tuple[str, ...] = ()  # empty: all of the model's entry points
    inject: tuple[str, ...] = ()  # faults for the harness's self-test (wsd/faults.py)
    image_size: int | None = None  # None: the preset's, or the folder's UNet sample_size x VAE scale
    name: str | None = None  # the dist folder's name; None: the preset's, or the weights folder's name
    allow_fallback: bool = False  # let dlight's Fallback schedule large reductions (slow) instead of failing
    max_binding: int | None = None  # bytes: fail, naming the kernel, when a kernel binds a bigger buffer
    subgroup_matrix: bool = False  # GEMMs as tensor-core WGSL the page swaps in where the device has it
    # comparison builds (benchmarks on a GPU); wsd.passes.options says what each does
    split_k: bool = True
    fused_attention: bool = False
    cse: bool = True
    matmul_tile: str | None = None
    matmul_unroll: int | None = None

    @property
    def passes(self) -> PassOptions:
        """The knobs the compiler passes read (the rest is what to build, not how)."""
        names = {f.name for f in dataclasses.fields(PassOptions)}
        return PassOptions(**{k: v for k, v in asdict(self).items() if k in names})


@dataclass
class BuildResult:
    out: Path
    manifest: dict
    cached: bool
    times: dict = field(default_factory=dict)
    entry: Path | None = None  # the cache entry the dist was published from (read-only)


def resolve_spec(opts: BuildOptions):
    """The spec a build compiles: a preset for --random-init; for --weights, the folder's own
    configs (wsd.models.from_folder), checked before anything is traced."""
    from wsd.models.from_folder import family_of, spec_from_folder

    if opts.weights:
        folder = Path(opts.weights)
        if opts.model:
            preset = models.get(opts.model)
        elif (folder / "model_index.json").is_file():
            preset = models.family_preset(family_of(folder))
        else:
            raise WsdError(f"{folder}/model_index.json is missing: give the family with --model (sd15)")
        return spec_from_folder(folder, preset, name=opts.name or opts.model, image_size=opts.image_size)
    if not opts.model:
        raise WsdError("--random-init needs --model (one of: " + ", ".join(sorted(models.MODELS)) + ")")
    spec = models.get(opts.model)
    if opts.image_size is not None or opts.name:
        multiple = spec.vae_scale * 2 ** (len(spec.unet.config["block_out_channels"]) - 1)
        size = opts.image_size or spec.image_size
        if size <= 0 or size % multiple:
            raise WsdError(f"--image-size {size}: {spec.name} needs a positive multiple of {multiple}")
        spec = dataclasses.replace(spec, image_size=size, name=opts.name or spec.name)
    return spec


def check_options(opts: BuildOptions):
    if bool(opts.weights) == bool(opts.random_init):
        raise WsdError("give exactly one of --weights DIR (a diffusers folder) or --random-init")
    if opts.weights and not Path(opts.weights).is_dir():
        raise WsdError(f"--weights {opts.weights}: folder does not exist")
    spec = resolve_spec(opts)
    if opts.matmul_tile is not None:
        from wsd.passes.matmul_schedule import pinned_tile

        pinned_tile(opts.matmul_tile)
    if opts.dtype not in DTYPES:
        raise WsdError(f"unsupported dtype {opts.dtype!r}; supported: {', '.join(DTYPES)}")
    if opts.target not in TARGETS:
        raise WsdError(f"unsupported target {opts.target!r}; supported: {', '.join(TARGETS)}")
    from wsd import faults

    for fault in opts.inject:
        faults.parse(fault)
    if opts.tune_db and not Path(opts.tune_db).is_dir():
        raise WsdError(f"--tune-db {opts.tune_db}: not a MetaSchedule database folder")
    return spec


def target_of(name: str):
    from wsd import compat

    return compat.webgpu_target() if name == "webgpu" else compat.llvm_target()


def random_folder(spec, seed: int, echo=print) -> Path:
    """The seeded random diffusers folder for a spec, written once into the cache."""
    from wsd.models.folder import write_random

    inputs = {"config": spec.weights_hash(), "seed": seed, "versions": _lib_versions(), "recipe": 3}

    def build(out: Path) -> list[str]:
        write_random(spec, out, seed)
        return [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]

    return cache.get_or_build(f"random-{spec.name}", inputs, build, echo=echo)


def _lib_versions() -> dict:
    import diffusers
    import torch
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}


def folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != cache.MANIFEST):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(cache.sha256_file(path).encode())
    return digest.hexdigest()


def build_key_inputs(opts: BuildOptions, spec, folder: Path) -> dict:
    """Everything a build's output depends on: its cache key is made of this."""
    inputs = {
        "options": {**asdict(opts), "weights": None},
        "folder": folder_fingerprint(folder),
        "config": spec.config_hash(),
        "compiler": compiler_fingerprint(),
        "versions": {k: v for k, v in versions.collect().items() if k != "chromium"},
    }
    if opts.target == "webgpu":  # the .wasm is linked against the runtime kit, with these flags
        from wsd.webrt.kit import kit_key
        from wsd.webrt.link import MODEL_LINK_FLAGS

        inputs["webrt_kit"] = kit_key()
        inputs["model_link_flags"] = list(MODEL_LINK_FLAGS)
    return inputs


def compiler_files(root: Path | None = None) -> list[Path]:
    here = root or Path(__file__).parent
    return sorted({path for pattern in COMPILER_SOURCES for path in here.glob(pattern) if path.is_file()})


def compiler_fingerprint(root: Path | None = None) -> str:
    here = root or Path(__file__).parent
    digest = hashlib.sha256()
    for path in compiler_files(here):
        digest.update(path.relative_to(here).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build(opts: BuildOptions, out_root: Path, echo=print, progress: bool = True, force: bool = False) -> BuildResult:
    import contextlib

    from wsd import cache_size

    spec = check_options(opts)
    phases = Phases(enabled=progress)
    with contextlib.ExitStack() as held:  # entries this build reads: the size cap keeps them
        with phases.phase("load"):
            folder = random_folder(spec, opts.seed, echo) if opts.random_init else Path(opts.weights)
            if not folder.is_dir():
                raise WsdError(f"--weights {folder}: folder does not exist")
            if opts.random_init:
                held.enter_context(cache.reading(folder))
            key_inputs = build_key_inputs(opts, spec, folder)
        cached = [True]

        def do_build(staging: Path) -> list[str]:
            cached[0] = False
            (staging / "dist").mkdir()  # the entry's own manifest.json sits beside it
            _build_into(staging / "dist", spec, opts, folder, phases, echo)
            return [p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()]

        entry = cache.get_or_build(f"dist-{opts.target}", key_inputs, do_build, echo=echo, force=force)
        held.enter_context(cache.reading(entry))
        out = Path(out_root) / spec.name
        with phases.phase("copy"):
            # A private copy (reflink where possible): editing a published file never touches the cache.
            cache.publish(entry / "dist", out, cache.entry_digests(entry, "dist"))
        result = BuildResult(out, manifest.load(out), cached[0], dict(phases.times), entry / "dist")
    cache_size.prune(echo=echo)  # over the cap: least recently used build products go
    return result


def _build_into(out: Path, spec, opts: BuildOptions, folder: Path, phases: Phases, echo) -> None:
    from wsd import faults

    injected: dict[str, str] = {}
    with faults.shared_code(opts.inject, injected):  # a self-test's fault in a Python helper
        _compile_into(out, spec, opts, folder, phases, echo, injected)


def _compile_into(out: Path, spec, opts: BuildOptions, folder: Path, phases: Phases, echo, injected: dict) -> None:
    import tvm

    from wsd import faults, generation, lora, requirements, schedulers, tiled_gemm, wgsl
    from wsd import kernels as kernel_table
    from wsd import params as param_shards
    from wsd.capture import capture
    from wsd.entries import entries_for
    from wsd.models.folder import load
    from wsd.passes import subgroup_attention, subgroup_gemm
    from wsd.passes.pipeline import apply, steps
    from wsd.passes.pipeline import build as build_module

    entries = [e for e in entries_for(spec) if not opts.entries or e.name in opts.entries]
    unknown = set(opts.entries) - {e.name for e in entries}
    if unknown:
        raise WsdError(
            f"unknown entry point(s) {sorted(unknown)}; {spec.name} has {[e.name for e in entries_for(spec)]}"
        )
    with phases.phase("load", total=len(spec.components)):
        model = load(spec, folder, weights=False)  # shells: the values stream into the shards (wsd/weights.py)
        # a sampler config the tables cannot reproduce is refused now, not after minutes of linking
        schedulers.require_reproducible(spec.schedulers, model.scheduler_config, spec.pipeline_class)
    entries = faults.with_capture_faults(entries, opts.inject, injected)
    with phases.phase("capture", total=len(entries)) as bar:
        captured = capture(model, entries, echo=lambda name: (bar.set_postfix_str(name), bar.update()))
    target = target_of(opts.target)
    extra = faults.steps(opts.inject, injected)
    with phases.phase("passes", total=len(steps(opts.passes, extra))) as bar:
        mod = captured.mod
        with target, tvm.transform.PassContext(opt_level=3):
            announce = lambda n: (bar.set_postfix_str(n), bar.update())  # noqa: E731
            mod = apply(mod, target, opts.passes, on_step=announce, injected=extra)
    requirements.check_bindings(mod, opts.max_binding)
    stored_dtypes = param_shards.param_dtypes(mod, [e.name for e in entries])
    # Kernel signatures for the harness's kernel-by-kernel localization, with each one's rule.
    kernels = kernel_table.signatures(mod)
    (out / "kernels.json").write_text(json.dumps(kernels, sort_keys=True))
    with phases.phase("build"):
        executable = build_module(mod, target)
    validation, needs, replacements = None, None, {}
    if opts.target == "webgpu":
        shaders = wgsl.shaders_of(executable.mod)
        extra = kernel_table.unplanned(shaders, kernels)
        if extra:  # a kernel no wsd step made or scheduled: kernels.json and localization would miss it
            raise BuildError(f"relax.build made kernels the pass pipeline did not: {', '.join(extra[:5])}")
        with phases.phase("validate", total=len(shaders), unit="shader") as bar:
            validation = wgsl.require_valid(shaders, pipelines=opts.validate_pipelines, echo=echo, on_batch=bar.update)
        # The WGSL travels with the build: the harness localizes faults per kernel with it,
        # and it can be re-validated on another adapter (a real GPU) without rebuilding.
        (out / "shaders").mkdir()
        (out / "shaders" / "wgsl.json").write_text(json.dumps(shaders, sort_keys=True))
        needs = requirements.collect(mod, shaders, opts.dtype)
        if opts.subgroup_matrix:
            swaps = subgroup_gemm.overrides(mod, shaders) | subgroup_attention.overrides(mod, shaders)
            # where the device has no subgroup matrices: the GEMMs as register-tiled WGSL
            tiled = tiled_gemm.overrides(mod, shaders)
            for path, table in ((SUBGROUP_SHADERS, swaps), (TILED_SHADERS, tiled)):
                checked = wgsl.require_valid(table, pipelines=opts.validate_pipelines, echo=echo)
                replacements[path] = len(table) - len(checked.skipped)
                (out / path).write_text(json.dumps(table, sort_keys=True))
            # optional: without it the page runs the tiled GEMMs (or TVM's, correct and slow)
            needs["optional_features"] = subgroup_gemm.FEATURES if swaps else []
            needs["subgroup_matrix"] = subgroup_gemm.requirements(swaps, SUBGROUP_SHADERS)
            needs["tiled_gemm"] = tiled_gemm.requirements(tiled, TILED_SHADERS)
    with phases.phase("link"):
        lib_name = _link(executable, out, spec, opts, echo)
        bill = _bill_of_materials(out, opts, lib_name, echo)
    total_bytes = sum(a.nbytes for tensors in captured.params.values() for _, a in tensors)
    with phases.phase("params", total=total_bytes, unit="B") as bar:
        # fp16 builds take most weights as float16 (wsd/passes/mixed_precision.py): half the bytes
        param_shards.write_shards(out, captured.params, on_tensor=bar.update, dtypes=stored_dtypes)
    step_choices = {}
    with phases.phase("tables", total=len(spec.schedulers)) as bar:
        (out / "schedulers").mkdir()
        for sched in spec.schedulers:
            tbl = schedulers.table(sched, model.scheduler_config, pipeline=spec.pipeline_class)
            (out / "schedulers" / f"{sched.name}.json").write_text(json.dumps(tbl))
            # One table per step count the page offers (the default is among them).
            step_choices[sched.name] = sorted({*schedulers.STEP_CHOICES, sched.steps})
            for steps in step_choices[sched.name]:
                tbl = schedulers.table(sched, model.scheduler_config, steps, spec.pipeline_class)
                (out / "schedulers" / f"{sched.name}-{steps}.json").write_text(json.dumps(tbl))
            bar.update()
        for sub in spec.tokenizers:  # the folder's own names (tokenizer, tokenizer_2)
            dest = out / sub
            dest.mkdir()
            for name in ("vocab.json", "merges.txt"):
                shutil.copy2(folder / sub / name, dest / name)
    entry_records = {
        e.name: {
            "inputs": [t.as_json() for t in e.inputs(spec)],
            "outputs": [t.as_json() for t in e.outputs(spec)],
            # Every entry takes a params tuple as its last argument (empty when it has none).
            "params": {"prefix": e.name, "count": len(captured.params.get(e.name, []))},
        }
        for e in entries
    }
    manifest.write(
        out,
        {
            "model": spec.name,
            "library": lib_name,
            "target": opts.target,
            "dtype": opts.dtype,
            "config_hash": spec.config_hash(),
            "versions": versions.collect(),
            "build_options": {k: v for k, v in asdict(opts).items() if k != "weights"} | {"weights": str(folder)},
            "image_size": spec.image_size,
            "latent_shape": [1, spec.latent_channels, spec.latent_size, spec.latent_size],
            "max_tokens": spec.max_tokens,
            "default_scheduler": spec.default_scheduler,
            "schedulers": [s.name for s in spec.schedulers],
            "scheduler_steps": step_choices,
            "requirements": needs,
            "schedule_rules": kernel_table.rule_counts(kernels),
            "injected_faults": injected,
            "sbom": bill,
            "entry_points": entry_records,
            "generation": generation.plan(spec, model, entry_records),
            # which weights a LoRA file may change at run time, by the keys it may name them with
            "lora": lora.layer_table(model, captured.torch_names),
            "wgsl": None
            if validation is None
            else {
                "validated": not validation.skipped,
                "shaders": validation.count,
                "adapter": validation.adapter,
                "pipelines": opts.validate_pipelines,
                "ms": validation.ms,
                "not_validated": len(validation.skipped),
                "front_end_only": len(validation.front_end_only),
                # the WGSL files the page may swap in for TVM's kernels: how many shaders of each passed
                "replacements": replacements,
                "not_validated_reason": sorted(set(validation.skipped.values())),
            },
            "timings_s": [[k, round(v, 2)] for k, v in phases.times.items()],  # in phase order
        },
    )


def _bill_of_materials(out: Path, opts: BuildOptions, lib_name: str, echo) -> dict:
    from wsd import sbom

    if opts.target != "webgpu":
        return sbom.write(out, opts.target, lib_name, None, None)
    from wsd.webrt import ensure_kit
    from wsd.webrt.kit import npm_packages
    from wsd.webrt.sources import locate

    npm_lock = npm_packages(locate(), echo) / "package-lock.json"
    return sbom.write(out, opts.target, lib_name, ensure_kit(echo=echo).bundle, npm_lock)


def _link(executable, out: Path, spec, opts: BuildOptions, echo) -> str:
    if opts.target == "webgpu":
        from wsd.webrt import ensure_kit, wasm_fcompile

        name = f"{spec.name}.wasm"
        executable.export_library(str(out / name), fcompile=wasm_fcompile(ensure_kit(echo=echo)))
    else:
        name = f"{spec.name}.so"
        executable.export_library(str(out / name))
    return name
