"""`OffPolicyTrainer`: a replay buffer (a preallocated ring) of the newest `buffer_size` steps,
sampled for updates at a fixed ratio of `steps_per_update` agent steps per gradient step
(ML-Agents' SAC schedule)."""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List

import numpy as np

from palaestra.buffer import AgentBuffer, ReplayBuffer
from palaestra.settings import OffPolicyHyperparamSettings
from palaestra.trainer.rl_trainer import H, RLTrainer


class OffPolicyTrainer(RLTrainer[H]):
    """Base for SAC/DQN-like trainers. `hyperparameters` must derive
    OffPolicyHyperparamSettings."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.update_buffer: ReplayBuffer = ReplayBuffer(self._hp.buffer_size)  # type: ignore
        self.update_steps = 0
        self.reward_signal_update_steps = 0

    @property
    def _hp(self) -> OffPolicyHyperparamSettings:
        hp = self.hyperparameters
        assert isinstance(hp, OffPolicyHyperparamSettings)
        return hp

    def _append_to_update_buffer(self, agentbuffer_trajectory: AgentBuffer) -> None:
        self.update_buffer.append_buffer(agentbuffer_trajectory)

    def _is_ready_update(self) -> bool:
        hp = self._hp
        return (self.update_buffer.num_experiences >= hp.batch_size
                and self.get_step >= hp.buffer_init_steps)

    def _updates_due(self, done: int, steps_per_update: float) -> bool:
        """One more update is due while done + 1 updates fit in the steps since warm-up."""
        return self.get_step - self._hp.buffer_init_steps >= (done + 1) * steps_per_update

    def _update_policy(self) -> bool:
        """As many gradient steps as the agent steps since the last call allow."""
        assert self.optimizer is not None
        hp = self._hp
        stats: Dict[str, List[float]] = defaultdict(list)
        updated = False
        while self._updates_due(self.update_steps, hp.steps_per_update):
            batch = self.update_buffer.sample_mini_batch(hp.batch_size, self.rng)
            for key, value in self.optimizer.update(batch, hp.batch_size).items():
                stats[key].append(value)
            self.update_steps += 1
            updated = True
        signal_ratio = hp.reward_signal_steps_per_update or hp.steps_per_update
        while self._updates_due(self.reward_signal_update_steps, signal_ratio):
            batch = self.update_buffer.sample_mini_batch(hp.batch_size, self.rng)
            for key, value in self.optimizer.update_reward_signals(batch).items():
                stats[key].append(value)
            self.reward_signal_update_steps += 1
        for key, values in stats.items():
            self.stats_reporter.add_stat(key, float(np.mean(values)))
        return updated
