"""What travels over the pipe between the training process and an environment worker.

Every message is one `send_bytes`: a pickle (protocol 5) for the rare ones (commands, "ready",
errors, frames, a step that made a new block, new behaviors or stats), and for the usual step
reply a compact encoding of the steps' small arrays (`encode_steps`), tagged so that the two
never meet. The observations themselves are never in a message: they are in the shared blocks
(`shared_blocks`).

Why not `Connection.send`: it pickles through `ForkingPickler` (a new pickler and buffer each
call), and a reply of two `DecisionSteps` / `TerminalSteps` dataclasses with their arrays cost
about 25 us to pickle and 15 us to unpickle on a 2-core EPYC, the largest share of a round
trip's Python on both sides (cProfile and py-spy of bench/workers_speed.py). The encoding
writes each array's dtype, shape and bytes and reads them back as arrays over one private copy
of the message.

Step layout: the tag, the length of the header (4 bytes), the header, then the arrays' bytes
one after another. The header holds the behavior count, then per behavior its index in the
worker's list of behaviors (the order in which it reported them) and, for each field of
`DECISION_FIELDS` and `TERMINAL_FIELDS`, the array's dtype string (its length, then its text),
number of dimensions and each dimension, or a zero length and `_NONE` for a missing optional.
Why the header comes first: from one step to the next it is usually the same bytes (the same
agents, the same dtypes), so both sides keep what they made of it (`_HEADS`, `_PLANS`) and a
step costs a dictionary look-up per field to write and one `frombuffer` per field to read.
"""
from __future__ import annotations

import os
import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from palaestra.envs.base import (DECISION_FIELDS, TERMINAL_FIELDS, DecisionSteps,
                                 TerminalSteps, global_groups, global_ids)

STEPS_TAG = b"S"  # a pickle (protocol 5) starts with b"\x80"
_FRAME = struct.Struct("!i")  # a message's length, as `multiprocessing.connection` writes it
_LONG_FRAME = struct.Struct("!Q")  # after a length of -1: the length of a longer message
_LARGE = 0x7FFFFFFF  # longer messages are left to `Connection`'s own framing
_COUNT = struct.Struct("<H")
_LENGTH = struct.Struct("<I")
_NONE = 255  # the number of dimensions written for a missing optional field
_MISSING = bytes((0, _NONE))
_CACHE_SIZE = 1024  # headers (and arrays' heads) remembered; forgotten all at once past it
_CACHED_HEADER = 16384  # bytes: a longer header (hundreds of behaviors) is read every time
# (dtype, shape) -> the array's part of a header
_HEADS: Dict[Tuple[np.dtype, Tuple[int, ...]], bytes] = {}
# header -> (per behavior: its index and each field's (dtype, shape, count, offset, the array
# itself if it is empty) or None; the arrays' bytes in all). An empty array (a step where no
# episode ended) is made once with its plan and handed out every time: nothing can be written
# into it.
_Field = Optional[Tuple[np.dtype, Tuple[int, ...], int, int, Optional[np.ndarray]]]
_Plan = Tuple[List[Tuple[int, List[_Field]]], int]
_PLANS: Dict[bytes, _Plan] = {}
# (behavior, rows) pairs of a step command -> the command pickled
_COMMANDS: Dict[Tuple[Tuple[str, int], ...], bytes] = {}


class NotEncodable(ValueError):
    """A field the encoding cannot carry (an array of Python objects, such as string ids):
    that step is pickled instead."""


