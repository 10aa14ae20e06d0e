"""Environments for the fault tests (``--env fault_envs:...``): huge observations, a step that
hangs, and episodes of a fixed length (so that an interrupted run's update count is exact)."""
from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional

import gymnasium as gym
import numpy as np


class FixedLength(gym.Env):
    """Episodes of exactly `length` steps; reward 1 when the action matches the sign of the
    observation, so a policy can learn something."""

    metadata: Dict[str, Any] = {"render_modes": []}

    def __init__(self, length: int = 32, scale: float = 1.0) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.length = length
        self.scale = scale
        self.t = 0
        self._x = 0.0

    def _obs(self) -> np.ndarray:
        self._x = float(self.np_random.uniform(-1, 1))
        return np.array([self._x, self.t / self.length], np.float32) * self.scale

    def reset(self, *, seed: Optional[int] = None, options: Any = None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any):
        reward = 1.0 if (int(action) == 1) == (self._x > 0) else 0.0
        self.t += 1
        return self._obs(), reward, self.t >= self.length, False, {}


def fixed_length(length: int = 32) -> gym.Env:
    return FixedLength(int(length))


class HugeContinuous(gym.Env):
    """Observations of about 1e30 (finite, but far beyond what float32 products survive)."""

    metadata: Dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.t = 0

    def reset(self, *, seed: Optional[int] = None, options: Any = None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, 3).astype(np.float32) * 1e30, {}

    def step(self, action: Any):
        self.t += 1
        obs = self.np_random.uniform(-1, 1, 3).astype(np.float32) * 1e30
        return obs, -float(np.abs(action).sum()), self.t >= 20, False, {}


def huge_observations() -> gym.Env:
    return HugeContinuous()


def hang_forever(note: str) -> Any:
    """Create the file named by $FAULT_HANG_MARKER (the test waits for it), then sleep."""
    marker = os.environ.get("FAULT_HANG_MARKER")
    if marker:
        with open(marker, "w") as fh:
            fh.write(note)
    while True:
        time.sleep(0.05)


class Hanging(FixedLength):
    """Steps normally `after` times, then creates the file named by $FAULT_HANG_MARKER (if set)
    and never returns from `step`."""

    def __init__(self, after: int = 100) -> None:
        super().__init__(8)
        self.after = after
        self.steps = 0

    def step(self, action: Any):
        self.steps += 1
        if self.steps > self.after:
            hang_forever("hanging")
        return super().step(action)


def hanging(after: int = 100) -> gym.Env:
    return Hanging(int(after))


def hanging_factory() -> gym.Env:
    """Never returns: creates $FAULT_HANG_MARKER and waits (Ctrl-C during start-up)."""
    hang_forever("starting")


def renamed(name: str = "CartPole"):
    """CartPole-v1 under a behavior name of the caller's choosing (a hostile one in tests)."""
    from palaestra.envs.gym_adapter import GymnasiumEnv

    return GymnasiumEnv(lambda: gym.make("CartPole-v1"), 1, name, 0)


def failing(after: int = 300) -> gym.Env:
    """A bug in the user's environment: RuntimeError inside `step` after `after` steps."""
    return Raising(int(after), "RuntimeError")


class Raising(FixedLength):
    """Raises `what` (RuntimeError, KeyboardInterrupt or SystemExit(3)) inside `step` after
    `after` steps."""

    def __init__(self, after: int = 300, what: str = "KeyboardInterrupt") -> None:
        super().__init__(8)
        self.after = after
        self.what = what
        self.steps = 0

    def step(self, action: Any):
        self.steps += 1
        if self.steps > self.after:
            raise {"RuntimeError": RuntimeError("the simulator crashed"),
                   "KeyboardInterrupt": KeyboardInterrupt(),
                   "SystemExit": SystemExit(3)}[self.what]
        return super().step(action)


def raising(after: int = 300, what: str = "KeyboardInterrupt") -> gym.Env:
    return Raising(int(after), what)
