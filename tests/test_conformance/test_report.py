"""conformance/report.py: the summary's JSON and the page, from rows made by hand."""

from __future__ import annotations

import numpy as np

from conformance import report


def test_a_nan_metric_is_null_in_the_summary_and_the_page_lists_skips():
    row = {
        "model": "m",
        "stage": "unet",
        "backend": "webgpu",
        "dtype": "float32",
        "status": "fail",
        "metrics": {"max_abs": float("nan")},
        "tolerance": {},
        "ms": {"reference": 1, "candidate": 2},
        "localized_kernel": "k",
        "message": "max_abs nan > 1",
    }
    body = report.summary([row], {}, 0.1)
    assert body["stages"][0]["metrics"]["max_abs"] is None  # NaN is not JSON
    body["skips"] = [{"case": "m/vae", "backend": "native", "reason": "no entry point", "allowed": False}]
    assert "NOT allowed): no entry point" in report.index_html(body)


def test_packed_rgba_unpacks_to_its_pixels():
    words = np.array([[10 + 20 * 256 + 30 * 65536 - 16777216]], dtype=np.int32)
    assert report.unpack_rgba(words).tolist() == [[[10.0, 20.0, 30.0]]]
