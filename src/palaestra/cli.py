"""The `palaestra` command: `learn` trains from a YAML config, `play` runs a trained policy,
`record` writes its (or a scripted policy's) demonstrations, `plot` draws runs, `configs` hands
out the example configs, `trainers` lists trainer types.

Flags follow `mlagents-learn`; a flag given on the command line overrides the YAML, and only
flags actually given do (every default is None here), so the file stays the source of truth.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any, Dict, List, Optional

from palaestra.exception import PalaestraError
from palaestra.describe import describe_error


def _learn_parser(sub: Any) -> None:
    # allow_abbrev off: `--num-env 2` must not silently mean --num-envs
    p = sub.add_parser("learn", help="Train the behaviors of an environment from a YAML config.",
                       description="Train from an ML-Agents style YAML config.",
                       allow_abbrev=False)
    p.add_argument("trainer_config_path", nargs="?", default=None, help="YAML config file.")
    p.add_argument("--run-id", help="Name of the run (results/<run-id>/). Default: ppo.")
    p.add_argument("--env", dest="env_path",
                   help="Gymnasium id (CartPole-v1) or module.path:factory.")
    p.add_argument("--num-envs", type=int, help="Environment copies stepped together.")
    p.add_argument("--num-workers", type=int, metavar="W",
                   help="Spread the copies over W worker processes, for slow simulators (0, "
                        "the default: in the training process; not for Unity builds; see "
                        "docs/scale-out.md).")
    p.add_argument("--worker-sync", choices=("all", "ready"),
                   help="With --num-workers: all (the default: every step waits for every "
                        "worker; reproducible) or ready (a step takes the workers that have "
                        "answered, the others keep stepping; not reproducible).")
    p.add_argument("--seed", type=int, help="Random seed (-1 picks one).")
    p.add_argument("--timeout-step", type=float, metavar="SECONDS",
                   help="Stop the run if one environment reset or step takes longer "
                        "(default 600; 0 waits forever).")
    p.add_argument("--resume", action="store_true", default=None,
                   help="Continue the run from its latest checkpoint.")
    p.add_argument("--force", action="store_true", default=None,
                   help="Overwrite an existing run with the same id.")
    p.add_argument("--inference", action="store_true", default=None,
                   help="Run the trained policy without training or writing anything (with "
                        "--resume or --initialize-from), as ML-Agents' --inference does.")
    p.add_argument("--initialize-from", metavar="RUN_ID",
                   help="Start from the weights of another run (same results dir).")
    p.add_argument("--results-dir", help="Folder of all runs. Default: results.")
    p.add_argument("--torch-device", dest="device", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--accel", choices=("auto", "off"),
                   help="Speed paths: auto (default) uses those that pay on this machine, off "
                        "runs plain torch (torch_settings.accel).")
    p.add_argument("--max-steps", type=float,
                   help="Override every behavior's max_steps (quick runs).")
    p.add_argument("--debug", action="store_true", default=None, help="Verbose logging.")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="Act with the most likely action (every behavior's "
                        "network_settings.deterministic), as mlagents-learn's flag.")
    p.add_argument("--load", dest="load_model", action="store_true", default=None,
                   help=argparse.SUPPRESS)  # ML-Agents' deprecated alias of --resume
    p.add_argument("--train", dest="train_model", action="store_true", default=None,
                   help=argparse.SUPPRESS)  # ML-Agents' removed flag: training is the default
    for removed in ("--torch", "--tensorflow"):
        p.add_argument(removed, action=_Removed, help=argparse.SUPPRESS)
    unity = p.add_argument_group(
        "Unity (mlagents-learn's flags; env_settings / engine_settings in the YAML)")
    unity.add_argument("--base-port", type=int, help="First port for Unity builds (5005; the "
                                                     "Editor uses 5004).")
    unity.add_argument("--num-areas", type=int, help="Training areas per Unity instance.")
    ray = p.add_argument_group("Ray actors, on this machine or a cluster (env_settings.ray; "
                               "docs/scale-out.md)")
    ray.add_argument("--ray-address", metavar="ADDRESS",
                     help="Step the copies in Ray actors: local (Ray started in this "
                          "process), auto (the cluster this machine joined with ray start) "
                          "or HOST:PORT of a cluster's head.")
    ray.add_argument("--ray-actors", type=int, metavar="N",
                     help="Actors the copies are spread over (default: one per copy, as many "
                          "as the cluster's CPUs hold).")
    ray.add_argument("--ray-chunk-steps", type=int, metavar="STEPS",
                     help="Steps an actor collects per call (64); acting lags learning by at "
                          "most one chunk.")
    restarts = p.add_argument_group(
        "Starts and restarts of Unity builds, --num-workers worker processes and Ray actors "
        "(env_settings)")
    restarts.add_argument("--timeout-wait", type=int, metavar="SECONDS",
                          help="How long to wait for Unity to connect, or a worker process to "
                               "start and make its copies (60).")
    restarts.add_argument("--max-lifetime-restarts", type=int,
                          help="Restarts of one build or worker over the run (10; -1: no "
                               "limit).")
    restarts.add_argument("--restarts-rate-limit-n", type=int,
                          help="Restarts of one build or worker per period (1; -1: no limit).")
    restarts.add_argument("--restarts-rate-limit-period-s", type=int, metavar="SECONDS",
                          help="The period of --restarts-rate-limit-n (60).")
    unity.add_argument("--width", type=int, help="Window width of Unity builds (84).")
    unity.add_argument("--height", type=int, help="Window height of Unity builds (84).")
    unity.add_argument("--quality-level", type=int, help="Unity quality level (5).")
    unity.add_argument("--time-scale", type=float, help="Unity time scale (20).")
    unity.add_argument("--target-frame-rate", type=int, help="Unity target frame rate (-1).")
    unity.add_argument("--capture-frame-rate", type=int, help="Unity capture frame rate (60).")
    unity.add_argument("--no-graphics", action="store_true", default=None,
                       help="Run Unity builds without graphics (-nographics -batchmode).")
    unity.add_argument("--no-graphics-monitor", action="store_true", default=None,
                       help="No graphics for the main Unity window only.")
    p.add_argument("--env-args", nargs=argparse.REMAINDER,
                   help="key=value arguments for the environment; must come last.")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line naming the command and where the flags are listed: a command
    line copied from elsewhere should say what is wrong, not dump the usage of 40 flags."""

    def error(self, message: str) -> Any:  # argparse's signature: NoReturn
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


