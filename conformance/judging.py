"""A case's verdict: each output measured against the reference with its stage's metric and
held to tolerances.toml's bounds; and the golden drift check (did the reference itself move?)."""

from __future__ import annotations

import numpy as np

from conformance import golden as golden_mod
from conformance import tolerances as tol_mod
from conformance.metrics import measure


def judge(case, row: dict, reference: dict, got: dict, dtype: str, tolerances: dict) -> None:
    """Fill `row` (status, message, metrics, tolerance, outputs) from the candidate's outputs."""
    problems = []
    for out in case.outputs:
        bounds = tol_mod.lookup(tolerances, case.stage.name, out.dtype or dtype, out.name)
        metrics = measure(out.kind, reference[out.name], np.asarray(got[out.name]))
        broken = tol_mod.violations(metrics, bounds)
        row["outputs"][out.name] = {"metrics": metrics, "tolerance": bounds, "violations": broken}
        problems += [f"{out.name}: {b}" for b in broken]
    first = row["outputs"][case.outputs[0].name]
    row["metrics"], row["tolerance"] = first["metrics"], first["tolerance"]
    # The image output's SSIM/PSNR are what people read first for image stages.
    for out in case.outputs:
        if out.kind == "image":
            row["metrics"] = {**row["metrics"], **{k: v for k, v in row["outputs"][out.name]["metrics"].items()}}
    row["status"] = "fail" if problems else "pass"
    row["message"] = "; ".join(problems)
    if row["reference_drift"]:
        drift_note = "reference drift: " + row["reference_drift"]
        row["message"] = f"{row['message']}; {drift_note}" if row["message"] else drift_note


def drift(golden: golden_mod.Golden, config_hash: str, case, inputs, outputs, tolerances: dict) -> str | None:
    """Why the live reference is not the golden one (None when it is, within the drift bound)."""
    golden.check(config_hash)
    stored = golden.load(case.id)
    entry = golden.manifest["files"][golden_mod.file_name(case.id)]
    if entry.get("inputs") != golden_mod.inputs_digest(inputs):
        return "the golden was made from other inputs (stage inputs changed): regenerate it"
    moved = []
    for out in case.outputs:
        bounds = tol_mod.drift_bound(tolerances, case.stage.name, out.name)
        if out.name not in stored:
            moved.append(f"{out.name}: not in the golden file")
            continue
        broken = tol_mod.violations(measure(out.kind, stored[out.name], outputs[out.name]), bounds)
        if broken:
            moved.append(f"{out.name}: {', '.join(broken)}")
    if not moved:
        return None
    from wsd import versions

    made = golden.provenance().get("versions", {})
    now = {k: v for k, v in versions.collect().items() if k in made}
    changed = {k: f"{made[k]} -> {now[k]}" for k in made if now.get(k) != made[k]} or "no version changed"
    return (
        f"reference drift beyond the stage's drift bound ({'; '.join(moved)}); golden made with {made}, "
        f"now {now} (changed: {changed})"
    )
