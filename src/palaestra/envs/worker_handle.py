"""The training process's handle on one environment worker process (`worker_process`).

It starts the process (``spawn``: a fresh interpreter, nothing of the trainer's torch state),
sends it commands, hears its replies, attaches to the shared blocks it makes, and stops it
for good: the lifeline closed (the worker exits by itself), then killed if it has not, its pipe
closed and its blocks unlinked. `WorkerEnv` (`workers`) drives several of these.
"""
from __future__ import annotations

import importlib
import signal
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Dict, List, Optional, Tuple

from palaestra.envs import worker_messages as messages
from palaestra.envs.base import BehaviorSpec, DecisionSteps, TerminalSteps
from palaestra.envs.shared_blocks import StepBlock
from palaestra.envs.worker_process import ErrorReport, WorkerRecipe, worker_main
from palaestra.exception import EnvironmentSetupError, PalaestraError

TIMEOUT_TEXT = "(env_settings.timeout_step / --timeout-step)"
START_TEXT = "to start and make its copies (env_settings.timeout_wait / --timeout-wait)"


class WorkerLost(Exception):
    """A worker died or did not answer in time (the message says which)."""


class WorkerHandle:
    """One worker: its process, pipe and blocks, and what the environment last heard from it
    (`steps`, already with global ids), the action rows written for its next step, and when
    it was restarted."""

    def __init__(self, index: int, first: int, copies: int) -> None:
        self.index, self.first, self.copies = index, first, copies
        self.life = 0  # 0 for the first process, +1 per restart
        self.process: Any = None
        self.conn: Optional[messages.Channel] = None
        self.lifeline: Optional[Connection] = None
        self.blocks: Dict[str, StepBlock] = {}
        self.busy_since: Optional[float] = None  # when the reply now due was asked for
        self.steps: Dict[str, Tuple[DecisionSteps, TerminalSteps]] = {}
        self.fresh = False  # `steps` received and not yet handed out in a batch
        self.actions: Dict[str, int] = {}
        self.restarts: List[float] = []
        self.names: List[str] = []  # its behaviors in the order it reported them

    @property
    def where(self) -> str:
        last = self.first + self.copies - 1
        copies = f"copy {self.first}" if self.copies == 1 else f"copies {self.first}-{last}"
        return f"environment worker {self.index} ({copies})"

    @property
    def waitables(self) -> List[Any]:
        """What `multiprocessing.connection.wait` watches for it: its pipe and its exit."""
        return [self.conn, self.process.sentinel]

    def start(self, context: Any, recipe: WorkerRecipe) -> None:
        conn, child_conn = messages.Channel.pair(context)
        lifeline, child_lifeline = context.Pipe(duplex=False)
        process = context.Process(target=worker_main,
                                  args=(recipe, child_conn.reader, child_conn.writer, lifeline),
                                  name=f"palaestra-env-worker-{self.index}", daemon=True)
        try:
            process.start()
        except BaseException:
            for end in (conn, child_conn, lifeline, child_lifeline):
                end.close()
            raise
        self.process, self.conn, self.lifeline = process, conn, child_lifeline
        self.busy_since = time.monotonic()  # its "ready" is due
        child_conn.close()  # so that the worker's death reads as end of file here
        lifeline.close()

    def send(self, message: Tuple[Any, ...]) -> None:
        self._send(messages.send, message)

    def send_step(self, rows: Dict[str, int]) -> None:
        """``send(("step", rows))``, the command of every step."""
        self._send(messages.send_step_command, rows)

    def _send(self, write: Callable[[messages.Channel, Any], None], what: Any) -> None:
        self.busy_since = time.monotonic()
        try:
            assert self.conn is not None
            write(self.conn, what)
        except OSError:
            pass  # it died: hearing back finds out (end of file, exit code)

    def reply(self, readable: bool = False) -> Optional[Tuple[Any, ...]]:
        """Its reply, once `wait` said its pipe (`readable`) or its exit is ready; None if it
        died."""
        try:
            assert self.conn is not None
            if readable or self.conn.poll():
                reply = messages.receive(self.conn, self.names)
                self.busy_since = None
                return reply
        except (EOFError, OSError):
            pass
        return None

    def receive(self, timeout: Optional[float], setting: str = TIMEOUT_TEXT) -> Tuple[Any, ...]:
        """Its next reply, waited for at most `timeout` seconds (None: no limit; `setting`
        names the limit in the message)."""
        if not wait(self.waitables, timeout):
            raise WorkerLost(f"{self.where} did not answer within {timeout:g} s {setting}")
        reply = self.reply()
        if reply is None:
            raise WorkerLost(f"{self.where} {self.exit_text()}")
        return reply

    def exit_text(self) -> str:
        """How it ended: "was killed by SIGKILL", "exited with code 1"."""
        self.process.join(1.0)
        code = self.process.exitcode
        if code is None:
            return "closed its pipe"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"

    def block(self, name: str, spec: BehaviorSpec, new: Optional[Tuple[str, int]]) -> StepBlock:
        """Its block for behavior `name`: the one it just made (`new`: name, capacity), the
        old one then released, or the one attached before."""
        if new is not None:
            old = self.blocks.pop(name, None)
            if old is not None:
                old.close()
                old.unlink()
            self.blocks[name] = StepBlock(spec, new[1], new[0])
        return self.blocks[name]

    def stop(self) -> None:
        """Make sure the process has ended and release its pipe and blocks; a no-op if it
        was never started or is stopped already."""
        process, self.process = self.process, None
        for conn in (self.lifeline, self.conn):
            if conn is not None:
                conn.close()  # the lifeline's end: the worker exits by itself
        self.conn = self.lifeline = None
        if process is not None:
            process.join(0.5)
            if process.is_alive():
                process.kill()
                process.join()
        for block in self.blocks.values():
            block.close()
            block.unlink()
        self.blocks, self.busy_since, self.actions, self.fresh = {}, None, {}, False

    def error(self, report: ErrorReport) -> PalaestraError:
        """The exception its environment raised, as a palaestra error: the same class if it
        was one, else an EnvironmentSetupError naming it; either way with its traceback."""
        traceback = f"{self.where}'s traceback:\n{report.traceback.rstrip()}"
        cls = _palaestra_class(report)
        if cls is not None:
            try:
                made: PalaestraError = cls(f"{report.message}\n{traceback}")
                return made
            except TypeError:  # a subclass with a constructor of its own
                pass
        return EnvironmentSetupError(f"{self.where}: the environment raised "
                                     f"{report.description}\n{traceback}")


def _palaestra_class(report: ErrorReport) -> Optional[type]:
    if not report.module.startswith("palaestra") or "." in report.name:
        return None
    try:
        cls = getattr(importlib.import_module(report.module), report.name, None)
    except ImportError:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, PalaestraError) else None
