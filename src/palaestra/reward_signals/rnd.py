"""Random network distillation (Burda et al. 2018, "Exploration by Random Network
Distillation"), as ML-Agents' `rnd` signal.

A fixed, randomly initialised network g maps observations to features; a predictor g_hat of
the same shape learns to match it on the states the agent visits. The reward is the
prediction error ||g_hat(s) - g(s)||^2: high on states the predictor has rarely seen. Like
curiosity, an episode's end does not stop its value from bootstrapping.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch

from palaestra.buffer import AgentBuffer
from palaestra.envs.base import BehaviorSpec
from palaestra.networks.networks import NetworkBody, obs_tensors
from palaestra.optim import Adam
from palaestra.reward_signals.base import RewardSignal
from palaestra.settings import RNDSettings


class RNDRewardSignal(RewardSignal):
    ignore_done = True

    def __init__(self, name: str, settings: RNDSettings, behavior_spec: BehaviorSpec) -> None:
        super().__init__(name, settings, behavior_spec)
        ns = settings.network_settings
        self.target = NetworkBody(behavior_spec.observation_specs, ns)
        self.target.requires_grad_(False)
        self.predictor = NetworkBody(behavior_spec.observation_specs, ns)
        self.optimizer = Adam(self.predictor.parameters(), lr=settings.learning_rate)

    def _errors(self, buffer: AgentBuffer) -> torch.Tensor:
        device = next(self.predictor.parameters()).device
        obs = obs_tensors(buffer, len(self.behavior_spec.observation_specs), device=device)
        with torch.no_grad():
            target = self.target(obs)
        return ((self.predictor(obs) - target) ** 2).sum(dim=1)

    def evaluate(self, buffer: AgentBuffer) -> np.ndarray:
        with torch.no_grad():
            return self._errors(buffer).cpu().numpy()

    def update(self, buffer: AgentBuffer) -> Dict[str, float]:
        # both networks see observations through the same running normalisation
        self.target.update_normalization(buffer)
        self.predictor.update_normalization(buffer)
        loss = self._errors(buffer).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"Losses/RND Loss": float(loss.detach())}

    def get_modules(self) -> Dict[str, Any]:
        return {"pred": self.predictor, "target": self.target, "optimizer": self.optimizer}
