"""Shards read back by name, and refilled in place from named tensors (weights made elsewhere)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from wsd import manifest
from wsd.params import load_shards, refill_shards, write_shards


@pytest.fixture
def dist(tmp_path):
    rng = np.random.default_rng(0)
    params = {
        "clip": [("a", rng.standard_normal((3, 4)).astype("float32")), ("b", np.arange(5, dtype="int32"))],
        "unet": [("c", rng.standard_normal((2, 2, 2)).astype("float16"))],
    }
    out = tmp_path / "dist"
    out.mkdir()
    write_shards(out, params)
    manifest.write(out, {"model": "m"})
    return out


def test_shards_refilled_from_their_own_tensors_are_byte_identical(dist, tmp_path):
    before = {p.name: p.read_bytes() for p in dist.glob("*.bin")}
    tensors = load_shards(dist)
    assert set(tensors) == {"clip_0", "clip_1", "unet_0"} and tensors["clip_1"].tolist() == [0, 1, 2, 3, 4]
    copy = tmp_path / "copy"
    shutil.copytree(dist, copy)
    for shard in copy.glob("*.bin"):
        shard.unlink()  # the weights did not travel
    assert refill_shards(copy, {k: np.array(v) for k, v in tensors.items()}) == sum(v.nbytes for v in tensors.values())
    assert {p.name: p.read_bytes() for p in copy.glob("*.bin")} == before
    assert json.loads((copy / "tensor-cache.json").read_text()) == json.loads((dist / "tensor-cache.json").read_text())
    manifest.resign(copy)
    assert manifest.verify(copy) == []


def test_refill_needs_every_tensor_with_its_shape(dist):
    tensors = dict(load_shards(dist))
    with pytest.raises(KeyError, match="unet_0"):
        refill_shards(dist, {k: v for k, v in tensors.items() if k != "unet_0"})
    with pytest.raises(ValueError, match=r"clip_0: shape \[4, 3\], the build expects \[3, 4\]"):
        refill_shards(dist, {**tensors, "clip_0": tensors["clip_0"].T})


def test_a_seeded_builds_weights_are_made_again_from_its_seed(tmp_path):
    """What a lent GPU machine does with a build whose shards did not travel."""
    from wsd.build import BuildOptions, build
    from wsd.refill import refill

    built = build(BuildOptions("sd15-tiny", random_init=True, target="llvm"), tmp_path, echo=lambda *_: None)
    copy = tmp_path / "travelled"
    shutil.copytree(built.out, copy)
    before = {p.name: p.read_bytes() for p in built.out.glob("*.bin")}
    for shard in copy.glob("*.bin"):
        shard.unlink()
    assert refill(copy, echo=lambda *_: None) == sum(len(b) for b in before.values())
    assert {p.name: p.read_bytes() for p in copy.glob("*.bin")} == before
    assert manifest.verify(copy) == []
    # the GPU benchmarks' entry: the same refill, then the manifest checked and the spec resolved
    from wsd.refill import seeded_dist

    again = tmp_path / "travelled-again"
    shutil.copytree(built.out, again)
    for shard in again.glob("*.bin"):
        shard.unlink()
    got, spec = seeded_dist(again, echo=lambda *_: None)
    assert spec.name == got["model"] == "sd15-tiny"
    assert {p.name: p.read_bytes() for p in again.glob("*.bin")} == before
