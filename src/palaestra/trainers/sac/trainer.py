"""The SAC trainer: off-policy on `OffPolicyTrainer`'s replay buffer."""
from palaestra import (BehaviorIdentifiers, BehaviorSpec, OffPolicyTrainer, TorchOptimizer,
                       TorchPolicy, Trajectory)
from palaestra.trainers.sac.optimizer import TorchSACOptimizer
from palaestra.trainers.sac.settings import SACSettings

TRAINER_NAME = "sac"


class SACTrainer(OffPolicyTrainer[SACSettings]):
    @staticmethod
    def get_trainer_name() -> str:
        return TRAINER_NAME

    def create_policy(self, parsed_behavior_id: BehaviorIdentifiers,
                      behavior_spec: BehaviorSpec) -> TorchPolicy:
        # A state-dependent sigma and tanh-squashed continuous actions, as ML-Agents' SAC.
        return self.actor_critic_policy(behavior_spec, shared_critic=False,
                                        conditional_sigma=True, tanh_squash=True)

    def create_optimizer(self) -> TorchOptimizer:
        return TorchSACOptimizer(self.policy, self.trainer_settings)

    def _process_trajectory(self, trajectory: Trajectory) -> None:
        super()._process_trajectory(trajectory)  # step counting, summaries, checkpoints
        self._append_to_update_buffer(self.process_for_replay(trajectory))


def get_type_and_setting() -> tuple:
    return {SACTrainer.get_trainer_name(): SACTrainer}, \
        {SACTrainer.get_trainer_name(): SACSettings}
