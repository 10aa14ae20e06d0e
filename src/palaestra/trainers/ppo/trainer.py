"""The PPO trainer: the specification's `_process_trajectory`, written as a plugin would."""
from typing import Sequence

from palaestra import (BehaviorIdentifiers, BehaviorSpec, OnPolicyTrainer, TorchOptimizer,
                       TorchPolicy, Trajectory)
from palaestra.trainers.ppo.optimizer import TorchPPOOptimizer
from palaestra.trainers.ppo.settings import PPOSettings

TRAINER_NAME = "ppo"


class PPOTrainer(OnPolicyTrainer[PPOSettings]):
    @staticmethod
    def get_trainer_name() -> str:
        return TRAINER_NAME

    @property
    def shared_critic(self) -> bool:
        return self.hyperparameters.shared_critic

    def create_policy(self, parsed_behavior_id: BehaviorIdentifiers,
                      behavior_spec: BehaviorSpec) -> TorchPolicy:
        # SimpleActor, or SharedActorCritic with a value head per reward signal
        return self.actor_critic_policy(behavior_spec, self.shared_critic)

    def create_optimizer(self) -> TorchOptimizer:
        return TorchPPOOptimizer(self.policy, self.trainer_settings)

    def _process_trajectory(self, trajectory: Trajectory) -> None:
        """Count steps (base class), compute value estimates, rewards, GAE advantages and
        returns (`process_with_gae`, shared with every on-policy plugin), append."""
        self._process_trajectories([trajectory])

    def _process_trajectories(self, trajectories: Sequence[Trajectory]) -> None:
        """All trajectories queued since the last processing, with one critic pass."""
        buffer = self.process_with_gae_batch(trajectories, self.hyperparameters.lambd)
        for trajectory in trajectories:
            super()._process_trajectory(trajectory)  # step counting, summaries, checkpoints
        self._append_to_update_buffer(buffer)

def get_type_and_setting() -> tuple:
    return {PPOTrainer.get_trainer_name(): PPOTrainer}, \
        {PPOTrainer.get_trainer_name(): PPOSettings}
