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

import importlib
import math
import os
import sys
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

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
            if int(np.prod(shape)) == 0:
                raise EnvironmentSetupError(
                    f"observation space {space} (at {name}) has no elements; give the "
                    "environment an observation of at least one value.")
            is_image = len(shape) == 3 and space.dtype == np.uint8
            if is_image and _channels_first(shape):
                # (C, H, W), as image wrappers for PyTorch often give it: the encoders take
                # (H, W, C), the layout Gymnasium's image environments use.
                self.spec = ObservationSpec(shape[1:] + shape[:1], ObservationKind.VISUAL, name)
                self.convert = lambda o: np.moveaxis(np.asarray(o, np.float32), 0, -1) / 255.0
            elif is_image:
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
        index = int(o) - int(self.space.start)
        if not 0 <= index < self.spec.shape[0]:
            raise IndexError(f"observation {self.spec.name} = {o!r} is outside its space "
                             f"{self.space}")
        out[index] = 1.0
        return out

    def _multi_one_hot(self, o: Any) -> np.ndarray:
        out = np.zeros(self.spec.shape, np.float32)
        parts = np.asarray(o).ravel() - self.space.start.ravel()
        if parts.shape != self.space.nvec.ravel().shape or \
                not ((parts >= 0) & (parts < self.space.nvec.ravel())).all():
            raise IndexError(f"observation {self.spec.name} = {o!r} is outside its space "
                             f"{self.space}")
        out[self.offsets + parts] = 1.0
        return out

    def extract(self, obs: Any) -> np.ndarray:
        for key in self.path:
            obs = obs[key]
        return self.convert(obs)


def first_non_finite(buffers: Sequence[np.ndarray], specs: Sequence[ObservationSpec]
                     ) -> Optional[Tuple[int, str, str]]:
    """(row, observation name, that row's values as text) of the first NaN or infinite vector
    observation, or None.

    Such an observation would turn every weight into NaN at the next update, silently; it is a
    bug in the environment, so the adapters stop the run on it, named. (A sum is NaN or
    infinite when any element is, and costs less than an elementwise test.)"""
    for buf, spec in zip(buffers, specs):
        if spec.kind == ObservationKind.VECTOR and len(buf) and \
                not math.isfinite(buf.sum()) and not np.isfinite(buf).all():
            row = int(np.flatnonzero(~np.isfinite(buf.reshape(len(buf), -1)).all(axis=1))[0])
            return row, spec.name, np.array2string(buf[row], threshold=12)
    return None


