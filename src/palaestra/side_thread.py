"""A second thread for updates made of two independent halves (SAC's critics and policy,
POCA's value and baseline passes).

The products of RL-sized networks are too small for torch's intra-op threads to pay off, but
torch releases the GIL inside its kernels: two halves of an update on two Python threads, one
intra-op thread each, run side by side on two cores. Nothing here draws random numbers or
touches gradients: callers keep their draws in a fixed order and sum gradients on one thread,
so results do not depend on whether the thread exists.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Optional, TypeVar

import torch

T = TypeVar("T")


def side_thread(device: torch.device, name: str) -> Optional[ThreadPoolExecutor]:
    """A one-thread executor when the update runs on a CPU with a core to spare for it (and
    torch uses one intra-op thread: with more, the two halves would fight over the cores),
    else None."""
    if device.type != "cpu" or torch.get_num_threads() != 1:
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if cores < 2:
        return None
    return ThreadPoolExecutor(1, thread_name_prefix=name, initializer=torch.set_num_threads,
                              initargs=(1,))


def run_beside(worker: Optional[ThreadPoolExecutor], fn: Callable[..., T], *args: object
               ) -> "Future[T]":
    """`fn(*args)` on the worker, or right here (already done) without one."""
    if worker is not None:
        return worker.submit(fn, *args)
    future: "Future[T]" = Future()
    future.set_result(fn(*args))
    return future
