"""The `palaestra` command: `learn` trains from a YAML config, `trainers` lists trainer types.

Flags follow `mlagents-learn`; a flag given on the command line overrides the YAML, and only
flags actually given do (every default is None here), so the file stays the source of truth.
"""
from __future__ import annotations

import argparse
import logging
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
    p.add_argument("--seed", type=int, help="Random seed (-1 picks one).")
    p.add_argument("--timeout-step", type=float, metavar="SECONDS",
                   help="Stop the run if one environment reset or step takes longer "
                        "(default 600; 0 waits forever).")
    p.add_argument("--resume", action="store_true", default=None,
                   help="Continue the run from its latest checkpoint.")
    p.add_argument("--force", action="store_true", default=None,
                   help="Overwrite an existing run with the same id.")
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
    p.add_argument("--env-args", nargs=argparse.REMAINDER,
                   help="key=value arguments for the environment; must come last.")


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("palaestra")
    except PackageNotFoundError:  # run from a source tree without installing
        from palaestra import __version__ as installed
    parser = argparse.ArgumentParser(prog="palaestra", allow_abbrev=False,
                                     description="Reinforcement learning with trainer plugins.")
    parser.add_argument("--version", action="version", version=f"palaestra {installed}")
    sub = parser.add_subparsers(dest="command", required=True)
    _learn_parser(sub)
    sub.add_parser("trainers", help="List installed trainer types and their packages.")
    return parser


def _overrides(args: argparse.Namespace) -> Dict[str, Any]:
    from palaestra.api import FLAG_SECTIONS, overrides_from_flags

    flags = {flag: getattr(args, flag) for flags in FLAG_SECTIONS.values() for flag in flags}
    out = overrides_from_flags(flags)
    if args.debug:
        out["debug"] = True
    return out


def run_learn(args: argparse.Namespace) -> int:
    """`palaestra.learn` with the command's flags; the process is tuned as the config's
    `torch_settings.accel` says (the command owns its process)."""
    from palaestra.api import run

    logging.getLogger("palaestra").setLevel(logging.DEBUG if args.debug else logging.INFO)
    run(args.trainer_config_path, _overrides(args), args.max_steps, tune_process=True)
    return 0


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
    return 0


class Terminated(BaseException):
    """SIGTERM before the training loop installs its own handler (start-up, shutdown)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s",
                        stream=sys.stdout)
    args = build_parser().parse_args(argv)
    try:  # SIGTERM during start-up ends like Ctrl-C: a new run's folder removed, one line
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (a notebook's worker): leave signals alone
        previous = None
    try:
        if args.command == "learn":
            return run_learn(args)
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
