"""Shared-memory blocks through which environment workers hand over observations and actions.

One block per (worker, behavior) holds, for up to `capacity` agents, the decision observations
and the terminal observations of each observation spec (float32, as every environment gives
them), and the continuous (float32) and discrete (int64) actions. The worker writes
observations, the training process reads them and writes actions back: the arrays are never
pickled, and the pipe beside them carries only a step's small metadata (counts, rewards, ids,
masks). Who touches a block when is settled by that pipe: the training process reads a block
only after the worker's reply and writes actions only before its next command.

The worker creates a block, and a larger one (its name sent with the step's reply) when a step
has more agents than the block holds; the training process attaches to it and is the one that
unlinks it (also for a worker that was killed), so no block outlives the run.
"""
from __future__ import annotations

import secrets
from multiprocessing import shared_memory
from typing import List, Optional, Tuple

import numpy as np

from palaestra.envs.base import BehaviorSpec

_ALIGN = 64  # each array starts on a cache line


def block_prefix() -> str:
    """A prefix for the names of one environment's blocks: short (macOS allows 31 characters
    in a name) and unguessable enough not to meet another run's on the same machine."""
    return f"plst{secrets.token_hex(4)}"


def _layout(spec: BehaviorSpec, capacity: int) -> Tuple[List[Tuple[int, Tuple[int, ...], type]],
                                                        int]:
    """(offset, shape, dtype) of each array of a block, and the block's size in bytes."""
    shapes: List[Tuple[Tuple[int, ...], type]] = []
    for _ in ("decision", "terminal"):
        shapes += [((capacity, *o.shape), np.float32) for o in spec.observation_specs]
    shapes.append(((capacity, spec.action_spec.continuous_size), np.float32))
    shapes.append(((capacity, spec.action_spec.discrete_size), np.int64))
    out, offset = [], 0
    for shape, dtype in shapes:
        out.append((offset, shape, dtype))
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        offset += -(-size // _ALIGN) * _ALIGN
    return out, max(offset, _ALIGN)


class StepBlock:
    """One behavior's arrays of one worker in one shared-memory block (see the module
    docstring): `create=True` makes the block `name` for `capacity` agents, otherwise this
    attaches to the block of that name that a worker made."""

    def __init__(self, spec: BehaviorSpec, capacity: int, name: str,
                 create: bool = False) -> None:
        self.capacity = capacity
        layout, size = _layout(spec, capacity)
        self.shm = shared_memory.SharedMemory(name=name, create=create, size=size if create
                                              else 0)
        self.name = self.shm.name
        arrays = [np.ndarray(shape, dtype, self.shm.buf, offset)
                  for offset, shape, dtype in layout]
        n = len(spec.observation_specs)
        self.decision_obs: List[np.ndarray] = arrays[:n]
        self.terminal_obs: List[np.ndarray] = arrays[n:2 * n]
        self.continuous: np.ndarray = arrays[2 * n]
        self.discrete: np.ndarray = arrays[2 * n + 1]
        # what a step without ended episodes hands out: no view of the block, which can then
        # be closed whatever the trainer keeps
        self.no_terminal_obs: List[np.ndarray] = [np.zeros((0, *o.shape), np.float32)
                                                  for o in spec.observation_specs]
        self._unlinked = False

    def close(self) -> None:
        """Drop this process's mapping (the arrays above must not be used afterwards)."""
        self.decision_obs = self.terminal_obs = []
        self.continuous = self.discrete = np.zeros(0)
        try:
            self.shm.close()
        except BufferError:  # a view escaped: the mapping goes with the process instead
            pass

    def unlink(self) -> None:
        """Remove the block's name from the system (once; the training process does it)."""
        if self._unlinked:
            return
        self._unlinked = True
        try:
            self.shm.unlink()
        except FileNotFoundError:
            pass


def fitting(block: Optional[StepBlock], spec: BehaviorSpec, rows: int, name: str
            ) -> Tuple[StepBlock, bool]:
    """A block holding at least `rows` agents: `block` itself, or a new one named `name` (at
    least twice as large, so that a growing population reallocates rarely) with the old one
    closed. Returns (block, whether it is new)."""
    if block is not None and rows <= block.capacity:
        return block, False
    capacity = max(1, rows, 2 * block.capacity if block is not None else 0)
    if block is not None:
        block.close()
    return StepBlock(spec, capacity, name, create=True), True
