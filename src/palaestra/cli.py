"""The `palaestra` command: `learn` trains from a YAML config, `trainers` lists trainer types.

Flags follow `mlagents-learn`; a flag given on the command line overrides the YAML, and only
flags actually given do (every default is None here), so the file stays the source of truth.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
from typing import IO, Any, Dict, List, Optional, Tuple

from palaestra.atomic import remove_stale_temp_files
from palaestra.exception import PalaestraError, TrainerConfigError
from palaestra.describe import describe_error
from palaestra.paths import check_behavior_folders, check_inside, lock_run, safe_component


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
    p.add_argument("--max-steps", type=float,
                   help="Override every behavior's max_steps (quick runs).")
    p.add_argument("--debug", action="store_true", default=None, help="Verbose logging.")
    p.add_argument("--env-args", nargs=argparse.REMAINDER,
                   help="key=value arguments for the environment; must come last.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="palaestra", allow_abbrev=False,
                                     description="Reinforcement learning with trainer plugins.")
    sub = parser.add_subparsers(dest="command", required=True)
    _learn_parser(sub)
    sub.add_parser("trainers", help="List installed trainer types and their packages.")
    return parser


def _overrides(args: argparse.Namespace) -> Dict[str, Dict[str, Any]]:
    sections = {"checkpoint_settings": ("run_id", "resume", "force", "initialize_from",
                                        "results_dir"),
                "env_settings": ("env_path", "num_envs", "seed", "env_args", "timeout_step"),
                "torch_settings": ("device",)}
    out: Dict[str, Dict[str, Any]] = {}
    for section, keys in sections.items():
        values = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
        if values:
            out[section] = values
    # One of --resume / --force on the command line decides over the other's value in the file
    # (a config may say `force: true`; `--resume` must still resume, not refuse or delete).
    ckpt = out.get("checkpoint_settings", {})
    if ckpt.get("resume") and not ckpt.get("force"):
        ckpt["force"] = False
    if ckpt.get("force") and not ckpt.get("resume"):
        ckpt["resume"] = False
    if args.debug:
        out["debug"] = True  # type: ignore[assignment]
    return out


def _check_names(options: Any) -> None:
    """Run ids become folder names: checked before anything else happens."""
    ckpt = options.checkpoint_settings
    safe_component(ckpt.run_id, "checkpoint_settings.run_id (--run-id)")
    if ckpt.initialize_from is not None:
        safe_component(ckpt.initialize_from, "checkpoint_settings.initialize_from "
                                             "(--initialize-from)")


def _is_run_folder(path: str) -> bool:
    """Whether `path` (not a link: checked before) is a folder palaestra made: every run has
    its run_logs/ from the start."""
    run_logs = os.path.join(path, "run_logs")
    return os.path.isdir(run_logs) and not os.path.islink(run_logs)


def _prepare_run_dir(options: Any) -> Tuple[List[str], Optional[IO[str]]]:
    """Check the run's folder against --resume/--force, create it and lock it. Returns the
    folders it created, innermost first (a new run that fails before its first step removes
    them), and the held lock (`palaestra.paths.lock_run`). The run's names were checked
    before the environment was made (`_check_names`)."""
    ckpt = options.checkpoint_settings
    results = ckpt.results_dir
    if not results.strip():
        raise PalaestraError("checkpoint_settings.results_dir (--results-dir) is empty; give "
                             "the folder of all runs (default: results).")
    if os.path.exists(results) and not os.path.isdir(results):
        raise PalaestraError(f"results_dir {results} (--results-dir) is a file, not a folder.")
    path = ckpt.write_path
    if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
        raise PalaestraError(f"The run folder {path} is a link or a file, not a folder made by "
                             "palaestra; choose another run id.")
    check_inside(results, path, "use the run folder")
    exists = os.path.isdir(path) and bool(os.listdir(path))
    if ckpt.resume and ckpt.force:
        raise PalaestraError("--resume and --force contradict each other; give one.")
    if ckpt.resume and not exists:
        raise PalaestraError(f"Previous data from run ID '{ckpt.run_id}' was not found in "
                             f"{path}. Train a new run by removing --resume (or "
                             "checkpoint_settings.resume: true).")
    if exists and not ckpt.resume and not ckpt.force:
        raise PalaestraError(
            f"Previous data from run ID '{ckpt.run_id}' was found in {path}. Either specify a "
            "new run ID, use --resume to resume this run, or use --force to overwrite it.")
    if exists and ckpt.force:
        if not _is_run_folder(path):
            raise PalaestraError(f"--force: {path} is not a palaestra run (it has no run_logs/ "
                                 "folder), so it is not deleted; choose another run id.")
        old_lock = lock_run(path)  # refuses a run that is still training
        shutil.rmtree(path)
        if old_lock is not None:
            old_lock.close()
    if ckpt.initialize_from:
        source = os.path.join(results, ckpt.initialize_from)
        if not os.path.isdir(source):
            raise PalaestraError(f"--initialize-from {ckpt.initialize_from}: no run at {source}.")
    created = [p for p in (path, results) if not os.path.isdir(p)]
    run_logs = os.path.join(path, "run_logs")
    if os.path.islink(run_logs) or (os.path.exists(run_logs) and not os.path.isdir(run_logs)):
        raise PalaestraError(f"{run_logs} is a link or a file, not the folder palaestra made; "
                             "the run is not used (its files would be written elsewhere).")
    try:
        os.makedirs(run_logs, exist_ok=True)
    except OSError as exc:
        raise PalaestraError(f"Cannot create the run folder {path} in results_dir {results}: "
                             f"{exc.strerror or exc}.") from None
    if not os.access(path, os.W_OK):
        raise PalaestraError(f"The run folder {path} is not writable.")
    lock = lock_run(path)
    remove_stale_temp_files(path)  # configuration.yaml's, if a kill interrupted its writing
    return created, lock


def run_learn(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from palaestra.config import (check_supported, dump_run_options, load_run_options,
                                  max_steps_from_flag)
    from palaestra.controller import TrainerController
    from palaestra.envs import make_environment
    from palaestra.heap import keep_freed_memory
    from palaestra.registry import TrainerRegistry, load_stats_writer_factories
    from palaestra.stats import make_stats_writers

    registry = TrainerRegistry.from_entry_points()
    options = load_run_options(args.trainer_config_path, registry, _overrides(args))
    check_supported(options, args.trainer_config_path)
    logging.getLogger("palaestra").setLevel(logging.DEBUG if options.debug else logging.INFO)
    if args.max_steps is not None:
        max_steps = max_steps_from_flag(args.max_steps)
        for settings in [*options.behaviors.values(), options.default_settings]:
            if settings is not None:
                settings.max_steps = max_steps
    env_settings = options.env_settings
    seed = env_settings.seed
    if seed < 0:
        seed = int(np.random.randint(0, 10000))
        env_settings.seed = seed
    logging.getLogger("palaestra").info("Run %s, seed %d", options.checkpoint_settings.run_id,
                                        seed)
    threads = options.torch_settings.num_threads or 1
    torch.set_num_threads(threads)
    # NumPy's BLAS (the acting policy's matrix products) gets the same budget: OpenBLAS's own
    # threads spin-wait for busy cores, and on a loaded 2-core machine that made one 96-agent
    # forward pass take 40 ms instead of 0.5.
    threadpool_limits(threads, user_api="blas")
    # Denormal floats (below 1.2e-38) make CPU arithmetic 20-30x slower, and Adam's second
    # moment of tiny gradients is full of them: a sqrt over 9k of them took 200 us instead of 7.
    torch.set_flush_denormal(True)
    keep_freed_memory()  # no page faults for every update's activations (palaestra.heap)
    torch.manual_seed(seed)
    _check_names(options)
    env = make_environment(env_settings.env_path, env_settings.env_args, env_settings.num_envs,
                           seed)
    try:
        check_behavior_folders(list(env.behavior_specs))  # before touching disk
        for name in env.behavior_specs:
            options.behavior_settings(name)
        created, lock = _prepare_run_dir(options)
    except BaseException:
        env.close()
        raise
    write_path = options.checkpoint_settings.write_path
    started: List[bool] = []

    def ready() -> None:
        # The resolved configuration is written once the trainers exist (and, with --resume,
        # have loaded their checkpoints) and the environment has reset: a resume refused for a
        # config that does not fit the saved run leaves the run's configuration.yaml as it was.
        started.append(True)
        dump_run_options(options, os.path.join(write_path, "configuration.yaml"))

    try:
        # Each plugin's writers, guarded: a broken one is reported and left out or switched
        # off, and training goes on without it.
        writers = make_stats_writers(options, load_stats_writer_factories())
        controller = TrainerController(options, registry, env, writers, seed)
        controller.start_learning(on_ready=ready)
    except BaseException as exc:
        if not started and created:
            # A new run that failed before its first step (a trainer refusing the environment,
            # an environment failing its reset, Ctrl-C during start-up) leaves no folder
            # behind: rerunning the same --run-id must not need --force.
            results = options.checkpoint_settings.results_dir
            shutil.rmtree(check_inside(results, write_path, "delete"), ignore_errors=True)
            if results in created:
                try:
                    os.rmdir(results)  # only if empty
                except OSError:
                    pass
        if isinstance(exc, TrainerConfigError) and not started:
            raise TrainerConfigError(f"{args.trainer_config_path or '<command line>'}: {exc}") \
                from None
        raise
    finally:
        if lock is not None:
            lock.close()
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
