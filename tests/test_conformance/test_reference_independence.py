"""The gate's reference side is somebody else's code: conformance/reference imports nothing from
`wsd`. Issue 33's incident: the references called `wsd.schedulers.make_scheduler`, so a sampler
25-32 dB away from diffusers passed 30/30 (both sides carried the same merge bug)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[2] / "conformance" / "reference"
MODULES = sorted(REFERENCE.glob("*.py"))


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module or "")
        elif isinstance(node, ast.ImportFrom):  # relative: resolve against the package
            names.add("conformance.reference." + (node.module or ""))
    return names


def test_there_are_reference_modules():
    assert {p.name for p in MODULES} >= {"__init__.py", "model.py", "stages.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_a_reference_module_imports_nothing_from_wsd(path):
    own = [n for n in imported(path) if n == "wsd" or n.startswith("wsd.")]
    assert not own, f"{path.name} imports {own}: a reference must be diffusers/transformers, not the product"
    # within conformance, only the reference package itself (the rest of the harness imports wsd)
    harness = [n for n in imported(path) if n.startswith("conformance") and not n.startswith("conformance.reference")]
    assert not harness, f"{path.name} imports {harness}: the harness's other modules import wsd"


def test_importing_the_references_loads_no_wsd_module():
    code = (
        "import sys, conformance.reference, conformance.reference.stages; "
        "bad = sorted(m for m in sys.modules if m == 'wsd' or m.startswith('wsd.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_stage_takes_its_reference_from_the_reference_package():
    from conformance.stages import STAGES

    for stage in STAGES:
        assert stage.reference.__module__ == "conformance.reference.stages", stage.name
