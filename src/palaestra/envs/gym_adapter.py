"""Gymnasium environments as one palaestra behavior: ``num_envs`` copies stepped in-process.

Why not ``gymnasium.vector.SyncVectorEnv``: its autoreset modes differ between releases and hide
the final observation of a truncated episode in ``info``; stepping the copies here keeps the
final observation explicit (truncation bootstraps from it) and costs the same loop. No worker
process: for the small simulations this serves, pickling to a worker costs more than the step.

Spaces: observations Box / Discrete (one-hot) / MultiBinary / MultiDiscrete (one-hot per part),
and Dict / Tuple of those (each leaf one observation; ``uint8`` images of shape (H, W, C) become
visual observations). Actions Box (continuous), Discrete, MultiDiscrete, MultiBinary (discrete
branches). An ``info["action_mask"]`` (1 = allowed) is passed on as the action mask.
"""
from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Tuple

import gymnasium as gym
import numpy as np

from palaestra.envs.base import (ActionSpec, ActionTuple, BaseEnv, BehaviorSpec, DecisionSteps,
                                 ObservationKind, ObservationSpec, TerminalSteps,
                                 empty_terminal_steps)
from palaestra.exception import EnvironmentSetupError

SUPPORTED_OBS = "Box, Discrete, MultiBinary, MultiDiscrete, and Dict/Tuple of these"
SUPPORTED_ACT = "Box, Discrete, MultiDiscrete, MultiBinary"


class _ObsLeaf:
    """One observation taken out of a (possibly nested) Gymnasium observation."""

    def __init__(self, path: Tuple[Any, ...], space: gym.Space, name: str) -> None:
        self.path = path
        self.space = space
        if isinstance(space, gym.spaces.Discrete):
            self.spec = ObservationSpec((int(space.n),), ObservationKind.VECTOR, name)
            self.convert: Callable[[Any], np.ndarray] = self._one_hot
        elif isinstance(space, gym.spaces.MultiDiscrete):
            self.spec = ObservationSpec((int(np.sum(space.nvec)),), ObservationKind.VECTOR, name)
            self.offsets = np.concatenate([[0], np.cumsum(space.nvec.ravel())[:-1]])
            self.convert = self._multi_one_hot
        elif isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary)):
            shape = tuple(int(s) for s in space.shape)
            is_image = len(shape) == 3 and space.dtype == np.uint8
            if is_image:
                self.spec = ObservationSpec(shape, ObservationKind.VISUAL, name)
                self.convert = lambda o: np.asarray(o, np.float32) / 255.0
            else:
                flat = (int(np.prod(shape)),)
                self.spec = ObservationSpec(flat, ObservationKind.VECTOR, name)
                self.convert = lambda o: np.asarray(o, np.float32).reshape(flat)
        else:
            raise EnvironmentSetupError(
                f"observation space {space} (at {name}) is not supported. Supported: "
                f"{SUPPORTED_OBS}.")

    def _one_hot(self, o: Any) -> np.ndarray:
        out = np.zeros(self.spec.shape, np.float32)
        out[int(o) - int(self.space.start)] = 1.0
        return out

    def _multi_one_hot(self, o: Any) -> np.ndarray:
        out = np.zeros(self.spec.shape, np.float32)
        out[self.offsets + np.asarray(o).ravel() - self.space.start.ravel()] = 1.0
        return out

    def extract(self, obs: Any) -> np.ndarray:
        for key in self.path:
            obs = obs[key]
        return self.convert(obs)


def _obs_leaves(space: gym.Space, path: Tuple[Any, ...] = (), name: str = "obs") -> List[_ObsLeaf]:
    if isinstance(space, gym.spaces.Dict):
        return [leaf for k, sub in space.spaces.items()
                for leaf in _obs_leaves(sub, path + (k,), f"{name}.{k}")]
    if isinstance(space, gym.spaces.Tuple):
        return [leaf for i, sub in enumerate(space.spaces)
                for leaf in _obs_leaves(sub, path + (i,), f"{name}[{i}]")]
    return [_ObsLeaf(path, space, name)]


class _ActionMap:
    """palaestra actions ([-1, 1] continuous, branch indices) -> the Gymnasium action space."""

    def __init__(self, space: gym.Space) -> None:
        self.space = space
        self._discrete_start: Optional[int] = \
            int(space.start) if isinstance(space, gym.spaces.Discrete) else None
        if isinstance(space, gym.spaces.Box):
            self.spec = ActionSpec.create_continuous(int(np.prod(space.shape)))
            low, high = space.low.astype(np.float64), space.high.astype(np.float64)
            bounded = np.isfinite(low) & np.isfinite(high)
            low, high, bounded = low.ravel(), high.ravel(), bounded.ravel()
            with np.errstate(invalid="ignore", over="ignore"):
                self.scale = np.where(bounded, (high - low) / 2.0, 1.0).astype(np.float32)
                self.offset = np.where(bounded, (high + low) / 2.0, 0.0).astype(np.float32)
        elif isinstance(space, gym.spaces.Discrete):
            self.spec = ActionSpec.create_discrete((int(space.n),))
        elif isinstance(space, gym.spaces.MultiDiscrete):
            self.spec = ActionSpec.create_discrete(tuple(int(n) for n in space.nvec.ravel()))
        elif isinstance(space, gym.spaces.MultiBinary):
            self.spec = ActionSpec.create_discrete((2,) * int(np.prod(space.shape)))
        else:
            raise EnvironmentSetupError(
                f"action space {space} is not supported. Supported: {SUPPORTED_ACT}.")

    def batch(self, actions: ActionTuple) -> List[Any]:
        """One Gymnasium action per copy, converted for the whole batch at once."""
        space = self.space
        if self._discrete_start is not None:  # the common case, on every step
            # numpy integers, not Python ints: Discrete.contains (asserted by many envs on
            # every step) checks a Python int against np.iinfo, twice as slow.
            return list(actions.discrete[:, 0] + self._discrete_start)
        if isinstance(space, gym.spaces.Box):
            cont = actions.continuous * self.scale + self.offset
            return list(cont.reshape((-1, *space.shape)).astype(space.dtype))
        disc = actions.discrete
        if isinstance(space, gym.spaces.MultiDiscrete):
            return list((disc + space.start.ravel()).reshape((-1, *space.shape)).astype(space.dtype))
        return list(disc.reshape((-1, *space.shape)).astype(space.dtype))


