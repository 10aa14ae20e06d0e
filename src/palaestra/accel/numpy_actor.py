"""A NumPy mirror of a `SimpleActor`/`SharedActorCritic` for acting on the CPU.

Why: acting runs once per environment step on a handful of rows, where each torch operator
costs a few microseconds of dispatch; a 64x2 MLP plus sampling is ~20 torch calls (~250 us)
but ~12 NumPy calls (~25 us). The mirror copies the weights again on the first call after it
was marked `stale`: `TorchPolicy.weights_changed()` does that, and the trainer calls it after
every update, normaliser update and checkpoint load (the contract is written in
docs/plugin-api.md), so it never acts with weights it should not. It covers vector observations (with or without normalisation), Gaussian
(state-independent or conditional sigma, tanh-squashed or not: SAC's actor too) and masked
multi-categorical heads, and every hidden activation; anything else (visual encoders, a
plugin's own actor class) keeps the torch path. `tests/test_numpy_actor.py`
compares both paths.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from palaestra.settings import Activation

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), written with tanh: exp(-x) overflows (with a warning) below x = -88,
    where torch's silu quietly gives -0."""
    return x * (0.5 + 0.5 * np.tanh(0.5 * x))


_ACT = {Activation.TANH: np.tanh, Activation.RELU: lambda x: np.maximum(x, 0.0),
        Activation.SWISH: _silu}


class OneBlasThread:
    """A context in which NumPy's BLAS runs on one thread, its own setting restored after.

    The mirror's products are small (tens of agents by a hundred units), and a multi-threaded
    OpenBLAS wakes its threads for them, which spin-wait for cores that the environment's own
    processes hold: on a loaded 2-core EPYC the NumPy acting path then took about a third of
    the training loop with four Unity instances (py-spy of bench/unity_instances.py through
    `palaestra.learn`, whose process is not tuned unless asked), against a twentieth with one
    BLAS thread. `palaestra learn` sets one BLAS thread for the whole process
    (`accel.process`); this keeps the acting path as fast in a process nobody tuned, for about
    4 us a call (two ctypes calls per BLAS library), and leaves the setting as it found it."""

    def __init__(self) -> None:
        try:
            from threadpoolctl import ThreadpoolController

            self.libraries = [lib for lib in ThreadpoolController().lib_controllers
                              if lib.user_api == "blas"]
        except Exception:  # noqa: BLE001 - no control of the BLAS: products as they come
            self.libraries = []
        self._previous: List[int] = []

    def __enter__(self) -> "OneBlasThread":
        self._previous = [lib.get_num_threads() for lib in self.libraries]
        for lib, threads in zip(self.libraries, self._previous):
            if threads != 1:
                lib.set_num_threads(1)
        return self

    def __exit__(self, *exc: object) -> None:
        for lib, threads in zip(self.libraries, self._previous):
            if threads != 1:
                lib.set_num_threads(threads)


