"""The code's shape, checked: no import cycles, the compiler never imports the harness, the
passes read no environment, and every pass file is a step of the pipeline."""

from __future__ import annotations

import re

from import_graph import ROOT, cycles, graph

PASSES = ROOT / "wsd" / "passes"
NOT_PASSES = {"__init__", "ir", "options", "pipeline"}  # the package's shared parts


def test_no_import_cycle_among_wsd_and_conformance_modules():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_in_wsd_imports_the_harness():
    edges = graph()
    leaks = {m: sorted(t for t in targets if t.startswith("conformance")) for m, targets in edges.items()}
    assert {m: t for m, t in leaks.items() if m.startswith("wsd") and t} == {}


def test_the_passes_read_no_environment():
    readers = [p.name for p in PASSES.glob("*.py") if re.search(r"\bos\.environ|\bgetenv\(", p.read_text())]
    assert readers == []


def test_every_pass_file_is_a_step_of_the_pipeline():
    edges = graph()
    files = {p.stem for p in PASSES.glob("*.py")} - NOT_PASSES
    used = {m.rpartition(".")[2] for m in edges["wsd.passes.pipeline"] if m.startswith("wsd.passes.")}
    # matmul_schedule is the schedule step's rule
    used |= {m.rpartition(".")[2] for m in edges["wsd.passes.schedule"] if m.startswith("wsd.passes.")}
    assert files - used == set()


def test_the_pass_helpers_are_a_leaf():
    assert {t for t in graph()["wsd.passes.ir"] if t.startswith("wsd.passes")} == set()
