"""Finding and starting a Unity build as `mlagents-learn` does, and stopping it for sure.

`--env` names a build the way ML-Agents' users write it: the executable, its name without
extension, or the folder it was built into; the lookup follows ML-Agents' rules per platform.
The build is started in its own process group, so that a build's own helper processes (the
crash handler) go with it: `stop` ends the group, waiting for a clean exit first. On Linux the
build also gets SIGTERM if the trainer itself dies (`kill -9`, the OOM killer): a Unity build
whose trainer is gone does not quit by itself (it falls back to inference and runs on), so
it is started through a few lines of Python that ask the kernel for that signal
(prctl PR_SET_PDEATHSIG, kept across exec) and then become the build.
"""
from __future__ import annotations

import glob
import logging
import os
import signal
import subprocess
import sys
from typing import List, Optional, Sequence

from palaestra.exception import EnvironmentSetupError

logger = logging.getLogger("palaestra")

_EXTENSIONS = (".app", ".exe", ".x86_64", ".x86")

# argv: [python, -c, this, trainer pid, executable, args...]
_DIE_WITH_TRAINER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)  # the trainer died before the request took hold\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n")


def is_unity_build(env_path: str) -> bool:
    """Whether `--env` names a Unity build rather than a Gymnasium id or a module: a path that
    exists (with or without a build's extension), or one that is plainly a path (a build's
    extension, `./`, `../` or `/` at the start, or a folder that exists before its last
    part), so that a build missing from where the user said gets "no build there" and not
    "unknown Gymnasium id"."""
    base = _strip_extension(env_path)
    if any(os.path.exists(p) for p in [env_path, base, *(base + ext for ext in _EXTENSIONS)]):
        return True
    if base != env_path.rstrip("/\\") or env_path.startswith(("./", "../", "/", ".\\")):
        return True
    parent = os.path.dirname(env_path)
    return bool(parent) and os.path.isdir(parent) and ":" not in env_path


def _strip_extension(path: str) -> str:
    path = path.rstrip("/\\")
    for ext in _EXTENSIONS:
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def find_executable(env_path: str) -> str:
    """The file to run for `--env env_path`, as ML-Agents looks it up (Linux: `.x86_64`,
    `.x86`, the file itself; macOS: inside `.app/Contents/MacOS`; Windows: `.exe`, or the one
    `.exe` of a build folder), relative to the working directory or as given."""
    base = _strip_extension(env_path)
    name = os.path.basename(base)
    candidates: List[str] = []
    if sys.platform.startswith("linux") or sys.platform.startswith("freebsd"):
        candidates = [base + ".x86_64", base + ".x86", os.path.join(base, name + ".x86_64"),
                      os.path.join(base, name + ".x86"),
                      *sorted(glob.glob(os.path.join(base, "*.x86_64"))), base]
    elif sys.platform == "darwin":
        macos = os.path.join(base + ".app", "Contents", "MacOS")
        candidates = [os.path.join(macos, name), *sorted(glob.glob(os.path.join(macos, "*"))),
                      base]
    else:
        candidates = [base + ".exe", os.path.join(base, name + ".exe"),
                      *[p for p in sorted(glob.glob(os.path.join(base, "*.exe")))
                        if not os.path.basename(p).startswith("UnityCrashHandler")], base]
    for path in candidates:
        if os.path.isfile(path):
            if not os.access(path, os.X_OK) and os.name != "nt":
                raise EnvironmentSetupError(
                    f"--env {env_path}: {path} is not executable; run chmod -R 755 "
                    f"{os.path.dirname(path) or '.'} (a build copied or unzipped may lose the "
                    "permission).")
            return path
    raise EnvironmentSetupError(
        f"--env {env_path}: no Unity build found there (looked for: "
        f"{', '.join(candidates[:4])}). Give the build's executable, its name without extension "
        "or its folder; leave --env out to train in the Unity Editor.")


def launch_arguments(port: int, no_graphics: bool, log_file: Optional[str],
                     extra: Sequence[str]) -> List[str]:
    """The arguments ML-Agents passes to a build, in its order."""
    args = ["-nographics", "-batchmode"] if no_graphics else []
    args += ["--mlagents-port", str(port)]
    if log_file is not None and not any(a.lower() == "-logfile" for a in extra):
        args += ["-logFile", log_file]
    return args + list(extra)


class UnityProcess:
    """A running build; `stop` ends it (and its process group) for sure."""

    def __init__(self, executable: str, args: Sequence[str], log_file: Optional[str]) -> None:
        self.executable = executable
        self.log_file = log_file
        command = [executable, *args]
        if sys.platform.startswith("linux"):
            command = [sys.executable, "-c", _DIE_WITH_TRAINER, str(os.getpid()), *command]
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=os.name != "nt")
        except PermissionError:
            raise EnvironmentSetupError(
                f"{executable} could not be started (permission denied): chmod -R 755 "
                f"{os.path.dirname(executable) or '.'}") from None
        except OSError as exc:
            raise EnvironmentSetupError(f"{executable} could not be started: "
                                        f"{exc.strerror or exc}") from None

    def exit_message(self) -> Optional[str]:
        """None while the build runs; else how it ended, with where its log is."""
        code = self.process.poll()
        if code is None:
            return None
        how = f"exit code {code}"
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                pass
        where = f"; its log: {self.log_file}" if self.log_file else ""
        return f"the Unity build {self.executable} ended ({how}){where}"

    def stop(self, timeout: float = 10.0) -> None:
        """Wait for a clean exit (after the trainer's close message), then terminate, then
        kill the process group: no build outlives the run."""
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL if os.name != "nt" else signal.SIGTERM)
                    self.process.wait(timeout=5.0)
        if os.name != "nt":  # helpers the build started in its group
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _signal(self, sig: int) -> None:
        try:
            if os.name != "nt":
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass
