"""Stats: one reporter per behavior, summarised every `summary_freq` steps into pluggable writers.

Writers come from the ``palaestra.stats_writer`` entry-point group (palaestra's own ``default``
gives console, progress bar and TensorBoard); each factory is called with the run options and
returns a list of `StatsWriter`. Nothing here is module-global: the controller owns the writers.

A writer is someone else's code running inside every summary of every behavior, so each one is
wrapped in a `GuardedWriter` (`make_stats_writers`, `guard_writers`): a writer that raises is
reported once and switched off, and the run and the other writers go on.
"""
from __future__ import annotations

import abc
import logging
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Protocol,
                    Sequence, Tuple)

import numpy as np

from palaestra.describe import describe_error, short_repr
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
        # A NaN or infinite value (a diverged loss, an environment's inf reward) gives a NaN or
        # inf summary, which the writers show as such; NumPy's RuntimeWarning about it would
        # only add an unexplained line to the console at every summary.
        with np.errstate(invalid="ignore", over="ignore"):
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
    """Collects values for one behavior between summaries.

    The writers are called as given: the controller hands it `GuardedWriter`s, so that a
    failing plugin writer cannot end the run from inside a trainer's summary.
    """

    def __init__(self, category: str, writers: List[StatsWriter]) -> None:
        self.category = category
        self.writers = writers
        self._values: Dict[str, List[float]] = defaultdict(list)
        self._latest: Dict[str, StatsSummary] = {}
        self._summed: set = set()  # keys summarised by their sum, not their mean

    def add_stat(self, key: str, value: float, aggregation: str = "mean") -> None:
        """`aggregation` "sum": the summary of `key` is the sum of its values over the period
        (a count the environment reports per step), else their mean."""
        self._values[key].append(float(value))
        if aggregation == "sum":
            self._summed.add(key)

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
        for key in self._summed & set(summaries):
            s = summaries[key]
            summaries[key] = StatsSummary(s.sum, 0.0, s.num, s.sum)
        if not summaries:
            return summaries
        self._latest.update(summaries)
        for writer in self.writers:
            writer.write_stats(self.category, summaries, step)
        self._values.clear()
        return summaries


class GuardedWriter(StatsWriter):
    """One writer, run so that its failure costs only its own output.

    The first exception from `on_start`, `write_stats` or `close` (SystemExit included; Ctrl-C
    is not caught) is reported once, naming the writer and the plugin it came from, and the
    writer is not called again for the rest of the run. Without this a plugin's bug in a
    summary would end every run at its first summary, and a crash in `close` would skip the
    rest of the shutdown (the other writers' `close`, the environment, timers.json).
    """

    def __init__(self, writer: StatsWriter, source: str = "") -> None:
        self.writer = writer
        self.source = source
        self.failed = False

    @property
    def name(self) -> str:
        label = type(self.writer).__name__
        return f"{label} ({self.source})" if self.source else label

    def _call(self, method: str, *args: Any) -> None:
        if self.failed:
            return
        try:
            getattr(self.writer, method)(*args)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: B036 - a plugin's sys.exit() included
            self.failed = True
            logger.warning("Stats writer %s failed in %s: %s. It is disabled for the rest of "
                           "this run; the other writers go on.", self.name, method,
                           describe_error(exc))

    def on_start(self, category: str, max_steps: int, initial_step: int) -> None:
        self._call("on_start", category, max_steps, initial_step)

    def write_stats(self, category: str, values: Dict[str, StatsSummary], step: int) -> None:
        self._call("write_stats", category, values, step)

    def close(self) -> None:
        if not self.failed:
            self._call("close")
            return
        # A writer that already failed still gets the chance to release its files or restore
        # the terminal, but its error was reported once and is not reported again.
        try:
            self.writer.close()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: B036
            logger.debug("Stats writer %s failed in close as well: %s", self.name,
                         describe_error(exc))


def guard_writers(writers: Iterable[StatsWriter], source: str = "") -> List[StatsWriter]:
    """Each writer in a `GuardedWriter` (those already guarded are kept as they are)."""
    return [w if isinstance(w, GuardedWriter) else GuardedWriter(w, source) for w in writers]


class WriterPlugin(Protocol):
    """What `make_stats_writers` needs of a loaded ``palaestra.stats_writer`` entry point
    (`palaestra.registry.load_stats_writer_factories` gives these)."""

    label: str
    factory: Callable[..., Any]


def make_stats_writers(run_options: "RunOptions", factories: Sequence[WriterPlugin]
                       ) -> List[StatsWriter]:
    """Call every stats writer plugin's factory; return their writers, guarded.

    A factory that raises, returns something other than a list (or tuple), or puts
    something other than a `StatsWriter` in it is reported with the plugin's name and left
    out: a broken writer plugin must not stop training, which does not need it.
    """
    writers: List[StatsWriter] = []
    for plugin in factories:
        try:
            made = plugin.factory(run_options)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: B036 - a plugin's sys.exit() included
            logger.warning("Skipping %s: its factory failed: %s", plugin.label,
                           describe_error(exc))
            continue
        if not isinstance(made, (list, tuple)):
            logger.warning("Skipping %s: its factory returned %s, not a list of StatsWriter",
                           plugin.label, _short_repr(made))
            continue
        for item in made:
            if isinstance(item, StatsWriter):
                writers.append(GuardedWriter(item, plugin.label))
            else:
                logger.warning("Skipping %s from %s: not a palaestra StatsWriter",
                               _short_repr(item), plugin.label)
    return writers


