"""What a person at a terminal sees while a run trains.

Log lines and the live progress display go through one rich console: a log line printed by
another stream while the display is live would land in the middle of the bar's line (the bar
would stick to log text and be drawn again below it). With the shared console, rich prints
each line above the display and redraws the display once, at the bottom.

Where the output is not a terminal (CI, a file, a pipe) there is no live display and lines
are plain, without colours or cursor movements, so that a log reads the same in any viewer.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import IO, Any, Dict, Iterable, List, Optional, Tuple

PLAIN_FORMAT = "[%(levelname)s] %(message)s"
_LEVEL_STYLE = {logging.WARNING: "yellow", logging.ERROR: "bold red", logging.CRITICAL: "bold red"}


def interactive(stream: Optional[IO[str]] = None) -> bool:
    """Whether a person is watching `stream` (stdout by default) in a terminal that can redraw
    a line. PALAESTRA_NO_PROGRESS (any value) or TERM=dumb turn the live display off."""
    stream = sys.stdout if stream is None else stream
    if os.environ.get("PALAESTRA_NO_PROGRESS") is not None:
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def shared_console() -> Any:
    """rich's process-wide console: the progress display, the log handler, and a plugin's own
    `rich.print` all reach the terminal through it (one place decides where a line goes)."""
    import rich

    return rich.get_console()


class ConsoleHandler(logging.Handler):
    """A logging handler printing through a rich console (above a live display, if one is
    shown), in the plain format: the same text as in a log file, coloured by level."""

    def __init__(self, console: Any = None) -> None:
        super().__init__()
        self.console = console if console is not None else shared_console()
        self.setFormatter(logging.Formatter(PLAIN_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        from rich.text import Text

        try:
            text = Text(self.format(record), style=_LEVEL_STYLE.get(record.levelno, ""),
                        overflow="fold")
            self.console.print(text, highlight=False, markup=False, emoji=False)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def setup_logging(debug: bool = False) -> None:
    """The command's logging: through the shared console in a terminal, plain lines on stdout
    otherwise. As `logging.basicConfig`, nothing is added where the root logger already has a
    handler (a host program's, pytest's). A library user (`palaestra.learn`) keeps their own
    logging set-up."""
    root = logging.getLogger()
    logging.getLogger("palaestra").setLevel(logging.DEBUG if debug else logging.INFO)
    if root.handlers:
        return
    if interactive():
        handler: logging.Handler = ConsoleHandler()
    else:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


# -- the live progress display --------------------------------------------------------------------

def clock(seconds: float) -> str:
    """h:mm:ss (m:ss under an hour): a duration in the fewest characters that still read as one."""
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class _Row:
    name: str
    total: int
    step: int
    start_step: int
    started: float
    rate: Optional[float] = None
    reward: str = "-"


class ProgressLines:
    """One line per behavior, fitted to the terminal's width: the name and the step counter
    always show in full; then the rate, the reward and the times, as far as they fit; the bar
    takes what is left (and is left out below 6 columns). rich's own progress table squeezes
    every column instead, and at 80 columns cuts the step counter (`30018/1000…`)."""

    MAX_NAME = 24

    def __init__(self) -> None:
        self.rows: Dict[str, _Row] = {}

    def add(self, name: str, total: int, step: int) -> None:
        self.rows[name] = _Row(name, total, step, step, time.perf_counter())

    def update(self, name: str, step: int, reward: Optional[str] = None) -> None:
        row = self.rows[name]
        row.step = step
        elapsed = time.perf_counter() - row.started
        if elapsed > 0 and step > row.start_step:
            row.rate = (step - row.start_step) / elapsed
        if reward is not None:
            row.reward = reward

    def lines(self, width: int, now: Optional[float] = None) -> List[List[Tuple[str, str]]]:
        """Each row as (text, style) pieces, to be joined with single spaces: name, bar (done
        and to do), step counter, rate, reward, times; the optional ones left out where they
        do not fit in `width`."""
        now = time.perf_counter() if now is None else now
        cells = []
        for row in self.rows.values():
            name = row.name if len(row.name) <= self.MAX_NAME else \
                row.name[:self.MAX_NAME - 1] + "…"
            left = "-:--"
            if row.rate and row.total > row.step:
                left = clock((row.total - row.step) / row.rate)
            elif row.step >= row.total:
                left = "0:00"
            cells.append([name, f"{row.step}/{row.total}",
                          f"{row.rate:.0f} steps/s" if row.rate else "- steps/s",
                          f"reward {row.reward}", f"{clock(now - row.started)}<{left}"])
        if not cells:
            return []
        widths = [max(len(c[i]) for c in cells) for i in range(5)]
        used = widths[0] + 1 + widths[1]  # always shown
        keep: List[int] = []
        for i in (2, 3, 4):  # rate, reward, times: as far as they fit
            if used + 1 + widths[i] <= width:
                keep.append(i)
                used += 1 + widths[i]
        bar_width = width - used - 1
        out = []
        for row, c in zip(self.rows.values(), cells):
            pieces = [(c[0].ljust(widths[0]), "bold")]
            if bar_width >= 6:
                done = int(bar_width * min(1.0, row.step / row.total)) if row.total > 0 else 0
                pieces.append(("━" * done + "\0" + "─" * (bar_width - done), "bar"))
            pieces.append((c[1].rjust(widths[1]), ""))
            pieces += [(c[i].rjust(widths[i]), "") for i in keep]
            out.append(pieces)
        return out

    @staticmethod
    def plain(pieces: List[Tuple[str, str]]) -> str:
        """A row as the characters a terminal shows."""
        return " ".join(text.replace("\0", "") for text, _ in pieces)

    def __rich_console__(self, console: Any, options: Any) -> Iterable[Any]:
        from rich.text import Text

        for pieces in self.lines(options.max_width):
            text = Text(no_wrap=True, overflow="ellipsis")
            for i, (part, style) in enumerate(pieces):
                if i:
                    text.append(" ")
                if style == "bar":
                    done, _, todo = part.partition("\0")
                    text.append(done, style="magenta")
                    text.append(todo, style="grey37")
                else:
                    text.append(part, style=style)
            yield text


class LiveProgress:
    """The live display at the bottom of the terminal (rich `Live`, redrawn 4 times a second so
    that the times advance between summaries). Everything printed meanwhile through the shared
    console, or to stdout / stderr, appears above it."""

    def __init__(self, console: Any = None) -> None:
        from rich.live import Live

        self.console = console if console is not None else shared_console()
        self.lines = ProgressLines()
        self.live = Live(self.lines, console=self.console, refresh_per_second=4,
                         transient=False, redirect_stdout=True, redirect_stderr=True)
        self._started = False

    def add(self, name: str, total: int, step: int) -> None:
        self.lines.add(name, total, step)
        if not self._started:
            self.live.start()
            self._started = True
        self.live.refresh()

    def update(self, name: str, step: int, reward: Optional[str] = None) -> None:
        if name in self.lines.rows:
            self.lines.update(name, step, reward)
            self.live.refresh()

    def stop(self) -> None:
        """Draw the final state once more and leave it in the scrollback, as the last line."""
        if self._started:
            self.live.stop()
            self._started = False
