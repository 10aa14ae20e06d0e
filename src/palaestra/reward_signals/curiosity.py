"""Curiosity: the intrinsic curiosity module of Pathak et al. (2017), "Curiosity-driven
Exploration by Self-supervised Prediction", with ML-Agents' constants.

An encoder phi maps observations to features. An inverse model predicts the action a from
(phi(s), phi(s')), which makes phi keep what the agent's actions affect; a forward model
predicts phi(s') from (phi(s), a). The reward is the forward model's error,
0.5 ||f(phi(s), a) - phi(s')||^2: large where the agent has not been. The loss is
10 * (0.2 L_forward + 0.8 L_inverse). As in ML-Agents, rewards are 0 until the first update,
each is capped at 1 / strength (so at most 1 after scaling), and an episode's end does not
stop the curiosity value from bootstrapping.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from palaestra.buffer import AgentBuffer, BufferKey
from palaestra.envs.base import BehaviorSpec
from palaestra.networks.encoders import activation
from palaestra.networks.networks import NetworkBody, obs_tensors
from palaestra.optim import Adam
from palaestra.reward_signals.base import RewardSignal, flat_action_size, flat_actions
from palaestra.settings import CuriositySettings

BETA = 0.2              # weight of the forward loss against the inverse loss
LOSS_MULTIPLIER = 10.0
MODEL_UNITS = 256       # hidden units of the inverse and forward models


class CuriosityNetwork(nn.Module):
    def __init__(self, spec: BehaviorSpec, settings: CuriositySettings) -> None:
        super().__init__()
        ns = settings.network_settings
        self.spec = spec
        self.state_encoder = NetworkBody(spec.observation_specs, ns)
        features, actions = ns.hidden_units, flat_action_size(spec.action_spec)
        self.inverse_model = nn.Sequential(
            nn.Linear(2 * features, MODEL_UNITS), activation(ns.activation),
            nn.Linear(MODEL_UNITS, actions))
        self.forward_model = nn.Sequential(
            nn.Linear(features + actions, MODEL_UNITS), activation(ns.activation),
            nn.Linear(MODEL_UNITS, features))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def features(self, buffer: AgentBuffer, next_obs: bool = False) -> torch.Tensor:
        n_obs = len(self.spec.observation_specs)
        return self.state_encoder(obs_tensors(buffer, n_obs, next_obs, device=self.device))

    def forward_errors(self, buffer: AgentBuffer) -> torch.Tensor:
        """0.5 ||f(phi(s), a) - phi(s')||^2 per step: the reward and the forward loss."""
        actions = flat_actions(buffer, self.spec.action_spec, self.device)
        predicted = self.forward_model(torch.cat([self.features(buffer), actions], dim=1))
        return 0.5 * ((predicted - self.features(buffer, next_obs=True)) ** 2).sum(dim=1)

    def inverse_loss(self, buffer: AgentBuffer) -> torch.Tensor:
        """Squared error of the continuous action plus the cross-entropy of each branch."""
        action_spec = self.spec.action_spec
        logits = self.inverse_model(torch.cat([self.features(buffer),
                                               self.features(buffer, next_obs=True)], dim=1))
        c = action_spec.continuous_size
        loss = torch.zeros((), device=self.device)
        if c:
            taken = torch.as_tensor(buffer[BufferKey.CONTINUOUS_ACTION], dtype=torch.float32,
                                    device=self.device)
            loss = loss + ((logits[:, :c] - taken) ** 2).sum(dim=1).mean()
        if action_spec.discrete_branches:
            taken_d = torch.as_tensor(buffer[BufferKey.DISCRETE_ACTION], dtype=torch.long,
                                      device=self.device)
            branches = logits[:, c:].split(list(action_spec.discrete_branches), dim=1)
            loss = loss + sum(F.cross_entropy(branch, taken_d[:, b])
                              for b, branch in enumerate(branches))
        return loss


class CuriosityRewardSignal(RewardSignal):
    ignore_done = True

    def __init__(self, name: str, settings: CuriositySettings, behavior_spec: BehaviorSpec
                 ) -> None:
        super().__init__(name, settings, behavior_spec)
        self.network = CuriosityNetwork(behavior_spec, settings)
        self.optimizer = Adam(self.network.parameters(), lr=settings.learning_rate)

    @property
    def has_updated(self) -> bool:
        """From the optimizer's step count, which checkpoints hold: a resumed run's rewards
        do not fall back to zero until its next update."""
        return self.optimizer.steps > 0

    def evaluate(self, buffer: AgentBuffer) -> np.ndarray:
        if not self.has_updated:
            return np.zeros(buffer.num_experiences, np.float32)
        with torch.no_grad():
            rewards = self.network.forward_errors(buffer).cpu().numpy()
        return np.minimum(rewards, 1.0 / self.strength) if self.strength > 0 else rewards

    def update(self, buffer: AgentBuffer) -> Dict[str, float]:
        forward_loss = self.network.forward_errors(buffer).mean()
        inverse_loss = self.network.inverse_loss(buffer)
        loss = LOSS_MULTIPLIER * (BETA * forward_loss + (1.0 - BETA) * inverse_loss)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"Losses/Curiosity Forward Loss": float(forward_loss.detach()),
                "Losses/Curiosity Inverse Loss": float(inverse_loss.detach())}

    def get_modules(self) -> Dict[str, Any]:
        return {"network": self.network, "optimizer": self.optimizer}


__all__: List[str] = ["CuriosityNetwork", "CuriosityRewardSignal"]
