"""The A2C trainer: on-policy, GAE targets from palaestra's helper, one loss of its own."""
from typing import Any, Dict, Tuple, Type, Union

from palaestra import (BehaviorIdentifiers, BehaviorSpec, OnPolicyTrainer, SharedActorCritic,
                       SimpleActor, TorchOptimizer, TorchPolicy, Trajectory)
from palaestra_trainer_plugin.a2c.optimizer import A2COptimizer
from palaestra_trainer_plugin.a2c.settings import A2CSettings


class A2CTrainer(OnPolicyTrainer[A2CSettings]):
    @staticmethod
    def get_trainer_name() -> str:
        return "a2c"

    def create_policy(self, parsed_behavior_id: BehaviorIdentifiers,
                      behavior_spec: BehaviorSpec) -> TorchPolicy:
        actor_cls: Union[Type[SimpleActor], Type[SharedActorCritic]] = SimpleActor
        kwargs: Dict[str, Any] = {"conditional_sigma": False, "tanh_squash": False}
        if self.hyperparameters.shared_critic:
            actor_cls = SharedActorCritic
            kwargs["stream_names"] = [k.value for k in self.trainer_settings.reward_signals]
        return TorchPolicy(self.seed, behavior_spec, self.trainer_settings.network_settings,
                           actor_cls, kwargs)

    def create_optimizer(self) -> TorchOptimizer:
        assert self.policy is not None
        return A2COptimizer(self.policy, self.trainer_settings)

    def _process_trajectory(self, trajectory: Trajectory) -> None:
        super()._process_trajectory(trajectory)
        self._append_to_update_buffer(
            self.process_with_gae(trajectory, self.hyperparameters.lambd))
        if trajectory.done_reached and self.optimizer is not None:
            self._update_end_episode_stats(trajectory.agent_id, self.optimizer)


def get_type_and_setting() -> Tuple[Dict[str, type], Dict[str, type]]:
    return {A2CTrainer.get_trainer_name(): A2CTrainer}, \
        {A2CTrainer.get_trainer_name(): A2CSettings}
