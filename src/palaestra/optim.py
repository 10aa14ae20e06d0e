"""Adam (Kingma & Ba 2015) with the same update as ``torch.optim.Adam`` (no weight decay,
no amsgrad), in multi-tensor ``torch._foreach`` form.

Why not ``torch.optim.Adam``: every ``torch.optim.Optimizer`` imports ``torch._dynamo`` on its
first call, which costs 2.5-3 s on a 2-core machine: a third of a whole short training run.
`tests/test_optim.py` checks this class against ``torch.optim.Adam`` step by step.
It is duck-type compatible where trainers touch an optimizer: ``param_groups[*]["lr"]``
(for `ModelUtils.update_learning_rate`), ``zero_grad``, ``step``, ``state_dict`` and
``load_state_dict``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Tuple

import torch


class Adam:
    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params: List[torch.nn.Parameter] = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("Adam got no parameters that require gradients")
        self.param_groups: List[Dict[str, Any]] = [{"params": self.params, "lr": lr,
                                                    "betas": betas, "eps": eps}]
        self.steps = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params = [self.params[i] for i in live]
        grads = [self.params[i].grad for i in live]
        exp_avg = [self.exp_avg[i] for i in live]
        exp_avg_sq = [self.exp_avg_sq[i] for i in live]
        self.steps += 1
        bias1 = 1.0 - beta1 ** self.steps
        bias2_sqrt = math.sqrt(1.0 - beta2 ** self.steps)
        torch._foreach_lerp_(exp_avg, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1.0 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avg, denom, -lr / bias1)

    def state_dict(self) -> Dict[str, Any]:
        group = self.param_groups[0]
        return {"steps": self.steps, "lr": group["lr"], "betas": list(group["betas"]),
                "eps": group["eps"], "exp_avg": [t.clone() for t in self.exp_avg],
                "exp_avg_sq": [t.clone() for t in self.exp_avg_sq]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if len(state["exp_avg"]) != len(self.params):
            raise ValueError(f"optimizer state holds {len(state['exp_avg'])} tensors, this "
                             f"optimizer has {len(self.params)} parameters")
        for mine, saved in zip(self.exp_avg + self.exp_avg_sq,
                               state["exp_avg"] + state["exp_avg_sq"]):
            if mine.shape != saved.shape:
                raise ValueError(f"optimizer state shape {tuple(saved.shape)} does not match "
                                 f"parameter shape {tuple(mine.shape)}")
            mine.copy_(saved)
        self.steps = int(state["steps"])
        self.param_groups[0].update(lr=state["lr"], betas=tuple(state["betas"]),
                                    eps=state["eps"])
