"""Built-in, numpy-vectorised example environments (ML-Agents' classic scenes).

`BUILTIN_ENVS` maps the name used with ``--env`` (and as the behavior name, as in ML-Agents) to
a core class; ``make_builtin(name, num_envs, seed, **env_args)`` builds the palaestra
environment with ``num_envs`` copies of the scene's agents. Importing this module also registers
each one with Gymnasium as ``palaestra/<name>-v0`` (one agent), for other libraries.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import gymnasium as gym

from palaestra.envs.vector_core import CoreEnv, CoreGymEnv, VectorCore

# name -> (core class, agents per environment copy)
BUILTIN_ENVS: Dict[str, Callable[..., VectorCore]] = {}
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


def make_builtin(name: str, num_envs: int = 1, seed: Optional[int] = None,
                 **env_args: Any) -> CoreEnv:
    core = BUILTIN_ENVS[name](num_agents=num_envs * AGENTS_PER_COPY[name], **env_args)
    return CoreEnv(core, seed)


def make_gym_env(name: str, **env_args: Any) -> CoreGymEnv:
    return CoreGymEnv(BUILTIN_ENVS[name](num_agents=1, **env_args))
from palaestra.envs.builtin import basic, gridworld  # noqa: E402,F401
from palaestra.envs.builtin import ball3d  # noqa: E402,F401
