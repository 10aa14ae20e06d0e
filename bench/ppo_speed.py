#!/usr/bin/env python3
"""Speed benchmark: PPO on CartPole-v1, palaestra against Stable-Baselines3 (and CleanRL).

Every system trains with the same hyperparameters (those of CleanRL's ppo.py defaults, see
``configs/ppo_cartpole_cleanrl.yaml``) and is timed as a whole process, imports included,
because that is what a user waits for. The peers live in their own virtual environments so
that their dependencies (and pins) never leak into the interpreter that runs palaestra.

Run by hand from the repository root, with palaestra importable (or ``src/`` present):

    python bench/ppo_speed.py                         # palaestra vs SB3, 4 envs, 3 repeats
    python bench/ppo_speed.py --num-envs 1,4,8 --cleanrl /path/to/cleanrl/ppo.py
    OMP_NUM_THREADS=1 python bench/ppo_speed.py      # one torch thread for every system
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONFIG = HERE / "configs" / "ppo_cartpole_cleanrl.yaml"
ENV_ID = "CartPole-v1"
SEED = 1
# Steps gathered per PPO update, across all envs: buffer_size in CONFIG. The peers get
# n_steps = BUFFER_SIZE // num_envs so that every system updates equally often for any
# --num-envs (with 4 envs this is exactly CleanRL's 128 steps per env).
BUFFER_SIZE = 512
MINIBATCH = 128
# The final return is the mean over episodes that ended in the last REWARD_WINDOW steps:
# what palaestra's last summary reports, as summary_freq in CONFIG is 10000.
REWARD_WINDOW = 10_000
TORCH_REQUIREMENT = "torch==2.13.0"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "palaestra-bench"
SB3_PACKAGES = ["stable-baselines3", "gymnasium"]
# CleanRL's ppo.py reads infos["final_info"], which only gymnasium < 1.0 provides: with 1.x it
# would train differently and never report a return, so its venv keeps CleanRL's own pins.
CLEANRL_PACKAGES = ["gymnasium==0.29.1", "numpy<2", "tyro", "tensorboard"]
SYSTEMS = ("palaestra", "sb3", "cleanrl")
TAIL_LINES = 15
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

SB3_SCRIPT = '''\
"""SB3 PPO on CartPole-v1 with CleanRL-equivalent hyperparameters; prints one JSON line."""
import json, sys
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

env_id, n_envs, n_steps, total, batch, seed = sys.argv[1], *map(int, sys.argv[2:])


class EpisodeLog(BaseCallback):
    """Keeps (step, return) of every finished episode (Monitor puts them in infos)."""

    def __init__(self):
        super().__init__()
        self.episodes = []

    def _on_step(self):
        for info in self.locals["infos"]:
            if "episode" in info:
                self.episodes.append((self.num_timesteps, float(info["episode"]["r"])))
        return True


def linear(progress_remaining):
    return 2.5e-4 * progress_remaining


model = PPO("MlpPolicy", make_vec_env(env_id, n_envs=n_envs, seed=seed), n_steps=n_steps,
            batch_size=batch, n_epochs=4, learning_rate=linear, ent_coef=0.01, clip_range=0.2,
            gae_lambda=0.95, gamma=0.99, vf_coef=0.5, max_grad_norm=0.5, seed=seed, verbose=0,
            policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]),
                               activation_fn=torch.nn.Tanh))
log = EpisodeLog()
model.learn(total_timesteps=total, callback=log)
print(json.dumps({"steps": model.num_timesteps, "episodes": log.episodes}))
'''


@dataclass
class RunResult:
    """One timed process: wall time, env steps it really took, final mean return or error."""

    wall_s: Optional[float] = None
    steps: Optional[int] = None
    mean_return: Optional[float] = None
    error: Optional[str] = None


@dataclass
class Cell:
    """All repeats of one system at one env count: one row of the table."""

    system: str
    num_envs: int
    runs: List[RunResult] = field(default_factory=list)


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """Last lines of a process's output: where Python puts the error that matters."""
    return "\n".join(text.strip().splitlines()[-lines:])


