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
    """A plugin whose import or registration function raised; reported, then skipped."""

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
        except Exception as exc:  # a broken plugin must not take the others down
            failure = PluginFailure(ep.name, dist, f"{type(exc).__name__}: {exc}")
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
        broken = [f.entry_point for f in self.failures]
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
        raise TypeError(f"no settings class for trainer type(s) {sorted(missing)}")
    return trainers, settings


def load_stats_writer_factories(group: str = STATS_WRITER_GROUP
                                ) -> List[Tuple[str, Callable[..., Any]]]:
    """Factories from ``palaestra.stats_writer``; each is called with the run options and
    returns a list of writers. Broken ones are reported and skipped like trainer plugins."""
    found: List[Tuple[str, Callable[..., Any]]] = []
    for ep in sorted(metadata.entry_points(group=group), key=lambda e: (e.name != "default",
                                                                      e.name)):
        try:
            found.append((ep.name, ep.load()))
        except Exception as exc:
            dist, _ = _dist_of(ep)
            logger.warning("Skipping stats writer plugin '%s' from %s: %s: %s", ep.name, dist,
                           type(exc).__name__, exc)
    return found
