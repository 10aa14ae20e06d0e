"""Action heads: Gaussian for continuous actions, masked categoricals for discrete branches.

Written with plain tensor ops instead of `torch.distributions`: the acting path runs once per
environment step for tiny batches, where the distribution objects' argument validation and
broadcasting cost more than the arithmetic. Log-probabilities and entropies are summed over
action dimensions and branches (the joint action), shape (batch,).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import nn

from palaestra.envs.base import ActionSpec

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_MASKED_LOGIT = -1e8


@dataclass
class AgentAction:
    """A batch of actions as tensors: continuous (B, c) float, discrete (B, b) long."""

    continuous_tensor: torch.Tensor
    discrete_tensor: torch.Tensor


class ActionModel(nn.Module):
    """Maps an encoding to a distribution over the (possibly hybrid) action space."""

    def __init__(self, hidden_size: int, action_spec: ActionSpec, conditional_sigma: bool = False,
                 tanh_squash: bool = False, deterministic: bool = False) -> None:
        super().__init__()
        self.action_spec = action_spec
        self.conditional_sigma = conditional_sigma
        self.tanh_squash = tanh_squash
        self.deterministic = deterministic
        c = action_spec.continuous_size
        self.mu = nn.Linear(hidden_size, c) if c else None
        if c:
            nn.init.orthogonal_(self.mu.weight, 0.01)
            nn.init.zeros_(self.mu.bias)
            if conditional_sigma:
                self.log_sigma_head = nn.Linear(hidden_size, c)
            else:
                self.log_sigma = nn.Parameter(torch.zeros(1, c))
        self.branches = list(action_spec.discrete_branches)
        self.logits = nn.Linear(hidden_size, sum(self.branches)) if self.branches else None
        if self.logits is not None:
            nn.init.orthogonal_(self.logits.weight, 0.01)
            nn.init.zeros_(self.logits.bias)

    # -- continuous --------------------------------------------------------------------------
    def _gaussian(self, h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mu = self.mu(h)
        if self.conditional_sigma:
            log_sigma = torch.clamp(self.log_sigma_head(h), -20.0, 2.0)
        else:
            log_sigma = self.log_sigma.expand_as(mu)
        return mu, log_sigma

    def _gaussian_log_prob(self, x: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor
                           ) -> torch.Tensor:
        z = (x - mu) * torch.exp(-log_sigma)
        return (-0.5 * z * z - log_sigma - _LOG_SQRT_2PI).sum(-1)

    # -- discrete ----------------------------------------------------------------------------
    def _branch_logits(self, h: torch.Tensor, masks: Optional[torch.Tensor]
                       ) -> List[torch.Tensor]:
        logits = self.logits(h)
        if masks is not None:
            logits = logits.masked_fill(~masks, _MASKED_LOGIT)
        return list(torch.split(logits, self.branches, dim=-1)) if len(self.branches) > 1 \
            else [logits]

    # -- public ------------------------------------------------------------------------------
    def forward(self, h: torch.Tensor, masks: Optional[torch.Tensor] = None
                ) -> Tuple[AgentAction, torch.Tensor, torch.Tensor]:
        """Sample (or take the mode, if deterministic): action, log-prob, entropy."""
        batch = h.shape[0]
        log_prob = h.new_zeros(batch)
        entropy = h.new_zeros(batch)
        cont = h.new_zeros((batch, 0))
        disc = torch.zeros((batch, 0), dtype=torch.long)
        if self.mu is not None:
            mu, log_sigma = self._gaussian(h)
            raw = mu if self.deterministic else mu + torch.randn_like(mu) * torch.exp(log_sigma)
            log_prob = log_prob + self._gaussian_log_prob(raw, mu, log_sigma)
            entropy = entropy + (log_sigma + 0.5 + _LOG_SQRT_2PI).sum(-1)
            cont = raw
            if self.tanh_squash:
                cont = torch.tanh(raw)
                log_prob = log_prob - torch.log(1.0 - cont.pow(2) + 1e-6).sum(-1)
        if self.logits is not None:
            picks = []
            for logits in self._branch_logits(h, masks):
                log_p = torch.log_softmax(logits, -1)
                if self.deterministic:
                    a = logits.argmax(-1)
                else:  # Gumbel-max: one argmax instead of a multinomial call per branch
                    u = torch.rand_like(logits).clamp_(1e-10, 1.0)
                    a = (logits - torch.log(-torch.log(u))).argmax(-1)
                picks.append(a)
                log_prob = log_prob + log_p.gather(-1, a.unsqueeze(-1)).squeeze(-1)
                entropy = entropy - (log_p.exp() * log_p).sum(-1)
            disc = torch.stack(picks, dim=-1)
        return AgentAction(cont, disc), log_prob, entropy

    def soft_terms(self, h: torch.Tensor, masks: Optional[torch.Tensor] = None,
                   noise: Optional[torch.Tensor] = None
                   ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """What soft actor-critic losses need: a reparameterised continuous sample (squashed
        if `tanh_squash`) and its log-probability (B,), and the log-probabilities of every
        action of each discrete branch [(B, n_b)], so that expectations over discrete actions
        are exact sums instead of samples. `noise`: the standard normal draws of the sample
        (B, continuous size), for a caller that draws them elsewhere (another thread)."""
        if self.mu is not None:
            mu, log_sigma = self._gaussian(h)
            eps = torch.randn_like(mu) if noise is None else noise
            cont = mu + eps * torch.exp(log_sigma)
            # log N(mu + sigma eps; mu, sigma): the standardised sample is eps itself, a
            # constant, so this is the density's value and gradient with three ops fewer
            cont_log_prob = (-0.5 * eps * eps - log_sigma - _LOG_SQRT_2PI).sum(-1)
            if self.tanh_squash:
                cont = torch.tanh(cont)
                cont_log_prob = cont_log_prob - torch.log(1.0 - cont.pow(2) + 1e-6).sum(-1)
        else:
            cont, cont_log_prob = h.new_zeros((h.shape[0], 0)), h.new_zeros(h.shape[0])
        branch_log_probs = [] if self.logits is None else \
            [torch.log_softmax(logits, -1) for logits in self._branch_logits(h, masks)]
        return cont, cont_log_prob, branch_log_probs

    def evaluate(self, h: torch.Tensor, actions: AgentAction, masks: Optional[torch.Tensor] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Log-prob of given actions and the entropy, for the losses."""
        log_probs: List[torch.Tensor] = []
        entropies: List[torch.Tensor] = []
        if masks is not None and bool(masks.all()):
            masks = None  # nothing forbidden: skip the masking op (and its backward)
        if self.mu is not None:
            mu, log_sigma = self._gaussian(h)
            x = actions.continuous_tensor
            if self.tanh_squash:
                squashed = x.clamp(-1 + 1e-6, 1 - 1e-6)
                x = torch.atanh(squashed)
                log_probs.append(-torch.log(1.0 - squashed.pow(2) + 1e-6).sum(-1))
            log_probs.append(self._gaussian_log_prob(x, mu, log_sigma))
            entropies.append((log_sigma + 0.5 + _LOG_SQRT_2PI).sum(-1))
        if self.logits is not None:
            for i, logits in enumerate(self._branch_logits(h, masks)):
                log_p = torch.log_softmax(logits, -1)
                a = actions.discrete_tensor[:, i : i + 1].long()
                log_probs.append(log_p.gather(-1, a).squeeze(-1))
                entropies.append(-(log_p.exp() * log_p).sum(-1))
        return _total(log_probs), _total(entropies)


def _total(parts: List[torch.Tensor]) -> torch.Tensor:
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total
