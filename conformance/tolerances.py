"""conformance/tolerances.toml: the bound each stage's metrics must meet, and why."""

from __future__ import annotations

import tomllib
from pathlib import Path

PATH = Path(__file__).with_name("tolerances.toml")
UPPER = ("max_abs", "max_rel", "rel_l2", "mismatches")
LOWER = ("cosine", "psnr", "ssim")


class ToleranceError(ValueError):
    pass


def load(path: Path = PATH) -> dict:
    """{stage: {dtype: {output: {metric: bound, "why": text}}}}, each table checked; the golden
    drift bounds under "drift": {stage: {output: {metric: bound, "why": text}}}."""
    table = tomllib.loads(Path(path).read_text())
    for stage, outputs in table.get("drift", {}).items():
        for output, bounds in outputs.items():
            _check(bounds, f"{path}: [drift.{stage}.{output}]")
    for stage, dtypes in table.items():
        if stage == "drift":
            continue
        for dtype, outputs in dtypes.items():
            for output, bounds in outputs.items():
                _check(bounds, f"{path}: [{stage}.{dtype}.{output}]")
    return table


def _check(bounds: dict, where: str) -> None:
    if not str(bounds.get("why", "")).strip():
        raise ToleranceError(f"{where} has no `why`: say why the bound is that value")
    unknown = set(bounds) - {"why", *UPPER, *LOWER}
    if unknown:
        raise ToleranceError(f"{where}: unknown metric(s) {sorted(unknown)}")
    if len(bounds) < 2:
        raise ToleranceError(f"{where} sets no bound")


def drift_bound(table: dict, stage: str, output: str) -> dict:
    """How far the live reference may move from the golden one (run-to-run noise, not a tolerance)."""
    try:
        return table["drift"][stage][output]
    except KeyError:
        raise ToleranceError(f"no drift bound [drift.{stage}.{output}] in {PATH.name}") from None


def lookup(table: dict, stage: str, dtype: str, output: str) -> dict:
    try:
        return table[stage][dtype][output]
    except KeyError:
        raise ToleranceError(f"no tolerance for {stage}.{dtype}.{output} in {PATH.name}") from None


def violations(metrics: dict[str, float], bounds: dict) -> list[str]:
    """Each bound the metrics break, as readable text (a NaN breaks every bound)."""
    out = []
    for name, bound in bounds.items():
        if name == "why":
            continue
        value = metrics.get(name)
        if value is None:
            out.append(f"{name} not measured")
        elif name in UPPER and not value <= bound:
            out.append(f"{name} {value:.3g} > {bound:g}")
        elif name in LOWER and not value >= bound:
            out.append(f"{name} {value:.3g} < {bound:g}")
    return out
