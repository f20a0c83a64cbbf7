"""`wsd-conformance matrix`: the real gate in every cell of TVM x torch x Python, and one report.

Locally it runs cell by cell (resumable: a cell with a summary.json is not rerun), each in an
environment made by uv (conformance/envs.py); on a CI engine each cell is a job of
.github/workflows/conformance.yml (`python -m conformance.matrix --cell ...`) and a merge job
makes the same report from the uploaded summaries. The report is versions x stages, with the
first failing TVM release of each stage (per torch and Python) marked.
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from conformance import envs, expectations
from wsd.errors import WsdError

TVM = ("0.25.0.post1", "0.26.0", "0.27.0.post1")
TORCH = ("2.7.1", "2.13.0")  # the declared baseline; the newest that works here
PYTHON = ("3.11", "3.13")


@dataclass(frozen=True)
class Cell:
    python: str
    torch: str
    tvm: str

    @property
    def name(self) -> str:
        return f"py{self.python}-torch{self.torch}-tvm{self.tvm}"

    def pins(self) -> dict[str, str]:
        return {"torch": self.torch, "apache-tvm": self.tvm}

    def versions(self) -> dict[str, str]:
        """What expectations.toml's `package` may name."""
        return {**self.pins(), "python": self.python}


def known_failure(cell: Cell, stage: str, status: str) -> str | None:
    return expectations.why_expected(stage, status, cell.versions()) if status != "pass" else None


def cells() -> list[Cell]:
    return [Cell(p, t, v) for p, t, v in itertools.product(PYTHON, TORCH, TVM)]


def why_not(cell: Cell) -> str | None:
    """Why a cell cannot exist on this machine (None when it can)."""
    try:
        envs.find_python(cell.python)
    except WsdError as exc:
        return str(exc)
    return None


def parse_cell(text: str) -> Cell:
    fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    try:
        return Cell(fields["python"], fields["torch"], fields["tvm"])
    except KeyError:
        raise WsdError(f"--cell {text!r}: give python=X,torch=Y,tvm=Z") from None


