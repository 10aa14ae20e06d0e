"""`palaestra.accel`: the one place where palaestra trades plainness for speed.

Everything else (the algorithms, the networks, the trainers) is plain torch. Here, and only
here, live private torch APIs, threads, ctypes and process-wide tuning:

| path | module | what it buys (2-core AMD EPYCs; docs/benchmarks.md) |
|---|---|---|
| large products through oneDNN | `linear` | 2x a product on AVX-512 AMD processors, slower on AVX2-only ones: used only where `calibrate` measured it faster |
| Adam on one flat buffer, fused kernel | `flat_adam` | 2-3x faster optimizer steps on small nets, no 2.5 s `torch._dynamo` import |
| acting through a NumPy mirror of the actor | `numpy_actor` | ~250 us -> ~25 us an acting step |
| two gradient halves on two threads | `threads` | SAC's and POCA's updates on two cores |
| one torch thread, denormals flushed, malloc thresholds | `process` | see its docstring |

Together, on a Zen 3 EPYC (2026-12-07): PPO trains 1.6-1.9x faster than with `off`, SAC
1.2-1.5x.

One setting switches it: `torch_settings.accel` (`auto` or `off`; `palaestra learn --accel`).
`Accel.from_mode` makes the run's plan, `prepare_trainer` applies it to a built trainer, and a
trainer's optimizer reaches it as `self.accel` (`run_pair`, `parallel_grads`), which with
`off` (and wherever no core is free) run the halves one after the other, in the same order and
with the same results. `tests/` passes with either mode (`PALAESTRA_TEST_ACCEL=off`).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, Sequence, Tuple, TypeVar, Union

import torch
from torch import nn

from palaestra.accel.threads import Grads, gradients, make_worker, run_pair, side_thread_pays

A = TypeVar("A")
B = TypeVar("B")

ACCEL_MODES = ("auto", "off")


class Accel:
    """Which speed paths a run uses. Build it with `off()`, `auto(device)` or
    `from_mode(mode, device)`; the flags are fixed once built."""

    def __init__(self, mode: str = "off", onednn_linear: bool = False, flat_adam: bool = False,
                 numpy_acting: bool = False, side_thread: bool = False) -> None:
        self.mode = mode
        self.onednn_linear = onednn_linear
        self.flat_adam = flat_adam
        self.numpy_acting = numpy_acting
        self.side_thread = side_thread
        self._worker: Optional[ThreadPoolExecutor] = None

    @classmethod
    def off(cls) -> "Accel":
        """Plain torch everywhere."""
        return cls("off")

    @classmethod
    def auto(cls, device: Union[str, torch.device] = "cpu") -> "Accel":
        """Every path that pays on this machine and device: oneDNN where measured faster
        (`palaestra.accel.calibrate`), the side thread where a core is free and torch runs
        one thread, the CPU-only paths on the CPU."""
        device = torch.device(device)
        cpu = device.type == "cpu"
        onednn = False
        if cpu:
            from palaestra.accel.calibrate import onednn_pays

            onednn = onednn_pays()
        return cls("auto", onednn_linear=onednn, flat_adam=True, numpy_acting=cpu,
                   side_thread=side_thread_pays(device))

    @classmethod
    def from_mode(cls, mode: str, device: Union[str, torch.device] = "cpu") -> "Accel":
        if mode == "off":
            return cls.off()
        if mode == "auto":
            return cls.auto(device)
        raise ValueError(f"accel mode {mode!r}: use one of {', '.join(ACCEL_MODES)}")

    def describe(self) -> str:
        on = [name for name, flag in (("oneDNN products", self.onednn_linear),
                                      ("flat Adam", self.flat_adam),
                                      ("NumPy acting", self.numpy_acting),
                                      ("side thread", self.side_thread)) if flag]
        return f"accel {self.mode}: {', '.join(on) if on else 'plain torch'}"

    # -- applying the plan ---------------------------------------------------------------------
    def prepare_trainer(self, trainer: Any) -> None:
        """Apply the plan to a built trainer: its saved modules' `nn.Linear` layers (oneDNN),
        every `palaestra.Adam` its optimizer holds (as an attribute or among its saved
        modules), its policies' acting path, and `trainer.optimizer.accel` for the optimizer's
        `run_pair` / `parallel_grads`."""
        from palaestra.optim import Adam

        optimizer = trainer.optimizer
        holders = [*trainer.checkpoint_modules().values(), *vars(optimizer).values()]
        for held in holders:
            if isinstance(held, nn.Module) and self.onednn_linear:
                from palaestra.accel.linear import use_onednn_linears

                use_onednn_linears(held)
            elif isinstance(held, Adam):
                held.accelerate(self.flat_adam)
        for policy in trainer.policies.values():
            policy.act_with_numpy(self.numpy_acting)
        optimizer.accel = self

    # -- two halves side by side -----------------------------------------------------------------
    def run_pair(self, first: Callable[[], A], second: Callable[[], B]) -> Tuple[A, B]:
        """`(first(), second())`, `second` on the side thread when the plan has one. Neither
        may draw random numbers or step an optimizer."""
        if self.side_thread and self._worker is None:
            self._worker = make_worker("palaestra-side")
        return run_pair(self._worker, first, second)

    def parallel_grads(self, loss_a: Callable[[], Tuple[torch.Tensor, A]],
                       params_a: Sequence[torch.Tensor],
                       loss_b: Callable[[], Tuple[torch.Tensor, B]],
                       params_b: Sequence[torch.Tensor]
                       ) -> Tuple[Tuple[A, Grads], Tuple[B, Grads]]:
        """The gradients of two independent losses, d loss_a / d params_a and d loss_b /
        d params_b, each with what its loss function returned beside the loss. Each function
        returns `(loss, extra)`; both see the parameters as they are now (step optimizers
        afterwards, on this thread). With a side thread the two run side by side."""
        return self.run_pair(lambda: gradients(loss_a, params_a),
                             lambda: gradients(loss_b, params_b))

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None


__all__ = ["ACCEL_MODES", "Accel"]
