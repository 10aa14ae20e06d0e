"""`TorchOptimizer`: owns the critic, the reward signals and the torch optimizer of a trainer.

A concrete optimizer (PPO's, a plugin's) implements `update(batch, num_sequences)`; this base
gives it reward signals built from the trainer settings and the per-trajectory value estimates
that every actor-critic method needs before it can compute returns.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from palaestra.accel import Accel
from palaestra.buffer import AgentBuffer, BufferKey
from palaestra.networks.networks import obs_tensors
from palaestra.policy import TorchPolicy
from palaestra.settings import RewardSignalSettings, RewardSignalType, TrainerSettings


class RewardSignal(abc.ABC):
    """A source of reward for the value streams. `evaluate` returns unscaled rewards per step;
    the trainer multiplies by `strength`, as in the specification's `_process_trajectory`."""

    def __init__(self, name: str, settings: RewardSignalSettings) -> None:
        self.name = name
        self.gamma = settings.gamma
        self.strength = settings.strength
        self.settings = settings

    @abc.abstractmethod
    def evaluate(self, buffer: AgentBuffer) -> np.ndarray:
        """Reward per step of `buffer`, shape (n,)."""

    def update(self, buffer: AgentBuffer) -> Dict[str, float]:
        """Train the signal's own model, if any; returns stats."""
        return {}

    def get_modules(self) -> Dict[str, nn.Module]:
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


_REWARD_SIGNALS = {RewardSignalType.EXTRINSIC: ExtrinsicRewardSignal}


def create_reward_signals(settings: Dict[RewardSignalType, RewardSignalSettings]
                          ) -> Dict[str, RewardSignal]:
    return {key.value: _REWARD_SIGNALS[key](key.value, value) for key, value in settings.items()}


class TorchOptimizer(abc.ABC):
    def __init__(self, policy: TorchPolicy, trainer_settings: TrainerSettings) -> None:
        self.policy = policy
        self.trainer_settings = trainer_settings
        self.reward_signals: Dict[str, RewardSignal] = create_reward_signals(
            trainer_settings.reward_signals)
        self.stream_names = list(self.reward_signals)
        # Both are duck-typed slots, hence Any: the critic is any nn.Module with
        # `critic_pass(obs) -> ({stream: values}, memories)` and each optimizer calls its own
        # critic's other methods (a baseline, twin Q heads); the optimizer is a torch.optim
        # optimizer or palaestra.Adam (state_dict, param_groups). nn.Module / Optional types
        # would make every plugin assert or cast before each use. None until the subclass sets
        # them; a Q-learner leaves `critic` None.
        self.critic: Any = None
        self.optimizer: Any = None
        # The run's speed layer (palaestra.accel): `self.accel.parallel_grads` / `run_pair`
        # compute two independent halves side by side where the run allows it. Plain until
        # the run's plan is applied (Accel.prepare_trainer).
        self.accel = Accel.off()

    @abc.abstractmethod
    def update(self, batch: AgentBuffer, num_sequences: int) -> Dict[str, float]:
        """One gradient step on a minibatch; returns stats such as "Losses/Policy Loss"."""

    def update_reward_signals(self, batch: AgentBuffer) -> Dict[str, float]:
        stats: Dict[str, float] = {}
        for signal in self.reward_signals.values():
            stats.update(signal.update(batch))
        return stats

    def update_normalization(self, buffer: AgentBuffer) -> None:
        """Update a separate critic's observation normaliser (the policy updates its own)."""
        critic = self.critic
        if critic is not None and critic is not self.policy.actor and \
                self.trainer_settings.network_settings.normalize:
            critic.update_normalization(buffer)

    def get_modules(self) -> Dict[str, object]:
        """Everything with a state_dict that a checkpoint must hold for this optimizer."""
        modules: Dict[str, object] = {}
        if self.critic is not None and self.critic is not self.policy.actor:
            modules["Optimizer:critic"] = self.critic
        if self.optimizer is not None:
            modules["Optimizer:optimizer"] = self.optimizer
        for name, signal in self.reward_signals.items():
            for key, module in signal.get_modules().items():
                modules[f"Optimizer:{name}:{key}"] = module
        return modules

    def get_trajectory_value_estimates(self, batch: AgentBuffer, next_obs: list,
                                       done: bool, agent_id: str = ""
                                       ) -> Tuple[Dict[str, np.ndarray], Dict[str, float]]:
        """Values of every step of a trajectory and of the observation after it.

        `done` is True only for a real termination: then the bootstrap value is 0; for a
        trajectory cut by `time_horizon` or truncated by a time limit it is V(next_obs)."""
        estimates, bootstrap = self.get_batch_value_estimates(
            batch, [np.asarray(o)[None] for o in next_obs], np.array([done]))
        return estimates, {name: float(v[0]) for name, v in bootstrap.items()}

    def get_batch_value_estimates(self, batch: AgentBuffer, next_obs: List[np.ndarray],
                                  done: np.ndarray
                                  ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
        """`get_trajectory_value_estimates` for K trajectories back to back in `batch`, in one
        critic pass: `next_obs[i]` stacks the K observations (of index i) after each
        trajectory, `done` (K,) marks real terminations. Returns the values of every row
        {name: (N,)} and the bootstrap values {name: (K,)} (0 where `done`)."""
        assert self.critic is not None, "a TorchOptimizer must set self.critic"
        n_obs = len(next_obs)
        with torch.no_grad():
            device = self.policy.device
            obs = obs_tensors(batch, n_obs, device=device)
            obs = [torch.cat([o, torch.as_tensor(nxt, dtype=torch.float32, device=device)])
                   for o, nxt in zip(obs, next_obs)]
            values, _ = self.critic.critic_pass(obs)
        n = batch.num_experiences
        keep = 1.0 - np.asarray(done, np.float32)
        estimates = {name: v[:n].cpu().numpy() for name, v in values.items()}
        bootstrap = {name: v[n:].cpu().numpy() * keep for name, v in values.items()}
        return estimates, bootstrap
