"""The A2C trainer: on-policy, GAE targets from palaestra's helper, one loss of its own.

A2C is synchronous: every agent acts `time_horizon` steps with the current policy, the
segments (bootstrapped from the critic at the cut) make one batch, one gradient step is taken
on it, and it is thrown away. With a `time_horizon` much longer than `buffer_size` / agents,
trajectories span many updates and each update trains on data from older policies, which
A2C's loss cannot correct (see `optimizer`)."""
from typing import Dict, Sequence, Tuple

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
        return A2COptimizer(self.policy, self.trainer_settings)

    def _process_trajectory(self, trajectory: Trajectory) -> None:
        self._process_trajectories([trajectory])

    def _process_trajectories(self, trajectories: Sequence[Trajectory]) -> None:
        """Values, rewards, GAE advantages and returns, normalisers and reward stats of all
        the trajectories queued since the last update, with one critic pass: a synchronous
        rollout of short segments is a dozen trajectories per update, and one critic pass each
        would cost more than the update itself."""
        buffer = self.process_with_gae_batch(trajectories, self.hyperparameters.lambd)
        for trajectory in trajectories:
            super()._process_trajectory(trajectory)  # step counting
        self._append_to_update_buffer(buffer)


def get_type_and_setting() -> Tuple[Dict[str, type], Dict[str, type]]:
    return {A2CTrainer.get_trainer_name(): A2CTrainer}, \
        {A2CTrainer.get_trainer_name(): A2CSettings}
