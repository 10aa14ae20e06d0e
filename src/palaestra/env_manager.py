"""`EnvManager`: steps the environment and acts for every behavior with one batched forward pass.

It sees one `BaseEnv` whatever runs behind it. By default that is the copies themselves, in this
process: the environments palaestra is mostly used with step in microseconds, far less than a
round trip to another process would cost. For slow simulators `env_settings.num_workers`
puts the copies in worker processes (`palaestra.envs.workers.WorkerEnv`: they step while the
trainers work, and a lost worker is restarted); Unity builds run in their own processes
(`palaestra.unity`). Both are awaited in `get_steps`. With `env_settings.ray` the copies run
in Ray actors that act with their own copies of the policies, a chunk of steps per call, and
`palaestra.scale.ray_manager.RayEnvManager` replays the chunks instead (docs/scale-out.md).
"""
from __future__ import annotations

from time import perf_counter
from typing import Any, Dict, Mapping, Optional

import numpy as np

from palaestra.agent_processor import AgentProcessor
from palaestra.envs.base import BaseEnv
from palaestra.exception import NonFiniteError
from palaestra.policy import TorchPolicy
from palaestra.timers import Timers
from palaestra.watchdog import EnvGuard


class EnvManager:
    def __init__(self, env: BaseEnv, timers: Timers) -> None:
        self.env = env
        self.timers = timers
        # parts of the environment replaced since the last batch (BaseEnv.lost_parts; an
        # environment that is not a BaseEnv subclass may lack it)
        self._lost_parts = getattr(env, "lost_parts", None)
        self.policies: Dict[str, TorchPolicy] = {}
        self.processors: Dict[str, AgentProcessor] = {}
        # Marks the environment's calls for the hang watchdog and Ctrl-C (controller's).
        self.guard: Optional[EnvGuard] = None

    def add_behavior(self, name: str, policy: TorchPolicy, processor: AgentProcessor) -> None:
        self.policies[name] = policy
        self.processors[name] = processor

    def reset(self) -> None:
        if self.guard is not None:
            self.guard.enter("reset")
        self.env.reset()
        if self.guard is not None:
            self.guard.leave()
        for processor in self.processors.values():
            processor.end_episodes()

    def advance(self) -> None:
        """Hand the last step's results to the processors, act, and step the environment.

        Timed with bare perf_counter reads: a context manager per section would cost more
        than some of the sections it measures."""
        add = self.timers.add
        guard = self.guard
        for name, processor in self.processors.items():
            t = perf_counter()
            # environment time too: an environment stepping in the background (Unity builds,
            # worker processes) is waited for here; Ctrl-C breaks out of that wait, and the
            # environment times out lost builds or workers itself (untimed here)
            if guard is not None:
                guard.enter("step", timed=False)
            decision, terminal = self.env.get_steps(name)
            if guard is not None:
                guard.leave()
            t0 = perf_counter()
            add("env_step", t0 - t)
            if self._lost_parts is not None:
                lost, parts = self._lost_parts()
                for part in lost:  # replaced: what its waiting agents had started is dropped
                    processor.drop_part(part, parts, terminal.agent_id)
            processor.record_step(decision, terminal)
            t1 = perf_counter()
            add("agent_processor", t1 - t0)
            if len(decision):
                info = self.policies[name].get_action(decision)
                t2 = perf_counter()
                continuous = info.env_action.continuous
                if continuous is not None and continuous.size and \
                        not np.isfinite(continuous.sum()):
                    raise NonFiniteError(
                        f"{name}: the policy's continuous actions are not finite (the weights or "
                        "the observations they were computed from are not): training stopped "
                        "before the environment was given them.")
                processor.record_actions(decision, info)
                self.env.set_actions(name, info.env_action)
                add("policy_act", t2 - t1)
                add("agent_processor", perf_counter() - t2)
        t3 = perf_counter()
        if guard is not None:
            guard.enter("step")
        self.env.step()
        if guard is not None:
            guard.leave()
        add("env_step", perf_counter() - t3)
        stats = self.env.pop_stats()
        if stats:
            self._report(stats)

    def _report(self, stats: Mapping[str, Any]) -> None:
        report_env_stats(self.processors, stats)

    def close(self) -> None:
        self.env.close()


def report_env_stats(processors: Mapping[str, AgentProcessor], stats: Mapping[str, Any]
                     ) -> None:
    """The environment's own stats into every behavior's summary, with their aggregation
    (as ML-Agents records a Unity StatsRecorder's values)."""
    for processor in processors.values():
        reporter = processor.stats
        for key, values in stats.items():
            for value, aggregation in values:
                if aggregation == "most_recent":
                    reporter.set_stat(key, value)
                else:
                    reporter.add_stat(key, value, "sum" if aggregation == "sum" else "mean")
