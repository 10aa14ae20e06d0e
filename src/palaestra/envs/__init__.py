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
as keyword arguments. ``render_mode`` (`RENDER_MODES`) asks for frames (`BaseEnv.render`), as
`palaestra play` does to show or record a policy.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import yaml

from palaestra.envs.base import (ActionSpec, ActionTuple, BaseEnv, BehaviorSpec, DecisionSteps,
                                 ObservationKind, ObservationSpec, TerminalSteps)
from palaestra.exception import EnvironmentSetupError

__all__ = ["ActionSpec", "ActionTuple", "BaseEnv", "BehaviorSpec", "DecisionSteps",
           "ObservationKind", "ObservationSpec", "RENDER_MODES", "TerminalSteps",
           "make_environment", "parse_env_args"]

#: what `make_environment(render_mode=...)` accepts: frames as arrays, or the environment's window
RENDER_MODES = ("rgb_array", "human")


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
                     seed: Optional[int] = None, render_mode: Optional[str] = None) -> BaseEnv:
    """Resolve an ``--env`` string to a stepped, batched environment (not yet reset).

    `render_mode` (None: the environment's own default) is given to the first Gymnasium copy
    only, the one `render()` shows (with "human" every copy would open a window), and to a
    factory only if it takes a ``render_mode`` argument. Built-ins always draw and have no
    window; PettingZoo environments draw nothing here."""
    if not env_path:
        raise EnvironmentSetupError(
            "No environment given: pass --env <gymnasium id | module:factory> or set "
            "env_settings.env_path in the config.")
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise EnvironmentSetupError(f"--env {env_path}: render_mode {render_mode!r} is not one "
                                    f"of {', '.join(RENDER_MODES)}.")
    kwargs = parse_env_args(env_args)
    if env_path.startswith("pettingzoo:"):
        from palaestra.envs.pettingzoo_adapter import make_pettingzoo_env

        _no_window(env_path, render_mode, "PettingZoo environments are not rendered here")
        return make_pettingzoo_env(env_path, kwargs, num_envs, seed)
    from palaestra.envs.builtin import BUILTIN_ENVS, make_builtin
    from palaestra.envs.gym_adapter import GymnasiumEnv

    if env_path in BUILTIN_ENVS:
        _no_window(env_path, render_mode, "built-in environments have no window of their own "
                   "(they draw frames: use --record out.gif)")
        try:
            return make_builtin(env_path, num_envs, seed, **kwargs)
        except TypeError as exc:  # unknown env_args
            raise EnvironmentSetupError(f"--env {env_path}: {exc}") from None

    factory, copy_factory = _resolve(env_path, kwargs, render_mode)
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
            return copy_factory()
        except Exception as exc:
            raise EnvironmentSetupError(f"--env {env_path}: making a copy failed: "
                                        f"{type(exc).__name__}: {exc}") from exc

    return GymnasiumEnv(make_copy, num_envs, _behavior_name(env_path), seed)


def _no_window(env_path: str, render_mode: Optional[str], why: str) -> None:
    if render_mode == "human":
        raise EnvironmentSetupError(f"--env {env_path}: render_mode 'human' is not available: "
                                    f"{why}.")


def _takes_render_mode(factory: Callable[..., Any]) -> bool:
    """Whether `factory` accepts ``render_mode=`` (by name or through ``**kwargs``); False when
    its signature cannot be read (some builtins and C callables), so it is called as before."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind == p.VAR_KEYWORD or (p.name == "render_mode" and
                                           p.kind != p.POSITIONAL_ONLY) for p in params)


def _behavior_name(env_path: str) -> str:
    """The behavior name a config refers to: the Gymnasium id, or the factory's name."""
    return env_path.rsplit(":", 1)[-1] if ":" in env_path else env_path


def _resolve(env_path: str, kwargs: Dict[str, Any], render_mode: Optional[str] = None
             ) -> Tuple[Callable[[], Any], Callable[[], Any]]:
    """(make the first copy, make the others): they differ only by `render_mode`."""
    import gymnasium as gym

    render = {} if render_mode is None else {"render_mode": render_mode}
    if ":" in env_path:
        module_name, _, attr = env_path.partition(":")
        if not module_name or not attr:
            raise EnvironmentSetupError(
                f"--env {env_path}: expected module.path:factory (both parts non-empty).")
        from palaestra.envs.gym_adapter import import_env_module

        module = import_env_module(env_path, module_name)
        if attr in gym.registry:  # `module:EnvId-v0`: the module registers a Gymnasium id
            return _gym_makers(attr, kwargs, render)
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise EnvironmentSetupError(
                f"--env {env_path}: '{attr}' is neither a callable in {module_name} nor a "
                "Gymnasium id it registers.")
        first = {**kwargs, **render} if _takes_render_mode(factory) else kwargs
        return (lambda: factory(**first)), (lambda: factory(**kwargs))
    if env_path not in gym.registry:
        close = difflib.get_close_matches(env_path, list(gym.registry), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise EnvironmentSetupError(
            f"--env {env_path}: unknown environment. It is not a Gymnasium id registered here"
            f" (for your own environment use module.path:factory).{hint}")
    return _gym_makers(env_path, kwargs, render)


def _gym_makers(env_id: str, kwargs: Dict[str, Any], render: Dict[str, Any]
                ) -> Tuple[Callable[[], Any], Callable[[], Any]]:
    import gymnasium as gym

    def make(**extra: Any) -> Any:
        return gym.make(env_id, disable_env_checker=True, **{**kwargs, **extra})

    return (lambda: make(**render)), make
