"""Unity builds and the Editor as one palaestra environment.

`UnityEnvironment` holds `num_envs` instances (builds on ports base_port, base_port + 1, ...,
or the Editor on 5004). `step` answers every instance with its actions and returns at once;
their outputs are awaited only when the trainer next asks for them (`get_steps`). So the
instances simulate at the same time, and while they do the trainer processes trajectories and
updates: a step costs the slowest instance's step (or the trainer's work, if that is longer),
not the sum. Agents of every instance feed the same trainers; their ids (and group ids) are
made unique over instances.

A build that crashes or stops answering is restarted within the run's quota
(`max_lifetime_restarts`, `restarts_rate_limit_n` per `restarts_rate_limit_period_s`, as in
ML-Agents); its agents' unfinished episodes are reported as interrupted, so that no trajectory
mixes two lives of a build. Past the quota the run stops, as for any failing environment: the
trainers save a checkpoint first.
"""
from __future__ import annotations

import logging
import queue
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from palaestra.envs.base import (ActionTuple, BaseEnv, BehaviorSpec, DecisionSteps,
                                 TerminalSteps, concat_decisions, concat_terminals,
                                 globalise_ids)
from palaestra.envs.restarts import RestartQuota
from palaestra.exception import EnvironmentSetupError
from palaestra.unity import decode, protocol
from palaestra.unity.connection import UnityStopped
from palaestra.unity.instance import EDITOR_PORT, UnityInstance, UnitySettings
from palaestra.unity.launcher import find_executable
from palaestra.unity.side_channels import EngineConfig, SideChannel, StatsAggregationMethod

__all__ = ["EDITOR_PORT", "UnityEnvironment", "UnitySettings", "make_unity_environment"]

logger = logging.getLogger("palaestra")


