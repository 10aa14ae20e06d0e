"""The harness of the bad-input suite (tests/test_bad_input_*.py).

`refused(...)` runs `palaestra ...` in-process inside a scratch project folder and checks what a
user must see when they give palaestra something it cannot use: a non-zero exit, one clear last
line on stderr naming the problem (and no traceback), and no file created, changed or deleted
anywhere outside the run's own folder (for a new run that failed, not even that folder).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Sequence, Tuple

import pytest

from palaestra.cli import main

Snapshot = Dict[str, Tuple[str, int]]


def snapshot(root: str) -> Snapshot:
    """Every file and folder under root: kind and a digest of the content."""
    out: Snapshot = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(folder, d), root)] = ("dir", 0)
        for f in files:
            path = os.path.join(folder, f)
            try:
                with open(path, "rb") as fh:
                    digest = hashlib.sha1(fh.read()).hexdigest()
            except OSError:
                digest = "unreadable"
            out[os.path.relpath(path, root)] = (digest, os.path.getsize(path))
    return out


def changes(before: Snapshot, after: Snapshot) -> Dict[str, str]:
    diff: Dict[str, str] = {}
    for path in before.keys() | after.keys():
        if path not in after:
            diff[path] = "deleted"
        elif path not in before:
            diff[path] = "created"
        elif before[path] != after[path]:
            diff[path] = "changed"
    return diff


@dataclass
class Outcome:
    rc: int
    out: str
    err: str
    changed: Dict[str, str]

    @property
    def last_line(self) -> str:
        lines = [line for line in self.err.strip().splitlines() if line.strip()]
        return lines[-1] if lines else ""


def run(project: str, argv: Sequence[str], capsys: pytest.CaptureFixture,
        allowed: Iterable[str] = ()) -> Outcome:
    """`palaestra argv` with `project` as working directory; changes under `allowed` prefixes
    (paths relative to the project's parent) are not reported."""
    os.environ["PALAESTRA_NO_PROGRESS"] = "1"
    root = os.path.dirname(os.path.abspath(project))
    before = snapshot(root)
    cwd = os.getcwd()
    os.chdir(project)
    capsys.readouterr()
    try:
        try:
            rc = main(list(argv))
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    diff = {p: what for p, what in changes(before, snapshot(root)).items()
            if not any(p == a or p.startswith(a.rstrip("/") + "/") for a in allowed)}
    return Outcome(rc, captured.out, captured.err, diff)


def refused(project: str, argv: Sequence[str], capsys: pytest.CaptureFixture, *needles: str,
            allowed: Iterable[str] = ()) -> Outcome:
    """Assert palaestra refuses `argv`: exit code non-zero, no traceback, the last line of
    stderr names every `needle` (case-insensitive), nothing written or deleted outside
    `allowed`. Returns the outcome for further checks."""
    outcome = run(project, argv, capsys, allowed)
    text = outcome.out + outcome.err
    assert outcome.rc not in (0, None), f"exit 0 for {argv}:\n{text}"
    assert "Traceback" not in text, f"a traceback for {argv}:\n{text}"
    for needle in needles:
        assert needle.lower() in outcome.last_line.lower(), \
            f"{needle!r} not named in the last line {outcome.last_line!r}\n{text}"
    assert not outcome.changed, f"{argv} changed files outside the run folder: {outcome.changed}"
    return outcome


def project_with(tmp_path: "os.PathLike[str]", files: Optional[Dict[str, object]] = None,
                 ) -> str:
    """A scratch project folder `tmp_path/project` holding `files` (name -> str or bytes),
    with a sibling folder the run must never touch."""
    project = os.path.join(os.fspath(tmp_path), "project")
    os.makedirs(project, exist_ok=True)
    sibling = os.path.join(os.fspath(tmp_path), "neighbour")
    os.makedirs(sibling, exist_ok=True)
    with open(os.path.join(sibling, "keep.txt"), "w") as fh:
        fh.write("a user's file")
    with open(os.path.join(project, "notes.txt"), "w") as fh:
        fh.write("a user's file")
    for name, content in (files or {}).items():
        path = os.path.join(project, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(path, mode) as fh:
            fh.write(content)  # type: ignore[arg-type]
    return project