class GymnasiumEnv(BaseEnv):
    """`num_envs` copies of a Gymnasium env as one behavior; agent id = copy index."""

    def __init__(self, make_env: Callable[[], gym.Env], num_envs: int, behavior_name: str,
                 seed: Optional[int] = None) -> None:
        self.envs = [make_env() for _ in range(num_envs)]
        for e in self.envs:
            if not isinstance(e, gym.Env):
                raise EnvironmentSetupError(
                    f"the factory for {behavior_name} returned {type(e).__name__}, not a "
                    "gymnasium.Env; return one environment, palaestra makes num_envs copies.")
        first = self.envs[0]
        self.name = behavior_name
        self.leaves = _obs_leaves(first.observation_space)
        space = first.observation_space
        self._flat_box = isinstance(space, gym.spaces.Box) and len(space.shape) == 1
        self.action_map = _ActionMap(first.action_space)
        self._spec = BehaviorSpec([leaf.spec for leaf in self.leaves], self.action_map.spec)
        self.seed = seed
        n = num_envs
        self._ids = np.arange(n, dtype=np.int64)
        self._obs = [np.zeros((n, *leaf.spec.shape), np.float32) for leaf in self.leaves]
        self._reward = np.zeros(n, np.float32)
        # Allocated when an env first reports info["action_mask"]; until then no mask is sent
        # (every action allowed), which spares the policy a masking op per step.
        self._branches = sum(self.action_map.spec.discrete_branches)
        self._mask: Optional[np.ndarray] = None
        self._actions: Optional[List[Any]] = None
        self._terminal = empty_terminal_steps(self._spec)

    @property
    def behavior_specs(self) -> Mapping[str, BehaviorSpec]:
        return {self.name: self._spec}

    def _write_obs(self, i: int, obs: Any, info: Mapping[str, Any]) -> None:
        if self._flat_box:  # the common case: one 1-D Box, assigned (and cast) in place
            self._obs[0][i] = obs
        else:
            for buf, leaf in zip(self._obs, self.leaves):
                buf[i] = leaf.extract(obs)
        if self._branches and info and "action_mask" in info:
            if self._mask is None:
                self._mask = np.ones((len(self.envs), self._branches), bool)
            self._mask[i] = np.asarray(info["action_mask"], bool).ravel()

    def reset(self) -> None:
        for i, e in enumerate(self.envs):
            seed = None if self.seed is None or self.seed < 0 else self.seed + i
            obs, info = e.reset(seed=seed)
            if seed is not None:
                e.action_space.seed(seed)
            self._write_obs(i, obs, info)
        self._reward[:] = 0.0
        self._terminal = empty_terminal_steps(self._spec)

    def get_steps(self, behavior_name: str) -> Tuple[DecisionSteps, TerminalSteps]:
        mask = None if self._mask is None else self._mask.copy()
        decision = DecisionSteps([o.copy() for o in self._obs], self._reward.copy(), self._ids,
                                 mask)
        return decision, self._terminal

    def set_actions(self, behavior_name: str, actions: ActionTuple) -> None:
        self._actions = self.action_map.batch(actions)

    def step(self) -> None:
        if self._actions is None:
            raise RuntimeError("set_actions must be called before step")
        done_ids, done_obs, done_rew, done_trunc = [], [], [], []
        rewards = []  # Python floats, written into the array once after the loop
        write_obs, flat = self._write_obs, self._obs[0] if self._flat_box else None
        check_mask = bool(self._branches)
        for i, (e, a) in enumerate(zip(self.envs, self._actions)):
            obs, reward, terminated, truncated, info = e.step(a)
            if terminated or truncated:
                done_ids.append(i)
                done_rew.append(reward)
                done_trunc.append(bool(truncated and not terminated))
                done_obs.append([np.array(leaf.extract(obs), np.float32) for leaf in self.leaves])
                obs, info = e.reset()
                reward = 0.0
            rewards.append(reward)
            if flat is not None and not (check_mask and info):
                flat[i] = obs  # the common case: one 1-D Box, no action mask to read
            else:
                write_obs(i, obs, info)
        self._reward[:] = rewards
        self._actions = None
        if done_ids:
            obs = [np.stack(parts) for parts in zip(*done_obs)]
            self._terminal = TerminalSteps(obs, np.asarray(done_rew, np.float32),
                                           np.asarray(done_trunc, bool),
                                           np.asarray(done_ids, np.int64))
        elif len(self._terminal):
            self._terminal = empty_terminal_steps(self._spec)

    def close(self) -> None:
        for e in self.envs:
            e.close()
