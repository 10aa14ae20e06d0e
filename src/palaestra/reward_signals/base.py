"""What every reward signal is: rewards for the steps of a buffer, and optionally a model of
its own that learns from the trainer's experience.

The trainer multiplies a signal's `evaluate` by its `strength` (the specification's
`_process_trajectory`) and learns one value head per signal. `ignore_done`: a signal whose
reward comes from the agent's own novelty (curiosity, RND) treats an episode's end as one more
step, so the value after a real termination still counts for it, as ML-Agents does.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, Optional

import numpy as np
import torch

from palaestra.buffer import AgentBuffer, BufferKey
from palaestra.envs.base import ActionSpec, BehaviorSpec
from palaestra.settings import RewardSignalSettings


class RewardSignal(abc.ABC):
    """A source of reward for the value streams. `evaluate` returns unscaled rewards per step;
    the trainer multiplies by `strength`, as in the specification's `_process_trajectory`.

    Subclasses take ``(name, settings, behavior_spec)``; `update` trains the signal's own model
    on a batch of the trainer's experience and returns its stats, and `get_modules` lists what
    a checkpoint must hold (networks and their optimizers)."""

    #: True: the value after an episode's real end is still bootstrapped for this signal
    ignore_done = False

    def __init__(self, name: str, settings: RewardSignalSettings,
                 behavior_spec: Optional[BehaviorSpec] = None) -> None:
        self.name = name
        self.gamma = settings.gamma
        self.strength = settings.strength
        self.settings = settings
        self.behavior_spec = behavior_spec

    @abc.abstractmethod
    def evaluate(self, buffer: AgentBuffer) -> np.ndarray:
        """Reward per step of `buffer`, shape (n,)."""

    def update(self, buffer: AgentBuffer) -> Dict[str, float]:
        """Train the signal's own model, if any; returns stats."""
        return {}

    @property
    def learns(self) -> bool:
        """Whether the signal has a model of its own (it overrides `update`): its rewards
        change as it learns, so trainers give it batches and ask it again."""
        return type(self).update is not RewardSignal.update

    def get_modules(self) -> Dict[str, Any]:
        return {}


class ExtrinsicRewardSignal(RewardSignal):
    """The environment's reward: the agent's own plus its group's (as ML-Agents adds group
    rewards for every trainer type), so a group reward reaches PPO and SAC agents too. With
    `add_groupmate_rewards` (POCA sets it, as ML-Agents' POCA does) the teammates' own rewards
    of each step are added as well."""

    add_groupmate_rewards = False

    def evaluate(self, buffer: AgentBuffer) -> np.ndarray:
        rewards = np.asarray(buffer[BufferKey.ENVIRONMENT_REWARDS], np.float32)
        if self.add_groupmate_rewards and BufferKey.GROUPMATE_REWARDS in buffer:
            rewards = rewards + np.asarray(buffer[BufferKey.GROUPMATE_REWARDS], np.float32)
        if BufferKey.GROUP_REWARD in buffer:
            rewards = rewards + np.asarray(buffer[BufferKey.GROUP_REWARD], np.float32)
        return rewards


def flat_actions(buffer: AgentBuffer, action_spec: ActionSpec,
                 device: Optional[torch.device] = None) -> torch.Tensor:
    """The buffer's actions as one float row per step: the continuous values, then a one-hot
    of each discrete branch (what learned signals feed their networks)."""
    parts = []
    if action_spec.continuous_size:
        parts.append(torch.as_tensor(buffer[BufferKey.CONTINUOUS_ACTION], dtype=torch.float32,
                                     device=device))
    if action_spec.discrete_branches:
        discrete = torch.as_tensor(buffer[BufferKey.DISCRETE_ACTION], dtype=torch.long,
                                   device=device)
        parts += [torch.nn.functional.one_hot(discrete[:, b], n).float()
                  for b, n in enumerate(action_spec.discrete_branches)]
    return torch.cat(parts, dim=1)


def flat_action_size(action_spec: ActionSpec) -> int:
    return action_spec.continuous_size + sum(action_spec.discrete_branches)
