"""Fully connected layers whose large products go through oneDNN on the CPU.

torch sends a CPU float32 matrix product to MKL, and MKL picks its kernels by the processor's
maker: on AMD processors it runs its AVX2 code even where the processor has AVX-512, and there
oneDNN (which torch also ships, and which picks kernels from the processor's features alone)
can be twice as fast (a 256^3 product: 310 us against 145-150 us on a 2-core AMD EPYC Zen 5).
On other processors it is the other way round (a 2-core EPYC Zen 3 with AVX2 only: 815-1016 us
through oneDNN against 723-864 us through MKL). So this path is never built in: the accel plan
switches it on where `palaestra.accel.calibrate` measured it faster on this machine.

`linear(x, weight, bias)` is `F.linear` with the same maths and gradients (float32 throughout);
it uses oneDNN for each of the three products (forward, input gradient, weight gradient) whose
size is at least `MIN_PRODUCT` multiply-adds, where oneDNN's fixed cost (~10 us a call) is paid
back, and torch's own kernels otherwise: on other devices, other dtypes, under tracing,
compiling or torch.func transforms, and for second-order gradients. `use_onednn_linears`
switches the `nn.Linear` layers of a module to it. `tests/test_accel_linear.py` checks values
and gradients against `F.linear`.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# Multiply-adds from which a product goes to oneDNN. Alone, oneDNN wins from about 2^19 (at
# 64^3 MKL takes 6 us, oneDNN 17 us; at 130x128x128 32 vs 40 us); inside an update the Python
# backward of this module's autograd Function (~25 us a layer, holding the GIL that a side
# thread may be waiting for) moves the break-even up: POCA's 64-unit update ran 4% slower with
# 2^19 and 7% faster with 2^22 than with MKL alone. SAC's 256^3 products are 2^24.
MIN_PRODUCT = 1 << 22


def onednn_available() -> bool:
    """Whether this torch build has the oneDNN product this module calls."""
    try:
        return bool(torch.backends.mkldnn.is_available()) and \
            hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


# Where torch's own kernels must be used; both checks exist only in newer torch releases.
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)
_transforming = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


def _product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b.T for 2-D float32 CPU tensors, by whichever kernel is faster at its size."""
    if a.shape[0] * a.shape[1] * b.shape[0] >= MIN_PRODUCT:
        return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    return a @ b.t()


def _wanted(ctx: object, i: int) -> bool:
    """Whether this backward pass uses the gradient of the Function's input i: a custom
    Function's `needs_input_grad` says only whether the input requires grad, but a pass with
    `backward(inputs=...)` may not want it (SAC's policy loss goes through the critics without
    wanting their weights' gradients, two of the update's 16 large products)."""
    if not ctx.needs_input_grad[i]:  # type: ignore[attr-defined]
        return False
    node = ctx.next_functions[i][0]  # type: ignore[attr-defined]
    try:
        return node is None or torch._C._will_engine_execute_node(node)
    except (AttributeError, RuntimeError):  # autograd.grad on a leaf: not known, so compute it
        return True


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,  # type: ignore[override]
                bias: Optional[torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad: torch.Tensor  # type: ignore[override]
                 ) -> Tuple[Optional[torch.Tensor], ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = (_wanted(ctx, i) for i in range(3))
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            return (grad @ weight if need_x else None, grad.t() @ x if need_w else None,
                    grad.sum(0) if need_b else None)
        grad = grad.contiguous()
        return (_product(grad, weight.t()) if need_x else None,
                _product(grad.t(), x.t()) if need_w else None,
                grad.sum(0) if need_b else None)


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and weight.dim() == 2 and x.dim() >= 2
            and x.numel() * weight.shape[0] >= MIN_PRODUCT
            and not torch.jit.is_tracing() and not _compiling() and not _transforming())


def linear(x: torch.Tensor, weight: torch.Tensor,
           bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`, large products through oneDNN on the CPU. Leading
    dimensions of `x` are flattened for the product and restored."""
    if not _use_onednn(x, weight):
        return F.linear(x, weight, bias)
    flat = x.contiguous() if x.dim() == 2 else x.reshape(-1, x.shape[-1]).contiguous()
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or
                                    (bias is not None and bias.requires_grad)):
        out = _OneDNNLinear.apply(flat, weight, bias)
    else:  # nothing to differentiate (targets, value estimates): the op without a Function
        out = torch.ops.mkldnn._linear_pointwise(flat, weight, bias, "none", [], "")
    return out if x.dim() == 2 else out.view(*x.shape[:-1], weight.shape[0])


class OneDNNLinear(nn.Linear):
    """`nn.Linear` (same parameters, same state dict) applied with `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def use_onednn_linears(module: nn.Module) -> int:
    """Apply every plain `nn.Linear` of `module` with `linear` from now on (their class becomes
    `OneDNNLinear`, which adds nothing but its `forward`: parameters, state dict and copies are
    unchanged). Subclasses of `nn.Linear` are left alone: they may compute something else.
    Returns how many layers were switched; none without oneDNN in this torch build."""
    if not onednn_available():
        return 0
    switched = 0
    for layer in module.modules():
        if type(layer) is nn.Linear:
            layer.__class__ = OneDNNLinear
            switched += 1
    return switched
