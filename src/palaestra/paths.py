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
from typing import Iterable

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
