"""Trainer types and stats writers found through Python entry points.

A plugin distribution declares, in group ``palaestra.trainer_type``, a function returning
``({name: TrainerClass}, {name: HyperparametersSettingsClass})`` (the specification's
``get_type_and_setting``). palaestra's own trainers arrive the same way, through its ``default``
entry point, so the built-ins prove the plugin path every run.

Registries are per-run objects (no module state): tests build their own from fake entry points.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from palaestra.describe import describe_error, short_repr  # noqa: F401  (also re-exported)
from palaestra.exception import TrainerConfigError

logger = logging.getLogger(__name__)

TRAINER_TYPE_GROUP = "palaestra.trainer_type"
STATS_WRITER_GROUP = "palaestra.stats_writer"

# Trainer types we know a package for, so an unknown-type error can say what to install.
KNOWN_PROVIDERS = {
    "a2c": "palaestra-trainer-plugin (pip install -e plugins/palaestra-trainer-plugin)",
    "dqn": "palaestra-trainer-plugin (pip install -e plugins/palaestra-trainer-plugin)",
}


@dataclass(frozen=True)
class TrainerTypeInfo:
    """One registered trainer type and where it came from."""

    name: str
    trainer_cls: type
    settings_cls: type
    entry_point: str
    distribution: str
    version: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin whose import or registration function failed, or whose registration was
    refused (see `_check_registration`); reported, then skipped as a whole."""

    entry_point: str
    distribution: str
    error: str


def _dist_of(ep: metadata.EntryPoint) -> Tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "?"
    return dist.metadata["Name"] or "unknown", dist.version or "?"


@dataclass
class TrainerRegistry:
    """Trainer types by name, plus the plugins that failed to load."""

    types: Dict[str, TrainerTypeInfo] = field(default_factory=dict)
    failures: List[PluginFailure] = field(default_factory=list)

    @classmethod
    def from_entry_points(cls, group: str = TRAINER_TYPE_GROUP,
                          entry_points: Optional[Iterable[metadata.EntryPoint]] = None
                          ) -> "TrainerRegistry":
        registry = cls()
        eps = metadata.entry_points(group=group) if entry_points is None else entry_points
        # The built-in `default` first, so a plugin may deliberately replace a built-in type.
        for ep in sorted(eps, key=lambda e: (e.name != "default", e.name)):
            registry._load(ep)
        return registry

    def _load(self, ep: metadata.EntryPoint) -> None:
        dist, version = _dist_of(ep)
        try:
            trainers, settings = _call_registration(ep.load())
            _check_registration(trainers, settings)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: B036
            # A broken plugin must not take the others (or a built-in it tried to replace)
            # down: it registers nothing and `palaestra trainers` lists it. SystemExit too:
            # with `except Exception` one plugin's sys.exit() ended every palaestra command
            # without a word. Ctrl-C still propagates.
            failure = PluginFailure(ep.name, dist, describe_error(exc))
            self.failures.append(failure)
            logger.warning("Skipping trainer plugin '%s' from %s: %s", ep.name, dist, failure.error)
            return
        for name, trainer_cls in trainers.items():
            if name in self.types and self.types[name].distribution != dist:
                logger.warning("Trainer type '%s' from %s replaces the one from %s", name, dist,
                               self.types[name].distribution)
            self.types[name] = TrainerTypeInfo(name, trainer_cls, settings[name], ep.name, dist,
                                               version)

    def register(self, trainers: Dict[str, type], settings: Dict[str, type],
                 distribution: str = "local", version: str = "?") -> None:
        """Add trainer types by hand (tests, notebooks); same shape as an entry point's result."""
        trainers, settings = _call_registration(lambda: (trainers, settings))
        _check_registration(trainers, settings)
        for name, trainer_cls in trainers.items():
            self.types[name] = TrainerTypeInfo(name, trainer_cls, settings[name], "manual",
                                               distribution, version)

    def get(self, name: str) -> TrainerTypeInfo:
        if name in self.types:
            return self.types[name]
        installed = ", ".join(sorted(self.types)) or "none"
        hint = ""
        if name in KNOWN_PROVIDERS:
            hint = f" Trainer type '{name}' is provided by {KNOWN_PROVIDERS[name]}."
        broken = list(dict.fromkeys(f.entry_point for f in self.failures))
        if broken:
            hint += f" Plugins that failed to load: {', '.join(broken)}."
        raise TrainerConfigError(
            f"Invalid trainer type {name} was found. Installed trainer types: {installed}.{hint}")

    def names(self) -> List[str]:
        return sorted(self.types)


