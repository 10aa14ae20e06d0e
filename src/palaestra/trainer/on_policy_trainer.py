"""`OnPolicyTrainer`: collect `buffer_size` steps, run `num_epoch` epochs of minibatches, clear."""
from __future__ import annotations

from collections import defaultdict
from time import perf_counter
from typing import Dict, List

import numpy as np

from palaestra.buffer import (AgentBuffer, BufferKey, advantage_key, returns_key, rewards_key,
                              value_estimates_key)
from palaestra.settings import OnPolicyHyperparamSettings
from palaestra.trainer.returns import get_gae
from palaestra.trainer.rl_trainer import H, RLTrainer
from palaestra.trajectory import Trajectory


class OnPolicyTrainer(RLTrainer[H]):
    """Base for PPO-like trainers. `hyperparameters` must derive OnPolicyHyperparamSettings."""

    def process_with_gae(self, trajectory: Trajectory, lambd: float) -> AgentBuffer:
        """The specification's `_process_trajectory` body, as a helper every on-policy trainer
        can call: the trajectory as an AgentBuffer with value estimates, each reward signal's
        rewards (times its strength), GAE(lambda) advantages and returns per signal, and their
        means under `BufferKey.ADVANTAGES` / `BufferKey.DISCOUNTED_RETURNS`. Also updates the
        observation normalisers, `collected_rewards` and the value-estimate stats."""
        assert self.policy is not None and self.optimizer is not None
        optimizer = self.optimizer
        agent_id = trajectory.agent_id
        buffer = trajectory.to_agentbuffer()
        if self.is_training:
            self.policy.update_normalization(buffer)
            optimizer.update_normalization(buffer)
        value_estimates, value_next = optimizer.get_trajectory_value_estimates(
            buffer, trajectory.next_obs, trajectory.done_reached and not trajectory.interrupted)
        self.collected_rewards["environment"][agent_id] += float(
            np.sum(buffer[BufferKey.ENVIRONMENT_REWARDS]))
        advantages: List[np.ndarray] = []
        returns: List[np.ndarray] = []
        for name, signal in optimizer.reward_signals.items():
            values = value_estimates[name]
            buffer[value_estimates_key(name)] = values
            self.stats_reporter.add_stat(f"Policy/{signal.name.capitalize()} Value Estimate",
                                         float(values.mean()))
            rewards = signal.evaluate(buffer) * signal.strength
            buffer[rewards_key(name)] = rewards
            self.collected_rewards[name][agent_id] += float(np.sum(rewards))
            adv = get_gae(rewards, values, value_next[name], signal.gamma, lambd)
            buffer[advantage_key(name)] = adv
            buffer[returns_key(name)] = adv + values
            advantages.append(adv)
            returns.append(adv + values)
        if len(advantages) == 1:
            buffer[BufferKey.ADVANTAGES] = advantages[0]
            buffer[BufferKey.DISCOUNTED_RETURNS] = returns[0]
        else:
            buffer[BufferKey.ADVANTAGES] = np.mean(advantages, axis=0)
            buffer[BufferKey.DISCOUNTED_RETURNS] = np.mean(returns, axis=0)
        return buffer

    def _is_ready_update(self) -> bool:
        return self.update_buffer.num_experiences >= self.hyperparameters.batch_size and \
            self.update_buffer.num_experiences >= self.hyperparameters.buffer_size

    def _update_policy(self) -> bool:
        """Advantages (if present) are normalised over the whole buffer, as ML-Agents does;
        then every epoch visits each experience once in shuffled minibatches."""
        assert self.optimizer is not None
        hp = self.hyperparameters
        assert isinstance(hp, OnPolicyHyperparamSettings)
        buffer = self.update_buffer
        if BufferKey.ADVANTAGES in buffer:
            adv = buffer[BufferKey.ADVANTAGES]
            buffer[BufferKey.ADVANTAGES] = (adv - adv.mean()) / (adv.std() + 1e-10)
        stats: Dict[str, List[float]] = defaultdict(list)
        num_sequences = hp.batch_size
        add = self.timers.add
        for _ in range(hp.num_epoch):
            for batch in buffer.minibatches(hp.batch_size, self.rng):
                start = perf_counter()
                result = self.optimizer.update(batch, num_sequences)
                add("gradient_step", perf_counter() - start)
                for key, value in result.items():
                    stats[key].append(value)
        for key, value in self.optimizer.update_reward_signals(buffer).items():
            stats[key].append(value)
        for key, values in stats.items():
            self.stats_reporter.add_stat(key, float(np.mean(values)))
        self._clear_update_buffer()
        return True