class NumpyActor:
    def __init__(self, actor: torch.nn.Module, activation: Activation, seed: int) -> None:
        self.actor = actor
        self.act = _ACT[activation]
        self.rng = np.random.default_rng(None if seed < 0 else seed + 7919)
        self.stale = True
        self._arange = np.arange(0)
        self.one_blas_thread = OneBlasThread()
        self.sync()

    @staticmethod
    def supports(actor: torch.nn.Module) -> bool:
        from palaestra.networks.networks import SharedActorCritic, SimpleActor

        if type(actor) not in (SimpleActor, SharedActorCritic):  # subclasses may act otherwise
            return False
        encoder = actor.network_body.encoder
        return not encoder.visual_index and encoder.vector_size > 0

    def _rows(self, n: int) -> np.ndarray:
        if len(self._arange) != n:
            self._arange = np.arange(n)
        return self._arange

    def sync(self) -> None:
        """Copy weights from the torch actor (cheap: a few small arrays)."""
        body, model = self.actor.network_body, self.actor.action_model
        with torch.no_grad():
            norm = body.encoder.normalizer
            self.norm: Optional[Tuple[np.ndarray, np.ndarray]] = None
            if norm is not None:
                self.norm = (norm.mean.numpy().copy(),
                             (1.0 / np.sqrt(norm.var.numpy() + 1e-8)).astype(np.float32))
            self.layers = [(l.weight.numpy().T.copy(), l.bias.numpy().copy())
                           for l in body.layers]
            self.mu = None if model.mu is None else (model.mu.weight.numpy().T.copy(),
                                                     model.mu.bias.numpy().copy())
            self.log_sigma = self.log_sigma_head = None
            if model.mu is not None and model.conditional_sigma:
                head = model.log_sigma_head
                self.log_sigma_head = (head.weight.numpy().T.copy(), head.bias.numpy().copy())
            elif model.mu is not None:
                self.log_sigma = model.log_sigma.numpy()[0].copy()
            self.logits = None if model.logits is None else (
                model.logits.weight.numpy().T.copy(), model.logits.bias.numpy().copy())
        self.branches = list(model.branches)
        self.tanh_squash = model.tanh_squash
        self.deterministic = model.deterministic
        self.stale = False

    def __call__(self, obs: Sequence[np.ndarray], mask: Optional[np.ndarray]
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(continuous actions, discrete actions, joint log-probs) for a batch."""
        if self.stale:
            self.sync()
        with self.one_blas_thread:
            return self._act(obs, mask)

    def _act(self, obs: Sequence[np.ndarray], mask: Optional[np.ndarray]
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = obs[0] if len(obs) == 1 else np.concatenate(obs, axis=-1)
        if self.norm is not None:
            x = np.clip((x - self.norm[0]) * self.norm[1], -5.0, 5.0)
        for w, b in self.layers:
            x = self.act(x @ w + b)
        n = x.shape[0]
        log_prob = np.zeros(n, np.float32)
        cont = np.zeros((n, 0), np.float32)
        disc = np.zeros((n, 0), np.int64)
        if self.mu is not None:
            mu = x @ self.mu[0] + self.mu[1]
            if self.log_sigma_head is not None:  # as ActionModel clamps it
                log_sigma = np.clip(x @ self.log_sigma_head[0] + self.log_sigma_head[1],
                                    -20.0, 2.0)
            else:
                log_sigma = self.log_sigma
            if self.deterministic:
                raw = mu
            else:
                raw = mu + self.rng.standard_normal(mu.shape, np.float32) * np.exp(log_sigma)
            z = (raw - mu) * np.exp(-log_sigma)
            log_prob += (-0.5 * z * z - log_sigma - _LOG_SQRT_2PI).sum(-1)
            cont = raw.astype(np.float32)
            if self.tanh_squash:
                cont = np.tanh(raw).astype(np.float32)
                log_prob -= np.log(1.0 - cont * cont + 1e-6).sum(-1)
        if self.logits is not None:
            logits = x @ self.logits[0] + self.logits[1]
            if mask is not None:
                logits = np.where(mask, logits, np.float32(-1e8))
            if not self.deterministic:
                # Exponential race, i.e. Gumbel-max: argmax(logits - log E), E ~ Exp(1)
                perturbed = logits - np.log(self.rng.standard_exponential(logits.shape,
                                                                          np.float32))
            else:
                perturbed = logits
            rows = self._rows(n)
            picks: List[np.ndarray] = []
            start = 0
            for size in self.branches:  # branches, not agents: usually one
                part = logits[:, start:start + size]
                a = perturbed[:, start:start + size].argmax(-1)
                shifted = part - part.max(-1, keepdims=True)  # log-softmax, stable
                log_prob += shifted[rows, a] - np.log(np.exp(shifted).sum(-1))
                start += size
                picks.append(a)
            disc = picks[0][:, None] if len(picks) == 1 else np.stack(picks, -1)
        return cont, disc.astype(np.int64, copy=False), log_prob.astype(np.float32, copy=False)
