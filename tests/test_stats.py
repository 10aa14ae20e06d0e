"""Stats: summaries, console lines, the progress bar, TensorBoard files, writer plugins."""
import io
import logging
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from rich.console import Console

from helpers import scalars
from palaestra.registry import StatsWriterFactory
from palaestra.stats import (ConsoleWriter, GuardedWriter, ProgressWriter, StatsReporter,
                             StatsSummary, StatsWriter, TensorboardWriter, format_number,
                             get_default_stats_writers, guard_writers, make_stats_writers)
from palaestra.settings import RunOptions


class Collect(StatsWriter):
    def __init__(self):
        self.calls = []

    def write_stats(self, category, values, step):
        self.calls.append((category, values, step))


def test_reporter_summarises_and_clears_between_summaries():
    sink = Collect()
    reporter = StatsReporter("B", [sink])
    reporter.add_stat("Losses/Value Loss", 1.0)
    reporter.add_stat("Losses/Value Loss", 3.0)
    reporter.add_stats("Environment/Cumulative Reward", np.array([1.0, 2.0, 3.0]))
    reporter.write_stats(100)
    (category, values, step), = sink.calls
    assert (category, step) == ("B", 100)
    assert values["Losses/Value Loss"] == StatsSummary(2.0, 1.0, 2, 4.0)
    assert values["Environment/Cumulative Reward"].num == 3
    reporter.write_stats(200)  # nothing new: no empty summary is written
    assert len(sink.calls) == 1
    assert reporter.get_stats_summaries("Losses/Value Loss").mean == 2.0


def test_console_line_has_step_rate_reward_and_time():
    lines = []
    writer = ConsoleWriter(lines.append)
    writer.on_start("B", max_steps=1000, initial_step=0)
    writer.write_stats("B", {"Environment/Cumulative Reward": StatsSummary(4.5, 0.5, 2, 9.0)},
                       500)
    line = lines[0]
    for part in ("B.", "Step: 500.", "Time Elapsed:", "Steps/s:", "Mean Reward: 4.500.",
                 "Std of Reward: 0.500."):
        assert part in line, line
    writer.write_stats("B", {}, 600)
    assert "No episode was completed since last summary" in lines[1]


def test_progress_bar_shows_steps_rate_and_reward():
    out = io.StringIO()
    writer = ProgressWriter(Console(file=out, force_terminal=True, width=120))
    writer.on_start("CartPole-v1", max_steps=1000, initial_step=0)
    writer.write_stats("CartPole-v1",
                       {"Environment/Cumulative Reward": StatsSummary(42.0, 0.0, 1, 42.0)}, 500)
    writer.close()
    text = out.getvalue()
    assert "CartPole-v1" in text and "500/1000" in text and "reward 42.00" in text


def test_default_writers_without_a_terminal_are_tensorboard_and_console(tmp_path):
    options = RunOptions()
    options.checkpoint_settings.results_dir = str(tmp_path)
    writers = get_default_stats_writers(options)  # pytest's stdout is not a terminal
    assert {type(w) for w in writers} == {TensorboardWriter, ConsoleWriter}


def test_tensorboard_files_are_read_by_tensorboard(tmp_path):
    writer = TensorboardWriter(str(tmp_path))
    writer.write_stats("B", {"Policy/Entropy": StatsSummary(0.7, 0.0, 1, 0.7),
                             "Losses/Nan": StatsSummary(float("nan"), 0.0, 1, 0.0)}, 10)
    writer.write_stats("B", {"Policy/Entropy": StatsSummary(0.5, 0.0, 1, 0.5)}, 20)
    writer.close()
    series = scalars(str(tmp_path / "B"))
    assert series["Policy/Entropy"] == [(10, pytest.approx(0.7)), (20, pytest.approx(0.5))]
    # a diverged loss is a curve TensorBoard shows as NaN, not one that silently vanishes
    (step, value), = series["Losses/Nan"]
    assert step == 10 and math.isnan(value)


