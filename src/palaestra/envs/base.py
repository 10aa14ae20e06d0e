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
from dataclasses import dataclass, fields
from typing import List, Mapping, Optional, Sequence, Tuple, TypeVar

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


# Each kind of step's array fields besides its observations, in their order in the dataclass
# (what the wire forms of worker processes and Ray actors carry one by one).
DECISION_FIELDS = tuple(f.name for f in fields(DecisionSteps) if f.name != "obs")
TERMINAL_FIELDS = tuple(f.name for f in fields(TerminalSteps) if f.name != "obs")


class BaseEnv(abc.ABC):
    """An environment with one or more behaviors, stepped all agents at once."""

    #: frames per second at which `render` frames play in real time; None when unknown
    render_fps: Optional[float] = None
    #: True where the copies simulate in other processes after `step` returns (worker
    #: processes, Unity builds): off-policy trainers then spread their gradient steps over the
    #: following steps so that the simulation runs during them (`threaded`)
    steps_elsewhere: bool = False

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

    def lost_parts(self) -> Tuple[Sequence[int], int]:
        """For an environment made of parts that can be lost and replaced (worker processes,
        Unity instances; agent ids ``id * parts + part``): the parts replaced since the
        batch before the one `get_steps` returns now, and the number of parts. Their deciding
        agents are in this batch's terminal steps, interrupted; the trainer's processors
        drop what the others (waiting for their turn) had started. The default: none."""
        return (), 1

    def close(self) -> None:
        """Release resources; the default has none."""


def empty_terminal_steps(spec: BehaviorSpec) -> TerminalSteps:
    obs = [np.zeros((0, *o.shape), np.float32) for o in spec.observation_specs]
    return TerminalSteps(obs, np.zeros(0, np.float32), np.zeros(0, bool), np.zeros(0, np.int64))



_Steps = TypeVar("_Steps", DecisionSteps, TerminalSteps)


def globalise_ids(steps: _Steps, part: int, parts: int) -> _Steps:
    """Agent (and group) ids unique over the `parts` environments (Unity instances, worker
    processes) whose steps one batch concatenates: id * parts + part; group 0 (no group) stays
    0. Changes `steps` in place (its id arrays are replaced, not written into) and returns it;
    with one part the ids are left as they are."""
    if parts == 1:
        return steps
    steps.agent_id = global_ids(steps.agent_id, part, parts)
    if steps.group_id is not None:
        steps.group_id = global_groups(steps.group_id, part, parts)
    return steps


def global_ids(ids: np.ndarray, part: int, parts: int) -> np.ndarray:
    """`globalise_ids` of one array of agent ids (a new array)."""
    return ids * parts + part


def global_groups(groups: np.ndarray, part: int, parts: int) -> np.ndarray:
    """`globalise_ids` of one array of group ids: group 0 (no group) stays 0."""
    return np.where(groups == 0, 0, groups * parts + part)


def _groups(parts: "List[_Steps]") -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Concatenated group ids and rewards; parts without groups count as group 0, reward 0."""
    if all(p.group_id is None for p in parts):
        return None, None
    return (np.concatenate([p.group_id if p.group_id is not None else np.zeros(len(p), np.int64)
                            for p in parts]),
            np.concatenate([p.group_reward if p.group_reward is not None else
                            np.zeros(len(p), np.float32) for p in parts]))


def concat_decisions(parts: List[DecisionSteps], spec: BehaviorSpec) -> DecisionSteps:
    """One behavior's decision batches of several environments as one (in the order given).
    A part without an action mask allows every action; one part is returned as it is."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        obs = [np.zeros((0, *o.shape), np.float32) for o in spec.observation_specs]
        return DecisionSteps(obs, np.zeros(0, np.float32), np.zeros(0, np.int64))
    masks = [p.action_mask for p in parts]
    mask = None
    if any(m is not None for m in masks):
        total = sum(spec.action_spec.discrete_branches)
        mask = np.concatenate([m if m is not None else np.ones((len(p), total), bool)
                               for m, p in zip(masks, parts)])
    group_id, group_reward = _groups(parts)
    return DecisionSteps(
        [np.concatenate([p.obs[k] for p in parts]) for k in range(len(spec.observation_specs))],
        np.concatenate([p.reward for p in parts]), np.concatenate([p.agent_id for p in parts]),
        mask, group_id, group_reward)


def concat_terminals(parts: List[TerminalSteps], spec: BehaviorSpec) -> TerminalSteps:
    """One behavior's terminal batches of several environments as one (empty parts left out);
    one non-empty part is returned as it is, and so is the first part when all are empty."""
    given, parts = parts, [p for p in parts if len(p)]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return given[0] if given else empty_terminal_steps(spec)
    group_id, group_reward = _groups(parts)
    return TerminalSteps(
        [np.concatenate([p.obs[k] for p in parts]) for k in range(len(spec.observation_specs))],
        np.concatenate([p.reward for p in parts]), np.concatenate([p.interrupted for p in parts]),
        np.concatenate([p.agent_id for p in parts]), group_id, group_reward)