class UnityEnvironment(BaseEnv):
    """`num_envs` Unity instances as one palaestra environment (see the module docstring)."""

    steps_elsewhere = True

    def __init__(self, settings: UnitySettings) -> None:
        self.settings = settings
        if settings.executable is None and settings.num_envs > 1:
            raise EnvironmentSetupError("--num-envs > 1 needs a build (--env): the Unity Editor "
                                        "is one instance.")
        self._instances: List[Optional[UnityInstance]] = []
        self._restarts: List[List[float]] = [[] for _ in range(settings.num_envs)]
        self._specs: Dict[str, BehaviorSpec] = {}
        self._steps: Dict[str, Tuple[DecisionSteps, TerminalSteps]] = {}
        self._deciding: Dict[Tuple[int, str], int] = {}  # (instance, Unity name) -> agents
        self._actions: Dict[str, ActionTuple] = {}
        self._extra_terminal: Dict[int, Dict[str, List[Any]]] = {}
        self._batch_lost: List[int] = []  # instances relaunched for the batch handed out now
        self.env_stats: Dict[str, List[Tuple[float, StatsAggregationMethod]]] = {}
        # Instances answered and not heard back from; the instances whose outputs the current
        # step batches hold; a hint that some instance has sent (its connection's queue says).
        self._pending: set = set()
        self._batch: List[int] = []
        self._collected = False
        self._arrived: "queue.Queue[int]" = queue.Queue()
        try:
            for worker in range(settings.num_envs):
                self._instances.append(self._new_instance(worker))
            for instance in self._instances:
                assert instance is not None
                instance.handshake()
            self.reset()
        except BaseException:
            self.close()
            raise

    def _new_instance(self, worker: int) -> "UnityInstance":
        return UnityInstance(self.settings, worker, lambda: self._arrived.put(worker))

    # -- BaseEnv ----------------------------------------------------------------------------
    @property
    def behavior_specs(self) -> Mapping[str, BehaviorSpec]:
        return self._specs

    def reset(self) -> None:
        """Every instance resets (those still stepping are heard back from first)."""
        for i in sorted(self._pending):
            self._receive(i)
        self._pending.clear()
        everyone = list(range(len(self._instances)))
        for i in everyone:
            self._instance(i).send(protocol.RESET, {})
        for i in everyone:
            self._receive(i)
        self._collect(everyone)

    def get_steps(self, behavior_name: str) -> Tuple[DecisionSteps, TerminalSteps]:
        """The agents of the instances that have answered (at least one; those stepping
        still are left for a later step): the trainer acts for them while the others run."""
        if not self._collected:
            self._collect(self._gather())
        return self._steps[behavior_name]

    def set_actions(self, behavior_name: str, actions: ActionTuple) -> None:
        self._actions[behavior_name] = actions

    def step(self) -> None:
        """Answer the instances of the current batch with their actions; returns at once."""
        if not self._collected:  # no one asked for the steps: every agent acts with zeros
            self._collect(self._gather())
        split = self._split_actions()
        for i in self._batch:
            self._instance(i).send(protocol.STEP, split[i])
            self._pending.add(i)
        self._actions = {}
        self._collected = False

    def close(self) -> None:
        """Close every instance with the 400 answer it understands as "quit": an instance
        still stepping is heard back from first (briefly), so that it gets that answer instead
        of finding the server gone."""
        for i in sorted(self._pending):
            instance = self._instances[i] if i < len(self._instances) else None
            if instance is not None:
                try:
                    instance.connection.receive(min(self.settings.timeout_wait, 10.0),
                                                instance.check_alive)
                except Exception:  # noqa: BLE001 - it is being closed either way
                    pass
        self._pending.clear()
        errors = []
        for instance in self._instances:
            if instance is not None:
                try:
                    instance.close()
                except Exception as exc:  # noqa: BLE001 - close every instance regardless
                    errors.append(exc)
        self._instances = []
        if errors:
            raise errors[0]

    def lost_parts(self) -> Tuple[Sequence[int], int]:
        return self._batch_lost, len(self._instances)

    def pop_stats(self) -> Mapping[str, List[Tuple[float, str]]]:
        """The Unity-side `StatsRecorder` values received since the last call."""
        stats, self.env_stats = self.env_stats, {}
        names = {StatsAggregationMethod.MOST_RECENT: "most_recent",
                 StatsAggregationMethod.SUM: "sum"}
        return {key: [(value, names.get(method, "average")) for value, method in values]
                for key, values in stats.items()}

    # -- hearing back from instances -------------------------------------------------------------
    def _instance(self, i: int) -> UnityInstance:
        instance = self._instances[i]
        assert instance is not None
        return instance

    def _receive(self, i: int) -> None:
        """Instance i's next output; a lost instance is restarted (its output is then the one
        answering the restart's reset)."""
        try:
            self._instance(i).receive()
        except UnityStopped as exc:
            self._restart(i, exc)

    def _gather(self) -> List[int]:
        """The pending instances that have answered: waits until at least one has, for at most
        `timeout_wait` (then the silent ones are restarted), checking launched builds."""
        deadline = time.monotonic() + self.settings.timeout_wait
        while True:
            ready = [i for i in sorted(self._pending) if self._instance(i).has_output()]
            if ready or not self._pending:
                break
            try:
                self._arrived.get(timeout=0.25)
                continue
            except queue.Empty:
                pass
            for i in sorted(self._pending):
                try:
                    self._instance(i).check_alive()
                except UnityStopped as exc:
                    ready.append(i)
                    self._pending.discard(i)
                    self._restart(i, exc)
            if ready:
                return sorted(ready)
            if time.monotonic() >= deadline:
                ready = sorted(self._pending)
                break
        for i in ready:
            self._pending.discard(i)
            self._receive(i)
        return ready

    def _split_actions(self) -> Dict[int, Dict[str, List[Any]]]:
        """Each batch instance's actions, keyed by Unity's behavior names, one per deciding
        agent in the order of its last output (a behavior without actions from the trainer,
        such as one that appeared this step and has no trainer yet, acts with zeros)."""
        out: Dict[int, Dict[str, List[Any]]] = {i: {} for i in self._batch}
        offsets: Dict[str, int] = {}
        for i in self._batch:
            instance = self._instance(i)
            for unity_name in instance.infos:
                n = self._deciding.get((i, unity_name), 0)
                if n == 0:
                    continue
                name = self._name(unity_name)
                actions = self._actions.get(name)
                start = offsets.get(name, 0)
                if actions is None or len(actions) < start + n:
                    spec = self._spec_of(instance, unity_name)
                    if spec is None:
                        continue
                    part = spec.action_spec.empty_action(n)
                else:
                    part = ActionTuple(actions.continuous[start:start + n],
                                       actions.discrete[start:start + n])
                    offsets[name] = start + n
                out[i][unity_name] = decode.action_protos(part)
        return out

    def _name(self, unity_name: str) -> str:
        """Unity's `Name?team=0` is `Name` here (as in a config's `behaviors:`); other teams
        keep their full names."""
        brain, team = decode.parse_behavior_name(unity_name)
        return brain if team == 0 else unity_name

    def _spec_of(self, instance: UnityInstance, unity_name: str) -> Optional[BehaviorSpec]:
        name = self._name(unity_name)
        if name in self._specs:
            return self._specs[name]
        brain = instance.brains.get(unity_name)
        infos = instance.infos.get(unity_name) or []
        if brain is None or not infos:
            return None
        return decode.behavior_spec(brain, infos[0])

    def _collect(self, batch: List[int]) -> None:
        """The step batches of the instances in `batch` (their latest outputs)."""
        first = not self._specs
        decisions: Dict[str, List[DecisionSteps]] = {}
        terminals: Dict[str, List[TerminalSteps]] = {}
        self._deciding = {}
        self._batch = list(batch)
        self._collected = True
        n = len(self._instances)
        # a relaunched instance's interrupted episodes ride on its next batch (popped below)
        self._batch_lost = [i for i in batch if i in self._extra_terminal]
        for i in batch:
            instance = self._instance(i)
            for key, values in instance.stats.get_and_reset_stats().items():
                self.env_stats.setdefault(key, []).extend(values)
            for unity_name, infos in instance.infos.items():
                name = self._name(unity_name)
                spec = self._specs.get(name)
                if spec is None:
                    spec = self._spec_of(instance, unity_name)
                    if spec is None:
                        continue
                    self._specs[name] = spec
                    if not first:  # the trainer controller makes its trainer (ML-Agents too)
                        logger.info("Unity behavior %s appeared after training began.", name)
                decision, terminal, deciding = decode.steps(infos, spec, name)
                self._deciding[(i, unity_name)] = len(deciding)
                decisions.setdefault(name, []).append(globalise_ids(decision, i, n))
                terminals.setdefault(name, []).append(globalise_ids(terminal, i, n))
            for name, extra in self._extra_terminal.pop(i, {}).items():
                terminals.setdefault(name, []).extend(extra)
        if first and not self._specs:
            raise EnvironmentSetupError(
                "Unity reset, but no agent asked for a decision: the scene needs agents with a "
                "Behavior Parameters component whose Behavior Type is Default (and a Decision "
                "Requester).")
        self._steps = {name: (concat_decisions(decisions.get(name, []), spec),
                              concat_terminals(terminals.get(name, []), spec))
                       for name, spec in self._specs.items()}

    # -- restarts ------------------------------------------------------------------------------
    def _restart(self, i: int, why: UnityStopped) -> None:
        s = self.settings
        if s.executable is None:  # the Editor left Play mode: there is nothing to restart
            raise EnvironmentSetupError(f"{why}; the run stops (its checkpoint is saved).")
        RestartQuota(s.max_lifetime_restarts, s.restarts_rate_limit_n,
                     s.restarts_rate_limit_period_s, self._restarts[i]).spend(
            f"Unity instance {i}", f"stopped: {why}")
        logger.warning("Restarting Unity instance %d after: %s", i, why)
        old = self._instances[i]
        assert old is not None
        self._extra_terminal[i] = self._interrupt(old, i)
        try:
            old.close()
        except Exception:  # noqa: BLE001 - the old build is gone either way
            pass
        self._instances[i] = None
        fresh = self._new_instance(i)
        self._instances[i] = fresh
        fresh.handshake()
        fresh.send(protocol.RESET, {})
        try:
            fresh.receive()
        except UnityStopped as exc:
            raise EnvironmentSetupError(f"Unity instance {i} failed again at once: {exc}") from None

    def _interrupt(self, old: UnityInstance, i: int) -> Dict[str, List[TerminalSteps]]:
        """The unfinished episodes of a lost instance's deciding agents, ended as interrupted
        with their last observation (no new reward), so their trajectories close cleanly."""
        out: Dict[str, List[TerminalSteps]] = {}
        n = len(self._instances)
        for unity_name, infos in old.infos.items():
            name = self._name(unity_name)
            spec = self._specs.get(name)
            if spec is None:
                continue
            decision, _, _ = decode.steps(infos, spec, name)
            if len(decision):
                ended = TerminalSteps(decision.obs, np.zeros(len(decision), np.float32),
                                      np.ones(len(decision), bool), decision.agent_id,
                                      decision.group_id,
                                      None if decision.group_id is None else
                                      np.zeros(len(decision), np.float32))
                out.setdefault(name, []).append(globalise_ids(ended, i, n))
        return out


