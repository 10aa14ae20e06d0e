"""A minimal TensorBoard event-file writer: scalars only.

Why not ``torch.utils.tensorboard``: importing it costs about 1.5 s on a 2-core machine (it
pulls TensorFlow compatibility layers), more than a whole short CartPole run spends training.
The file format is TensorBoard's own protobuf `Event` messages (from the `tensorboard`
package) framed as TFRecords: length, masked CRC-32C of the length, payload, masked CRC-32C of
the payload. Tests read the files back with TensorBoard's `EventAccumulator`.
"""
from __future__ import annotations

import os
import socket
import struct
import time
from typing import List

from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary


def _crc32c_table() -> List[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


_PREFIX = "events.out.tfevents."


def _file_stamp(logdir: str) -> int:
    """The time stamp for a new event file: now, or later than every file already there.

    TensorBoard reads a directory's event files in name order, so a resumed run's file must
    sort after the interrupted run's. Two runs within one second would otherwise tie on the
    stamp and fall back to process-id order, and the resumed curve would be read first.
    """
    stamp = int(time.time())
    for name in os.listdir(logdir):
        if name.startswith(_PREFIX):
            field = name[len(_PREFIX):].split(".", 1)[0]
            if field.isdigit():
                stamp = max(stamp, int(field) + 1)
    return stamp


class EventFileWriter:
    """Appends scalar events to ``<logdir>/events.out.tfevents.<time>.<host>.<pid>``.

    The first event declares ``file_version: brain.Event:2``: only with version 2 or later does
    TensorBoard honour `add_session_start` (older versions make it guess restarts from steps
    going backwards, tag by tag).
    """

    def __init__(self, logdir: str) -> None:
        os.makedirs(logdir, exist_ok=True)
        name = f"{_PREFIX}{_file_stamp(logdir):010d}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(logdir, name)
        # never through a link planted in a downloaded run folder (palaestra.atomic.open_new)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                     | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0), 0o644)
        self._fh = os.fdopen(fd, "ab")
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: Event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._fh.write(header + struct.pack("<I", masked_crc32c(header)) + data
                       + struct.pack("<I", masked_crc32c(data)))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
        self._write(Event(wall_time=time.time(), step=int(step), summary=summary))

    def add_session_start(self, step: int) -> None:
        """Mark that training (re)starts at `step`.

        TensorBoard's event accumulators then drop the events of earlier files of this
        directory at steps >= `step`: after a resume from a checkpoint those are the
        interrupted run's summaries past the checkpoint, which the resumed run writes again.
        Without it every such step is shown twice.
        """
        self._write(Event(wall_time=time.time(), step=int(step),
                          session_log=SessionLog(status=SessionLog.START)))

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
