"""`OffPolicyTrainer`: a replay buffer (a preallocated ring) of the newest `buffer_size` steps,
sampled for updates at a fixed ratio of `steps_per_update` agent steps per gradient step
(ML-Agents' SAC schedule).

Steps reach a trainer a trajectory at a time (every `time_horizon` steps of an agent), so the
gradient steps they make due come in bursts. Where the copies simulate in other processes
(`threaded`, on by default there), a burst is spread over the following environment steps:
each `advance` takes a share of what is due (`paced_gradient_steps`), and the copies, sent
their actions before it, simulate meanwhile instead of waiting for the whole burst. The policy
then learns from a step up to about one horizon later than it would unpaced, as ML-Agents'
threaded trainers do."""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from palaestra.buffer import AgentBuffer, ReplayBuffer, rewards_key
from palaestra.settings import OffPolicyHyperparamSettings, TrainerSettings
from palaestra.trainer.rl_trainer import H, RLTrainer
from palaestra.trainer.run_context import RunContext
from palaestra.trajectory import Trajectory

logger = logging.getLogger("palaestra")


class OffPolicyTrainer(RLTrainer[H]):
    """Base for SAC/DQN-like trainers. `hyperparameters` must derive
    OffPolicyHyperparamSettings."""

    def __init__(self, behavior_name: str, trainer_settings: TrainerSettings,
                 run: Optional[RunContext] = None) -> None:
        super().__init__(behavior_name, trainer_settings, run)
        self.update_buffer: ReplayBuffer = ReplayBuffer(self._hp.buffer_size)  # type: ignore
        self.update_steps = 0
        self.reward_signal_update_steps = 0
        threaded = trainer_settings.threaded
        run_steps_elsewhere = run is not None and run.env_steps_elsewhere
        self.paced = run_steps_elsewhere if threaded is None else threaded
        if self.paced and run is not None and run.training:
            logger.info("%s: threaded: gradient steps paced over the following environment "
                        "steps%s", behavior_name, " (the copies step in other processes "
                        "meanwhile)" if run_steps_elsewhere else "")
        self._cloned_at_step = -1  # the step of the last behavioral-cloning update
        self._pacing: Dict[str, _Pace] = {}  # paced: the policy's and reward signals' rates

    @property
    def _hp(self) -> OffPolicyHyperparamSettings:
        hp = self.hyperparameters
        assert isinstance(hp, OffPolicyHyperparamSettings)
        return hp

    def _append_to_update_buffer(self, agentbuffer_trajectory: AgentBuffer) -> None:
        self.update_buffer.append_buffer(agentbuffer_trajectory)

    def process_for_replay(self, trajectory: Trajectory) -> AgentBuffer:
        """The usual off-policy `_process_trajectory` body: the trajectory as an AgentBuffer
        with each reward signal's rewards (times its strength) under `rewards_key(name)`,
        the observation normalisers updated, `collected_rewards` and, at an episode's end, the
        end-of-episode reward stats. Append the result with `_append_to_update_buffer`."""
        buffer = trajectory.to_agentbuffer()
        if self.is_training:
            self.policy.update_normalization(buffer)
            self.optimizer.update_normalization(buffer)
        agent = trajectory.agent_id
        self.collected_rewards["environment"][agent] += float(np.sum(trajectory.rewards))
        for name, signal in self.optimizer.reward_signals.items():
            rewards = signal.evaluate(buffer) * signal.strength
            buffer[rewards_key(name)] = rewards
            self.collected_rewards[name][agent] += float(np.sum(rewards))
        if trajectory.done_reached:
            self._update_end_episode_stats(agent, self.optimizer)
        return buffer

    def refresh_learned_rewards(self, batch: AgentBuffer) -> None:
        """A learned signal's rewards (curiosity, GAIL, ...) as its model judges them now,
        not as it did when the steps entered the replay buffer, as ML-Agents' SAC does: a
        discriminator's early verdicts would otherwise be learned from for the whole run."""
        for name, signal in self.optimizer.reward_signals.items():
            if signal.learns:
                batch[rewards_key(name)] = signal.evaluate(batch) * signal.strength

    # -- the replay buffer in checkpoints (save_replay_buffer) --------------------------------
    def buffer_to_save(self) -> Optional[ReplayBuffer]:
        """With `save_replay_buffer`, the replay buffer is part of every checkpoint (a file the
        checkpoint names), so a resumed run does not start from an empty buffer."""
        return self.update_buffer if self._hp.save_replay_buffer else None

    def restore_buffer(self, rows: AgentBuffer) -> None:
        self.update_buffer.replace(rows)
        logger.info("Loaded %d experiences into the replay buffer",
                    self.update_buffer.num_experiences)

    def checkpoint_state(self) -> Dict[str, Any]:
        return {**super().checkpoint_state(), "update_steps": self.update_steps,
                "reward_signal_update_steps": self.reward_signal_update_steps}

    def restore_state(self, saved: Mapping[str, Any]) -> None:
        super().restore_state(saved)
        # The updates the saved run did: a resumed run must not catch up on all of them.
        hp = self._hp
        done = max(0, self.get_step - hp.buffer_init_steps)
        signal_ratio = hp.reward_signal_steps_per_update or hp.steps_per_update
        self.update_steps = int(saved.get("update_steps", done // hp.steps_per_update))
        self.reward_signal_update_steps = int(saved.get("reward_signal_update_steps",
                                                        done // signal_ratio))
        if hp.save_replay_buffer and "buffer_file" not in saved:
            logger.warning("save_replay_buffer is on but the checkpoint holds no replay buffer "
                           "(it was saved with the option off, or empty): the replay buffer "
                           "starts empty")

    def _is_ready_update(self) -> bool:
        hp = self._hp
        return (self.update_buffer.num_experiences >= hp.batch_size
                and self.get_step >= hp.buffer_init_steps)

    def _updates_due(self, done: int, steps_per_update: float) -> bool:
        """One more update is due while done + 1 updates fit in the steps since warm-up."""
        return self.get_step - self._hp.buffer_init_steps >= (done + 1) * steps_per_update

    def paced_gradient_steps(self, done: int, steps_per_update: float,
                             which: str = "policy") -> Optional[int]:
        """How many of the gradient steps now due this `advance` takes: all (None) unless
        paced. Paced, the updates follow the rate at which steps arrive, measured between
        arrivals of trajectories (a running mean of the gradient steps they made due per
        advance), with the fraction carried from advance to advance: one update every
        advance at one a step, one every fourth at one per four, so that every advance has
        its share to do while the copies step. Before a rate is measured, and whenever the
        backlog passes a horizon, backlog / time_horizon more (at least one before the rate
        is known). `which` keeps the policy's and the reward signals' paces apart."""
        if not self.paced:
            return None
        pace = self._pacing.setdefault(which, _Pace())
        step = self.get_step
        if pace.step != step:  # trajectories arrived since the last call
            if pace.step is not None and pace.calls:
                rate = (step - pace.step) / steps_per_update / pace.calls
                pace.rate = rate if pace.rate is None else 0.75 * pace.rate + 0.25 * rate
            pace.step, pace.calls = step, 0
        pace.calls += 1
        due = (step - self._hp.buffer_init_steps) // steps_per_update - done
        horizon = self.trainer_settings.time_horizon
        if pace.rate is None:
            return max(1, math.ceil(due / horizon))
        pace.credit += pace.rate
        take = int(pace.credit)
        pace.credit -= take
        return take + int(due // horizon)

    def _update_policy(self) -> bool:
        """As many gradient steps as the agent steps since the last call allow (paced: a
        share of them, `paced_gradient_steps`)."""
        hp = self._hp
        stats: Dict[str, List[float]] = defaultdict(list)
        updated = False
        budget = self.paced_gradient_steps(self.update_steps, hp.steps_per_update)
        while self._updates_due(self.update_steps, hp.steps_per_update) and \
                (budget is None or budget > 0):
            batch = self.update_buffer.sample_mini_batch(hp.batch_size, self.rng)
            self.refresh_learned_rewards(batch)
            result = self.optimizer.update(batch, hp.batch_size)
            self.check_finite(result, weights=False)
            for key, value in result.items():
                stats[key].append(value)
            self.update_steps += 1
            updated = True
            if budget is not None:
                budget -= 1
        signal_ratio = hp.reward_signal_steps_per_update or hp.steps_per_update
        # A batch only for signals with a model to train (the extrinsic one has none).
        learning = any(signal.learns for signal in self.optimizer.reward_signals.values())
        budget = self.paced_gradient_steps(self.reward_signal_update_steps, signal_ratio,
                                           "reward signals")
        while self._updates_due(self.reward_signal_update_steps, signal_ratio) and \
                (budget is None or budget > 0):
            if learning:
                batch = self.update_buffer.sample_mini_batch(hp.batch_size, self.rng)
                for key, value in self.optimizer.update_reward_signals(batch).items():
                    stats[key].append(value)
            self.reward_signal_update_steps += 1
            if budget is not None:
                budget -= 1
        # Cloning once per batch of new steps, paced or not (it makes several passes over
        # the demonstrations: once per paced share would multiply its cost by the horizon).
        if updated and self.optimizer.bc_module is not None and \
                self._cloned_at_step != self.get_step:
            self._cloned_at_step = self.get_step
            for key, value in self.optimizer.bc_module.update().items():
                stats[key].append(value)
        for key, values in stats.items():
            self.stats_reporter.add_stat(key, float(np.mean(values)))
        return updated


@dataclass
class _Pace:
    """What pacing remembers of one kind of update (`paced_gradient_steps`)."""

    step: Optional[int] = None  # the trainer's step at the last arrival
    calls: int = 0  # advances since then
    rate: Optional[float] = None  # mean gradient steps made due per advance
    credit: float = 0.0  # the fraction of a gradient step carried to the next advance
