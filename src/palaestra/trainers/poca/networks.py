"""POCA's centralised critic: a group of any size as a set of entities.

Every member's observations go through one shared `ObservationEncoder` and an entity
embedding; a residual self-attention block mixes the entities and a masked mean pools them, so
the output does not depend on the members' order and accepts 1..N members (absent ones are
masked out). The value V(s_group) embeds every member from its observations; agent i's
counterfactual baseline embeds i from its observations only and its teammates from their
observations *and actions*, so it estimates the group's return with i's action left out.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from palaestra import ActionSpec, NetworkSettings, ObservationEncoder, ObservationSpec, activation


class ResidualSelfAttention(nn.Module):
    """x + MultiHeadAttention(LayerNorm(x)) over the entities, then a masked mean.

    Written out with broadcast products rather than `nn.MultiheadAttention` or batched matrix
    products: groups hold a handful of entities, and torch's CPU attention kernels and bmm are
    tuned for long sequences (on 1024 x 3 entities their backward took longer than the rest
    of the update)."""

    def __init__(self, size: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads if size % heads == 0 else 1
        self.norm = nn.LayerNorm(size)
        self.qkv = nn.Linear(size, 3 * size)
        self.out = nn.Linear(size, size)
        self.out_norm = nn.LayerNorm(size)

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """x (B, E, size), present (B, E) bool with at least one True per row -> (B, size)."""
        b, e, size = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, e, 3, self.heads, -1).unbind(2)
        # (B, E_q, E_k, heads): small E, so elementwise products beat matrix kernels
        scores = (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1) / math.sqrt(size // self.heads)
        scores = scores.masked_fill(~present[:, None, :, None], float("-inf"))
        weights = scores.softmax(2).unsqueeze(-1)  # over the keys
        mixed = (weights * v.unsqueeze(1)).sum(2).reshape(b, e, size)
        x = self.out_norm(x + self.out(mixed))
        weights = present.unsqueeze(-1).to(x.dtype)
        return (x * weights).sum(1) / weights.sum(1)


class MultiAgentNetworkBody(nn.Module):
    def __init__(self, observation_specs: Sequence[ObservationSpec],
                 network_settings: NetworkSettings, action_spec: ActionSpec) -> None:
        super().__init__()
        ns = network_settings
        self.branches = list(action_spec.discrete_branches)
        self.encoder = ObservationEncoder(observation_specs, ns.normalize, ns.hidden_units,
                                          ns.vis_encode_type, ns.activation)
        size = ns.hidden_units
        action_size = action_spec.continuous_size + sum(self.branches)
        self.obs_embedding = nn.Linear(self.encoder.output_size, size)
        self.obs_action_embedding = nn.Linear(self.encoder.output_size + action_size, size)
        self.attention = ResidualSelfAttention(size)
        # the number of members present, scaled by the most ever seen, is one more input
        sizes = [size + 1] + [size] * ns.num_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = activation(ns.activation)
        self.register_buffer("max_members", torch.ones(()))
        self.output_size = size

    def _entities(self, obs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Observations (B, E, *shape) -> encoded (B, E, features)."""
        b, e = obs[0].shape[:2]
        flat = [o.reshape(b * e, *o.shape[2:]) for o in obs]
        return self.encoder(flat).reshape(b, e, -1)

    def flat_actions(self, continuous: torch.Tensor, discrete: torch.Tensor) -> torch.Tensor:
        """(..., c) and (..., b) -> (..., c + sum(branches)), discrete ones one-hot."""
        parts = [continuous] + [F.one_hot(discrete[..., i].long(), n).to(continuous.dtype)
                                for i, n in enumerate(self.branches)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)

    def forward(self, obs_only: Sequence[torch.Tensor], obs_only_present: torch.Tensor,
                obs_with_actions: Optional[Sequence[torch.Tensor]] = None,
                actions: Optional[torch.Tensor] = None,
                with_actions_present: Optional[torch.Tensor] = None) -> torch.Tensor:
        entities = [self.obs_embedding(self._entities(obs_only))]
        present = [obs_only_present]
        if obs_with_actions is not None and obs_with_actions[0].shape[1] > 0:
            assert actions is not None and with_actions_present is not None
            encoded = torch.cat([self._entities(obs_with_actions), actions], -1)
            entities.append(self.obs_action_embedding(encoded))
            present.append(with_actions_present)
        mask = torch.cat(present, 1)
        pooled = self.attention(torch.cat(entities, 1), mask)
        count = mask.sum(1, keepdim=True).to(pooled.dtype)
        if self.training or count.max() > self.max_members:
            with torch.no_grad():
                self.max_members.copy_(torch.maximum(self.max_members, count.max()))
        x = torch.cat([pooled, count * 2.0 / self.max_members - 1.0], -1)
        for layer in self.layers:
            x = self.act(layer(x))
        return x


class POCAValueNetwork(nn.Module):
    """Group value and per-agent counterfactual baseline, one head per reward stream."""

    def __init__(self, stream_names: Sequence[str], observation_specs: Sequence[ObservationSpec],
                 network_settings: NetworkSettings, action_spec: ActionSpec) -> None:
        super().__init__()
        self.network_body = MultiAgentNetworkBody(observation_specs, network_settings,
                                                  action_spec)
        self.heads = nn.ModuleDict({name: nn.Linear(network_settings.hidden_units, 1)
                                    for name in stream_names})

    def _heads(self, h: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {name: head(h).squeeze(-1) for name, head in self.heads.items()}

    def critic_pass(self, obs: Sequence[torch.Tensor], group_obs: Sequence[torch.Tensor],
                    group_present: torch.Tensor) -> Dict[str, torch.Tensor]:
        """V of the group: the agent's observations (B, *shape) and its teammates' (B, M,
        *shape), `group_present` (B, M) marking the real teammates."""
        members = [torch.cat([o.unsqueeze(1), g], 1) for o, g in zip(obs, group_obs)]
        me = torch.ones(group_present.shape[0], 1, dtype=torch.bool, device=group_present.device)
        present = torch.cat([me, group_present], 1)
        return self._heads(self.network_body(members, present))

    def baseline(self, obs: Sequence[torch.Tensor], group_obs: Sequence[torch.Tensor],
                 group_actions: torch.Tensor, group_present: torch.Tensor
                 ) -> Dict[str, torch.Tensor]:
        """The group's value without the agent's own action: teammates with their actions
        (flat, (B, M, A), see `MultiAgentNetworkBody.flat_actions`), the agent without."""
        self_only = [o.unsqueeze(1) for o in obs]
        ones = torch.ones(obs[0].shape[0], 1, dtype=torch.bool, device=obs[0].device)
        return self._heads(self.network_body(self_only, ones, group_obs, group_actions,
                                             group_present))

    def update_normalization(self, obs: List[torch.Tensor]) -> None:
        self.network_body.encoder.update_normalization(obs)
