#!/usr/bin/env python3
"""Raw simulation speed of palaestra's built-in environments, in agent-steps per second.

For every environment registered in ``palaestra.envs.builtin.BUILTIN_ENVS`` (or those named with
``--envs``) and every agent count, the script builds the vectorised core, draws random actions
from its ``action_spec`` in advance, and then times only ``core.step(actions)`` plus
``core.reset_agents(done)`` for the agents whose episode ended: no observation, no adapter, no
policy. One agent-step is one decision of one agent.

    python bench/env_speed.py                          # all built-ins, 256 / 1024 / 4096 agents
    python bench/env_speed.py --envs 3DBall --agents 64,256 --seconds 2

The process is pinned to one CPU core (where the OS allows it) and numeric libraries are held to
one thread, so the numbers are per core. Each cell is the best of ``--repeats`` timed windows of
about ``--seconds`` each.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

try:
    import palaestra  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from palaestra.envs.base import ActionSpec, ActionTuple  # noqa: E402
from palaestra.envs.builtin import AGENTS_PER_COPY, BUILTIN_ENVS  # noqa: E402

ACTION_POOL = 64  # distinct random action batches, cycled


def action_kind(spec: ActionSpec) -> str:
    parts = []
    if spec.is_continuous:
        parts.append(f"continuous({spec.continuous_size})")
    if spec.is_discrete:
        parts.append("discrete(" + ",".join(str(b) for b in spec.discrete_branches) + ")")
    return " + ".join(parts) if parts else "none"


def measure(name: str, num_agents: int, seconds: float, repeats: int, seed: int
            ) -> Tuple[float, float]:
    """(agent-steps/s, share of agent-steps that ended an episode), best of `repeats`."""
    core = BUILTIN_ENVS[name](num_agents=num_agents)
    core.seed(seed)
    core.reset_agents(np.ones(num_agents, bool))
    rng = np.random.default_rng(seed)
    pool: List[ActionTuple] = [core.action_spec.random_action(num_agents, rng)
                               for _ in range(ACTION_POOL)]
    step, reset = core.step, core.reset_agents

    def run(n_steps: int) -> Tuple[float, int]:
        ended = 0
        start = time.perf_counter()
        for i in range(n_steps):
            _, terminated, truncated = step(pool[i % ACTION_POOL])
            done = terminated | truncated
            if done.any():
                reset(done)
                ended += int(np.count_nonzero(done))
        return time.perf_counter() - start, ended

    elapsed, _ = run(20)  # warm up, and calibrate the window
    n_steps = 20
    while elapsed < 0.05:
        n_steps *= 4
        elapsed, _ = run(n_steps)
    n_steps = max(1, int(n_steps * seconds / elapsed))
    best, ended_share = 0.0, 0.0
    for _ in range(repeats):
        elapsed, ended = run(n_steps)
        rate = n_steps * num_agents / elapsed
        if rate > best:
            best, ended_share = rate, ended / (n_steps * num_agents)
    return best, ended_share


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", default="", help="comma-separated names (default: all)")
    parser.add_argument("--agents", default="256,1024,4096", help="comma-separated agent counts")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU core")
    args = parser.parse_args(argv)

    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
    # single-agent cores only (multi-agent scenes such as DungeonEscape are BaseEnvs)
    cores = [n for n in BUILTIN_ENVS if n in AGENTS_PER_COPY]
    names = [n for n in args.envs.split(",") if n] or cores
    unknown = [n for n in names if n not in cores]
    if unknown:
        parser.error(f"unknown environment(s) {unknown}; single-agent built-ins: {cores}")
    counts = [int(c) for c in args.agents.split(",") if c]

    header = (f"{'env':<14} {'actions':<22} {'agents':>7} {'agent-steps/s':>14} "
              f"{'us/step':>9} {'episodes ended':>15}")
    print(header)
    print("-" * len(header))
    for name in names:
        kind = action_kind(BUILTIN_ENVS[name](num_agents=1).action_spec)
        for n in counts:
            rate, ended = measure(name, n, args.seconds, args.repeats, args.seed)
            print(f"{name:<14} {kind:<22} {n:>7} {rate:>14,.0f} {n / rate * 1e6:>9.1f} "
                  f"{ended:>14.2%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
