"""The A2C trainer: on-policy, GAE targets from palaestra's helper, one loss of its own."""
from typing import Dict, Tuple

from palaestra import (BehaviorIdentifiers, BehaviorSpec, OnPolicyTrainer, TorchOptimizer,
                       TorchPolicy, Trajectory)
from palaestra_trainer_plugin.a2c.optimizer import A2COptimizer
from palaestra_trainer_plugin.a2c.settings import A2CSettings


class A2CTrainer(OnPolicyTrainer[A2CSettings]):
    @staticmethod
    def get_trainer_name() -> str:
        return "a2c"

    def create_policy(self, parsed_behavior_id: BehaviorIdentifiers,
                      behavior_spec: BehaviorSpec) -> TorchPolicy:
        return self.actor_critic_policy(behavior_spec, self.hyperparameters.shared_critic)

    def create_optimizer(self) -> TorchOptimizer:
        assert self.policy is not None
        return A2COptimizer(self.policy, self.trainer_settings)

    def _process_trajectory(self, trajectory: Trajectory) -> None:
        super()._process_trajectory(trajectory)  # step counting, summaries, checkpoints
        # values, rewards, GAE advantages and returns, normalisers, reward stats
        self._append_to_update_buffer(
            self.process_with_gae(trajectory, self.hyperparameters.lambd))


def get_type_and_setting() -> Tuple[Dict[str, type], Dict[str, type]]:
    return {A2CTrainer.get_trainer_name(): A2CTrainer}, \
        {A2CTrainer.get_trainer_name(): A2CSettings}
