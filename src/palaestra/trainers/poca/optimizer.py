"""MA-POCA's loss (Cohen et al. 2021, "On the Use and Misuse of Absorbing States in Multi-agent
Reinforcement Learning"): PPO's clipped surrogate with advantages from the counterfactual
baseline, plus clipped regressions of the group value and of the baseline on the
lambda-returns: policy + 0.5 (value + 0.5 baseline) - beta entropy, as ML-Agents weighs them."""
from typing import Dict, List, Tuple

import numpy as np
import torch

from palaestra import (Adam, AgentAction, AgentBuffer, BufferKey, DecayedValue, ModelUtils,
                       TorchOptimizer, TorchPolicy, TrainerSettings, baselines_key,
                       group_obs_key, obs_tensors, returns_key, value_estimates_key)
from palaestra.optimizer import ExtrinsicRewardSignal
from palaestra.trainers.poca.networks import POCAValueNetwork
from palaestra.trainers.poca.settings import POCASettings


class TorchPOCAOptimizer(TorchOptimizer):
    def __init__(self, policy: TorchPolicy, trainer_settings: TrainerSettings) -> None:
        super().__init__(policy, trainer_settings)
        hp = trainer_settings.hyperparameters
        assert isinstance(hp, POCASettings)
        self.hyperparameters = hp
        for signal in self.reward_signals.values():
            if isinstance(signal, ExtrinsicRewardSignal):  # teammates' rewards too (ML-Agents)
                signal.add_groupmate_rewards = True
        spec = policy.behavior_spec
        self.critic = POCAValueNetwork(self.stream_names, spec.observation_specs,
                                       trainer_settings.network_settings,
                                       spec.action_spec).to(policy.device)
        self.optimizer = Adam(list(policy.actor.parameters()) + list(self.critic.parameters()),
                              lr=hp.learning_rate)
        max_steps = trainer_settings.max_steps
        self.decay_learning_rate = DecayedValue(hp.learning_rate_schedule, hp.learning_rate,
                                                1e-10, max_steps)
        self.decay_epsilon = DecayedValue(hp.epsilon_schedule, hp.epsilon, 0.1, max_steps)
        self.decay_beta = DecayedValue(hp.beta_schedule, hp.beta, 1e-5, max_steps)

    def update_normalization(self, buffer: AgentBuffer) -> None:
        if self.trainer_settings.network_settings.normalize:
            n_obs = len(self.policy.behavior_spec.observation_specs)
            self.critic.update_normalization(obs_tensors(buffer, n_obs,
                                                         device=self.policy.device))

    # -- tensors of a buffer's group columns ---------------------------------------------------
    def group_tensors(self, batch: AgentBuffer
                      ) -> Tuple[List[torch.Tensor], List[torch.Tensor], torch.Tensor,
                                 torch.Tensor]:
        """Own observations, teammates' observations (B, M, *shape), their flat actions
        (B, M, A) and which are present (B, M); M = 0 when the behavior has no groups."""
        device = self.policy.device
        specs = self.policy.behavior_spec.observation_specs
        obs = obs_tensors(batch, len(specs), device=device)
        n = obs[0].shape[0]
        body = self.critic.network_body
        if BufferKey.GROUP_PRESENT not in batch:
            a = self.policy.behavior_spec.action_spec
            width = a.continuous_size + sum(a.discrete_branches)
            return (obs, [torch.zeros((n, 0, *s.shape), device=device) for s in specs],
                    torch.zeros((n, 0, width), device=device),
                    torch.zeros((n, 0), dtype=torch.bool, device=device))
        group = [torch.as_tensor(batch[group_obs_key(i)], dtype=torch.float32, device=device)
                 for i in range(len(specs))]
        actions = body.flat_actions(
            torch.as_tensor(batch[BufferKey.GROUP_CONTINUOUS_ACTION], dtype=torch.float32,
                            device=device),
            torch.as_tensor(batch[BufferKey.GROUP_DISCRETE_ACTION], device=device))
        present = torch.as_tensor(batch[BufferKey.GROUP_PRESENT], dtype=torch.bool,
                                  device=device)
        return obs, group, actions, present

    def value_and_baseline_estimates(self, batch: AgentBuffer
                                     ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
        """Group values and counterfactual baselines of every row, in one pass each."""
        obs, group, actions, present = self.group_tensors(batch)
        with torch.no_grad():
            values = self.critic.critic_pass(obs, group, present)
            baselines = self.critic.baseline(obs, group, actions, present)
        return ({k: v.cpu().numpy() for k, v in values.items()},
                {k: v.cpu().numpy() for k, v in baselines.items()})

    def next_values(self, next_obs: List[np.ndarray], next_group_obs: List[np.ndarray],
                    next_group_present: np.ndarray) -> Dict[str, np.ndarray]:
        """The group's value after each trajectory's last step, (K,) per stream."""
        device = self.policy.device

        def t(x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(x, dtype=dtype, device=device)

        with torch.no_grad():
            values = self.critic.critic_pass([t(o) for o in next_obs],
                                             [t(g) for g in next_group_obs],
                                             t(next_group_present, torch.bool))
        return {k: v.cpu().numpy() for k, v in values.items()}

    # -- the update ------------------------------------------------------------------------------
    def update(self, batch: AgentBuffer, num_sequences: int) -> Dict[str, float]:
        step = self.policy.get_current_step()
        decay_lr = self.decay_learning_rate.get_value(step)
        decay_eps = self.decay_epsilon.get_value(step)
        decay_bet = self.decay_beta.get_value(step)
        device = self.policy.device

        def tensor(key: object, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(batch[key], dtype=dtype, device=device)

        obs, group, group_actions, present = self.group_tensors(batch)
        actions = AgentAction(tensor(BufferKey.CONTINUOUS_ACTION),
                              tensor(BufferKey.DISCRETE_ACTION, torch.long))
        masks = tensor(BufferKey.ACTION_MASK, torch.bool) if BufferKey.ACTION_MASK in batch \
            else None
        run_out = self.policy.actor.get_stats(obs, actions, masks)
        log_probs, entropy = run_out["log_probs"], run_out["entropy"]
        values = self.critic.critic_pass(obs, group, present)
        baselines = self.critic.baseline(obs, group, group_actions, present)
        returns = {name: tensor(returns_key(name)) for name in self.stream_names}
        old_values = {name: tensor(value_estimates_key(name)) for name in self.stream_names}
        old_baselines = {name: tensor(baselines_key(name)) for name in self.stream_names}
        value_loss = ModelUtils.trust_region_value_loss(values, old_values, returns, decay_eps,
                                                        None)
        baseline_loss = ModelUtils.trust_region_value_loss(baselines, old_baselines, returns,
                                                           decay_eps, None)
        policy_loss = ModelUtils.trust_region_policy_loss(
            tensor(BufferKey.ADVANTAGES), log_probs, tensor(BufferKey.LOG_PROBS), None,
            decay_eps)
        mean_entropy = entropy.mean()
        loss = policy_loss + 0.5 * (value_loss + 0.5 * baseline_loss) - decay_bet * mean_entropy
        ModelUtils.update_learning_rate(self.optimizer, decay_lr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"Losses/Policy Loss": abs(policy_loss.item()),
                "Losses/Value Loss": value_loss.item(),
                "Losses/Baseline Loss": baseline_loss.item(),
                "Policy/Learning Rate": decay_lr, "Policy/Epsilon": decay_eps,
                "Policy/Beta": decay_bet, "Policy/Entropy": mean_entropy.item()}