def test_stats_writer_plugin_through_entry_point(tmp_path):
    """A package adding a writer in group palaestra.stats_writer gets every summary."""
    pkg = tmp_path / "site" / "csv_writer_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        import os
        from palaestra import StatsWriter

        class CSVWriter(StatsWriter):
            def __init__(self, path):
                self.path = path

            def write_stats(self, category, values, step):
                with open(self.path, "a") as fh:
                    for key, summary in values.items():
                        fh.write(f"{category},{step},{key},{summary.mean}\\n")

        def make(run_options):
            return [CSVWriter(os.path.join(run_options.checkpoint_settings.write_path,
                                           "stats.csv"))]
        '''))
    dist = tmp_path / "site" / "csv_writer_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: csv-writer-plugin\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[palaestra.stats_writer]\ncsv = csv_writer_plugin:make\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), PALAESTRA_NO_PROGRESS="1")
    result = subprocess.run(
        [sys.executable, "-m", "palaestra", "learn", "--env", "CartPole-v1", "--run-id", "csv",
         "--results-dir", str(tmp_path / "results"), "--max-steps", "1500"],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = (tmp_path / "results" / "csv" / "stats.csv").read_text().splitlines()
    assert any(",Environment/Cumulative Reward," in row for row in rows), rows


def test_non_finite_rewards_show_plainly_on_the_console(recwarn):
    lines = []
    writer = ConsoleWriter(lines.append)
    writer.on_start("B", max_steps=1000, initial_step=0)
    for values in ([1.0, float("inf")], [float("nan"), 2.0], [-math.inf, -math.inf]):
        writer.write_stats("B", {"Environment/Cumulative Reward": StatsSummary.of(values)}, 10)
    assert "Mean Reward: inf. Std of Reward: nan." in lines[0]
    assert "Mean Reward: nan. Std of Reward: nan." in lines[1]
    assert "Mean Reward: -inf." in lines[2]
    # NumPy's "invalid value" RuntimeWarning is not printed at every summary
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert format_number(1e300) == "1.000e+300" and format_number(-2.5) == "-2.500"


class Failing(StatsWriter):
    """A writer whose `method` raises `error`; counts every call it gets."""

    def __init__(self, method, error):
        self.method, self.error = method, error
        self.calls = []

    def _maybe_fail(self, name):
        self.calls.append(name)
        if name == self.method:
            raise self.error

    def on_start(self, category, max_steps, initial_step):
        self._maybe_fail("on_start")

    def write_stats(self, category, values, step):
        self._maybe_fail("write_stats")

    def close(self):
        self._maybe_fail("close")


@pytest.mark.parametrize("method", ["on_start", "write_stats", "close"])
@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), SystemExit(4)],
                         ids=["RuntimeError", "SystemExit"])
def test_a_failing_writer_is_reported_once_and_switched_off(caplog, method, error):
    caplog.set_level(logging.WARNING, logger="palaestra")
    bad, good = Failing(method, error), Collect()
    writers = guard_writers([bad, good], source="stats writer plugin 'bad' from bad-dist")
    reporter = StatsReporter("B", writers)
    for w in writers:
        w.on_start("B", 100, 0)
    for step in (10, 20, 30):
        reporter.add_stat("x", 1.0)
        reporter.write_stats(step)
    for w in writers:
        w.close()
    assert [step for _, _, step in good.calls] == [10, 20, 30]  # the others go on
    assert bad.calls.count(method) == 1  # not called again once failed
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "Failing (stats writer plugin 'bad' from bad-dist)" in warnings[0]
    assert f"failed in {method}" in warnings[0]
    assert ("disk on fire" if isinstance(error, RuntimeError) else "sys.exit(4)") in warnings[0]
    if method != "close":  # a failed writer still gets to release its files
        assert bad.calls[-1] == "close"


def test_ctrl_c_inside_a_writer_is_not_swallowed():
    writer = GuardedWriter(Failing("write_stats", KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        writer.write_stats("B", {}, 1)


def test_guard_writers_does_not_wrap_twice():
    once = guard_writers([Collect()])
    assert guard_writers(once)[0] is once[0]


def test_make_stats_writers_leaves_out_broken_factories(caplog):
    caplog.set_level(logging.WARNING, logger="palaestra")
    good = Collect()

    def boom(options):
        raise ValueError("no such dashboard")

    factories = [StatsWriterFactory("raises", "dist-a", boom),
                 StatsWriterFactory("none", "dist-b", lambda options: None),
                 StatsWriterFactory("junk", "dist-c", lambda options: [42, good]),
                 StatsWriterFactory("exits", "dist-d", lambda options: sys.exit(2))]
    writers = make_stats_writers(RunOptions(), factories)
    assert [w.writer for w in writers] == [good]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "stats writer plugin 'raises' from dist-a" in text and "no such dashboard" in text
    assert "stats writer plugin 'none' from dist-b: its factory returned None" in text
    assert "Skipping 42 from stats writer plugin 'junk' from dist-c" in text
    assert "stats writer plugin 'exits' from dist-d" in text and "sys.exit(2)" in text
