"""What every environment speaks: behavior specs and batched step results.

The shape follows ML-Agents' low-level API (``reset / get_steps / set_actions / step``) because it
already covers many agents, several behaviors, agents that finish at different times and groups.
Arrays are batched over all agents of a behavior (all copies of the environment together), so
the caller never loops over agents.

Conventions:
- observations: one array per observation spec, shaped ``(n_agents, *spec.shape)``, float32;
  visual observations are channel-last ``(H, W, C)`` in [0, 1].
- action masks: one bool array ``(n_agents, sum(discrete_branches))``, **True = allowed**
  (Gymnasium's convention; ML-Agents inverts it); ``None`` means every action is allowed.
- continuous actions reach an environment in [-1, 1]; adapters rescale to their bounds.
"""
from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import List, Mapping, Optional, Tuple

import numpy as np


class ObservationKind(enum.Enum):
    VECTOR = "vector"
    VISUAL = "visual"


@dataclass(frozen=True)
class ObservationSpec:
    shape: Tuple[int, ...]
    kind: ObservationKind = ObservationKind.VECTOR
    name: str = "obs"


@dataclass(frozen=True)
class ActionSpec:
    """Continuous size plus discrete branches; both non-empty means a hybrid action."""

    continuous_size: int = 0
    discrete_branches: Tuple[int, ...] = ()

    @property
    def discrete_size(self) -> int:
        return len(self.discrete_branches)

    @property
    def is_continuous(self) -> bool:
        return self.continuous_size > 0

    @property
    def is_discrete(self) -> bool:
        return self.discrete_size > 0

    @classmethod
    def create_continuous(cls, size: int) -> "ActionSpec":
        return cls(size, ())

    @classmethod
    def create_discrete(cls, branches: Tuple[int, ...]) -> "ActionSpec":
        return cls(0, tuple(branches))

    def empty_action(self, n: int) -> "ActionTuple":
        return ActionTuple(np.zeros((n, self.continuous_size), np.float32),
                           np.zeros((n, self.discrete_size), np.int64))

    def random_action(self, n: int, rng: np.random.Generator) -> "ActionTuple":
        cont = rng.uniform(-1.0, 1.0, (n, self.continuous_size)).astype(np.float32)
        disc = np.stack([rng.integers(0, b, n) for b in self.discrete_branches], axis=1) \
            if self.discrete_branches else np.zeros((n, 0), np.int64)
        return ActionTuple(cont, disc.astype(np.int64))


@dataclass(frozen=True)
class BehaviorSpec:
    observation_specs: List[ObservationSpec]
    action_spec: ActionSpec


@dataclass
class ActionTuple:
    """Actions for a batch of agents: continuous ``(n, c)`` float32, discrete ``(n, b)`` int64."""

    continuous: np.ndarray
    discrete: np.ndarray

    def __len__(self) -> int:
        return max(len(self.continuous), len(self.discrete))


@dataclass
class DecisionSteps:
    """Agents that need an action now. `reward` is what their previous action earned."""

    obs: List[np.ndarray]
    reward: np.ndarray
    agent_id: np.ndarray
    action_mask: Optional[np.ndarray] = None
    group_id: Optional[np.ndarray] = None
    group_reward: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.agent_id)


@dataclass
class TerminalSteps:
    """Agents whose episode ended this step. `interrupted` = truncated (time limit), so the
    trainer bootstraps from the value of `obs`; a real termination does not."""

    obs: List[np.ndarray]
    reward: np.ndarray
    interrupted: np.ndarray
    agent_id: np.ndarray
    group_id: Optional[np.ndarray] = None
    group_reward: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.agent_id)


class BaseEnv(abc.ABC):
    """An environment with one or more behaviors, stepped all agents at once."""

    #: frames per second at which `render` frames play in real time; None when unknown
    render_fps: Optional[float] = None

    @property
    @abc.abstractmethod
    def behavior_specs(self) -> Mapping[str, BehaviorSpec]:
        ...

    @abc.abstractmethod
    def reset(self) -> None:
        ...

    @abc.abstractmethod
    def get_steps(self, behavior_name: str) -> Tuple[DecisionSteps, TerminalSteps]:
        ...

    @abc.abstractmethod
    def set_actions(self, behavior_name: str, actions: ActionTuple) -> None:
        """Actions for the agents of the last `get_steps` decision batch, in the same order."""

    @abc.abstractmethod
    def step(self) -> None:
        ...

    def render(self) -> Optional[np.ndarray]:
        """A picture of the first environment copy (first arena, first agent) as it is now:
        an RGB frame (H, W, 3) uint8, a new array each call, or None when the environment draws
        nothing (the default). It is what `palaestra play --record` writes to a video, one frame
        per step; an environment that wants to appear in videos overrides it."""
        return None

    def pop_stats(self) -> Mapping[str, List[Tuple[float, str]]]:
        """Values the environment itself reports (Unity's `StatsRecorder`) since the last call:
        name -> [(value, aggregation)], aggregation one of "average", "most_recent", "sum",
        "histogram". Every behavior's summary gets them. The default reports nothing."""
        return {}

    def close(self) -> None:
        """Release resources; the default has none."""


def empty_terminal_steps(spec: BehaviorSpec) -> TerminalSteps:
    obs = [np.zeros((0, *o.shape), np.float32) for o in spec.observation_specs]
    return TerminalSteps(obs, np.zeros(0, np.float32), np.zeros(0, bool), np.zeros(0, np.int64))

