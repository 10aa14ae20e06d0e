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

import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from palaestra.envs.base import (DECISION_FIELDS, TERMINAL_FIELDS, DecisionSteps,
                                 TerminalSteps)

STEPS_TAG = b"S"  # a pickle (protocol 5) starts with b"\x80"
_COUNT = struct.Struct("<H")
_LENGTH = struct.Struct("<I")
_NONE = 255  # the number of dimensions written for a missing optional field
_MISSING = bytes((0, _NONE))
_CACHE_SIZE = 1024  # headers (and arrays' heads) remembered; forgotten all at once past it
_CACHED_HEADER = 16384  # bytes: a longer header (hundreds of behaviors) is read every time
# (dtype, shape) -> the array's part of a header
_HEADS: Dict[Tuple[np.dtype, Tuple[int, ...]], bytes] = {}
# header -> (per behavior: its index and each field's (dtype, shape, count, offset) or None;
# the arrays' bytes in all)
_Field = Optional[Tuple[np.dtype, Tuple[int, ...], int, int]]
_Plan = Tuple[List[Tuple[int, List[_Field]]], int]
_PLANS: Dict[bytes, _Plan] = {}


class NotEncodable(ValueError):
    """A field the encoding cannot carry (an array of Python objects, such as string ids):
    that step is pickled instead."""


def send(conn: Connection, message: Any) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=5))


def send_steps(conn: Connection, steps: Sequence[Tuple[int, DecisionSteps, TerminalSteps]]
               ) -> None:
    """A step reply: (behavior index, decision steps, terminal steps) of each behavior, their
    observations left out. Raises `NotEncodable` before sending anything."""
    conn.send_bytes(encode_steps(steps))


def receive(conn: Connection, names: List[str]) -> Tuple[Any, ...]:
    """The next message; a step reply as ``("steps", {name: (None, decision, terminal)}, {},
    {})``, as the pickled one reads (`names`: the worker's behaviors in its order)."""
    data = conn.recv_bytes()
    if data[:1] == STEPS_TAG:
        return ("steps", {name: (None, decision, terminal)
                          for name, (decision, terminal) in decode_steps(data, names).items()},
                {}, {})
    message: Tuple[Any, ...] = pickle.loads(data)
    return message


def encode_steps(steps: Sequence[Tuple[int, DecisionSteps, TerminalSteps]]) -> bytes:
    """The message of `send_steps` (observations, if present, are not part of it)."""
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
    header = bytes(buffer[1 + _LENGTH.size:start])
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
        values = [None if f is None else
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
            fields.append((dtype, shape, items, size))
            size += items * dtype.itemsize
        behaviors.append((index, fields))
    if offset != len(header):
        raise ValueError(f"{len(header) - offset} bytes after the header's fields")
    return behaviors, size
