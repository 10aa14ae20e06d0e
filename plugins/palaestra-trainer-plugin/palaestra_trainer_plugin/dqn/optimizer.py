"""DQN's update: Huber loss on the TD error against a target network (Mnih et al. 2015), with
the double-DQN target by default (van Hasselt et al. 2016)."""
import copy
from typing import Dict

import torch
import torch.nn.functional as F

from palaestra import (Adam, AgentBuffer, BufferKey, DecayedValue, ModelUtils, TorchOptimizer,
                       TorchPolicy, TrainerSettings, obs_tensors, rewards_key)
from palaestra_trainer_plugin.dqn.network import QNetwork
from palaestra_trainer_plugin.dqn.settings import DQNSettings


class DQNOptimizer(TorchOptimizer):
    def __init__(self, policy: TorchPolicy, trainer_settings: TrainerSettings) -> None:
        super().__init__(policy, trainer_settings)
        hp = trainer_settings.hyperparameters
        assert isinstance(hp, DQNSettings) and isinstance(policy.actor, QNetwork)
        self.hp = hp
        self.q_network: QNetwork = policy.actor
        self.critic = self.q_network  # its normaliser is the policy's: updated once
        self.target = copy.deepcopy(self.q_network)
        self.target.requires_grad_(False)
        self.optimizer = Adam(self.q_network.parameters(), lr=hp.learning_rate,
                              max_grad_norm=hp.max_grad_norm)
        self.decay_learning_rate = DecayedValue(hp.learning_rate_schedule, hp.learning_rate,
                                                1e-10, trainer_settings.max_steps)
        self.gammas = {name: signal.gamma for name, signal in self.reward_signals.items()}
        self.update_count = 0

    def get_modules(self) -> Dict[str, object]:
        modules = super().get_modules()
        modules["Optimizer:target"] = self.target  # resume with the same target
        return modules

    def update(self, batch: AgentBuffer, num_sequences: int) -> Dict[str, float]:
        lr = self.decay_learning_rate.get_value(self.policy.get_current_step())
        n_obs = len(self.policy.behavior_spec.observation_specs)
        device = self.policy.device
        obs = obs_tensors(batch, n_obs, device=device)
        next_obs = obs_tensors(batch, n_obs, next_obs=True, device=device)
        actions = torch.as_tensor(batch[BufferKey.DISCRETE_ACTION], dtype=torch.long,
                                  device=device)
        # Bootstrap unless the episode really ended (a time-limit cut still has a future).
        terminal = torch.as_tensor(batch[BufferKey.DONE] * (1.0 - batch[BufferKey.INTERRUPTED]),
                                   dtype=torch.float32, device=device)
        branches = self.q_network.branches
        q_values, _ = self.q_network.critic_pass(obs)
        with torch.no_grad():
            target_q, _ = self.target.critic_pass(next_obs)
            if self.hp.double_dqn:
                online_next, _ = self.q_network.critic_pass(next_obs)
                chooser = QNetwork.summed(online_next)
            else:
                chooser = QNetwork.summed(target_q)
            next_actions = self.q_network.greedy(chooser)
        losses = []
        q_taken_mean = 0.0
        for name, q in q_values.items():
            rewards = torch.as_tensor(batch[rewards_key(name)], dtype=torch.float32,
                                      device=device)
            with torch.no_grad():
                # Each branch's value of its chosen next action, averaged over branches.
                next_q = torch.stack([part.gather(1, next_actions[:, b: b + 1]).squeeze(1)
                                      for b, part in enumerate(torch.split(target_q[name],
                                                                           branches, 1))
                                      ], 1).mean(1)
                td_target = rewards + self.gammas[name] * (1.0 - terminal) * next_q
            taken = torch.stack([part.gather(1, actions[:, b: b + 1]).squeeze(1)
                                 for b, part in enumerate(torch.split(q, branches, 1))], 1)
            losses.append(F.smooth_l1_loss(taken, td_target[:, None].expand_as(taken)))
            q_taken_mean += float(taken.detach().mean())
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        ModelUtils.update_learning_rate(self.optimizer, lr)
        self.optimizer.zero_grad()
        torch.autograd.backward(loss)  # = loss.backward(), which torch leaves unannotated
        self.optimizer.step()
        self.update_count += 1
        if self.update_count % self.hp.target_update_interval == 0:
            ModelUtils.soft_update(self.q_network, self.target, self.hp.tau)
        return {"Losses/Value Loss": loss.item(), "Policy/Learning Rate": lr,
                "Policy/Q Value": q_taken_mean / len(q_values)}
