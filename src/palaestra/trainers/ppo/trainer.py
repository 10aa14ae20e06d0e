"""The PPO trainer: the specification's `_process_trajectory`, written as a plugin would."""
from typing import Any, Dict, List, Type, Union

import numpy as np

from palaestra import (BehaviorIdentifiers, BehaviorSpec, BufferKey, OnPolicyTrainer,
                       SharedActorCritic, SimpleActor, TorchOptimizer, TorchPolicy, Trajectory,
                       advantage_key, get_gae, returns_key, rewards_key, value_estimates_key)
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
        super()._process_trajectory(trajectory)
        assert self.policy is not None and self.optimizer is not None
        agent_id = trajectory.agent_id
        buffer = trajectory.to_agentbuffer()
        if self.is_training:
            self.policy.update_normalization(buffer)
            self.optimizer.update_normalization(buffer)

        value_estimates, value_next = self.optimizer.get_trajectory_value_estimates(
            buffer, trajectory.next_obs, trajectory.done_reached and not trajectory.interrupted)
        for name, values in value_estimates.items():
            buffer[value_estimates_key(name)] = values
            signal_name = self.optimizer.reward_signals[name].name.capitalize()
            self.stats_reporter.add_stat(f"Policy/{signal_name} Value Estimate",
                                         float(values.mean()))

        self.collected_rewards["environment"][agent_id] += float(
            np.sum(buffer[BufferKey.ENVIRONMENT_REWARDS]))
        for name, signal in self.optimizer.reward_signals.items():
            rewards = signal.evaluate(buffer) * signal.strength
            buffer[rewards_key(name)] = rewards
            self.collected_rewards[name][agent_id] += float(np.sum(rewards))

        advantages: List[np.ndarray] = []
        returns: List[np.ndarray] = []
        for name, signal in self.optimizer.reward_signals.items():
            adv = get_gae(buffer[rewards_key(name)], value_estimates[name], value_next[name],
                          signal.gamma, self.hyperparameters.lambd)
            ret = adv + value_estimates[name]
            buffer[advantage_key(name)] = adv
            buffer[returns_key(name)] = ret
            advantages.append(adv)
            returns.append(ret)
        if len(advantages) == 1:
            buffer[BufferKey.ADVANTAGES], buffer[BufferKey.DISCOUNTED_RETURNS] = \
                advantages[0], returns[0]
        else:
            buffer[BufferKey.ADVANTAGES] = np.mean(advantages, axis=0)
            buffer[BufferKey.DISCOUNTED_RETURNS] = np.mean(returns, axis=0)
        self._append_to_update_buffer(buffer)
        if trajectory.done_reached:
            self._update_end_episode_stats(agent_id, self.optimizer)


def get_type_and_setting() -> tuple:
    return {PPOTrainer.get_trainer_name(): PPOTrainer}, \
        {PPOTrainer.get_trainer_name(): PPOSettings}
