"""A run's TensorBoard scalars read back as numpy arrays, without TensorBoard's accumulators.

Why not `EventAccumulator`: it keeps a reservoir sample (at most 10,000 points a tag, chosen at
random past that), its two versions treat session-start marks differently, and importing it
costs more than reading a short run's files. The files are the ones `tensorboard_events` writes:
TFRecords (little-endian u64 length, masked CRC-32C of the length, an `Event` protobuf, masked
CRC-32C of it), scalars as `Summary.Value.simple_value`.
"""
from __future__ import annotations

import os
import struct
from typing import Dict, List, Tuple

import numpy as np
import numpy.typing as npt

from palaestra.tensorboard_events import masked_crc32c

EVENT_PREFIX = "events.out.tfevents."
Series = Tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]  # steps, values

_HEADER = struct.Struct("<QI")  # length, masked CRC of the length's 8 bytes
_CRC = struct.Struct("<I")  # masked CRC of the payload, after it
_FOOTER = _CRC.size


def _records(data: bytes) -> List[bytes]:
    """The payloads of one file's complete records.

    Reading stops at the first record that is cut short (the writer was killed mid-write, or
    the file is still being written) or fails a CRC: after a bad length nothing can be framed,
    and a cut record followed by anything else (a run appending to a file a kill left) still
    parses as an `Event`, with a wrong step. The CRCs are pure Python, about 0.1 s per MB;
    a palaestra run writes some 50 bytes per scalar.
    """
    out = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, length_crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        end = start + length
        if masked_crc32c(data[pos:pos + 8]) != length_crc or end + _FOOTER > len(data):
            break
        payload = data[start:end]
        if masked_crc32c(payload) != _CRC.unpack_from(data, end)[0]:
            break
        out.append(payload)
        pos = end + _FOOTER
    return out


def _file_events(path: str, seq0: int) -> Tuple[List[Tuple[int, str, int, float]],
                                                List[Tuple[int, int]]]:
    """(order, tag, step, value) of every scalar and (order, step) of every session start in
    one file; `order` counts events across files so that purges know what came before them."""
    # neither ships type information; `unused-ignore` for where stubs are installed
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped,unused-ignore]
    from tensorboard.compat.proto.event_pb2 import (  # type: ignore[import-untyped,unused-ignore]
        Event, SessionLog)

    with open(path, "rb") as fh:
        data = fh.read()
    points: List[Tuple[int, str, int, float]] = []
    starts: List[Tuple[int, int]] = []
    for seq, payload in enumerate(_records(data), seq0):
        try:
            event = Event.FromString(payload)
        except DecodeError:
            break
        if event.HasField("summary"):
            points.extend((seq, v.tag, event.step, v.simple_value) for v in event.summary.value
                          if v.WhichOneof("value") == "simple_value")
        elif event.HasField("session_log") and event.session_log.status == SessionLog.START:
            starts.append((seq, event.step))
    return points, starts


def _kept(order: npt.NDArray[np.int64], steps: npt.NDArray[np.int64],
          starts: List[Tuple[int, int]]) -> npt.NDArray[np.bool_]:
    """Which points survive TensorBoard's purge: a session start at step s drops every point
    read before it with step >= s (in every tag), because a resumed run writes the interrupted
    run's steps past its checkpoint again. So a point survives if its step is below the
    smallest start step among the marks after it."""
    if not starts:
        return np.ones(len(order), dtype=bool)
    mark_order = np.array([s[0] for s in starts], dtype=np.int64)
    mark_step = np.array([s[1] for s in starts], dtype=np.int64)
    # later_min[i]: the smallest step of marks i, i+1, ...; one more entry for "no mark after"
    later_min = np.append(np.minimum.accumulate(mark_step[::-1])[::-1], np.iinfo(np.int64).max)
    first_later = np.searchsorted(mark_order, order, side="right")
    return steps < later_min[first_later]


def read_scalars(behavior_dir: str) -> Dict[str, Series]:
    """tag -> (steps int64, values float64), sorted by step, from every event file directly in
    `behavior_dir` in file-name order (names carry the time they were started).

    Values are as written: NaN and infinities stay (a plot masks them, a check may want them).
    A tag written twice at one step without a session start between keeps both points, as
    TensorBoard does. A folder without event files gives {}.
    """
    names = sorted(n for n in os.listdir(behavior_dir) if n.startswith(EVENT_PREFIX)
                   and os.path.isfile(os.path.join(behavior_dir, n)))
    points: List[Tuple[int, str, int, float]] = []
    starts: List[Tuple[int, int]] = []
    for name in names:
        file_points, file_starts = _file_events(os.path.join(behavior_dir, name),
                                                len(points) + len(starts))
        points += file_points
        starts += file_starts
    if not points:
        return {}
    order = np.array([p[0] for p in points], dtype=np.int64)
    tags = np.array([p[1] for p in points], dtype=object)
    steps = np.array([p[2] for p in points], dtype=np.int64)
    values = np.array([p[3] for p in points], dtype=np.float64)
    keep = _kept(order, steps, starts)
    tags, steps, values = tags[keep], steps[keep], values[keep]
    out: Dict[str, Series] = {}
    for tag in sorted(set(tags)):
        mine = tags == tag
        by_step = np.argsort(steps[mine], kind="stable")
        out[str(tag)] = (steps[mine][by_step], values[mine][by_step])
    return out


def behavior_dirs(run_dir: str) -> Dict[str, str]:
    """behavior name -> its folder, for every folder below `run_dir` that holds event files.

    Names are the folder's path relative to the run with `/` (a Gymnasium namespace such as
    `palaestra/Basic-v0` is a nested folder; `?team=0` stays in the folder name). `run_logs`
    is palaestra's own and skipped; links are not followed, so a planted link cannot make the
    reader wander outside the run.
    """
    found: Dict[str, str] = {}
    for folder, subdirs, files in os.walk(run_dir):
        if folder == run_dir:  # os.walk yields the top folder first, as given
            subdirs[:] = [d for d in subdirs if d != "run_logs"]
            continue
        subdirs.sort()
        if any(f.startswith(EVENT_PREFIX) for f in files):
            name = os.path.relpath(folder, run_dir).replace(os.sep, "/")
            found[name] = folder
    return dict(sorted(found.items()))
