"""`QNetwork`: one Q-value per action of every discrete branch, per reward stream, and
epsilon-greedy acting with action masks.

Several branches are valued independently (an action-branching architecture, Tavakoli et al.
2018): Q_b(s, a_b) per branch b, greedy per branch. Several reward streams each get a head;
acting is greedy on their sum.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from palaestra import (ActionSpec, AgentAction, AgentBuffer, NetworkBody, NetworkSettings,
                       ObservationSpec)


class QNetwork(nn.Module):
    def __init__(self, observation_specs: Sequence[ObservationSpec],
                 network_settings: NetworkSettings, action_spec: ActionSpec,
                 stream_names: Sequence[str] = ("extrinsic",)) -> None:
        super().__init__()
        self.action_spec = action_spec
        self.branches: List[int] = list(action_spec.discrete_branches)
        self.stream_names = list(stream_names)
        self.network_body = NetworkBody(observation_specs, network_settings)
        self.q_heads = nn.ModuleDict({name: nn.Linear(self.network_body.output_size,
                                                      sum(self.branches))
                                      for name in self.stream_names})
        self.exploration_rate = 1.0  # set by the trainer from its schedule
        self.memory_size = 0

    def update_normalization(self, buffer: AgentBuffer) -> None:
        self.network_body.update_normalization(buffer)

    def critic_pass(self, inputs: Sequence[torch.Tensor], memories: Optional[torch.Tensor] = None,
                    sequence_length: int = 1
                    ) -> Tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]:
        """Q-values {stream: (B, sum of branch sizes)}."""
        h = self.network_body(inputs)
        return {name: head(h) for name, head in self.q_heads.items()}, memories

    @staticmethod
    def summed(values: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The streams' Q-values added up: acting and the double-DQN target choose by the
        total. (Python's sum() would do, but its type includes the int 0 it starts from.)"""
        heads = iter(values.values())
        total = next(heads)
        for head in heads:
            total = total + head
        return total

    def greedy(self, q: torch.Tensor, masks: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The argmax action of each branch, (B, branches), among allowed actions."""
        if masks is not None:
            q = q.masked_fill(~masks.bool(), float("-inf"))
        return torch.stack([part.argmax(-1) for part in torch.split(q, self.branches, -1)],
                           -1)

    def get_action_and_stats(self, inputs: Sequence[torch.Tensor],
                             masks: Optional[torch.Tensor] = None,
                             memories: Optional[torch.Tensor] = None, sequence_length: int = 1
                             ) -> Tuple[AgentAction, torch.Tensor, torch.Tensor,
                                        Optional[torch.Tensor]]:
        """Greedy on the summed streams; each agent explores (uniformly among its allowed
        actions) with probability `exploration_rate`, independently of the others."""
        values, _ = self.critic_pass(inputs)
        q = self.summed(values)
        action = self.greedy(q, masks)
        n = q.shape[0]
        explore = torch.rand(n) < self.exploration_rate
        if bool(explore.any()):
            noise = torch.rand_like(q)  # argmax of uniform noise = a uniform allowed action
            random_action = self.greedy(noise, masks)
            action = torch.where(explore[:, None], random_action, action)
        zeros = q.new_zeros(n)
        return AgentAction(q.new_zeros((n, 0)), action), zeros, zeros, memories
