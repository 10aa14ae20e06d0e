"""Files that are either the old version or the new one, never half of either.

Every file a run keeps (checkpoints, buffers, training_status.json, configuration.yaml) is
written to `<name>.tmp-<pid>` in the same folder, flushed to disk, moved over the old name with
`os.replace` and the folder entry flushed too: a kill or a power cut at any moment leaves the
previous file intact. Temporary files a kill left behind are removed when the run starts again
(`remove_stale_temp_files`).
"""
from __future__ import annotations

import os
import re
import time
from typing import IO, Any, Callable

_TMP = re.compile(r"\.tmp-\d+$")
# Fault injection for the kill tests (tests/test_faults.py): with this variable set to
# `<file>` or `<file>:<suffix>`, the first write of a file whose name ends with <suffix> stops
# half-written, creates <file> and waits to be killed. Never set in real runs.
PAUSE_ENV = "PALAESTRA_FAULT_PAUSE_IN_SAVE"


def temp_name(path: str) -> str:
    return f"{path}.tmp-{os.getpid()}"


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:  # not every system opens folders (Windows); the file itself is synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _maybe_pause(fh: IO[bytes], path: str) -> None:
    setting = os.environ.get(PAUSE_ENV)
    if not setting:
        return
    marker, _, suffix = setting.partition(":")
    if os.path.exists(marker) or not path.endswith(suffix):
        return
    fh.flush()
    with open(marker, "w", encoding="utf-8") as out:
        out.write(path)
    while True:  # the test kills the process now
        time.sleep(3600)


_NEW_FILE = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_BINARY", 0))


def open_new(path: str) -> IO[bytes]:
    """A new file at `path`, never through a link: a run folder may come from elsewhere, and a
    link planted at a temporary name would otherwise have palaestra write through it, outside
    the folder. Whatever is at the name already (a leftover, a link) is removed first; removing
    a link does not touch what it points to."""
    try:
        fd = os.open(path, _NEW_FILE, 0o644)
    except FileExistsError:
        os.unlink(path)
        fd = os.open(path, _NEW_FILE, 0o644)
    return os.fdopen(fd, "wb")


def atomic_write(path: str, write: Callable[[IO[bytes]], Any]) -> None:
    """`write(fh)` into a temporary file beside `path`, then move it into place."""
    tmp = temp_name(path)
    try:
        with open_new(tmp) as fh:
            write(fh)
            _maybe_pause(fh, path)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # failed mid-write (full disk, Ctrl-C): the old file stays
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:  # a write()'s error names no file
            raise OSError(exc.errno, exc.strerror or str(exc), path) from exc
        raise
    _fsync_dir(os.path.dirname(path))


def atomic_write_bytes(data: bytes, path: str) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(text: str, path: str) -> None:
    atomic_write_bytes(text.encode("utf-8"), path)


def remove_stale_temp_files(folder: str) -> int:
    """Delete `*.tmp-<pid>` files (and links of such names: unlinking a link leaves its target
    alone) in `folder`, not below it, that a killed save left; returns how many. Only names
    palaestra itself gives temporary files are touched."""
    removed = 0
    if not os.path.isdir(folder):
        return 0
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if _TMP.search(name) and (os.path.islink(path) or os.path.isfile(path)):
            try:
                os.remove(path)
                removed += 1
            except OSError:
                pass
    return removed
