"""Weights made where a build's shards cannot travel (a lent GPU machine takes 64 MiB a call).

A `--random-init` build's weights come from a seeded diffusers folder; on another machine the
same spec and seed make the same folder, and the tensors go back into the build's shards by
the names the capture gave them (torch.export's placeholders: `p_<module path>`), then the
manifest is re-signed. Only torch, diffusers and transformers are needed, not TVM.

    python -m wsd.refill DIST [DIST ...]   # writes each DIST's shards; DIST keeps its wasm and tables

Builds of one model that differ only in their kernels (schedule experiments) have the same
tensor cache: the second and later get hard links to the first one's shards.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np


def placeholder_tensors(module) -> dict[str, np.ndarray]:
    """torch.export's placeholder name -> tensor, for a module's parameters and buffers."""
    out = {}
    for prefix, items in (("p_", module.named_parameters()), ("b_", module.named_buffers())):
        for name, tensor in items:
            out[prefix + name.replace(".", "_")] = tensor.detach().contiguous().cpu().numpy()
    return out


def seeded_tensors(dist: Path, echo=print) -> dict[str, np.ndarray]:
    """Tensor-cache name -> tensor for a random-init build, made from its spec and seed."""
    from wsd import manifest
    from wsd.build import BuildOptions, random_folder, resolve_spec
    from wsd.entries import entries_for
    from wsd.models.folder import load

    built = manifest.load(dist)
    fields = {f.name for f in dataclasses.fields(BuildOptions)}
    opts = BuildOptions(**{k: v for k, v in built["build_options"].items() if k in fields and k != "weights"})
    if not opts.random_init:
        raise ValueError(f"{dist} was built from a weights folder, not seeded: copy its shards instead")
    for key in ("entries", "inject"):
        opts = dataclasses.replace(opts, **{key: tuple(getattr(opts, key))})
    spec = resolve_spec(opts)
    echo(f"making {spec.name}'s weights from seed {opts.seed}")
    model = load(spec, random_folder(spec, opts.seed, echo=echo))
    meta = json.loads((dist / "tensor-cache.json").read_text())["metadata"]["entries"]
    tensors = {}
    for entry in entries_for(spec):
        names = meta.get(entry.name, {}).get("names", [])
        if not names:
            continue
        have = placeholder_tensors(entry.wrapper(model))
        missing = [n for n in names if n not in have]
        if missing:
            raise KeyError(f"{entry.name}: the build's tensors {missing[:3]} are not in the seeded model")
        tensors.update({f"{entry.name}_{i}": have[n] for i, n in enumerate(names)})
    return tensors


def refill(dist: Path, echo=print) -> int:
    from wsd import manifest
    from wsd.params import refill_shards

    written = refill_shards(dist, seeded_tensors(dist, echo))
    manifest.resign(dist)
    return written


def seeded_dist(dist: Path, echo=print):
    """A random-init build ready to run here, and the spec it was built from: its shards made from
    the seed when they did not travel, then every file checked against the manifest. For the
    GPU benchmarks, which also need the same weights in PyTorch (`random_folder(spec, seed)`)."""
    import time

    from wsd import manifest
    from wsd.build import BuildOptions, resolve_spec

    if not any(Path(dist).glob("*.bin")):
        t0 = time.perf_counter()
        refill(Path(dist), echo)
        echo(f"weights made from the seed in {time.perf_counter() - t0:.1f} s")
    built = manifest.require_whole(Path(dist))
    opts = built["build_options"]
    spec = resolve_spec(BuildOptions(opts["model"], random_init=True, seed=opts["seed"], image_size=opts["image_size"]))
    return built, spec


def link_shards(dist: Path, like: Path) -> int:
    """Hard-link `like`'s shards into dist (the same tensor cache), then re-sign dist."""
    from wsd import manifest

    cache = json.loads((dist / "tensor-cache.json").read_text())
    written = 0
    for record in cache["records"]:
        target = dist / record["dataPath"]
        target.unlink(missing_ok=True)
        target.hardlink_to(like / record["dataPath"])
        written += target.stat().st_size
    manifest.resign(dist)
    return written


def main(argv: list[str] | None = None) -> int:
    done: dict[str, Path] = {}  # tensor-cache.json text -> the dist already refilled with it
    for arg in argv if argv is not None else sys.argv[1:]:
        dist = Path(arg)
        key = (dist / "tensor-cache.json").read_text()
        if key in done:
            written = link_shards(dist, done[key])
            print(f"{arg}: {written / 2**30:.2f} GiB of weights linked from {done[key]} and signed")
        else:
            written = refill(dist)
            print(f"{arg}: {written / 2**30:.2f} GiB of weights written and signed")
        done[key] = dist
    return 0


if __name__ == "__main__":
    sys.exit(main())
