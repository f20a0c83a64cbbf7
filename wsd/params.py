"""Parameters as tvmjs tensor-cache shards, named `<entry>_<i>` in bundle order.

`<entry>_<i>` is what tvmjs's `getParamsFromCache(entry, count)` asks for; the torch
names ride along in the cache's metadata for people and for localization.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np

SHARD_MB = 32


def write_shards(out: Path, params: dict[str, list[tuple[str, np.ndarray]]], on_tensor=None) -> dict:
    from wsd.compat import tensor_cache
    from wsd.weights import value

    dump_tensor_cache = tensor_cache()[0]

    def named():
        for entry, tensors in params.items():
            for i, (_, array) in enumerate(tensors):
                if on_tensor:
                    on_tensor(array.nbytes)
                yield f"{entry}_{i}", np.ascontiguousarray(value(array))  # a lazy weight is read here, once

    meta = {"entries": {entry: {"count": len(t), "names": [n for n, _ in t]} for entry, t in params.items()}}
    # dump_tensor_cache narrates on stdout; the build has its own progress bars.
    with contextlib.redirect_stdout(io.StringIO()):
        dump_tensor_cache(
            named(), str(out), encode_format="raw", meta_data=meta, shard_cap_mb=SHARD_MB, show_progress=False
        )
    return json.loads((out / "tensor-cache.json").read_text())


def load_shards(dist: Path) -> dict[str, np.ndarray]:
    """Every tensor of a build's tensor-cache, by name (raw encoding, as write_shards makes it)."""
    cache = json.loads((dist / "tensor-cache.json").read_text())
    out = {}
    for shard in cache["records"]:
        data = (dist / shard["dataPath"]).read_bytes()
        for rec in shard["records"]:
            raw = data[rec["byteOffset"] : rec["byteOffset"] + rec["nbytes"]]
            out[rec["name"]] = np.frombuffer(raw, rec["dtype"]).reshape(rec["shape"])
    return out


def refill_shards(dist: Path, tensors: dict[str, np.ndarray]) -> int:
    """Write `tensors` (by tensor-cache name) into a build's shards in the layout its
    tensor-cache.json records, creating shard files that are not there (weights made on a
    machine the shards could not travel to). Every record must be given, with its shape;
    returns the bytes written. The caller re-signs the manifest."""
    path = dist / "tensor-cache.json"
    cache = json.loads(path.read_text())
    missing = [r["name"] for s in cache["records"] for r in s["records"] if r["name"] not in tensors]
    if missing:
        raise KeyError(f"no tensor for {len(missing)} record(s) of {path}, e.g. {missing[:3]}")
    written = 0
    for shard in cache["records"]:
        data = bytearray(shard["nbytes"])
        for rec in shard["records"]:
            array = np.ascontiguousarray(tensors[rec["name"]], dtype=rec["dtype"])
            if list(array.shape) != list(rec["shape"]):
                raise ValueError(f"{rec['name']}: shape {list(array.shape)}, the build expects {rec['shape']}")
            data[rec["byteOffset"] : rec["byteOffset"] + rec["nbytes"]] = array.tobytes()
            written += rec["nbytes"]
        target = dist / shard["dataPath"]
        if target.exists():
            target.unlink()  # a new file, never an edit of one a cache entry may share
        target.write_bytes(bytes(data))
        shard["md5sum"] = hashlib.md5(bytes(data), usedforsecurity=False).hexdigest()
    path.unlink()
    path.write_text(json.dumps(cache))
    return written
