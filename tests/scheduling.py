"""pytest-xdist scheduling for this suite: the heaviest test file first, and a worker is handed
its next file only once it would otherwise wait.

xdist's `loadfile` orders files by their number of tests and hands a worker its next file while
two of its tests are still pending. Here one SwiftShader page open outweighs thirty quick tests,
so the e2e tier ended with a file of two long Dawn tests queued behind a busy worker while the
other core sat idle for 95 s (measured 2026-12-05). Greedy longest-first over known costs keeps
both workers busy to the end.
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadFileScheduling

# Seconds per file on a bare machine of this kind (2 workers; the builds made on first use),
# from the --durations of 2026-12-05's bare run. Files not listed are light: they keep their
# collection order, after these.
FILE_SECONDS = {
    # e2e
    "tests/test_web/test_app.py": 330,
    "tests/test_wsd/test_build_kill.py": 100,
    "tests/test_conformance/test_user_folders.py": 240,
    "tests/test_conformance/test_gate_exits.py": 180,
    "tests/test_wsd/test_dawn.py": 60,
    "tests/test_wsd/test_smoke.py": 15,
    "tests/test_conformance/test_gate_workers.py": 15,
    # unit
    "tests/test_conformance/test_harness.py": 200,
    "tests/test_wsd/test_build.py": 130,
    "tests/test_wsd/test_weights.py": 50,
    "tests/test_wsd/test_webrt_shim.py": 45,
    "tests/test_wsd/test_webrt_kit.py": 15,
}


def cost(nodeid: str) -> int:
    return FILE_SECONDS.get(nodeid.split("::", 1)[0], 0)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: -cost(item.nodeid))  # stable: the rest keep their order


class HeaviestFileFirst(LoadFileScheduling):
    """Files in collection order (heaviest first); the next file goes to a worker with at most
    one test left, since an xdist worker runs a test only once it holds the one after it."""

    def _reschedule(self, node) -> None:
        if node.shutting_down:
            return
        if not self.workqueue:
            node.shutdown()
            return
        if self._pending_of(self.assigned_work[node]) <= 1:
            self._assign_work_unit(node)


@pytest.hookimpl(optionalhook=True)  # xdist's hook: absent under -p no:xdist
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    config.option.loadscopereorder = False  # the order is the collection's: heaviest first
    return HeaviestFileFirst(config, log)
