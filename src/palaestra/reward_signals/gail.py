"""GAIL: generative adversarial imitation learning (Ho & Ermon 2016), as ML-Agents' `gail`
signal, optionally with the variational discriminator bottleneck of VAIL (Peng et al. 2018)
and the gradient penalty of WGAN-GP (Gulrajani et al. 2017) that ML-Agents adds.

A discriminator D(s[, a, done]) learns to tell the demonstrations' steps (label 1) from the
agent's (label 0): loss -E_expert[log D] - E_agent[log(1 - D)]. The agent's reward for a step
is -log(1 - D): the more expert-like the step looks, the more it earns. With `use_vail` the
discriminator sees a noisy 128-wide code z ~ N(mu(s), sigma) and a Lagrange multiplier beta
keeps the code's KL divergence from N(0, 1) near 0.5 nats. Episode ends stop its value as
the environment's.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from palaestra.buffer import AgentBuffer, BufferKey
from palaestra.envs.base import BehaviorSpec, ObservationKind, ObservationSpec
from palaestra.networks.networks import NetworkBody, obs_tensors
from palaestra.optim import Adam
from palaestra.reward_signals.base import RewardSignal, flat_action_size, flat_actions
from palaestra.settings import GAILSettings

GRADIENT_PENALTY_WEIGHT = 10.0
Z_SIZE = 128                 # VAIL's code width
VAIL_BETA_STEP = 0.0005      # dual ascent step of beta
MUTUAL_INFORMATION = 0.5     # VAIL's KL target (nats)
EPSILON = 1e-7


class Discriminator(nn.Module):
    def __init__(self, spec: BehaviorSpec, settings: GAILSettings) -> None:
        super().__init__()
        self.spec = spec
        self.use_actions = settings.use_actions
        self.use_vail = settings.use_vail
        specs = list(spec.observation_specs)
        if self.use_actions:  # the action and the done flag, as one more vector input
            specs.append(ObservationSpec((flat_action_size(spec.action_spec) + 1,),
                                         ObservationKind.VECTOR, "action_and_done"))
        ns = settings.network_settings
        self.encoder = NetworkBody(specs, ns)
        width = ns.hidden_units
        if self.use_vail:
            self.z_mu = nn.Linear(width, Z_SIZE)
            nn.init.kaiming_normal_(self.z_mu.weight)
            with torch.no_grad():
                self.z_mu.weight.mul_(0.1)
            nn.init.zeros_(self.z_mu.bias)
            self.z_sigma = nn.Parameter(torch.ones(Z_SIZE))
            self.register_buffer("beta", torch.zeros(()))
            width = Z_SIZE
        self.estimator = nn.Linear(width, 1)
        nn.init.xavier_uniform_(self.estimator.weight, gain=0.2)
        nn.init.zeros_(self.estimator.bias)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def inputs(self, buffer: AgentBuffer) -> List[torch.Tensor]:
        """The observations, and with `use_actions` the action and done flag of each step."""
        obs = obs_tensors(buffer, len(self.spec.observation_specs), device=self.device)
        if self.use_actions:
            done = torch.as_tensor(buffer[BufferKey.DONE], dtype=torch.float32,
                                   device=self.device)[:, None]
            obs.append(torch.cat([flat_actions(buffer, self.spec.action_spec, self.device),
                                  done], dim=1))
        return obs

    def estimate(self, inputs: List[torch.Tensor], noise: bool
                 ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """D (B,) and, with VAIL, the code's mean mu (B, Z_SIZE)."""
        hidden = self.encoder(inputs)
        mu = None
        if self.use_vail:
            mu = self.z_mu(hidden)
            hidden = mu + torch.randn_like(mu) * self.z_sigma if noise else mu
        return torch.sigmoid(self.estimator(hidden)).squeeze(1), mu

    def gradient_penalty(self, agent: List[torch.Tensor], expert: List[torch.Tensor]
                         ) -> torch.Tensor:
        """E[(||grad_x D(x)|| - 1)^2] at random points x between agent and expert inputs
        (the gradient taken with respect to every input: observations, and actions and done
        flags with `use_actions`)."""
        mixed = []
        for a, e in zip(agent, expert):
            t = torch.rand_like(a)
            mixed.append((t * a + (1 - t) * e).detach().requires_grad_(True))
        d, _ = self.estimate(mixed, noise=True)
        grads = torch.autograd.grad(d.sum(), mixed, create_graph=True)
        squared = sum(g.flatten(1).pow(2).sum(dim=1) for g in grads)
        return ((squared + EPSILON).sqrt() - 1.0).pow(2).mean()