def import_env_module(env_path: str, module_name: str) -> Any:
    """The module of a `module:factory`, also searched for in the working directory (after
    everything else), as `python -m palaestra` does: the `palaestra` script alone does not put
    the working directory on the import path, and `my_env.py` next to the config should just
    work. A module that fails while importing is named with its error, without a traceback."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise EnvironmentSetupError(
            f"--env {env_path}: cannot import module '{module_name}': {exc} (searched the "
            "installed packages, PYTHONPATH and the working directory)") from None
    except Exception as exc:
        raise EnvironmentSetupError(
            f"--env {env_path}: importing module '{module_name}' failed: "
            f"{type(exc).__name__}: {exc}") from exc


def _channels_first(shape: Tuple[int, ...]) -> bool:
    """(C, H, W) rather than (H, W, C): few channels first, and a last axis too long to be
    the channels."""
    return shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4) and min(shape[1:]) >= 8


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
        for i, e in enumerate(self.envs[1:], 1):
            if e is first:
                raise EnvironmentSetupError(
                    f"the factory for {behavior_name} returned the same environment object for "
                    f"copy {i} as for copy 0: return a new environment on each call "
                    "(num_envs copies are stepped independently).")
            for kind in ("observation_space", "action_space"):
                if getattr(e, kind) != getattr(first, kind):
                    raise EnvironmentSetupError(
                        f"copy {i} of {behavior_name} has {kind} {getattr(e, kind)}, copy 0 "
                        f"has {getattr(first, kind)}: all num_envs copies must have the same "
                        "spaces.")
        self.name = behavior_name
        fps = (getattr(first, "metadata", None) or {}).get("render_fps")
        self.render_fps = float(fps) if isinstance(fps, (int, float)) and fps > 0 else None
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
            mask = np.asarray(info["action_mask"], bool).ravel()
            if mask.shape != (self._branches,):
                raise EnvironmentSetupError(
                    f"{self.name} copy {i}: info['action_mask'] has {mask.size} entries, the "
                    f"action space {self.envs[i].action_space} needs {self._branches} (one per "
                    "action of each branch, 1 = allowed).")
            self._mask[i] = mask

    def _bad_step(self, what: str, i: int, obs: Any, exc: Exception) -> EnvironmentSetupError:
        """A clear error for a reset/step result that does not fit the spaces."""
        shape = getattr(obs, "shape", None)
        got = f"an observation of shape {shape}" if shape is not None else \
            f"an observation {type(obs).__name__}"
        return EnvironmentSetupError(
            f"{self.name} copy {i}: {what} returned {got} that does not fit its observation "
            f"space {self.envs[i].observation_space}: {exc}")

    def reset(self) -> None:
        for i, e in enumerate(self.envs):
            seed = None if self.seed is None or self.seed < 0 else self.seed + i
            try:
                result = e.reset(seed=seed)
            except gym.error.DependencyNotInstalled as exc:  # "human" renders in reset
                raise render_error(self.name, e, exc) from None
            if not (isinstance(result, tuple) and len(result) == 2):
                raise EnvironmentSetupError(
                    f"{self.name} copy {i}: reset() must return (observation, info) as in the "
                    f"Gymnasium API, got {type(result).__name__}; an environment written for the "
                    "old Gym API needs porting (see Gymnasium's migration guide).")
            obs, info = result
            if seed is not None:
                e.action_space.seed(seed)
            try:
                self._write_obs(i, obs, info)
            except (ValueError, TypeError, IndexError) as exc:
                raise self._bad_step("reset()", i, obs, exc) from None
        self._check_finite(self._obs, "reset()")
        self._reward[:] = 0.0
        self._terminal = empty_terminal_steps(self._spec)

    def _check_finite(self, buffers: List[np.ndarray], what: str) -> None:
        found = first_non_finite(buffers, self._spec.observation_specs)
        if found is not None:
            row, name, values = found
            raise EnvironmentSetupError(f"{self.name}: {what} returned a non-finite observation "
                                        f"{name} (NaN or inf) in copy {row}: {values}")

    def _reward_array(self, rewards: List[Any], ids: Optional[List[int]] = None,
                      out: Optional[np.ndarray] = None) -> np.ndarray:
        """The step's rewards as float32 (into `out` if given), one finite number each (a 0-d
        or one-element array counts as a number); anything else is named with its copy."""
        if out is None:
            out = np.empty(len(rewards), np.float32)
        try:
            out[:] = rewards
            if math.isfinite(out.sum()):
                return out
        except (ValueError, TypeError):
            pass
        for k, r in enumerate(rewards):
            copy = k if ids is None else ids[k]
            try:
                value = np.asarray(r, np.float64)
            except (ValueError, TypeError):
                value = None
            if r is None or value is None or value.size != 1 or not np.isfinite(value).all():
                raise EnvironmentSetupError(
                    f"{self.name} copy {copy}: step() returned reward {r!r}; a reward must be "
                    "one finite number.")
            out[k] = value.reshape(())
        return out

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
        # Only the reading of what the environment returned is guarded: an error raised inside
        # the environment's own step() or reset() keeps its traceback.
        bad = (ValueError, TypeError, IndexError)
        for i, (e, a) in enumerate(zip(self.envs, self._actions)):
            result = e.step(a)
            if not isinstance(result, (tuple, list)) or len(result) != 5:
                got = f"{len(result)} values" if isinstance(result, (tuple, list)) else \
                    type(result).__name__
                raise EnvironmentSetupError(
                    f"{self.name} copy {i}: step() must return (observation, reward, "
                    f"terminated, truncated, info) as in the Gymnasium API, got {got}; an "
                    "environment written for the old Gym API needs porting (see Gymnasium's "
                    "migration guide).")
            obs, reward, terminated, truncated, info = result
            what = "step()"
            if terminated or truncated:
                done_ids.append(i)
                done_rew.append(reward)
                done_trunc.append(bool(truncated and not terminated))
                try:
                    done_obs.append([np.array(leaf.extract(obs), np.float32)
                                     for leaf in self.leaves])
                except bad as exc:
                    raise self._bad_step(what, i, obs, exc) from None
                obs, info = e.reset()
                what = "reset()"
                reward = 0.0
            rewards.append(reward)
            try:
                if flat is not None and not (check_mask and info):
                    flat[i] = obs  # the common case: one 1-D Box, no action mask to read
                else:
                    write_obs(i, obs, info)
            except bad as exc:
                raise self._bad_step(what, i, obs, exc) from None
        self._reward_array(rewards, out=self._reward)
        self._check_finite(self._obs, "step()")
        self._actions = None
        if done_ids:
            try:
                obs = [np.stack(parts) for parts in zip(*done_obs)]
            except ValueError as exc:
                raise EnvironmentSetupError(
                    f"{self.name}: step() returned last observations of different shapes at "
                    f"an episode's end ({exc}); the observation space is "
                    f"{self.envs[0].observation_space}.") from None
            for part, leaf in zip(obs, self.leaves):
                if part.shape[1:] != leaf.spec.shape:
                    raise EnvironmentSetupError(
                        f"{self.name}: step() returned a last observation {leaf.spec.name} of "
                        f"shape {part.shape[1:]} at an episode's end; its space "
                        f"{leaf.space} gives {leaf.spec.shape}.")
            self._check_finite(obs, "step() (an episode's last step)")
            done_rew_arr = self._reward_array(done_rew, done_ids)
            self._terminal = TerminalSteps(obs, done_rew_arr,
                                           np.asarray(done_trunc, bool),
                                           np.asarray(done_ids, np.int64))
        elif len(self._terminal):
            self._terminal = empty_terminal_steps(self._spec)

    def render(self) -> Optional[np.ndarray]:
        """Copy 0's frame when it was made with ``render_mode="rgb_array"`` (as uint8 (H, W,
        3)); with "human" it updates that copy's window and returns None, as it does for any
        other mode. Only copy 0 is given the render mode (see `make_environment`)."""
        env = self.envs[0]
        mode = getattr(env, "render_mode", None)
        if mode not in ("rgb_array", "human"):
            return None
        try:
            frame = env.render()
        except (gym.error.DependencyNotInstalled, ImportError) as exc:
            raise render_error(self.name, env, exc) from None
        return None if mode == "human" or frame is None else rgb_frame(frame, self.name)

    def close(self) -> None:
        for e in self.envs:
            e.close()


def render_error(name: str, env: Any, exc: Exception) -> EnvironmentSetupError:
    """A missing rendering package (pygame for the classic-control scenes), named with the
    environment and the install command Gymnasium's message gives."""
    mode = getattr(env, "render_mode", None)
    return EnvironmentSetupError(f"{name}: render_mode={mode!r} needs a package that is not "
                                 f"installed: {exc}")


def rgb_frame(frame: Any, name: str) -> np.ndarray:
    """An environment's ``render()`` result as (H, W, 3) uint8: grey images get three channels,
    an alpha channel is dropped, floats in [0, 1] are scaled to [0, 255]."""
    a = np.asarray(frame)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.size == 0:
        raise EnvironmentSetupError(f"{name}: render() returned an array of shape {a.shape}; "
                                    "an rgb_array frame is (H, W, 3) (or 1 or 4 channels).")
    a = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]
    if a.dtype == np.uint8:
        return a.copy()  # the environment may reuse its buffer; a kept frame must not change
    if a.dtype.kind in "fb" and a.max(initial=0) <= 1.0:
        a = a * 255.0
    return np.clip(np.nan_to_num(a.astype(np.float64)), 0, 255).astype(np.uint8)
