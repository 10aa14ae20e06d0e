"""The spec's networks: `SimpleActor`, `SharedActorCritic` and `ValueNetwork`.

Initialisation is orthogonal (gain sqrt(2) for hidden layers, 0.01 for the policy head, 1 for
value heads), the choice of PPO implementations that match published results (Engstrom et al.
2020, "Implementation Matters in Deep RL"). Hidden layers are plain `nn.Linear` modules
followed by an in-place activation where its backward allows one; the run's accel plan may
route their large products through oneDNN (`palaestra.accel.linear`).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from palaestra.buffer import AgentBuffer, next_obs_key, obs_key
from palaestra.envs.base import ActionSpec, ObservationSpec
from palaestra.exception import TrainerConfigError
from palaestra.networks.distributions import ActionModel, AgentAction
from palaestra.networks.encoders import ObservationEncoder
from palaestra.settings import Activation, NetworkSettings

# Hidden activations, applied in place on a layer's fresh output where their backward needs
# only their own result: one activation-sized allocation less per layer. SiLU's backward needs
# its input: not in place.
_ACT_FN_INPLACE = {Activation.SWISH: F.silu, Activation.TANH: torch.tanh_,
                   Activation.RELU: torch.relu_}


def obs_tensors(buffer: AgentBuffer, n_obs: int, next_obs: bool = False,
                device: Optional[torch.device] = None) -> List[torch.Tensor]:
    """The observation columns of a buffer as tensors (zero-copy on the CPU)."""
    key = next_obs_key if next_obs else obs_key
    return [torch.as_tensor(buffer[key(i)], dtype=torch.float32, device=device)
            for i in range(n_obs)]


class NetworkBody(nn.Module):
    """Observation encoder followed by `num_layers` fully connected layers."""

    def __init__(self, observation_specs: Sequence[ObservationSpec],
                 network_settings: NetworkSettings) -> None:
        super().__init__()
        if network_settings.memory is not None:
            raise TrainerConfigError(
                "recurrent networks (network_settings.memory) are not supported by palaestra "
                "yet; remove the memory section", key="network_settings.memory",
                value=network_settings.memory.as_dict())
        ns = network_settings
        self.encoder = ObservationEncoder(observation_specs, ns.normalize, ns.hidden_units,
                                          ns.vis_encode_type, ns.activation)
        sizes = [self.encoder.output_size] + [ns.hidden_units] * ns.num_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for layer in self.layers:
            nn.init.orthogonal_(layer.weight, math.sqrt(2))
            nn.init.zeros_(layer.bias)
        self.act = _ACT_FN_INPLACE[ns.activation]
        self.output_size = ns.hidden_units
        self.memory_size = 0

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.encoder(inputs)
        for layer in self.layers:
            x = self.act(layer(x))
        return x

    def update_normalization(self, buffer: AgentBuffer) -> None:
        n_obs = len(self.encoder.vector_index) + len(self.encoder.visual_index)
        device = self.layers[0].weight.device
        self.encoder.update_normalization(obs_tensors(buffer, n_obs, device=device))


class SimpleActor(nn.Module):
    """A policy network: body + action model. Acting and evaluating share the body."""

    def __init__(self, observation_specs: Sequence[ObservationSpec],
                 network_settings: NetworkSettings, action_spec: ActionSpec,
                 conditional_sigma: bool = False, tanh_squash: bool = False) -> None:
        super().__init__()
        self.action_spec = action_spec
        self.network_body = NetworkBody(observation_specs, network_settings)
        self.action_model = ActionModel(self.network_body.output_size, action_spec,
                                        conditional_sigma, tanh_squash,
                                        network_settings.deterministic)
        self.memory_size = 0

    def update_normalization(self, buffer: AgentBuffer) -> None:
        self.network_body.update_normalization(buffer)

    def get_action_and_stats(self, inputs: Sequence[torch.Tensor],
                             masks: Optional[torch.Tensor] = None,
                             memories: Optional[torch.Tensor] = None, sequence_length: int = 1
                             ) -> Tuple[AgentAction, torch.Tensor, torch.Tensor,
                                        Optional[torch.Tensor]]:
        """Sample actions: (action, log_probs (B,), entropy (B,), memories)."""
        action, log_probs, entropy = self.action_model(self.network_body(inputs), masks)
        return action, log_probs, entropy, memories

    def get_stats(self, inputs: Sequence[torch.Tensor], actions: AgentAction,
                  masks: Optional[torch.Tensor] = None, memories: Optional[torch.Tensor] = None,
                  sequence_length: int = 1) -> Dict[str, torch.Tensor]:
        """Log-probs and entropy of given actions under the current policy."""
        log_probs, entropy = self.action_model.evaluate(self.network_body(inputs), actions, masks)
        return {"log_probs": log_probs, "entropy": entropy}


class _ValueHeads(nn.Module):
    def __init__(self, hidden: int, stream_names: Sequence[str], outputs_per_stream: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, outputs_per_stream)
                                    for name in stream_names})
        for head in self.heads.values():
            nn.init.orthogonal_(head.weight, 1.0)
            nn.init.zeros_(head.bias)

    def forward(self, h: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {name: head(h).squeeze(-1) for name, head in self.heads.items()}


class ValueNetwork(nn.Module):
    """A critic with one value head per reward stream: `critic_pass` -> ({name: (B,)}, mem)."""

    def __init__(self, stream_names: Sequence[str], observation_specs: Sequence[ObservationSpec],
                 network_settings: NetworkSettings, outputs_per_stream: int = 1) -> None:
        super().__init__()
        self.network_body = NetworkBody(observation_specs, network_settings)
        self.value_heads = _ValueHeads(self.network_body.output_size, stream_names,
                                       outputs_per_stream)
        self.memory_size = 0

    def update_normalization(self, buffer: AgentBuffer) -> None:
        self.network_body.update_normalization(buffer)

    def critic_pass(self, inputs: Sequence[torch.Tensor], memories: Optional[torch.Tensor] = None,
                    sequence_length: int = 1
                    ) -> Tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]:
        return self.value_heads(self.network_body(inputs)), memories

    def forward(self, inputs: Sequence[torch.Tensor]) -> Dict[str, torch.Tensor]:
        return self.critic_pass(inputs)[0]


class SharedActorCritic(SimpleActor):
    """Actor and critic on one body: `stream_names` name the value heads."""

    def __init__(self, observation_specs: Sequence[ObservationSpec],
                 network_settings: NetworkSettings, action_spec: ActionSpec,
                 stream_names: Sequence[str], conditional_sigma: bool = False,
                 tanh_squash: bool = False) -> None:
        super().__init__(observation_specs, network_settings, action_spec, conditional_sigma,
                         tanh_squash)
        self.stream_names = list(stream_names)
        self.value_heads = _ValueHeads(self.network_body.output_size, stream_names, 1)

    def critic_pass(self, inputs: Sequence[torch.Tensor], memories: Optional[torch.Tensor] = None,
                    sequence_length: int = 1
                    ) -> Tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]:
        return self.value_heads(self.network_body(inputs)), memories
