#!/usr/bin/env python3
"""Speed benchmark: PPO on CartPole-v1 or 3DBall, palaestra against Stable-Baselines3 (and CleanRL).

Every system trains with the same hyperparameters and is timed as a whole process, imports
included, because that is what a user waits for. The peers live in their own virtual
environments so that their dependencies (and pins) never leak into the interpreter that runs
palaestra.

- ``--env CartPole-v1`` (default): CleanRL's ppo.py defaults,
  ``bench/configs/ppo_cartpole_cleanrl.yaml``.
- ``--env 3DBall``: palaestra's built-in 3DBall with ML-Agents' hyperparameters,
  ``src/palaestra/configs/ppo/3DBall.yaml``; the peers train on its Gymnasium registration
  ``palaestra/3DBall-v0`` (one agent per env, 12 envs for palaestra's 12 agents), so palaestra
  is installed into their venvs.

Run by hand from the repository root, with palaestra importable (or ``src/`` present):

    python bench/ppo_speed.py                         # palaestra vs SB3, 4 envs, 3 repeats
    python bench/ppo_speed.py --num-envs 1,4,8 --cleanrl /path/to/cleanrl/ppo.py
    python bench/ppo_speed.py --env 3DBall --cleanrl-continuous /path/to/ppo_continuous_action.py
    python bench/ppo_speed.py --env-speed             # adds env-only rows (random actions)
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
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEED = 1
TORCH_REQUIREMENT = "torch==2.13.0"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "palaestra-bench"
SB3_PACKAGES = ["stable-baselines3", "gymnasium"]
# CleanRL's ppo.py reads infos["final_info"], which only gymnasium < 1.0 provides: with 1.x it
# would train differently and never report a return, so its venv keeps CleanRL's own pins.
CLEANRL_PACKAGES = ["gymnasium==0.29.1", "numpy<2", "tyro", "tensorboard"]
# palaestra in the CleanRL venv (for 3DBall): without its dependencies, as it requires
# gymnasium >= 1.0 while CleanRL pins 0.29.1; what it registers the env with works on both.
PALAESTRA_NO_DEPS = ["pyyaml", "rich"]
# "palaestra-env" and "sb3-env" time the environment alone with random actions (--env-speed).
SYSTEMS = ("palaestra", "palaestra-off", "palaestra-ref", "sb3", "cleanrl", "palaestra-env",
           "sb3-env")
TAIL_LINES = 15
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


@dataclass(frozen=True)
class EnvBench:
    """One benchmark: the environment, palaestra's config and the peers' equal settings.

    Steps gathered per PPO update, across all envs, are ``buffer_size`` (that of the config);
    the peers get ``n_steps = buffer_size // envs`` so that every system updates equally often
    for any --num-envs. ``envs`` counts agents acting at once: palaestra runs
    ``envs // agents_per_copy`` copies of its environment, a peer ``envs`` Gymnasium envs.
    """

    name: str                   # palaestra's --env, also the behavior name (results subdir)
    peer_id: str                # the Gymnasium id SB3 makes
    cleanrl_id: str             # the Gymnasium id given to CleanRL ("module:id" imports module)
    config: Path
    steps: int                  # default --steps
    num_envs: str               # default --num-envs
    agents_per_copy: int
    buffer_size: int
    minibatch: int
    reward_window: int          # = summary_freq: the window of palaestra's last summary
    sb3: Dict[str, object]      # SB3 hyperparameters (see SB3_SCRIPT)
    sb3_imports: Tuple[str, ...] = ()   # modules SB3 imports first (they register the env)
    cleanrl_flag: str = "--cleanrl"     # the option naming CleanRL's script for this env
    cleanrl_args: Tuple[str, ...] = ()  # extra CleanRL CLI flags
    cleanrl_minibatches: bool = False   # pass --num-minibatches buffer // minibatch
    notes: Tuple[str, ...] = ()         # printed under the table
    cleanrl_notes: Tuple[str, ...] = ()


BENCHES: Dict[str, EnvBench] = {b.name: b for b in (
    EnvBench(
        name="CartPole-v1", peer_id="CartPole-v1", cleanrl_id="CartPole-v1",
        config=HERE / "configs" / "ppo_cartpole_cleanrl.yaml", steps=50_000, num_envs="4",
        agents_per_copy=1, buffer_size=512, minibatch=128, reward_window=10_000,
        # CleanRL's ppo.py defaults (with 4 envs, its 128 steps per env)
        sb3=dict(n_epochs=4, learning_rate=2.5e-4, ent_coef=0.01, clip_range=0.2,
                 gae_lambda=0.95, gamma=0.99, vf_coef=0.5, max_grad_norm=0.5,
                 net_arch=[64, 64], activation_fn="Tanh")),
    EnvBench(
        name="3DBall", peer_id="palaestra/3DBall-v0", cleanrl_id="palaestra:palaestra/3DBall-v0",
        config=REPO / "src" / "palaestra" / "configs" / "ppo" / "3DBall.yaml", steps=150_000,
        num_envs="12",
        agents_per_copy=12, buffer_size=12_000, minibatch=64, reward_window=12_000,
        # ML-Agents' 3DBall PPO (src/palaestra/configs/ppo/3DBall.yaml); VecNormalize for normalize: true
        # (ML-Agents clips normalised observations to +-5). max_grad_norm and vf_coef are SB3's
        # defaults (0.5 and 0.5).
        sb3=dict(n_epochs=3, learning_rate=3e-4, ent_coef=1e-3, clip_range=0.2,
                 gae_lambda=0.99, gamma=0.99, net_arch=[128, 128], activation_fn="SiLU",
                 normalize_obs=dict(clip_obs=5.0)),
        sb3_imports=("palaestra",),
        cleanrl_flag="--cleanrl-continuous",
        cleanrl_args=("--learning-rate", "3e-4", "--update-epochs", "3", "--ent-coef", "0.001",
                      "--gae-lambda", "0.99", "--gamma", "0.99"),
        cleanrl_minibatches=True,
        notes=("sb3: VecNormalize(norm_obs, clip_obs=5), clip range and entropy coefficient "
               "constant (palaestra, as ML-Agents, decays both linearly with the learning "
               "rate), gradient norm clipped at 0.5 (SB3's default; palaestra does not clip), "
               "advantages normalised per minibatch (palaestra: per update buffer).",),
        cleanrl_notes=("cleanrl: ppo_continuous_action.py unchanged but for its CLI flags, so "
                       "its own wrappers and model: observations normalised and clipped to "
                       "+-10, rewards normalised (returns reported raw) and clipped to +-10, "
                       "64x64 tanh networks, value loss clipped, gradient norm 0.5, "
                       "advantages normalised per minibatch; whole iterations only "
                       "(total // 12000).",)),
)}

SB3_SCRIPT = '''\
"""SB3 PPO with the hyperparameters of the JSON spec in argv[1]; prints one JSON line."""
import importlib, json, sys, time
import torch

spec = json.loads(sys.argv[1])
for module in spec["imports"]:
    importlib.import_module(module)  # registers the environment's Gymnasium id
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize


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


hp = dict(spec["hyperparameters"])
lr0 = hp.pop("learning_rate")
net_arch = hp.pop("net_arch")
activation = getattr(torch.nn, hp.pop("activation_fn"))
normalize = hp.pop("normalize_obs", None)


def linear(progress_remaining):
    return lr0 * progress_remaining


env = make_vec_env(spec["env_id"], n_envs=spec["n_envs"], seed=spec["seed"])
if normalize:
    env = VecNormalize(env, norm_obs=True, norm_reward=False, **normalize)
model = PPO("MlpPolicy", env, n_steps=spec["n_steps"], batch_size=spec["batch_size"],
            learning_rate=linear, seed=spec["seed"], verbose=0,
            policy_kwargs=dict(net_arch=dict(pi=net_arch, vf=net_arch),
                               activation_fn=activation), **hp)
log = EpisodeLog()
start = time.perf_counter()
model.learn(total_timesteps=spec["total"], callback=log)
train_s = time.perf_counter() - start
print(json.dumps({"steps": model.num_timesteps, "train_s": train_s, "episodes": log.episodes}))
'''

# Environment alone, random actions, as each system steps it: palaestra's batched environment
# (what `palaestra learn --env NAME --num-envs N` builds), SB3's DummyVecEnv of Monitor-wrapped
# Gymnasium envs (plus VecNormalize where the PPO run has it). Each prints one JSON line.
PALAESTRA_ENV_SCRIPT = '''\
import json, sys, time
import numpy as np
from palaestra.envs import make_environment

name, copies, total, seed = sys.argv[1], *map(int, sys.argv[2:])
env = make_environment(name, num_envs=copies, seed=seed)
env.reset()
behavior = next(iter(env.behavior_specs))
action_spec = env.behavior_specs[behavior].action_spec
rng = np.random.default_rng(seed)
n_agents = len(env.get_steps(behavior)[0])
# Drawn in advance, as the sb3-env script does: only the environment interface is timed.
pool = [action_spec.random_action(n_agents, rng) for _ in range(64)]
steps = 0
start = time.perf_counter()
while steps < total:
    decisions, _ = env.get_steps(behavior)
    env.set_actions(behavior, pool[steps // n_agents % 64])
    env.step()
    steps += len(decisions)
train_s = time.perf_counter() - start
env.close()
print(json.dumps({"steps": steps, "train_s": train_s}))
'''

SB3_ENV_SCRIPT = '''\
import importlib, json, sys, time
import numpy as np

spec = json.loads(sys.argv[1])
for module in spec["imports"]:
    importlib.import_module(module)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

env = make_vec_env(spec["env_id"], n_envs=spec["n_envs"], seed=spec["seed"])
if spec["hyperparameters"].get("normalize_obs"):
    env = VecNormalize(env, norm_obs=True, norm_reward=False,
                       **spec["hyperparameters"]["normalize_obs"])
env.action_space.seed(spec["seed"])
pool = [np.array([env.action_space.sample() for _ in range(env.num_envs)]) for _ in range(64)]
env.reset()
steps = 0
start = time.perf_counter()
while steps < spec["total"]:
    env.step(pool[steps // env.num_envs % 64])
    steps += env.num_envs
train_s = time.perf_counter() - start
print(json.dumps({"steps": steps, "train_s": train_s}))
'''


@dataclass
class RunResult:
    """One timed process: wall time, env steps it really took, time of its training loop alone
    (None where unknown), final mean return or error."""

    wall_s: Optional[float] = None
    steps: Optional[int] = None
    mean_return: Optional[float] = None
    error: Optional[str] = None
    train_s: Optional[float] = None


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


def window_mean(episodes: Sequence[Tuple[int, float]], last_step: int,
                window: int) -> Optional[float]:
    """Mean return of episodes that ended in the last `window` steps (palaestra's view)."""
    recent = [ret for step, ret in episodes if step > last_step - window]
    return statistics.fmean(recent) if recent else None


def venv_python(venv: Path) -> Path:
    """The interpreter inside a virtual environment, on POSIX or Windows."""
    unix = venv / "bin" / "python"
    return unix if unix.exists() or os.name != "nt" else venv / "Scripts" / "python.exe"


def imports(python: Path, probe: str) -> bool:
    """Whether `python` can `import probe` (a comma-separated module list)."""
    return subprocess.run([str(python), "-c", f"import {probe}"],
                          capture_output=True).returncode == 0


def pip_install(python: Path, *args: str) -> None:
    """`python -m pip install -q args`, raising with the end of pip's output if it fails."""
    cmd = [str(python), "-m", "pip", "install", "-q", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{tail(proc.stderr + proc.stdout)}")


def ensure_venv(venv: Path, packages: Sequence[str], probe: str) -> Path:
    """Returns the venv's python, creating the venv and installing packages if `probe` fails.

    torch is installed first, on its own and pinned: left to a package's requirements, pip
    would pick the newest torch, a multi-GB CUDA build on Linux.
    """
    python = venv_python(venv)
    if python.exists() and imports(python, probe):
        return python
    print(f"[bench] installing {', '.join(packages)} into {venv} (once)", file=sys.stderr)
    proc = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"creating {venv} failed:\n{tail(proc.stderr + proc.stdout)}")
    pip_install(venv_python(venv), TORCH_REQUIREMENT)
    pip_install(venv_python(venv), *packages)
    return venv_python(venv)


def ensure_palaestra(python: Path, deps: bool) -> None:
    """Installs this checkout, editable, into a peer's venv unless it imports palaestra already.

    `deps=False` (CleanRL's venv) keeps the venv's pins: only palaestra's small pure-Python
    requirements are added, not its gymnasium >= 1.0.
    """
    if imports(python, "palaestra"):
        return
    print(f"[bench] installing palaestra (editable, {REPO}) for {python}", file=sys.stderr)
    if deps:
        pip_install(python, "-e", str(REPO))
    else:
        pip_install(python, "--no-deps", "-e", str(REPO))
        pip_install(python, *PALAESTRA_NO_DEPS)
    if not imports(python, "palaestra"):
        raise RuntimeError(f"{python} still cannot import palaestra after installing it")


def palaestra_env(src: Optional[Path] = None) -> Dict[str, str]:
    """Environment for the palaestra subprocess: adds the checkout's src/ when not installed,
    or `src` (another checkout's src/, e.g. a git worktree of an earlier commit) first."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    elif importlib.util.find_spec("palaestra") is None and (REPO / "src" / "palaestra").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                          env.get("PYTHONPATH")]))
    return env


def palaestra_return(run_dir: Path, behavior: str,
                     stdout: str) -> Tuple[Optional[float], Optional[int]]:
    """Last 'Environment/Cumulative Reward' and its step, from TensorBoard events if possible.

    Falls back on the console summary line, so a missing tensorboard only costs the step count.
    """
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(str(run_dir / behavior), size_guidance={"scalars": 0})
        acc.Reload()
        last = acc.Scalars("Environment/Cumulative Reward")[-1]
        return float(last.value), int(last.step)
    except Exception:  # no tensorboard, no events, no such tag: try the console
        rewards = re.findall(rf"Step: (\d+)\..*?Mean Reward: ({NUMBER})", stdout)
        if rewards:
            return float(rewards[-1][1]), int(rewards[-1][0])
        return None, None


def palaestra_train_s(run_dir: Path) -> Optional[float]:
    """The training loop's time (env reset to last update) from run_logs/timers.json."""
    try:
        timers = json.loads((run_dir / "run_logs" / "timers.json").read_text())
        return float(timers["training_loop"]["total_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_palaestra(bench: EnvBench, num_envs: int, steps: int, timeout: float,
                  extra: Sequence[str] = (), src: Optional[Path] = None) -> RunResult:
    """palaestra as a user starts it, from the current interpreter, in a throw-away results dir
    (`extra`: more flags, e.g. --accel off; `src`: another checkout's src/ to run instead)."""
    with tempfile.TemporaryDirectory(prefix="palaestra-bench-") as tmp:
        run_id = f"bench-{num_envs}"
        copies = num_envs // bench.agents_per_copy
        cmd = [sys.executable, "-m", "palaestra", "learn", str(bench.config), "--run-id", run_id,
               "--env", bench.name, "--num-envs", str(copies), "--max-steps", str(steps),
               "--results-dir", tmp, "--force", "--seed", str(SEED), *extra]
        proc, wall = timed_run(cmd, Path(tmp), timeout, env=palaestra_env(src))
        if proc.returncode != 0:
            return RunResult(error=tail(proc.stderr + proc.stdout))
        run_dir = Path(tmp) / run_id
        mean, last_step = palaestra_return(run_dir, bench.name, proc.stdout)
        return RunResult(wall, last_step or steps, mean, train_s=palaestra_train_s(run_dir))


def peer_steps(bench: EnvBench, num_envs: int) -> int:
    """Steps per env per rollout so that a peer's update uses buffer_size steps like palaestra."""
    return max(1, bench.buffer_size // num_envs)


def sb3_spec(bench: EnvBench, num_envs: int, steps: int) -> str:
    """The JSON argument of SB3_SCRIPT and SB3_ENV_SCRIPT."""
    n_steps = peer_steps(bench, num_envs)
    return json.dumps({"env_id": bench.peer_id, "imports": list(bench.sb3_imports),
                       "n_envs": num_envs, "n_steps": n_steps, "total": steps,
                       "batch_size": min(bench.minibatch, n_steps * num_envs), "seed": SEED,
                       "hyperparameters": bench.sb3})


def json_report(proc: subprocess.CompletedProcess) -> dict:
    """The JSON line a script printed last; raises ValueError with the output tail if none."""
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ValueError("no JSON report:\n" + tail(proc.stdout + proc.stderr)) from None


def run_script(python: Path, text: str, args: Sequence[str], timeout: float,
               env: Optional[Dict[str, str]] = None
               ) -> Tuple[Optional[dict], float, Optional[str]]:
    """Writes `text` to a temp file, runs it; (JSON report, wall, None) or (None, 0, error)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        script = Path(tmp) / "bench_script.py"
        script.write_text(text)
        proc, wall = timed_run([str(python), str(script), *args], Path(tmp), timeout, env=env)
        if proc.returncode != 0:
            return None, 0.0, tail(proc.stderr + proc.stdout)
        try:
            return json_report(proc), wall, None
        except ValueError as exc:
            return None, 0.0, str(exc)


def run_sb3(bench: EnvBench, python: Path, num_envs: int, steps: int,
            timeout: float) -> RunResult:
    """SB3 in its venv, via a script in a temp file; it reports steps and episode returns."""
    report, wall, error = run_script(python, SB3_SCRIPT, [sb3_spec(bench, num_envs, steps)],
                                     timeout)
    if error:
        return RunResult(error=error)
    return RunResult(wall, report["steps"],
                     window_mean(report["episodes"], report["steps"], bench.reward_window),
                     train_s=report.get("train_s"))


def run_env_only(system: str, bench: EnvBench, python: Path, num_envs: int, steps: int,
                 timeout: float) -> RunResult:
    """The environment alone with random actions, as palaestra or SB3 step it (no return)."""
    if system == "palaestra-env":
        args = [bench.name, str(num_envs // bench.agents_per_copy), str(steps), str(SEED)]
        report, wall, error = run_script(python, PALAESTRA_ENV_SCRIPT, args, timeout,
                                         env=palaestra_env())
    else:
        report, wall, error = run_script(python, SB3_ENV_SCRIPT,
                                         [sb3_spec(bench, num_envs, steps)], timeout)
    if error:
        return RunResult(error=error)
    return RunResult(wall, report["steps"], None, train_s=report["train_s"])


def run_cleanrl(bench: EnvBench, python: Path, script: Path, num_envs: int, steps: int,
                timeout: float) -> RunResult:
    """CleanRL's script untouched, in a temp cwd (it writes runs/); returns parsed from stdout."""
    with tempfile.TemporaryDirectory(prefix="cleanrl-bench-") as tmp:
        n_steps = peer_steps(bench, num_envs)
        batch = num_envs * n_steps
        cmd = [str(python), str(script), "--env-id", bench.cleanrl_id, "--total-timesteps",
               str(steps), "--num-envs", str(num_envs), "--num-steps", str(n_steps),
               "--seed", str(SEED), *bench.cleanrl_args]
        if bench.cleanrl_minibatches:
            cmd += ["--num-minibatches", str(max(1, batch // bench.minibatch))]
        proc, wall = timed_run(cmd, Path(tmp), timeout)
        if proc.returncode != 0:
            return RunResult(error=tail(proc.stderr + proc.stdout))
        episodes = [(int(s), float(r)) for s, r in re.findall(
            rf"global_step=(\d+), episodic_return=\[?({NUMBER})", proc.stdout)]
        # CleanRL trains whole iterations only: total // (envs * steps) of them.
        done = steps // batch * batch
        # Its last "SPS:" line is steps / time since its training loop began.
        sps = re.findall(r"^SPS: (\d+)", proc.stdout, re.MULTILINE)
        train_s = done / int(sps[-1]) if sps and int(sps[-1]) > 0 else None
        return RunResult(wall, done, window_mean(episodes, done, bench.reward_window),
                         train_s=train_s)


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
        return [cell.system, str(cell.num_envs), "-", "failed", "-", "-", "-", last_line[:60]]
    walls = [r.wall_s for r in ok if r.wall_s is not None]
    wall = statistics.median(walls)
    steps = int(median([r.steps for r in ok]) or 0)
    train = median([r.steps / r.train_s for r in ok if r.train_s and r.steps])
    ret = median([r.mean_return for r in ok])
    note = f"{len(cell.runs) - len(ok)} of {len(cell.runs)} failed" if len(ok) < len(
        cell.runs) else ""
    return [cell.system, str(cell.num_envs), str(steps),
            f"{wall:.1f} ({min(walls):.1f}-{max(walls):.1f})", f"{steps / wall:.0f}",
            "n/a" if train is None else f"{train:.0f}",
            "n/a" if ret is None or math.isnan(ret) else f"{ret:.1f}", note]


def print_table(cells: Sequence[Cell], repeats: int, bench: EnvBench) -> None:
    """Aligned plain-text table, then the error tail of every system that failed."""
    header = ["system", "envs", "steps", f"wall s, median of {repeats} (min-max)", "steps/s",
              "train steps/s", "final return", "note"]
    rows = [header] + [format_row(c) for c in cells]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print(textwrap.fill(
          f"{bench.name}, seed {SEED}. steps/s = env steps / whole-process wall time (imports "
          f"included). train steps/s = env steps / time of the training loop alone (palaestra: "
          f"timers.json training_loop; sb3: model.learn; cleanrl: its last SPS). final return ="
          f" mean over episodes ending in the last {bench.reward_window} steps. OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')} (palaestra pins torch to 1 thread).",
                        width=100))
    systems = {c.system for c in cells}
    notes = list(bench.notes if "sb3" in systems else ()) + list(
        bench.cleanrl_notes if "cleanrl" in systems else ())
    if systems & {"palaestra-env", "sb3-env"}:
        notes.append("*-env rows: the environment alone with random actions, as each system "
                     "steps it; train steps/s = the stepping loop alone.")
    for note in notes:
        print(textwrap.fill(note, width=100))
    for cell in cells:
        errors = [r.error for r in cell.runs if r.error]
        if errors:
            print(f"\n--- {cell.system}, {cell.num_envs} envs: failed; output tail ---\n"
                  f"{errors[-1]}")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command line; --num-envs and --only take comma-separated lists."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="CartPole-v1", choices=sorted(BENCHES),
                   help="CartPole-v1 (CleanRL ppo.py settings) or 3DBall (ML-Agents' settings)")
    p.add_argument("--steps", "--max-steps", type=int, default=None,
                   help="env steps per run (CartPole-v1 50000, 3DBall 150000)")
    p.add_argument("--repeats", type=int, default=3, help="runs per cell; median shown (3)")
    p.add_argument("--num-envs", default=None,
                   help="comma-separated counts of agents acting at once (CartPole-v1 4, "
                        "3DBall 12, a multiple of 12: palaestra runs n/12 copies of 12 agents)")
    p.add_argument("--only", default=None,
                   help=f"comma-separated subset of {','.join(SYSTEMS)} (all available)")
    p.add_argument("--env-speed", action="store_true",
                   help="add palaestra-env and sb3-env rows: the environment alone")
    p.add_argument("--cleanrl", type=Path, default=None,
                   help="path to CleanRL's ppo.py (CartPole-v1)")
    p.add_argument("--cleanrl-continuous", type=Path, default=None,
                   help="path to CleanRL's ppo_continuous_action.py (3DBall)")
    p.add_argument("--cleanrl-python", type=Path, default=None,
                   help="python with CleanRL's deps (default: a venv made under the cache)")
    p.add_argument("--sb3-venv", type=Path, default=CACHE_DIR / "sb3-venv",
                   help=f"virtual environment for SB3 (default {CACHE_DIR / 'sb3-venv'})")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run (1800)")
    p.add_argument("--ref-src", type=Path, default=None,
                   help="src/ of another palaestra checkout (git worktree add /tmp/ref REV): "
                        "adds a palaestra-ref row, that code on the same machine and sitting")
    args = p.parse_args(argv)
    bench = args.bench = BENCHES[args.env]
    if args.steps is None:
        args.steps = bench.steps
    args.num_envs = [int(n) for n in (args.num_envs or bench.num_envs).split(",") if n.strip()]
    bad = [n for n in args.num_envs if n < 1 or n % bench.agents_per_copy]
    if bad:
        p.error(f"--num-envs: {bench.name} needs multiples of {bench.agents_per_copy} "
                f"(agents per copy), got {', '.join(map(str, bad))}")
    # CleanRL's script for this env; the other env's option is refused rather than ignored.
    other = "--cleanrl" if bench.cleanrl_flag == "--cleanrl-continuous" else "--cleanrl-continuous"
    if getattr(args, other.lstrip("-").replace("-", "_")) is not None:
        p.error(f"{other} is not used with --env {bench.name}: pass {bench.cleanrl_flag}")
    args.cleanrl_script = getattr(args, bench.cleanrl_flag.lstrip("-").replace("-", "_"))
    default = [s for s in SYSTEMS if (s != "cleanrl" or args.cleanrl_script)
               and (s != "palaestra-ref" or args.ref_src)
               and (not s.endswith("-env") or args.env_speed)]
    wanted = args.only.split(",") if args.only else default
    unknown = set(wanted) - set(SYSTEMS)
    if unknown:
        p.error(f"--only: unknown system(s) {', '.join(sorted(unknown))}")
    if "palaestra-ref" in wanted and args.ref_src is None:
        p.error("--only palaestra-ref needs --ref-src /path/to/other/checkout/src")
    if "cleanrl" in wanted and args.cleanrl_script is None:
        p.error(f"--only cleanrl needs {bench.cleanrl_flag} /path/to/"
                f"{'ppo.py' if bench.cleanrl_flag == '--cleanrl' else 'ppo_continuous_action.py'}")
    args.systems = [s for s in SYSTEMS if s in wanted]
    return args


def prepare_peers(args: argparse.Namespace) -> Dict[str, object]:
    """Installs each peer before any timing starts; a failed install becomes that peer's error."""
    ready: Dict[str, object] = {}
    bench: EnvBench = args.bench
    for system in args.systems:
        try:
            if system in ("sb3", "sb3-env"):
                python = ensure_venv(args.sb3_venv, SB3_PACKAGES, "stable_baselines3")
                if "palaestra" in bench.sb3_imports:
                    ensure_palaestra(python, deps=True)
                ready[system] = python
            elif system == "cleanrl":
                if not args.cleanrl_script.is_file():
                    raise RuntimeError(f"{bench.cleanrl_flag}: no file at {args.cleanrl_script}")
                python = args.cleanrl_python or ensure_venv(
                    CACHE_DIR / "cleanrl-venv", CLEANRL_PACKAGES, "tyro, gymnasium, tensorboard")
                if bench.cleanrl_id.startswith("palaestra:"):
                    if args.cleanrl_python and not imports(python, "palaestra"):
                        raise RuntimeError(
                            f"{python} cannot import palaestra: pip install --no-deps -e {REPO} "
                            f"{' '.join(PALAESTRA_NO_DEPS)}")
                    ensure_palaestra(python, deps=False)
                ready[system] = python
            else:
                ready[system] = sys.executable
        except Exception as exc:  # report it in the table rather than abort the others
            ready[system] = exc
    return ready


def run_once(system: str, peer: object, args: argparse.Namespace, num_envs: int) -> RunResult:
    """One timed run of one system; any exception becomes a failed result."""
    bench: EnvBench = args.bench
    try:
        if isinstance(peer, Exception):
            return RunResult(error=str(peer))
        if system == "palaestra":
            return run_palaestra(bench, num_envs, args.steps, args.timeout)
        if system == "palaestra-off":
            return run_palaestra(bench, num_envs, args.steps, args.timeout, ("--accel", "off"))
        if system == "palaestra-ref":
            return run_palaestra(bench, num_envs, args.steps, args.timeout, src=args.ref_src)
        if system == "sb3":
            return run_sb3(bench, Path(str(peer)), num_envs, args.steps, args.timeout)
        if system.endswith("-env"):
            return run_env_only(system, bench, Path(str(peer)), num_envs, args.steps,
                                args.timeout)
        return run_cleanrl(bench, Path(str(peer)), args.cleanrl_script.resolve(), num_envs,
                           args.steps, args.timeout)
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
    print_table(list(cells.values()), args.repeats, args.bench)
    return 0


if __name__ == "__main__":
    sys.exit(main())
