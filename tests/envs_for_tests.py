"""Tiny Gymnasium environments and factories for the adapter tests (``--env envs_for_tests:...``).

Everything here is deterministic and records what it receives, so tests can check exactly what
palaestra passed to the environment.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Dict, List, Optional

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import TimeLimit


class CountingEnv(gym.Env):
    """Observation ``[t, tag, episode]`` (t = steps taken in this episode); reward ``10*tag + t``.

    Terminates when ``t == terminate_at``; truncates itself when ``t == truncate_at`` (both may
    hold at once). Records every action it receives in ``received``.
    """

    metadata: Dict[str, Any] = {"render_modes": []}

    def __init__(self, terminate_at: Optional[int] = None, truncate_at: Optional[int] = None,
                 tag: float = 0.0) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.terminate_at = terminate_at
        self.truncate_at = truncate_at
        self.tag = float(tag)
        self.t = 0
        self.episode = -1
        self.received: List[Any] = []

    def _obs(self) -> np.ndarray:
        return np.array([self.t, self.tag, self.episode], np.float32)

    def reset(self, *, seed: Optional[int] = None, options: Any = None):
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        return self._obs(), {}

    def step(self, action: Any):
        self.received.append(action)
        self.t += 1
        terminated = self.terminate_at is not None and self.t == self.terminate_at
        truncated = self.truncate_at is not None and self.t == self.truncate_at
        return self._obs(), 10.0 * self.tag + self.t, terminated, truncated, {}


_MIXED_COUNTER = itertools.count()


def reset_mixed_counter() -> None:
    global _MIXED_COUNTER
    _MIXED_COUNTER = itertools.count()


def make_mixed(terminate_at: int = 3, truncate_at: int = 5) -> gym.Env:
    """Even copies terminate at `terminate_at`; odd copies hit a TimeLimit of `truncate_at`."""
    k = next(_MIXED_COUNTER)
    if k % 2 == 0:
        return CountingEnv(terminate_at=terminate_at, tag=k)
    return TimeLimit(CountingEnv(tag=k), max_episode_steps=truncate_at)


class SpaceEnv(gym.Env):
    """Any observation / action space. Observations come from ``make_obs(t)`` (t = global step
    count, 0 at the first reset), infos from ``make_info(t)``; actions are recorded."""

    metadata: Dict[str, Any] = {"render_modes": []}

    def __init__(self, observation_space: gym.Space, action_space: gym.Space,
                 make_obs: Optional[Callable[[int], Any]] = None,
                 make_info: Optional[Callable[[int], Dict[str, Any]]] = None,
                 episode_len: int = 1000) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.make_obs = make_obs or (lambda t: observation_space.sample())
        self.make_info = make_info or (lambda t: {})
        self.episode_len = episode_len
        self.t = 0
        self.ep_t = 0
        self.received: List[Any] = []

    def reset(self, *, seed: Optional[int] = None, options: Any = None):
        super().reset(seed=seed)
        self.ep_t = 0
        return self.make_obs(self.t), self.make_info(self.t)

    def step(self, action: Any):
        self.received.append(action)
        self.t += 1
        self.ep_t += 1
        done = self.ep_t >= self.episode_len
        return self.make_obs(self.t), 0.0, done, False, self.make_info(self.t)


class InPlaceEnv(gym.Env):
    """Returns the *same* array object every time, mutated in place (allowed by the Gymnasium
    API; SyncVectorEnv copies for this reason). Terminates after 2 steps; obs = [t, 100*ep]."""

    metadata: Dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._buf = np.zeros(2, np.float32)
        self.t = 0
        self.episode = -1

    def reset(self, *, seed: Optional[int] = None, options: Any = None):
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        self._buf[:] = (self.t, 100.0 * self.episode)
        return self._buf, {}

    def step(self, action: Any):
        self.t += 1
        self._buf[:] = (self.t, 100.0 * self.episode)
        return self._buf, 1.0, self.t >= 2, False, {}


RECEIVED_KWARGS: List[Dict[str, Any]] = []


def record_kwargs(**kwargs: Any) -> gym.Env:
    RECEIVED_KWARGS.append(dict(kwargs))
    return CountingEnv()


def failing_factory(**kwargs: Any) -> gym.Env:
    raise ValueError("boom: simulator license missing")


def not_an_env(**kwargs: Any) -> Any:
    return "definitely not an environment"


NOT_CALLABLE = 42


def text_obs_env() -> gym.Env:
    return SpaceEnv(gym.spaces.Text(5), gym.spaces.Discrete(2), make_obs=lambda t: "abc")


def graph_action_env() -> gym.Env:
    graph = gym.spaces.Graph(node_space=gym.spaces.Discrete(3), edge_space=None)
    return SpaceEnv(gym.spaces.Box(-1, 1, (2,), np.float32), graph)
