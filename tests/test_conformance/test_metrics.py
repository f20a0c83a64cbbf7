from __future__ import annotations

import numpy as np
import pytest

from conformance.metrics import compare, measure


def test_identical_outputs():
    x = np.linspace(-1, 1, 50, dtype=np.float32)
    m = compare(x, x)
    assert m["max_abs"] == 0 and m["rel_l2"] == 0 and m["cosine"] == pytest.approx(1.0)
    assert m["psnr"] > 150


def test_known_differences():
    ref = np.array([1.0, -2.0, 4.0])
    out = ref + np.array([0.0, 0.5, 0.0])
    m = compare(ref, out)
    assert m["max_abs"] == pytest.approx(0.5)
    assert m["max_rel"] == pytest.approx(0.25)
    assert m["rel_l2"] == pytest.approx(0.5 / np.sqrt(21))
    rms = np.sqrt(0.25 / 3)
    assert m["psnr"] == pytest.approx(20 * np.log10((4 + 1e-5) / (rms + 1e-10)))


def test_nan_never_passes():
    m = compare(np.ones(3), np.array([1.0, np.nan, 1.0]))
    assert all(np.isnan(v) for v in m.values())
    assert not m["max_abs"] <= 1e-5


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        compare(np.ones(3), np.ones(4))


def test_metrics_for_images_and_ids():
    a = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    m = measure("image", a, a)
    assert m["ssim"] == pytest.approx(1.0) and m["max_abs"] == 0
    assert measure("exact", np.arange(4), np.array([0, 1, 2, 4]))["mismatches"] == 1
