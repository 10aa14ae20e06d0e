"""Stats: one reporter per behavior, summarised every `summary_freq` steps into pluggable writers.

Writers come from the ``palaestra.stats_writer`` entry-point group (palaestra's own ``default``
gives console, progress bar and TensorBoard); each factory is called with the run options and
returns a list of `StatsWriter`. Nothing here is module-global: the controller owns the writers.
"""
from __future__ import annotations

import abc
import logging
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

from palaestra.tensorboard_events import EventFileWriter

if TYPE_CHECKING:
    from palaestra.settings import RunOptions

logger = logging.getLogger("palaestra")


@dataclass(frozen=True)
class StatsSummary:
    mean: float
    std: float
    num: int
    sum: float

    @staticmethod
    def of(values: List[float]) -> "StatsSummary":
        arr = np.asarray(values, np.float64)
        return StatsSummary(float(arr.mean()), float(arr.std()), len(arr), float(arr.sum()))


class StatsWriter(abc.ABC):
    """Receives each behavior's summaries. `category` is the behavior name."""

    def on_start(self, category: str, max_steps: int, initial_step: int) -> None:
        """A behavior starts (or resumes) training."""

    @abc.abstractmethod
    def write_stats(self, category: str, values: Dict[str, StatsSummary], step: int) -> None:
        ...

    def close(self) -> None:
        """Flush and release files."""


class StatsReporter:
    """Collects values for one behavior between summaries."""

    def __init__(self, category: str, writers: List[StatsWriter]) -> None:
        self.category = category
        self.writers = writers
        self._values: Dict[str, List[float]] = defaultdict(list)
        self._latest: Dict[str, StatsSummary] = {}

    def add_stat(self, key: str, value: float) -> None:
        self._values[key].append(float(value))

    def add_stats(self, key: str, values: np.ndarray) -> None:
        self._values[key].extend(np.asarray(values, np.float64).ravel().tolist())

    def set_stat(self, key: str, value: float) -> None:
        self._values[key] = [float(value)]

    def get_pending(self, key: str) -> List[float]:
        """Values added since the last summary."""
        return list(self._values.get(key, ()))

    def get_stats_summaries(self, key: str) -> Optional[StatsSummary]:
        values = self._values.get(key)
        return StatsSummary.of(values) if values else self._latest.get(key)

    def write_stats(self, step: int) -> Dict[str, StatsSummary]:
        summaries = {k: StatsSummary.of(v) for k, v in self._values.items() if v}
        if not summaries:
            return summaries
        self._latest.update(summaries)
        for writer in self.writers:
            writer.write_stats(self.category, summaries, step)
        self._values.clear()
        return summaries


GROUP_REWARD_KEY = "Environment/Group Cumulative Reward"
REWARD_KEY = "Environment/Cumulative Reward"


class ConsoleWriter(StatsWriter):
    """The summary line ML-Agents users know, plus steps/s and time left."""

    def __init__(self, printer: Any = None) -> None:
        self._start: Dict[str, tuple] = {}
        self._printer = printer

    def on_start(self, category: str, max_steps: int, initial_step: int) -> None:
        self._start[category] = (time.perf_counter(), initial_step, max_steps)

    def write_stats(self, category: str, values: Dict[str, StatsSummary], step: int) -> None:
        t0, step0, max_steps = self._start.get(category, (time.perf_counter(), 0, 0))
        elapsed = time.perf_counter() - t0
        rate = (step - step0) / elapsed if elapsed > 0 else 0.0
        line = f"{category}. Step: {step}. Time Elapsed: {elapsed:.1f} s. Steps/s: {rate:.0f}."
        if rate > 0 and max_steps > step:
            line += f" Time left: {(max_steps - step) / rate:.0f} s."
        reward = values.get(REWARD_KEY)
        if reward is not None:
            line += f" Mean Reward: {reward.mean:.3f}. Std of Reward: {reward.std:.3f}."
        else:
            line += " No episode was completed since last summary."
        group = values.get(GROUP_REWARD_KEY)
        if group is not None:
            line += f" Mean Group Reward: {group.mean:.3f}."
        line += " Training."
        if self._printer is not None:
            self._printer(line)
        else:
            logger.info(line)


class TensorboardWriter(StatsWriter):
    """Scalar summaries under ``<run dir>/<behavior>/`` for ``tensorboard --logdir results``."""

    def __init__(self, base_dir: str) -> None:
        self.base_dir = base_dir
        self._files: Dict[str, EventFileWriter] = {}

    def _file(self, category: str) -> EventFileWriter:
        if category not in self._files:
            self._files[category] = EventFileWriter(os.path.join(self.base_dir, category))
        return self._files[category]

    def write_stats(self, category: str, values: Dict[str, StatsSummary], step: int) -> None:
        writer = self._file(category)
        for key, summary in values.items():
            if math.isfinite(summary.mean):
                writer.add_scalar(key, summary.mean, step)
        writer.flush()

    def close(self) -> None:
        for writer in self._files.values():
            writer.close()


class ProgressWriter(StatsWriter):
    """A live progress bar per behavior (rich), for a person watching a terminal."""

    def __init__(self, console: Any = None) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[rate]} steps/s"),
                                 TextColumn("reward {task.fields[reward]}"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), transient=False, console=console)
        self._tasks: Dict[str, Any] = {}
        self._start: Dict[str, tuple] = {}
        self.progress.start()

    def print(self, line: str) -> None:
        self.progress.console.print(line)

    def on_start(self, category: str, max_steps: int, initial_step: int) -> None:
        self._tasks[category] = self.progress.add_task(category, total=max_steps,
                                                       completed=initial_step, rate="-",
                                                       reward="-")
        self._start[category] = (time.perf_counter(), initial_step)

    def write_stats(self, category: str, values: Dict[str, StatsSummary], step: int) -> None:
        if category not in self._tasks:
            return
        t0, step0 = self._start[category]
        elapsed = time.perf_counter() - t0
        rate = f"{(step - step0) / elapsed:.0f}" if elapsed > 0 else "-"
        fields: Dict[str, Any] = {"rate": rate}
        if REWARD_KEY in values:
            fields["reward"] = f"{values[REWARD_KEY].mean:.2f}"
        self.progress.update(self._tasks[category], completed=step, **fields)

    def close(self) -> None:
        self.progress.stop()


def get_default_stats_writers(run_options: "RunOptions") -> List[StatsWriter]:
    """palaestra's own writers (entry point ``default`` of ``palaestra.stats_writer``)."""
    writers: List[StatsWriter] = [TensorboardWriter(run_options.checkpoint_settings.write_path)]
    if sys.stdout.isatty() and os.environ.get("PALAESTRA_NO_PROGRESS") is None:
        progress = ProgressWriter()
        writers += [progress, ConsoleWriter(progress.print)]
    else:
        writers.append(ConsoleWriter())
    return writers
