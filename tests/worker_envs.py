"""Environments for the worker tests (``--env worker_envs:...``): a copy that kills its own
process, hangs or raises at a chosen step, a copy that waits for a file at a chosen step, and a
`BaseEnv` that reports stats of its own.

Faults are driven by events, never by time: a copy acts at its `at`-th step. With a `marker`
path, only the first copy of the whole run to get there acts, once (it creates the file with
O_EXCL, so two workers cannot both win); without one, every copy acts in every life."""
from __future__ import annotations

import os
import signal
import threading
from typing import Any, List, Mapping, Tuple

import gymnasium as gym
import numpy as np

from fault_envs import FixedLength
from palaestra.envs.base import (ActionSpec, ActionTuple, BaseEnv, BehaviorSpec, DecisionSteps,
                                 ObservationSpec, TerminalSteps, empty_terminal_steps)


def _first_to(marker: str) -> bool:
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class Faulty(FixedLength):
    """`FixedLength` episodes; at the `at`-th step of a copy: `how` = kill (SIGKILL to its own
    process), hang (blocks forever) or raise (RuntimeError)."""

    def __init__(self, at: int, how: str, marker: str, length: int) -> None:
        super().__init__(length)
        self.at, self.how, self.marker = at, how, marker
        self.steps = 0

    def step(self, action: Any):
        self.steps += 1
        if self.steps == self.at and _first_to(self.marker):
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.how == "hang":
                threading.Event().wait()
            raise RuntimeError("the simulator crashed")
        return super().step(action)


class Gated(FixedLength):
    """`FixedLength` episodes; the copy first reset with seed `gate_seed` stops at its `at`-th
    step until the file `gate` exists (the test makes it: an event, not a time)."""

    def __init__(self, gate: str, gate_seed: int, at: int, length: int) -> None:
        super().__init__(length)
        self.gate, self.gate_seed, self.at = gate, gate_seed, at
        self.gated, self.steps = False, 0

    def reset(self, *, seed: Any = None, options: Any = None):
        if seed is not None:
            self.gated = seed == self.gate_seed
        return super().reset(seed=seed, options=options)

    def step(self, action: Any):
        self.steps += 1
        if self.gated and self.steps == self.at:
            while not os.path.exists(self.gate):
                threading.Event().wait(0.001)
        return super().step(action)


def gated(gate: str = "", gate_seed: int = 0, at: int = 3, length: int = 1000) -> gym.Env:
    return Gated(gate, int(gate_seed), int(at), int(length))


def faulty(at: int = 20, how: str = "kill", marker: str = "", length: int = 8) -> gym.Env:
    return Faulty(int(at), str(how), str(marker), int(length))


class Reporting(BaseEnv):
    """Two agents whose observation is the step count; reports one stat a step
    (``Custom/Steps``, summed) through `pop_stats`."""

    def __init__(self) -> None:
        self.spec = BehaviorSpec([ObservationSpec((1,))], ActionSpec.create_discrete((2,)))
        self.t = 0
        self.stats: List[Tuple[float, str]] = []

    @property
    def behavior_specs(self) -> Mapping[str, BehaviorSpec]:
        return {"reporting": self.spec}

    def reset(self) -> None:
        self.t = 0

    def get_steps(self, behavior_name: str) -> Tuple[DecisionSteps, TerminalSteps]:
        obs = np.full((2, 1), self.t, np.float32)
        return (DecisionSteps([obs], np.ones(2, np.float32), np.arange(2)),
                empty_terminal_steps(self.spec))

    def set_actions(self, behavior_name: str, actions: ActionTuple) -> None:
        pass

    def step(self) -> None:
        self.t += 1
        self.stats.append((1.0, "sum"))

    def pop_stats(self) -> Mapping[str, List[Tuple[float, str]]]:
        stats, self.stats = self.stats, []
        return {"Custom/Steps": stats} if stats else {}


def reporting() -> BaseEnv:
    return Reporting()
