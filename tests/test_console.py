"""The console a person sees: one progress line at the bottom, log lines above it, nothing cut
at 80 columns; plain lines without a terminal."""
import io
import logging
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import fcntl

import pyte
from rich.console import Console

from palaestra.cli import summary_lines
from palaestra.api import RunResult
from palaestra.console import ConsoleHandler, LiveProgress, ProgressLines, clock

CONFIG = """
behaviors:
  3DBall:
    trainer_type: ppo
    hyperparameters: {batch_size: 64, buffer_size: 600}
    summary_freq: 600
    checkpoint_interval: 1200
    max_steps: 4800
env_settings: {env_path: 3DBall, seed: 3}
"""
PROGRESS = re.compile(r"\d+/\d+ +(\d+|-) steps/s")


def _rows(lines, width):
    return [ProgressLines.plain(pieces) for pieces in lines.lines(width, now=0.0)]


def test_at_80_columns_the_step_counter_is_never_cut():
    lines = ProgressLines()
    lines.add("3DBall", 1_000_000, 0)
    lines.add("a-very-long-behavior-name?team=0", 10_000_000, 0)
    lines.update("3DBall", 30018, "93.25")
    for width in (80, 60, 40):
        rows = _rows(lines, width)
        assert "30018/1000000" in rows[0] and "0/10000000" in rows[1]
        assert all(len(row) <= width for row in rows), (width, rows)
    wide = _rows(lines, 120)
    assert "steps/s" in wide[0] and "reward 93.25" in wide[0] and "━" in wide[0]
    narrow = _rows(lines, 40)  # name and counter only: the bar needs 6 columns
    assert "steps/s" not in narrow[0] and "━" not in narrow[0] and "─" not in narrow[0]
    assert rows[1].startswith("a-very-long-behavior-na…")


def test_the_bar_fills_with_the_steps():
    lines = ProgressLines()
    lines.add("B", 100, 0)
    lines.update("B", 50)
    bar = [t for t, style in lines.lines(80, now=0.0)[0] if style == "bar"][0]
    done, _, todo = bar.partition("\0")
    assert abs(len(done) - len(todo)) <= 1 and set(done) == {"━"} and set(todo) == {"─"}


def test_clock():
    assert clock(5) == "0:05" and clock(65) == "1:05" and clock(3725) == "1:02:05"
    assert clock(-3) == "0:00"


def _screen(raw: bytes, columns=80, rows=400):
    screen = pyte.Screen(columns, rows)
    stream = pyte.ByteStream(screen)
    stream.feed(raw)
    return [line.rstrip() for line in screen.display if line.strip()]


def test_log_lines_go_above_the_live_line():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, color_system="standard")
    log = logging.getLogger("palaestra.test_console")
    handler = ConsoleHandler(console)
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        display = LiveProgress(console)
        display.add("3DBall", 5000, 0)
        for step in (1000, 2000, 3000):
            log.info("Saved checkpoint results/run/3DBall/3DBall-%d.pt", step)
            display.update("3DBall", step, "1.00")
        display.stop()
    finally:
        log.removeHandler(handler)
    screen = _screen(out.getvalue().encode())
    progress = [line for line in screen if PROGRESS.search(line)]
    assert len(progress) == 1 and progress[0] == screen[-1], screen
    assert "3000/5000" in progress[0] and "[INFO]" not in progress[0]
    assert sum("Saved checkpoint" in line for line in screen) == 3


def _learn(tmp_path, **popen):
    config = tmp_path / "3DBall.yaml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "PALAESTRA_NO_PROGRESS"}
    env.update(COLUMNS="80", LINES="30", TERM="xterm-256color")
    return subprocess.Popen([sys.executable, "-m", "palaestra", "learn", str(config),
                             "--run-id", "tty", "--results-dir", str(tmp_path / "results")],
                            cwd=str(tmp_path), env=env, **popen)


def test_learn_in_a_terminal_of_80_columns_shows_one_progress_line_at_the_end(tmp_path):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))
    proc = _learn(tmp_path, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    raw = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            raise AssertionError(f"no output for 120 s: {bytes(raw)[-2000:]!r}")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        raw += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, bytes(raw)[-3000:]
    screen = _screen(bytes(raw))
    progress = [i for i, line in enumerate(screen) if PROGRESS.search(line)]
    assert len(progress) == 1, "\n".join(screen)
    bar = screen[progress[0]]
    assert "/4800" in bar and "[INFO]" not in bar and "Saved" not in bar, bar
    # the display is the last thing the run drew: only the end-of-run summary follows it
    after = screen[progress[0] + 1:]
    assert after and after[0].startswith("Results: "), "\n".join(screen)
    assert not any("[INFO]" in line for line in after), "\n".join(screen)
    assert any(line.startswith("TensorBoard: tensorboard --logdir") for line in after)
    # the log lines are all there, above it, each on a line of its own
    assert sum("Saved checkpoint" in line for line in screen[:progress[0]]) >= 4
    assert all(len(line) <= 80 for line in screen)


def test_learn_without_a_terminal_prints_plain_lines(tmp_path):
    proc = _learn(tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    text = out.decode()
    assert "\x1b" not in text and "\r" not in text
    assert re.search(r"^\[INFO\] 3DBall\. Step: 4\d{3}\. ", text, re.M), text
    assert "\nResults: " in text and "Curves: " in text


def test_the_summary_says_where_things_are_and_how_to_continue():
    done = RunResult("r", "results/r", {"B": 100}, {}, models={"B": "results/r/B.onnx"},
                     curves="results/r/curves.png", max_steps={"B": 100})
    lines = summary_lines(done)
    assert lines[:3] == ["Results: results/r", "Curves: results/r/curves.png",
                         "Model (B): results/r/B.onnx"]
    assert "TensorBoard: tensorboard --logdir results" in lines
    assert not any("--resume" in line for line in lines)
    stopped = RunResult("my run", "out dir/my run", {"B": 40}, {}, interrupted=True,
                        max_steps={"B": 100})
    last = summary_lines(stopped)[-1]
    assert "B at step 40 of 100" in last
    assert last.endswith("palaestra learn 'out dir/my run/configuration.yaml' --resume")
