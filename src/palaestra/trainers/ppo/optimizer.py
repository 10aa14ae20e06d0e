"""PPO's loss: clipped surrogate + 0.5 x clipped value loss - beta x entropy."""
from typing import Dict

import torch

from palaestra import (Adam, AgentAction, AgentBuffer, BufferKey, DecayedValue, ModelUtils,
                       TorchOptimizer, TorchPolicy, TrainerSettings, ValueNetwork, obs_tensors,
                       returns_key, value_estimates_key)
from palaestra.trainers.ppo.settings import PPOSettings


class TorchPPOOptimizer(TorchOptimizer):
    def __init__(self, policy: TorchPolicy, trainer_settings: TrainerSettings) -> None:
        super().__init__(policy, trainer_settings)
        hp = trainer_settings.hyperparameters
        assert isinstance(hp, PPOSettings)
        self.hyperparameters = hp
        if hp.shared_critic:
            self.critic = policy.actor
            params = list(policy.actor.parameters())
        else:
            self.critic = ValueNetwork(self.stream_names,
                                       policy.behavior_spec.observation_specs,
                                       trainer_settings.network_settings)
            self.critic.to(policy.device)
            params = list(policy.actor.parameters()) + list(self.critic.parameters())
        self.params = params
        self.optimizer = Adam(params, lr=hp.learning_rate, eps=1e-5,
                              max_grad_norm=hp.max_grad_norm)
        max_steps = trainer_settings.max_steps
        self.decay_learning_rate = DecayedValue(hp.learning_rate_schedule, hp.learning_rate,
                                                1e-10, max_steps)
        self.decay_epsilon = DecayedValue(hp.epsilon_schedule, hp.epsilon, 0.1, max_steps)
        self.decay_beta = DecayedValue(hp.beta_schedule, hp.beta, 1e-5, max_steps)

    def update(self, batch: AgentBuffer, num_sequences: int) -> Dict[str, float]:
        step = self.policy.get_current_step()
        decay_lr = self.decay_learning_rate.get_value(step)
        decay_eps = self.decay_epsilon.get_value(step)
        decay_bet = self.decay_beta.get_value(step)
        device = self.policy.device

        def tensor(key: object, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(batch[key], dtype=dtype, device=device)

        n_obs = len(self.policy.behavior_spec.observation_specs)
        obs = obs_tensors(batch, n_obs, device=device)
        actions = AgentAction(tensor(BufferKey.CONTINUOUS_ACTION),
                              tensor(BufferKey.DISCRETE_ACTION, torch.long))
        masks = tensor(BufferKey.ACTION_MASK, torch.bool) if BufferKey.ACTION_MASK in batch \
            else None
        # Without recurrent sequences every row is real: no masking ops in the loss graph.
        loss_masks = None
        run_out = self.policy.actor.get_stats(obs, actions, masks)
        log_probs, entropy = run_out["log_probs"], run_out["entropy"]
        values, _ = self.critic.critic_pass(obs)
        old_values = {name: tensor(value_estimates_key(name)) for name in self.stream_names}
        returns = {name: tensor(returns_key(name)) for name in self.stream_names}
        if self.hyperparameters.value_clipping:
            value_loss = ModelUtils.trust_region_value_loss(values, old_values, returns,
                                                            decay_eps, loss_masks)
        else:  # plain squared error: the clip above is absolute, and stalls large returns
            losses = [ModelUtils.masked_mean((returns[name] - head) ** 2, loss_masks)
                      for name, head in values.items()]
            value_loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        policy_loss = ModelUtils.trust_region_policy_loss(
            tensor(BufferKey.ADVANTAGES), log_probs, tensor(BufferKey.LOG_PROBS), loss_masks,
            decay_eps)
        mean_entropy = ModelUtils.masked_mean(entropy, loss_masks)
        loss = policy_loss + 0.5 * value_loss - decay_bet * mean_entropy

        ModelUtils.update_learning_rate(self.optimizer, decay_lr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()  # clips the global gradient norm first if max_grad_norm is set
        return {
            "Losses/Policy Loss": abs(policy_loss.item()),
            "Losses/Value Loss": value_loss.item(),
            "Policy/Learning Rate": decay_lr,
            "Policy/Epsilon": decay_eps,
            "Policy/Beta": decay_bet,
            "Policy/Entropy": mean_entropy.item(),
        }
