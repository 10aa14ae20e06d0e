"""Observation encoders: normalised vectors and the ML-Agents family of visual encoders.

Visual observations arrive channel-last (H, W, C) in [0, 1]; encoders permute to (C, H, W).
Minimum image sizes follow the receptive fields of each encoder, and a too-small image is a
configuration error at start-up, not a shape error mid-run.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn

from palaestra.envs.base import ObservationKind, ObservationSpec
from palaestra.exception import TrainerConfigError
from palaestra.settings import Activation, EncoderType

MIN_RESOLUTION = {EncoderType.SIMPLE: 20, EncoderType.NATURE_CNN: 36, EncoderType.RESNET: 15,
                  EncoderType.MATCH3: 5, EncoderType.FULLY_CONNECTED: 1}


def activation(kind: Activation) -> nn.Module:
    return {Activation.SWISH: nn.SiLU, Activation.TANH: nn.Tanh, Activation.RELU: nn.ReLU}[kind]()


class Normalizer(nn.Module):
    """Running mean and variance (Chan et al. parallel update), applied with clipping to ±5.

    Buffers, not parameters: saved in checkpoints, never trained."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + 1e-8), -5.0, 5.0)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge a batch's mean and variance into the running ones, in place (7 small ops:
        this runs once per trajectory for the actor and once for the critic)."""
        x = x.reshape(-1, self.mean.shape[0])
        n = x.shape[0]
        if n == 0:
            return
        batch_var, batch_mean = torch.var_mean(x, dim=0, unbiased=False)
        count = float(self.count)
        total = count + n
        delta = batch_mean - self.mean
        self.mean.add_(delta, alpha=n / total)
        # var_new = (var*count + batch_var*n + delta^2 * count*n/total) / total
        self.var.mul_(count / total).add_(batch_var, alpha=n / total)
        self.var.addcmul_(delta, delta, value=count * n / (total * total))
        self.count.fill_(total)


def _conv_out(module: nn.Module, shape: Tuple[int, int, int]) -> int:
    with torch.no_grad():
        return int(module(torch.zeros(1, shape[2], shape[0], shape[1])).numel())


def visual_encoder(kind: EncoderType, shape: Tuple[int, ...], out_size: int,
                   act: Activation) -> nn.Module:
    h, w, c = shape
    if min(h, w) < MIN_RESOLUTION[kind]:
        raise TrainerConfigError(
            f"vis_encode_type {kind.value} needs images of at least {MIN_RESOLUTION[kind]}x"
            f"{MIN_RESOLUTION[kind]}, got {h}x{w}", key="network_settings.vis_encode_type",
            value=kind.value, allowed=", ".join(
                e.value for e, m in MIN_RESOLUTION.items() if min(h, w) >= m))
    if kind == EncoderType.SIMPLE:
        conv = nn.Sequential(nn.Conv2d(c, 16, 8, 4), nn.LeakyReLU(), nn.Conv2d(16, 32, 4, 2),
                             nn.LeakyReLU(), nn.Flatten())
    elif kind == EncoderType.NATURE_CNN:
        conv = nn.Sequential(nn.Conv2d(c, 32, 8, 4), nn.LeakyReLU(), nn.Conv2d(32, 64, 4, 2),
                             nn.LeakyReLU(), nn.Conv2d(64, 64, 3, 1), nn.LeakyReLU(), nn.Flatten())
    elif kind == EncoderType.RESNET:
        layers: List[nn.Module] = []
        channels = c
        for out_ch in (16, 32, 32):
            layers += [nn.Conv2d(channels, out_ch, 3, padding=1), nn.MaxPool2d(3, 2, 1),
                       _ResidualBlock(out_ch), _ResidualBlock(out_ch)]
            channels = out_ch
        conv = nn.Sequential(*layers, nn.LeakyReLU(), nn.Flatten())
    elif kind == EncoderType.MATCH3:
        conv = nn.Sequential(nn.Conv2d(c, 35, 3, padding=1), nn.LeakyReLU(),
                             nn.Conv2d(35, 144, 3, padding=1), nn.LeakyReLU(), nn.Flatten())
    else:
        conv = nn.Flatten()
    flat = _conv_out(conv, (h, w, c))
    return nn.Sequential(_ChannelFirst(), conv, nn.Linear(flat, out_size), activation(act))


class _ChannelFirst(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.LeakyReLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.LeakyReLU(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ObservationEncoder(nn.Module):
    """All observations of a behavior -> one flat feature vector.

    Vector observations are concatenated (after optional normalisation); each visual
    observation gets its own encoder producing `hidden_units` features."""

    def __init__(self, specs: Sequence[ObservationSpec], normalize: bool, hidden_units: int,
                 vis_encode_type: EncoderType, act: Activation) -> None:
        super().__init__()
        self.vector_index = [i for i, s in enumerate(specs) if s.kind == ObservationKind.VECTOR]
        self.visual_index = [i for i, s in enumerate(specs) if s.kind == ObservationKind.VISUAL]
        self.vector_size = sum(int(specs[i].shape[0]) for i in self.vector_index)
        self.normalizer = Normalizer(self.vector_size) if normalize and self.vector_size else None
        self.visual = nn.ModuleList(
            visual_encoder(vis_encode_type, specs[i].shape, hidden_units, act)
            for i in self.visual_index)
        self.output_size = self.vector_size + hidden_units * len(self.visual_index)

    def vector(self, obs: Sequence[torch.Tensor]) -> torch.Tensor:
        parts = [obs[i] for i in self.vector_index]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def forward(self, obs: Sequence[torch.Tensor]) -> torch.Tensor:
        feats = []
        if self.vector_size:
            x = self.vector(obs)
            feats.append(self.normalizer(x) if self.normalizer is not None else x)
        feats += [enc(obs[i]) for enc, i in zip(self.visual, self.visual_index)]
        return feats[0] if len(feats) == 1 else torch.cat(feats, dim=-1)

    def update_normalization(self, obs: Sequence[torch.Tensor]) -> None:
        if self.normalizer is not None:
            self.normalizer.update(self.vector(obs))
