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


def param_dtypes(mod, entries: list[str]) -> dict[str, list[str]]:
    """Each entry's weight dtypes as the compiled module takes them (its last, bundled parameter):
    an fp16 build takes most of its weights as float16."""
    from wsd.compat import type_of

    out = {}
    for name in entries:
        func = mod[name]
        bundle = type_of(func.params[-1]) if func.params else None
        out[name] = [str(f.dtype) for f in getattr(bundle, "fields", None) or []]
    return out


def write_shards(
    out: Path, params: dict[str, list[tuple[str, np.ndarray]]], on_tensor=None, dtypes: dict | None = None
) -> dict:
    """`dtypes`: entry -> the dtype of each of its weights in the module (param_dtypes); a weight
    is stored in it (float32 in the folder, float16 in an fp16 build's shards)."""
    from wsd.compat import tensor_cache
    from wsd.weights import value

    dump_tensor_cache = tensor_cache()[0]

    def named():
        for entry, tensors in params.items():
            for i, (_, array) in enumerate(tensors):
                if on_tensor:
                    on_tensor(array.nbytes)
                data = value(array)  # a lazy weight is read here, once
                want = (dtypes or {}).get(entry)
                if want and str(data.dtype) != want[i]:
                    data = data.astype(want[i])
                yield f"{entry}_{i}", np.ascontiguousarray(data)

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