def _short_repr(obj: Any) -> str:
    """A plugin's object for a report line, cut short; never raises (`short_repr`: a broken
    ``__repr__`` must not end the run that only wanted to say the object is skipped)."""
    return short_repr(obj)


def format_number(value: float, digits: int = 3) -> str:
    """A summary value for a console line: NaN and infinities plainly as ``nan``, ``inf`` and
    ``-inf`` (a diverged run must be visible, not hidden), huge values in exponent form
    instead of hundreds of digits."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 1e9:
        return f"{value:.{digits}e}"
    return f"{value:.{digits}f}"


GROUP_REWARD_KEY = "Environment/Group Cumulative Reward"
REWARD_KEY = "Environment/Cumulative Reward"


class ConsoleWriter(StatsWriter):
    """The summary line ML-Agents users know, plus steps/s and time left."""

    def __init__(self, printer: Any = None, training: bool = True) -> None:
        self._start: Dict[str, Tuple[float, int, int]] = {}
        self._printer = printer
        self._training = training

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
            line += (f" Mean Reward: {format_number(reward.mean)}."
                     f" Std of Reward: {format_number(reward.std)}.")
        else:
            line += " No episode was completed since last summary."
        group = values.get(GROUP_REWARD_KEY)
        if group is not None:
            line += f" Mean Group Reward: {format_number(group.mean)}."
        line += " Training." if self._training else " Not Training."
        if self._printer is not None:
            self._printer(line)
        else:
            logger.info(line)


class TensorboardWriter(StatsWriter):
    """Scalar summaries under ``<run dir>/<behavior>/`` for ``tensorboard --logdir results``.

    Every value is written, NaN and infinities included: TensorBoard plots them as such, and a
    loss curve that silently stops is harder to read than one that shows where it diverged.
    Each session starts its own event file with a session-start mark just after the step it
    starts from, so that after `--resume` TensorBoard drops the interrupted run's points past
    the checkpoint instead of showing those steps twice (88 points for 77 steps).
    """

    def __init__(self, base_dir: str) -> None:
        self.base_dir = base_dir
        self._files: Dict[str, EventFileWriter] = {}
        self._resumed_at: Dict[str, int] = {}  # until the session's first summary

    def _file(self, category: str) -> EventFileWriter:
        if category not in self._files:
            self._files[category] = EventFileWriter(os.path.join(self.base_dir, category))
        return self._files[category]

    def on_start(self, category: str, max_steps: int, initial_step: int) -> None:
        # The checkpoint holds the state at `initial_step`, so earlier files' points up to it
        # are this run's own history; those after it are what the interrupted run wrote past
        # its checkpoint, and this session writes those steps again: drop them.
        writer = self._file(category)
        writer.add_session_start(initial_step + 1)
        if initial_step > 0:
            # Twice on a resume: TensorBoard's server-side accumulator takes the first start
            # mark it sees in a directory as the run's opening, not as a restart, and an
            # interrupted run written by an older palaestra holds none. The second mark is
            # then the restart; where the first already was one, it removes nothing more.
            writer.add_session_start(initial_step + 1)
        writer.flush()
        self._resumed_at[category] = initial_step

    def write_stats(self, category: str, values: Dict[str, StatsSummary], step: int) -> None:
        writer = self._file(category)
        resumed_at = self._resumed_at.pop(category, None)
        if resumed_at is not None and step <= resumed_at:
            # This session summarises the resume step itself (e.g. a summary written at
            # the end without any new step): its point replaces the interrupted run's one.
            writer.add_session_start(step)
        for key, summary in values.items():
            writer.add_scalar(key, summary.mean, step)
        writer.flush()

    def close(self) -> None:
        for writer in self._files.values():
            writer.close()


class ProgressWriter(StatsWriter):
    """A live progress line per behavior at the bottom of the terminal
    (`palaestra.console.LiveProgress`), for a person watching. Log lines go above it through
    the same console (`palaestra.console.setup_logging`)."""

    def __init__(self, console: Any = None) -> None:
        from palaestra.console import LiveProgress

        self.display = LiveProgress(console)

    def on_start(self, category: str, max_steps: int, initial_step: int) -> None:
        self.display.add(category, max_steps, initial_step)

    def write_stats(self, category: str, values: Dict[str, StatsSummary], step: int) -> None:
        reward = values.get(REWARD_KEY)
        self.display.update(category, step,
                            None if reward is None else format_number(reward.mean, 2))

    def close(self) -> None:
        self.display.stop()


def get_default_stats_writers(run_options: "RunOptions") -> List[StatsWriter]:
    """palaestra's own writers (entry point ``default`` of ``palaestra.stats_writer``)."""
    from palaestra.console import interactive

    ckpt = run_options.checkpoint_settings
    if ckpt.inference:  # a run without training writes nothing, curves included
        writers: List[StatsWriter] = [ConsoleWriter(training=False)]
    else:
        writers = [TensorboardWriter(ckpt.write_path), ConsoleWriter()]
    if interactive():
        writers.append(ProgressWriter())
    return writers
