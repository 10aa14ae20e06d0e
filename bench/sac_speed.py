#!/usr/bin/env python3
"""Speed benchmark: SAC, palaestra against Stable-Baselines3, same hyperparameters, same sitting.

palaestra trains with a config of `src/palaestra/configs/sac/` (`--config`), SB3 with the same values: network
(hidden units x layers, activation), batch size, learning rate, buffer size, warm-up steps, tau,
gamma, one gradient step per env step, automatic entropy tuning from `init_entcoef`. Each run is
a separate process; the table shows whole-process and training-loop steps/s and the mean return
of the episodes that ended in the last `--window` steps.

    python bench/sac_speed.py                                   # Pendulum-v1, 5000 steps, 2 repeats
    python bench/sac_speed.py --config src/palaestra/configs/sac/HalfCheetah.yaml --steps 4000 --warmup 1000
    python bench/sac_speed.py --steps 20000 --repeats 1         # the issue's 20k-step return

SB3 runs in its own venv (`~/.cache/palaestra-bench/sb3-venv`, made on first use, as
bench/ppo_speed.py does); MuJoCo configs need `mujoco` there too, installed on first use.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ppo_speed import (CACHE_DIR, REPO, SB3_PACKAGES, SEED, RunResult, ensure_venv,  # noqa: E402
                       imports, palaestra_env, palaestra_return, palaestra_train_s, pip_install,
                       run_script, tail, timed_run, window_mean)

SB3_SAC_SCRIPT = '''\
import json, sys, time
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

spec = json.loads(sys.argv[1])
if spec.get("threads"):
    torch.set_num_threads(spec["threads"])
episodes = []

class EpisodeLog(BaseCallback):
    def _on_step(self):
        for info in self.locals["infos"]:
            if "episode" in info:
                episodes.append((self.num_timesteps, float(info["episode"]["r"])))
        return True

env = make_vec_env(spec["env_id"], n_envs=1, seed=spec["seed"])
act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "swish": torch.nn.SiLU}[spec["activation"]]
model = SAC("MlpPolicy", env, learning_rate=spec["lr"], buffer_size=spec["buffer_size"],
            learning_starts=spec["learning_starts"], batch_size=spec["batch_size"],
            tau=spec["tau"], gamma=spec["gamma"], train_freq=1, gradient_steps=1,
            ent_coef="auto_" + str(spec["init_entcoef"]), seed=spec["seed"], verbose=0,
            policy_kwargs=dict(net_arch=[spec["hidden"]] * spec["layers"], activation_fn=act))
start = time.perf_counter()
model.learn(total_timesteps=spec["total"], callback=EpisodeLog())
print(json.dumps({"steps": spec["total"], "train_s": time.perf_counter() - start,
                  "episodes": episodes}))
'''


def read_config(path: Path) -> Dict[str, object]:
    import yaml

    raw = yaml.safe_load(path.read_text())
    (behavior, settings), = raw["behaviors"].items()
    hp, net = settings["hyperparameters"], settings.get("network_settings", {})
    signals = settings.get("reward_signals", {}).get("extrinsic", {})
    return {"behavior": behavior, "env_id": raw["env_settings"]["env_path"],
            "lr": float(hp.get("learning_rate", 3e-4)),
            "buffer_size": int(hp.get("buffer_size", 50000)),
            "learning_starts": int(hp.get("buffer_init_steps", 0)),
            "batch_size": int(hp.get("batch_size", 128)), "tau": float(hp.get("tau", 0.005)),
            "init_entcoef": float(hp.get("init_entcoef", 1.0)),
            "gamma": float(signals.get("gamma", 0.99)),
            "hidden": int(net.get("hidden_units", 128)), "layers": int(net.get("num_layers", 2)),
            "activation": str(net.get("activation", "swish"))}


def run_palaestra(config: Path, behavior: str, steps: int, window: int,
                  timeout: float, extra: Sequence[str] = (),
                  src: Optional[Path] = None) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="palaestra-bench-") as tmp:
        cmd = [sys.executable, "-m", "palaestra", "learn", str(config), "--run-id", "bench",
               "--max-steps", str(steps), "--results-dir", tmp, "--force", "--seed", str(SEED),
               *extra]
        proc, wall = timed_run(cmd, Path(tmp), timeout, env=palaestra_env(src))
        if proc.returncode != 0:
            return RunResult(error=tail(proc.stderr + proc.stdout))
        run_dir = Path(tmp) / "bench"
        mean, last = palaestra_return(run_dir, behavior, proc.stdout)
        return RunResult(wall, last or steps, mean, train_s=palaestra_train_s(run_dir))


def run_sb3(python: Path, spec: Dict[str, object], steps: int, window: int,
            timeout: float) -> RunResult:
    report, wall, error = run_script(python, SB3_SAC_SCRIPT,
                                     [json.dumps({**spec, "total": steps, "seed": SEED})],
                                     timeout)
    if error:
        return RunResult(error=error)
    return RunResult(wall, report["steps"], window_mean(report["episodes"], report["steps"],
                                                        window), train_s=report["train_s"])


def summary(system: str, runs: List[RunResult]) -> List[str]:
    ok = [r for r in runs if r.error is None]
    if not ok:
        return [system, "failed", "", "", "", runs[0].error.splitlines()[-1] if runs else ""]
    wall = statistics.median(r.wall_s for r in ok)
    train = statistics.median(r.train_s for r in ok if r.train_s) if any(
        r.train_s for r in ok) else None
    steps = ok[0].steps or 0
    ret = ok[-1].mean_return
    walls = ", ".join(f"{r.wall_s:.1f}" for r in ok)
    return [system, str(steps), f"{wall:.1f} ({walls})", f"{steps / wall:.1f}",
            "" if train is None else f"{steps / train:.1f}",
            "n/a" if ret is None else f"{ret:.1f}"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path,
                   default=REPO / "src" / "palaestra" / "configs" / "sac" / "Pendulum.yaml")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--window", type=int, default=1000,
                   help="final return: mean of the episodes that ended in the last N steps")
    p.add_argument("--only", default="palaestra,sb3",
                   help="comma-separated subset of palaestra, palaestra-off (--accel off), "
                        "palaestra-ref (the checkout of --ref-src), sb3")
    p.add_argument("--ref-src", type=Path, default=None,
                   help="src/ of another palaestra checkout, for the palaestra-ref row")
    p.add_argument("--sb3-venv", type=Path, default=CACHE_DIR / "sb3-venv")
    p.add_argument("--timeout", type=float, default=7200)
    p.add_argument("--sb3-threads", type=int, default=None,
                   help="torch threads for SB3 (default: torch's own choice, as SB3 comes)")
    p.add_argument("--warmup", type=int, default=None,
                   help="override buffer_init_steps / learning_starts for both systems (speed "
                        "runs of MuJoCo configs, whose 10k warm-up steps train nothing)")
    args = p.parse_args(argv)
    if args.sb3_threads is not None and args.sb3_threads < 1:
        p.error(f"--sb3-threads must be a positive number of threads, got {args.sb3_threads}")
    spec = read_config(args.config)
    spec["threads"] = args.sb3_threads
    config = args.config
    if args.warmup is not None:
        import yaml

        spec["learning_starts"] = args.warmup
        raw = yaml.safe_load(args.config.read_text())
        for settings in raw["behaviors"].values():
            settings["hyperparameters"]["buffer_init_steps"] = args.warmup
        config = Path(tempfile.mkdtemp(prefix="sac-speed-")) / args.config.name
        config.write_text(yaml.safe_dump(raw))
    systems = args.only.split(",")
    unknown = set(systems) - {"palaestra", "palaestra-off", "palaestra-ref", "sb3"}
    if unknown:
        p.error(f"--only: unknown system(s) {', '.join(sorted(unknown))}")
    if "palaestra-ref" in systems and args.ref_src is None:
        p.error("--only palaestra-ref needs --ref-src /path/to/other/checkout/src")
    python = None
    if "sb3" in systems:
        python = ensure_venv(args.sb3_venv, SB3_PACKAGES, "stable_baselines3")
        if "-v" in str(spec["env_id"]) and not imports(python, "mujoco") and \
                str(spec["env_id"]).split("-")[0] in ("HalfCheetah", "Hopper", "Walker2d", "Ant",
                                                      "Humanoid", "Swimmer"):
            pip_install(python, "gymnasium[mujoco]")
    runs: Dict[str, List[RunResult]] = {s: [] for s in systems}
    for rep in range(args.repeats):
        for system in systems:
            if system.startswith("palaestra"):
                extra = ("--accel", "off") if system == "palaestra-off" else ()
                src = args.ref_src if system == "palaestra-ref" else None
                result = run_palaestra(config, str(spec["behavior"]), args.steps,
                                       args.window, args.timeout, extra, src)
            else:
                assert python is not None
                result = run_sb3(python, spec, args.steps, args.window, args.timeout)
            runs[system].append(result)
            status = "failed" if result.error else f"{result.wall_s:.1f} s"
            print(f"[bench] {system}, run {rep + 1}/{args.repeats}: {status}", file=sys.stderr)
    header = ["system", "steps", "wall s, median (runs)", "steps/s", "train steps/s",
              "final return"]
    rows = [header] + [summary(s, runs[s]) for s in systems]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    print(f"\n{spec['env_id']} from {args.config.relative_to(REPO) if args.config.is_absolute() and REPO in args.config.parents else args.config}, "
          f"seed {SEED}, warm-up {spec['learning_starts']} steps. final return = mean over episodes ending in the last {args.window} "
          "steps (palaestra: its last summary). train steps/s = steps / training loop "
          "(palaestra: timers.json training_loop; sb3: model.learn).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
