"""`TrainerController`: owns the loop of one run.

Per iteration: the env manager steps the environment (trajectories land in trainer queues),
then each trainer advances (processes trajectories, updates when ready). Summaries and
checkpoints are the trainers' own business, on their own step counts. Ctrl-C (or SIGTERM) ends
the loop after the current step; every trainer then saves, so `--resume` continues from there.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Callable, Dict, List, Optional

from palaestra.agent_processor import AgentProcessor
from palaestra.checkpoint import atomic_write_text
from palaestra.env_manager import EnvManager
from palaestra.envs.base import BaseEnv, BehaviorSpec
from palaestra.exception import TrainerConfigError
from palaestra.registry import TrainerRegistry
from palaestra.settings import RunOptions
from palaestra.stats import StatsReporter, StatsWriter
from palaestra.timers import Timers
from palaestra.trainer.rl_trainer import BehaviorIdentifiers, RLTrainer

logger = logging.getLogger("palaestra")


class TrainerController:
    def __init__(self, options: RunOptions, registry: TrainerRegistry, env: BaseEnv,
                 writers: List[StatsWriter], seed: int) -> None:
        self.options = options
        self.registry = registry
        self.writers = writers
        self.seed = seed
        self.timers = Timers()
        self.env_manager = EnvManager(env, self.timers)
        self.trainers: Dict[str, RLTrainer] = {}
        self.write_path = options.checkpoint_settings.write_path
        self.status_path = os.path.join(self.write_path, "run_logs", "training_status.json")
        self._stop_requested = False

    def _create_trainers(self) -> None:
        unknown = set(self.options.behaviors) - set(self.env_manager.env.behavior_specs)
        if unknown:
            logger.warning("Behaviors configured but not in the environment (ignored): %s. The "
                           "environment has: %s", ", ".join(sorted(unknown)),
                           ", ".join(self.env_manager.env.behavior_specs))
        for name, spec in self.env_manager.env.behavior_specs.items():
            try:
                self._create_trainer(name, spec)
            except TrainerConfigError as exc:  # e.g. a plugin refusing this environment
                raise TrainerConfigError(f"behaviors.{name}: {exc}") from None

    def _create_trainer(self, name: str, spec: BehaviorSpec) -> None:
        ckpt = self.options.checkpoint_settings
        device = self.options.torch_settings.device or "cpu"
        settings = self.options.behavior_settings(name)
        if ckpt.initialize_from and settings.init_path is None:
            settings.init_path = os.path.join(ckpt.results_dir, ckpt.initialize_from, name,
                                              "checkpoint.pt")
        info = self.registry.get(settings.trainer_type)
        trainer: RLTrainer = info.trainer_cls(
            name, 1, settings, True, ckpt.resume, self.seed, os.path.join(self.write_path, name))
        reporter = StatsReporter(name, self.writers)
        trainer.bind_run(reporter, device, self.status_path, self.timers)
        behavior_id = BehaviorIdentifiers.from_name_behavior_id(name)
        policy = trainer.create_policy(behavior_id, spec)
        trainer.add_policy(behavior_id, policy)
        processor = AgentProcessor(name, spec, settings.time_horizon, reporter,
                                   trainer.publish_trajectory)
        self.env_manager.add_behavior(name, policy, processor)
        self.trainers[name] = trainer
        for writer in self.writers:
            writer.on_start(name, settings.max_steps, trainer.get_step)

    def _request_stop(self, signum: int, frame: object) -> None:
        self._stop_requested = True

    def start_learning(self, on_ready: Optional[Callable[[], None]] = None) -> None:
        """Train until every trainer is done or a stop is asked for. `on_ready` runs once the
        trainers exist and have restored any checkpoint, before the first step."""
        self._create_trainers()
        for name, trainer in self.trainers.items():
            if trainer.get_step >= trainer.trainer_settings.max_steps:
                logger.info("%s: step %d already reaches max_steps %d: nothing to train (raise "
                            "max_steps or --max-steps to continue).", name, trainer.get_step,
                            trainer.trainer_settings.max_steps)
        self.env_manager.reset()  # an environment that fails here has trained nothing to save
        if on_ready is not None:
            on_ready()
        previous = signal.signal(signal.SIGTERM, self._request_stop)
        interrupted = False
        start = time.perf_counter()
        try:
            trainers = list(self.trainers.values())
            while not self._stop_requested and any(t.should_still_train for t in trainers):
                self.env_manager.advance()
                for trainer in trainers:
                    trainer.advance()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            # The whole loop, so that the share of untimed work can be read off timers.json.
            self.timers.add("training_loop", time.perf_counter() - start)
            signal.signal(signal.SIGTERM, previous)
            if interrupted or self._stop_requested:
                logger.info("Training interrupted: saving checkpoints before exiting.")
            self._finish()

    def _finish(self) -> None:
        for trainer in self.trainers.values():
            trainer.save_model()
            if trainer.stats_reporter.get_pending("Environment/Cumulative Reward"):
                trainer.stats_reporter.write_stats(trainer.get_step)
        for writer in self.writers:
            writer.close()
        self.env_manager.close()
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
