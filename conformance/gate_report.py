"""The gate's reports from what each process gated (one part, or one per xdist worker):
summary.json and index.html (conformance/report.py), and a few lines on the terminal."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conformance import report
from conformance.options import allowed_skip, model_names

STARTED = pytest.StashKey[float]()


def pytest_sessionstart(session):
    session.config.stash[STARTED] = time.perf_counter()


def write_reports(config, parts: list[dict]) -> None:
    """summary.json and index.html from what each process (one, or one per xdist worker) gated."""
    order = {gated.name: i for i, gated in enumerate(model_names(config))}
    parts = sorted(parts, key=lambda p: order.get(p["models"][0]["name"], len(order)))
    results = [r for p in parts for r in p["results"]]
    extra = {k: v for p in reversed(parts) for k, v in p["extra"].items()}
    extra["model"] = parts[0]["models"][0]
    extra["models"] = [m for p in parts for m in p["models"]]
    extra["skips"] = [
        {
            "case": f"{r['model']}/{r['stage']}",
            "backend": r["backend"],
            "reason": r["message"],
            "allowed": allowed_skip(config, r["stage"]),
        }
        for r in results
        if r["status"] == "skip"
    ]
    extra["drift"] = [
        {"case": f"{r['model']}/{r['stage']}", "backend": r["backend"], "drift": r["reference_drift"]}
        for r in results
        if r.get("reference_drift")
    ]
    extra["adapters"] = {k: v for p in parts for k, v in p["adapters"].items()}
    timings = {k: round(sum(p["timings"][k] for p in parts), 3) for k in parts[0]["timings"]}
    adapter = next((p["adapter"] for p in parts if p["adapter"]), {})
    wall = time.perf_counter() - config.stash.get(STARTED, time.perf_counter())
    body = report.summary(results, adapter, wall, {**extra, "timings": timings})
    paths = report.write(Path(parts[0]["out_dir"]), body)
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        names = ", ".join(m["name"] for m in extra["models"])
        terminal.write_line(
            f"wsd conformance ({names}): {body['totals']} in {body['wall_s']} s; timings {rounded(timings)}"
        )
        for skip in body.get("skips", []):
            mark = "expected" if skip["allowed"] else "NOT ALLOWED"
            terminal.write_line(f"  skip ({mark}): {skip['case']} [{skip['backend']}]: {skip['reason']}")
        terminal.write_line(f"reports: {', '.join(str(p) for p in paths.values())}")


def rounded(timings: dict) -> dict:
    return {k: round(v, 1) for k, v in timings.items()}
