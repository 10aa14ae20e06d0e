"""`TorchOptimizer`: owns the critic, the reward signals and the torch optimizer of a trainer.

A concrete optimizer (PPO's, a plugin's) implements `update(batch, num_sequences)`; this base
gives it reward signals built from the trainer settings and the per-trajectory value estimates
that every actor-critic method needs before it can compute returns.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from palaestra.accel import Accel
from palaestra.behavioral_cloning import BCModule
from palaestra.buffer import AgentBuffer
from palaestra.networks.networks import obs_tensors
from palaestra.policy import TorchPolicy
from palaestra.reward_signals import ExtrinsicRewardSignal, RewardSignal, create_reward_signals
from palaestra.settings import TrainerSettings


class TorchOptimizer(abc.ABC):
    def __init__(self, policy: TorchPolicy, trainer_settings: TrainerSettings) -> None:
        self.policy = policy
        self.trainer_settings = trainer_settings
        self.reward_signals: Dict[str, RewardSignal] = create_reward_signals(
            trainer_settings.reward_signals, policy.behavior_spec)
        self.stream_names = list(self.reward_signals)
        # Behavioral cloning from demonstrations beside RL (`behavioral_cloning:`); the trainer
        # calls `bc_module.update()` after each policy update.
        self.bc_module: Optional[BCModule] = None
        if trainer_settings.behavioral_cloning is not None:
            hp = trainer_settings.hyperparameters
            self.bc_module = BCModule(policy, trainer_settings.behavioral_cloning,
                                      getattr(hp, "learning_rate", 3.0e-4),
                                      getattr(hp, "batch_size", 1024))
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

    def bootstrap_keep(self, done: np.ndarray) -> Dict[str, np.ndarray]:
        """Per signal, 1 where the value after a trajectory counts and 0 after a real
        termination, except for signals that ignore episode ends (curiosity, RND)."""
        keep = 1.0 - np.asarray(done, np.float32)
        return {name: np.ones_like(keep) if signal.ignore_done else keep
                for name, signal in self.reward_signals.items()}

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
        keep = self.bootstrap_keep(done)
        estimates = {name: v[:n].cpu().numpy() for name, v in values.items()}
        bootstrap = {name: v[n:].cpu().numpy() * keep[name] for name, v in values.items()}
        return estimates, bootstrap


# RewardSignal and ExtrinsicRewardSignal lived here before palaestra.reward_signals; plugins
# that import them from this module keep working.
__all__ = ["ExtrinsicRewardSignal", "RewardSignal", "TorchOptimizer"]