class GAILRewardSignal(RewardSignal):
    def __init__(self, name: str, settings: GAILSettings, behavior_spec: BehaviorSpec) -> None:
        from palaestra.demo import load_demonstrations

        super().__init__(name, settings, behavior_spec)
        self.discriminator = Discriminator(behavior_spec, settings)
        self.optimizer = Adam(self.discriminator.parameters(), lr=settings.learning_rate)
        self.demonstrations = load_demonstrations(settings.demo_path, behavior_spec)
        self.expert = self.demonstrations.rows(f"reward_signals.{name}")
        self.rng = np.random.default_rng(0)

    def evaluate(self, buffer: AgentBuffer) -> np.ndarray:
        with torch.no_grad():
            d, _ = self.discriminator.estimate(self.discriminator.inputs(buffer), noise=False)
            rewards = (-torch.log(1.0 - d * (1.0 - EPSILON))).cpu().numpy()
        if self.settings.absorbing_state and BufferKey.DONE in buffer:
            # r + gamma r + gamma^2 r + ...: the last step's reward continues in the absorbing
            # state (the value after a real end is 0, so the whole stream is paid here)
            ended = np.asarray(buffer[BufferKey.DONE]) > 0
            if BufferKey.INTERRUPTED in buffer:
                ended &= ~(np.asarray(buffer[BufferKey.INTERRUPTED]) > 0)
            rewards = np.where(ended, rewards / (1.0 - min(self.gamma, 0.999)), rewards)
        return rewards

    def update(self, buffer: AgentBuffer) -> Dict[str, float]:
        disc = self.discriminator
        expert_batch = self.expert.sample_mini_batch(buffer.num_experiences, self.rng)
        agent, expert = disc.inputs(buffer), disc.inputs(expert_batch)
        # the observation normaliser follows the demonstrations only, as in ML-Agents
        disc.encoder.encoder.update_normalization(expert)
        d_agent, mu_agent = disc.estimate(agent, noise=True)
        d_expert, mu_expert = disc.estimate(expert, noise=True)
        gail_loss = -(torch.log(d_expert + EPSILON) + torch.log(1.0 - d_agent + EPSILON)).mean()
        stats = {"Policy/GAIL Policy Estimate": float(d_agent.mean().detach()),
                 "Policy/GAIL Expert Estimate": float(d_expert.mean().detach()),
                 "Losses/GAIL Loss": float(gail_loss.detach())}
        loss = gail_loss
        if disc.use_vail:
            assert mu_agent is not None and mu_expert is not None
            log_var = (disc.z_sigma ** 2).log()
            kl = -(1 + log_var - 0.5 * mu_expert ** 2 - 0.5 * mu_agent ** 2
                   - disc.z_sigma ** 2).sum(dim=1).mean()
            beta = float(disc.beta)  # a constant of this step's loss
            loss = loss + beta * (kl - MUTUAL_INFORMATION)
            with torch.no_grad():  # dual ascent on beta, kept >= 0
                disc.beta.fill_(max(0.0, beta + VAIL_BETA_STEP *
                                    float(kl - MUTUAL_INFORMATION)))
            stats["Policy/GAIL Beta"] = float(disc.beta)
            stats["Losses/GAIL KL Loss"] = float(kl.detach())
        penalty = GRADIENT_PENALTY_WEIGHT * disc.gradient_penalty(agent, expert)
        stats["Policy/GAIL Grad Mag Loss"] = float(penalty.detach())
        loss = loss + penalty
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return stats

    def get_modules(self) -> Dict[str, Any]:
        return {"discriminator": self.discriminator, "optimizer": self.optimizer}