class Channel:
    """One end of the line between the training process and a worker: a one-way pipe in
    each direction, read and written as one connection (`multiprocessing.connection`'s).

    Why not one duplex ``multiprocessing.Pipe()``: on Linux that is a Unix socket pair, whose
    one wait queue serves both directions, so taking a message off it also wakes the other
    side if it is waiting for its next message. Every step reply the training process read
    woke its worker for nothing, and that wake-up took ~10% of the training process's CPU
    (perf, one worker stepping without a pause, 2 vCPUs). A pipe wakes only its reader.

    On POSIX a message is read and written straight on the pipes' descriptors, in
    `Connection`'s own framing (a 4-byte big-endian length first): `Connection.recv_bytes`
    gathers even a short message through an `io.BytesIO` and `send_bytes` checks its buffer
    in several steps, together about a fifth of the training process's Python per step reply
    (py-spy, 8 workers of a 2 ms environment). Elsewhere (Windows' named pipes) the
    connections do it."""

    def __init__(self, reader: Connection, writer: Connection) -> None:
        self.reader, self.writer = reader, writer
        posix = os.name == "posix"
        self._in: Optional[int] = reader.fileno() if posix else None
        self._out: Optional[int] = writer.fileno() if posix else None

    @classmethod
    def pair(cls, context: Any) -> Tuple["Channel", "Channel"]:
        """Both ends, from a multiprocessing context's one-way pipes."""
        down_read, down_write = context.Pipe(duplex=False)
        up_read, up_write = context.Pipe(duplex=False)
        return cls(up_read, down_write), cls(down_read, up_write)

    def send_bytes(self, data: bytes) -> None:
        out, size = self._out, len(data)
        if out is None or size > _LARGE:
            self.writer.send_bytes(data)  # closed (it raises), not POSIX, or large
            return
        message = _FRAME.pack(size) + data
        done = os.write(out, message)
        while done < len(message):  # a pipe takes a short message whole, but need not
            done += os.write(out, memoryview(message)[done:])

    def recv_bytes(self) -> bytes:
        """The next message; EOFError at the end of the pipe (the other side is gone)."""
        if self._in is None or self.reader.closed:
            return self.reader.recv_bytes()  # closed (it raises) or not POSIX
        (size,) = _FRAME.unpack(_read_exactly(self._in, _FRAME.size, True))
        if size == -1:  # over 2 GiB, as `Connection` frames it: the length follows in 8 bytes
            (size,) = _LONG_FRAME.unpack(_read_exactly(self._in, _LONG_FRAME.size, False))
        elif size < 0:
            raise OSError(f"a worker's pipe carried a message length of {size}")
        return _read_exactly(self._in, size, False)

    def poll(self, timeout: Optional[float] = 0.0) -> bool:
        return self.reader.poll(timeout)

    def fileno(self) -> int:
        """The reading pipe's (what `multiprocessing.connection.wait` and a selector watch)."""
        return self.reader.fileno()

    def close(self) -> None:
        self._in = self._out = None  # the numbers may be reused by other files from now on
        self.reader.close()
        self.writer.close()


def _read_exactly(fd: int, size: int, first: bool) -> bytes:
    """`size` bytes from the pipe `fd`; EOFError if it ends before the `first` byte of a
    message, OSError if it ends inside one."""
    data = os.read(fd, size)
    if len(data) == size:  # the usual case: the message was written whole
        return data
    parts, left = [data], size - len(data)
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            if first and left == size:
                raise EOFError
            raise OSError("a worker's pipe ended inside a message")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def send(conn: Channel, message: Any) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=5))


def send_step_command(conn: Channel, rows: Dict[str, int]) -> None:
    """``("step", rows)`` (each behavior's number of action rows in the shared block): the
    same few commands come again and again, so each is pickled once."""
    key = tuple(rows.items())
    data = _COMMANDS.get(key)
    if data is None:
        data = pickle.dumps(("step", rows), protocol=5)
        if len(_COMMANDS) >= _CACHE_SIZE:
            _COMMANDS.clear()
        _COMMANDS[key] = data
    conn.send_bytes(data)


def send_steps(conn: Channel, steps: Sequence[Tuple[int, DecisionSteps, TerminalSteps]],
               part: int = 0, parts: int = 1) -> None:
    """A step reply: (behavior index, decision steps, terminal steps) of each behavior, their
    observations left out, their ids made global (`encode_steps`). Raises `NotEncodable`
    before sending anything."""
    conn.send_bytes(encode_steps(steps, part, parts))


def receive(conn: Channel, names: List[str]) -> Tuple[Any, ...]:
    """The next message; a step reply as ``("steps", {name: (None, decision, terminal)}, {},
    {})``, as the pickled one reads (`names`: the worker's behaviors in its order)."""
    data = conn.recv_bytes()
    if data[:1] == STEPS_TAG:
        return ("steps", {name: (None, decision, terminal)
                          for name, (decision, terminal) in decode_steps(data, names).items()},
                {}, {})
    message: Tuple[Any, ...] = pickle.loads(data)
    return message


def encode_steps(steps: Sequence[Tuple[int, DecisionSteps, TerminalSteps]], part: int = 0,
                 parts: int = 1) -> bytes:
    """The message of `send_steps` (observations, if present, are not part of it). Agent and
    group ids are written as ids of part `part` of `parts` (`globalise_ids`; the steps
    themselves are left as they are: an environment may hand out the same ones again)."""
    heads: List[bytes] = [_COUNT.pack(len(steps))]
    data: List[bytes] = []
    for index, decision, terminal in steps:
        heads.append(_COUNT.pack(index))
        for source, fields in ((decision, DECISION_FIELDS), (terminal, TERMINAL_FIELDS)):
            for field in fields:
                array = getattr(source, field)
                if array is None:
                    heads.append(_MISSING)
                    continue
                if type(array) is not np.ndarray:
                    array = np.asarray(array)
                if parts > 1 and array.size:
                    if field == "agent_id":
                        array = global_ids(array, part, parts)
                    elif field == "group_id":
                        array = global_groups(array, part, parts)
                heads.append(_head(array))
                data.append(array.tobytes())  # C order, whatever the array's own
    header = b"".join(heads)
    return b"".join((STEPS_TAG, _LENGTH.pack(len(header)), header, *data))