def run_cell(cell: Cell, out: Path, gate_args: list[str], echo=print) -> dict:
    folder = out / cell.name
    record = folder / "cell.json"
    if (folder / "summary.json").is_file() and record.is_file():
        echo(f"[matrix] {cell.name}: done before (resumed)")
        return json.loads(record.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    reason = why_not(cell)
    t0 = time.perf_counter()
    if reason:
        body = {**asdict(cell), "status": "cannot exist", "reason": reason}
    else:
        echo(f"[matrix] {cell.name}")
        try:
            env = envs.make(cell.pins(), cell.python, echo)
            verdicts = envs.gate_in(env, folder, gate_args)
            failed = sorted(k for k, (status, _) in verdicts.items() if status != "pass")
            expected = [k for k in failed if known_failure(cell, k, verdicts[k][0])]
            unexpected = [k for k in failed if k not in expected]
            body = {**asdict(cell), "status": "fail" if unexpected else "pass", "failed": unexpected}
            body["expected_failures"] = expected
        except Exception as exc:  # noqa: BLE001 (an env that cannot be made is this cell's result)
            body = {**asdict(cell), "status": "cannot exist", "reason": f"{type(exc).__name__}: {exc}"}
    body["wall_s"] = round(time.perf_counter() - t0, 1)
    record.write_text(json.dumps(body, indent=1) + "\n")
    return body


def merge(out: Path) -> dict:
    """matrix.json + matrix.html from every cell folder under out."""
    from packaging.version import Version

    columns, grid, expected = [], {}, {}
    for record in sorted(out.glob("*/cell.json")):
        cell = json.loads(record.read_text())
        columns.append(cell)
        verdicts = envs.verdicts(record.parent / "summary.json") if cell["status"] != "cannot exist" else {}
        here = Cell(cell["python"], cell["torch"], cell["tvm"])
        for stage, (status, _) in verdicts.items():
            grid.setdefault(stage, {})[record.parent.name] = status
            because = known_failure(here, stage, status)
            if because:
                expected.setdefault(stage, {})[record.parent.name] = because
    first_bad = {}
    for stage, row in grid.items():
        for _, group in itertools.groupby(
            sorted(columns, key=lambda c: (c["python"], c["torch"], Version(c["tvm"]))),
            key=lambda c: (c["python"], c["torch"]),
        ):
            seen_pass = False
            for c in group:
                name = Cell(c["python"], c["torch"], c["tvm"]).name
                status = row.get(name)
                if name in expected.get(stage, {}):
                    continue  # a known failure of that release (expectations.toml): not a first bad
                if status == "pass":
                    seen_pass = True
                elif status and seen_pass:
                    first_bad.setdefault(stage, []).append(name)
                    break
    body = {"cells": columns, "stages": grid, "first_bad": first_bad, "expected": expected}
    (out / "matrix.json").write_text(json.dumps(body, indent=1) + "\n")
    (out / "matrix.html").write_text(page(body))
    return body


def page(body: dict) -> str:
    esc = html.escape
    names = [Cell(c["python"], c["torch"], c["tvm"]).name for c in body["cells"]]
    head = "".join(f"<th>{esc(n)}</th>" for n in names)
    status = "".join(
        f"<td>{esc(c['status'])}{'<br><small>' + esc(c.get('reason', '')) + '</small>' if c.get('reason') else ''}</td>"
        for c in body["cells"]
    )
    rows = []
    for stage in sorted(body["stages"]):
        cells_html = []
        for n in names:
            s = body["stages"][stage].get(n, "-")
            mark = " &#9873; first bad" if n in body["first_bad"].get(stage, []) else ""
            because = body.get("expected", {}).get(stage, {}).get(n)
            if because:
                s, mark = "expected", f" ({esc(s)})"
            title = f' title="{esc(because)}"' if because else ""
            cells_html.append(f'<td class="{esc(s)}"{title}>{esc(s)}{mark}</td>')
        rows.append(f"<tr><td>{esc(stage)}</td>{''.join(cells_html)}</tr>")
    return (
        "<!doctype html><meta charset=utf-8><title>wsd version matrix</title><style>body{font-family:sans-serif}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}table{border-collapse:collapse}"
        ".pass{background:#dfd}.fail,.error{background:#fdd}.skip,.expected{background:#ffd}</style>"
        f"<h1>Version matrix</h1><table><tr><th>stage</th>{head}</tr><tr><td>cell</td>{status}</tr>"
        + "".join(rows)
        + "</table>"
    )


def run(out: Path, gate_args: list[str], only: list[Cell] | None = None, echo=print) -> dict:
    for cell in only or cells():
        run_cell(cell, out, gate_args, echo)
    body = merge(out)
    for c in body["cells"]:
        echo(f"  {Cell(c['python'], c['torch'], c['tvm']).name:40} {c['status']:13} {c.get('wall_s', '')} s")
    for stage, where in sorted(body["first_bad"].items()):
        echo(f"  first bad: {stage}: {', '.join(where)}")
    for reason in sorted({r for cells_of in body["expected"].values() for r in cells_of.values()}):
        stages = sorted(s for s, cells_of in body["expected"].items() if reason in cells_of.values())
        echo(f"  expected ({len(stages)} stages, expectations.toml): {reason[:160]}")
    return body


def main(argv=None) -> int:
    """The CI job's entry point: `python -m conformance.matrix --cell python=3.13,torch=2.7.1,tvm=0.26.0`."""
    parser = argparse.ArgumentParser(prog="conformance.matrix")
    parser.add_argument("--cell", action="append", help="python=X,torch=Y,tvm=Z (repeatable; default every cell)")
    parser.add_argument("--out", default="reports/matrix")
    parser.add_argument("--merge-only", action="store_true", help="only merge the cell folders under --out")
    args, gate_args = parser.parse_known_args(argv)
    out = Path(args.out)
    if args.merge_only:
        merge(out)
        return 0
    body = run(out, [a for a in gate_args if a != "--"], [parse_cell(c) for c in args.cell or []] or None)
    return 1 if any(c["status"] == "fail" for c in body["cells"]) else 0


if __name__ == "__main__":
    sys.exit(main())
