"""`RayEnvManager`: what the controller drives instead of `EnvManager` when the copies run in
Ray actors (`env_settings.ray`).

The trainers, their policies and the agent processors stay in this process; the actors act with
copies of the policies and return whole chunks of steps (`rollout_actor`). Sampling never waits
for learning: each actor always has one chunk requested, and when one comes back the next one
is requested (with the weights as they are then) before this process replays the chunk that
arrived. So acting lags learning by at most one chunk (`env_settings.ray.chunk_steps`): the
in-flight chunk was asked for with the weights of before the latest update, and PPO's clipped
ratio and SAC's replay take such slightly older log-probabilities as they are.

Replaying a chunk hands each step to the processors exactly as `EnvManager.advance` does in
process (`record_step`, then `record_actions` with what the actor's policy chose), one actor's
chunk after the other, so trajectories, stats, trainers and checkpoints are unchanged. The
weights cross once per update: after a trainer changes its policy it calls `weights_changed`
(the explicit contract of `TorchPolicy`), which moves `weights_version`; the next request
`ray.put`s that behavior's `actor_state` once and every actor reads it from the object store.

An actor lost (its process or node) is replaced by `RayFleet.replace`; the agents that were
waiting for an action from it end their episodes as interrupted, with their last observation,
as `WorkerEnv` does for a lost worker process, so no trajectory mixes two lives of an actor.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

from palaestra.agent_processor import AgentProcessor
from palaestra.env_manager import report_env_stats
from palaestra.envs.base import DecisionSteps, TerminalSteps
from palaestra.exception import EnvironmentSetupError
from palaestra.policy import ActionInfo, TorchPolicy
from palaestra.scale.ray_fleet import ActorLost, ActorSlot, RayFleet
from palaestra.scale.rollout_actor import PolicyRecipe, actor_state
from palaestra.scale.rollout_wire import Rollout
from palaestra.timers import Timers
from palaestra.watchdog import EnvGuard, EnvironmentTimeout, StopRequested

_WAIT_SLICE_S = 1.0  # ray.wait returns at least this often, so that Ctrl-C is seen


@dataclass
class _InFlight:
    """The chunk requested of one actor, and the last decision batches replayed from it
    (the agents that wait for the outcome of their action)."""

    ref: Any = None
    since: float = 0.0
    last: Dict[str, DecisionSteps] = field(default_factory=dict)


class RayEnvManager:
    """`EnvManager`'s interface (`env`, `add_behavior`, `reset`, `advance`, `close`, `guard`)
    over a `RayFleet` (module docstring)."""

    def __init__(self, fleet: RayFleet, timers: Timers, numpy_acting: bool = False) -> None:
        self.env = fleet  # what the controller reads the behaviors from
        self.fleet = fleet
        self.ray = fleet.ray
        self.timers = timers
        self.numpy_acting = numpy_acting
        self.policies: Dict[str, TorchPolicy] = {}
        self.processors: Dict[str, AgentProcessor] = {}
        self.guard: Optional[EnvGuard] = None
        self._flights = [_InFlight() for _ in fleet.slots]
        self._weights: Dict[str, Any] = {}  # behavior -> object ref of its actor state
        self._versions: Dict[str, int] = {}  # behavior -> weights_version of that state

    @property
    def recipes(self) -> Dict[str, PolicyRecipe]:
        return {name: PolicyRecipe.of(policy, self.numpy_acting)
                for name, policy in self.policies.items()}

    def add_behavior(self, name: str, policy: TorchPolicy, processor: AgentProcessor) -> None:
        self.policies[name] = policy
        self.processors[name] = processor

    def reset(self) -> None:
        """Every actor builds its policies and resets its copies; then the first chunks are
        requested."""
        recipes = self.recipes
        slots = self.fleet.slots
        refs = [slot.handle.reset.remote(recipes) for slot in slots]
        timeout = self.fleet.settings.timeout
        for slot, ref in zip(slots, refs):
            if not self._wait_ready(ref, timeout):
                raise EnvironmentTimeout(
                    f"{slot.where} did not reset its copies within {timeout:g} s "
                    "(env_settings.timeout_step / --timeout-step): it hangs, or needs a "
                    "larger timeout")
            try:
                self.fleet.get(ref, slot, "resetting its copies")
            except ActorLost as exc:
                raise EnvironmentSetupError(str(exc)) from None
        for processor in self.processors.values():
            processor.end_episodes()
        for slot in slots:
            self._request(slot)

    def advance(self) -> None:
        """Take the first chunk that is ready, request that actor's next one, replay it."""
        t0 = time.perf_counter()
        slot, rollout = self._next_chunk()
        self.timers.add("env_step", time.perf_counter() - t0)
        if rollout is not None:
            self._request(slot)
            t1 = time.perf_counter()
            self._replay(slot, rollout)
            self.timers.add("agent_processor", time.perf_counter() - t1)

    def close(self) -> None:
        self.fleet.close()

    # -- the pipeline ---------------------------------------------------------------------------
    def _request(self, slot: ActorSlot) -> None:
        """Ask `slot`'s actor for its next chunk, with the current weights."""
        t = time.perf_counter()
        for name, policy in self.policies.items():
            if self._versions.get(name) != policy.weights_version:
                self._weights[name] = self.ray.put(actor_state(policy))
                self._versions[name] = policy.weights_version
        self.timers.add("ray_put_weights", time.perf_counter() - t)
        flight = self._flights[slot.index]
        flight.ref = slot.handle.sample.remote(dict(self._weights),
                                               self.fleet.settings.chunk_steps)
        flight.since = time.monotonic()

    def _next_chunk(self) -> "tuple[ActorSlot, Optional[Rollout]]":
        """The first chunk to come back (a lost or late actor is replaced meanwhile: then
        its slot and None, its fresh actor's first chunk requested)."""
        limit = self.fleet.settings.chunk_timeout
        by_ref = {f.ref: slot for f, slot in zip(self._flights, self.fleet.slots)}
        while True:
            oldest = min(f.since for f in self._flights)
            left = _WAIT_SLICE_S if limit is None else \
                min(_WAIT_SLICE_S, max(0.0, oldest + limit - time.monotonic()))
            ready, _ = self._guarded(lambda: self.ray.wait(list(by_ref), num_returns=1,
                                                           timeout=left))
            if ready:
                slot = by_ref[ready[0]]
                try:
                    chunk: Rollout = self.fleet.get(ready[0], slot, "collecting a chunk",
                                                       timeout=0)
                except ActorLost as exc:
                    self._replace(slot, _why(str(exc), slot))
                    return slot, None
                return slot, chunk
            if limit is not None:
                now = time.monotonic()
                for flight, slot in zip(self._flights, self.fleet.slots):
                    if now - flight.since >= limit:
                        self._replace(slot, f"did not return a chunk of "
                                            f"{self.fleet.settings.chunk_steps} steps within "
                                            f"{limit:g} s (timeout_step x chunk_steps)")
                        return slot, None

    def _replace(self, slot: ActorSlot, why: str) -> None:
        """A fresh actor for `slot`; the agents that waited for it end as interrupted."""
        flight = self._flights[slot.index]
        self.fleet.replace(slot, why, self.recipes)
        for name, decision in flight.last.items():
            processor = self.processors.get(name)
            if processor is not None and len(decision):
                processor.record_step(_empty_like(decision), _interrupted(decision))
        for processor in self.processors.values():  # agents that were waiting for their turn
            processor.drop_part(slot.index, len(self._flights))
        flight.last = {}
        self._request(slot)

    def _replay(self, slot: ActorSlot, rollout: Rollout) -> None:
        """Each step of the chunk through the processors, as `EnvManager.advance` does."""
        last = self._flights[slot.index].last
        for row in rollout.steps:
            for name, processor in self.processors.items():
                record = row.get(name)
                if record is None:
                    continue
                processor.record_step(record.decision, record.terminal)
                if record.action is not None and record.log_probs is not None:
                    processor.record_actions(record.decision, ActionInfo(
                        record.action, record.action, record.log_probs))
                    last[name] = record.decision  # its agents now wait for the next step
        if rollout.stats:
            report_env_stats(self.processors, rollout.stats)

    def _wait_ready(self, ref: Any, timeout: Optional[float]) -> bool:
        """Wait until `ref` is ready or `timeout` seconds passed (None: no limit), in slices
        that Ctrl-C can break; returns whether it is ready."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _WAIT_SLICE_S if deadline is None else \
                min(_WAIT_SLICE_S, max(0.0, deadline - time.monotonic()))
            ready, _ = self._guarded(lambda: self.ray.wait([ref], timeout=left))
            if ready:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def _guarded(self, wait: Any) -> Any:
        """A blocking Ray call that Ctrl-C / SIGTERM may break (`EnvGuard`: untimed, the
        fleet times actors out itself). Ray's C++ wait keeps a signal handler's exception
        until it returns (as the `__cause__` of a SystemError): it is raised as itself."""
        guard = self.guard
        if guard is not None:
            guard.enter("step", timed=False)
        try:
            return wait()
        except SystemError as exc:
            if isinstance(exc.__cause__, (StopRequested, KeyboardInterrupt)):
                raise exc.__cause__ from None
            raise
        finally:
            if guard is not None:
                guard.leave()


def _why(message: str, slot: ActorSlot) -> str:
    """"was lost while ... (cause)" from `ActorLost`'s "<where> was lost ..." message."""
    return message[len(slot.where):].strip() if message.startswith(slot.where) else message


def _empty_like(decision: DecisionSteps) -> DecisionSteps:
    obs = [np.zeros((0, *o.shape[1:]), np.float32) for o in decision.obs]
    return DecisionSteps(obs, np.zeros(0, np.float32), np.zeros(0, np.int64))


def _interrupted(decision: DecisionSteps) -> TerminalSteps:
    """The episodes of agents that waited for a lost actor, ended as interrupted with their
    last observation and no new reward."""
    n = len(decision)
    return TerminalSteps(decision.obs, np.zeros(n, np.float32), np.ones(n, bool),
                         decision.agent_id, decision.group_id,
                         None if decision.group_id is None else np.zeros(n, np.float32))