def decode_steps(data: bytes, names: List[str]
                 ) -> Dict[str, Tuple[DecisionSteps, TerminalSteps]]:
    """The steps of an `encode_steps` message by behavior name, with empty observation lists;
    the arrays are writable views of one copy of the message that nothing else holds."""
    buffer = bytearray(data)
    try:
        (length,) = _LENGTH.unpack_from(buffer, 1)
    except struct.error:
        raise ValueError("a worker's step message is cut short") from None
    start = 1 + _LENGTH.size + length
    header = bytes(data[1 + _LENGTH.size:start])  # a bytes key, even from a bytearray
    if len(header) < length:
        raise ValueError("a worker's step message is cut short (in its header)")
    try:
        plan = _PLANS.get(header)
        if plan is None:
            plan = _plan(header)
            if len(header) <= _CACHED_HEADER:  # what is kept stays small, whatever comes
                if len(_PLANS) >= _CACHE_SIZE:
                    _PLANS.clear()
                _PLANS[header] = plan
    except (IndexError, struct.error, ValueError, TypeError) as exc:
        raise ValueError(f"a worker's step message has a malformed header ({exc})") from None
    behaviors, size = plan
    if start + size != len(buffer):
        raise ValueError(f"a worker's step message is {len(buffer) - start - size} bytes "
                         "longer than its fields" if start + size < len(buffer) else
                         "a worker's step message is cut short")
    n_decision = len(DECISION_FIELDS)
    out = {}
    for index, fields in behaviors:
        if index >= len(names):
            raise ValueError(f"a worker's step message names behavior {index}, of "
                             f"{len(names)} it reported")
        values = [None if f is None else f[4] if f[4] is not None else
                  np.frombuffer(buffer, f[0], f[2], start + f[3]) if len(f[1]) == 1 else
                  np.frombuffer(buffer, f[0], f[2], start + f[3]).reshape(f[1])
                  for f in fields]
        decision = DecisionSteps([], *values[:n_decision])  # type: ignore[arg-type]
        terminal = TerminalSteps([], *values[n_decision:])  # type: ignore[arg-type]
        out[names[index]] = (decision, terminal)
    return out


def _head(array: np.ndarray) -> bytes:
    """The array's part of a header: dtype string, number of dimensions, dimensions."""
    key = (array.dtype, array.shape)
    head = _HEADS.get(key)
    if head is None:
        if array.dtype.hasobject:
            raise NotEncodable(f"an array of {array.dtype}")
        dtype = array.dtype.str.encode()
        head = (bytes((len(dtype),)) + dtype + bytes((array.ndim,))
                + struct.pack(f"<{array.ndim}q", *array.shape))
        if len(_HEADS) >= _CACHE_SIZE:
            _HEADS.clear()
        _HEADS[key] = head
    return head


def _plan(header: bytes) -> _Plan:
    """What a header says: each behavior's index and fields, and the arrays' bytes in all."""
    (count,) = _COUNT.unpack_from(header, 0)
    offset, size = _COUNT.size, 0
    behaviors = []
    for _ in range(count):
        (index,) = _COUNT.unpack_from(header, offset)
        offset += _COUNT.size
        fields: List[_Field] = []
        for _ in range(len(DECISION_FIELDS) + len(TERMINAL_FIELDS)):
            length = header[offset]
            if length == 0:
                if header[offset + 1] != _NONE:
                    raise ValueError("a field with neither a dtype nor the mark of a missing one")
                fields.append(None)
                offset += 2
                continue
            dtype = np.dtype(header[offset + 1: offset + 1 + length].decode())
            if dtype.hasobject:  # never written by `_head`: pointers read from bytes
                raise ValueError(f"a step message with an array of {dtype}")
            offset += 1 + length
            ndim = header[offset]
            shape = struct.unpack_from(f"<{ndim}q", header, offset + 1)
            offset += 1 + 8 * ndim
            items = 1
            for dim in shape:
                if dim < 0:
                    raise ValueError(f"a negative dimension {dim}")
                items *= dim
            fields.append((dtype, shape, items, size,
                           np.empty(shape, dtype) if items == 0 else None))
            size += items * dtype.itemsize
        behaviors.append((index, fields))
    if offset != len(header):
        raise ValueError(f"{len(header) - offset} bytes after the header's fields")
    return behaviors, size
