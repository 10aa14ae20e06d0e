"""The PPO trainer: the specification's `_process_trajectory`, written as a plugin would."""
from typing import Any, Dict, Type, Union

from palaestra import (BehaviorIdentifiers, BehaviorSpec, OnPolicyTrainer, SharedActorCritic,
                       SimpleActor, TorchOptimizer, TorchPolicy, Trajectory)
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
        actor_cls: Union[Type[SimpleActor], Type[SharedActorCritic]] = SimpleActor
        actor_kwargs: Dict[str, Any] = {"conditional_sigma": False, "tanh_squash": False}
        if self.shared_critic:
            actor_cls = SharedActorCritic
            actor_kwargs["stream_names"] = [key.value for key in
                                            self.trainer_settings.reward_signals]
        return TorchPolicy(self.seed, behavior_spec, self.trainer_settings.network_settings,
                           actor_cls, actor_kwargs)

    def create_optimizer(self) -> TorchOptimizer:
        assert self.policy is not None
        return TorchPPOOptimizer(self.policy, self.trainer_settings)

    def _process_trajectory(self, trajectory: Trajectory) -> None:
        """Count steps (base class), compute value estimates, rewards, GAE advantages and
        returns (`process_with_gae`, shared with every on-policy plugin), append."""
        super()._process_trajectory(trajectory)
        buffer = self.process_with_gae(trajectory, self.hyperparameters.lambd)
        self._append_to_update_buffer(buffer)
        if trajectory.done_reached:
            assert self.optimizer is not None
            self._update_end_episode_stats(trajectory.agent_id, self.optimizer)


def get_type_and_setting() -> tuple:
    return {PPOTrainer.get_trainer_name(): PPOTrainer}, \
        {PPOTrainer.get_trainer_name(): PPOSettings}
