"""Reward-signal types found through Python entry points, like trainer types.

A plugin distribution declares, in group ``palaestra.reward_signal``, a function returning
``({name: RewardSignalClass}, {name: SettingsClass})``; the settings class derives
`RewardSignalSettings` and is what the config's ``reward_signals.<name>:`` section is read
into. palaestra's own signals are known without reading entry points (config loading stays
free of torch); a plugin may not take a built-in's name.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Dict, Iterable, List, Optional

from palaestra.describe import describe_error
from palaestra.exception import TrainerConfigError
from palaestra.settings import BUILTIN_REWARD_SIGNAL_SETTINGS

logger = logging.getLogger(__name__)

REWARD_SIGNAL_GROUP = "palaestra.reward_signal"

_BUILTIN_CLASSES = {
    "extrinsic": "palaestra.reward_signals.base:ExtrinsicRewardSignal",
    "curiosity": "palaestra.reward_signals.curiosity:CuriosityRewardSignal",
    "rnd": "palaestra.reward_signals.rnd:RNDRewardSignal",
    "gail": "palaestra.reward_signals.gail:GAILRewardSignal",
}


def _import(path: str) -> type:
    module, _, attr = path.partition(":")
    cls: type = getattr(importlib.import_module(module), attr)
    return cls


@dataclass
class RewardSignalRegistry:
    """Reward-signal types by name: their settings classes and (loaded on first use) their
    signal classes, plus the plugins that failed to load."""

    settings: Dict[str, type] = field(default_factory=lambda: dict(
        BUILTIN_REWARD_SIGNAL_SETTINGS))
    classes: Dict[str, Callable[[], type]] = field(default_factory=lambda: {
        name: (lambda path=path: _import(path)) for name, path in _BUILTIN_CLASSES.items()})
    origins: Dict[str, str] = field(default_factory=lambda: dict.fromkeys(
        BUILTIN_REWARD_SIGNAL_SETTINGS, "palaestra"))
    failures: List[str] = field(default_factory=list)

    @classmethod
    def installed(cls, entry_points: Optional[Iterable[metadata.EntryPoint]] = None
                  ) -> "RewardSignalRegistry":
        """The built-ins and every installed plugin's signals."""
        registry = cls()
        eps = metadata.entry_points(group=REWARD_SIGNAL_GROUP) if entry_points is None \
            else entry_points
        for ep in sorted(eps, key=lambda e: e.name):
            dist = getattr(getattr(ep, "dist", None), "name", None) or "unknown"
            try:
                registry.register(*_registration(ep.load()), origin=dist)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: B036 - as for trainer plugins (registry.py)
                registry.failures.append(f"{ep.name} ({dist}): {describe_error(exc)}")
                logger.warning("Skipping reward signal plugin '%s' from %s: %s", ep.name, dist,
                               describe_error(exc))
        return registry

    def register(self, signals: Dict[str, type], settings: Dict[str, type],
                 origin: str = "local") -> None:
        """Add signal types (an entry point's result, or by hand in a test)."""
        from palaestra.reward_signals.base import RewardSignal
        from palaestra.settings import RewardSignalSettings

        problems = []
        for name, signal_cls in signals.items():
            if not (isinstance(name, str) and name.isidentifier()):
                problems.append(f"reward signal name {name!r} is not an identifier")
            elif name in BUILTIN_REWARD_SIGNAL_SETTINGS:
                problems.append(f"'{name}' is a built-in reward signal's name")
            elif not (isinstance(signal_cls, type) and issubclass(signal_cls, RewardSignal)):
                problems.append(f"reward signal '{name}': {signal_cls!r} is not a class "
                                "deriving palaestra's RewardSignal")
            elif not (isinstance(settings.get(name), type)
                      and issubclass(settings[name], RewardSignalSettings)):
                problems.append(f"reward signal '{name}': no settings class deriving "
                                "RewardSignalSettings")
        if problems:
            raise TypeError("; ".join(problems))
        for name, signal_cls in signals.items():
            self.settings[name] = settings[name]
            self.classes[name] = lambda c=signal_cls: c
            self.origins[name] = origin

    def names(self) -> List[str]:
        return sorted(self.settings)

    def settings_for(self, name: str) -> type:
        if name in self.settings:
            return self.settings[name]
        broken = f" Plugins that failed to load: {'; '.join(self.failures)}." \
            if self.failures else ""
        raise TrainerConfigError(f"unknown reward signal '{name}'. Installed reward signals: "
                                 f"{', '.join(self.names())}.{broken}")

    def signal_class(self, name: str) -> type:
        self.settings_for(name)
        return self.classes[name]()


def _registration(result: Any) -> tuple:
    if callable(result):
        result = result()
    if not (isinstance(result, tuple) and len(result) == 2
            and all(isinstance(d, dict) for d in result)):
        raise TypeError("a reward_signal entry point must return "
                        "({name: RewardSignalClass}, {name: SettingsClass})")
    return result
