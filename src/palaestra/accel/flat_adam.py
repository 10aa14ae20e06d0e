"""Adam (Kingma & Ba 2015) on one flat buffer of parameters, the accel path of `palaestra.Adam`.

Why: on the CPU, torch.optim.Adam's multi-tensor path loops over parameters (six small ops per
tensor a step) and ``clip_grad_norm_`` takes one norm per tensor; with the small networks of RL
those per-tensor ops cost more than the arithmetic (~300 us a step for PPO's two 64x2 MLPs).
Here the parameters are views into one flat tensor (as DDP's ``gradient_as_bucket_view`` does
for gradients), and so are the moments, so a step is an optional global-norm clip and one call
of torch's fused Adam kernel (the private ``torch._fused_adam_`` that
``torch.optim.Adam(fused=True)`` uses) over the parameters' own gradients; without that kernel
(another device, an older build), one ``cat`` of the gradients and four in-place ops on the flat
buffers. If something replaces a parameter's storage (``module.to(device)``, ``p.data = ...``),
the next step notices and re-flattens. `tests/test_optim.py` checks it against
``torch.optim.Adam`` (and ``clip_grad_norm_``) step by step.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch


def _fused_kernel_runs(device: torch.device) -> bool:
    """Whether torch's fused Adam kernel runs on this device (asked on scratch tensors, so that
    a refusal never happens halfway through a real step)."""
    t = [torch.zeros(1, device=device) for _ in range(4)]
    try:
        torch._fused_adam_([t[0]], [t[1]], [t[2]], [t[3]], [], [torch.ones((), device=device)],
                           lr=0.0, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                           amsgrad=False, maximize=False)
    except (AttributeError, NotImplementedError, RuntimeError):  # a build without the kernel
        return False
    return True


class FlatAdam:
    """The moments and the update; `palaestra.Adam` keeps the hyperparameters and the state
    format. `fused=False` forces the five-op path (tests)."""

    def __init__(self, params: Sequence[torch.nn.Parameter], fused: bool = True) -> None:
        self.params = list(params)
        first = self.params[0]
        self._sizes = [p.numel() for p in self.params]
        total = sum(self._sizes)
        self.steps = 0
        self.exp_avg = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.exp_avg_sq = torch.zeros(total, dtype=first.dtype, device=first.device)
        self._fused: Optional[bool] = None if fused else False
        self._versions_as_list = True
        self._flatten()

    # -- the flat buffer -----------------------------------------------------------------------
    @torch.no_grad()
    def _flatten(self) -> None:
        """Move the parameters' values into one flat tensor and make each parameter a view."""
        self._flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        for p, chunk in zip(self.params, self._flat.split(self._sizes)):
            p.data = chunk.view_as(p)
        self._ptrs = [p.data_ptr() for p in self.params]
        if self.exp_avg.device != self._flat.device:  # the modules moved (module.to(device))
            self.exp_avg = self.exp_avg.to(self._flat.device)
            self.exp_avg_sq = self.exp_avg_sq.to(self._flat.device)
        self._avg_views = [m.view_as(p) for m, p in zip(self.exp_avg.split(self._sizes),
                                                        self.params)]
        self._sq_views = [v.view_as(p) for v, p in zip(self.exp_avg_sq.split(self._sizes),
                                                       self.params)]

    def _increment_versions(self) -> None:
        """The parameters are not autograd views of the flat buffer (their own version
        counters): bump them, so that autograd refuses a backward through values this step
        overwrote. One call for all where torch takes a list, one each where it takes a single
        tensor (torch 2.4)."""
        if self._versions_as_list:
            try:
                torch.autograd.graph.increment_version(self.params)
                return
            except (TypeError, RuntimeError):  # 2.4: RuntimeError, before bumping anything
                self._versions_as_list = False
        for p in self.params:
            torch.autograd.graph.increment_version(p)

    # -- the step ------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, lr: float, betas: Tuple[float, float], eps: float,
             max_grad_norm: Optional[float]) -> Optional[float]:
        """One Adam step on the parameters that have a gradient (as torch.optim.Adam, the
        others and their moments are left alone). Returns the gradients' global norm before
        clipping when `max_grad_norm` clips, else None."""
        grads = [p.grad for p in self.params]
        if all(g is None for g in grads):
            return None
        self.steps += 1
        if any(p.data_ptr() != ptr for p, ptr in zip(self.params, self._ptrs)):
            self._flatten()
        if self._fused is None:
            self._fused = _fused_kernel_runs(self._flat.device)
        beta1, beta2 = betas
        if self._fused:
            norm = self._fused_step(grads, lr, beta1, beta2, eps, max_grad_norm)
        else:
            norm = self._plain_step(grads, lr, beta1, beta2, eps, max_grad_norm)
        self._increment_versions()
        return norm

    def _fused_step(self, grads: List[Optional[torch.Tensor]], lr: float, beta1: float,
                    beta2: float, eps: float, max_grad_norm: Optional[float]
                    ) -> Optional[float]:
        """One call of the fused kernel on each parameter's own gradient: no `cat` of the
        gradients first (for SAC's critics that copy took longer than the step). Clipping
        scales the gradients in place first, as ``clip_grad_norm_`` does."""
        present = [i for i, g in enumerate(grads) if g is not None]
        grad_list = [g for g in grads if g is not None]
        norm_value = None
        if max_grad_norm is not None:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grad_list)))
            norm_value = float(norm)
            torch._foreach_mul_(grad_list, torch.clamp(max_grad_norm / (norm + 1e-6), max=1.0))
        # the kernel reads the step count (this step's, counting from 1) for the corrections
        step = torch.tensor(float(self.steps), device=self._flat.device)
        torch._fused_adam_([self.params[i] for i in present], grad_list,
                           [self._avg_views[i] for i in present],
                           [self._sq_views[i] for i in present], [], [step] * len(present),
                           lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps,
                           amsgrad=False, maximize=False)
        return norm_value

    def _plain_step(self, grads: List[Optional[torch.Tensor]], lr: float, beta1: float,
                    beta2: float, eps: float, max_grad_norm: Optional[float]
                    ) -> Optional[float]:
        """Without the kernel: the update written out, on the whole flat buffer when every
        parameter has a gradient, else parameter by parameter (clipping over those that have
        one, as ``clip_grad_norm_`` skips the others)."""
        present = [g for g in grads if g is not None]
        flat_grad = torch.cat([g.reshape(-1) for g in present])
        norm_value, scale = None, 1.0
        if max_grad_norm is not None:
            norm_value = float(torch.linalg.vector_norm(flat_grad))
            scale = min(1.0, max_grad_norm / (norm_value + 1e-6))
        bias1 = 1.0 - beta1 ** self.steps
        bias2_sqrt = math.sqrt(1.0 - beta2 ** self.steps)
        if len(present) == len(grads):
            self._update(self._flat, flat_grad.mul_(scale), self.exp_avg, self.exp_avg_sq, lr,
                         beta1, beta2, eps, bias1, bias2_sqrt)
            return norm_value
        chunks = zip(self._flat.split(self._sizes), self.exp_avg.split(self._sizes),
                     self.exp_avg_sq.split(self._sizes))
        for g, (flat_p, m, v) in zip(grads, chunks):
            if g is not None:
                self._update(flat_p, g.reshape(-1) * scale, m, v, lr, beta1, beta2, eps, bias1,
                             bias2_sqrt)
        return norm_value

    @staticmethod
    def _update(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor,
                exp_avg_sq: torch.Tensor, lr: float, beta1: float, beta2: float, eps: float,
                bias1: float, bias2_sqrt: float) -> None:
        exp_avg.lerp_(grad, 1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(eps)
        param.addcdiv_(exp_avg, denom, value=-lr / bias1)

    # -- state -----------------------------------------------------------------------------------
    def moments(self) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Copies of each parameter's first and second moments."""
        return ([t.clone() for t in self.exp_avg.split(self._sizes)],
                [t.clone() for t in self.exp_avg_sq.split(self._sizes)])

    @torch.no_grad()
    def load(self, steps: int, exp_avg: Sequence[torch.Tensor],
             exp_avg_sq: Sequence[torch.Tensor]) -> None:
        device = self.exp_avg.device
        self.exp_avg.copy_(torch.cat([a.reshape(-1) for a in exp_avg]).to(device))
        self.exp_avg_sq.copy_(torch.cat([b.reshape(-1) for b in exp_avg_sq]).to(device))
        self.steps = int(steps)