def timed_run(cmd: Sequence[str], cwd: Path, timeout: float,
              env: Optional[Dict[str, str]] = None) -> Tuple[subprocess.CompletedProcess, float]:
    """Runs a whole process and measures its wall time, which includes its imports."""
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.perf_counter() - start


def window_mean(episodes: Sequence[Tuple[int, float]], last_step: int) -> Optional[float]:
    """Mean return of episodes that ended in the last REWARD_WINDOW steps (palaestra's view)."""
    recent = [ret for step, ret in episodes if step > last_step - REWARD_WINDOW]
    return statistics.fmean(recent) if recent else None


def venv_python(venv: Path) -> Path:
    """The interpreter inside a virtual environment, on POSIX or Windows."""
    unix = venv / "bin" / "python"
    return unix if unix.exists() or os.name != "nt" else venv / "Scripts" / "python.exe"


def ensure_venv(venv: Path, packages: Sequence[str], probe: str) -> Path:
    """Returns the venv's python, creating the venv and installing packages if `probe` fails.

    torch is installed first, on its own and pinned: left to a package's requirements, pip
    would pick the newest torch, a multi-GB CUDA build on Linux.
    """
    python = venv_python(venv)
    if python.exists() and subprocess.run([str(python), "-c", f"import {probe}"],
                                          capture_output=True).returncode == 0:
        return python
    print(f"[bench] installing {', '.join(packages)} into {venv} (once)", file=sys.stderr)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(venv_python(venv)), "-m", "pip", "install", "-q", TORCH_REQUIREMENT],
             [str(venv_python(venv)), "-m", "pip", "install", "-q", *packages]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{tail(proc.stderr + proc.stdout)}")
    return venv_python(venv)


def palaestra_env() -> Dict[str, str]:
    """Environment for the palaestra subprocess: adds the checkout's src/ when not installed."""
    env = dict(os.environ)
    if importlib.util.find_spec("palaestra") is None and (REPO / "src" / "palaestra").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                          env.get("PYTHONPATH")]))
    return env


def palaestra_return(run_dir: Path, stdout: str) -> Tuple[Optional[float], Optional[int]]:
    """Last 'Environment/Cumulative Reward' and its step, from TensorBoard events if possible.

    Falls back on the console summary line, so a missing tensorboard only costs the step count.
    """
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(str(run_dir / ENV_ID), size_guidance={"scalars": 0})
        acc.Reload()
        last = acc.Scalars("Environment/Cumulative Reward")[-1]
        return float(last.value), int(last.step)
    except Exception:  # no tensorboard, no events, no such tag: try the console
        rewards = re.findall(rf"Step: (\d+)\..*?Mean Reward: ({NUMBER})", stdout)
        if rewards:
            return float(rewards[-1][1]), int(rewards[-1][0])
        return None, None


def run_palaestra(num_envs: int, steps: int, timeout: float) -> RunResult:
    """palaestra as a user starts it, from the current interpreter, in a throw-away results dir."""
    with tempfile.TemporaryDirectory(prefix="palaestra-bench-") as tmp:
        run_id = f"bench-{num_envs}"
        cmd = [sys.executable, "-m", "palaestra", "learn", str(CONFIG), "--run-id", run_id,
               "--env", ENV_ID, "--num-envs", str(num_envs), "--max-steps", str(steps),
               "--results-dir", tmp, "--force", "--seed", str(SEED)]
        proc, wall = timed_run(cmd, Path(tmp), timeout, env=palaestra_env())
        if proc.returncode != 0:
            return RunResult(error=tail(proc.stderr + proc.stdout))
        mean, last_step = palaestra_return(Path(tmp) / run_id, proc.stdout)
        return RunResult(wall, last_step or steps, mean)


