"""Steps per second with 1, 2 and 4 Unity instances (the fake build of tests/fake_unity).

Each instance is a separate process speaking ML-Agents' protocol; `--step-ms` makes each of
its Academy steps cost that much wall time (a scene's physics and rendering), as a real build's
do. palaestra answers every instance before it waits for any, so with N instances a step should
cost about one instance's step, not N: the table shows the ratio against one instance.

What is timed: the training loop of `palaestra learn` (timers.json's `training_loop`: acting,
stepping, trajectory processing), with a PPO buffer larger than the run so that no update
happens inside it (updates cost the same per step whatever the number of instances, and are
measured elsewhere: bench/ppo_speed.py). Start-up (launch, handshake) is left out.

    python bench/unity_instances.py                 # 2 ms steps, 12 agents, 1/2/4 instances
    python bench/unity_instances.py --step-ms 5 --instances 1 2 4 8
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "tests" / "fake_unity" / "FakeBall"


def _processor() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(instances: int, steps_per_instance: int, step_ms: float, agents: int, folder: str
        ) -> tuple:
    import palaestra
    from palaestra.unity.connection import free_base_port

    total = steps_per_instance * agents * instances
    config = {"behaviors": {"3DBall": {
        "trainer_type": "ppo", "max_steps": total, "summary_freq": total,
        "checkpoint_interval": 10 * total, "time_horizon": 1000,
        "hyperparameters": {"batch_size": 64, "buffer_size": 10 * total}}}}
    import resource

    before = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    result = palaestra.learn(config, env=str(BUILD), run_id=f"n{instances}",
                             results_dir=folder, num_envs=instances,
                             base_port=free_base_port(instances), no_graphics=True,
                             env_args=["--step-ms", str(step_ms), "--agents", str(agents)])
    timers = json.loads((Path(result.path) / "run_logs" / "timers.json").read_text())
    after = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    cpu = [a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before)]
    return result.steps["3DBall"], float(timers["training_loop"]["total_s"]), cpu[0], cpu[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--step-ms", type=float, default=2.0)
    p.add_argument("--agents", type=int, default=12)
    p.add_argument("--steps", type=int, default=1500, help="Academy steps per instance")
    args = p.parse_args()
    os.environ.setdefault("FAKE_UNITY_PYTHON", sys.executable)
    os.environ.setdefault("PALAESTRA_NO_PROGRESS", "1")
    os.environ.setdefault("PALAESTRA_NO_ONNX", "1")
    print(f"machine: {_processor()}, {os.cpu_count()} logical cores; fake build: "
          f"{args.agents} agents, {args.step_ms:g} ms per step, {args.steps} steps per "
          "instance")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.instances:
            steps, seconds, trainer_cpu, builds_cpu = run(n, args.steps, args.step_ms,
                                                          args.agents, folder)
            rows.append((n, steps, seconds, steps / seconds, trainer_cpu, builds_cpu))
    base = rows[0][3]
    # CPU seconds of the whole learn() call (start-up included) and of the builds' processes
    print(f"{'instances':>9} {'agent steps':>12} {'loop s':>8} {'steps/s':>9} {'vs 1':>6} "
          f"{'trainer cpu s':>14} {'builds cpu s':>13}")
    for n, steps, seconds, rate, trainer_cpu, builds_cpu in rows:
        print(f"{n:>9} {steps:>12} {seconds:>8.2f} {rate:>9.0f} {rate / base:>5.2f}x "
              f"{trainer_cpu:>14.1f} {builds_cpu:>13.1f}")


if __name__ == "__main__":
    main()
