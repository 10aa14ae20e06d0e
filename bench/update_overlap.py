#!/usr/bin/env python3
"""SAC with copies in worker processes: `threaded` on (gradient steps paced) against off.

With worker processes (and Unity builds) palaestra sends a step's actions and returns at once;
the trainers then advance while the copies simulate the next step, which is awaited only when
its results are needed. But an off-policy trainer receives steps a trajectory at a time (every
`time_horizon` steps of an agent), so its gradient steps come due in bursts: unpaced
(`threaded: false`) it takes a whole burst in one advance while the copies, one step ahead,
wait. Paced (`threaded: true`, the default where copies step in other processes) each advance
takes a share of the burst (`OffPolicyTrainer.paced_gradient_steps`) and the copies simulate
during it, as ML-Agents' `threaded` lets the environment step while the model updates.

SAC on an environment that sleeps `--ms` a step (bench/workers_speed.py's), `--copies` copies
in as many workers, one gradient step per environment step of all copies; each order run
`--repeats` times, alternating. The table gives training-loop agent-steps/s and the last
summary's return (the two orders learn from the same steps, the paced one up to a horizon
later).

    python bench/update_overlap.py
    python bench/update_overlap.py --ms 5 --steps 3000 --repeats 3

Run by hand on a quiet machine; the numbers depend on it (named in the output).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent / "src"):
    if str(path) not in sys.path:  # workers import `workers_speed:sleepy` by module name
        sys.path.insert(0, str(path))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(HERE), str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])
os.environ.setdefault("PALAESTRA_NO_PROGRESS", "1")
os.environ.setdefault("PALAESTRA_NO_ONNX", "1")

from workers_speed import machine  # noqa: E402


def config(copies: int, steps: int) -> Dict[str, Any]:
    return {"default_settings": {
        "trainer_type": "sac",
        "hyperparameters": {"batch_size": 256, "buffer_size": 100000, "buffer_init_steps": 100,
                            "learning_rate": 1e-3, "steps_per_update": float(copies)},
        "network_settings": {"hidden_units": 256, "num_layers": 2, "normalize": False},
        "max_steps": steps, "summary_freq": steps // 2, "time_horizon": 64}}


def run(threaded: bool, ms: float, copies: int, steps: int, folder: str
        ) -> Tuple[float, float]:
    """(training-loop agent-steps/s, last summary's mean reward) of one run."""
    import palaestra

    settings = config(copies, steps)
    settings["default_settings"]["threaded"] = threaded
    result = palaestra.learn(settings, run_id=f"threaded-{threaded}",
                             env="workers_speed:sleepy", env_args=[f"ms={ms}"],
                             num_envs=copies, num_workers=copies, seed=1, results_dir=folder,
                             force=True, tune_process=False)
    timers = json.loads((Path(result.path) / "run_logs" / "timers.json").read_text())
    loop = float(timers["training_loop"]["total_s"])
    (name, stats), = result.stats.items()
    return result.steps[name] / loop, stats.get("Environment/Cumulative Reward", float("nan"))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ms", type=float, default=2.0, help="Sleep per step (2 ms).")
    parser.add_argument("--copies", type=int, default=2, help="Copies, one per worker (2).")
    parser.add_argument("--steps", type=int, default=1000, help="Agent steps per run (1000).")
    parser.add_argument("--repeats", type=int, default=2, help="Runs per order, alternating.")
    args = parser.parse_args(argv)
    print(f"# {machine()}")
    print(f"# SAC, {args.copies} copies sleeping {args.ms:g} ms a step in {args.copies} "
          f"workers, {args.steps} agent steps, one gradient step per environment step")
    rows: Dict[bool, List[Tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for threaded in rows:
                rows[threaded].append(run(threaded, args.ms, args.copies, args.steps, folder))
    base = sorted(r for r, _ in rows[False])[len(rows[False]) // 2]
    print(f"{'threaded':>8}  {'agent-steps/s (each run)':>26}  {'median vs off':>13}  "
          f"{'return':>8}")
    for threaded, results in rows.items():
        rates = sorted(r for r, _ in results)
        median = rates[len(rates) // 2]
        each = ", ".join(f"{r:.1f}" for r, _ in results)
        print(f"{str(threaded).lower():>8}  {each:>26}  {median / base:12.2f}x  "
              f"{results[0][1]:8.2f}")


if __name__ == "__main__":
    main()
