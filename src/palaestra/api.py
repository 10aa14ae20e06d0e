"""`palaestra.learn`: training from Python (a notebook, a script, a sweep), as `palaestra learn`
trains from the shell, with exceptions instead of exit codes.

It leaves the process as it found it unless asked: torch's and BLAS's thread counts, denormal
flushing and malloc's thresholds are tuned only with `tune_process=True` (the command always
asks, and then `torch_settings.accel` decides: see `palaestra.accel.process`); the global
torch random state is restored afterwards (a run seeds its own draws), and signal handlers are
put back. The speed paths that touch nothing outside the run (oneDNN products, flat Adam, NumPy
acting, a side thread where torch already runs one thread) follow `torch_settings.accel`.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import IO, Any, Dict, List, Mapping, Optional, Tuple, Union

from palaestra.exception import PalaestraError, TrainerConfigError
from palaestra.paths import (behavior_parts, check_behavior_folders, check_inside, join_inside,
                             lock_run, safe_component)

logger = logging.getLogger("palaestra")

# Keyword arguments of `learn` (and flags of `palaestra learn`) by the config section they set.
FLAG_SECTIONS: Dict[str, Tuple[str, ...]] = {
    "checkpoint_settings": ("run_id", "resume", "force", "initialize_from", "results_dir",
                            "inference", "load_model"),
    "env_settings": ("env_path", "num_envs", "num_workers", "worker_sync", "seed", "env_args",
                     "timeout_step",
                     "base_port", "num_areas", "timeout_wait", "max_lifetime_restarts",
                     "restarts_rate_limit_n", "restarts_rate_limit_period_s"),
    "engine_settings": ("width", "height", "quality_level", "time_scale", "target_frame_rate",
                        "capture_frame_rate", "no_graphics", "no_graphics_monitor"),
    "torch_settings": ("device", "accel"),
}
# Flags that set a key of a block inside a section: flag -> (section, block, key).
FLAG_BLOCKS: Dict[str, Tuple[str, str, str]] = {
    "ray_address": ("env_settings", "ray", "address"),
    "ray_actors": ("env_settings", "ray", "num_actors"),
    "ray_chunk_steps": ("env_settings", "ray", "chunk_steps"),
}
_FLAG_SECTION = {flag: section for section, flags in FLAG_SECTIONS.items() for flag in flags}
_FLAG_SECTION.update({flag: section for flag, (section, _, _) in FLAG_BLOCKS.items()})
_SECTIONS = ("behaviors", "default_settings", "env_settings", "engine_settings",
             "environment_parameters", "checkpoint_settings", "torch_settings")


@dataclass(frozen=True)
class RunResult:
    """What a finished (or stopped) run left: its folder, each behavior's step count, and the
    last summary each behavior wrote (stat name -> mean over that summary period, e.g.
    "Environment/Cumulative Reward")."""

    run_id: str
    path: str
    steps: Dict[str, int] = field(default_factory=dict)
    stats: Dict[str, Dict[str, float]] = field(default_factory=dict)
    #: behavior -> its latest ONNX export (`<run>/<behavior>.onnx`), where one was written
    models: Dict[str, str] = field(default_factory=dict)
    #: `<run>/curves.png`, or None when nothing was summarised (or drawing failed)
    curves: Optional[str] = None
    #: stopped by Ctrl-C / SIGTERM before every behavior reached max_steps (--resume continues)
    interrupted: bool = False
    max_steps: Dict[str, int] = field(default_factory=dict)
    #: False for an inference run (checkpoint_settings.inference): nothing was written
    training: bool = True


def overrides_from_flags(values: Mapping[str, Any]) -> Dict[str, Any]:
    """Config overrides from flag-named values (None = not given), by section. One of
    resume / force given decides over the other's value in the file (a config may say
    `force: true`; `--resume` must still resume, not refuse or delete)."""
    out: Dict[str, Dict[str, Any]] = {}
    for flag, value in values.items():
        if value is None:
            continue
        if flag in FLAG_BLOCKS:
            section, block, key = FLAG_BLOCKS[flag]
            out.setdefault(section, {}).setdefault(block, {})[key] = value
        else:
            out.setdefault(_FLAG_SECTION[flag], {})[flag] = value
    ckpt = out.get("checkpoint_settings", {})
    if ckpt.get("resume") and not ckpt.get("force"):
        ckpt["force"] = False
    if ckpt.get("force") and not ckpt.get("resume"):
        ckpt["resume"] = False
    return dict(out)


def learn(config: Union[str, "os.PathLike[str]", Mapping[str, Any], None] = None, *,
          run_id: Optional[str] = None, env: Optional[str] = None,
          max_steps: Optional[float] = None, tune_process: bool = False, **overrides: Any
          ) -> RunResult:
    """Train the behaviors of an environment, as `palaestra learn` does.

    `config`: a YAML file's path, or a mapping with the same content; None trains every
    behavior with the default (PPO) settings. `run_id`, `env` (a Gymnasium id or
    `module.path:factory`) and `max_steps` (every behavior's) are the command's flags; so are
    `num_envs`, `num_workers` and `worker_sync` (worker processes for the copies:
    docs/scale-out.md), `ray_address`, `ray_actors` and `ray_chunk_steps` (Ray actors:
    `env_settings.ray`), `seed`, `resume`, `force`, `initialize_from`, `results_dir`, `device`, `accel` ("auto" / "off"),
    `timeout_step`, `env_args` (a list of "key=value"), `inference`,
    `deterministic`, `debug`, and mlagents-learn's Unity flags (`base_port`, `num_areas`,
    `timeout_wait`, `no_graphics`, `time_scale`, `width`, ...: `FLAG_SECTIONS`). Any other
    keyword names a config section and merges into it: `torch_settings={"num_threads": 2}`,
    `behaviors={...}`.

    Returns a `RunResult`; raises `PalaestraError` subclasses (`TrainerConfigError`,
    `CheckpointError`, `EnvironmentSetupError`, `NonFiniteError`, ...) and `OSError` instead
    of printing them. A first Ctrl-C (or SIGTERM) stops the run after a checkpoint and
    returns; a second raises KeyboardInterrupt.
    """
    from palaestra.config import deep_update

    flags: Dict[str, Any] = {"run_id": run_id, "env_path": env}
    sections: Dict[str, Any] = {}
    debug = bool(overrides.pop("debug", False))
    deterministic = bool(overrides.pop("deterministic", False))
    for key, value in overrides.items():
        if key in _FLAG_SECTION:
            flags[key] = value
        elif key in _SECTIONS:
            if not isinstance(value, Mapping) and key != "environment_parameters":
                raise TypeError(f"learn({key}=...): expected a mapping of {key} settings")
            sections[key] = value
        else:
            raise TypeError(f"learn() got an unexpected keyword argument {key!r}; allowed: "
                            f"run_id, env, max_steps, tune_process, debug, deterministic, "
                            f"{', '.join(sorted(_FLAG_SECTION))}, or a config section "
                            f"({', '.join(_SECTIONS)})")
    if flags.get("env_args") is not None:
        flags["env_args"] = [str(a) for a in flags["env_args"]]
    merged: Dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v
                              for k, v in sections.items()}
    for section, values in overrides_from_flags(flags).items():
        deep_update(merged.setdefault(section, {}), values)  # `ray_address` keeps ray={...}
    if debug:
        merged["debug"] = True
    if deterministic:
        merged["deterministic"] = True
    path = os.fspath(config) if isinstance(config, os.PathLike) else config
    return run(path, merged, max_steps, tune_process)


def run(config: Union[str, Mapping[str, Any], None], overrides: Mapping[str, Any],
        max_steps: Optional[float], tune_process: bool) -> RunResult:
    """`learn` with its overrides by section (the command calls this)."""
    import numpy as np
    import torch

    from palaestra.accel import Accel
    from palaestra.config import check_supported, load_run_options, max_steps_from_flag
    from palaestra.registry import TrainerRegistry

    source = config if isinstance(config, str) else None
    registry = TrainerRegistry.from_entry_points()
    overrides = dict(overrides)
    # `--deterministic` (as mlagents-learn's): every behavior's network_settings.deterministic
    deterministic = bool(overrides.pop("deterministic", False))
    options = load_run_options(config, registry, overrides)
    check_supported(options, source)
    every = [s for s in [*options.behaviors.values(), options.default_settings] if s is not None]
    if max_steps is not None:
        steps = max_steps_from_flag(max_steps)
        for settings in every:
            settings.max_steps = steps
    if deterministic:
        for settings in every:
            settings.network_settings.deterministic = True
    env_settings = options.env_settings
    if env_settings.seed < 0:
        env_settings.seed = int(np.random.default_rng().integers(0, 10000))
    if options.debug:
        logger.setLevel(logging.DEBUG)
    logger.info("Run %s, seed %d", options.checkpoint_settings.run_id, env_settings.seed)
    _check_names(options)
    if tune_process:
        _tune_process(options)
    accel = Accel.from_mode(options.torch_settings.accel.value,
                            options.torch_settings.device or "cpu")
    logger.info("%s", accel.describe())
    try:
        with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
            torch.manual_seed(env_settings.seed)
            return _train(options, registry, accel, source)
    finally:
        accel.close()


def _tune_process(options: Any) -> None:
    """As `palaestra learn` sets the process up: with accel auto every tuning of
    `palaestra.accel.process`; with accel off only the threads the config names."""
    from palaestra.accel.process import set_threads, tune_process
    from palaestra.settings import AccelMode

    threads = options.torch_settings.num_threads
    if options.torch_settings.accel is AccelMode.AUTO:
        tune_process(threads or 1)
    elif threads is not None:
        set_threads(threads)


def _train(options: Any, registry: Any, accel: Any, source: Optional[str]) -> RunResult:
    from palaestra.config import dump_run_options
    from palaestra.controller import TrainerController
    from palaestra.envs import make_environment
    from palaestra.registry import load_stats_writer_factories
    from palaestra.stats import make_stats_writers

    env_settings = options.env_settings
    inference = options.checkpoint_settings.inference
    from palaestra.config import targets_unity

    unity = targets_unity(env_settings.env_path)
    created: List[str] = []
    lock: Optional[IO[str]] = None
    env = None
    try:
        if unity and not inference:
            # A build writes its log into run_logs/ from its start: the run's folder first
            # (removed again below if the build fails to connect).
            created, lock = _prepare_run_dir(options)
        if unity:
            env = _make_unity(options, inference)
        elif env_settings.ray is not None:
            from palaestra.scale.ray_fleet import FleetSettings, RayFleet

            env = RayFleet.start(FleetSettings.from_env_settings(env_settings))
        elif env_settings.num_workers:
            from palaestra.envs.workers import WorkerEnv, WorkerSettings

            env = WorkerEnv(env_settings.env_path, env_settings.env_args,
                            env_settings.num_envs, env_settings.seed,
                            WorkerSettings.from_env_settings(env_settings))
        else:
            env = make_environment(env_settings.env_path, env_settings.env_args,
                                   env_settings.num_envs, env_settings.seed)
        check_behavior_folders(list(env.behavior_specs))  # before touching disk
        for name in env.behavior_specs:
            options.behavior_settings(name)
        # Inference only reads the run (or the --initialize-from one): nothing is created,
        # locked or written.
        if not unity and not inference:
            created, lock = _prepare_run_dir(options)
        if inference:
            _check_inference_run(options)
    except BaseException:
        try:
            if env is not None:
                env.close()
        finally:
            if lock is not None:
                lock.close()
            _remove_new_run(options, created)
        raise
    write_path = options.checkpoint_settings.write_path
    started: List[bool] = []

    def ready() -> None:
        # The resolved configuration is written once the trainers exist (and, with --resume,
        # have loaded their checkpoints) and the environment has reset: a resume refused for a
        # config that does not fit the saved run leaves the run's configuration.yaml as it was.
        started.append(True)
        if not inference:
            dump_run_options(options, os.path.join(write_path, "configuration.yaml"))

    latest = _latest_stats()
    try:
        # Each plugin's writers, guarded: a broken one is reported and left out or switched
        # off, and training goes on without it.
        writers = make_stats_writers(options, load_stats_writer_factories())
        controller = TrainerController(options, registry, env, [*writers, latest],
                                       env_settings.seed, accel)
        controller.start_learning(on_ready=ready)
    except BaseException as exc:
        if not started:
            # A new run that failed before its first step (a trainer refusing the environment,
            # an environment failing its reset, Ctrl-C during start-up) leaves no folder
            # behind: rerunning the same run id must not need --force.
            _remove_new_run(options, created)
        if isinstance(exc, TrainerConfigError) and not started:
            raise TrainerConfigError(f"{source or '<command line>'}: {exc}") from None
        raise
    finally:
        if lock is not None:
            lock.close()
    steps = {name: trainer.get_step for name, trainer in controller.trainers.items()}
    max_steps = {name: trainer.get_max_steps for name, trainer in controller.trainers.items()}
    models = {}
    for name in [] if inference else controller.trainers:
        onnx = os.path.normpath(join_inside(write_path, behavior_parts(name))) + ".onnx"
        if os.path.isfile(onnx):
            models[name] = onnx
    return RunResult(options.checkpoint_settings.run_id, write_path, steps, latest.stats,
                     models=models, curves=None if inference else _draw_curves(write_path),
                     interrupted=controller.stop_requested and not inference and
                     any(steps[n] < max_steps[n] for n in steps),
                     max_steps=max_steps, training=not inference)


def _draw_curves(write_path: str) -> Optional[str]:
    """`<run>/curves.png`; a failure to draw is reported and never fails the run."""
    try:
        from palaestra.plot import write_run_curves

        return write_run_curves(write_path)
    except Exception as exc:  # noqa: BLE001 - a picture is not worth a failed run
        logger.warning("curves.png not drawn (%s: %s)", type(exc).__name__, exc)
        return None


def _remove_new_run(options: Any, created: List[str]) -> None:
    """Remove the folders a new run made (`created`, from `_prepare_run_dir`), if any."""
    if not created:
        return
    results = options.checkpoint_settings.results_dir
    shutil.rmtree(check_inside(results, options.checkpoint_settings.write_path, "delete"),
                  ignore_errors=True)
    if results in created:
        try:
            os.rmdir(results)  # only if empty
        except OSError:
            pass


def _make_unity(options: Any, inference: bool) -> Any:
    try:
        import grpc  # noqa: F401
    except ImportError:
        from palaestra.exception import EnvironmentSetupError

        where = options.env_settings.env_path
        raise EnvironmentSetupError(
            ("No environment given (--env): palaestra would wait for the Unity Editor, "
             if not where else f"--env {where} is a Unity build: ") +
            "Unity needs grpcio: pip install \"palaestra[unity]\". For a Gymnasium or "
            "built-in environment give --env (e.g. --env CartPole-v1, --env 3DBall).") from None
    from palaestra.unity.environment import make_unity_environment
    from palaestra.unity.side_channels import load_side_channel_plugins

    log_folder = None if inference else os.path.join(
        options.checkpoint_settings.write_path, "run_logs")
    return make_unity_environment(options.env_settings.env_path, options, log_folder,
                                  load_side_channel_plugins().channels)


def _latest_stats() -> Any:
    """A stats writer keeping each behavior's last summary, for `RunResult.stats`."""
    from palaestra.stats import StatsSummary, StatsWriter

    class LatestStats(StatsWriter):
        def __init__(self) -> None:
            self.stats: Dict[str, Dict[str, float]] = {}

        def write_stats(self, category: str, values: Dict[str, StatsSummary],
                        step: int) -> None:
            self.stats[category] = {key: float(s.mean) for key, s in values.items()}

    return LatestStats()


