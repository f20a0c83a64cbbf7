"""Parameters as tvmjs tensor-cache shards, named `<entry>_<i>` in bundle order.

`<entry>_<i>` is what tvmjs's `getParamsFromCache(entry, count)` asks for; the torch
names ride along in the cache's metadata for people and for localization.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

SHARD_MB = 32


def write_shards(out: Path, params: dict[str, list[tuple[str, np.ndarray]]], on_tensor=None) -> dict:
    from wsd.compat import tensor_cache

    dump_tensor_cache = tensor_cache()[0]

    def named():
        for entry, tensors in params.items():
            for i, (_, array) in enumerate(tensors):
                if on_tensor:
                    on_tensor(array.nbytes)
                yield f"{entry}_{i}", np.ascontiguousarray(array)

    meta = {"entries": {entry: {"count": len(t), "names": [n for n, _ in t]} for entry, t in params.items()}}
    # dump_tensor_cache narrates on stdout; the build has its own progress bars.
    with contextlib.redirect_stdout(io.StringIO()):
        dump_tensor_cache(
            named(), str(out), encode_format="raw", meta_data=meta, shard_cap_mb=SHARD_MB, show_progress=False
        )
    return json.loads((out / "tensor-cache.json").read_text())
