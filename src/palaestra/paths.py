"""Where a run may write: names checked before they become paths, paths checked before use.

Users run configs they downloaded, so a run id, a behavior name (it comes from the environment)
or a path read back from a state file is untrusted input. Two rules make escaping the run's
folder impossible rather than unlikely: every name that becomes a path component is checked to
be one plain component (`safe_component`), and every path palaestra writes or deletes is
resolved, symlinks included, and checked to lie inside its root (`inside`).
"""
from __future__ import annotations

import os
import unicodedata
from typing import IO, Iterable, List, Optional

from palaestra.exception import PalaestraError

# File systems allow 255 bytes per name; `<behavior>-<step>.pt.tmp-<pid>` adds up to ~40.
MAX_NAME_BYTES = 200
# Path separators (of any system: a results folder may be shared with Windows).
_FORBIDDEN = set("/\\")


class UnsafePathError(PalaestraError):
    """A name or path that would place a file outside the run's folder, or cannot be a name."""


def safe_component(name: object, what: str) -> str:
    """`name` if it is usable as one folder or file name, else a clear error naming `what`
    (e.g. "--run-id") and the rule broken."""
    if not isinstance(name, str):
        raise UnsafePathError(f"{what}: expected a name, got {name!r}.")
    rule = "a run id and a behavior name must be one plain folder name"
    if name.strip() == "":
        raise UnsafePathError(f"{what}: the name is empty; {rule}.")
    if name in (".", ".."):
        raise UnsafePathError(f"{what}: '{name}' names a folder that already exists above or "
                              f"at the run; {rule}.")
    bad = sorted({c for c in name if c in _FORBIDDEN or unicodedata.category(c)[0] == "C"})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise UnsafePathError(f"{what}: {name!r} holds {shown}; {rule} (no path separators, "
                              f"control characters).")
    if name != name.strip():
        raise UnsafePathError(f"{what}: {name!r} starts or ends with white space; {rule}.")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise UnsafePathError(f"{what}: the name is {len(name.encode('utf-8'))} bytes long; at "
                              f"most {MAX_NAME_BYTES} are allowed.")
    return name


def behavior_parts(name: object) -> list[str]:
    """A behavior name as folder names. Gymnasium ids carry a namespace (`ALE/Pong-v5`,
    `palaestra/Basic-v0`) that results keep as nested folders; every part must be a plain
    name, so `../x` is refused like a run id would be."""
    if not isinstance(name, str):
        raise UnsafePathError(f"behavior name: expected a string, got {name!r}.")
    parts = name.split("/")
    for part in parts:
        safe_component(part, f"behavior name {name!r}")
    return parts


def inside(root: str, path: str) -> bool:
    """Whether `path` resolves (symlinks followed) to `root` itself or somewhere below it."""
    root_real = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def check_inside(root: str, path: str, action: str) -> str:
    if not inside(root, path):
        raise UnsafePathError(f"refusing to {action} {path}: it lies outside {root}.")
    return path


def join_inside(root: str, parts: Iterable[str]) -> str:
    path = os.path.join(root, *parts)
    return check_inside(root, path, "write")


def lock_run(run_dir: str) -> Optional[IO[str]]:
    """Hold `run_logs/palaestra.lock` of a run for as long as the returned file is open (the
    system releases it when the process ends, however it ends). None where the system has no
    advisory locks (Windows): the run goes on unguarded. Two processes on one run would delete
    each other's checkpoints in rotation, and `--force` on a live run its whole folder."""
    try:
        import fcntl
    except ImportError:
        return None
    path = os.path.join(run_dir, "run_logs", "palaestra.lock")
    if os.path.islink(path):
        os.unlink(path)
    fh = open(path, "a", encoding="utf-8")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise UnsafePathError(f"The run {run_dir} is in use by another palaestra process; "
                              "wait for it to end, or choose another run id.") from None
    return fh


# Names palaestra gives its own entries of a run folder: a behavior may not take them.
_RESERVED = ("run_logs", "configuration.yaml")


def check_behavior_folders(names: List[str]) -> None:
    """Each behavior's folder must be its own: not one of palaestra's entries of the run
    folder, and not inside another behavior's folder (whose rotation would delete it)."""
    parts = {name: behavior_parts(name) for name in names}
    for name, mine in parts.items():
        if mine[0] in _RESERVED:
            raise UnsafePathError(f"behavior name {name!r}: '{mine[0]}' is the name of "
                                  "palaestra's own entry in the run folder; rename the behavior.")
        for other, theirs in parts.items():
            if other != name and mine[:len(theirs)] == theirs:
                raise UnsafePathError(f"behavior names {other!r} and {name!r}: the second's "
                                      "folder would lie inside the first's; rename one.")
