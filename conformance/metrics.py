"""Numerical agreement between a reference and a candidate output."""

from __future__ import annotations

import numpy as np


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """max_abs, max_rel, rel_l2, cosine and PSNR (Apple's form) of candidate vs reference."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(candidate, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs candidate {out.shape}")
    if not np.all(np.isfinite(out)):
        nan = float("nan")
        return {"max_abs": nan, "max_rel": nan, "rel_l2": nan, "cosine": nan, "psnr": nan}
    diff = out - ref
    ref_norm = float(np.linalg.norm(ref))
    out_norm = float(np.linalg.norm(out))
    rms = float(np.sqrt(np.mean(diff**2))) if diff.size else 0.0
    return {
        "max_abs": float(np.max(np.abs(diff))) if diff.size else 0.0,
        "max_rel": float(np.max(np.abs(diff) / (np.abs(ref) + 1e-12))) if diff.size else 0.0,
        "rel_l2": float(np.linalg.norm(diff) / ref_norm) if ref_norm else float(np.linalg.norm(diff)),
        "cosine": float(np.dot(ref.ravel(), out.ravel()) / (ref_norm * out_norm)) if ref_norm and out_norm else 0.0,
        "psnr": float(20 * np.log10((np.max(np.abs(ref)) + 1e-5) / (rms + 1e-10))),
    }


def ssim(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Structural similarity of two uint8 images (H, W, C), scikit-image's implementation."""
    from skimage.metrics import structural_similarity

    ref, out = np.asarray(reference), np.asarray(candidate)
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs candidate {out.shape}")
    return float(structural_similarity(ref, out, channel_axis=-1, data_range=255, win_size=7))


def exact(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """For ids and packed pixels: how many elements differ (0 is a pass)."""
    ref, out = np.asarray(reference), np.asarray(candidate)
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs candidate {out.shape}")
    return {"mismatches": int(np.count_nonzero(ref != out))}


def measure(kind: str, reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """The metrics for one output: `tensor`, `image` (uint8, adds SSIM) or `exact`."""
    if kind == "exact":
        return exact(reference, candidate)
    metrics = compare(reference, candidate)
    if kind == "image":
        metrics["ssim"] = ssim(reference, candidate)
    return metrics
