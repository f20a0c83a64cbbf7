"""The gate under pytest-xdist (`-n 2 --dist loadscope`): one worker per model, one report.

Each worker sends what it gated as a JSON part (workeroutput); the controller merges the parts
when every worker is down and writes the reports once (conformance/gate_report.py).
"""

from __future__ import annotations

import json

import pytest

try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # without pytest-xdist the gate runs in one process
    LoadScopeScheduling = object

PART_KEY = "wsd_conformance_part"
PARTS = pytest.StashKey[list]()


def is_worker(config) -> bool:
    return hasattr(config, "workeroutput")


def send_part(config, part: dict) -> None:
    config.workeroutput[PART_KEY] = json.dumps(part)


def received_parts(config) -> list[dict]:
    return config.stash.get(PARTS, [])


class ModelScopes(LoadScopeScheduling):
    """Each model's cases on one worker (its harness, browser page and native verdicts stay
    together); other tests keep loadscope's module scopes."""

    def _split_scope(self, nodeid: str) -> str:
        _, bracket, case = nodeid.partition("::test_stage[")
        return f"model:{case.split('/', 1)[0]}" if bracket else super()._split_scope(nodeid)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hooks: absent without it
def pytest_xdist_make_scheduler(config, log):
    return ModelScopes(config, log) if config.getvalue("dist") == "loadscope" else None


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    part = getattr(node, "workeroutput", {}).get(PART_KEY)
    if part:
        node.config.stash.setdefault(PARTS, []).append(json.loads(part))