def _call_registration(fn: Callable[[], Any]) -> Tuple[Dict[str, type], Dict[str, type]]:
    result = fn()
    if not (isinstance(result, tuple) and len(result) == 2
            and all(isinstance(d, dict) for d in result)):
        raise TypeError("a trainer_type entry point must return "
                        "({name: TrainerClass}, {name: SettingsClass})")
    trainers, settings = result
    missing = set(trainers) - set(settings)
    if missing:
        raise TypeError("no settings class for trainer type(s) "
                        f"[{', '.join(sorted(map(short_repr, missing)))}]")
    return trainers, settings


def _check_registration(trainers: Dict[Any, Any], settings: Dict[Any, Any]) -> None:
    """Refuse a registration that would only fail later, far from its cause.

    A trainer "class" that is not an `RLTrainer` subclass crashes `palaestra trainers` or the
    first step of training, and a settings class that is not a `HyperparamSettings` dataclass
    breaks config loading for that type; worse, such junk registered under ``ppo`` would
    replace the working built-in. Checked here, the whole registration is refused and the
    built-ins stay. Raises TypeError naming every bad entry.
    """
    # Imported here, not at the top: the trainer base pulls in torch and most of palaestra,
    # and a module-level import would tie this small module into their import order (a
    # cycle as soon as one of them needs the registry).
    from palaestra.settings import HyperparamSettings
    from palaestra.trainer.rl_trainer import RLTrainer

    problems = []
    for name, trainer_cls in trainers.items():
        if not isinstance(name, str) or not name:
            problems.append(f"trainer type name {_describe(name)} is not a non-empty string")
            continue
        if not (isinstance(trainer_cls, type) and issubclass(trainer_cls, RLTrainer)):
            problems.append(f"trainer type '{name}': {_describe(trainer_cls)} is not a class "
                            "deriving palaestra's RLTrainer")
        settings_cls = settings[name]
        if not (isinstance(settings_cls, type) and issubclass(settings_cls, HyperparamSettings)):
            problems.append(f"trainer type '{name}': settings {_describe(settings_cls)} is not a "
                            "class deriving palaestra's HyperparamSettings")
    if problems:
        raise TypeError("; ".join(problems))


def _describe(obj: Any) -> str:
    """A plugin's registered object for a report line (see `short_repr`)."""
    if isinstance(obj, type):
        try:
            return str.__str__(f"class {obj.__module__}.{obj.__qualname__}")
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: B036 - a metaclass's own attributes may raise
            pass
    return short_repr(obj)


@dataclass(frozen=True)
class StatsWriterFactory:
    """One ``palaestra.stats_writer`` entry point, loaded: `label` names it in reports."""

    name: str
    distribution: str
    factory: Callable[..., Any]

    @property
    def label(self) -> str:
        return f"stats writer plugin '{self.name}' from {self.distribution}"


def load_stats_writer_factories(group: str = STATS_WRITER_GROUP,
                                entry_points: Optional[Iterable[metadata.EntryPoint]] = None
                                ) -> List[StatsWriterFactory]:
    """Factories from ``palaestra.stats_writer``; each is called with the run options and
    returns a list of writers. Broken ones are reported and skipped like trainer plugins."""
    found: List[StatsWriterFactory] = []
    eps = metadata.entry_points(group=group) if entry_points is None else entry_points
    for ep in sorted(eps, key=lambda e: (e.name != "default", e.name)):
        dist, _ = _dist_of(ep)
        try:
            factory = ep.load()
            if not callable(factory):
                raise TypeError(f"{_describe(factory)} is not callable")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: B036 - SystemExit too, as for trainer plugins
            logger.warning("Skipping stats writer plugin '%s' from %s: %s", ep.name, dist,
                           describe_error(exc))
            continue
        found.append(StatsWriterFactory(ep.name, dist, factory))
    return found
