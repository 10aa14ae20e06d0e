"""Built-in, numpy-vectorised example environments (ML-Agents' classic scenes).

`BUILTIN_ENVS` maps the name used with ``--env`` (and as the behavior name, as in ML-Agents) to
the class that simulates it; ``make_builtin(name, num_envs, seed, **env_args)`` builds the
palaestra environment with ``num_envs`` copies of the scene. Two kinds of built-in:

- single-agent scenes (`register_builtin`): a `VectorCore` of independent agents, wrapped in a
  `CoreEnv`; ``num_envs`` copies of ``AGENTS_PER_COPY[name]`` agents each. Importing this module
  also registers each one with Gymnasium as ``palaestra/<name>-v0`` (one agent).
- multi-agent scenes (`register_multi_agent_builtin`): a `BaseEnv` subclass constructed
  directly as ``cls(num_envs=..., seed=..., **env_args)``, where ``num_envs`` is its number of
  arenas. They have no Gymnasium id (Gymnasium is single-agent) and no `AGENTS_PER_COPY` entry
  (the number of agents per arena may be an env_arg).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import gymnasium as gym

from palaestra.envs.base import BaseEnv
from palaestra.envs.vector_core import CoreEnv, CoreGymEnv

# name -> VectorCore subclass (single-agent scene) or BaseEnv subclass (multi-agent scene)
BUILTIN_ENVS: Dict[str, type] = {}
# name -> agents per environment copy, for the single-agent (VectorCore) scenes only
AGENTS_PER_COPY: Dict[str, int] = {}


def register_builtin(name: str, agents_per_copy: int) -> Callable[[type], type]:
    """Class decorator: make a core available as ``--env <name>`` and ``palaestra/<name>-v0``."""

    def wrap(cls: type) -> type:
        BUILTIN_ENVS[name] = cls
        AGENTS_PER_COPY[name] = agents_per_copy
        gym_id = f"palaestra/{name}-v0"
        if gym_id not in gym.registry:
            gym.register(gym_id, entry_point=f"{__name__}:make_gym_env",
                         kwargs={"name": name}, disable_env_checker=True)
        return cls

    return wrap


def register_multi_agent_builtin(name: str) -> Callable[[type], type]:
    """Class decorator: make a multi-agent `BaseEnv` class available as ``--env <name>``."""

    def wrap(cls: type) -> type:
        if not issubclass(cls, BaseEnv):
            raise TypeError(f"{cls.__name__} must be a BaseEnv subclass")
        BUILTIN_ENVS[name] = cls
        return cls

    return wrap


def is_multi_agent_builtin(name: str) -> bool:
    return name in BUILTIN_ENVS and name not in AGENTS_PER_COPY


def make_builtin(name: str, num_envs: int = 1, seed: Optional[int] = None,
                 **env_args: Any) -> BaseEnv:
    if is_multi_agent_builtin(name):
        env: BaseEnv = BUILTIN_ENVS[name](num_envs=num_envs, seed=seed, **env_args)
        return env
    core = BUILTIN_ENVS[name](num_agents=num_envs * AGENTS_PER_COPY[name], **env_args)
    return CoreEnv(core, seed)


def make_gym_env(name: str, render_mode: Optional[str] = None, **env_args: Any) -> CoreGymEnv:
    """The ``palaestra/<name>-v0`` entry point: one agent; ``render_mode`` None or "rgb_array"."""
    return CoreGymEnv(BUILTIN_ENVS[name](num_agents=1, **env_args), render_mode)


# Gymnasium reads an entry point's `metadata`: with it, gymnasium.make(id, render_mode="human")
# wraps the rgb_array frames in its HumanRendering window instead of failing here.
setattr(make_gym_env, "metadata", CoreGymEnv.metadata)

from palaestra.envs.builtin import basic, gridworld  # noqa: E402,F401
from palaestra.envs.builtin import ball3d  # noqa: E402,F401
from palaestra.envs.builtin import dungeon_escape  # noqa: E402,F401
from palaestra.envs.builtin import pyramids  # noqa: E402,F401
