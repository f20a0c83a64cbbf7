"""`wsd-conformance diff A/summary.json B/summary.json`: what changed between two gate runs.

Per case and backend: the status in each run, how each output's metrics moved and how its time
moved (the stage and its kernels, from --perf runs), with the versions of both runs side by side,
as text (the terminal) and HTML (a page to attach to a PR).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from wsd.errors import WsdError

METRICS = ("max_abs", "rel_l2", "cosine", "psnr", "ssim", "mismatches")


@dataclass
class CaseDiff:
    case: str
    backend: str
    status: tuple[str | None, str | None]
    metrics: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    # "stage" and "kernel NAME" -> ms in each run: the perf gate's minimum (--perf), else the one call's wall time
    times: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.status[0] != self.status[1]


def load(path: Path) -> dict:
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise WsdError(f"{path}: not a readable summary.json ({exc})") from None
    if not isinstance(body, dict) or not isinstance(body.get("stages"), list):
        raise WsdError(f"{path}: no 'stages' list: is this a wsd-conformance summary.json?")
    return body


def _rows(body: dict) -> dict[tuple[str, str], dict]:
    return {(f"{r.get('model')}/{r.get('stage')}", r.get("backend")): r for r in body["stages"]}


def _metrics(row: dict | None) -> dict[str, float | None]:
    if row is None:
        return {}
    out = {}
    for name, data in (row.get("outputs") or {}).items():
        for metric, value in (data.get("metrics") or {}).items():
            if metric in METRICS and value is not None:
                out[f"{name}.{metric}"] = value
    return out


def _times(row: dict | None) -> dict[str, float]:
    if row is None:
        return {}
    measured = (row.get("perf") or {}).get("measured")
    if not measured:
        ms = (row.get("ms") or {}).get("candidate")
        return {"stage": ms} if ms is not None else {}
    gpu = {"stage gpu": measured["gpu"]["min_ms"]} if measured.get("gpu") else {}  # the kernels' sum per call
    return {"stage": measured["min_ms"], **gpu, **{f"kernel {k}": v["min_ms"] for k, v in measured["kernels"].items()}}


def moved_times(d: CaseDiff, limit: int = 5, within: float = 0.1) -> list[str]:
    """The stage's time and the kernels that moved most (beyond `within`), as 'name: a -> b ms (x)'."""
    out = []
    for name, (x, y) in sorted(d.times.items(), key=lambda kv: -abs((kv[1][1] or 0) - (kv[1][0] or 0))):
        if x and y and (name.startswith("stage") or abs(y / x - 1) > within):
            out.append(f"{name}: {x:.3g} -> {y:.3g} ms ({y / x:.2f}x)")
    stage = sorted(t for t in out if t.startswith("stage"))
    return stage + [t for t in out if not t.startswith("stage")][:limit]


def compare(a: dict, b: dict) -> list[CaseDiff]:
    rows_a, rows_b = _rows(a), _rows(b)
    diffs = []
    for key in sorted(set(rows_a) | set(rows_b)):
        ra, rb = rows_a.get(key), rows_b.get(key)
        ma, mb = _metrics(ra), _metrics(rb)
        ta, tb = _times(ra), _times(rb)
        diffs.append(
            CaseDiff(
                key[0],
                key[1],
                (ra.get("status") if ra else None, rb.get("status") if rb else None),
                {m: (ma.get(m), mb.get(m)) for m in sorted(set(ma) | set(mb))},
                {t: (ta.get(t), tb.get(t)) for t in sorted(set(ta) | set(tb))},
            )
        )
    return diffs


def version_changes(a: dict, b: dict) -> dict[str, tuple]:
    va, vb = a.get("versions") or {}, b.get("versions") or {}
    return {k: (va.get(k), vb.get(k)) for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)}


def _num(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def text(a: dict, b: dict, diffs: list[CaseDiff]) -> str:
    lines = ["versions: " + (", ".join(f"{k} {x} -> {y}" for k, (x, y) in version_changes(a, b).items()) or "same")]
    changed = [d for d in diffs if d.changed]
    lines.append(f"{len(changed)} of {len(diffs)} cases changed status")
    for d in diffs:
        mark = "CHANGED" if d.changed else "       "
        lines.append(f"{mark} {d.case} [{d.backend}]: {d.status[0] or 'absent'} -> {d.status[1] or 'absent'}")
        for m, (x, y) in d.metrics.items():
            if x != y:
                lines.append(f"          {m}: {_num(x)} -> {_num(y)}")
        lines += [f"          {t}" for t in moved_times(d)]
    return "\n".join(lines)


def html_page(a: dict, b: dict, diffs: list[CaseDiff], names: tuple[str, str]) -> str:
    esc = html.escape
    versions = "".join(
        f"<tr><td>{esc(k)}</td><td>{esc(str((a.get('versions') or {}).get(k)))}</td>"
        f"<td>{esc(str((b.get('versions') or {}).get(k)))}</td></tr>"
        for k in sorted(set(a.get("versions") or {}) | set(b.get("versions") or {}))
    )
    rows = []
    for d in diffs:
        metrics = "<br>".join(f"{esc(m)}: {_num(x)} &rarr; {_num(y)}" for m, (x, y) in d.metrics.items() if x != y)
        times = "<br>".join(esc(t).replace("-&gt;", "&rarr;") for t in moved_times(d))
        style = ' class="changed"' if d.changed else ""
        rows.append(
            f"<tr{style}><td>{esc(d.case)}</td><td>{esc(d.backend)}</td><td>{esc(str(d.status[0]))}</td>"
            f"<td>{esc(str(d.status[1]))}</td><td>{metrics}</td><td>{times}</td></tr>"
        )
    return (
        "<!doctype html><meta charset=utf-8><title>wsd-conformance diff</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}"
        "table{border-collapse:collapse}.changed{background:#fdd}</style>"
        f"<h1>{esc(names[0])} vs {esc(names[1])}</h1><h2>Versions</h2>"
        f"<table><tr><th></th><th>A</th><th>B</th></tr>{versions}</table><h2>Cases</h2>"
        "<table><tr><th>case</th><th>backend</th><th>A</th><th>B</th><th>metrics that moved</th><th>time</th></tr>"
        + "".join(rows)
        + "</table>"
    )
