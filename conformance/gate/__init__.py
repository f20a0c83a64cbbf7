"""The gate itself: a pytest module of stage cases (test_stages.py), shipped inside the package so
that `wsd-conformance run`, tox and another project's CI run the same file."""

from __future__ import annotations

from pathlib import Path

GATE_DIR = Path(__file__).parent


def pytest_args() -> list[str]:
    """pytest's arguments that run the gate (add the gate's own options after them)."""
    return ["-p", "conformance.plugin", "-m", "conformance", str(GATE_DIR)]
