"""A2C's loss: -advantage x log-prob + 0.5 x squared value error - beta x entropy.

-A log pi is the policy gradient only for actions sampled by the policy being updated: there
is no importance ratio (as in PPO) to correct for data from an older policy. So the trainer
must feed each update a fresh synchronous rollout (time_horizon x agents ~ buffer_size, one
gradient step per rollout: batch_size = buffer_size), used once."""
from typing import Callable, Dict

import torch

from palaestra import (Adam, AgentAction, AgentBuffer, BufferKey, DecayedValue, ModelUtils,
                       TorchOptimizer, TorchPolicy, TrainerSettings, ValueNetwork, advantage_key,
                       obs_tensors, returns_key)
from palaestra_trainer_plugin.a2c.settings import A2CSettings


class A2COptimizer(TorchOptimizer):
    def __init__(self, policy: TorchPolicy, trainer_settings: TrainerSettings) -> None:
        super().__init__(policy, trainer_settings)
        hp = trainer_settings.hyperparameters
        assert isinstance(hp, A2CSettings)
        self.hp = hp
        if hp.shared_critic:
            self.critic = policy.actor
            self.params = list(policy.actor.parameters())
        else:
            self.critic = ValueNetwork(self.stream_names, policy.behavior_spec.observation_specs,
                                       trainer_settings.network_settings).to(policy.device)
            self.params = list(policy.actor.parameters()) + list(self.critic.parameters())
        self.optimizer = Adam(self.params, lr=hp.learning_rate, eps=1e-5,
                              max_grad_norm=hp.max_grad_norm)
        steps = trainer_settings.max_steps
        self.decay_learning_rate = DecayedValue(hp.learning_rate_schedule, hp.learning_rate,
                                                1e-10, steps)
        assert hp.beta_schedule is not None  # A2CSettings.__post_init__ filled it in
        self.decay_beta = DecayedValue(hp.beta_schedule, hp.beta, 1e-5, steps)

    def update(self, batch: AgentBuffer, num_sequences: int) -> Dict[str, float]:
        """One gradient step on a rollout collected by the current policy."""
        step = self.policy.get_current_step()
        lr, beta = self.decay_learning_rate.get_value(step), self.decay_beta.get_value(step)
        device = self.policy.device

        def tensor(key: object, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(batch[key], dtype=dtype, device=device)

        obs = obs_tensors(batch, len(self.policy.behavior_spec.observation_specs), device=device)
        actions = AgentAction(tensor(BufferKey.CONTINUOUS_ACTION),
                              tensor(BufferKey.DISCRETE_ACTION, torch.long))
        masks = tensor(BufferKey.ACTION_MASK, torch.bool) \
            if BufferKey.ACTION_MASK in batch else None
        stats = self.policy.actor.get_stats(obs, actions, masks)
        values, _ = self.critic.critic_pass(obs)
        value_loss = torch.stack([((tensor(returns_key(name)) - head) ** 2).mean()
                                  for name, head in values.items()]).mean()
        policy_loss = -(self._advantages(batch, tensor) * stats["log_probs"]).mean()
        entropy = stats["entropy"].mean()
        loss = policy_loss + 0.5 * value_loss - beta * entropy

        ModelUtils.update_learning_rate(self.optimizer, lr)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()  # clips the global gradient norm first
        return {"Losses/Policy Loss": abs(policy_loss.item()),
                "Losses/Value Loss": value_loss.item(), "Policy/Learning Rate": lr,
                "Policy/Beta": beta, "Policy/Entropy": entropy.item()}

    def _advantages(self, batch: AgentBuffer,
                    tensor: Callable[[object], torch.Tensor]) -> torch.Tensor:
        """The advantages the policy gradient weighs log pi by. `OnPolicyTrainer` standardises
        `BufferKey.ADVANTAGES` over the update buffer; with `normalize_advantage` off, the
        per-signal GAE advantages it was made from (kept raw), averaged over the signals as it
        was. Raw advantages shrink as the critic gets the values right, so a policy that no
        longer fails takes small steps; standardised ones turn a rollout with nothing to learn
        (its spread only critic noise) into a full-size step."""
        if self.hp.normalize_advantage:
            return tensor(BufferKey.ADVANTAGES)
        return torch.stack([tensor(advantage_key(name)) for name in self.stream_names]).mean(0)
