#!/usr/bin/env python3
"""Environment worker processes against in-process stepping, on a simulator that is slow.

The environment sleeps ``--ms`` milliseconds a step (2 by default), standing for a physics
engine or a game: sleeping needs no core, so what is measured is how well the workers overlap
their copies' steps and what a round trip through the pipe and the shared blocks costs, not how
many cores the machine has. ``--copies`` copies (8) are stepped with random actions, in-process
(``num_workers: 0``) and in 1, 2, 4 and 8 worker processes; each row is agent-steps per second
over ``--steps`` steps after a short warm-up, and its ratio to one worker. Where Ray is
installed, rows marked ``ray`` put the copies in 1, 2, 4 and 8 Ray actors instead
(``env_settings.ray`` on a local Ray: chunks of 64 steps, acting in the actors, the steps
replayed here), beside the worker processes' rows of the same count (after them: a running
Ray would take some of the cores from the worker processes' rows).

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

_HAVE_RAY = importlib.util.find_spec("ray") is not None


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


def measure(workers: int, copies: int, ms: float, steps: int, ready: bool = False) -> float:
    """Agent-steps per second of `copies` copies in `workers` processes (0: in-process);
    `ready`: worker_sync ready (a step takes the workers that have answered)."""
    from palaestra.envs import make_environment
    from palaestra.envs.workers import WorkerEnv, WorkerSettings

    env_args = {"ms": ms}
    settings = WorkerSettings(workers, ready_only=ready)
    env = WorkerEnv("workers_speed:sleepy", env_args, copies, 0, settings) \
        if workers else make_environment("workers_speed:sleepy", env_args, copies, 0)
    try:
        name = next(iter(env.behavior_specs))
        spec = env.behavior_specs[name].action_spec
        rng = np.random.default_rng(0)
        pool = [spec.random_action(copies, rng) for _ in range(16)]
        env.reset()
        start, done = 0.0, 0
        for i in range(steps + 10):  # 10 steps of warm-up
            if i == 10:
                start, done = time.perf_counter(), 0
            decision, _ = env.get_steps(name)
            done += len(decision)  # with worker_sync ready, the copies that answered
            actions = pool[i % len(pool)]
            env.set_actions(name, type(actions)(actions.continuous[:len(decision)],
                                                actions.discrete[:len(decision)]))
            env.step()
        return done / (time.perf_counter() - start)
    finally:
        env.close()


def measure_ray(actors: int, copies: int, ms: float, steps: int) -> float:
    """Agent-steps per second of `copies` copies in `actors` Ray actors (`env_settings.ray`,
    a local Ray): each actor collects chunks of 64 steps acting with its own small policy, and
    this process replays every step through an agent processor, as in a run (so a little more
    work than the worker rows, whose actions are random and whose steps go nowhere). Ray is
    started once, with as many logical CPUs as actors: the copies sleep, they need no core."""
    import ray

    from palaestra.accel import Accel
    from palaestra.agent_processor import AgentProcessor
    from palaestra.networks.networks import SimpleActor
    from palaestra.policy import TorchPolicy
    from palaestra.scale.ray_fleet import FleetSettings, RayFleet
    from palaestra.scale.ray_manager import RayEnvManager
    from palaestra.settings import NetworkSettings
    from palaestra.stats import StatsReporter
    from palaestra.timers import Timers

    if not ray.is_initialized():
        ray.init(num_cpus=max(8, copies), include_dashboard=False, logging_level="WARNING")
    chunk = 64
    fleet = RayFleet.start(FleetSettings("workers_speed:sleepy", {"ms": ms}, copies, 0,
                                         num_actors=actors, chunk_steps=chunk))
    try:
        name, spec = next(iter(fleet.behavior_specs.items()))
        policy = TorchPolicy(0, spec, NetworkSettings(hidden_units=16, num_layers=1),
                             SimpleActor, {"conditional_sigma": False, "tanh_squash": False})
        # acting in the actors as a run does by default (accel auto: the NumPy mirror on a CPU)
        manager = RayEnvManager(fleet, Timers(), Accel.auto("cpu").numpy_acting)
        manager.add_behavior(name, policy, AgentProcessor(
            name, spec, 64, StatsReporter(name, []), lambda trajectory: None))
        manager.reset()
        for _ in range(actors):  # warm-up: every actor's first chunk
            manager.advance()
        rounds = max(1, -(-steps // chunk))
        start = time.perf_counter()
        for _ in range(rounds * actors):  # each advance replays one actor's chunk
            manager.advance()
        return rounds * chunk * copies / (time.perf_counter() - start)
    finally:
        fleet.close()


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ms", type=float, default=2.0, help="Sleep per step (2 ms).")
    parser.add_argument("--copies", type=int, default=8, help="Environment copies (8).")
    parser.add_argument("--workers", default="0,1,2,4,8",
                        help="Worker counts to run, 0 for in-process (0,1,2,4,8).")
    parser.add_argument("--steps", type=int, default=300, help="Timed steps per row (300).")
    parser.add_argument("--sync", default="all,ready,ray" if _HAVE_RAY else "all,ready",
                        help="worker_sync modes to run, comma-separated, and ray for Ray "
                             "actors instead of worker processes (all,ready,ray; ray only "
                             "where it is installed).")
    parser.add_argument("--repeats", type=int, default=1,
                        help="Rows per setting, interleaved (1); the table shows each.")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    syncs = args.sync.split(",")
    print(f"# {machine()}")
    per_worker = 1000 / args.ms if args.ms > 0 else None  # agent-steps/s a worker could give
    print(f"# {args.copies} copies sleeping {args.ms:g} ms a step (ideal: "
          f"{f'{per_worker:g}' if per_worker else 'unbounded'} agent-steps/s per worker), "
          f"{args.steps} timed steps")
    rows = []
    for _ in range(args.repeats):
        # the worker processes' rows first, then Ray's: a running Ray (its own daemons and
        # idle workers) would take some of the cores from the worker processes' rows
        for w in counts:
            for sync in (["-"] if w == 0 else [s for s in syncs if s != "ray"]):
                rows.append((w, sync, measure(w, args.copies, args.ms, args.steps,
                                              sync == "ready")))
        if "ray" in syncs:
            rows += [(w, "ray", measure_ray(w, args.copies, args.ms, args.steps))
                     for w in counts if w]
            import ray

            ray.shutdown()
    # by count, then setting, each setting's repeats together
    rows.sort(key=lambda row: (row[0], syncs.index(row[1]) if row[1] in syncs else -1))
    one = {sync: rate for w, sync, rate in rows if w == 1}
    print(f"{'workers':>10}  {'sync':>5}  {'agent-steps/s':>13}  {'vs 1 worker':>11}  "
          f"{'of ideal':>8}")
    for w, sync, rate in rows:
        label = "in-process" if w == 0 else str(w)
        base = one.get(sync)
        ratio = f"{rate / base:.2f}x" if base else "-"
        ideal = f"{rate / (per_worker * min(w or 1, args.copies)):.0%}" if per_worker else "-"
        print(f"{label:>10}  {sync:>5}  {rate:13.0f}  {ratio:>11}  {ideal:>8}")


if __name__ == "__main__":
    main()
