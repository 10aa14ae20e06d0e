"""ONNX export of a trained policy, in the form ML-Agents' Unity inference reads.

A Unity game runs a trained agent from an `.onnx` file whose graph follows ML-Agents' model
API version 3 (`MLAgents2_0`, opset 9). Its names and constants, as ML-Agents' model
serialisation defines them:

- inputs `obs_0`, `obs_1`, ... (one per observation, batch first; images channel-first, NCHW)
  and `action_masks` (batch, sum of the discrete branches; 1 allowed, 0 masked) when the
  behavior has discrete actions;
- outputs `version_number` ([3]) and `memory_size` ([0]); for continuous actions
  `continuous_actions` (a sample), `continuous_action_output_shape` ([size]) and
  `deterministic_continuous_actions` (the mean); for discrete actions `discrete_actions` (a
  sampled index per branch), `discrete_action_output_shape` ([[n per branch]]) and
  `deterministic_discrete_actions` (the most likely index per branch).

What the environment receives is baked in: observation normalisation (the actor's own
normaliser), and continuous actions clipped to [-3, 3] and divided by 3, as ML-Agents clips them
(a tanh-squashed policy, SAC's, is already in [-1, 1]). Exporting needs the `onnx` package
(`pip install "palaestra[onnx]"`); a run without it keeps its `.pt` checkpoints and says so once.
"""
from __future__ import annotations

import io
import logging
import warnings
from typing import Any, List, Sequence, Tuple

import torch
from torch import nn

from palaestra.envs.base import BehaviorSpec
from palaestra.networks.distributions import ActionModel

logger = logging.getLogger("palaestra")

ONNX_OPSET = 9
MODEL_API_VERSION = 3  # ML-Agents' ModelApiVersion.MLAgents2_0
_MASKED_LOGIT = -1e8


def onnx_available() -> bool:
    """Whether the `onnx` package, which torch's exporter writes with, is installed."""
    import importlib.util

    return importlib.util.find_spec("onnx") is not None


def exportable(actor: Any) -> bool:
    """Whether `actor` has the parts this export reads: a `network_body` (observations ->
    encoding) and an `ActionModel` head, as `SimpleActor` and `SharedActorCritic` do."""
    return isinstance(getattr(actor, "action_model", None), ActionModel) and \
        isinstance(getattr(actor, "network_body", None), nn.Module)


class InferenceGraph(nn.Module):
    """The actor's acting step with ML-Agents' inputs and outputs (see the module docstring)."""

    def __init__(self, actor: nn.Module, spec: BehaviorSpec) -> None:
        super().__init__()
        self.body = actor.network_body
        self.head: ActionModel = actor.action_model  # type: ignore[assignment]
        self.shapes = [tuple(o.shape) for o in spec.observation_specs]
        self.continuous = spec.action_spec.continuous_size
        self.branches = list(spec.action_spec.discrete_branches)
        self.register_buffer("version_number", torch.tensor([float(MODEL_API_VERSION)]))
        self.register_buffer("memory_size", torch.tensor([0.0]))
        self.register_buffer("continuous_shape", torch.tensor([float(self.continuous)]))
        self.register_buffer("discrete_shape", torch.tensor([[float(b) for b in self.branches]]))

    def forward(self, *inputs: torch.Tensor) -> Sequence[torch.Tensor]:
        n = len(self.shapes)
        obs: List[torch.Tensor] = [x.permute(0, 2, 3, 1) if len(shape) == 3 else x
                                   for x, shape in zip(inputs[:n], self.shapes)]
        h = self.body(obs)
        out = [self.version_number, self.memory_size]
        if self.continuous:
            mu, log_sigma = self.head._gaussian(h)
            sample = mu + torch.randn_like(mu) * torch.exp(log_sigma)
            if self.head.tanh_squash:
                sample, mean = torch.tanh(sample), torch.tanh(mu)
            else:
                sample, mean = torch.clamp(sample, -3, 3) / 3, torch.clamp(mu, -3, 3) / 3
            out += [sample, self.continuous_shape, mean]
        if self.branches:
            logits = self.head.logits(h)
            logits = torch.where(inputs[n] > 0.5, logits, torch.full_like(logits, _MASKED_LOGIT))
            picks, modes = [], []
            start = 0
            for size in self.branches:
                part = logits[:, start:start + size]
                start += size
                # Gumbel-max, as the training path samples: argmax(logits - log(-log U))
                u = torch.clamp(torch.rand_like(part), 1e-10, 1.0)
                picks.append(torch.argmax(part - torch.log(-torch.log(u)), dim=1, keepdim=True))
                modes.append(torch.argmax(part, dim=1, keepdim=True))
            out += [torch.cat(picks, 1), self.discrete_shape, torch.cat(modes, 1)]
        return tuple(out)


def onnx_shape(shape: Sequence[int]) -> Tuple[int, ...]:
    """An observation's shape as the ONNX file takes it: images channel-first (NCHW)."""
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


def input_names(spec: BehaviorSpec) -> List[str]:
    names = [f"obs_{i}" for i in range(len(spec.observation_specs))]
    return names + (["action_masks"] if spec.action_spec.discrete_branches else [])


def output_names(spec: BehaviorSpec) -> List[str]:
    names = ["version_number", "memory_size"]
    if spec.action_spec.continuous_size:
        names += ["continuous_actions", "continuous_action_output_shape",
                  "deterministic_continuous_actions"]
    if spec.action_spec.discrete_branches:
        names += ["discrete_actions", "discrete_action_output_shape",
                  "deterministic_discrete_actions"]
    return names


def onnx_bytes(actor: nn.Module, spec: BehaviorSpec) -> bytes:
    """The `.onnx` file of `actor` (on the CPU, a copy: the training actor is not touched)."""
    import copy

    graph = InferenceGraph(copy.deepcopy(actor).cpu().eval(), spec)
    dummy: List[torch.Tensor] = [torch.zeros(1, *onnx_shape(s)) for s in graph.shapes]
    if graph.branches:
        dummy.append(torch.ones(1, sum(graph.branches)))
    names_in, names_out = input_names(spec), output_names(spec)
    axes = {name: {0: "batch"} for name in names_in}
    axes.update({name: {0: "batch"} for name in names_out if "actions" in name})
    data = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # torch >= 2.9 calls the TorchScript exporter "legacy"; the newer one cannot write opset 9
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, tuple(dummy), data, opset_version=ONNX_OPSET, dynamo=False,
                          input_names=names_in, output_names=names_out, dynamic_axes=axes)
    return data.getvalue()
