"""PettingZoo environments as palaestra behaviors: ``num_envs`` copies stepped in-process.

``--env pettingzoo:<module>:<factory>`` calls the factory ``num_envs`` times (``env_args`` as
keyword arguments). Parallel environments are stepped as they are; an AEC environment goes through
PettingZoo's ``aec_to_parallel``, which needs ``metadata["is_parallelizable"]``: palaestra acts for
all live agents at once, so turn-by-turn games are not supported.

Behaviors: an agent named ``<prefix>_<digits>`` belongs to behavior ``<prefix>`` (``adversary_0``
-> ``adversary``); any other name is its own behavior. ``env_args["agent_behaviors"]`` (popped
before the factory sees ``env_args``) maps exact agent names or name prefixes to behavior names;
the exact name wins, then the longest prefix. All agents of a behavior must share observation and
action spaces. Agent ids are int64, unique across copies and stable over episodes.

Episodes follow PettingZoo's shrinking ``agents`` list: an agent that terminates or truncates is
reported once in `TerminalSteps` (its final observation and last reward) and then left out of
`DecisionSteps`; when a copy has no live agent left it is reset, and its agents appear in the
same step's `DecisionSteps`. Agents that join mid-episode simply appear.

Per-agent ``infos`` keys read: ``action_mask`` (1 = allowed; also taken from an observation dict
``{"observation": ..., "action_mask": ...}``, PettingZoo's classic convention), ``group_id`` (int
>= 1 within a copy, 0 = no group) and ``group_reward`` (float, earned by the last action). Spaces
are converted as in `palaestra.envs.gym_adapter`.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import re
import types
from collections import defaultdict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import gymnasium as gym
import numpy as np

from palaestra.envs.base import (ActionTuple, BaseEnv, BehaviorSpec, DecisionSteps,
                                 TerminalSteps, empty_terminal_steps)
from palaestra.envs.gym_adapter import (_ActionMap, _obs_leaves, first_non_finite,
                                        import_env_module)
from palaestra.exception import EnvironmentSetupError

PREFIX = "pettingzoo:"
RESERVED_KEYS = ("agent_behaviors", "group_by_behavior")
# group ids are made unique across copies as copy_index * GROUP_STRIDE + group_id
GROUP_STRIDE = 1_000_000
_INDEXED = re.compile(r"^(.+)_(\d+)$")
_INSTALL_HINT = ('pip install "palaestra[pettingzoo]" (in a checkout: '
                 'pip install -e ".[pettingzoo]")')


def default_behavior(agent: Any) -> str:
    """``adversary_0`` -> ``adversary``; a name without a trailing ``_<digits>`` is its own."""
    match = _INDEXED.match(str(agent))
    return match.group(1) if match else str(agent)


class BehaviorRule:
    """Agent name -> behavior name: the override for the exact name, else for the longest
    matching prefix, else `default_behavior`."""

    def __init__(self, overrides: Optional[Mapping[str, str]] = None) -> None:
        if overrides is not None and not (
                isinstance(overrides, Mapping)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in overrides.items())):
            raise EnvironmentSetupError(
                f"env_args agent_behaviors must map agent names or name prefixes to behavior "
                f"names (strings), e.g. {{adversary: red, agent_: blue}}; got {overrides!r}.")
        self.overrides = dict(overrides or {})
        self._prefixes = sorted(self.overrides, key=len, reverse=True)

    def __call__(self, agent: Any) -> str:
        name = str(agent)
        if name in self.overrides:
            return self.overrides[name]
        for prefix in self._prefixes:
            if name.startswith(prefix):
                return self.overrides[prefix]
        return default_behavior(name)


class _BehaviorIO:
    """Converts one behavior's observations, masks and actions (its agents share spaces)."""

    def __init__(self, name: str, obs_space: gym.Space, act_space: gym.Space) -> None:
        try:
            self.action_map = _ActionMap(act_space)
            spaces = obs_space.spaces if isinstance(obs_space, gym.spaces.Dict) else {}
            self.mask_in_obs = "action_mask" in spaces
            if not self.mask_in_obs:
                leaves = _obs_leaves(obs_space)
            elif set(spaces) == {"observation", "action_mask"}:
                leaves = _obs_leaves(spaces["observation"], ("observation",))
            else:
                leaves = [leaf for k, sub in spaces.items() if k != "action_mask"
                          for leaf in _obs_leaves(sub, (k,), f"obs.{k}")]
        except EnvironmentSetupError as exc:
            raise EnvironmentSetupError(f"behavior {name!r}: {exc}") from None
        self.leaves = leaves
        self.spec = BehaviorSpec([leaf.spec for leaf in leaves], self.action_map.spec)
        self.mask_width = sum(self.action_map.spec.discrete_branches)
        if self.mask_in_obs and int(np.prod(spaces["action_mask"].shape)) != self.mask_width:
            raise EnvironmentSetupError(
                f"behavior {name!r}: the observation's action_mask {spaces['action_mask']} does "
                f"not match the action space {act_space} ({self.mask_width} discrete actions).")
        self._flat = (len(leaves) == 1 and not leaves[0].path
                      and isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1)

    def observations(self, raw: Sequence[Any]) -> List[np.ndarray]:
        if not raw:
            return [np.zeros((0, *o.shape), np.float32) for o in self.spec.observation_specs]
        if self._flat:  # the common case: one 1-D Box per agent, stacked and cast at once
            return [np.asarray(raw, np.float32).reshape(len(raw), -1)]
        return [np.stack([leaf.extract(o) for o in raw]) for leaf in self.leaves]

    def masks(self, raw: Sequence[Any], infos: Sequence[Mapping[str, Any]]) -> Optional[np.ndarray]:
        """(n, sum(branches)) bool, True = allowed; None when no agent reports a mask."""
        if not self.mask_width or not raw:
            return None
        if self.mask_in_obs:
            return np.asarray([o["action_mask"] for o in raw], bool).reshape(len(raw), -1)
        found = [info.get("action_mask") for info in infos]
        if all(m is None for m in found):
            return None
        allowed = np.ones(self.mask_width, bool)
        return np.stack([allowed if m is None else np.asarray(m, bool).ravel() for m in found])