def _check_names(options: Any) -> None:
    """Run ids become folder names: checked before anything else happens."""
    ckpt = options.checkpoint_settings
    safe_component(ckpt.run_id, "checkpoint_settings.run_id (--run-id)")
    if ckpt.initialize_from is not None:
        safe_component(ckpt.initialize_from, "checkpoint_settings.initialize_from "
                                             "(--initialize-from)")


def _check_inference_run(options: Any) -> None:
    """Inference reads a run that exists: this run id's with --resume (its checkpoints), or
    the --initialize-from one (checked with the others in `_prepare_run_dir`'s way)."""
    ckpt = options.checkpoint_settings
    path = ckpt.write_path
    if ckpt.resume:
        check_inside(ckpt.results_dir, path, "read the run folder")
        if os.path.islink(path) or not os.path.isdir(path) or not _is_run_folder(path):
            raise PalaestraError(f"inference with --resume: no palaestra run '{ckpt.run_id}' "
                                 f"at {path}; train it first, or give --results-dir.")
    if ckpt.initialize_from:
        source = os.path.join(ckpt.results_dir, ckpt.initialize_from)
        if not os.path.isdir(source):
            raise PalaestraError(f"--initialize-from {ckpt.initialize_from}: no run at {source}.")


def _is_run_folder(path: str) -> bool:
    """Whether `path` (not a link: checked before) is a folder palaestra made: every run has
    its run_logs/ from the start."""
    run_logs = os.path.join(path, "run_logs")
    return os.path.isdir(run_logs) and not os.path.islink(run_logs)


def _prepare_run_dir(options: Any) -> Tuple[List[str], Optional[IO[str]]]:
    """Check the run's folder against resume/force, create it and lock it. Returns the
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
    from palaestra.atomic import remove_stale_temp_files

    remove_stale_temp_files(path)  # configuration.yaml's, if a kill interrupted its writing
    return created, lock
