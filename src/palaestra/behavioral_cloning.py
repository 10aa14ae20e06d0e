"""Behavioral cloning beside reinforcement learning, as ML-Agents' `behavioral_cloning:`.

After each policy update the actor also takes gradient steps towards the demonstrated
actions: the mean squared error between its reparameterised continuous sample and the
expert's action, plus the cross-entropy of each discrete branch against the expert's choice
(averaged over branches), as ML-Agents does. The sample's expected error is the mean's plus
the variance, so cloning also narrows the policy: measured on 3DBall, regressing the mean
instead left the policy's spread at its initial width and the return at a random policy's
(about 2.5 over 150k steps), where this loss kept PPO's pace.

Its learning rate is the policy's times `strength`, decaying linearly to zero over `steps`
agent steps (constant when `steps` is 0); at zero it stops costing anything. Its Adam state is
not checkpointed (nor is it in ML-Agents): a resumed run restarts its moments at the resumed
learning rate. That Adam stays plain torch whatever the run's accel plan: the policy's own
optimizer may keep the actor's weights as views of its flat buffer (palaestra.accel.flat_adam),
and a second flat buffer over the same weights would move them out of the first one's.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch
import torch.nn.functional as F

from palaestra.buffer import AgentBuffer, BufferKey
from palaestra.model_utils import ModelUtils
from palaestra.networks.networks import obs_tensors
from palaestra.optim import Adam
from palaestra.settings import BehavioralCloningSettings, ScheduleType

DEFAULT_NUM_EPOCH = 3  # ML-Agents' default for every trainer type
MIN_LEARNING_RATE = 1e-10


class BCModule:
    def __init__(self, policy: Any, settings: BehavioralCloningSettings,
                 policy_learning_rate: float, default_batch_size: int) -> None:
        from palaestra.demo import load_demonstrations

        self.policy = policy
        self.settings = settings
        self.current_lr = policy_learning_rate * settings.strength
        schedule = ScheduleType.LINEAR if settings.steps > 0 else ScheduleType.CONSTANT
        self.decay_learning_rate = ModelUtils.DecayedValue(schedule, self.current_lr,
                                                           MIN_LEARNING_RATE, settings.steps)
        self.optimizer = Adam(policy.actor.parameters(), lr=max(self.current_lr,
                                                                MIN_LEARNING_RATE))
        self.demonstrations = load_demonstrations(settings.demo_path, policy.behavior_spec)
        self.buffer: AgentBuffer = self.demonstrations.rows("behavioral_cloning")
        self.batch_size = min(settings.batch_size or default_batch_size,
                              self.buffer.num_experiences)
        self.num_epoch = settings.num_epoch or DEFAULT_NUM_EPOCH
        self.rng = np.random.default_rng(getattr(policy, "seed", 0))

    def update(self) -> Dict[str, float]:
        """`num_epoch` passes over the demonstrations (or `samples_per_update` of them) in
        shuffled minibatches; returns "Losses/Pretraining Loss", ML-Agents' stat name."""
        lr = self.decay_learning_rate.get_value(self.policy.get_current_step())
        if self.current_lr <= MIN_LEARNING_RATE:
            return {"Losses/Pretraining Loss": 0.0}
        n = self.buffer.num_experiences
        batches = n // self.batch_size
        if self.settings.samples_per_update:
            batches = min(batches, max(1, self.settings.samples_per_update // self.batch_size))
        losses = []
        for _ in range(self.num_epoch):
            order = self.rng.permutation(n)
            for b in range(batches):
                rows = order[b * self.batch_size:(b + 1) * self.batch_size]
                losses.append(self._step(self.buffer.take(rows)))
        ModelUtils.update_learning_rate(self.optimizer, lr)
        self.current_lr = lr
        return {"Losses/Pretraining Loss": float(np.mean(losses)) if losses else 0.0}

    def loss(self, batch: AgentBuffer) -> torch.Tensor:
        spec = self.policy.behavior_spec
        device = self.policy.device
        actor = self.policy.actor
        obs = obs_tensors(batch, len(spec.observation_specs), device=device)
        continuous, _, branch_log_probs = actor.action_model.soft_terms(
            actor.network_body(obs), None)
        loss = torch.zeros((), device=device)
        if spec.action_spec.continuous_size:
            expert = torch.as_tensor(batch[BufferKey.CONTINUOUS_ACTION], dtype=torch.float32,
                                     device=device)
            loss = loss + F.mse_loss(continuous, expert)
        if branch_log_probs:
            expert_discrete = torch.as_tensor(batch[BufferKey.DISCRETE_ACTION],
                                              dtype=torch.long, device=device)
            loss = loss + torch.stack([
                F.nll_loss(log_p, expert_discrete[:, b])
                for b, log_p in enumerate(branch_log_probs)]).mean()
        return loss

    def _step(self, batch: AgentBuffer) -> float:
        loss = self.loss(batch)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())
