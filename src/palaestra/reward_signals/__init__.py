"""Reward signals: the environment's reward (`extrinsic`) and learned ones (`curiosity`,
`rnd`, `gail`), with ML-Agents' settings, defaults and stat names, and a plugin's own through
the ``palaestra.reward_signal`` entry-point group (docs/plugin-api.md)."""
from __future__ import annotations

from typing import Dict, Mapping, Optional

from palaestra.envs.base import BehaviorSpec
from palaestra.reward_signals.base import (ExtrinsicRewardSignal, RewardSignal, flat_action_size,
                                           flat_actions)
from palaestra.reward_signals.registry import REWARD_SIGNAL_GROUP, RewardSignalRegistry
from palaestra.settings import RewardSignalSettings, RewardSignalType


def create_reward_signals(settings: Mapping[RewardSignalType, RewardSignalSettings],
                          behavior_spec: Optional[BehaviorSpec] = None,
                          registry: Optional[RewardSignalRegistry] = None
                          ) -> Dict[str, RewardSignal]:
    """One signal per configured name, in the config's order. Plugins' entry points are read
    only when a name is not a built-in's."""
    builtin = RewardSignalRegistry()
    if registry is None and any(k.value not in builtin.settings for k in settings):
        registry = RewardSignalRegistry.installed()
    registry = registry or builtin
    return {key.value: registry.signal_class(key.value)(key.value, value, behavior_spec)
            for key, value in settings.items()}


__all__ = ["ExtrinsicRewardSignal", "REWARD_SIGNAL_GROUP", "RewardSignal",
           "RewardSignalRegistry", "create_reward_signals", "flat_action_size", "flat_actions"]
