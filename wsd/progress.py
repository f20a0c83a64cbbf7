"""Progress bars per build phase, and the closing summary of where the time went."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


class Phases:
    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.times: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str, total: int | None = None, unit: str = "it"):
        from tqdm import tqdm

        bar = tqdm(
            total=total,
            desc=f"{name:<9}",
            unit=unit,
            file=self.stream,
            disable=not self.enabled,
            leave=True,
            dynamic_ncols=True,
            unit_scale=unit == "B",
        )
        start = time.perf_counter()
        try:
            yield bar
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start
            if total is None:
                bar.set_postfix_str(f"{self.times[name]:.1f}s")
            bar.close()

    def summary(self) -> str:
        total = sum(self.times.values())
        parts = [f"{name} {secs:.1f}s" for name, secs in self.times.items()]
        return f"{total:.1f}s: " + ", ".join(parts)
