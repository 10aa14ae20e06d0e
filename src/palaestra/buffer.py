"""`AgentBuffer`: columns of experience as numpy arrays, keyed by typed keys.

Each field is one contiguous array whose first axis is the experience index; appending a
trajectory copies one slice per key into capacity that grows geometrically, and a minibatch is an
index permutation, never an element-by-element shuffle (the cost ML-Agents pays in Python).
`buffer[key]` returns the live view of the valid rows; assigning a full-length array replaces it.
"""
from __future__ import annotations

import enum
import math
import os
import stat
import zipfile
from typing import (IO, TYPE_CHECKING, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple,
                    Union)

import numpy as np
from numpy.lib import format as npy_format

from palaestra.atomic import atomic_write

if TYPE_CHECKING:
    from palaestra.envs.base import BehaviorSpec


class BufferKey(str, enum.Enum):
    """Field names. `str` mixin: hashed in C, which matters for ~50 look-ups per trajectory."""

    ACTION_MASK = "action_mask"
    CONTINUOUS_ACTION = "continuous_action"
    DISCRETE_ACTION = "discrete_action"
    LOG_PROBS = "log_probs"
    ENVIRONMENT_REWARDS = "environment_rewards"
    DONE = "done"
    INTERRUPTED = "interrupted"
    MASKS = "masks"
    MEMORY = "memory"
    ADVANTAGES = "advantages"
    DISCOUNTED_RETURNS = "discounted_returns"
    GROUP_ID = "group_id"
    GROUP_REWARD = "group_reward"
    # What the agent's teammates (same group, same behavior) did at each step, padded to the
    # largest group seen: (n, M, ...) with GROUP_PRESENT (n, M) telling the real ones.
    GROUP_CONTINUOUS_ACTION = "group_continuous_action"
    GROUP_DISCRETE_ACTION = "group_discrete_action"
    GROUP_PRESENT = "group_present"
    GROUPMATE_REWARDS = "groupmate_rewards"  # teammates' own rewards at each step, summed


class ObservationKeyPrefix(str, enum.Enum):
    OBSERVATION = "obs"
    NEXT_OBSERVATION = "next_obs"
    GROUP_OBSERVATION = "group_obs"


class RewardSignalKeyPrefix(str, enum.Enum):
    REWARDS = "rewards"
    VALUE_ESTIMATES = "value_estimates"
    RETURNS = "returns"
    ADVANTAGE = "advantage"
    BASELINES = "baselines"


AgentBufferKey = Union[BufferKey, Tuple[ObservationKeyPrefix, int],
                       Tuple[RewardSignalKeyPrefix, str]]


def obs_key(index: int) -> AgentBufferKey:
    return (ObservationKeyPrefix.OBSERVATION, index)


def next_obs_key(index: int) -> AgentBufferKey:
    return (ObservationKeyPrefix.NEXT_OBSERVATION, index)


def group_obs_key(index: int) -> AgentBufferKey:
    """Teammates' observation `index` at each step, (n, M, *shape)."""
    return (ObservationKeyPrefix.GROUP_OBSERVATION, index)


def rewards_key(name: str) -> AgentBufferKey:
    return (RewardSignalKeyPrefix.REWARDS, name)


def value_estimates_key(name: str) -> AgentBufferKey:
    return (RewardSignalKeyPrefix.VALUE_ESTIMATES, name)


def returns_key(name: str) -> AgentBufferKey:
    return (RewardSignalKeyPrefix.RETURNS, name)


def advantage_key(name: str) -> AgentBufferKey:
    return (RewardSignalKeyPrefix.ADVANTAGE, name)


def baselines_key(name: str) -> AgentBufferKey:
    """POCA's counterfactual baseline estimates of reward stream `name`."""
    return (RewardSignalKeyPrefix.BASELINES, name)


class _Columns:
    """What both buffers answer the same way: rows, fields."""

    _data: Dict[Hashable, np.ndarray]
    _length: int

    @property
    def num_experiences(self) -> int:
        return self._length

    def __len__(self) -> int:
        return self._length

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def keys(self) -> List[Hashable]:
        return list(self._data)


