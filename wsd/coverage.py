"""Importer coverage: the ATen ops each entry point's exported graph uses, and which of them
TVM's ExportedProgram importer converts. Read before a torch or TVM bump: a new op in a
graph, or one the importer dropped, shows up here first."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def importer_ops() -> set[str]:
    """Names (`conv2d.default`) the installed TVM's ExportedProgram importer converts."""
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    return set(ExportedProgramImporter().create_convert_map())


def graph_ops(exported) -> Counter:
    """ATen ops of the program as the importer sees it (after the same decomposition)."""
    program = exported.run_decompositions()
    return Counter(node.target.__name__ for node in program.graph.nodes if node.op == "call_function")


def report(model, entries) -> dict:
    from wsd.capture import export_entry

    known = importer_ops()
    out = {}
    for entry in entries:
        ops = graph_ops(export_entry(entry, model))
        out[entry.name] = {
            "ops": dict(sorted(ops.items())),
            "unsupported": sorted(op for op in ops if op not in known),
        }
    return out


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def table(data: dict) -> str:
    lines = [f"{'entry':<18} {'ops':>4} {'calls':>6}  unsupported"]
    for name, info in data.items():
        unsupported = ", ".join(info["unsupported"]) or "-"
        lines.append(f"{name:<18} {len(info['ops']):>4} {sum(info['ops'].values()):>6}  {unsupported}")
    return "\n".join(lines)
