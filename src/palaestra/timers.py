"""Cumulative wall-clock timers around hot sections, so a steps/s regression can be located.

One `Timers` object per run; `time(name)` costs about a microsecond. The controller writes the
totals to ``run_logs/timers.json`` at the end of a run.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict, Iterator


class Timers:
    def __init__(self) -> None:
        self.total: Dict[str, float] = {}
        self.count: Dict[str, int] = {}

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.total[name] = self.total.get(name, 0.0) + time.perf_counter() - start
            self.count[name] = self.count.get(name, 0) + 1

    def add(self, name: str, seconds: float) -> None:
        """Record a section timed by the caller (cheaper than `time` on per-step paths)."""
        self.total[name] = self.total.get(name, 0.0) + seconds
        self.count[name] = self.count.get(name, 0) + 1

    def as_dict(self) -> Dict[str, Dict[str, float]]:
        return {name: {"total_s": round(total, 4), "count": self.count[name]}
                for name, total in sorted(self.total.items(), key=lambda kv: -kv[1])}
