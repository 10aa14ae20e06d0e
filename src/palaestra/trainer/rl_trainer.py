"""`RLTrainer`: the contract every trainer (built-in or plugin) fulfils, and what it gets free.

A trainer must implement `create_policy`, `create_optimizer`, `_process_trajectory`,
`_is_ready_update` and `_update_policy` (the last two come ready-made in `OnPolicyTrainer` /
`OffPolicyTrainer`). It gets: the typed `hyperparameters`, step counting, summaries every
`summary_freq`, checkpoints every `checkpoint_interval`, resume / initialise-from, the
`collected_rewards` bookkeeping and end-of-episode reward stats, and a stats reporter.

A trainer is built in one step, ``MyTrainer.build(name, settings, spec, RunContext(...))``:
constructed from what the run gives (`RunContext`), its policy created and attached.
"""
from __future__ import annotations

import abc
import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Dict, Generic, List, Mapping, Optional, Sequence, Type, TypeVar

import numpy as np
import torch
from torch import nn

from palaestra.buffer import AgentBuffer, check_columns_fit, load_columns
from palaestra.atomic import atomic_write_bytes
from palaestra.checkpoint import CheckpointManager, load_checkpoint, restore_modules
from palaestra.exception import CheckpointError, NonFiniteError, TrainerNotReadyError
from palaestra.envs.base import BehaviorSpec
from palaestra.networks.networks import SharedActorCritic, SimpleActor
from palaestra.optimizer import TorchOptimizer
from palaestra.policy import TorchPolicy, policy_description
from palaestra.settings import HyperparamSettings, TrainerSettings
from palaestra.stats import StatsReporter
from palaestra.timers import Timers
from palaestra.trainer.run_context import RunContext
from palaestra.trajectory import Trajectory

logger = logging.getLogger("palaestra")

H = TypeVar("H", bound=HyperparamSettings)
TrainerT = TypeVar("TrainerT", bound="RLTrainer[Any]")


@dataclass(frozen=True)
class BehaviorIdentifiers:
    """Names a behavior (ML-Agents' ``name?team=N`` form is parsed for later self-play)."""

    behavior_id: str
    brain_name: str
    team_id: int = 0

    @staticmethod
    def from_name_behavior_id(name_behavior_id: str) -> "BehaviorIdentifiers":
        brain, _, team = name_behavior_id.partition("?team=")
        return BehaviorIdentifiers(name_behavior_id, brain, int(team) if team else 0)