class AgentBuffer(_Columns):
    """A table of experiences: every field has the same number of rows."""

    def __init__(self) -> None:
        self._data: Dict[Hashable, np.ndarray] = {}
        self._length = 0

    # -- reading -----------------------------------------------------------------------------

    def __getitem__(self, key: Hashable) -> np.ndarray:
        try:
            return self._data[key][: self._length]
        except KeyError:
            raise KeyError(f"AgentBuffer has no field {key!r}; fields: {self.keys()}") from None

    def get(self, key: Hashable, default: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        return self[key] if key in self._data else default

    # -- writing -----------------------------------------------------------------------------
    def __setitem__(self, key: Hashable, value: np.ndarray) -> None:
        value = np.asarray(value)
        if not self._data:
            self._length = len(value)
        elif len(value) != self._length:
            raise ValueError(f"field {key!r} has {len(value)} rows, the buffer has "
                             f"{self._length}")
        self._data[key] = value

    def append_buffer(self, other: "AgentBuffer") -> None:
        """Append all rows of `other`; both must hold the same fields (or self be empty)."""
        if other._length == 0:
            return
        if not self._data:
            self._data = {k: v[: other._length].copy() for k, v in other._data.items()}
            self._length = other._length
            return
        if self._data.keys() != other._data.keys():
            raise ValueError(f"cannot append a buffer with fields {sorted(map(str, other.keys()))}"
                             f" to one with {sorted(map(str, self.keys()))}")
        new_len = self._length + other._length
        for key, arr in self._data.items():
            if len(arr) < new_len:
                grown = np.empty((max(new_len, 2 * len(arr)), *arr.shape[1:]), arr.dtype)
                grown[: self._length] = arr[: self._length]
                self._data[key] = arr = grown
            arr[self._length: new_len] = other._data[key][: other._length]
        self._length = new_len

    def truncate(self, max_length: int) -> None:
        """Keep only the newest `max_length` rows (replay buffers)."""
        if self._length <= max_length:
            return
        start = self._length - max_length
        self._data = {k: v[start: self._length].copy() for k, v in self._data.items()}
        self._length = max_length

    def reset(self) -> None:
        """Drop all rows but keep the allocated arrays for the next round."""
        self._length = 0

    clear = reset

    def save(self, path: str) -> None:
        """Write the rows to `path` (.npz) atomically (`load_columns` reads them back)."""
        save_columns(self, path)

    # -- batching ----------------------------------------------------------------------------
    def take(self, indices: np.ndarray) -> "AgentBuffer":
        """A new buffer with the rows at `indices` (a copy)."""
        out = AgentBuffer()
        for key, arr in self._data.items():
            out._data[key] = _gather_rows(arr[: self._length], indices)
        out._length = len(indices)
        return out

    def make_mini_batch(self, start: int, end: int) -> "AgentBuffer":
        """Rows [start, end) as views, no copy."""
        out = AgentBuffer()
        end = min(end, self._length)
        for key, arr in self._data.items():
            out._data[key] = arr[start:end]
        out._length = max(0, end - start)
        return out

    def sample_mini_batch(self, batch_size: int, rng: np.random.Generator) -> "AgentBuffer":
        return self.take(rng.integers(0, self._length, batch_size))

    def minibatches(self, batch_size: int, rng: np.random.Generator,
                    sequence_length: int = 1) -> Iterator["AgentBuffer"]:
        """One epoch of shuffled minibatches of whole sequences; a remainder smaller than
        batch_size is dropped, as ML-Agents does."""
        n_seq = self._length // sequence_length
        seq_per_batch = max(batch_size // sequence_length, 1)
        order = rng.permutation(n_seq)
        for start in range(0, n_seq - seq_per_batch + 1, seq_per_batch):
            seqs = order[start: start + seq_per_batch]
            idx = (seqs[:, None] * sequence_length + np.arange(sequence_length)).ravel()
            yield self.take(idx)

    def items(self) -> Iterable[Tuple[Hashable, np.ndarray]]:
        return ((k, v[: self._length]) for k, v in self._data.items())


def _gather_rows(arr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Rows of `arr` at `indices`: np.take gathers whole rows 2-5x faster than fancy indexing
    for 2-D and wider columns (a 1024-row minibatch of (N, 2, 42) group observations: 23 vs
    55 us); for 1-D columns fancy indexing is the faster one."""
    return np.take(arr, indices, axis=0) if arr.ndim > 1 else arr[indices]


class ReplayBuffer(_Columns):
    """The newest `capacity` experiences of an off-policy trainer, in preallocated arrays used
    as a ring: appending writes over the oldest rows in place, so a full buffer costs the same
    per step as an empty one (truncating an `AgentBuffer` copies all of it every time).

    Rows must be self-contained (each carries its next observation), since sampling ignores
    the order. `buffer[key]` returns the valid rows oldest first (a copy once it has wrapped).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a replay buffer needs a capacity of at least 1, got {capacity}")
        self.capacity = int(capacity)
        self._data: Dict[Hashable, np.ndarray] = {}
        self._length = 0
        self._next = 0  # the row the next experience goes to

    def __getitem__(self, key: Hashable) -> np.ndarray:
        try:
            arr = self._data[key]
        except KeyError:
            raise KeyError(f"ReplayBuffer has no field {key!r}; fields: {self.keys()}") from None
        if self._length < self.capacity:
            return arr[: self._length]
        return np.concatenate([arr[self._next:], arr[: self._next]])

    def append_buffer(self, other: AgentBuffer) -> None:
        n = other.num_experiences
        if n == 0:
            return
        if not self._data:
            self._data = {key: np.empty((self.capacity, *col.shape[1:]), col.dtype)
                          for key, col in other.items()}
        elif set(self._data) != set(other.keys()):
            raise ValueError(f"cannot append a buffer with fields {sorted(map(str, other.keys()))}"
                             f" to one with {sorted(map(str, self.keys()))}")
        skip = max(0, n - self.capacity)  # more rows than fit: only the newest matter
        count = n - skip
        first = min(count, self.capacity - self._next)  # up to the end of the ring
        for key, arr in self._data.items():
            col = other[key][skip:]
            arr[self._next: self._next + first] = col[:first]
            arr[: count - first] = col[first:]
        self._next = (self._next + count) % self.capacity
        self._length = min(self.capacity, self._length + count)

    def save(self, path: str) -> None:
        """Write the valid rows to `path` (.npz) atomically: a kill mid-write leaves the
        previous file as it was."""
        save_columns(self, path)

    def load(self, path: str) -> None:
        """Replace the contents with the rows saved at `path` (the newest `capacity` of them).
        A damaged file raises ValueError naming it and leaves the buffer as it was."""
        self.replace(load_columns(path))

    def replace(self, rows: AgentBuffer) -> None:
        """Hold exactly `rows` (the newest `capacity` of them), whatever it held before."""
        self._data = {}
        self.reset()
        self.append_buffer(rows)

    def sample_mini_batch(self, batch_size: int, rng: np.random.Generator) -> AgentBuffer:
        """`batch_size` rows drawn uniformly with replacement."""
        indices = rng.integers(0, self._length, batch_size)
        out = AgentBuffer()
        for key, arr in self._data.items():
            out._data[key] = _gather_rows(arr, indices)
        out._length = batch_size
        return out

    def reset(self) -> None:
        self._length = 0
        self._next = 0

    clear = reset


def save_columns(columns: _Columns, path: str) -> None:
    """The valid rows of a buffer as an .npz file, written to a temporary name, flushed to
    disk and moved into place (a checkpoint refers to it by name, so it must be complete)."""
    arrays = {_encode_key(key): columns[key] for key in columns.keys()}  # type: ignore[index]
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_columns(path: str) -> AgentBuffer:
    """A buffer saved by `save_columns`. Anything else (a damaged or tampered file, columns of
    unequal length, unknown field names) raises ValueError naming the file and the fault.

    The file may come from a run folder downloaded from someone else, so it is read as hostile:
    `_open_regular_file` and `_check_npz` refuse, before any array is allocated, what would
    hang (a FIFO), leave the run folder (a symlink), run code (pickles) or allocate more than
    the file holds (a forged .npy header, a compression bomb). The arrays are then read from
    the same open file and the same archive that was checked."""
    loaded = AgentBuffer()
    try:
        with _open_regular_file(path) as fh, zipfile.ZipFile(fh) as archive:
            for member in _check_npz(archive, os.fstat(fh.fileno()).st_size):
                with archive.open(member) as column:
                    array = npy_format.read_array(column, allow_pickle=False)
                loaded[_decode_key(member.filename[: -len(".npy")])] = array
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, ValueError, TypeError,
            MemoryError, RuntimeError) as exc:  # RuntimeError: RecursionError included
        raise ValueError(f"buffer file {path} cannot be read: "
                         f"{str(exc) or type(exc).__name__}") from None
    return loaded


def _open_regular_file(path: str) -> IO[bytes]:
    """`path` opened for reading, if it is a regular file and not a symlink: opening a FIFO or
    a device (a link to /dev/stdin) blocks forever, and a link may point outside the run
    folder. Checked again on the open descriptor, so the file cannot be swapped in between."""
    if not stat.S_ISREG(os.lstat(path).st_mode):
        raise ValueError("it is not a regular file (a symlink, FIFO or device; palaestra "
                         "writes buffers as plain files)")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                 | getattr(os, "O_BINARY", 0))
    fh = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        fh.close()
        raise ValueError("it is not a regular file")
    return fh


_COLUMN_KINDS = "biuf"  # bool, integers, floats: everything palaestra stores in a buffer


def _check_npz(archive: zipfile.ZipFile, file_size: int) -> List[zipfile.ZipInfo]:
    """The members of an archive written by `save_columns`, after checking each one's .npy
    header without reading its data.

    `np.savez` stores one uncompressed .npy member per column, so anything else is refused:
    a compressed member (a few MB can expand to GBs), a name not ending in .npy, members
    declaring more bytes than the file holds (overlapping members), and headers declaring a
    dtype palaestra never stores (objects, strings, complex, structured), a 0-d array, or more
    data than the member holds (numpy allocates the declared shape before reading: a forged
    header of (10**12, 4) asks for TiBs). After this no array can be larger than the file.
    """
    members = archive.infolist()
    if not members:
        raise ValueError("the archive holds no columns")
    total, seen = 0, set()
    for member in members:
        name = member.filename
        if not name.endswith(".npy") or name in seen:
            raise ValueError(f"member {name!r} is not a column palaestra writes")
        seen.add(name)
        if member.compress_type != zipfile.ZIP_STORED or member.flag_bits & 0x1:
            raise ValueError(f"member {name!r} is compressed or encrypted (palaestra stores "
                             "columns uncompressed)")
        total += member.compress_size
        if member.file_size != member.compress_size or total > file_size:
            raise ValueError(f"member {name!r} declares more data than the file holds")
        with archive.open(member) as column:
            version = npy_format.read_magic(column)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(column)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(column)
            else:
                raise ValueError(f"member {name!r} has .npy format version {version}")
        if dtype.kind not in _COLUMN_KINDS:
            raise ValueError(f"column {name[:-4]!r} has dtype {dtype}; buffers hold only "
                             "booleans, integers and floats")
        if not shape or min(shape) < 0:
            raise ValueError(f"column {name[:-4]!r} has shape {shape}; a column needs one row "
                             "per experience")
        if math.prod(shape) * dtype.itemsize > member.file_size:
            raise ValueError(f"column {name[:-4]!r} declares shape {shape} of {dtype}, more "
                             f"than the {member.file_size} bytes it holds")
    return members


def check_columns_fit(buffer: AgentBuffer, spec: "BehaviorSpec") -> None:
    """Raise ValueError unless `buffer` (one loaded from a checkpoint's buffer file) holds
    columns a trainer of the behavior `spec` can train on: observations of the spec's shapes,
    actions of its widths with discrete actions inside their branches, and the reward and
    done columns. A tampered or foreign file would otherwise pass `load_columns` and fail
    only later, mid-training (an action of 10**9 as an index error deep inside the update).
    Only what the buffer holds is checked against the spec, not which trainer wrote it."""
    n_obs = len(spec.observation_specs)
    for key in buffer.keys():
        if (isinstance(key, tuple) and isinstance(key[0], ObservationKeyPrefix)
                and not 0 <= key[1] < n_obs):
            raise ValueError(f"it holds {key[0].value} {key[1]}, the behavior has {n_obs} "
                             "observation(s)")
    for i, obs in enumerate(spec.observation_specs):
        shape = tuple(obs.shape)
        _check_width(buffer, obs_key(i), f"observation {i}", shape, required=True)
        _check_width(buffer, next_obs_key(i), f"next observation {i}", shape)
        _check_width(buffer, group_obs_key(i), f"teammates' observation {i}", shape, group=True)
    actions = spec.action_spec
    branches = tuple(actions.discrete_branches)
    _check_width(buffer, BufferKey.CONTINUOUS_ACTION, "continuous action",
                 (actions.continuous_size,), required=actions.continuous_size > 0)
    _check_width(buffer, BufferKey.GROUP_CONTINUOUS_ACTION, "teammates' continuous action",
                 (actions.continuous_size,), group=True)
    _check_width(buffer, BufferKey.ACTION_MASK, "action mask", (sum(branches),))
    for key, group in ((BufferKey.DISCRETE_ACTION, False),
                       (BufferKey.GROUP_DISCRETE_ACTION, True)):
        what = "teammates' discrete action" if group else "discrete action"
        _check_width(buffer, key, what, (len(branches),), required=bool(branches) and not group,
                     group=group)
        if key not in buffer:
            continue
        values = np.asarray(buffer[key], np.float64)  # NaN and 0.5 fail the test below too
        for b, size in enumerate(branches):
            column = values[..., b]
            bad = ~((column >= 0) & (column < size) & (column == np.floor(column)))
            if bad.any():
                raise ValueError(f"its {what} branch {b} holds {column[bad].flat[0]:g}, the "
                                 f"behavior's branch {b} has actions 0 to {size - 1}")
    for key in (BufferKey.ENVIRONMENT_REWARDS, BufferKey.DONE):
        _check_width(buffer, key, key.value.replace("_", " "), (), required=True)


def _check_width(buffer: AgentBuffer, key: Hashable, what: str, shape: Tuple[int, ...],
                 required: bool = False, group: bool = False) -> None:
    """The column `key`, if present (or `required`), is (n, *shape); (n, M, *shape) for a
    teammates' column (`group`), M being the number of teammate slots."""
    if key not in buffer:
        if required:
            raise ValueError(f"it has no {what} column")
        return
    found = tuple(buffer[key].shape)  # type: ignore[index]
    rows = found[:2] if group else found[:1]
    if len(rows) != (2 if group else 1) or found[len(rows):] != shape:
        raise ValueError(f"its {what} column has shape {found}, the behavior's is "
                         f"{_shape_text(shape, group)}")


def _shape_text(shape: Tuple[int, ...], group: bool) -> str:
    """(n, 3, 4) or (n, M, 3, 4): the shape of a column whose rows are `shape`."""
    return "(" + ", ".join(["n", "M"][: 1 + group] + [str(d) for d in shape]) + ")"


def _encode_key(key: Hashable) -> str:
    """A buffer key as a file-safe string (and back, `_decode_key`)."""
    if isinstance(key, BufferKey):
        return f"key|{key.value}"
    prefix, detail = key  # type: ignore[misc]
    kind = "obs" if isinstance(prefix, ObservationKeyPrefix) else "signal"
    return f"{kind}|{prefix.value}|{detail}"


def _decode_key(name: str) -> Hashable:
    parts = name.split("|", 2)
    if parts[0] == "key" and len(parts) == 2:
        return BufferKey(parts[1])
    if parts[0] == "obs" and len(parts) == 3:
        return (ObservationKeyPrefix(parts[1]), int(parts[2]))
    if parts[0] == "signal" and len(parts) == 3:
        return (RewardSignalKeyPrefix(parts[1]), parts[2])
    raise ValueError(f"unknown field {name!r}")
