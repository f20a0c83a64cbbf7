"""reports/conformance/: summary.json (a stable schema for other tools) and index.html.

The one JUnit file is pytest's own (`--junitxml`), each case carrying its metrics as
properties (conformance/gate/test_stages.py records them)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from wsd import versions

STATUSES = ("pass", "fail", "error", "skip")
AMPLIFY = 10  # the difference image is |reference - candidate| x 10


def _png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(pixels.astype(np.uint8))).save(path)


def to_pixels(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64).reshape(-1, *np.asarray(arr).shape[-3:])[0]
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)


def save_triptych(folder: Path, name: str, reference: np.ndarray, candidate: np.ndarray) -> dict[str, str]:
    """Reference, candidate and amplified difference as PNGs; returns their paths (relative)."""
    folder.mkdir(parents=True, exist_ok=True)
    safe = name.replace("/", "__")
    ref, out = to_pixels(reference), to_pixels(candidate)
    diff = np.clip(np.abs(ref.astype(int) - out.astype(int)) * AMPLIFY, 0, 255)
    paths = {}
    for kind, pixels in (("reference", ref), ("candidate", out), ("diff", diff)):
        path = folder / f"{safe}__{kind}.png"
        _png(path, pixels)
        paths[kind] = f"{folder.name}/{path.name}"
    return paths


def unpack_rgba(words: np.ndarray) -> np.ndarray:
    """(H, W) int32 words R + G<<8 + B<<16 + A<<24 -> (H, W, 3) RGB."""
    b = np.ascontiguousarray(words.astype(np.int32)).view(np.uint8).reshape(*words.shape, 4)
    return b[..., :3].astype(np.float64)


def attach_images(row: dict, case, reference: dict, got: dict, out_dir: Path) -> None:
    """Triptychs of every image-like output of a case, their paths in row["images"]."""
    for out in case.outputs:
        arr, cand = np.asarray(reference[out.name]), np.asarray(got[out.name])
        if out.name == "rgba" and arr.ndim == 2:  # packed canvas words: show them as the pixels they are
            arr, cand = unpack_rgba(arr), unpack_rgba(cand)
        if arr.ndim >= 3 and arr.shape[-1] == 3:
            row.setdefault("images", {})[out.name] = save_triptych(
                out_dir / "images", f"{case.id}__{row['backend']}__{out.name}", arr, cand
            )


def _clean(value):
    """JSON has no NaN/Infinity: they become null (and the row says why it failed)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


SUMMARY_METRICS = ("max_abs", "rel_l2", "cosine", "psnr", "ssim")


def summary(results: list[dict], adapter: dict, wall_s: float, extra: dict | None = None) -> dict:
    rows = []
    for r in results:
        row = dict(r)
        row["metrics"] = {k: r["metrics"].get(k) for k in SUMMARY_METRICS} | {
            k: v for k, v in r["metrics"].items() if k not in SUMMARY_METRICS
        }
        rows.append(row)
    totals = {s: sum(r["status"] == s for r in results) for s in STATUSES}
    body = {
        "versions": versions.collect(),
        "adapter": {
            "vendor": adapter.get("vendor", ""),
            "architecture": adapter.get("architecture", ""),
            "features": adapter.get("features", []),
            "limits": adapter.get("limits", {}),
        },
        "stages": rows,
        "totals": totals,
        "wall_s": round(wall_s, 2),
    }
    if extra:
        body.update(extra)
    return _clean(body)


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}"
    return html.escape(str(value))


def index_html(body: dict) -> str:
    e = html.escape
    head = ["stage", "backend", "dtype", "status", *SUMMARY_METRICS, "ref ms", "cand ms", "kernel", "message"]
    rows = []
    for r in body["stages"]:
        cells = [e(r["stage"]), e(r["backend"]), e(r["dtype"]), f'<b class="{e(r["status"])}">{e(r["status"])}</b>']
        cells += [_fmt(r["metrics"].get(k)) for k in SUMMARY_METRICS]
        cells += [_fmt(r["ms"].get("reference")), _fmt(r["ms"].get("candidate")), _fmt(r["localized_kernel"])]
        cells.append(e(r["message"]))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        for name, paths in (r.get("images") or {}).items():
            figs = "".join(
                f'<figure><img src="{e(p)}" alt="{e(kind)}"><figcaption>{e(kind)}'
                f"{' ×' + str(AMPLIFY) if kind == 'diff' else ''}</figcaption></figure>"
                for kind, p in paths.items()
            )
            rows.append(f'<tr><td colspan="{len(head)}"><div class="imgs">{e(name)}: {figs}</div></td></tr>')
    t = body["totals"]
    versions_line = ", ".join(f"{k} {e(str(v))}" for k, v in body["versions"].items())
    adapter = body["adapter"]
    timings = body.get("timings", {})
    time_rows = "".join(
        f"<tr><td>{e(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in sorted(timings.items(), key=lambda kv: -(kv[1] or 0))
    )
    model = body.get("model") or {}
    model_line = " · ".join(f"{e(str(k))}: {e(str(v))}" for k, v in model.items())
    skips = "".join(
        f"<li>{e(x['case'])} [{e(x['backend'])}] ({'expected' if x.get('allowed') else 'NOT allowed'}): "
        f"{e(x['reason'])}</li>"
        f"{e(x['reason'])}</li>"
        for x in body.get("skips", [])
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wsd conformance</title>
<style>
body{{font:14px system-ui,sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}}
.pass{{color:#060}} .fail{{color:#b00}} .error{{color:#a50}} .skip{{color:#666}}
.imgs figure{{display:inline-block;margin:4px}} .imgs img{{width:192px;image-rendering:pixelated}}
</style></head><body>
<h1>wsd conformance</h1>
<p><b>{t["pass"]}</b> pass, <b class="fail">{t["fail"]}</b> fail, <b class="error">{t["error"]}</b> error,
{t["skip"]} skip in {body["wall_s"]} s</p>
<p>Adapter: {e(adapter.get("vendor", ""))} {e(adapter.get("architecture", ""))};
features: {e(", ".join(adapter.get("features", [])))}</p>
<p>Versions: {versions_line}</p>
<p>Model: {model_line or "–"}</p>
<h2>Where the time went (s)</h2><table><tr><th>phase</th><th>s</th></tr>{time_rows}
<tr><td><b>wall</b></td><td>{body["wall_s"]}</td></tr></table>
{"<h2>Skips</h2><ul>" + skips + "</ul>" if skips else ""}
<h2>Cases</h2>
<table><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>
{"".join(rows)}
</table></body></html>
"""


def write(out_dir: Path, body: dict) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out_dir / "summary.json", "html": out_dir / "index.html"}
    paths["summary"].write_text(json.dumps(body, indent=1) + "\n")
    paths["html"].write_text(index_html(body))
    return paths