def peer_steps(num_envs: int) -> int:
    """Steps per env per rollout so that a peer's update uses BUFFER_SIZE steps like palaestra."""
    return max(1, BUFFER_SIZE // num_envs)


def run_sb3(python: Path, num_envs: int, steps: int, timeout: float) -> RunResult:
    """SB3 in its venv, via a script in a temp file; it reports steps and episode returns."""
    with tempfile.TemporaryDirectory(prefix="sb3-bench-") as tmp:
        script = Path(tmp) / "sb3_ppo.py"
        script.write_text(SB3_SCRIPT)
        batch = min(MINIBATCH, peer_steps(num_envs) * num_envs)
        cmd = [str(python), str(script), ENV_ID, str(num_envs), str(peer_steps(num_envs)),
               str(steps), str(batch), str(SEED)]
        proc, wall = timed_run(cmd, Path(tmp), timeout)
        if proc.returncode != 0:
            return RunResult(error=tail(proc.stderr + proc.stdout))
        try:
            report = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return RunResult(error="no JSON report:\n" + tail(proc.stdout + proc.stderr))
        return RunResult(wall, report["steps"], window_mean(report["episodes"], report["steps"]))


def run_cleanrl(python: Path, script: Path, num_envs: int, steps: int,
                timeout: float) -> RunResult:
    """CleanRL's ppo.py untouched, in a temp cwd (it writes runs/); returns parsed from stdout."""
    with tempfile.TemporaryDirectory(prefix="cleanrl-bench-") as tmp:
        cmd = [str(python), str(script), "--env-id", ENV_ID, "--total-timesteps", str(steps),
               "--num-envs", str(num_envs), "--num-steps", str(peer_steps(num_envs)),
               "--seed", str(SEED)]
        proc, wall = timed_run(cmd, Path(tmp), timeout)
        if proc.returncode != 0:
            return RunResult(error=tail(proc.stderr + proc.stdout))
        episodes = [(int(s), float(r)) for s, r in re.findall(
            rf"global_step=(\d+), episodic_return=\[?({NUMBER})", proc.stdout)]
        # ppo.py trains whole iterations only: total // (envs * steps) of them.
        batch = num_envs * peer_steps(num_envs)
        done = steps // batch * batch
        return RunResult(wall, done, window_mean(episodes, done))


def median(values: Sequence[Optional[float]]) -> Optional[float]:
    """Median of the values that exist; None when none does."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def format_row(cell: Cell) -> List[str]:
    """Table cells for one system/env-count: median wall (spread), steps/s, final return."""
    ok = [r for r in cell.runs if r.error is None]
    if not ok:
        first = next((r.error for r in cell.runs if r.error), "") or ""
        last_line = first.strip().splitlines()[-1] if first.strip() else ""
        return [cell.system, str(cell.num_envs), "-", "failed", "-", "-", last_line[:60]]
    walls = [r.wall_s for r in ok if r.wall_s is not None]
    wall = statistics.median(walls)
    steps = int(median([r.steps for r in ok]) or 0)
    ret = median([r.mean_return for r in ok])
    note = f"{len(cell.runs) - len(ok)} of {len(cell.runs)} failed" if len(ok) < len(
        cell.runs) else ""
    return [cell.system, str(cell.num_envs), str(steps),
            f"{wall:.1f} ({min(walls):.1f}-{max(walls):.1f})", f"{steps / wall:.0f}",
            "n/a" if ret is None or math.isnan(ret) else f"{ret:.1f}", note]


def print_table(cells: Sequence[Cell], repeats: int) -> None:
    """Aligned plain-text table, then the error tail of every system that failed."""
    header = ["system", "envs", "steps", f"wall s, median of {repeats} (min-max)", "steps/s",
              "final return", "note"]
    rows = [header] + [format_row(c) for c in cells]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\nsteps/s = env steps / whole-process wall time (imports included). final return ="
          f" mean over episodes ending in the last {REWARD_WINDOW} steps. OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')} (palaestra pins torch to 1 thread).")
    for cell in cells:
        errors = [r.error for r in cell.runs if r.error]
        if errors:
            print(f"\n--- {cell.system}, {cell.num_envs} envs: failed; output tail ---\n"
                  f"{errors[-1]}")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command line; --num-envs and --only take comma-separated lists."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50_000, help="env steps per run (50000)")
    p.add_argument("--repeats", type=int, default=3, help="runs per cell; median shown (3)")
    p.add_argument("--num-envs", default="4", help="comma-separated env counts (4)")
    p.add_argument("--only", default=None,
                   help=f"comma-separated subset of {','.join(SYSTEMS)} (all available)")
    p.add_argument("--cleanrl", type=Path, default=None, help="path to CleanRL's ppo.py")
    p.add_argument("--cleanrl-python", type=Path, default=None,
                   help="python with CleanRL's deps (default: a venv made under the cache)")
    p.add_argument("--sb3-venv", type=Path, default=CACHE_DIR / "sb3-venv",
                   help=f"virtual environment for SB3 (default {CACHE_DIR / 'sb3-venv'})")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run (1800)")
    args = p.parse_args(argv)
    args.num_envs = [int(n) for n in args.num_envs.split(",") if n.strip()]
    wanted = args.only.split(",") if args.only else [s for s in SYSTEMS if s != "cleanrl"
                                                     or args.cleanrl]
    unknown = set(wanted) - set(SYSTEMS)
    if unknown:
        p.error(f"--only: unknown system(s) {', '.join(sorted(unknown))}")
    if "cleanrl" in wanted and args.cleanrl is None:
        p.error("--only cleanrl needs --cleanrl /path/to/ppo.py")
    args.systems = [s for s in SYSTEMS if s in wanted]
    return args


def prepare_peers(args: argparse.Namespace) -> Dict[str, object]:
    """Installs each peer before any timing starts; a failed install becomes that peer's error."""
    ready: Dict[str, object] = {}
    for system in args.systems:
        try:
            if system == "sb3":
                ready[system] = ensure_venv(args.sb3_venv, SB3_PACKAGES, "stable_baselines3")
            elif system == "cleanrl":
                if not args.cleanrl.is_file():
                    raise RuntimeError(f"--cleanrl: no file at {args.cleanrl}")
                ready[system] = args.cleanrl_python or ensure_venv(
                    CACHE_DIR / "cleanrl-venv", CLEANRL_PACKAGES, "tyro, gymnasium, tensorboard")
            else:
                ready[system] = sys.executable
        except Exception as exc:  # report it in the table rather than abort the others
            ready[system] = exc
    return ready


def run_once(system: str, peer: object, args: argparse.Namespace, num_envs: int) -> RunResult:
    """One timed run of one system; any exception becomes a failed result."""
    try:
        if isinstance(peer, Exception):
            return RunResult(error=str(peer))
        if system == "palaestra":
            return run_palaestra(num_envs, args.steps, args.timeout)
        if system == "sb3":
            return run_sb3(Path(str(peer)), num_envs, args.steps, args.timeout)
        return run_cleanrl(Path(str(peer)), args.cleanrl.resolve(), num_envs, args.steps,
                           args.timeout)
    except subprocess.TimeoutExpired:
        return RunResult(error=f"timed out after {args.timeout:.0f} s")
    except Exception as exc:
        return RunResult(error=f"{type(exc).__name__}: {exc}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs every cell, repeats interleaved so that a burst of load elsewhere hits all alike."""
    args = parse_args(argv)
    peers = prepare_peers(args)
    cells = {(s, n): Cell(s, n) for s in args.systems for n in args.num_envs}
    for repeat in range(1, args.repeats + 1):
        for (system, num_envs), cell in cells.items():
            if isinstance(peers[system], Exception) and cell.runs:
                continue  # an install failure is reported once, not once per repeat
            result = run_once(system, peers[system], args, num_envs)
            cell.runs.append(result)
            status = "failed" if result.error else f"{result.wall_s:.1f} s"
            print(f"[bench] {system}, {num_envs} envs, run {repeat}/{args.repeats}: {status}",
                  file=sys.stderr, flush=True)
    print_table(list(cells.values()), args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
