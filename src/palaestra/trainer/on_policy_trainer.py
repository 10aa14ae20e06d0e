"""`OnPolicyTrainer`: collect `buffer_size` steps, run `num_epoch` epochs of minibatches, clear."""
from __future__ import annotations

from collections import defaultdict
from time import perf_counter
from typing import Dict, List

import numpy as np

from palaestra.buffer import BufferKey
from palaestra.settings import OnPolicyHyperparamSettings
from palaestra.trainer.rl_trainer import H, RLTrainer


class OnPolicyTrainer(RLTrainer[H]):
    """Base for PPO-like trainers. `hyperparameters` must derive OnPolicyHyperparamSettings."""

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
