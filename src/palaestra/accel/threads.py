"""A second thread for work made of two independent halves (SAC's critics and policy losses,
POCA's value and baseline passes).

The products of RL-sized networks are too small for torch's intra-op threads to pay off, but
torch releases the GIL inside its kernels: two halves on two Python threads, one intra-op
thread each, run side by side on two cores. The halves only compute: they draw no random
numbers (callers draw them first, in a fixed order) and step no optimizer (gradients come back
to the caller, who steps on its own thread), so results do not depend on whether the thread
exists.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

import torch

A = TypeVar("A")
B = TypeVar("B")
Grads = List[Optional[torch.Tensor]]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def side_thread_pays(device: torch.device) -> bool:
    """A side thread helps where the halves run on a CPU with a core to spare and torch uses
    one intra-op thread (with more, the two halves would fight over the cores)."""
    return device.type == "cpu" and torch.get_num_threads() == 1 and usable_cores() >= 2


def make_worker(name: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix=name, initializer=torch.set_num_threads,
                              initargs=(1,))


def run_pair(worker: Optional[ThreadPoolExecutor], first: Callable[[], A],
             second: Callable[[], B]) -> Tuple[A, B]:
    """`(first(), second())`: `second` on the worker while `first` runs here, or both here one
    after the other without a worker. Grad mode is per thread: each half sets its own."""
    if worker is None:
        return first(), second()
    future = worker.submit(second)
    try:
        a = first()
    finally:
        b = future.result()  # also on failure: the worker must be done before the caller goes on
    return a, b


def gradients(loss_fn: Callable[[], Tuple[torch.Tensor, A]],
              params: Sequence[torch.Tensor]) -> Tuple[A, Grads]:
    """What `loss_fn` returned beside its loss, and d loss / d params (None for a parameter
    the loss does not use)."""
    with torch.enable_grad():
        loss, extra = loss_fn()
        grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return extra, list(grads)
