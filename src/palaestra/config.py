"""Reading a YAML file into `RunOptions`, strictly.

The loader is where the file name and the full key path are known, so every error raised while
structuring is re-raised here as ``TrainerConfigError("<file>: <key.path>: ...")``. Each
behavior's ``hyperparameters`` is parsed with the settings class that its ``trainer_type``
registered, which is why this module joins `settings` and `registry`.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import enum
import importlib.util
import logging
import math
import operator
import os
import reprlib
import sys
import types
import typing
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import yaml

from palaestra.atomic import atomic_write_text

from palaestra.exception import TrainerConfigError
from palaestra.registry import TrainerRegistry
from palaestra.settings import (EngineSettings, EnvironmentSettings, NetworkSettings,
                                RewardSignalType, RunOptions, TrainerSettings)
from palaestra.yaml_reader import read_yaml  # noqa: F401  (the loader's entry point, re-exported)

logger = logging.getLogger(__name__)

# Unity-only env_settings keys: accepted for compatibility, warned about once if set.
_UNITY_ONLY_ENV_KEYS = ("base_port", "num_areas")
# Keys for Unity builds and environment worker processes (num_workers >= 1): the restart quota
# and how long a new instance or worker may take to start.
_RESTART_ENV_KEYS = ("timeout_wait", "max_lifetime_restarts", "restarts_rate_limit_n",
                     "restarts_rate_limit_period_s")


def targets_unity(env_path: Optional[str]) -> bool:
    """Whether the run trains a Unity build or the Editor (no --env), where the Unity-only
    settings mean what they say."""
    if not env_path:
        return True
    from palaestra.envs.builtin import BUILTIN_ENVS
    from palaestra.unity.launcher import is_unity_build

    return env_path not in BUILTIN_ENVS and is_unity_build(env_path)


def _ray_installed() -> bool:
    """Whether `import ray` would work, found without importing it (half a second)."""
    if "ray" in sys.modules:
        return sys.modules["ray"] is not None
    return importlib.util.find_spec("ray") is not None


class _Structurer:
    """Turns plain YAML values into typed settings, naming the key path on any error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, message: str) -> TrainerConfigError:
        where = f"{self.source}: {path}" if path else self.source
        return TrainerConfigError(f"{where}: {message}")

    def structure(self, value: Any, tp: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        if tp is Any:
            return value
        if origin in (typing.Union, types.UnionType):
            return self._union(value, typing.get_args(tp), path)
        if value is None:
            raise self.error(path, f"a value is required here (got null): expected "
                                   f"{_describe(tp)}.")
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._enum(value, tp, path)
        if dataclasses.is_dataclass(tp):
            return self.dataclass(value, tp, path)
        if origin in (dict, Dict, Mapping):
            key_tp, val_tp = typing.get_args(tp) or (Any, Any)
            if not isinstance(value, Mapping):
                raise self.error(path, f"expected a mapping, got {_show(value)}")
            return {self.structure(k, key_tp, _join(path, k)): self.structure(v, val_tp,
                                                                              _join(path, k))
                    for k, v in value.items()}
        if origin in (list, List):
            (item_tp,) = typing.get_args(tp) or (Any,)
            if not isinstance(value, list):
                raise self.error(path, f"expected a list, got {_show(value)}")
            return [self.structure(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        if tp in (int, float, bool, str):
            return self._scalar(value, tp, path)
        return value

    def _union(self, value: Any, args: Tuple[Any, ...], path: str) -> Any:
        if value is None:
            if type(None) in args:
                return None
            raise self.error(path, "a value is required here (got null)")
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return self.structure(value, options[0], path)
        for option in options:
            try:
                return self.structure(value, option, path)
            except TrainerConfigError:
                pass
        forms = " or ".join(_describe(o) for o in options)
        raise self.error(path, f"expected {forms}{' or null' if type(None) in args else ''}, "
                               f"got {_show(value)}")

    def _enum(self, value: Any, tp: type, path: str) -> Any:
        if isinstance(value, tp):
            return value
        allowed = [m.value for m in tp]  # type: ignore[attr-defined]
        if isinstance(value, str) and value.lower() in allowed:
            return tp(value.lower())
        if value is False and "off" in allowed:  # YAML 1.1 reads a bare `off` as false
            return tp("off")
        if isinstance(value, str) and value in _NOT_YET:
            raise self.error(path, f"{_NOT_YET[value]} ('{value}') is an ML-Agents feature "
                                   f"palaestra does not support yet. Allowed values: "
                                   f"{', '.join(map(str, allowed))}.")
        raise self.error(path, f"invalid value {_show(value)}. Allowed values: "
                               f"{', '.join(map(str, allowed))}.")

    def _scalar(self, value: Any, tp: type, path: str) -> Any:
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise self.error(path, f"expected true or false, got {_show(value)}")
        if tp is str:
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                return str(value)
            raise self.error(path, f"expected a string, got {_show(value)}")
        # int / float: YAML 1.1 reads `3e-4` (no dot) as a string, so numeric strings count.
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise self.error(path, f"expected a number, got {_show(value)}")
        # An int is exact at any size (its range is checked with the field's bounds); a float
        # conversion of a huge one would raise OverflowError, so floats are looked at alone.
        if isinstance(number, float) and not math.isfinite(number):
            raise self.error(path, f"expected a finite number, got {_show(value)}")
        if tp is int:
            if isinstance(number, float) and not number.is_integer():
                raise self.error(path, f"expected a whole number, got {_show(value)}")
            return int(number)
        try:
            return float(number)
        except OverflowError:
            raise self.error(path, f"value {_show(value)} is out of range: too large for a "
                                   f"number (at most about 1.8e308)") from None

    def dataclass(self, value: Any, cls: type, path: str) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected a mapping of {cls.__name__} fields, got "
                                   f"{_show(value)}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, raw in value.items():
            key_path = _join(path, key)
            if key not in fields:
                if key in _NOT_YET and raw is None:  # `self_play: null`: the feature is off
                    continue
                raise self.error(key_path, _unknown_key_message(key, raw, fields))
            kwargs[key] = self.structure(raw, hints[key], key_path)
            _check_bounds(self, fields[key], kwargs[key], key_path)
        try:
            return cls(**kwargs)
        except TrainerConfigError as exc:
            key = _join(path, exc.key) if exc.key else path
            raise self.error(key, f"{exc.message} (got {_show(exc.value)})" if exc.key
                             else str(exc))
        except (TypeError, ValueError) as exc:
            raise self.error(path, str(exc))


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# ML-Agents settings that an ML-Agents config may hold but palaestra does not implement yet:
# named as such, so the user is not told they made a typo.
_NOT_YET = {"self_play": "self-play"}


def _unknown_key_message(key: str, value: Any, fields: Mapping[str, Any]) -> str:
    if key in _NOT_YET:
        return (f"'{key}' is an ML-Agents setting, but {_NOT_YET[key]} is not supported by "
                f"palaestra yet; remove it. Allowed keys: {', '.join(sorted(fields))}.")
    close = difflib.get_close_matches(str(key), list(fields), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return (f"unknown key '{key}' (value {_show(value)}).{hint} Allowed keys: "
            f"{', '.join(sorted(fields))}.")


_BOUNDS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="),
           "lt": (operator.lt, "<")}


# Whole numbers end up in numpy and torch as 64-bit integers: a setting without a bound of its
# own must still fit one (a 400-digit `base_port` would otherwise fail far from the config).
_INT64 = (-2 ** 63, 2 ** 63 - 1)


def _check_bounds(st: _Structurer, f: dataclasses.Field, value: Any, path: str) -> None:
    """The field's `ge`/`gt`/`le`/`lt` metadata; the message lists every bound of the field,
    so that a value refused by one side also shows the other."""
    if value is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    bounds = {name: f.metadata[name] for name in _BOUNDS if f.metadata.get(name) is not None}
    if not all(_BOUNDS[name][0](value, bound) for name, bound in bounds.items()):
        rules = " and ".join(f"{_BOUNDS[name][1]} {bound}" for name, bound in
                             sorted(bounds.items(), key=lambda item: item[0][0] != "g"))
        raise st.error(path, f"value {_show(value)} is out of range: must be {rules}")
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        raise st.error(path, f"value {_show(value)} is out of range: must be >= {_INT64[0]} and "
                             f"<= {_INT64[1]} (a 64-bit integer)")


class _ShortRepr(reprlib.Repr):
    """reprlib's shortening, and a digit count instead of the digits of a huge integer (whose
    str() Python refuses beyond 4300 digits)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 80
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 8
        self.maxlevel = 3

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() <= 100:
            return repr(x)
        return f"{'-' if x < 0 else ''}<a {int(x.bit_length() * math.log10(2)) + 1}-digit number>"


def _show(value: Any) -> str:
    """A value as the user wrote it, short enough for a one-line message."""
    if isinstance(value, bool):
        return repr(value)
    if value is None:
        return "null"
    return _ShortRepr().repr(value)


def _describe(tp: Any) -> str:
    """What a value of type `tp` looks like in YAML, for messages."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    if origin in (dict, Dict, Mapping) or dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (list, List):
        args = typing.get_args(tp)
        return f"a list of {_describe(args[0])[2:]}s" if args and args[0] is not Any else "a list"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)  # type: ignore[attr-defined]
    return {int: "a whole number", float: "a number", bool: "true or false",
            str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def deep_update(base: Dict[str, Any], update: Mapping[str, Any]) -> Dict[str, Any]:
    """Nested dict.update, as ML-Agents merges default_settings under each behavior."""
    for key, val in update.items():
        if isinstance(base.get(key), dict) and isinstance(val, Mapping):
            deep_update(base[key], val)
        else:
            base[key] = copy.deepcopy(val)
    return base


_DEVICE_FORMS = "cpu, cuda, cuda:N (N < the number of CUDA devices), mps"


def _check_device(st: _Structurer, device: Optional[str], path: str) -> None:
    """Refuse at load time a device this machine cannot train on, naming what it has: torch
    itself would fail only when the first network is built, with a traceback. torch is imported
    only when a device is set (startup time)."""
    if device is None:
        return
    import torch

    def refuse(why: str) -> TrainerConfigError:
        return st.error(path, f"{why} Allowed: {_DEVICE_FORMS}.")

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise refuse(f"{device!r} is not a torch device.") from None
    if parsed.type == "cpu":
        if parsed.index not in (None, 0):
            raise refuse(f"{device!r}: the CPU has no numbered devices; use cpu.")
    elif parsed.type == "cuda":
        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
            raise refuse(f"{device!r}: this torch build ({torch.__version__}) has no CUDA "
                         "support; install a CUDA build of torch, or train on cpu.")
        if not torch.cuda.is_available():
            raise refuse(f"{device!r}: no CUDA device is available here "
                         "(torch.cuda.is_available() is false: no GPU, no driver, or "
                         "CUDA_VISIBLE_DEVICES hides them).")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise refuse(f"{device!r}: this machine has {count} CUDA device(s), cuda:0 to "
                         f"cuda:{count - 1}.")
    elif parsed.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise refuse(f"{device!r}: MPS (Apple silicon GPUs) is not available here.")
        if parsed.index not in (None, 0):
            raise refuse(f"{device!r}: there is one MPS device, mps.")
    else:
        raise refuse(f"{device!r}: palaestra trains on cpu, cuda or mps devices, not "
                     f"{parsed.type}.")


class ConfigLoader:
    """Builds RunOptions from a YAML mapping, CLI overrides and a trainer registry."""

    def __init__(self, registry: TrainerRegistry, source: str = "<config>") -> None:
        self.registry = registry
        self.st = _Structurer(source)

    def load(self, raw: Mapping[str, Any], overrides: Optional[Mapping[str, Any]] = None
             ) -> RunOptions:
        raw = copy.deepcopy(dict(raw))
        for section, values in (overrides or {}).items():
            if isinstance(values, Mapping):
                if raw.get(section) is None:
                    raw[section] = {}
                if not isinstance(raw[section], Mapping):
                    raise self.st.error(section, f"expected a mapping, got {_show(raw[section])}")
                raw[section] = _merged(raw[section], values)
            else:
                raw[section] = values
        top = {f.name for f in dataclasses.fields(RunOptions)}
        for key, val in raw.items():
            if key not in top:
                hint = ""
                if isinstance(val, Mapping) and "trainer_type" in val:
                    hint = " It looks like a behavior: put it under 'behaviors:'."
                raise self.st.error(key, _unknown_key_message(key, val, dict.fromkeys(top)) + hint)
        default_raw = raw.pop("default_settings", None)
        behaviors_raw = raw.pop("behaviors", None) or {}
        if not isinstance(behaviors_raw, Mapping):
            raise self.st.error("behaviors", f"expected a mapping of behavior names, got "
                                             f"{_show(behaviors_raw)}")
        options: RunOptions = self.st.dataclass(raw, RunOptions, "")
        if default_raw is not None:
            options.default_settings = self.trainer_settings(default_raw, {}, "default_settings")
        for name, value in behaviors_raw.items():
            options.behaviors[str(name)] = self.trainer_settings(
                {} if value is None else value, default_raw or {}, f"behaviors.{name}")
        device_from_flag = "device" in ((overrides or {}).get("torch_settings") or {})
        _check_device(self.st, options.torch_settings.device,
                      "torch_settings.device" + (" (--torch-device)" if device_from_flag else ""))
        if not targets_unity(options.env_settings.env_path):
            self._warn_unity_only(options)
        elif options.env_settings.num_workers:
            raise self.st.error(
                "env_settings.num_workers",
                f"{options.env_settings.num_workers}: Unity builds and the Editor already run "
                "in processes of their own (num_envs instances); worker processes are for "
                "Gymnasium, PettingZoo, built-in and module:factory environments. Remove it "
                "(or set 0).")
        if options.env_settings.ray is not None:
            self._check_ray(options)
        return options

    def _check_ray(self, options: RunOptions) -> None:
        """`env_settings.ray` needs Ray installed, and an environment that its actors make
        (not a Unity build or the Editor, which run in processes of their own)."""
        if targets_unity(options.env_settings.env_path):
            raise self.st.error(
                "env_settings.ray",
                "Unity builds and the Editor run in processes of their own (num_envs "
                "instances); Ray actors are for Gymnasium, PettingZoo, built-in and "
                "module:factory environments. Remove the ray block.")
        if not _ray_installed():
            raise self.st.error(
                "env_settings.ray",
                'Ray is not installed here: pip install "palaestra[ray]" (or pip install '
                "ray), on every machine of the cluster; or remove the ray block.")

    def trainer_settings(self, value: Any, defaults: Mapping[str, Any], path: str
                         ) -> TrainerSettings:
        if not isinstance(value, Mapping):
            raise self.st.error(path, f"expected a mapping of behavior settings, got "
                                      f"{_show(value)}")
        merged = deep_update(copy.deepcopy(dict(defaults)), value)
        if "framework" in merged:  # ML-Agents too warns and drops it (torch is the only one)
            logger.warning("%s: %s.framework: deprecated ML-Agents option, ignored (palaestra "
                           "trains with PyTorch).", self.st.source, path)
            merged.pop("framework")
        trainer_type = merged.get("trainer_type", "ppo")
        if not isinstance(trainer_type, str):
            raise self.st.error(f"{path}.trainer_type", f"expected the name of a trainer type "
                                                        f"(a string), got {_show(trainer_type)}")
        try:
            info = self.registry.get(trainer_type)
        except TrainerConfigError as exc:  # the spec's sentence first, then where it was found
            raise TrainerConfigError(f"{exc} (in {self.st.source}: {path}.trainer_type)") from None
        # A trainer type change under default_settings must not keep the other type's keys.
        default_type = defaults.get("trainer_type", TrainerSettings.trainer_type)
        if "hyperparameters" in value and default_type != trainer_type:
            merged["hyperparameters"] = copy.deepcopy(value["hyperparameters"])
        hyper_raw = merged.pop("hyperparameters", None)
        hyper = self.st.dataclass({} if hyper_raw is None else hyper_raw, info.settings_cls,
                                  f"{path}.hyperparameters")
        if "max_steps" in merged:  # legacy configs give max_steps as a float (5.0e5)
            merged["max_steps"] = self.st.structure(merged["max_steps"], int, f"{path}.max_steps")
        merged["hyperparameters"] = hyper
        if merged.get("reward_signals") is not None:
            merged["reward_signals"] = self.reward_signals(merged["reward_signals"],
                                                           f"{path}.reward_signals")
        return self.st.dataclass(merged, TrainerSettings, path)

    def reward_signals(self, value: Any, path: str) -> Dict[RewardSignalType, Any]:
        """Each `reward_signals:` entry read into its own settings class (curiosity's,
        GAIL's, a plugin's), the name checked against the installed signals. ML-Agents'
        deprecated `encoding_size` sizes the signal's network when network_settings is not
        given, as there."""
        if not isinstance(value, Mapping):
            raise self.st.error(path, f"expected a mapping of reward signal names, got "
                                      f"{_show(value)}")
        from palaestra.reward_signals.registry import RewardSignalRegistry

        signals = RewardSignalRegistry()
        if any(str(name) not in signals.settings for name in value):
            signals = RewardSignalRegistry.installed()
        result: Dict[RewardSignalType, Any] = {}
        for name, raw in value.items():
            key_path = _join(path, name)
            try:
                settings_cls = signals.settings_for(str(name))
            except TrainerConfigError as exc:
                raise self.st.error(key_path, str(exc)) from None
            raw = {} if raw is None else raw
            settings = self.st.dataclass(raw, settings_cls, key_path)
            size = getattr(settings, "encoding_size", None)
            if size is not None:
                logger.warning("%s: %s.encoding_size is deprecated (as in ML-Agents): use "
                               "network_settings.hidden_units", self.st.source, key_path)
                if "network_settings" not in raw:
                    settings.network_settings.hidden_units = size
            result[RewardSignalType(str(name))] = settings
        return result

    def _warn_unity_only(self, options: RunOptions) -> None:
        """One warning for Unity-only values that differ from their defaults (a resolved
        configuration.yaml spells out the defaults, which must not warn on --resume)."""
        engine, env = EngineSettings(), EnvironmentSettings()
        ignored = [f"engine_settings.{f.name}" for f in dataclasses.fields(engine)
                   if getattr(options.engine_settings, f.name) != getattr(engine, f.name)]
        ignored += [f"env_settings.{k}" for k in _UNITY_ONLY_ENV_KEYS
                    if getattr(options.env_settings, k) != getattr(env, k)]
        restarts = [f"env_settings.{k}" for k in _RESTART_ENV_KEYS
                    if getattr(options.env_settings, k) != getattr(env, k)]
        restarting = options.env_settings.num_workers or options.env_settings.ray is not None
        if restarts and not restarting:
            ignored += restarts
        if ignored:
            logger.warning("%s: ignoring Unity-only settings that mean nothing here: %s%s",
                           self.st.source, ", ".join(ignored),
                           " (the restart settings apply to Unity builds, to environment "
                           "worker processes, env_settings.num_workers, and to Ray actors, "
                           "env_settings.ray)" if restarts and not restarting else "")
        if options.environment_parameters:
            logger.warning(
                "%s: environment_parameters (%s) are not applied: palaestra's environments take "
                "their arguments from env_settings.env_args (curricula and samplers of "
                "environment parameters are not supported yet).", self.st.source,
                ", ".join(map(str, options.environment_parameters)))


def network_settings_from(raw: Any, source: str) -> NetworkSettings:
    """NetworkSettings from a plain mapping (a checkpoint's copy), checked as a config is."""
    result: NetworkSettings = _Structurer(source).dataclass(raw, NetworkSettings,
                                                           "network_settings")
    return result


def _merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> Dict[str, Any]:
    """`base` with `update`'s keys, mappings merged key by key (an override of
    `behaviors.3DBall.summary_freq` keeps the behavior's other settings)."""
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        out[key] = _merged(old, value) if isinstance(old, Mapping) and \
            isinstance(value, Mapping) else value
    return out


def load_run_options(path: Union[str, Mapping[str, Any], None], registry: TrainerRegistry,
                     overrides: Optional[Mapping[str, Any]] = None) -> RunOptions:
    """The one entry point of the CLI and `palaestra.learn`: a YAML file (or a mapping of the
    same content, from Python) + overrides -> validated RunOptions."""
    if isinstance(path, Mapping):
        raw, source = dict(path), "<config mapping>"
    else:
        raw, source = (read_yaml(path) if path else {}), path or "<command line>"
    loader = ConfigLoader(registry, source=source)
    options = loader.load(raw, overrides)
    ckpt = options.checkpoint_settings
    if ckpt.load_model:
        # ML-Agents' deprecated spelling of resume (`--load`, `load_model: true`)
        logger.warning("%s: checkpoint_settings.load_model (--load) is deprecated, as in "
                       "ML-Agents: it means resume (--resume).", source)
        if not ckpt.force:
            ckpt.resume = True
        ckpt.load_model = False
    if not path and options.default_settings is None:
        # As mlagents-learn: with no config file every behavior trains with the defaults.
        logger.warning("No config file given: every behavior uses the default settings (ppo).")
        options.default_settings = loader.trainer_settings({}, {}, "default_settings")
    return options


def max_steps_from_flag(value: float) -> int:
    """`--max-steps N` (read as a float, so that 5e5 works): a whole number within the bounds of
    the `max_steps` setting it overrides, checked here because it bypasses the loader."""
    meta = {f.name: f.metadata for f in dataclasses.fields(TrainerSettings)}["max_steps"]
    low, high = meta["ge"], meta["le"]
    if not (math.isfinite(value) and float(value).is_integer() and low <= value <= high):
        raise TrainerConfigError(f"--max-steps: expected a whole number of steps >= {low} and "
                                 f"<= {high}, got {value:g}.")
    return int(value)


def check_supported(options: RunOptions, source: Optional[str]) -> None:
    """Reject settings that parse (they are valid ML-Agents) but that palaestra cannot run yet,
    before the run writes anything to disk."""
    named = [(f"behaviors.{n}", s) for n, s in options.behaviors.items()]
    if options.default_settings is not None:
        named.append(("default_settings", options.default_settings))
    ckpt = options.checkpoint_settings
    if ckpt.inference and not (ckpt.resume or ckpt.initialize_from):
        # ML-Agents would act with an untrained network here; a run of random actions is not
        # what anyone asking for inference wants to watch.
        raise TrainerConfigError(
            f"{source or '<command line>'}: checkpoint_settings.inference: true (--inference) "
            "runs a trained policy without training it; say which: --resume (this run id's "
            f"latest checkpoint, run '{ckpt.run_id}') or --initialize-from RUN_ID (another "
            "run's). `palaestra play RUN_ID` runs one for a number of episodes.")
    if ckpt.inference and ckpt.force:
        raise TrainerConfigError(
            f"{source or '<command line>'}: checkpoint_settings.force: true (--force) deletes "
            "the run that inference: true (--inference) should run; give one of them.")
    for path, settings in named:
        if settings.network_settings.memory is not None:
            raise TrainerConfigError(
                f"{source or '<command line>'}: {path}.network_settings.memory: recurrent "
                "networks are not supported by palaestra yet; remove the memory section.")
        demos = [(f"{path}.reward_signals.{k.value}.demo_path", v.demo_path)
                 for k, v in settings.reward_signals.items() if hasattr(v, "demo_path")]
        if settings.behavioral_cloning is not None:
            demos.append((f"{path}.behavioral_cloning.demo_path",
                          settings.behavioral_cloning.demo_path))
        for key, demo_path in demos:  # before anything is written, not at the first update
            if not os.path.exists(demo_path):
                raise TrainerConfigError(
                    f"{source or '<command line>'}: {key}: no such file or folder "
                    f"'{demo_path}' (a .demo file or a folder of them; relative paths are "
                    f"taken from the folder palaestra runs in, {os.getcwd()}).")


def dump_run_options(options: RunOptions, path: str) -> None:
    """Write the resolved configuration (every default filled in) next to the run's results.

    `force` and `resume` are what the command did, not settings of the run: they are written
    as false, so that training from this file again (it lies inside the run's folder) neither
    deletes the run nor needs the contrary flag to resume it."""
    data = options.as_dict()
    data["checkpoint_settings"].update(force=False, resume=False)
    atomic_write_text(yaml.safe_dump(data, sort_keys=False), path)