def make_unity_environment(env_path: Optional[str], options: Any, log_folder: Optional[str],
                           side_channels: Sequence[SideChannel] = ()) -> UnityEnvironment:
    """The run's Unity environment from its options (`env_settings`, `engine_settings`,
    `environment_parameters`)."""
    env = options.env_settings
    engine = options.engine_settings
    args = env.env_args
    if isinstance(args, Mapping):
        raise EnvironmentSetupError("env_settings.env_args for a Unity build is a list of "
                                    "command-line arguments (--env-args ...), not a mapping.")
    params: Dict[str, float] = {}
    for key, value in (options.environment_parameters or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            params[str(key)] = float(value)
        else:
            raise EnvironmentSetupError(
                f"environment_parameters.{key}: only constants are applied so far (samplers and "
                "curricula are not supported yet); give a number.")
    return UnityEnvironment(UnitySettings(
        executable=find_executable(env_path) if env_path else None,
        num_envs=env.num_envs, base_port=env.base_port, seed=env.seed, num_areas=env.num_areas,
        timeout_wait=float(env.timeout_wait), no_graphics=engine.no_graphics,
        no_graphics_monitor=engine.no_graphics_monitor,
        env_args=[str(a) for a in (args or [])], log_folder=log_folder,
        engine=EngineConfig(engine.width, engine.height, engine.quality_level,
                            float(engine.time_scale), engine.target_frame_rate,
                            engine.capture_frame_rate),
        environment_parameters=params,
        max_lifetime_restarts=env.max_lifetime_restarts,
        restarts_rate_limit_n=env.restarts_rate_limit_n,
        restarts_rate_limit_period_s=float(env.restarts_rate_limit_period_s),
        side_channels=side_channels))
