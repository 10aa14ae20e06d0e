"""Adam (Kingma & Ba 2015) with the same update as ``torch.optim.Adam`` (no weight decay,
no amsgrad), on one flat buffer of parameters and flat moment buffers.

Why not ``torch.optim.Adam``:
- every ``torch.optim.Optimizer`` imports ``torch._dynamo`` on its first call, 2.5-3 s on a
  2-core machine: a third of a whole short training run;
- on the CPU its multi-tensor path loops over parameters (6 small ops per tensor per step), and
  ``torch.nn.utils.clip_grad_norm_`` takes one norm per tensor: with the small networks of RL,
  those per-tensor ops cost more than the arithmetic (~300 us a step for PPO's two 64x2 MLPs).

Here the parameters are views into one flat tensor (as DDP's ``gradient_as_bucket_view`` does
for gradients), and so are the moments, so a step is an optional global-norm clip and one call
of torch's fused Adam kernel (the one ``torch.optim.Adam(fused=True)`` uses) over the
parameters' own gradients, whatever the number of layers; without that kernel (other devices),
one ``cat`` of the gradients and four in-place ops on the flat buffers. If something replaces a
parameter's storage (``module.to(device)``, ``p.data = ...``), the next step notices and
re-flattens. `tests/test_optim.py` checks this class against ``torch.optim.Adam`` (and
``clip_grad_norm_``) step by step. It is duck-type compatible where trainers touch an optimizer:
``param_groups[*]["lr"]`` (for `ModelUtils.update_learning_rate`), ``zero_grad``, ``step``,
``state_dict``, ``load_state_dict``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch

# Device types on which torch's fused Adam kernel is used (dropped on the first refusal) and
# those already asked.
_FUSED_ON = {"cpu", "cuda"}
_FUSED_ASKED: set = set()
# Whether torch's increment_version takes a list of tensors (dropped on the first refusal).
_VERSIONS_AS_LIST = True


def _increment_versions(tensors: List[torch.nn.Parameter]) -> None:
    """`torch.autograd.graph.increment_version` of every tensor: one call for all of them where
    torch accepts a list, one call each where it takes a single tensor (torch 2.4 does), so
    that the package runs on the torch versions it claims."""
    global _VERSIONS_AS_LIST
    if _VERSIONS_AS_LIST:
        try:
            torch.autograd.graph.increment_version(tensors)
            return
        except (TypeError, RuntimeError):  # 2.4: RuntimeError, before bumping anything
            _VERSIONS_AS_LIST = False
    for tensor in tensors:
        torch.autograd.graph.increment_version(tensor)


def _fused_kernel(device: torch.device) -> bool:
    """Whether torch's fused Adam kernel runs on this device type (asked once, on scratch
    tensors, so that a refusal never happens halfway through a real step)."""
    if device.type not in _FUSED_ON:
        return False
    if device.type in _FUSED_ASKED:
        return True
    _FUSED_ASKED.add(device.type)
    t = [torch.zeros(1, device=device) for _ in range(4)]
    try:
        torch._fused_adam_([t[0]], [t[1]], [t[2]], [t[3]], [], [torch.ones((), device=device)],
                           lr=0.0, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                           amsgrad=False, maximize=False)
    except (AttributeError, NotImplementedError, RuntimeError):  # a build without the kernel
        _FUSED_ON.discard(device.type)
        return False
    return True


class Adam:
    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 max_grad_norm: Optional[float] = None) -> None:
        """`max_grad_norm`: scale the gradients so that their global 2-norm is at most this
        before each update, as ``torch.nn.utils.clip_grad_norm_`` over all `params` would."""
        unique: Dict[int, torch.nn.Parameter] = {}
        for p in params:
            if p.requires_grad:
                unique.setdefault(id(p), p)
        self.params: List[torch.nn.Parameter] = list(unique.values())
        if not self.params:
            raise ValueError("Adam got no parameters that require gradients")
        self.param_groups: List[Dict[str, Any]] = [{"params": self.params, "lr": lr,
                                                    "betas": betas, "eps": eps}]
        first = self.params[0]
        if any(p.device != first.device or p.dtype != first.dtype for p in self.params):
            raise ValueError("Adam needs all parameters on one device with one dtype")
        self.max_grad_norm = max_grad_norm
        self.last_grad_norm = 0.0  # before clipping, over the gradients of the last clipped step
        self.steps = 0
        self._sizes = [p.numel() for p in self.params]
        total = sum(self._sizes)
        self._exp_avg = torch.zeros(total, dtype=first.dtype, device=first.device)
        self._exp_avg_sq = torch.zeros(total, dtype=first.dtype, device=first.device)
        self._flatten()

    @torch.no_grad()
    def _flatten(self) -> None:
        """Move the parameters' values into one flat tensor and make each parameter a view."""
        self._flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        for p, chunk in zip(self.params, self._flat.split(self._sizes)):
            p.data = chunk.view_as(p)
        self._ptrs = [p.data_ptr() for p in self.params]
        if self._exp_avg.device != self._flat.device:  # the modules moved (module.to(device))
            self._exp_avg = self._exp_avg.to(self._flat.device)
            self._exp_avg_sq = self._exp_avg_sq.to(self._flat.device)
        self._avg_views = [m.view_as(p) for m, p in zip(self._exp_avg.split(self._sizes),
                                                        self.params)]
        self._sq_views = [v.view_as(p) for v, p in zip(self._exp_avg_sq.split(self._sizes),
                                                       self.params)]

    def _still_flat(self) -> bool:
        return all(p.data_ptr() == ptr for p, ptr in zip(self.params, self._ptrs))

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
        grads = [p.grad for p in self.params]
        if all(g is None for g in grads):
            return
        self.steps += 1
        bias1 = 1.0 - beta1 ** self.steps
        bias2_sqrt = math.sqrt(1.0 - beta2 ** self.steps)
        if not self._still_flat():
            self._flatten()
        if _fused_kernel(self._flat.device):
            self._fused_step(grads, lr, beta1, beta2, eps)
        elif all(g is not None for g in grads):
            flat_grad = torch.cat([g.reshape(-1) for g in grads])
            if self.max_grad_norm is not None:
                norm = torch.linalg.vector_norm(flat_grad)
                self.last_grad_norm = float(norm)
                # clip_grad_norm_'s rule: scale by max_norm / (norm + 1e-6) when below 1
                flat_grad.mul_(torch.clamp(self.max_grad_norm / (norm + 1e-6), max=1.0))
            self._update(self._flat, flat_grad, self._exp_avg, self._exp_avg_sq, lr, beta1,
                         beta2, eps, bias1, bias2_sqrt)
        else:
            self._step_some(grads, lr, beta1, beta2, eps, bias1, bias2_sqrt)
        # The parameters are not autograd views of the flat buffer (their own version
        # counters): bump them, so that autograd and the NumPy acting mirror see the change.
        _increment_versions(self.params)

    def _fused_step(self, grads: List[Optional[torch.Tensor]], lr: float, beta1: float,
                    beta2: float, eps: float) -> None:
        """The parameters that have a gradient (as torch.optim.Adam, it leaves the others and
        their moments alone), in one call of the fused kernel on each one's own gradient: no
        `cat` of the gradients first (for SAC's critics that copy took longer than the step).
        Clipping scales the gradients in place first, as ``clip_grad_norm_`` does."""
        present = [i for i, g in enumerate(grads) if g is not None]
        grad_list = [grads[i] for i in present]
        if self.max_grad_norm is not None:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grad_list)))
            self.last_grad_norm = float(norm)
            torch._foreach_mul_(grad_list,
                                torch.clamp(self.max_grad_norm / (norm + 1e-6), max=1.0))
        # the kernel reads the step count (this step's, counting from 1) for the corrections
        step = torch.tensor(float(self.steps), device=self._flat.device)
        torch._fused_adam_([self.params[i] for i in present], grad_list,
                           [self._avg_views[i] for i in present],
                           [self._sq_views[i] for i in present], [], [step] * len(present),
                           lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=eps,
                           amsgrad=False, maximize=False)

    def _step_some(self, grads: List[Optional[torch.Tensor]], lr: float, beta1: float,
                   beta2: float, eps: float, bias1: float, bias2_sqrt: float) -> None:
        """Some parameters got no gradient: torch.optim.Adam leaves them (and their moments)
        untouched, so update the others one by one (and clip over those, as
        ``clip_grad_norm_`` skips parameters without a gradient)."""
        present = [g for g in grads if g is not None]
        scale = 1.0
        if self.max_grad_norm is not None:
            norm = float(torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in present])))
            self.last_grad_norm = norm
            scale = min(1.0, self.max_grad_norm / (norm + 1e-6))
        chunks = zip(self._flat.split(self._sizes), self._exp_avg.split(self._sizes),
                     self._exp_avg_sq.split(self._sizes))
        for g, (flat_p, m, v) in zip(grads, chunks):
            if g is not None:
                self._update(flat_p, g.reshape(-1) * scale, m, v, lr, beta1, beta2, eps, bias1,
                             bias2_sqrt)

    def _update(self, param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor,
                exp_avg_sq: torch.Tensor, lr: float, beta1: float, beta2: float, eps: float,
                bias1: float, bias2_sqrt: float) -> None:
        exp_avg.lerp_(grad, 1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(eps)
        param.addcdiv_(exp_avg, denom, value=-lr / bias1)

    def state_dict(self) -> Dict[str, Any]:
        group = self.param_groups[0]
        return {"steps": self.steps, "lr": group["lr"], "betas": list(group["betas"]),
                "eps": group["eps"],
                "exp_avg": [t.clone() for t in self._exp_avg.split(self._sizes)],
                "exp_avg_sq": [t.clone() for t in self._exp_avg_sq.split(self._sizes)]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        saved_avg, saved_sq = state["exp_avg"], state["exp_avg_sq"]
        if len(saved_avg) != len(self.params):
            raise ValueError(f"optimizer state holds {len(saved_avg)} tensors, this "
                             f"optimizer has {len(self.params)} parameters")
        for p, a, b in zip(self.params, saved_avg, saved_sq):
            if a.numel() != p.numel() or b.numel() != p.numel():
                raise ValueError(f"optimizer state of {a.numel()} values does not match a "
                                 f"parameter of shape {tuple(p.shape)}")
        device = self._exp_avg.device
        self._exp_avg.copy_(torch.cat([a.reshape(-1) for a in saved_avg]).to(device))
        self._exp_avg_sq.copy_(torch.cat([b.reshape(-1) for b in saved_sq]).to(device))
        self.steps = int(state["steps"])
        self.param_groups[0].update(lr=state["lr"], betas=tuple(state["betas"]),
                                    eps=state["eps"])