class _Removed(argparse.Action):
    """A flag ML-Agents removed (`--torch`, `--tensorflow`): accepted with a warning, as there."""

    def __init__(self, option_strings: Any, dest: str, **kwargs: Any) -> None:
        kwargs.pop("nargs", None)
        super().__init__(option_strings, dest, nargs=0, default=None, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        logging.getLogger("palaestra").warning("The command line argument %s was removed (as "
                                               "in ML-Agents); it has no effect.", option)


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("palaestra")
    except PackageNotFoundError:  # run from a source tree without installing
        from palaestra import __version__ as installed
    parser = _Parser(prog="palaestra", allow_abbrev=False,
                     description="Reinforcement learning with trainer plugins.")
    parser.add_argument("--version", action="version", version=f"palaestra {installed}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _learn_parser(sub)
    sub.add_parser("trainers", help="List installed trainer types and reward signals, and their "
                                    "packages.")
    _play_parser(sub)
    _record_parser(sub)
    _plot_parser(sub)
    p = sub.add_parser("configs", allow_abbrev=False, help="List, print or copy the example "
                                                             "configs.",
                       description="The example configs shipped with palaestra: without "
                                   "arguments a list; NAME (ppo/3DBall, or 3DBall) prints one; "
                                   "-o DIR copies the named ones (all without NAME) there.")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("-o", "--output", metavar="DIR_OR_FILE.yaml", help="Copy instead of print.")
    p.add_argument("--force", action="store_true", help="Replace existing files.")
    return parser


def _play_parser(sub: Any) -> None:
    p = sub.add_parser("play", allow_abbrev=False,
                       help="Run a trained policy without training: returns, video.",
                       description="Run a trained policy (run id, run or behavior folder, "
                                   ".pt checkpoint or .onnx file) for a number of episodes and "
                                   "print the mean and spread of the returns.")
    p.add_argument("model", metavar="RUN_ID_OR_MODEL")
    p.add_argument("--behavior", help="The behavior to play (several: the others act at "
                                      "random unless the model is a run folder).")
    p.add_argument("--episodes", type=int, default=10, help="Episodes per behavior (10).")
    p.add_argument("--deterministic", action="store_true",
                   help="The most likely action instead of a sample.")
    p.add_argument("--env", dest="env_path", help="The environment (default: the run's).")
    p.add_argument("--env-args", nargs="+", metavar="KEY=VALUE",
                   help="Arguments for the environment (default: the run's).")
    p.add_argument("--record", metavar="OUT.gif|OUT.mp4", help="Write a video of the play.")
    p.add_argument("--max-frames", type=int, default=2000,
                   help="At most this many frames in the video (2000).")
    p.add_argument("--render", choices=("human",),
                   help="Show the environment's own window (Gymnasium environments).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the environment and sampling.")
    p.add_argument("--max-steps", type=int, default=100_000,
                   help="Stop after this many environment steps (100000).")
    p.add_argument("--results-dir", default="results", help="Where run ids are looked up.")


def _record_parser(sub: Any) -> None:
    p = sub.add_parser("record", allow_abbrev=False,
                       help="Record demonstrations (ML-Agents .demo) of a trained or scripted "
                            "policy.",
                       description="Record the episodes of a trained policy (run id, run or "
                                   "behavior folder, .pt checkpoint or .onnx file) or of a "
                                   "scripted one (--policy module:function) into an ML-Agents "
                                   ".demo file, for GAIL and behavioral cloning.")
    p.add_argument("model", nargs="?", metavar="RUN_ID_OR_MODEL",
                   help="The trained policy (or give --policy).")
    p.add_argument("--policy", metavar="MODULE:FUNCTION",
                   help="A scripted policy: function(obs_list, action_mask) -> actions.")
    p.add_argument("-o", "--output", required=True, metavar="OUT.demo",
                   help="The demonstration file to write.")
    p.add_argument("--episodes", type=int, default=10, help="Episodes to record (10).")
    p.add_argument("--behavior", help="The behavior to record (needed when there are several).")
    p.add_argument("--deterministic", action="store_true",
                   help="The most likely action instead of a sample (trained policies).")
    p.add_argument("--env", dest="env_path", help="The environment (default: the run's).")
    p.add_argument("--env-args", nargs="+", metavar="KEY=VALUE",
                   help="Arguments for the environment (default: the run's).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the environment and sampling.")
    p.add_argument("--name", help="The demonstration's name in the file (default: the file "
                                  "name; 16 characters at most).")
    p.add_argument("--force", action="store_true", help="Replace an existing output file.")
    p.add_argument("--max-steps", type=int, default=100_000,
                   help="Stop after this many environment steps (100000).")
    p.add_argument("--results-dir", default="results", help="Where run ids are looked up.")


def run_record(args: argparse.Namespace) -> int:
    from palaestra.record import record

    result = record(args.model, output=args.output, episodes=args.episodes,
                    policy=args.policy, env=args.env_path, env_args=args.env_args,
                    behavior=args.behavior, deterministic=args.deterministic, seed=args.seed,
                    name=args.name, force=args.force, max_steps=args.max_steps,
                    results_dir=args.results_dir)
    for line in result.lines():
        print(line)
    return 130 if result.interrupted else 0


def _plot_parser(sub: Any) -> None:
    p = sub.add_parser("plot", allow_abbrev=False, help="Draw runs' curves into a PNG.",
                       description="Draw one stat of several runs (e.g. seeds) on one figure: "
                                   "their mean and spread against steps.")
    p.add_argument("runs", nargs="+", metavar="RUN_ID", help="Run ids or run folders.")
    p.add_argument("--stat", default="Environment/Cumulative Reward",
                   help="The TensorBoard stat (default: Environment/Cumulative Reward).")
    p.add_argument("--behavior", help="One behavior only (default: every shared one).")
    p.add_argument("-o", "--output", default="plot.png", help="The PNG to write (plot.png).")
    p.add_argument("--results-dir", default="results", help="Where run ids are looked up.")


def run_play(args: argparse.Namespace) -> int:
    from palaestra.play import play

    result = play(args.model, env=args.env_path, env_args=args.env_args,
                  behavior=args.behavior, episodes=args.episodes,
                  deterministic=args.deterministic, record=args.record, render=args.render,
                  seed=args.seed, max_steps=args.max_steps, max_frames=args.max_frames,
                  results_dir=args.results_dir)
    for line in result.lines():
        print(line)
    if args.record and result.frames:
        print(f"Video: {args.record} ({result.frames} frames)")
    if result.interrupted:
        print("Interrupted: the returns above are of the episodes that ended before Ctrl-C.")
        return 130
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from palaestra.plot import main as plot_main

    path = plot_main(args.runs, stat=args.stat, out=args.output,
                     results_dir=args.results_dir, behavior=args.behavior)
    print(f"Plot: {path}")
    return 0


def _overrides(args: argparse.Namespace) -> Dict[str, Any]:
    from palaestra.api import FLAG_BLOCKS, FLAG_SECTIONS, overrides_from_flags

    flags = {flag: getattr(args, flag) for flags in FLAG_SECTIONS.values() for flag in flags}
    flags.update({flag: getattr(args, flag) for flag in FLAG_BLOCKS})
    out = overrides_from_flags(flags)
    if args.debug:
        out["debug"] = True
    if args.deterministic:
        out["deterministic"] = True
    return out


def run_learn(args: argparse.Namespace) -> int:
    """`palaestra.learn` with the command's flags; the process is tuned as the config's
    `torch_settings.accel` says (the command owns its process)."""
    from palaestra.api import run

    logging.getLogger("palaestra").setLevel(logging.DEBUG if args.debug else logging.INFO)
    result = run(args.trainer_config_path, _overrides(args), args.max_steps, tune_process=True)
    for line in summary_lines(result):
        print(line)
    return 0


def summary_lines(result: Any) -> List[str]:
    """Where a finished run left what a person looks for next, and how to continue a stopped
    one (its resolved configuration.yaml names the run, its environment and its settings)."""
    import shlex

    path = result.path
    if not result.training:
        return [f"Inference of run {result.run_id}: nothing was trained or written."]
    results_dir = os.path.dirname(os.path.normpath(path)) or "."
    lines = [f"Results: {path}"]
    if result.curves:
        lines.append(f"Curves: {result.curves}")
    for name, model in sorted(result.models.items()):
        lines.append(f"Model ({name}): {model}")
    lines.append(f"TensorBoard: tensorboard --logdir {shlex.quote(results_dir)}")
    if result.interrupted:
        at = ", ".join(f"{name} at step {step} of {result.max_steps.get(name, step)}"
                       for name, step in sorted(result.steps.items()))
        config = shlex.quote(os.path.join(path, "configuration.yaml"))
        lines.append(f"Stopped ({at}). Continue with: palaestra learn {config} --resume")
    return lines


def run_trainers() -> int:
    from palaestra.registry import TrainerRegistry

    registry = TrainerRegistry.from_entry_points()
    rows = [(info.name, info.distribution, info.version, info.trainer_cls.__module__)
            for info in registry.types.values()]
    widths = [max(len(str(r[i])) for r in rows + [("type", "package", "version", "module")])
              for i in range(4)]
    print("  ".join(h.ljust(w) for h, w in zip(("type", "package", "version", "module"),
                                                widths)))
    for row in sorted(rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    for failure in registry.failures:
        print(f"broken plugin: entry point '{failure.entry_point}' of {failure.distribution}: "
              f"{failure.error}")
    from palaestra.reward_signals.registry import RewardSignalRegistry

    signals = RewardSignalRegistry.installed()
    print("reward signals: " + ", ".join(f"{name} ({signals.origins[name]})"
                                         for name in signals.names()))
    for failure in signals.failures:
        print(f"broken reward signal plugin: {failure}")
    return 0


class Terminated(BaseException):
    """SIGTERM before the training loop installs its own handler (start-up, shutdown)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from palaestra.console import setup_logging

    setup_logging(bool(getattr(args, "debug", False)))
    try:  # SIGTERM during start-up ends like Ctrl-C: a new run's folder removed, one line
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (a notebook's worker): leave signals alone
        previous = None
    try:
        if args.command == "learn":
            return run_learn(args)
        if args.command == "play":
            return run_play(args)
        if args.command == "record":
            return run_record(args)
        if args.command == "plot":
            return run_plot(args)
        if args.command == "configs":
            from palaestra.example_configs import main as configs_main

            for line in configs_main(args.names, args.output, args.force):
                print(line)
            return 0
        return run_trainers()
    except PalaestraError as exc:
        print(describe_error(exc), file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as exc:
        print(f"{'Interrupted' if isinstance(exc, KeyboardInterrupt) else 'Terminated'}: "
              "stopped before training began or by a second Ctrl-C; nothing was saved now (a "
              "new run's folder is removed, a resumed run keeps its last checkpoint).",
              file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 143
    except BrokenPipeError:
        # The reader of the output went away (`palaestra configs | head`): nothing to report,
        # and nothing more to print (stdout now points nowhere, so the exit flush is silent).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        # A full disk, a folder that became read-only: the last complete checkpoint is intact
        # (every file is written to a temporary name and moved into place).
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"{type(exc).__name__}: {exc.strerror or exc}{where}. Files written before are "
              "intact; the run resumes from its last checkpoint with --resume.", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