class _Batch:
    """One behavior's rows of one step, column by column (filled in agent order)."""

    __slots__ = ("copies", "agents", "ids", "obs", "rewards", "infos", "interrupted")

    def __init__(self) -> None:
        self.copies: List[int] = []
        self.agents: List[Any] = []
        self.ids: List[int] = []
        self.obs: List[Any] = []
        self.rewards: List[float] = []
        self.infos: List[Mapping[str, Any]] = []
        self.interrupted: List[bool] = []

    def add(self, copy: int, agent: Any, agent_id: int, obs: Any, reward: float,
            info: Any) -> None:
        self.copies.append(copy)
        self.agents.append(agent)
        self.ids.append(agent_id)
        self.obs.append(obs)
        self.rewards.append(reward)
        self.infos.append(info if isinstance(info, Mapping) else {})


def _groups(batch: _Batch, by_behavior: bool = False
            ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """group_id (unique across copies) and group_reward arrays, or None when no agent reports
    and `by_behavior` is off; with it, an agent without a `group_id` info is in its copy's
    group of this behavior (group 1 of the batch, which holds one behavior)."""
    infos = batch.infos
    if not any("group_id" in i or "group_reward" in i for i in infos):
        if not by_behavior:
            return None, None
    local = np.asarray([i.get("group_id", 1 if by_behavior else 0) for i in infos], np.int64)
    if ((local < 0) | (local >= GROUP_STRIDE)).any():
        raise EnvironmentSetupError(
            f"infos group_id must be an int in [0, {GROUP_STRIDE}) (0 = no group); got "
            f"{local.tolist()}.")
    copies = np.asarray(batch.copies, np.int64)
    group_id = np.where(local > 0, copies * GROUP_STRIDE + local, 0)
    return group_id, np.asarray([i.get("group_reward", 0.0) for i in infos], np.float32)


class PettingZooEnv(BaseEnv):
    """Copies of a PettingZoo Parallel environment, their agents grouped into behaviors."""

    def __init__(self, envs: Sequence[Any], env_name: str, seed: Optional[int] = None,
                 agent_behaviors: Optional[Mapping[str, str]] = None,
                 group_by_behavior: bool = False) -> None:
        self.envs = list(envs)
        self.group_by_behavior = bool(group_by_behavior)
        self.env_name = env_name
        self.seed = seed
        self.rule = BehaviorRule(agent_behaviors)
        self._ids: Dict[Tuple[int, Any], int] = {}
        self._behavior: Dict[Any, str] = {}  # agent name -> behavior (the same in every copy)
        self._io: Dict[str, _BehaviorIO] = {}
        self._spaces: Dict[str, Tuple[gym.Space, gym.Space]] = {}
        self._check_spaces()
        for c, env in enumerate(self.envs):
            for agent in env.possible_agents:
                self._agent_id(c, agent)
        n = len(self.envs)
        self._seeded = [False] * n
        self._live: List[List[Any]] = [[] for _ in range(n)]
        self._last_obs: List[Mapping[Any, Any]] = [{} for _ in range(n)]
        self._actions: List[Dict[Any, Any]] = [{} for _ in range(n)]
        self._decision: Dict[str, DecisionSteps] = {}
        self._terminal: Dict[str, TerminalSteps] = {}
        self._rows: Dict[str, Tuple[List[int], List[Any]]] = {}

    # -- set-up -------------------------------------------------------------------------------
    def _check_spaces(self) -> None:
        """Group the possible agents into behaviors; each behavior's spaces must agree."""
        members: Dict[str, List[Tuple[Any, gym.Space, gym.Space]]] = defaultdict(list)
        for env in self.envs:
            agents = getattr(env, "possible_agents", None)
            if not agents:
                raise EnvironmentSetupError(
                    f"--env {self.env_name}: the environment lists no possible_agents; palaestra "
                    "needs them to know the behaviors before the first reset.")
            for agent in agents:
                members[self.rule(agent)].append(
                    (agent, env.observation_space(agent), env.action_space(agent)))
        for behavior, rows in members.items():
            _, obs_space, act_space = rows[0]
            if any(o != obs_space or a != act_space for _, o, a in rows):
                listing = "; ".join(sorted({f"{agent}: observation {o}, action {a}"
                                            for agent, o, a in rows}))
                raise EnvironmentSetupError(
                    f"--env {self.env_name}: the agents of behavior {behavior!r} have different "
                    f"spaces ({listing}). One behavior needs one observation and action space: "
                    "split them with env_args agent_behaviors (agent name or prefix -> behavior "
                    "name).")
            self._io[behavior] = _BehaviorIO(behavior, obs_space, act_space)
            self._spaces[behavior] = (obs_space, act_space)
            for agent, _, _ in rows:
                self._behavior[agent] = behavior

    def _agent_id(self, copy: int, agent: Any) -> int:
        """The agent's stable id; agents not in possible_agents join an existing behavior."""
        key = (copy, agent)
        agent_id = self._ids.get(key)
        if agent_id is None:
            if agent not in self._behavior:
                self._join(copy, agent)
            agent_id = self._ids[key] = len(self._ids)
        return agent_id

    def _join(self, copy: int, agent: Any) -> None:
        env, behavior = self.envs[copy], self.rule(agent)
        known = self._spaces.get(behavior)
        if known != (env.observation_space(agent), env.action_space(agent)):
            raise EnvironmentSetupError(
                f"--env {self.env_name}: agent {agent!r} appeared mid-run as behavior "
                f"{behavior!r}, which {'has other spaces' if known else 'is not one of'} the "
                f"behaviors known at the start ({', '.join(self._io)}). Behaviors are fixed "
                "when training starts: list the agent in possible_agents or map it with "
                "agent_behaviors.")
        self._behavior[agent] = behavior

    @property
    def behavior_specs(self) -> Mapping[str, BehaviorSpec]:
        return {name: io.spec for name, io in self._io.items()}

    # -- stepping -----------------------------------------------------------------------------
    def reset(self) -> None:
        decisions: Dict[str, _Batch] = defaultdict(_Batch)
        for c in range(len(self.envs)):
            self._reset_copy(c, decisions)
        self._actions = [{} for _ in self.envs]
        self._publish(decisions, {})

    def _reset_copy(self, c: int, decisions: Dict[str, _Batch]) -> None:
        seed = None
        if not self._seeded[c] and self.seed is not None and self.seed >= 0:
            seed = self.seed + c
        self._seeded[c] = True
        env = self.envs[c]
        obs, infos = env.reset(seed=seed)
        live = list(env.agents)
        for agent in live:
            self._add(decisions, c, agent, obs, 0.0, infos)
        self._live[c] = live
        self._last_obs[c] = obs

    def _add(self, batches: Dict[str, _Batch], c: int, agent: Any, obs: Mapping[Any, Any],
             reward: float, infos: Mapping[Any, Any]) -> None:
        agent_id = self._agent_id(c, agent)
        agent_obs = obs.get(agent)
        if agent_obs is None:
            agent_obs = self._last_obs[c].get(agent)
            if agent_obs is None:
                raise EnvironmentSetupError(
                    f"--env {self.env_name}: copy {c} returned no observation for agent "
                    f"{agent!r}.")
        batches[self._behavior[agent]].add(c, agent, agent_id, agent_obs, reward,
                                           infos.get(agent) if infos else None)

    def get_steps(self, behavior_name: str) -> Tuple[DecisionSteps, TerminalSteps]:
        return self._decision[behavior_name], self._terminal[behavior_name]

    def set_actions(self, behavior_name: str, actions: ActionTuple) -> None:
        copies, agents = self._rows[behavior_name]
        if len(actions) != len(agents):
            raise ValueError(f"{behavior_name}: {len(actions)} actions for {len(agents)} agents "
                             "of the last decision batch.")
        converted = self._io[behavior_name].action_map.batch(actions)
        for c, agent, action in zip(copies, agents, converted):
            self._actions[c][agent] = action

    def step(self) -> None:
        decisions: Dict[str, _Batch] = defaultdict(_Batch)
        terminals: Dict[str, _Batch] = defaultdict(_Batch)
        for c, env in enumerate(self.envs):
            actions, live = self._actions[c], self._live[c]
            if len(actions) != len(live):
                missing = sorted({self._behavior[a] for a in live if a not in actions})
                raise RuntimeError(f"set_actions must be called for behaviors {missing} "
                                   "before step")
            obs, rewards, terms, truncs, infos = env.step(actions)
            for agent in live:
                term, trunc = bool(terms.get(agent, False)), bool(truncs.get(agent, False))
                if term or trunc:
                    self._add(terminals, c, agent, obs, rewards.get(agent, 0.0), infos)
                    terminals[self._behavior[agent]].interrupted.append(trunc and not term)
            still = [a for a in env.agents if not (terms.get(a, False) or truncs.get(a, False))]
            if still:
                for agent in still:
                    self._add(decisions, c, agent, obs, rewards.get(agent, 0.0), infos)
                self._live[c], self._last_obs[c] = still, obs
            else:
                self._reset_copy(c, decisions)
        self._actions = [{} for _ in self.envs]
        self._publish(decisions, terminals)

    def _publish(self, decisions: Mapping[str, _Batch], terminals: Mapping[str, _Batch]) -> None:
        """Turn the step's column lists into each behavior's batched arrays."""
        empty = _Batch()
        for name, io in self._io.items():
            d = decisions.get(name, empty)
            group_id, group_reward = _groups(d, self.group_by_behavior)
            obs, rewards = io.observations(d.obs), self._rewards(d)
            self._check(io, d, obs, rewards, group_reward)
            self._decision[name] = DecisionSteps(
                obs, rewards, np.asarray(d.ids, np.int64), io.masks(d.obs, d.infos), group_id,
                group_reward)
            self._rows[name] = (d.copies, d.agents)
            t = terminals.get(name)
            if t is None:
                self._terminal[name] = empty_terminal_steps(io.spec)
                continue
            group_id, group_reward = _groups(t, self.group_by_behavior)
            obs, rewards = io.observations(t.obs), self._rewards(t)
            self._check(io, t, obs, rewards, group_reward)
            self._terminal[name] = TerminalSteps(
                obs, rewards, np.asarray(t.interrupted, bool), np.asarray(t.ids, np.int64),
                group_id, group_reward)

    def _rewards(self, batch: "_Batch") -> np.ndarray:
        try:
            return np.asarray(batch.rewards, np.float32).reshape(len(batch.rewards))
        except (ValueError, TypeError):
            bad = next(k for k, r in enumerate(batch.rewards)
                       if np.asarray(r, dtype=object).size != 1)
            raise EnvironmentSetupError(
                f"{self.env_name} copy {batch.copies[bad]}: agent {batch.agents[bad]!r} got "
                f"reward {batch.rewards[bad]!r}; a reward must be one finite number.") from None

    def _check(self, io: Any, batch: "_Batch", obs: List[np.ndarray], rewards: np.ndarray,
               group_reward: Optional[np.ndarray]) -> None:
        """NaN or infinite observations or rewards would poison the networks silently: the run
        stops on them, naming the copy and the agent."""
        found = first_non_finite(obs, io.spec.observation_specs)
        if found is not None:
            row, name, values = found
            raise EnvironmentSetupError(
                f"{self.env_name} copy {batch.copies[row]}: agent {batch.agents[row]!r} got a "
                f"non-finite observation {name} (NaN or inf): {values}")
        for what, values in (("reward", rewards), ("group_reward", group_reward)):
            if values is not None and len(values) and not math.isfinite(values.sum()):
                k = int(np.flatnonzero(~np.isfinite(values))[0])
                raise EnvironmentSetupError(
                    f"{self.env_name} copy {batch.copies[k]}: agent {batch.agents[k]!r} got "
                    f"{what} {values[k]}; a reward must be one finite number.")

    def close(self) -> None:
        for env in self.envs:
            env.close()


# -- making one from an --env string ------------------------------------------------------------
def make_pettingzoo_env(env_path: str, kwargs: Mapping[str, Any], num_envs: int = 1,
                        seed: Optional[int] = None) -> PettingZooEnv:
    """``pettingzoo:<module>[:<factory>]`` -> `PettingZooEnv` of ``num_envs`` copies."""
    kwargs = dict(kwargs)
    agent_behaviors = kwargs.pop("agent_behaviors", None)
    group_by_behavior = kwargs.pop("group_by_behavior", False)
    if not isinstance(group_by_behavior, bool):
        raise EnvironmentSetupError(
            f"--env {env_path}: env_args group_by_behavior must be true or false, got "
            f"{group_by_behavior!r}.")
    factory = resolve_factory(env_path)
    envs = [_make_parallel(factory, kwargs, env_path) for _ in range(num_envs)]
    return PettingZooEnv(envs, env_path, seed, agent_behaviors, group_by_behavior)


def _import(name: str, env_path: str) -> types.ModuleType:
    if name == "pettingzoo":
        try:
            return importlib.import_module(name)
        except ImportError:
            raise EnvironmentSetupError(
                f"--env {env_path}: PettingZoo is not installed: {_INSTALL_HINT}.") from None
    return import_env_module(env_path, name)


def resolve_factory(env_path: str) -> Callable[..., Any]:
    """The factory named by ``pettingzoo:module:attr``. ``attr`` may be a callable, or a module
    (or submodule) with ``parallel_env`` (preferred) or ``env``, as PettingZoo's families have;
    without ``:attr`` the module itself is that module."""
    _import("pettingzoo", env_path)
    module_name, _, attr = env_path[len(PREFIX):].partition(":")
    if not module_name:
        raise EnvironmentSetupError(
            f"--env {env_path}: expected pettingzoo:<module>:<factory>, e.g. "
            "pettingzoo:mpe2:simple_spread_v3.")
    module = _import(module_name, env_path)
    target: Any = module
    if attr:
        try:  # PettingZoo's families import an environment's module on attribute access
            target = getattr(module, attr, None)
        except ImportError as exc:
            family = module_name.split(".")[1] if module_name.startswith("pettingzoo.") else None
            hint = f' (pip install "pettingzoo[{family}]")' if family else ""
            raise EnvironmentSetupError(
                f"--env {env_path}: the environment needs a package that is not installed: "
                f"{exc}{hint}.") from None
        if type(target).__name__ == "DeprecatedModule":  # an old version: PettingZoo says which
            try:
                target.env()  # raises PettingZoo's DeprecatedEnv, which names the new version
            except Exception as exc:
                raise EnvironmentSetupError(f"--env {env_path}: {exc}") from None
        if target is None:
            sub = f"{module_name}.{attr}"
            if not hasattr(module, "__path__") or importlib.util.find_spec(sub) is None:
                raise EnvironmentSetupError(
                    f"--env {env_path}: '{attr}' is neither an attribute of module "
                    f"'{module_name}' nor a submodule of it.")
            target = _import(sub, env_path)
    if isinstance(target, types.ModuleType):
        factory = getattr(target, "parallel_env", None) or getattr(target, "env", None)
        if not callable(factory):
            raise EnvironmentSetupError(
                f"--env {env_path}: module '{target.__name__}' has neither a parallel_env nor "
                "an env factory.")
        return factory
    if not callable(target):
        raise EnvironmentSetupError(
            f"--env {env_path}: '{attr}' in '{module_name}' is not callable (got "
            f"{type(target).__name__}).")
    return target


def _make_parallel(factory: Callable[..., Any], kwargs: Mapping[str, Any], env_path: str) -> Any:
    from pettingzoo import AECEnv, ParallelEnv
    from pettingzoo.utils.conversions import aec_to_parallel

    try:
        made = factory(**kwargs)
    except EnvironmentSetupError:
        raise
    except Exception as exc:
        raise EnvironmentSetupError(f"--env {env_path}: making the environment failed: "
                                    f"{type(exc).__name__}: {exc}") from exc
    if isinstance(made, ParallelEnv):
        return made
    if not isinstance(made, AECEnv):
        raise EnvironmentSetupError(
            f"--env {env_path}: the factory returned {type(made).__name__}, not a PettingZoo "
            "ParallelEnv or AECEnv.")
    if not (getattr(made, "metadata", None) or {}).get("is_parallelizable", False):
        raise EnvironmentSetupError(
            f"--env {env_path}: this AEC environment is not marked parallelizable "
            "(metadata['is_parallelizable']); palaestra acts for all agents at once and converts "
            "AEC environments with PettingZoo's aec_to_parallel, which needs that. Turn-by-turn "
            "games are not supported.")
    return aec_to_parallel(made)
