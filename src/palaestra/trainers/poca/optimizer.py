"""MA-POCA's loss (Cohen et al. 2021, "On the Use and Misuse of Absorbing States in Multi-agent
Reinforcement Learning"): PPO's clipped surrogate with advantages from the counterfactual
baseline, plus clipped regressions of the group value and of the baseline on the
lambda-returns: policy + 0.5 (value + 0.5 baseline) - beta entropy, as ML-Agents weighs them.

The group-value pass and the baseline pass are the bulk of an update (attention over the
members) and independent, so the value term's gradients and the rest's are taken with
`self.accel.parallel_grads` (side by side where the run has a core to spare) and summed."""
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch

from palaestra import (Adam, AgentAction, AgentBuffer, BufferKey, DecayedValue,
                       ExtrinsicRewardSignal, ModelUtils, TorchOptimizer, TorchPolicy,
                       TrainerSettings, baselines_key, group_obs_key, obs_tensors, returns_key,
                       value_estimates_key)
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
        self._critic_params = list(self.critic.parameters())
        self._params = list(policy.actor.parameters()) + self._critic_params

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
        """Group values and counterfactual baselines of every row (side by side where the run
        allows it)."""
        obs, group, actions, present = self.group_tensors(batch)
        baselines, values = self.accel.run_pair(
            lambda: _no_grad_in_chunks(self.critic.baseline, obs, group, actions, present),
            lambda: _no_grad_in_chunks(self.critic.critic_pass, obs, group, present))
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
        returns = {name: tensor(returns_key(name)) for name in self.stream_names}
        old_values = {name: tensor(value_estimates_key(name)) for name in self.stream_names}
        old_baselines = {name: tensor(baselines_key(name)) for name in self.stream_names}
        ModelUtils.update_learning_rate(self.optimizer, decay_lr)

        def value_term() -> Tuple[torch.Tensor, torch.Tensor]:
            values = self.critic.critic_pass(obs, group, present)
            value_loss = ModelUtils.trust_region_value_loss(values, old_values, returns,
                                                            decay_eps, None)
            return 0.5 * value_loss, value_loss.detach()

        def policy_and_baseline_terms() -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
            run_out = self.policy.actor.get_stats(obs, actions, masks)
            baselines = self.critic.baseline(obs, group, group_actions, present)
            baseline_loss = ModelUtils.trust_region_value_loss(baselines, old_baselines,
                                                               returns, decay_eps, None)
            policy_loss = ModelUtils.trust_region_policy_loss(
                tensor(BufferKey.ADVANTAGES), run_out["log_probs"],
                tensor(BufferKey.LOG_PROBS), None, decay_eps)
            entropy = run_out["entropy"].mean()
            loss = policy_loss + 0.25 * baseline_loss - decay_bet * entropy
            return loss, {"policy": policy_loss.detach(), "baseline": baseline_loss.detach(),
                          "entropy": entropy.detach()}

        (parts, rest_grads), (value_loss, value_grads) = self.accel.parallel_grads(
            policy_and_baseline_terms, self._params, value_term, self._critic_params)
        ModelUtils.set_gradients(self._params, rest_grads,
                                 [None] * (len(self._params) - len(value_grads)) + value_grads)
        self.optimizer.step()
        return {"Losses/Policy Loss": abs(parts["policy"].item()),
                "Losses/Value Loss": value_loss.item(),
                "Losses/Baseline Loss": parts["baseline"].item(),
                "Policy/Learning Rate": decay_lr, "Policy/Epsilon": decay_eps,
                "Policy/Beta": decay_bet, "Policy/Entropy": parts["entropy"].item()}


# Rows per forward pass when estimating a whole buffer: the attention's (rows, members, members,
# heads, width) products of a few thousand rows outgrow the caches (a 5k-row baseline pass took
# ~65 ms whole, ~45 ms in 1024-row pieces).
ESTIMATE_CHUNK = 1024


def _no_grad_in_chunks(fn: Callable[..., Dict[str, torch.Tensor]], *args: Any
                       ) -> Dict[str, torch.Tensor]:
    """`fn` over row slices of its tensor arguments (lists of tensors sliced each), without
    gradients (a per-thread mode, hence set here), the outputs joined again."""
    rows = args[0][0].shape[0]
    outs = []
    with torch.no_grad():
        if rows <= ESTIMATE_CHUNK:
            return fn(*args)
        for start in range(0, rows, ESTIMATE_CHUNK):
            piece = slice(start, start + ESTIMATE_CHUNK)
            outs.append(fn(*[[t[piece] for t in a] if isinstance(a, list) else a[piece]
                             for a in args]))
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
