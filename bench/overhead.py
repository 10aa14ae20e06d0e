"""Where a palaestra run's time goes, against the irreducible work timed alone.

Runs `palaestra learn` on a config, reads `run_logs/timers.json`, then times alone, on the same
networks and environment: the environment steps (random actions), the batched acting forward
passes and the gradient steps, each as many times as the run did them (twice, keeping the
faster). The share of the training loop outside those three is the framework's overhead. It also
prints the share outside the same three sections as timed inside the run, which a busy machine
distorts less (both sides slow down together).

    python bench/overhead.py src/palaestra/configs/ppo/CartPole.yaml --max-steps 50000
    python bench/overhead.py bench/configs/ppo_cartpole_cleanrl.yaml --env CartPole-v1 --num-envs 4
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Dict, List, Optional

os.environ.setdefault("PALAESTRA_NO_PROGRESS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from palaestra.cli import main as palaestra_main  # noqa: E402
from palaestra.config import load_run_options  # noqa: E402
from palaestra.controller import TrainerController  # noqa: E402
from palaestra.envs import make_environment  # noqa: E402
from palaestra.registry import TrainerRegistry  # noqa: E402


def run_and_read_timers(args: argparse.Namespace, results: str) -> Dict[str, Dict[str, float]]:
    cli = ["learn", args.config, "--run-id", "overhead", "--results-dir", results, "--force",
           "--seed", str(args.seed)]
    for flag, value in (("--env", args.env), ("--num-envs", args.num_envs),
                        ("--max-steps", args.max_steps)):
        if value is not None:
            cli += [flag, str(value)]
    if palaestra_main(cli) != 0:
        raise SystemExit("the training run failed")
    with open(os.path.join(results, "overhead", "run_logs", "timers.json")) as fh:
        return json.load(fh)


def controller_for(args: argparse.Namespace, results: str) -> TrainerController:
    overrides = {"checkpoint_settings": {"run_id": "alone", "results_dir": results,
                                         "force": True}}
    env_over = {k: v for k, v in (("env_path", args.env), ("num_envs", args.num_envs)) if v}
    if env_over:
        overrides["env_settings"] = env_over
    registry = TrainerRegistry.from_entry_points()
    options = load_run_options(args.config, registry, overrides)
    es = options.env_settings
    env = make_environment(es.env_path, es.env_args, es.num_envs, args.seed)
    controller = TrainerController(options, registry, env, [], args.seed)
    controller._create_trainers()
    return controller


def time_alone(controller: TrainerController, n_steps: int, n_grad: int) -> Dict[str, float]:
    env = controller.env_manager.env
    rng = np.random.default_rng(0)
    env.reset()
    names = list(env.behavior_specs)
    env_s = act_s = 0.0
    for _ in range(n_steps):  # environment alone: random actions
        for name in names:
            decision, _ = env.get_steps(name)
            env.set_actions(name, env.behavior_specs[name].action_spec.random_action(
                len(decision), rng))
        start = time.perf_counter()
        env.step()
        env_s += time.perf_counter() - start
    for name in names:  # acting alone: the batched forward pass on a real batch
        policy = controller.trainers[name].policy
        decision, _ = env.get_steps(name)
        policy.get_action(decision)
        start = time.perf_counter()
        for _ in range(n_steps):
            policy.get_action(decision)
        act_s += time.perf_counter() - start
    grad_s = 0.0
    for name in names:  # gradient steps alone, on a minibatch of real experience
        trainer = controller.trainers[name]
        manager = controller.env_manager
        hp = trainer.hyperparameters
        while trainer.update_buffer.num_experiences < hp.batch_size:
            manager.advance()
            for t in controller.trainers.values():
                for trajectory in t._queue:
                    t._process_trajectory(trajectory)
                t._queue.clear()
        batch = trainer.update_buffer.make_mini_batch(0, hp.batch_size)
        trainer.optimizer.update(batch, hp.batch_size)
        start = time.perf_counter()
        for _ in range(n_grad):
            trainer.optimizer.update(batch, hp.batch_size)
        grad_s += time.perf_counter() - start
    return {"env_step": env_s, "policy_act": act_s, "gradient_step": grad_s}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--env", default=None)
    p.add_argument("--num-envs", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as results:
        timers = run_and_read_timers(args, results)
        torch.manual_seed(args.seed)
        controller = controller_for(args, results)
        n_steps = int(timers["env_step"]["count"])
        n_grad = int(timers.get("gradient_step", {"count": 0})["count"])
        # Twice, keeping the faster of each section: a shared machine's noise only ever
        # slows a section down, and a slow "alone" time would hide the framework's share.
        first = time_alone(controller, n_steps, n_grad)
        second = time_alone(controller, n_steps, n_grad)
        alone = {key: min(first[key], second[key]) for key in first}
    loop = timers["training_loop"]["total_s"]
    print(f"\ntraining loop: {loop:.2f} s, {n_steps} environment steps, {n_grad} gradient steps")
    print(f"{'section':<20}{'in the run (s)':>16}{'alone (s)':>12}")
    for key in ("env_step", "policy_act", "gradient_step", "agent_processor",
                "process_trajectory", "save_model"):
        in_run = timers.get(key, {}).get("total_s", 0.0)
        alone_s = alone.get(key)
        print(f"{key:<20}{in_run:>16.2f}{'' if alone_s is None else f'{alone_s:.2f}':>12}")
    irreducible = sum(alone.values())
    in_run = sum(timers.get(key, {}).get("total_s", 0.0)
                 for key in ("env_step", "policy_act", "gradient_step"))
    print(f"{'irreducible':<20}{in_run:>16.2f}{irreducible:>12.2f}")
    print(f"outside the irreducible work: {(loop - irreducible) / loop:.1%} of the loop "
          f"(irreducible timed alone), {(loop - in_run) / loop:.1%} (the same sections as "
          f"timed in the run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
