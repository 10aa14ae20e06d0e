"""`TrainerController`: owns the loop of one run.

Per iteration: the env manager steps the environment (trajectories land in trainer queues),
then each trainer advances (processes trajectories, updates when ready). Summaries and
checkpoints are the trainers' own business, on their own step counts. Ctrl-C (or SIGTERM) ends
the loop after the current step; every trainer then saves, so `--resume` continues from there
(palaestra.watchdog: the same for an environment that hangs).
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Dict, List, Optional, Set, Type

from palaestra.accel import Accel
from palaestra.agent_processor import AgentProcessor
from palaestra.atomic import atomic_write_text
from palaestra.env_manager import EnvManager
from palaestra.envs.base import BehaviorSpec
from palaestra.exception import NonFiniteError, PalaestraError, TrainerConfigError
from palaestra.describe import describe_error
from palaestra.registry import TrainerRegistry
from palaestra.settings import RunOptions
from palaestra.stats import StatsReporter, StatsWriter, guard_writers
from palaestra.timers import Timers
from palaestra.paths import behavior_parts, check_behavior_folders, join_inside
from palaestra.trainer.rl_trainer import RLTrainer
from palaestra.trainer.run_context import RunContext
from palaestra.watchdog import EnvGuard, EnvironmentTimeout, StopRequested

logger = logging.getLogger("palaestra")


class TrainerController:
    def __init__(self, options: RunOptions, registry: TrainerRegistry, env: Any,
                 writers: List[StatsWriter], seed: int, accel: Optional[Accel] = None) -> None:
        """`env`: a `BaseEnv`, or with `env_settings.ray` the `palaestra.scale.RayFleet`
        whose actors step the copies (`RayEnvManager` then drives it instead of
        `EnvManager`)."""
        self.options = options
        self.accel_plan = accel  # the run's speed paths, applied to each trainer it builds
        self.registry = registry
        self.writers = guard_writers(writers)  # a failing writer is reported and switched off
        self.seed = seed
        self.timers = Timers()
        self.env_manager: Any = EnvManager(env, self.timers)
        if options.env_settings.ray is not None:  # `env` is the run's Ray actors (api)
            from palaestra.scale.ray_manager import RayEnvManager

            self.env_manager = RayEnvManager(env, self.timers,
                                             accel is not None and accel.numpy_acting)
        self.trainers: Dict[str, RLTrainer] = {}
        self.write_path = options.checkpoint_settings.write_path
        self.status_path = os.path.join(self.write_path, "run_logs", "training_status.json")
        self._stop_requested = False
        # ML-Agents' inference mode: the policies act, nothing updates or is written; each
        # behavior runs max_steps steps from where its checkpoint left it (or until Ctrl-C).
        self.inference = options.checkpoint_settings.inference
        self._first_step: Dict[str, int] = {}
        self._untrained: Set[str] = set()  # behaviors that appeared mid-run without settings

    def _create_trainers(self) -> None:
        unknown = set(self.options.behaviors) - set(self.env_manager.env.behavior_specs)
        if unknown:
            logger.warning("Behaviors configured but not in the environment (ignored): %s. The "
                           "environment has: %s", ", ".join(sorted(unknown)),
                           ", ".join(self.env_manager.env.behavior_specs))
        self._create_new_trainers()

    def _create_new_trainers(self) -> None:
        """A trainer for each behavior of the environment that has none: all of them at the
        start, and later a Unity behavior whose agents first appear in the middle of a run
        (a spawned prefab), as ML-Agents makes its trainers when behaviors first report."""
        specs = self.env_manager.env.behavior_specs
        new = [name for name in specs if name not in self.trainers
               and name not in self._untrained]
        if not new:
            return
        if not self.trainers:  # the start: any fault ends the run before it writes
            check_behavior_folders(new)
            for name in new:
                try:
                    self._create_trainer(name, specs[name])
                except TrainerConfigError as exc:  # e.g. a plugin refusing this environment
                    raise TrainerConfigError(f"behaviors.{name}: {exc}") from None
            return
        for name in new:  # mid-run: the others train on; one that cannot acts with zeros
            try:
                check_behavior_folders([*self.trainers, name])
                self._create_trainer(name, specs[name])
            except PalaestraError as exc:  # no settings for it, an unsafe name, ...
                self._untrained.add(name)
                logger.error("Behavior %s appeared during the run but cannot be trained: %s. "
                             "Its agents act with zero actions.", name, exc)

    def _create_trainer(self, name: str, spec: BehaviorSpec) -> None:
        ckpt = self.options.checkpoint_settings
        device = self.options.torch_settings.device or "cpu"
        settings = self.options.behavior_settings(name)
        if ckpt.initialize_from and settings.init_path is None:
            settings.init_path = os.path.join(ckpt.results_dir, ckpt.initialize_from, name,
                                              "checkpoint.pt")
        info = self.registry.get(settings.trainer_type)
        # Behavior names come from the environment: each part must be a plain folder name, and
        # the folder must resolve inside the run's (behavior_parts, join_inside).
        artifact_path = join_inside(self.write_path, behavior_parts(name))
        reporter = StatsReporter(name, self.writers)
        if self.inference and not ckpt.resume:
            artifact_path = None  # weights from --initialize-from; this run has no folder
        run = RunContext(artifact_path=artifact_path, seed=self.seed, resume=ckpt.resume,
                         training=not self.inference, stats_reporter=reporter, device=device,
                         status_path=self.status_path, timers=self.timers,
                         accel=self.accel_plan,
                         env_steps_elsewhere=bool(getattr(self.env_manager.env,
                                                          "steps_elsewhere", False)))
        trainer_cls: Type[RLTrainer[Any]] = info.trainer_cls  # checked by the registry
        trainer = trainer_cls.build(name, settings, spec, run)
        processor = AgentProcessor(name, spec, settings.time_horizon, reporter,
                                   trainer.publish_trajectory)
        self.env_manager.add_behavior(name, trainer.policy, processor)
        self.trainers[name] = trainer
        self._first_step[name] = trainer.get_step
        for writer in self.writers:
            writer.on_start(name, settings.max_steps, trainer.get_step)

    @property
    def stop_requested(self) -> bool:
        """Whether Ctrl-C, SIGTERM or a hanging environment stopped the loop."""
        return self._stop_requested

    def _request_stop(self) -> None:
        if not self._stop_requested:
            logger.info("Stop requested: finishing the current step, then saving checkpoints.")
        self._stop_requested = True

    def start_learning(self, on_ready: Optional[Callable[[], None]] = None) -> None:
        """Train until every trainer is done or a stop is asked for. `on_ready` runs once the
        trainers exist and have restored any checkpoint, before the first step.

        Checkpoints are saved at the end, at a stop (Ctrl-C, SIGTERM) and when the
        environment hangs or fails, since the trainers are then consistent; not after an
        error inside a trainer (possibly half-way through an update) or non-finite weights:
        then checkpoint.pt keeps the last complete, finite state."""
        self._create_trainers()
        for name, trainer in self.trainers.items():
            if self.inference:
                logger.info("%s: inference from step %d: acting for %d steps without training "
                            "(Ctrl-C stops)", name, trainer.get_step, trainer.get_max_steps)
            elif trainer.get_step >= trainer.trainer_settings.max_steps:
                logger.info("%s: step %d already reaches max_steps %d: nothing to train (raise "
                            "max_steps or --max-steps to continue).", name, trainer.get_step,
                            trainer.trainer_settings.max_steps)
        timeout = self.options.env_settings.timeout_step or None
        guard = EnvGuard(timeout, self._request_stop)
        self.env_manager.guard = guard
        save = failing = False
        start = time.perf_counter()
        with guard:
            try:
                self.env_manager.reset()  # an environment failing here has trained nothing
                if on_ready is not None:
                    on_ready()
                for trainer in self.trainers.values():
                    # The first checkpoint at once: a run killed before its first interval
                    # resumes instead of being stuck with a folder and no checkpoint.
                    if trainer.get_step == 0 and not self.inference:
                        trainer.save_model(0, latest_only=True)
                save = not self.inference
                self._loop()
            except StopRequested:
                pass  # Ctrl-C / SIGTERM broke into a hanging environment call
            except EnvironmentTimeout:
                failing = True
                raise  # the trainers are consistent: saved below
            except _EnvironmentFailed as exc:
                failing = True
                cause = exc.__cause__
                assert cause is not None
                logger.error("The environment failed (%s): saving checkpoints, then stopping.",
                             describe_error(cause).replace("the plugin called", "it called"))
                raise cause from None
            except KeyboardInterrupt:
                save, failing = False, True
                logger.warning("Second interrupt: stopping without saving; the last checkpoint "
                               "is kept.")
                raise
            except BaseException as exc:
                save, failing = False, True
                self._report_unsaved(exc)
                raise
            finally:
                # The whole loop, so that the share of untimed work can be read off timers.json.
                self.timers.add("training_loop", time.perf_counter() - start)
                if self._stop_requested:
                    logger.info("Training interrupted: saving checkpoints before exiting.")
                self._finish(save, failing)

    def _running(self) -> bool:
        if self.inference:
            return any(t.get_step - self._first_step[name] < t.get_max_steps
                       for name, t in self.trainers.items())
        return any(t.should_still_train for t in self.trainers.values())

    def _loop(self) -> None:
        trainers = list(self.trainers.values())
        while not self._stop_requested and self._running():
            if len(self.env_manager.env.behavior_specs) != \
                    len(self.trainers) + len(self._untrained):
                self._create_new_trainers()
                trainers = list(self.trainers.values())
            try:
                self.env_manager.advance()
            except (NonFiniteError, StopRequested):
                raise
            except KeyboardInterrupt:
                guard = self.env_manager.guard
                if guard is None or guard.interrupted_twice:
                    raise
                # The environment's own code raised it (a simulator that handles SIGINT
                # itself): a stop asked for, as a first Ctrl-C is.
                self._request_stop()
                return
            except BaseException as exc:
                # The environment (or acting) failed: the trainers are as consistent as at any
                # step, so they save before the error is reported.
                raise _EnvironmentFailed() from exc
            for trainer in trainers:
                trainer.advance()

    def _report_unsaved(self, exc: BaseException) -> None:
        if isinstance(exc, NonFiniteError):
            return  # its own message says which checkpoint is kept
        kept = ", ".join(f"{name} step {t.last_saved_step}" for name, t in self.trainers.items()
                         if t.last_saved_step >= 0) or "none"
        logger.error("Training stopped by %s: checkpoints are not saved now (the state may be "
                     "half-way through an update); the last complete ones are kept (%s).",
                     type(exc).__name__, kept)

    def _finish(self, save: bool, failing: bool = False) -> None:
        """Save (if `save`), close the writers and the environment, write timers.json. Each
        step runs even if one before it failed; while a failure is already being reported
        (`failing`), a later one is logged instead of replacing it."""
        steps = [("saving checkpoints", self._save_all)] if save else []
        if self.inference:
            steps.append(("summarising", self._summarise_pending))
        steps += [("closing the stats writers", self._close_writers),
                  ("closing the environment", self.env_manager.close)]
        if not self.inference:
            steps.append(("writing timers.json", self._write_timers))
        first: Optional[BaseException] = None
        for what, step in steps:
            try:
                step()
            except BaseException as exc:
                if failing or first is not None:
                    logger.error("Also failed while %s: %s: %s", what, type(exc).__name__, exc)
                else:
                    first = exc
        if first is not None:
            raise first

    def _save_all(self) -> None:
        for trainer in self.trainers.values():
            trainer.flush()
            trainer.save_model()
            if trainer.stats_reporter.get_pending("Environment/Cumulative Reward"):
                trainer.stats_reporter.write_stats(trainer.get_step)

    def _summarise_pending(self) -> None:
        for trainer in self.trainers.values():
            trainer.flush()
            if trainer.stats_reporter.get_pending("Environment/Cumulative Reward"):
                trainer.stats_reporter.write_stats(trainer.get_step)

    def _close_writers(self) -> None:
        for writer in self.writers:
            writer.close()

    def _write_timers(self) -> None:
        run_logs = os.path.join(self.write_path, "run_logs")
        os.makedirs(run_logs, exist_ok=True)
        atomic_write_text(json.dumps(self.timers.as_dict(), indent=2),
                          os.path.join(run_logs, "timers.json"))

    def final_rewards(self) -> Dict[str, Optional[float]]:
        """Mean cumulative reward of each behavior's last summary (None if no episode ended)."""
        out: Dict[str, Optional[float]] = {}
        for name, trainer in self.trainers.items():
            summary = trainer.stats_reporter.get_stats_summaries("Environment/Cumulative Reward")
            out[name] = None if summary is None else summary.mean
        return out


class _EnvironmentFailed(Exception):
    """Carries an error of the environment's step out of the loop (as its __cause__)."""
