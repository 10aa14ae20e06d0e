"""ML-Agents' restart quota, shared by everything palaestra restarts: Unity builds
(`palaestra.unity.environment`), environment worker processes (`palaestra.envs.workers`) and
Ray actors (`palaestra.scale.ray_fleet`).

One instance (build, worker or actor) may be restarted at most `max_lifetime_restarts` times
over the run and at most `restarts_rate_limit_n` times within any `restarts_rate_limit_period_s`
seconds; -1 lifts either limit. Past it the run stops (after the trainers save), as in
ML-Agents: an environment that keeps failing is not retried for ever.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional

from palaestra.exception import EnvironmentSetupError


@dataclass
class RestartQuota:
    """The quota's settings and one instance's restart times (`time.monotonic`)."""

    max_lifetime_restarts: int = 10
    restarts_rate_limit_n: int = 1
    restarts_rate_limit_period_s: float = 60.0
    history: List[float] = field(default_factory=list)

    def spend(self, what: str, why: str, names: str = "env_settings.",
              now: Optional[float] = None) -> None:
        """Count one more restart of `what`, or raise `EnvironmentSetupError` (naming the
        settings with prefix `names`, and the cause `why`) if the quota is used up."""
        now = time.monotonic() if now is None else now
        recent = [t for t in self.history if now - t < self.restarts_rate_limit_period_s]
        if (0 <= self.max_lifetime_restarts <= len(self.history)) or \
                (0 <= self.restarts_rate_limit_n <= len(recent)):
            raise EnvironmentSetupError(
                f"{what} exceeded the allowed restarts ({names}max_lifetime_restarts "
                f"{self.max_lifetime_restarts}, {names}restarts_rate_limit_n "
                f"{self.restarts_rate_limit_n} per {names}restarts_rate_limit_period_s "
                f"{self.restarts_rate_limit_period_s:g} s) after it {why}")
        self.history.append(now)
