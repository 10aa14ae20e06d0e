"""The DQN trainer: off-policy on `OffPolicyTrainer`'s replay buffer, epsilon-greedy acting."""
from typing import Dict, Tuple

from palaestra import (BehaviorIdentifiers, BehaviorSpec, DecayedValue, OffPolicyTrainer,
                       TorchOptimizer, TorchPolicy, Trajectory, TrainerConfigError)
from palaestra_trainer_plugin.dqn.network import QNetwork
from palaestra_trainer_plugin.dqn.optimizer import DQNOptimizer
from palaestra_trainer_plugin.dqn.settings import DQNSettings


class DQNTrainer(OffPolicyTrainer[DQNSettings]):
    @staticmethod
    def get_trainer_name() -> str:
        return "dqn"

    def create_policy(self, parsed_behavior_id: BehaviorIdentifiers,
                      behavior_spec: BehaviorSpec) -> TorchPolicy:
        spec = behavior_spec.action_spec
        if spec.continuous_size or not spec.discrete_branches:
            raise TrainerConfigError(
                f"trainer_type dqn needs discrete actions, but behavior "
                f"'{parsed_behavior_id.brain_name}' has {spec.continuous_size} continuous "
                f"action(s) and discrete branches {list(spec.discrete_branches)}; train it "
                f"with a trainer for continuous actions", key="trainer_type", value="dqn",
                allowed="ppo, sac, a2c (continuous or hybrid actions)")
        hp = self.hyperparameters
        self.exploration = DecayedValue(hp.exploration_schedule, hp.exploration_initial_eps,
                                        hp.exploration_final_eps, hp.exploration_steps)
        policy = TorchPolicy(self.seed, behavior_spec, self.trainer_settings.network_settings,
                             QNetwork, {"stream_names": [key.value for key in
                                                         self.trainer_settings.reward_signals]})
        policy.actor.exploration_rate = self.exploration.get_value(0)
        return policy

    def create_optimizer(self) -> TorchOptimizer:
        return DQNOptimizer(self.policy, self.trainer_settings)

    def _process_trajectory(self, trajectory: Trajectory) -> None:
        super()._process_trajectory(trajectory)  # step counting, summaries, checkpoints
        # rewards of each signal, normalisers, reward stats
        self._append_to_update_buffer(self.process_for_replay(trajectory))
        epsilon = self.exploration.get_value(self.get_step)
        self.policy.actor.exploration_rate = epsilon
        self.stats_reporter.add_stat("Policy/Epsilon", epsilon)

def get_type_and_setting() -> Tuple[Dict[str, type], Dict[str, type]]:
    return {DQNTrainer.get_trainer_name(): DQNTrainer}, \
        {DQNTrainer.get_trainer_name(): DQNSettings}
