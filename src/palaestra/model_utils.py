"""`ModelUtils`: the loss pieces and schedules every trainer reuses (the spec's helper class)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from palaestra.settings import ScheduleType


class DecayedValue:
    """A hyperparameter that decays linearly from `initial_value` to `min_value` at
    `max_step` (ML-Agents' polynomial decay of power 1), or stays constant."""

    def __init__(self, schedule: ScheduleType, initial_value: float, min_value: float,
                 max_step: int) -> None:
        self.schedule = schedule
        self.initial_value = initial_value
        self.min_value = min_value
        self.max_step = max_step

    def get_value(self, global_step: int) -> float:
        if self.schedule == ScheduleType.CONSTANT:
            return self.initial_value
        return ModelUtils.polynomial_decay(self.initial_value, self.min_value, self.max_step,
                                           global_step)


class ModelUtils:
    DecayedValue = DecayedValue

    @staticmethod
    def polynomial_decay(initial_value: float, min_value: float, max_step: int, global_step: int,
                         power: float = 1.0) -> float:
        step = min(global_step, max_step)
        frac = 1.0 - step / max(max_step, 1)
        return (initial_value - min_value) * frac ** power + min_value

    @staticmethod
    def update_learning_rate(optim: Any, lr: float) -> None:
        """Works with torch.optim optimizers and palaestra's `Adam` (both have param_groups)."""
        for group in optim.param_groups:
            group["lr"] = lr

    @staticmethod
    def set_gradients(params: Sequence[torch.Tensor],
                      *grads: Sequence[Optional[torch.Tensor]]) -> None:
        """`p.grad` = the sum of `p`'s gradients in each list (None entries skipped; None
        where no list has one): what `backward()` of the summed losses on zeroed gradients
        leaves, for gradients taken apart (`TorchOptimizer.accel.parallel_grads`)."""
        for i, p in enumerate(params):
            present = [g[i] for g in grads if g[i] is not None]
            if not present:
                p.grad = None
                continue
            total = present[0]
            for g in present[1:]:
                total = total + g
            p.grad = total

    @staticmethod
    @torch.no_grad()
    def soft_update(source: torch.nn.Module, target: torch.nn.Module, tau: float) -> None:
        """target <- tau * source + (1 - tau) * target, parameter by parameter (Polyak
        averaging of target networks; tau = 1 copies). Buffers, such as observation
        normalisers, are copied as they are: averaging running statistics means nothing."""
        src, dst = list(source.parameters()), list(target.parameters())
        if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src, dst)):
            raise ValueError("soft_update needs two modules of the same architecture")
        for a, b in zip(src, dst):
            if tau >= 1.0:
                b.copy_(a)
            else:
                b.lerp_(a, tau)
        for s_buf, t_buf in zip(source.buffers(), target.buffers()):
            t_buf.copy_(s_buf)

    @staticmethod
    def list_to_tensor(arrays: Sequence[np.ndarray] | np.ndarray,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(arrays), dtype=dtype)

    @staticmethod
    def masked_mean(tensor: torch.Tensor, masks: Optional[torch.Tensor]) -> torch.Tensor:
        """Mean over the rows where `masks` is 1 (padding of sequences is 0); `None` = all."""
        if masks is None:
            return tensor.mean()
        masks = masks.to(tensor.dtype)
        if tensor.dim() > masks.dim():
            masks = masks.reshape(masks.shape + (1,) * (tensor.dim() - masks.dim()))
            masks = masks.expand_as(tensor)
        return (tensor * masks).sum() / torch.clamp(masks.sum(), min=1.0)

    @staticmethod
    def trust_region_policy_loss(advantages: torch.Tensor, log_probs: torch.Tensor,
                                 old_log_probs: torch.Tensor,
                                 loss_masks: Optional[torch.Tensor], epsilon: float
                                 ) -> torch.Tensor:
        """PPO's clipped surrogate objective, negated (Schulman et al. 2017, eq. 7)."""
        ratio = torch.exp(log_probs - old_log_probs)
        unclipped = ratio * advantages
        clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon) * advantages
        return -ModelUtils.masked_mean(torch.min(unclipped, clipped), loss_masks)

    @staticmethod
    def trust_region_value_loss(values: Dict[str, torch.Tensor],
                                old_values: Dict[str, torch.Tensor],
                                returns: Dict[str, torch.Tensor], epsilon: float,
                                loss_masks: Optional[torch.Tensor]) -> torch.Tensor:
        """Clipped value loss, averaged over reward streams: the new value may move at most
        `epsilon` from the value at collection time before the loss stops rewarding it."""
        losses = []
        for name, head in values.items():
            old, target = old_values[name], returns[name]
            clipped = old + torch.clamp(head - old, -epsilon, epsilon)
            loss = torch.max((target - head) ** 2, (target - clipped) ** 2)
            losses.append(ModelUtils.masked_mean(loss, loss_masks))
        return torch.stack(losses).mean()