class RLTrainer(abc.ABC, Generic[H]):
    def __init__(self, behavior_name: str, trainer_settings: TrainerSettings,
                 run: Optional[RunContext] = None) -> None:
        """Fields only: the policy and optimizer come from `add_policy` (`build` does both).
        A subclass that defines `__init__` takes these three arguments and passes them on."""
        if run is None:
            run = RunContext(artifact_path=None)
        self.brain_name = behavior_name
        self.trainer_settings = trainer_settings
        self.hyperparameters: H = trainer_settings.hyperparameters
        self.is_training = run.training
        self.load = run.resume
        self.seed = run.seed
        self.artifact_path = run.artifact_path
        self.stats_reporter = (StatsReporter(behavior_name, []) if run.stats_reporter is None
                               else run.stats_reporter)
        self.device = run.device
        self.timers = Timers() if run.timers is None else run.timers
        self.status_path = run.status_path
        self._policy: Optional[TorchPolicy] = None
        self._optimizer: Optional[TorchOptimizer] = None
        self.policies: Dict[str, TorchPolicy] = {}
        self.update_buffer = AgentBuffer()
        self.collected_rewards: Dict[str, Dict[Any, float]] = {"environment": defaultdict(float)}
        self.rng = np.random.default_rng(None if run.seed < 0 else run.seed)
        self._queue: List[Trajectory] = []
        self._queued_steps = 0
        self._step = 0
        self._next_summary = trainer_settings.summary_freq
        self._next_save = trainer_settings.checkpoint_every()
        self._checkpoints: Optional[CheckpointManager] = None
        self._last_saved_step = -1
        self.updates = 0  # calls of _update_policy that changed the policy
        self._onnx_refused = False  # said once why this run exports no ONNX

    @classmethod
    def build(cls: Type[TrainerT], behavior_name: str, trainer_settings: TrainerSettings,
              behavior_spec: BehaviorSpec, run: Optional[RunContext] = None) -> TrainerT:
        """The trainer of one behavior, ready to train: constructed, its policy created and
        attached (`add_policy`: optimizer, device, checkpoints, resume), then handed to the
        run's accel plan. The one way the controller builds trainers; tests do the same."""
        trainer = cls(behavior_name, trainer_settings, run)
        behavior_id = BehaviorIdentifiers.from_name_behavior_id(behavior_name)
        trainer.add_policy(behavior_id, trainer.create_policy(behavior_id, behavior_spec))
        if run is not None and run.accel is not None:
            run.accel.prepare_trainer(trainer)
        return trainer

    # Every method but `create_policy` runs after `add_policy`, so a trainer sees the policy and
    # optimizer as always there (no None checks, no casts); a read before that is a bug, named.
    @property
    def policy(self) -> TorchPolicy:
        if self._policy is None:
            raise TrainerNotReadyError(
                f"{type(self).__name__}.policy was read before add_policy gave the trainer its "
                "policy (create_policy must not read self.policy: it is building it)")
        return self._policy

    @policy.setter
    def policy(self, policy: TorchPolicy) -> None:
        self._policy = policy

    @property
    def optimizer(self) -> TorchOptimizer:
        if self._optimizer is None:
            raise TrainerNotReadyError(
                f"{type(self).__name__}.optimizer was read before add_policy built it with "
                "create_optimizer (create_optimizer must not read self.optimizer)")
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: TorchOptimizer) -> None:
        self._optimizer = optimizer

    # -- what a trainer implements -----------------------------------------------------------
    @abc.abstractmethod
    def create_policy(self, parsed_behavior_id: BehaviorIdentifiers,
                      behavior_spec: BehaviorSpec) -> TorchPolicy:
        ...

    @abc.abstractmethod
    def create_optimizer(self) -> TorchOptimizer:
        ...

    @abc.abstractmethod
    def _is_ready_update(self) -> bool:
        ...

    @abc.abstractmethod
    def _update_policy(self) -> bool:
        """Train on the update buffer; True if the policy changed."""

    def actor_critic_policy(self, behavior_spec: BehaviorSpec, shared_critic: bool,
                            **actor_kwargs: Any) -> TorchPolicy:
        """The usual `create_policy`: a `SimpleActor` policy, or a `SharedActorCritic` with one
        value head per configured reward signal when the critic shares the actor's body."""
        actor_cls: type = SimpleActor
        kwargs: Dict[str, Any] = {"conditional_sigma": False, "tanh_squash": False,
                                  **actor_kwargs}
        if shared_critic:
            actor_cls = SharedActorCritic
            kwargs["stream_names"] = [key.value for key in self.trainer_settings.reward_signals]
        return TorchPolicy(self.seed, behavior_spec, self.trainer_settings.network_settings,
                           actor_cls, kwargs)

    @staticmethod
    def get_trainer_name() -> str:
        """The trainer type name used in configs; override in a trainer."""
        return "rl_trainer"

    def _process_trajectory(self, trajectory: Trajectory) -> None:
        """Count the trajectory's steps.

        Subclasses call ``super()._process_trajectory(trajectory)`` first, then turn the
        trajectory into an AgentBuffer and `_append_to_update_buffer` it. Summaries and
        checkpoints come after the whole queue is processed and the update has run (`advance`),
        so a checkpoint holds every trajectory its step count includes."""
        self._increment_step(len(trajectory))

    # -- wiring (called by `build`) ----------------------------------------------------------
    def add_policy(self, parsed_behavior_id: BehaviorIdentifiers, policy: TorchPolicy) -> None:
        """Attach the policy `create_policy` made: on the device, as `self.policy`, with the
        optimizer `create_optimizer` makes for it, and restored from the run's checkpoint
        (`--resume`) or `init_path` when there is one."""
        policy.to(self.device)
        self.policy = policy
        self.policies[parsed_behavior_id.behavior_id] = policy
        self.optimizer = self.create_optimizer()
        for module in self.optimizer.get_modules().values():
            if isinstance(module, nn.Module):
                module.to(self.device)
        for name in self.optimizer.reward_signals:
            self.collected_rewards.setdefault(name, defaultdict(float))
        if self.artifact_path is not None:
            self._checkpoints = CheckpointManager(self.artifact_path, self.brain_name,
                                                  self.trainer_settings.keep_checkpoints,
                                                  self.status_path)
        if self.load and self._checkpoints is not None:
            if self._checkpoints.has_checkpoint():
                self._restore(self._checkpoints.latest_path, only_weights=False)
            elif not self.is_training:
                raise CheckpointError(f"{self.brain_name}: no checkpoint in {self.artifact_path} "
                                      "to run without training (inference)")
            else:
                # Killed before its first checkpoint was complete: nothing was trained that a
                # checkpoint could hold, so the run starts over instead of staying stuck.
                logger.warning("%s: the run has no checkpoint yet (it stopped before its first "
                               "save): starting from step 0", self.brain_name)
        elif self.trainer_settings.init_path:
            try:
                self._restore(self.trainer_settings.init_path, only_weights=True)
            except CheckpointError as exc:
                raise CheckpointError(f"init_path (or --initialize-from) of {self.brain_name}: "
                                      f"{exc}") from None

    def get_policy(self, name_behavior_id: str) -> TorchPolicy:
        return self.policies[name_behavior_id]

    # -- the loop ----------------------------------------------------------------------------
    def publish_trajectory(self, trajectory: Trajectory) -> None:
        self._queue.append(trajectory)
        self._queued_steps += len(trajectory)

    def _should_process_queue(self) -> bool:
        """Whether `advance` processes the queued trajectories now. Every iteration by
        default; `OnPolicyTrainer` waits until the update, a summary or a checkpoint needs
        them, so that they can be processed as one batch."""
        return True

    def _process_trajectories(self, trajectories: Sequence[Trajectory]) -> None:
        """Hand queued trajectories to `_process_trajectory`, in order. A trainer that can
        process several at once overrides this (PPO: `process_with_gae_batch`); it must still
        call `RLTrainer._process_trajectory` (via super()) for each, to count its steps."""
        for trajectory in trajectories:
            self._process_trajectory(trajectory)

    def advance(self) -> None:
        """Process queued trajectories (when due), then update if ready. Called once per
        env step."""
        if self._queue and self._should_process_queue():
            with self.timers.time("process_trajectory"):
                self.flush()
        if self.should_still_train and self._is_ready_update():
            with self.timers.time("update_policy"):
                if self._update_policy():
                    self.updates += 1
                    self.policy.weights_changed()
        elif not self.is_training:
            self._clear_update_buffer()  # nothing learns from it (inference): memory stays flat
        self._maybe_write_summary(self._step)
        if self.is_training:
            self._maybe_save_model(self._step)

    def flush(self) -> None:
        """Process what is queued (when due, and at a stop: a checkpoint must hold every
        counted step)."""
        if self._queue:
            queue, self._queue, self._queued_steps = self._queue, [], 0
            self._process_trajectories(queue)

    def check_finite(self, stats: Optional[Mapping[str, float]] = None,
                     weights: bool = True) -> None:
        """Stop training on non-finite `stats` (an update's losses) or weights, with a message
        a person can act on, before a checkpoint could store them. The weights are checked
        with one float64 sum per tensor (a NaN or inf anywhere makes it non-finite; float32
        values cannot overflow it): about 5 us a tensor."""
        for key, value in (stats or {}).items():
            if not math.isfinite(value):
                raise NonFiniteError(self._non_finite(f"'{key}' is {value}"))
        if not weights:
            return
        tensors = [(f"{name}.{n}", t.detach())
                   for name, module in self.checkpoint_modules().items()
                   if isinstance(module, nn.Module)
                   for n, t in [*module.named_parameters(), *module.named_buffers()]
                   if t.is_floating_point() and t.numel()]
        if not tensors or math.isfinite(float(torch.stack(
                [t.sum(dtype=torch.float64) for _, t in tensors]).sum())):
            return
        bad = next(n for n, t in tensors if not bool(torch.isfinite(t).all()))
        raise NonFiniteError(self._non_finite(f"the weights {bad} are not finite"))

    def _non_finite(self, what: str) -> str:
        last = self._last_saved_step
        kept = (f"checkpoint.pt keeps the last finite weights (step {last})" if last >= 0
                else "no checkpoint was written")
        return (f"{self.brain_name} at step {self._step} (update {self.updates + 1}): {what}. "
                "Training stopped. Likely causes: a learning rate too large, observations or "
                "rewards of huge magnitude (normalize them: network_settings.normalize, or "
                "scale them in the environment), or a loss that divides by zero or takes the "
                f"log of 0 in a plugin's optimizer; {kept}.")

    @property
    def get_step(self) -> int:
        return self._step

    @property
    def get_max_steps(self) -> int:
        return self.trainer_settings.max_steps

    @property
    def should_still_train(self) -> bool:
        return self.is_training and self._step < self.trainer_settings.max_steps

    def _increment_step(self, n_steps: int, name_behavior_id: Optional[str] = None) -> None:
        self._step += n_steps
        for policy in self.policies.values():
            policy.set_step(self._step)

    def _append_to_update_buffer(self, agentbuffer_trajectory: AgentBuffer) -> None:
        self.update_buffer.append_buffer(agentbuffer_trajectory)

    def _clear_update_buffer(self) -> None:
        self.update_buffer.reset()

    def _update_end_episode_stats(self, agent_id: Any, optimizer: TorchOptimizer) -> None:
        """Report each reward signal's episode total ("Policy/Extrinsic Reward") and reset."""
        for name, rewards in self.collected_rewards.items():
            if name == "environment":
                rewards.pop(agent_id, None)
            elif agent_id in rewards:
                signal = optimizer.reward_signals[name]
                self.stats_reporter.add_stat(f"Policy/{signal.name.capitalize()} Reward",
                                             rewards.pop(agent_id))

    # -- summaries and checkpoints -----------------------------------------------------------
    def _maybe_write_summary(self, step_after: int) -> None:
        if step_after >= self._next_summary:
            self.check_finite()
            self.stats_reporter.write_stats(step_after)
            freq = self.trainer_settings.summary_freq
            self._next_summary = (step_after // freq + 1) * freq

    def _maybe_save_model(self, step_after: int) -> None:
        if step_after >= self._next_save:
            self.save_model(step_after)
            interval = self.trainer_settings.checkpoint_every()
            self._next_save = (step_after // interval + 1) * interval

    def checkpoint_modules(self) -> Dict[str, Any]:
        return {**self.policy.get_modules(), **self.optimizer.get_modules()}

    @property
    def last_saved_step(self) -> int:
        """The step of the newest complete checkpoint of this session (-1: none yet)."""
        return self._last_saved_step

    def checkpoint_state(self) -> Dict[str, Any]:
        """Numbers and strings a checkpoint keeps besides the modules; a trainer with more
        state of its own extends this and `restore_state`."""
        state: Dict[str, Any] = {"trainer_type": self.get_trainer_name(),
                                 "updates": self.updates}
        description = policy_description(self.policy)  # for palaestra.load_policy
        if description is not None:
            state["policy"] = description
        return state

    def restore_state(self, saved: Mapping[str, Any]) -> None:
        self.updates = int(saved.get("updates", 0))

    def buffer_to_save(self) -> Any:
        """What a checkpoint keeps of the experience collected but not yet trained on (the
        on-policy update buffer, the off-policy replay buffer): an object with `save(path)`
        and a length, or None."""
        return None

    def restore_buffer(self, rows: AgentBuffer) -> None:
        """Take back what `buffer_to_save` saved, read and checked (called on resume only)."""

    def _restore_buffer_file(self, checkpoint: str, path: str) -> None:
        if not os.path.lexists(path):
            # Only a fallback to an older step checkpoint meets this: rotation keeps the buffer
            # of the newest save alone. The steps are kept; their experience is not.
            logger.warning("%s: the buffer %s of %s was not kept: the run goes on with an empty "
                           "buffer", self.brain_name, path, checkpoint)
            return
        try:
            rows = load_columns(path)
            self._check_buffer(rows)
            self.restore_buffer(rows)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{checkpoint} names the buffer {path}, which cannot be used: "
                                  f"{exc} (remove that file to resume with an empty buffer)"
                                  ) from None

    def _check_buffer(self, buffer: AgentBuffer) -> None:
        """A saved buffer must hold rows of this behavior's observations: a tampered or foreign
        file would otherwise fail later, mid-training, when the next trajectory is appended."""
        if not len(buffer):
            raise ValueError("it holds no experiences (palaestra saves only non-empty buffers)")
        check_columns_fit(buffer, self.policy.behavior_spec)

    def save_model(self, step: Optional[int] = None, latest_only: bool = False
                   ) -> Optional[str]:
        step = self._step if step is None else step
        if self._checkpoints is None or step == self._last_saved_step:
            return None
        self.check_finite()
        summary = self.stats_reporter.get_stats_summaries("Environment/Cumulative Reward")
        with self.timers.time("save_model"):
            path = self._checkpoints.save(self.checkpoint_modules(), step,
                                          self.checkpoint_state(),
                                          None if summary is None else summary.mean,
                                          buffer=self.buffer_to_save(), latest_only=latest_only)
        self._last_saved_step = step  # only once complete: an interrupted save is redone
        logger.info("Saved checkpoint %s", path)
        if not latest_only:
            self.export_onnx(step)
        return path

    def export_onnx(self, step: int) -> Optional[str]:
        """The policy as `<behavior>-<step>.onnx` beside the step checkpoint and as
        `<behavior>.onnx` beside the behavior's folder (`palaestra.export`: ML-Agents' names,
        for Unity and onnxruntime). Never stops training: without the `onnx` package, or for
        an actor the export does not cover, it says so once and the `.pt` files remain."""
        from palaestra.export import exportable, onnx_available, onnx_bytes

        if self._checkpoints is None or self._onnx_refused or \
                os.environ.get("PALAESTRA_NO_ONNX", "").strip() not in ("", "0"):
            return None
        if not onnx_available() or not exportable(self.policy.actor):
            self._onnx_refused = True
            logger.warning("%s: no ONNX export (%s); the .pt checkpoints are kept", self.brain_name,
                           "pip install \"palaestra[onnx]\" for it" if not onnx_available()
                           else f"{type(self.policy.actor).__name__} is not an actor with a "
                                "network_body and an ActionModel")
            return None
        step_path, latest = self._checkpoints.onnx_paths(step)
        try:
            with self.timers.time("export_onnx"):
                data = onnx_bytes(self.policy.actor, self.policy.behavior_spec)
                atomic_write_bytes(data, step_path)
                if not os.path.isdir(latest):
                    atomic_write_bytes(data, latest)
        except Exception as exc:  # noqa: BLE001 - an export problem must not end training
            self._onnx_refused = True
            logger.warning("%s: ONNX export failed, not tried again this run (%s: %s); the .pt "
                           "checkpoints are kept", self.brain_name, type(exc).__name__, exc)
            return None
        return step_path

    def _restore(self, path: str, only_weights: bool) -> None:
        if os.path.isdir(path):  # a behavior's results folder
            path = os.path.join(path, "checkpoint.pt")
        if not only_weights and self._checkpoints is not None:
            path, saved = self._checkpoints.load_latest()
        else:
            saved = load_checkpoint(path)
        written_by = saved.get("trainer_type")
        if not only_weights and written_by not in (None, self.get_trainer_name()):
            raise CheckpointError(
                f"checkpoint {path} was written by trainer type '{written_by}', but "
                f"{self.brain_name} is configured with trainer_type '{self.get_trainer_name()}': "
                f"resume with the run's own configuration, or start a new run (a new --run-id, "
                "or --force).")
        modules = self.checkpoint_modules()
        restore_modules(modules, saved["modules"], path, only_weights=only_weights)
        for policy in self.policies.values():
            policy.weights_changed()
        try:
            self.check_finite()
        except NonFiniteError:
            raise CheckpointError(f"checkpoint {path} holds weights that are not finite (NaN or "
                                  "inf); it is not used") from None
        if not only_weights:
            self._step = int(saved["step"])
            self._last_saved_step = self._step
            try:
                self.restore_state(saved)
            except (ValueError, TypeError, OverflowError) as exc:
                raise CheckpointError(f"checkpoint {path} holds a bad trainer state: "
                                      f"{exc}") from None
            if "buffer_file" in saved and self._checkpoints is not None:
                self._restore_buffer_file(path, self._checkpoints.buffer_path(saved["buffer_file"]))
            for policy in self.policies.values():
                policy.set_step(self._step)
            freq, interval = self.trainer_settings.summary_freq, \
                self.trainer_settings.checkpoint_every()
            self._next_summary = (self._step // freq + 1) * freq
            self._next_save = (self._step // interval + 1) * interval
        logger.info("%s %s from %s (step %d)", "Initialized" if only_weights else "Resumed",
                    self.brain_name, path, self._step)

    def end_episode(self) -> None:
        """Forget per-agent partial sums (the environment was reset)."""
        for rewards in self.collected_rewards.values():
            rewards.clear()
