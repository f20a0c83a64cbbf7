"""conformance/tolerances.py: every bound says why; violations read as a person would."""

from __future__ import annotations

import pytest

from conformance import tolerances


def test_tolerances_need_a_why(tmp_path):
    table = tolerances.load()
    assert tolerances.lookup(table, "unet", "float16", "noise_pred")["psnr"] >= 35
    bad = tmp_path / "t.toml"
    bad.write_text("[unet.float32.noise_pred]\nmax_abs = 1.0\n")
    with pytest.raises(tolerances.ToleranceError, match="no `why`"):
        tolerances.load(bad)
    assert tolerances.violations({"max_abs": float("nan")}, {"max_abs": 1.0}) == ["max_abs nan > 1"]
    assert tolerances.violations({"psnr": 30.0}, {"psnr": 35.0, "why": "x"}) == ["psnr 30 < 35"]
