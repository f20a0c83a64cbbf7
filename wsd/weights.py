"""Weights that are read when written, not when loaded: how a build captures SDXL in little memory.

A build needs the weights' shapes to trace and their values only to write the shards. So
`wsd build` loads each component as a shell (parameters on the meta device; buffers such as
CLIP's position ids are made for real, since the importer bakes them in as constants), gives
the parameters CPU storage that is reserved but never touched just before torch.export
(the importer takes zero-copy views of it and they are dropped at once), and records where
each parameter's value lives: a key in the component's safetensors or .bin file. The shard
writer then reads one tensor at a time from there. The traced program is the same as with
the weights loaded (tests/test_wsd/test_weights.py compares the Relax text).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsd.errors import ModelFolderError

WEIGHTS_FILE_ATTR = "_wsd_weights_files"  # on a shell component: state_dict key -> (file, name in it)
# transformers 5 names CLIPTextModel's parameters without the `text_model.` level that SD's
# files (saved by transformers 4) carry; it strips it on load, and so do we.
KEY_PREFIXES = ("", "text_model.")


@dataclass(frozen=True)
class LazyWeight:
    """One tensor of a weights file, read (and cast to the model's dtype) when asked."""

    path: str
    key: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name of the model's parameter

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def load(self) -> np.ndarray:
        import torch

        tensor = _read(self.path, self.key)
        out = tensor.to(getattr(torch, self.dtype)).contiguous().numpy()
        if tuple(out.shape) != self.shape:
            raise ModelFolderError(
                f"{self.path}: tensor {self.key!r} has shape {list(out.shape)}, expected {list(self.shape)}"
            )
        return out


def value(array) -> np.ndarray:
    """A parameter's data, whether it is held (an array) or lazy."""
    return array.load() if isinstance(array, LazyWeight) else array


def file_keys(path: Path) -> set[str]:
    return set(_keys(str(path)))


def shapes(files: dict[str, Path]) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape without reading it (files: tensor name -> its file); a file opened once."""
    from safetensors import safe_open

    by_file: dict[Path, list[str]] = {}
    for key, path in files.items():
        by_file.setdefault(path, []).append(key)
    out = {}
    for path, keys in by_file.items():
        if str(path).endswith(".safetensors"):
            with safe_open(str(path), framework="pt") as fh:
                out.update({k: tuple(fh.get_slice(k).get_shape()) for k in keys})
        else:
            state = _bin_state(str(path))
            out.update({k: tuple(state[k].shape) for k in keys})
    return out


def key_in_file(key: str, found: set[str]) -> str | None:
    """The name `key` (a model's state_dict key) has in a file holding `found`, if any."""
    for prefix in KEY_PREFIXES:
        if prefix + key in found:
            return prefix + key
    return None


@functools.lru_cache(maxsize=16)
def _keys(path: str) -> tuple[str, ...]:
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as fh:
            return tuple(fh.keys())
    return tuple(_bin_state(path))


@functools.lru_cache(maxsize=4)
def _bin_state(path: str) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: pages read on use


def _read(path: str, key: str):
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, framework="pt") as fh:
            return fh.get_tensor(key)
    return _bin_state(path)[key]


def shell_mode():
    """A TorchFunctionMode under which modules are built with their parameters on the meta
    device: `torch.empty` without a device (how nn layers allocate parameters) goes to meta,
    while arange/zeros/ones/tensor (how buffers are made) stay real CPU tensors."""
    import torch
    from torch.overrides import TorchFunctionMode

    class ParamsOnMeta(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in (torch.empty, torch.empty_strided) and kwargs.get("device") is None:
                kwargs = {**kwargs, "device": "meta"}
            return func(*args, **kwargs)

    return ParamsOnMeta()


def sources_of(module) -> dict[str, LazyWeight]:
    """For a wrapper around shell components: state_dict key -> where its value lives. Also
    gives every meta parameter untouched CPU storage, so torch.export can trace it."""
    import torch

    shells = [(name, mod) for name, mod in module.named_modules() if hasattr(mod, WEIGHTS_FILE_ATTR)]
    out = {}
    for prefix, shell in shells:
        files = getattr(shell, WEIGHTS_FILE_ATTR)  # models.folder.check_weights found each one
        for key, param in shell.named_parameters():
            path, where = files[key]
            dtype = str(param.dtype).removeprefix("torch.")
            out[f"{prefix}.{key}" if prefix else key] = LazyWeight(str(path), where, tuple(param.shape), dtype)
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None and param.device.type == "meta":
                sub._parameters[name] = torch.nn.Parameter(torch.empty_like(param, device="cpu"), param.requires_grad)
    left = [n for n, b in module.named_buffers() if b.device.type == "meta"]
    if left:
        raise ModelFolderError(f"buffers without values (the importer bakes them in): {left[:3]}")
    return out
