"""`OnPolicyTrainer`: collect `buffer_size` steps, run `num_epoch` epochs of minibatches, clear."""
from __future__ import annotations

from collections import defaultdict
from time import perf_counter
from typing import Dict, List, Sequence, Tuple

import numpy as np

from palaestra.buffer import (AgentBuffer, BufferKey, advantage_key, returns_key, rewards_key,
                              value_estimates_key)
from palaestra.settings import OnPolicyHyperparamSettings
from palaestra.optimizer import TorchOptimizer
from palaestra.trainer.returns import trajectories_gae
from palaestra.trainer.rl_trainer import H, RLTrainer
from palaestra.trajectory import Trajectory, trajectories_to_agentbuffer


class OnPolicyTrainer(RLTrainer[H]):
    """Base for PPO-like trainers. `hyperparameters` must derive OnPolicyHyperparamSettings."""

    # ML-Agents normalises BufferKey.ADVANTAGES over the update buffer before the epochs, and
    # PPO's clipping is tuned for that scale; a method whose loss wants the raw advantages
    # (or normalises per minibatch itself) sets this False in its class.
    normalize_advantages: bool = True

    def process_with_gae(self, trajectory: Trajectory, lambd: float) -> AgentBuffer:
        """The specification's `_process_trajectory` body, as a helper every on-policy trainer
        can call: the trajectory as an AgentBuffer with value estimates, each reward signal's
        rewards (times its strength), GAE(lambda) advantages and returns per signal, and their
        means under `BufferKey.ADVANTAGES` / `BufferKey.DISCOUNTED_RETURNS`. Also updates the
        observation normalisers, `collected_rewards`, the value-estimate stats and, if the
        trajectory ends its episode, the end-of-episode reward stats."""
        return self.process_with_gae_batch([trajectory], lambd)

    def process_with_gae_batch(self, trajectories: Sequence[Trajectory], lambd: float
                               ) -> AgentBuffer:
        """`process_with_gae` of several trajectories, appended in order into one buffer, with
        one normaliser update and one critic pass for all of them: per trajectory those cost
        more than the arithmetic (early 3DBall episodes last ~16 steps)."""
        optimizer = self.optimizer
        buffer, lengths, starts, ends = self.batch_buffer(trajectories)
        done = np.array([t.done_reached and not t.interrupted for t in trajectories])
        value_estimates, value_next = self._value_estimates(trajectories, buffer, done)
        sums: Dict[str, np.ndarray] = {
            "environment": np.add.reduceat(buffer[BufferKey.ENVIRONMENT_REWARDS], starts)}
        advantages: List[np.ndarray] = []
        returns: List[np.ndarray] = []
        for name, signal in optimizer.reward_signals.items():
            values = value_estimates[name]
            buffer[value_estimates_key(name)] = values
            self.stats_reporter.add_stats(
                f"Policy/{signal.name.capitalize()} Value Estimate",
                np.add.reduceat(values, starts) / lengths)
            rewards = signal.evaluate(buffer) * signal.strength
            buffer[rewards_key(name)] = rewards
            sums[name] = np.add.reduceat(rewards, starts)
            # Each trajectory's last step bootstraps from the value after it (0 after a real
            # termination, which value_next holds already).
            adv = trajectories_gae(rewards, values, value_next[name], ends, signal.gamma, lambd)
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
        self.collect_episode_rewards(trajectories, sums)
        return buffer

    def batch_buffer(self, trajectories: Sequence[Trajectory]
                     ) -> Tuple[AgentBuffer, np.ndarray, np.ndarray, np.ndarray]:
        """The trajectories as one buffer (observation normalisers updated on it when
        training), with each trajectory's length, first row and last row."""
        buffer = trajectories_to_agentbuffer(trajectories)
        if self.is_training:
            self.policy.update_normalization(buffer)
            self.optimizer.update_normalization(buffer)
        lengths = np.array([len(t) for t in trajectories])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return buffer, lengths, starts, starts + lengths - 1

    def collect_episode_rewards(self, trajectories: Sequence[Trajectory],
                                sums: Dict[str, np.ndarray]) -> None:
        """Add each trajectory's reward sums ({signal name or "environment": (K,)}) to its
        agent's episode totals, and report the episodes that ended. In order: one agent may
        have ended an episode and started the next in the same batch."""
        for k, trajectory in enumerate(trajectories):
            for name, per_trajectory in sums.items():
                self.collected_rewards[name][trajectory.agent_id] += float(per_trajectory[k])
            if trajectory.done_reached:
                self._update_end_episode_stats(trajectory.agent_id, self.optimizer)

    def _value_estimates(self, trajectories: Sequence[Trajectory], buffer: AgentBuffer,
                         done: np.ndarray
                         ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
        optimizer = self.optimizer
        cls = type(optimizer)
        if cls.get_trajectory_value_estimates is not TorchOptimizer.get_trajectory_value_estimates \
                and cls.get_batch_value_estimates is TorchOptimizer.get_batch_value_estimates:
            # A plugin optimizer that overrides only the per-trajectory form: honour it.
            per = [optimizer.get_trajectory_value_estimates(
                t.to_agentbuffer(), t.next_obs, bool(d)) for t, d in zip(trajectories, done)]
            return ({name: np.concatenate([e[name] for e, _ in per]) for name in per[0][0]},
                    {name: np.array([b[name] for _, b in per]) for name in per[0][1]})
        next_obs = [np.stack([t.next_obs[i] for t in trajectories])
                    for i in range(len(trajectories[0].next_obs))]
        return optimizer.get_batch_value_estimates(buffer, next_obs, done)

    def _should_process_queue(self) -> bool:
        """Leave trajectories queued until something needs them: the update (the buffer would
        be full), a summary, a checkpoint or the end of training. Processing them together
        lets `process_with_gae_batch` run one critic pass for hundreds of trajectories."""
        hp = self.hyperparameters
        queued = self._queued_steps
        due = min(self._next_summary, self._next_save, self.trainer_settings.max_steps)
        return queued + self.update_buffer.num_experiences >= max(hp.buffer_size,
                                                                  hp.batch_size) \
            or self._step + queued >= due

    def _is_ready_update(self) -> bool:
        return self.update_buffer.num_experiences >= self.hyperparameters.batch_size and \
            self.update_buffer.num_experiences >= self.hyperparameters.buffer_size

    def _update_policy(self) -> bool:
        """Advantages (if present, and unless `normalize_advantages` is False) are normalised
        over the whole buffer, as ML-Agents does; then every epoch visits each experience once
        in shuffled minibatches."""
        hp = self.hyperparameters
        assert isinstance(hp, OnPolicyHyperparamSettings)
        buffer = self.update_buffer
        if self.normalize_advantages and BufferKey.ADVANTAGES in buffer:
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
                # each learned signal takes a step on the same minibatch, as in ML-Agents
                result.update(self.optimizer.update_reward_signals(batch))
                self.check_finite(result, weights=False)
                for key, value in result.items():
                    stats[key].append(value)
        if self.optimizer.bc_module is not None:
            for key, value in self.optimizer.bc_module.update().items():
                stats[key].append(value)
        self.check_finite()
        for key, values in stats.items():
            self.stats_reporter.add_stat(key, float(np.mean(values)))
        self._clear_update_buffer()
        return True

    def buffer_to_save(self) -> AgentBuffer:
        """The experience collected towards the next update: a resumed run trains on it as
        the uninterrupted run would have (not saving it lost up to buffer_size steps of
        experience at every stop while the step count kept them)."""
        return self.update_buffer

    def restore_buffer(self, rows: AgentBuffer) -> None:
        self.update_buffer = rows
