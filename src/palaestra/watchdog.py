"""Stopping a run whose environment hangs, and stopping cleanly on Ctrl-C / SIGTERM.

The loop's only blocking calls into code palaestra does not control are the environment's reset
and step, and the wait for a step's results (`get_steps`: Unity builds and environment worker
processes step in the background). `EnvGuard` marks those calls (a few attribute writes a step,
no system call), and:
- a watchdog thread raises `EnvironmentTimeout` in the main thread when a reset or step has run
  longer than `timeout` seconds (`env_settings.timeout_step`, `--timeout-step`); the wait for
  results is not timed here, since the environments that make one time out and restart their
  builds or workers themselves (`palaestra.unity.environment`, `palaestra.envs.workers`);
- a first Ctrl-C or SIGTERM asks the loop to stop after the current step, or, if the
  environment is inside a call, breaks out of it; either way the trainers, which never run
  inside that call, save a consistent checkpoint. A second Ctrl-C stops at once, saving nothing.

The exception reaches the main thread through a signal (SIGALRM's handler), so it interrupts
sleeps and blocking reads too; code stuck in C without returning to Python is out of reach of
any in-process mechanism (SIGKILL then, and the last checkpoint resumes).
"""
from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any, Callable, Dict, Optional

from palaestra.exception import PalaestraError


class EnvironmentTimeout(PalaestraError):
    """The environment's reset or step ran past `timeout_step` seconds."""


class StopRequested(BaseException):
    """Raised inside a hanging environment call by Ctrl-C / SIGTERM (BaseException, so that an
    environment's own `except Exception` cannot swallow it)."""


class EnvGuard:
    def __init__(self, timeout: Optional[float], on_stop: Callable[[], None]) -> None:
        self.timeout = timeout
        self._on_stop = on_stop
        self.what: Optional[str] = None  # the call the environment is in, if any
        self._timed = True  # whether that call times out
        self._since = 0.0
        self._calls = 0
        self._fired: Optional[str] = None
        self._stop_asked = 0
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._previous: Dict[int, Any] = {}

    @property
    def interrupted_twice(self) -> bool:
        """Whether a KeyboardInterrupt came from a second Ctrl-C (not from the environment's
        own code raising one)."""
        return self._stop_asked > 1

    # -- the loop marks the environment's calls ----------------------------------------------
    def enter(self, what: str, timed: bool = True) -> None:
        """The environment is in call `what`; with `timed` False Ctrl-C / SIGTERM break out of
        it, but no timeout applies."""
        self._calls += 1
        self._since = time.monotonic()
        self._timed = timed
        self.what = what

    def leave(self) -> None:
        self.what = None

    # -- installing --------------------------------------------------------------------------
    def __enter__(self) -> "EnvGuard":
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach only the main thread: run unguarded (e.g. in a test)
        for signum, handler in ((signal.SIGINT, self._stop), (signal.SIGTERM, self._stop),
                                (signal.SIGALRM, self._alarm)):
            self._previous[signum] = signal.signal(signum, handler)
        if self.timeout:
            self._thread = threading.Thread(target=self._watch, name="palaestra-watchdog",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    # -- signal handlers (main thread) -------------------------------------------------------
    def _stop(self, signum: int, frame: Optional[FrameType]) -> None:
        self._stop_asked += 1
        if self._stop_asked > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._on_stop()
        if self.what is not None:
            raise StopRequested(f"signal {signum} during the environment's {self.what}")

    def _alarm(self, signum: int, frame: Optional[FrameType]) -> None:
        fired, self._fired = self._fired, None
        if fired is not None and self.what is not None:
            raise EnvironmentTimeout(fired)

    # -- the watchdog thread -----------------------------------------------------------------
    def _watch(self) -> None:
        assert self.timeout is not None
        period = min(1.0, self.timeout / 4)
        while not self._done.wait(period):
            what, calls, since = self.what, self._calls, self._since
            if what is None or not self._timed or time.monotonic() - since < self.timeout:
                continue
            self._fired = (f"the environment's {what} has not returned after {self.timeout:g} "
                           "s (env_settings.timeout_step / --timeout-step): it hangs, or needs "
                           "a larger timeout")
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)
            # one alarm per hanging call
            while not self._done.wait(period) and self._calls == calls and self.what:
                pass
