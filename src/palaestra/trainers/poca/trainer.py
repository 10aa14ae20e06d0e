"""The POCA trainer: trajectories of group members -> lambda-returns of the group value, and
advantages against each agent's counterfactual baseline.

An agent removed before its group's episode ends (`done_reached` without
`all_group_dones_reached`) does not bootstrap from zero: its last step bootstraps from the
group's value after it, so the reward the group earns later still reaches it (posthumous credit
assignment). Only when the whole group is done does the return stop there.
"""
from typing import Dict, List, Sequence

import numpy as np

from palaestra import (AgentBuffer, BehaviorIdentifiers, BehaviorSpec, BufferKey,
                       ObservationKeyPrefix, OnPolicyTrainer, TorchOptimizer, TorchPolicy,
                       Trajectory, advantage_key, baselines_key, returns_key, rewards_key,
                       pad_teammates, trajectories_gae, value_estimates_key)
from palaestra.trainers.poca.optimizer import TorchPOCAOptimizer
from palaestra.trainers.poca.settings import POCASettings

TRAINER_NAME = "poca"


class POCATrainer(OnPolicyTrainer[POCASettings]):
    @staticmethod
    def get_trainer_name() -> str:
        return TRAINER_NAME

    def create_policy(self, parsed_behavior_id: BehaviorIdentifiers,
                      behavior_spec: BehaviorSpec) -> TorchPolicy:
        return self.actor_critic_policy(behavior_spec, shared_critic=False)

    def create_optimizer(self) -> TorchOptimizer:
        return TorchPOCAOptimizer(self.policy, self.trainer_settings)

    def _process_trajectory(self, trajectory: Trajectory) -> None:
        self._process_trajectories([trajectory])

    def _process_trajectories(self, trajectories: Sequence[Trajectory]) -> None:
        buffer = self.process_group_batch(trajectories)
        for trajectory in trajectories:
            super()._process_trajectory(trajectory)  # step counting, summaries, checkpoints
        self._append_to_update_buffer(buffer)

    def process_group_batch(self, trajectories: Sequence[Trajectory]) -> AgentBuffer:
        """Value and baseline estimates for every step (one critic pass each), rewards,
        lambda-returns (the group value's TD(lambda) targets), advantages = returns -
        baseline, and the stats, for trajectories appended in order."""
        assert isinstance(self.optimizer, TorchPOCAOptimizer)
        optimizer = self.optimizer
        # trajectories_to_agentbuffer pads every teammate column to the widest trajectory's
        width = max((t.group_status.size for t in trajectories if t.group_status is not None),
                    default=0)
        buffer, lengths, starts, ends = self.batch_buffer(trajectories)
        values, baselines = optimizer.value_and_baseline_estimates(buffer)
        value_next = optimizer.next_values(*self._next_group(trajectories, width))
        # Bootstrap unless the episode is over for the whole group (and not by a time limit).
        stop = np.array([t.group_done and not t.interrupted for t in trajectories])
        sums: Dict[str, np.ndarray] = {
            "environment": np.add.reduceat(buffer[BufferKey.ENVIRONMENT_REWARDS], starts)}
        advantages: List[np.ndarray] = []
        for name, signal in optimizer.reward_signals.items():
            v, b = values[name], baselines[name]
            buffer[value_estimates_key(name)] = v
            buffer[baselines_key(name)] = b
            label = signal.name.capitalize()
            self.stats_reporter.add_stats(f"Policy/{label} Value Estimate",
                                          np.add.reduceat(v, starts) / lengths)
            self.stats_reporter.add_stats(f"Policy/{label} Baseline Estimate",
                                          np.add.reduceat(b, starts) / lengths)
            rewards = signal.evaluate(buffer) * signal.strength
            buffer[rewards_key(name)] = rewards
            sums[name] = np.add.reduceat(rewards, starts)
            keep = optimizer.bootstrap_keep(stop)[name]
            returns = trajectories_gae(rewards, v, value_next[name] * keep, ends,
                                       signal.gamma, self.hyperparameters.lambd) + v
            buffer[returns_key(name)] = returns
            buffer[advantage_key(name)] = returns - b
            advantages.append(returns - b)
        buffer[BufferKey.ADVANTAGES] = advantages[0] if len(advantages) == 1 else \
            np.mean(advantages, axis=0)
        self.collect_episode_rewards(trajectories, sums)
        return buffer

    def _next_group(self, trajectories: Sequence[Trajectory], width: int) -> tuple:
        """Stacked next observations of each trajectory's agent and teammates (padded)."""
        specs = self.policy.behavior_spec.observation_specs  # type: ignore[union-attr]
        next_obs = [np.stack([t.next_obs[i] for t in trajectories]) for i in range(len(specs))]
        group = [np.zeros((len(trajectories), width, *s.shape), np.float32) for s in specs]
        present = np.zeros((len(trajectories), width), bool)
        for k, t in enumerate(trajectories):
            if t.next_group_obs is None or t.next_group_present is None:
                continue
            m = min(width, len(t.next_group_present))
            for i in range(len(specs)):
                group[i][k, :m] = t.next_group_obs[i][:m]
            present[k, :m] = t.next_group_present[:m]
        return next_obs, group, present

    def _append_to_update_buffer(self, agentbuffer_trajectory: AgentBuffer) -> None:
        """Teammate columns are padded to the largest group seen so far: if a larger group
        appears, widen what the update buffer already holds (or the new rows) to match."""
        update = self.update_buffer
        key = BufferKey.GROUP_PRESENT
        if update.num_experiences and key in update and key in agentbuffer_trajectory:
            old, new = update[key].shape[1], agentbuffer_trajectory[key].shape[1]
            if old != new:
                _widen(update if old < new else agentbuffer_trajectory, max(old, new))
        super()._append_to_update_buffer(agentbuffer_trajectory)


_TEAMMATE_KEYS = (BufferKey.GROUP_PRESENT, BufferKey.GROUP_CONTINUOUS_ACTION,
                  BufferKey.GROUP_DISCRETE_ACTION)


def _widen(buffer: AgentBuffer, width: int) -> None:
    for key in list(buffer.keys()):
        if key in _TEAMMATE_KEYS or (isinstance(key, tuple) and
                                     key[0] == ObservationKeyPrefix.GROUP_OBSERVATION):
            buffer[key] = pad_teammates(buffer[key], width)


def get_type_and_setting() -> tuple:
    return {POCATrainer.get_trainer_name(): POCATrainer}, \
        {POCATrainer.get_trainer_name(): POCASettings}
