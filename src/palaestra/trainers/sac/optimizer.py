"""Soft actor-critic (Haarnoja et al. 2018, with automatic entropy tuning from "SAC Algorithms
and Applications") for continuous, discrete (branches) and hybrid actions.

Discrete branches use exact expectations over their actions (Christodoulou 2019) instead of
samples. Each branch has its own entropy coefficient and target entropy (0.2 log n_b), the
continuous part one coefficient with target -(continuous size), as ML-Agents does. Targets
bootstrap unless the episode really ended (a time-limit cut still has a future; curiosity's
and RND's values bootstrap always, as ML-Agents does).
"""
import copy
import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from palaestra import (Adam, AgentBuffer, BufferKey, DecayedValue, ModelUtils, TorchOptimizer,
                       TorchPolicy, TrainerSettings, obs_tensors, rewards_key)
from palaestra.trainers.sac.networks import TwinQ
from palaestra.trainers.sac.settings import SACSettings

DISCRETE_TARGET_ENTROPY_SCALE = 0.2


class TorchSACOptimizer(TorchOptimizer):
    def __init__(self, policy: TorchPolicy, trainer_settings: TrainerSettings) -> None:
        super().__init__(policy, trainer_settings)
        hp = trainer_settings.hyperparameters
        assert isinstance(hp, SACSettings)
        self.hp = hp
        spec = policy.behavior_spec.action_spec
        self.branches = list(spec.discrete_branches)
        self.continuous = spec.continuous_size
        self.critic = TwinQ(self.stream_names, policy.behavior_spec.observation_specs,
                            trainer_settings.network_settings, spec).to(policy.device)
        self.target = copy.deepcopy(self.critic)
        self.target.requires_grad_(False)
        self.gammas = {name: signal.gamma for name, signal in self.reward_signals.items()}
        init = math.log(hp.init_entcoef)
        # [continuous, branch 1, branch 2, ...]: one log-alpha per part of the action
        self.log_alpha = torch.nn.Parameter(
            torch.full((int(self.continuous > 0) + len(self.branches),), init,
                       device=policy.device))
        self.target_entropy = torch.tensor(
            ([-float(self.continuous)] if self.continuous else [])
            + [DISCRETE_TARGET_ENTROPY_SCALE * math.log(n) for n in self.branches],
            device=policy.device)
        lr = hp.learning_rate
        self.policy_optimizer = Adam(policy.actor.parameters(), lr=lr)
        self.optimizer = Adam(self.critic.parameters(), lr=lr)  # the critics' ("value") one
        self.entropy_optimizer = Adam([self.log_alpha], lr=lr)
        self._actor_params = list(policy.actor.parameters())
        self._critic_params = list(self.critic.parameters())
        self.decay_learning_rate = DecayedValue(hp.learning_rate_schedule, lr, 1e-10,
                                                trainer_settings.max_steps)

    def get_modules(self) -> Dict[str, object]:
        modules = super().get_modules()
        modules.update({"Optimizer:target": self.target,
                        "Optimizer:policy_optimizer": self.policy_optimizer,
                        "Optimizer:entropy_optimizer": self.entropy_optimizer,
                        "Optimizer:log_alpha": _ParameterHolder(self.log_alpha)})
        return modules

    def update_normalization(self, buffer: AgentBuffer) -> None:
        super().update_normalization(buffer)
        with torch.no_grad():  # the targets normalise as the critics do; stats are not averaged
            for source, target in zip(self.critic.buffers(), self.target.buffers()):
                target.copy_(source)

    # -- the pieces --------------------------------------------------------------------------
    def _policy_terms(self, obs: List[torch.Tensor], masks: Optional[torch.Tensor],
                      noise: Optional[torch.Tensor] = None
                      ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        actor = self.policy.actor
        return actor.action_model.soft_terms(actor.network_body(obs), masks, noise)

    def _soft_value(self, q: torch.Tensor, cont_log_prob: torch.Tensor,
                    branch_log_probs: List[torch.Tensor], alpha: torch.Tensor) -> torch.Tensor:
        """E_a[Q(s, a) - alpha log pi(a|s)] with the action's parts as the policy gives them:
        exact sums over each discrete branch (averaged over branches, each valued on its own),
        the continuous sample's log-probability subtracted once. q: (B, 1) or (B, sum n_b)."""
        if self.branches:
            a_disc = alpha[int(self.continuous > 0):]
            per_branch = [(log_p.exp() * (q_b - a_b * log_p)).sum(-1)
                          for q_b, log_p, a_b in zip(q.split(self.branches, -1),
                                                     branch_log_probs, a_disc)]
            value = torch.stack(per_branch, -1).mean(-1)
        else:
            value = q.squeeze(-1)
        if self.continuous:
            value = value - alpha[0] * cont_log_prob
        return value

    def _taken(self, q: torch.Tensor, discrete: torch.Tensor) -> torch.Tensor:
        """Q of the stored actions, (B, branches) (or (B, 1) without discrete actions)."""
        if not self.branches:
            return q
        return torch.stack([q_b.gather(1, discrete[:, b: b + 1]).squeeze(1)
                            for b, q_b in enumerate(q.split(self.branches, -1))], -1)

    # -- the update --------------------------------------------------------------------------
    def update(self, batch: AgentBuffer, num_sequences: int) -> Dict[str, float]:
        """One gradient step for the critics, the policy and the entropy coefficients, every
        loss taken at the parameters as they were before any of them steps (as ML-Agents
        does). The critics' and the policy's gradients are then independent, so
        `self.accel.parallel_grads` may take them side by side (palaestra.accel)."""
        lr = self.decay_learning_rate.get_value(self.policy.get_current_step())
        for optimizer in (self.optimizer, self.policy_optimizer, self.entropy_optimizer):
            ModelUtils.update_learning_rate(optimizer, lr)
        device = self.policy.device
        n_obs = len(self.policy.behavior_spec.observation_specs)
        obs = obs_tensors(batch, n_obs, device=device)
        next_obs = obs_tensors(batch, n_obs, next_obs=True, device=device)
        masks = torch.as_tensor(batch[BufferKey.ACTION_MASK], dtype=torch.bool, device=device) \
            if BufferKey.ACTION_MASK in batch else None
        alpha = self.log_alpha.detach().exp()
        # The standard-normal draws of both continuous samples, next state's first.
        rows = obs[0].shape[0]
        next_noise, noise = ((torch.randn(rows, self.continuous, device=device),
                              torch.randn(rows, self.continuous, device=device))
                             if self.continuous else (None, None))

        ((q1_loss, q2_loss), critic_grads), ((policy_loss, logp_pi, branch_logp_pi),
                                             actor_grads) = self.accel.parallel_grads(
            lambda: self._critic_loss(batch, obs, next_obs, alpha, next_noise),
            self._critic_params,
            lambda: self._policy_loss(obs, masks, alpha, noise), self._actor_params)
        ModelUtils.set_gradients(self._critic_params, critic_grads)
        ModelUtils.set_gradients(self._actor_params, actor_grads)
        self.optimizer.step()
        self.policy_optimizer.step()
        # Entropy coefficients: move each part's entropy towards its target. The loss is
        # mean(log_alpha * (H - target)), so its gradient is mean(H - target), written down.
        entropies = [-logp_pi] if self.continuous else []
        entropies += [-(log_p.exp() * log_p).sum(-1) for log_p in branch_logp_pi]
        self.log_alpha.grad = (torch.stack(entropies, -1) - self.target_entropy).mean(0)
        self.entropy_optimizer.step()
        ModelUtils.soft_update(self.critic, self.target, self.hp.tau)

        stats = {"Losses/Policy Loss": policy_loss.item(),
                 "Losses/Q1 Loss": q1_loss.item(), "Losses/Q2 Loss": q2_loss.item(),
                 "Losses/Value Loss": 0.5 * (q1_loss.item() + q2_loss.item()),
                 "Policy/Learning Rate": lr}
        coefs = self.log_alpha.detach().exp().cpu().numpy()
        if self.continuous:
            stats["Policy/Continuous Entropy Coeff"] = float(coefs[0])
        if self.branches:
            discrete = coefs[int(self.continuous > 0):]
            stats["Policy/Discrete Entropy Coeff"] = float(np.mean(discrete))
        return stats

    def _critic_loss(self, batch: AgentBuffer, obs: List[torch.Tensor],
                     next_obs: List[torch.Tensor], alpha: torch.Tensor,
                     next_noise: Optional[torch.Tensor]
                     ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Both Q's regressed on r + gamma * V_target(s'), V_target the soft value of the
        target critics under the policy's next-state actions (bootstrapped unless the episode
        really ended). Returns the summed loss and each Q's."""
        device = self.policy.device
        cont = torch.as_tensor(batch[BufferKey.CONTINUOUS_ACTION], dtype=torch.float32,
                               device=device)
        disc = torch.as_tensor(batch[BufferKey.DISCRETE_ACTION], dtype=torch.long, device=device)
        terminal = batch[BufferKey.DONE] * (1.0 - batch[BufferKey.INTERRUPTED])
        keep = {name: torch.as_tensor(k, dtype=torch.float32, device=device)
                for name, k in self.bootstrap_keep(terminal).items()}
        with torch.no_grad():
            next_cont, next_logp, next_branch_logp = self._policy_terms(next_obs, None,
                                                                        next_noise)
            t1, t2 = self.target(next_obs, next_cont)
            targets = {}
            for name in self.stream_names:
                value = self._soft_value(torch.min(t1[name], t2[name]), next_logp,
                                         next_branch_logp, alpha)
                reward = torch.as_tensor(batch[rewards_key(name)], dtype=torch.float32,
                                         device=device)
                targets[name] = reward + self.gammas[name] * keep[name] * value
        q1, q2 = self.critic(obs, cont)
        q1_losses, q2_losses = [], []
        for name, target in targets.items():
            taken1, taken2 = self._taken(q1[name], disc), self._taken(q2[name], disc)
            expanded = target[:, None].expand_as(taken1)
            q1_losses.append(0.5 * F.mse_loss(taken1, expanded))
            q2_losses.append(0.5 * F.mse_loss(taken2, expanded))
        q1_loss = q1_losses[0] if len(q1_losses) == 1 else torch.stack(q1_losses).mean()
        q2_loss = q2_losses[0] if len(q2_losses) == 1 else torch.stack(q2_losses).mean()
        return q1_loss + q2_loss, (q1_loss.detach(), q2_loss.detach())

    def _policy_loss(self, obs: List[torch.Tensor], masks: Optional[torch.Tensor],
                     alpha: torch.Tensor, noise: Optional[torch.Tensor]
                     ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor,
                                                    List[torch.Tensor]]]:
        """-E[min Q(s, a) - alpha log pi(a|s)], summed over reward streams, with a ~ pi
        reparameterised. Returns the loss and, detached, the loss and the log-probabilities
        that the entropy coefficients' step reads."""
        cont_pi, logp_pi, branch_logp_pi = self._policy_terms(obs, masks, noise)
        c1, c2 = self.critic(obs, cont_pi)
        values = [self._soft_value(torch.min(c1[name], c2[name]), logp_pi, branch_logp_pi,
                                   alpha) for name in self.stream_names]
        policy_value = values[0] if len(values) == 1 else torch.stack(values).sum(0)
        policy_loss = -policy_value.mean()
        return policy_loss, (policy_loss.detach(), logp_pi.detach(),
                             [log_p.detach() for log_p in branch_logp_pi])


class _ParameterHolder(torch.nn.Module):
    """Lets a bare parameter ride in checkpoints as a module (state_dict / load_state_dict)."""

    def __init__(self, parameter: torch.nn.Parameter) -> None:
        super().__init__()
        self.value = parameter
