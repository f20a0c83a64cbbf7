"""Running one compiled entry point on WebGPU through the runner page."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import numpy as np

from wsd.host.browser import RunnerPage


@dataclass
class WebGPURun:
    outputs: list[np.ndarray]
    adapter: dict
    pipelines_ms: float
    run_ms: list[float]
    # replacement WGSL (`shaders`) the device refused, each run as the module's own kernel instead
    shader_fallbacks: list[dict] = field(default_factory=list)


def encode(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    return {
        "data": base64.b64encode(array.tobytes()).decode("ascii"),
        "shape": list(array.shape),
        "dtype": str(array.dtype),
    }


def decode(item: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(item["data"]), dtype=item["dtype"]).reshape(item["shape"]).copy()


# a --subgroup-matrix build's GEMM kernels (web/lib/assets.js GEMM_PATHS): the fastest the device
# offers, the tiled WGSL (no tensor cores), or TVM's own kernels
GEMM_PATHS = ("auto", "tiled", "tvm")


def open_spec(url: str, profile: bool = False, gemm_path: str = "auto") -> dict:
    """The runner page's `open` request; a GEMM path other than auto runs a slower one on purpose."""
    if gemm_path not in GEMM_PATHS:
        raise ValueError(f"gemm path {gemm_path!r}: one of {', '.join(GEMM_PATHS)}")
    return {"url": url, "profile": profile} | ({"gemmPath": gemm_path} if gemm_path != "auto" else {})


def open_phases(opened: dict) -> dict:
    """The page's own split of an open (web/lib/session.js `timings`) in ms: its numbers only."""
    return {k: round(v, 1) for k, v in opened.get("timings", {}).items() if type(v) in (int, float)}


def rgb_of(rgba_bytes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 from packed little-endian RGBA (int32 words or bytes)."""
    return np.ascontiguousarray(np.asarray(rgba_bytes).view(np.uint8).reshape(height, width, 4)[..., :3])


def image_of(generated: dict) -> np.ndarray:
    """(H, W, 3) uint8 of a `generate` reply (the page's canvas bytes as base64)."""
    pixels = np.frombuffer(base64.b64decode(generated["rgba"]), np.uint8)
    return rgb_of(pixels, generated["height"], generated["width"])


def run_entry(
    runner: RunnerPage,
    wasm_url: str,
    entry: str,
    inputs: list[np.ndarray],
    repeat: int = 1,
    shaders: dict[str, str] | None = None,
) -> WebGPURun:
    """A bare module (no manifest, no weights: the smoke module) loaded, run and disposed;
    `shaders` (entry point -> WGSL) replace the module's own, as a build's swap files do.
    A `wsd build` model is opened once instead: conformance.backends.WebGPUBackend."""
    spec = {"wasm": wasm_url, "entry": entry, "inputs": [encode(x) for x in inputs], "repeat": repeat}
    if shaders:
        spec["shaders"] = shaders
    result = runner.call("runModule", spec)
    timings = result["timings"]
    outputs = [decode(o) for o in result["outputs"]]
    fallbacks = result.get("shader_fallbacks", [])
    return WebGPURun(outputs, result["adapter"], timings["pipelines_ms"], timings["run_ms"], fallbacks)
