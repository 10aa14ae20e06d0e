#!/usr/bin/env python3
"""Environment worker processes against in-process stepping, on a simulator that is slow.

The environment sleeps ``--ms`` milliseconds a step (2 by default), standing for a physics
engine or a game: sleeping needs no core, so what is measured is how well the workers overlap
their copies' steps and what a round trip through the pipe and the shared blocks costs, not how
many cores the machine has. ``--copies`` copies (8) are stepped with random actions, in-process
(``num_workers: 0``) and in 1, 2, 4 and 8 worker processes; each row is agent-steps per second
over ``--steps`` steps after a short warm-up, and its ratio to one worker.

    python bench/workers_speed.py
    python bench/workers_speed.py --ms 5 --copies 16 --workers 0,1,4,16 --steps 500

Run by hand; the numbers depend on the machine (named in the output) and on what else runs.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the workers import this file's `sleepy` by module name
    sys.path.insert(0, str(HERE))
if importlib.util.find_spec("palaestra") is None:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parent / "src"))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402


class Sleepy(gym.Env):
    """Sleeps `ms` milliseconds a step; episodes of 100 steps, a 4-value observation."""

    def __init__(self, ms: float = 2.0) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.ms = float(ms)
        self.t = 0

    def reset(self, *, seed: Optional[int] = None, options: Any = None) -> Tuple[Any, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, 4).astype(np.float32), {}

    def step(self, action: Any) -> Tuple[Any, float, bool, bool, dict]:
        time.sleep(self.ms / 1000.0)
        self.t += 1
        obs = self.np_random.uniform(-1, 1, 4).astype(np.float32)
        return obs, float(action), False, self.t >= 100, {}


def sleepy(ms: float = 2.0) -> gym.Env:
    return Sleepy(ms)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def measure(workers: int, copies: int, ms: float, steps: int) -> float:
    """Agent-steps per second of `copies` copies in `workers` processes (0: in-process)."""
    from palaestra.envs import make_environment
    from palaestra.envs.workers import WorkerEnv, WorkerSettings

    env_args = {"ms": ms}
    env = WorkerEnv("workers_speed:sleepy", env_args, copies, 0, WorkerSettings(workers)) \
        if workers else make_environment("workers_speed:sleepy", env_args, copies, 0)
    try:
        name = next(iter(env.behavior_specs))
        spec = env.behavior_specs[name].action_spec
        rng = np.random.default_rng(0)
        pool = [spec.random_action(copies, rng) for _ in range(16)]
        env.reset()
        start = 0.0
        for i in range(steps + 10):  # 10 steps of warm-up
            if i == 10:
                start = time.perf_counter()
            env.get_steps(name)
            env.set_actions(name, pool[i % len(pool)])
            env.step()
        env.get_steps(name)  # the last step's results
        return steps * copies / (time.perf_counter() - start)
    finally:
        env.close()


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ms", type=float, default=2.0, help="Sleep per step (2 ms).")
    parser.add_argument("--copies", type=int, default=8, help="Environment copies (8).")
    parser.add_argument("--workers", default="0,1,2,4,8",
                        help="Worker counts to run, 0 for in-process (0,1,2,4,8).")
    parser.add_argument("--steps", type=int, default=300, help="Timed steps per row (300).")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    print(f"# {machine()}")
    print(f"# {args.copies} copies sleeping {args.ms:g} ms a step, {args.steps} timed steps")
    rows = [(w, measure(w, args.copies, args.ms, args.steps)) for w in counts]
    one = dict(rows).get(1)
    print(f"{'workers':>14}  {'agent-steps/s':>13}  {'vs 1 worker':>11}")
    for w, rate in rows:
        label = "in-process" if w == 0 else str(w)
        ratio = f"{rate / one:.2f}x" if one else "-"
        print(f"{label:>14}  {rate:13.0f}  {ratio:>11}")


if __name__ == "__main__":
    main()
