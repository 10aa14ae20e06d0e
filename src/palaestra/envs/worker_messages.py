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

Step layout: the tag, the behavior count, then per behavior its index in the worker's list of
behaviors (the order in which it reported them) and the fields of `DECISION_FIELDS` and
`TERMINAL_FIELDS`, each an array (dtype string length and text, number of dimensions, each
dimension, bytes) or a missing optional (a zero length and `_NONE`).
"""
from __future__ import annotations

import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from palaestra.envs.base import DecisionSteps, TerminalSteps

DECISION_FIELDS = ("reward", "agent_id", "action_mask", "group_id", "group_reward")
TERMINAL_FIELDS = ("reward", "interrupted", "agent_id", "group_id", "group_reward")
STEPS_TAG = b"S"  # a pickle (protocol 5) starts with b"\x80"
_COUNT = struct.Struct("<H")
_NONE = 255  # the number of dimensions written for a missing optional field
_DTYPES: Dict[bytes, np.dtype] = {}


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
    parts: List[bytes] = [STEPS_TAG, _COUNT.pack(len(steps))]
    for index, decision, terminal in steps:
        parts.append(_COUNT.pack(index))
        for field in DECISION_FIELDS:
            _put(parts, getattr(decision, field))
        for field in TERMINAL_FIELDS:
            _put(parts, getattr(terminal, field))
    return b"".join(parts)


def decode_steps(data: bytes, names: List[str]
                 ) -> Dict[str, Tuple[DecisionSteps, TerminalSteps]]:
    """The steps of an `encode_steps` message by behavior name, with empty observation lists;
    the arrays are writable views of one copy of the message that nothing else holds."""
    buffer = bytearray(data)
    out = {}
    n_decision = len(DECISION_FIELDS)
    try:
        (count,) = _COUNT.unpack_from(buffer, 1)
        offset = 1 + _COUNT.size
        for _ in range(count):
            (index,) = _COUNT.unpack_from(buffer, offset)
            offset += _COUNT.size
            values: List[Optional[np.ndarray]] = []
            for _ in range(n_decision + len(TERMINAL_FIELDS)):
                array, offset = _take(buffer, offset)
                values.append(array)
            decision = DecisionSteps([], *values[:n_decision])  # type: ignore[arg-type]
            terminal = TerminalSteps([], *values[n_decision:])  # type: ignore[arg-type]
            out[names[index]] = (decision, terminal)
    except (IndexError, struct.error, ValueError, TypeError) as exc:
        raise ValueError(f"a worker's step message is cut short or malformed ({exc})") from None
    if offset != len(buffer):
        raise ValueError(f"a worker's step message is {len(buffer) - offset} bytes longer "
                         "than its fields" if offset < len(buffer) else
                         "a worker's step message is cut short")
    return out


def _put(parts: List[bytes], array: Optional[np.ndarray]) -> None:
    if array is None:
        parts.append(bytes((0, _NONE)))
        return
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise NotEncodable(f"an array of {array.dtype}")
    dtype = array.dtype.str.encode()
    parts.append(bytes((len(dtype),)) + dtype + bytes((array.ndim,))
                 + struct.pack(f"<{array.ndim}q", *array.shape))
    parts.append(array.tobytes())  # C order, whatever the array's own


def _take(buffer: bytearray, offset: int) -> Tuple[Optional[np.ndarray], int]:
    length = buffer[offset]
    if length == 0:
        return None, offset + 2
    key = bytes(buffer[offset + 1: offset + 1 + length])
    dtype = _DTYPES.get(key)
    if dtype is None:
        dtype = np.dtype(key.decode())
        if dtype.hasobject:  # never written by `_put`: pointers read from bytes
            raise ValueError(f"a step message with an array of {dtype}")
        _DTYPES[key] = dtype
    offset += 1 + length
    ndim = buffer[offset]
    shape = struct.unpack_from(f"<{ndim}q", buffer, offset + 1)
    offset += 1 + 8 * ndim
    count = 1
    for size in shape:
        count *= size
    array = np.frombuffer(buffer, dtype, count, offset).reshape(shape)
    return array, offset + count * dtype.itemsize
