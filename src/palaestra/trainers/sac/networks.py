"""SAC's twin Q critics. Each takes the observations and the continuous action (as one more
vector observation, normalised with the rest) and gives, per reward stream, one value for a
continuous action, or one value per action of every discrete branch (with the continuous
action as input, for a hybrid action)."""
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from palaestra import (ActionSpec, AgentBuffer, BufferKey, NetworkBody, NetworkSettings,
                       ObservationKind, ObservationSpec, obs_tensors)


class QNetwork(nn.Module):
    def __init__(self, stream_names: Sequence[str], observation_specs: Sequence[ObservationSpec],
                 network_settings: NetworkSettings, action_spec: ActionSpec) -> None:
        super().__init__()
        self.n_obs = len(observation_specs)
        self.continuous = action_spec.continuous_size
        specs = list(observation_specs)
        if self.continuous:
            specs.append(ObservationSpec((self.continuous,), ObservationKind.VECTOR, "action"))
        self.network_body = NetworkBody(specs, network_settings)
        outputs = max(1, sum(action_spec.discrete_branches))
        self.heads = nn.ModuleDict({name: nn.Linear(self.network_body.output_size, outputs)
                                    for name in stream_names})

    def forward(self, obs: Sequence[torch.Tensor], continuous: torch.Tensor
                ) -> Dict[str, torch.Tensor]:
        inputs = list(obs) + ([continuous] if self.continuous else [])
        h = self.network_body(inputs)
        return {name: head(h) for name, head in self.heads.items()}

    def update_normalization(self, buffer: AgentBuffer) -> None:
        inputs: List[torch.Tensor] = obs_tensors(buffer, self.n_obs)
        if self.continuous:
            inputs.append(torch.as_tensor(buffer[BufferKey.CONTINUOUS_ACTION]))
        self.network_body.encoder.update_normalization(inputs)


class TwinQ(nn.Module):
    """Two independent Q networks; targets use their minimum (Fujimoto et al. 2018)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.q1 = QNetwork(*args, **kwargs)
        self.q2 = QNetwork(*args, **kwargs)

    def forward(self, obs: Sequence[torch.Tensor], continuous: torch.Tensor
                ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        return self.q1(obs, continuous), self.q2(obs, continuous)

    def update_normalization(self, buffer: AgentBuffer) -> None:
        self.q1.update_normalization(buffer)
        self.q2.update_normalization(buffer)
