"""Running a `wsd build --target llvm` output on the CPU through the Relax VM.

The native backend of the harness, and how tests check a build against torch: the same
Relax module, the same tensor-cache shards, the same entry signatures as the browser.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsd import compat
from wsd import manifest as manifests
from wsd.errors import WsdError


class NativeModel:
    def __init__(self, dist: Path):
        import tvm
        from tvm import relax

        self.dist = Path(dist)
        self.manifest = manifests.load(self.dist)
        if self.manifest["target"] != "llvm":
            raise ValueError(f"{dist} was built for {self.manifest['target']}, not llvm")
        self.device = tvm.cpu()
        lib = tvm.runtime.load_module(str(self.dist / self.manifest["library"]))
        self.lib = lib  # its kernels, called one by one by the harness's localization tests
        self.vm = relax.VirtualMachine(lib, self.device)
        try:
            params, _ = compat.tensor_cache()[1](str(self.dist), self.device)
        except Exception as exc:  # TVM's loader raises KeyError/TypeError/TVMError on a malformed cache
            first = (str(exc).strip().splitlines() or [""])[0]
            raise WsdError(f"{self.dist}/tensor-cache.json: unreadable ({type(exc).__name__}: {first})") from None
        self.params = {}
        for name, entry in self.manifest["entry_points"].items():
            count, prefix = entry["params"]["count"], entry["params"]["prefix"]
            missing = [f"{prefix}_{i}" for i in range(count) if f"{prefix}_{i}" not in params]
            if missing:
                raise WsdError(
                    f"{self.dist}/tensor-cache.json: no tensor {missing[0]} (entry point {name} needs {count})"
                )
            self.params[name] = [params[f"{prefix}_{i}"] for i in range(count)]

    def run(self, entry: str, *inputs: np.ndarray) -> list[np.ndarray]:
        args = [compat.tensor(np.ascontiguousarray(x), self.device) for x in inputs]
        args.append(self.params[entry])  # every entry takes its (possibly empty) params tuple
        out = self.vm[entry](*args)
        outs = list(out) if not hasattr(out, "numpy") else [out]
        return [o.numpy() for o in outs]

    def set_lora(self, path: Path | None, scale: float = 1.0) -> int:
        """Merge the LoRA file at `path` into the weights at `scale` (wsd/lora.py), or with None
        put the build's own weights back; returns how many weights it changed. Every merged weight
        is made before any is swapped in: a LoRA that does not fit changes nothing."""
        from wsd import lora
        from wsd.params import load_shards

        table = self.manifest.get("lora")
        if table is None:
            raise lora.LoraError(f"{self.dist}: built before LoRA support (no `lora` in its manifest): rebuild it")
        if not hasattr(self, "_stored"):
            self._stored, self._lora_params = load_shards(self.dist), set()
        merged = lora.merged(table, self._stored, Path(path), scale) if path is not None else {}
        prefixes = {e["params"]["prefix"]: name for name, e in self.manifest["entry_points"].items()}
        for param in self._lora_params | set(merged):
            prefix, _, index = param.rpartition("_")
            stored = self._stored[param]
            value = merged[param].astype(stored.dtype) if param in merged else stored
            self.params[prefixes[prefix]][int(index)] = compat.tensor(np.ascontiguousarray(value), self.device)
        self._lora_params = set(merged)
        return len(merged)
