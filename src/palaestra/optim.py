"""`Adam`: the optimizer of palaestra's trainers and of plugins, Adam (Kingma & Ba 2015) with an
optional global gradient-norm clip, and one state format whichever code path steps it.

Plain, it is ``torch.nn.utils.clip_grad_norm_`` then ``torch.optim.Adam`` (no weight decay, no
amsgrad), built on the first step. The run's accel plan (`palaestra.accel`) switches it to
`palaestra.accel.flat_adam.FlatAdam`, the same update on one flat buffer: on the CPU with RL's
small networks that step is 2-3x faster, and it skips the 2.3-2.65 s import of
``torch._dynamo`` that the first step of any ``torch.optim`` optimizer pays. Checkpoints hold
the same state either way, so a run saved with one path resumes with the other.

Duck-type compatible where trainers touch an optimizer: ``param_groups[*]["lr"]`` (for
`ModelUtils.update_learning_rate`), ``zero_grad``, ``step``, ``state_dict``,
``load_state_dict``; `last_grad_norm` is the norm before the last clip.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch

from palaestra.accel.flat_adam import FlatAdam


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
        first = self.params[0]
        if any(p.device != first.device or p.dtype != first.dtype for p in self.params):
            raise ValueError("Adam needs all parameters on one device with one dtype")
        self.param_groups: List[Dict[str, Any]] = [{"params": self.params, "lr": lr,
                                                    "betas": betas, "eps": eps}]
        self.max_grad_norm = max_grad_norm
        self.last_grad_norm = 0.0
        self._torch: Optional[torch.optim.Adam] = None
        self._flat: Optional[FlatAdam] = None
        self._accelerated = False
        self._fused = True
        # (steps, first moments, second moments) loaded before the stepping path existed
        self._pending: Optional[Tuple[int, List[torch.Tensor], List[torch.Tensor]]] = None

    @property
    def accelerated(self) -> bool:
        return self._accelerated

    def accelerate(self, on: bool = True, fused: bool = True) -> None:
        """Step with `FlatAdam` (on) or torch.optim.Adam (off) from now on; the moments and
        the step count carry over. Called by the run's accel plan."""
        if bool(on) == self._accelerated and fused == self._fused:
            return
        state = self._state()
        self._torch = self._flat = None
        self._accelerated = bool(on)
        self._fused = fused
        self._pending = state

    @property
    def steps(self) -> int:
        if self._flat is not None:
            return self._flat.steps
        if self._torch is not None:
            return max((int(s["step"]) for s in self._torch.state.values() if "step" in s),
                       default=0)
        return self._pending[0] if self._pending is not None else 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def step(self) -> None:
        group = self.param_groups[0]
        if self._accelerated:
            norm = self._flat_adam().step(group["lr"], tuple(group["betas"]), group["eps"],
                                          self.max_grad_norm)
        else:
            norm = self._plain_step(group)
        if norm is not None:
            self.last_grad_norm = norm

    def _plain_step(self, group: Dict[str, Any]) -> Optional[float]:
        with_grad = [p for p in self.params if p.grad is not None]
        if not with_grad:
            return None
        norm = None
        if self.max_grad_norm is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(with_grad, self.max_grad_norm))
        adam = self._torch_adam()
        adam.param_groups[0].update(lr=group["lr"], betas=tuple(group["betas"]),
                                    eps=group["eps"])
        adam.step()
        return norm

    # -- the two paths, built when first needed ------------------------------------------------
    def _torch_adam(self) -> torch.optim.Adam:
        if self._torch is None:
            self._torch = torch.optim.Adam(self.params, lr=self.param_groups[0]["lr"])
            if self._pending is not None:
                steps, avg, sq = self._pending
                if steps > 0:
                    for p, a, b in zip(self.params, avg, sq):
                        self._torch.state[p] = {
                            "step": torch.tensor(float(steps)),
                            "exp_avg": a.reshape(p.shape).to(p.device).clone(),
                            "exp_avg_sq": b.reshape(p.shape).to(p.device).clone()}
                self._pending = None
        return self._torch

    def _flat_adam(self) -> FlatAdam:
        if self._flat is None:
            self._flat = FlatAdam(self.params, fused=self._fused)
            if self._pending is not None:
                self._flat.load(*self._pending)
                self._pending = None
        return self._flat

    def _state(self) -> Tuple[int, List[torch.Tensor], List[torch.Tensor]]:
        """(steps, first moments, second moments), one tensor per parameter."""
        if self._flat is not None:
            avg, sq = self._flat.moments()
            return self._flat.steps, avg, sq
        if self._torch is not None:
            states = [self._torch.state.get(p, {}) for p in self.params]
            steps = max((int(s["step"]) for s in states if "step" in s), default=0)
            avg = [s["exp_avg"].clone() if "exp_avg" in s else torch.zeros_like(p)
                   for s, p in zip(states, self.params)]
            sq = [s["exp_avg_sq"].clone() if "exp_avg_sq" in s else torch.zeros_like(p)
                  for s, p in zip(states, self.params)]
            return steps, avg, sq
        if self._pending is not None:
            return self._pending
        zeros = [torch.zeros_like(p) for p in self.params]
        return 0, zeros, [z.clone() for z in zeros]

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        group = self.param_groups[0]
        steps, avg, sq = self._state()
        return {"steps": steps, "lr": group["lr"], "betas": list(group["betas"]),
                "eps": group["eps"], "exp_avg": [a.reshape(-1) for a in avg],
                "exp_avg_sq": [b.reshape(-1) for b in sq]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        saved_avg, saved_sq = state["exp_avg"], state["exp_avg_sq"]
        if len(saved_avg) != len(self.params) or len(saved_sq) != len(self.params):
            raise ValueError(f"optimizer state holds {len(saved_avg)} tensors, this "
                             f"optimizer has {len(self.params)} parameters")
        for p, a, b in zip(self.params, saved_avg, saved_sq):
            if a.numel() != p.numel() or b.numel() != p.numel():
                raise ValueError(f"optimizer state of {a.numel()} values does not match a "
                                 f"parameter of shape {tuple(p.shape)}")
        steps = int(state["steps"])
        if steps < 0:
            raise ValueError(f"optimizer state has a negative step count {steps}")
        loaded = (steps, [a.detach().reshape(p.shape).to(p.device, p.dtype).clone()
                          for a, p in zip(saved_avg, self.params)],
                  [b.detach().reshape(p.shape).to(p.device, p.dtype).clone()
                   for b, p in zip(saved_sq, self.params)])
        self._torch = self._flat = None
        self._pending = loaded
        self.param_groups[0].update(lr=state["lr"], betas=tuple(state["betas"]),
                                    eps=state["eps"])
