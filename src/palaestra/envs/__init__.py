"""Environments: the step-result types and the ways to make one from an ``--env`` string.

``--env`` (or ``env_settings.env_path``) accepts:
- a built-in environment name (``3DBall``, ``Basic``, ... see `palaestra.envs.builtin`),
- a Gymnasium id (``CartPole-v1``, ``Pendulum-v1``, ``mymodule:MyEnv-v0`` for ids that Gymnasium
  imports from a module),
- ``module.path:factory`` for a user's own environment: a callable returning a
  ``gymnasium.Env`` (palaestra makes ``num_envs`` copies) or a palaestra ``BaseEnv``,
- ``pettingzoo:<module>:<factory>`` for a PettingZoo environment
  (``pettingzoo:mpe2:simple_spread_v3``), one behavior per agent team (see
  `palaestra.envs.pettingzoo_adapter`).
``env_args`` (a mapping, or ``key=value`` strings) are passed to ``gymnasium.make`` / the factory
as keyword arguments.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import yaml

from palaestra.envs.base import (ActionSpec, ActionTuple, BaseEnv, BehaviorSpec, DecisionSteps,
                                 ObservationKind, ObservationSpec, TerminalSteps)
from palaestra.exception import EnvironmentSetupError

__all__ = ["ActionSpec", "ActionTuple", "BaseEnv", "BehaviorSpec", "DecisionSteps",
           "ObservationKind", "ObservationSpec", "TerminalSteps", "make_environment",
           "parse_env_args"]


def parse_env_args(env_args: Union[None, Mapping[str, Any], List[str]]) -> Dict[str, Any]:
    """``{'k': v}`` or ``['k=v', ...]`` (values read as YAML scalars) -> keyword arguments."""
    if env_args is None:
        return {}
    if isinstance(env_args, Mapping):
        return dict(env_args)
    if isinstance(env_args, str):
        env_args = env_args.split()
    kwargs: Dict[str, Any] = {}
    for item in env_args:
        key, sep, value = str(item).lstrip("-").partition("=")
        if not sep:
            raise EnvironmentSetupError(
                f"env_args entry {item!r} is not of the form key=value (or give env_args as a "
                "mapping in the YAML file).")
        kwargs[key.replace("-", "_")] = _scalar(value, key)
    return kwargs


def _scalar(text: str, key: str = "") -> Any:
    """A YAML scalar, with `1e-3` read as a number (YAML 1.1 would keep it a string). Read with
    the config file's loader, so that a value from the command line has the same limits (no
    alias explosion, no deep nesting), and a value that is not YAML is named."""
    from palaestra.yaml_reader import StrictYAMLLoader

    try:
        value = yaml.load(text, Loader=StrictYAMLLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise EnvironmentSetupError(f"env_args entry {key}={shown}: the value is not a YAML "
                                    f"value: {problem}.") from None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def make_environment(env_path: Optional[str], env_args: Any = None, num_envs: int = 1,
                     seed: Optional[int] = None) -> BaseEnv:
    """Resolve an ``--env`` string to a stepped, batched environment (not yet reset)."""
    if not env_path:
        raise EnvironmentSetupError(
            "No environment given: pass --env <gymnasium id | module:factory> or set "
            "env_settings.env_path in the config.")
    kwargs = parse_env_args(env_args)
    if env_path.startswith("pettingzoo:"):
        from palaestra.envs.pettingzoo_adapter import make_pettingzoo_env

        return make_pettingzoo_env(env_path, kwargs, num_envs, seed)
    from palaestra.envs.builtin import BUILTIN_ENVS, make_builtin
    from palaestra.envs.gym_adapter import GymnasiumEnv

    if env_path in BUILTIN_ENVS:
        try:
            return make_builtin(env_path, num_envs, seed, **kwargs)
        except TypeError as exc:  # unknown env_args
            raise EnvironmentSetupError(f"--env {env_path}: {exc}") from None

    factory = _resolve(env_path, kwargs)
    try:
        made = factory()
    except EnvironmentSetupError:
        raise
    except Exception as exc:
        raise EnvironmentSetupError(f"--env {env_path}: making the environment failed: "
                                    f"{type(exc).__name__}: {exc}") from exc
    if isinstance(made, BaseEnv):
        return made
    first = [made]

    def make_copy() -> Any:
        if first:
            return first.pop()
        try:
            return factory()
        except Exception as exc:
            raise EnvironmentSetupError(f"--env {env_path}: making a copy failed: "
                                        f"{type(exc).__name__}: {exc}") from exc

    return GymnasiumEnv(make_copy, num_envs, _behavior_name(env_path), seed)


def _behavior_name(env_path: str) -> str:
    """The behavior name a config refers to: the Gymnasium id, or the factory's name."""
    return env_path.rsplit(":", 1)[-1] if ":" in env_path else env_path


def _resolve(env_path: str, kwargs: Dict[str, Any]) -> Callable[[], Any]:
    import gymnasium as gym

    if ":" in env_path:
        module_name, _, attr = env_path.partition(":")
        if not module_name or not attr:
            raise EnvironmentSetupError(
                f"--env {env_path}: expected module.path:factory (both parts non-empty).")
        from palaestra.envs.gym_adapter import import_env_module

        module = import_env_module(env_path, module_name)
        if attr in gym.registry:  # `module:EnvId-v0`: the module registers a Gymnasium id
            return lambda: gym.make(attr, disable_env_checker=True, **kwargs)
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise EnvironmentSetupError(
                f"--env {env_path}: '{attr}' is neither a callable in {module_name} nor a "
                "Gymnasium id it registers.")
        return lambda: factory(**kwargs)
    if env_path not in gym.registry:
        close = difflib.get_close_matches(env_path, list(gym.registry), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise EnvironmentSetupError(
            f"--env {env_path}: unknown environment. It is not a Gymnasium id registered here"
            f" (for your own environment use module.path:factory).{hint}")
    return lambda: gym.make(env_path, disable_env_checker=True, **kwargs)
