"""`Trajectory`: one agent's consecutive steps, cut at `time_horizon` or at the episode's end.

Stored by column (one array per quantity, first axis = step) because that is how the agent
processor gathers it and how `to_agentbuffer` hands it on: no per-step objects on the hot path.
`steps` still offers the per-step `AgentExperience` view the specification describes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np

from palaestra.buffer import AgentBuffer, BufferKey, group_obs_key, next_obs_key, obs_key


@dataclass
class AgentExperience:
    """One step of one agent (a view built on demand from a Trajectory)."""

    obs: List[np.ndarray]
    reward: float
    done: bool
    continuous_action: np.ndarray
    discrete_action: np.ndarray
    log_prob: float
    action_mask: Optional[np.ndarray]
    interrupted: bool
    memory: Optional[np.ndarray]
    group_id: int
    group_reward: float


@dataclass
class GroupStatus:
    """Teammates at each step of a trajectory, padded to M teammates: observations
    [(T, M, *shape)], actions (T, M, c) and (T, M, b), and `present` (T, M) for the real ones."""

    obs: List[np.ndarray]
    continuous_actions: np.ndarray
    discrete_actions: np.ndarray
    present: np.ndarray

    @property
    def size(self) -> int:
        return self.present.shape[1]


@dataclass
class Trajectory:
    """Arrays of length T (steps) for one agent; `next_obs` is the observation after the last.

    `done_reached`: the last step ended the episode. `interrupted`: it ended by truncation (a
    time limit), so returns bootstrap from the value of `next_obs`.

    Groups (`group_id` > 0): `group_rewards` (T,) is the reward the group earned at each step;
    `group_status` holds what the agent's teammates observed and did at each step (as
    ML-Agents' group status: POCA's centralised critic reads it), `next_group_obs` the
    teammates' observations after the last step, and `all_group_dones_reached` whether the
    group's episode was over for every member at that point (an agent removed before its
    group finishes has `done_reached` but not this: its returns bootstrap from the group's
    value).
    """

    obs: List[np.ndarray]
    next_obs: List[np.ndarray]
    continuous_actions: np.ndarray
    discrete_actions: np.ndarray
    log_probs: np.ndarray
    rewards: np.ndarray
    action_masks: Optional[np.ndarray]
    done_reached: bool
    interrupted: bool
    agent_id: Any
    behavior_id: str
    memories: Optional[np.ndarray] = None
    group_id: int = 0
    group_rewards: Optional[np.ndarray] = None
    group_status: Optional["GroupStatus"] = None
    groupmate_rewards: Optional[np.ndarray] = None  # (T,) teammates' own rewards, summed
    next_group_obs: Optional[List[np.ndarray]] = None
    next_group_present: Optional[np.ndarray] = None
    all_group_dones_reached: Optional[bool] = None  # None: no group, same as done_reached

    @property
    def group_done(self) -> bool:
        """The episode is over for the agent and, if it has a group, for all its teammates."""
        if self.all_group_dones_reached is None:
            return self.done_reached
        return self.done_reached and self.all_group_dones_reached

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def steps(self) -> List[AgentExperience]:
        n = len(self)
        return [AgentExperience(
            obs=[o[t] for o in self.obs], reward=float(self.rewards[t]),
            done=self.done_reached and t == n - 1,
            continuous_action=self.continuous_actions[t], discrete_action=self.discrete_actions[t],
            log_prob=float(self.log_probs[t]),
            action_mask=None if self.action_masks is None else self.action_masks[t],
            interrupted=self.interrupted and t == n - 1,
            memory=None if self.memories is None else self.memories[t], group_id=self.group_id,
            group_reward=0.0 if self.group_rewards is None else float(self.group_rewards[t]))
            for t in range(n)]

    def to_agentbuffer(self) -> AgentBuffer:
        """Columns for the trainer: observations, next observations, actions, log-probs,
        rewards, done/interrupted flags, masks (1 = a real step) and the optional slots
        (`trajectories_to_agentbuffer` of this one trajectory)."""
        return trajectories_to_agentbuffer([self])


def trajectories_to_agentbuffer(trajectories: Sequence[Trajectory]) -> AgentBuffer:
    """`to_agentbuffer` of several trajectories, appended in order, with one concatenation per
    column instead of one buffer per trajectory (thousands of short early episodes otherwise
    cost more than the critic pass over them)."""
    lengths = np.array([len(t) for t in trajectories])
    ends = np.cumsum(lengths) - 1
    n = int(lengths.sum())
    buf = AgentBuffer()
    first = trajectories[0]
    for i in range(len(first.obs)):
        obs = np.concatenate([t.obs[i] for t in trajectories])
        nxt = np.empty_like(obs)
        nxt[:-1] = obs[1:]
        nxt[ends] = np.stack([t.next_obs[i] for t in trajectories])
        buf[obs_key(i)] = obs
        buf[next_obs_key(i)] = nxt
    buf[BufferKey.CONTINUOUS_ACTION] = np.concatenate([t.continuous_actions for t in trajectories])
    buf[BufferKey.DISCRETE_ACTION] = np.concatenate([t.discrete_actions for t in trajectories])
    buf[BufferKey.LOG_PROBS] = np.concatenate([t.log_probs for t in trajectories])
    buf[BufferKey.ENVIRONMENT_REWARDS] = np.concatenate([t.rewards for t in trajectories])
    done = np.zeros(n, np.float32)
    done[ends] = [float(t.done_reached) for t in trajectories]
    buf[BufferKey.DONE] = done
    interrupted = np.zeros(n, np.float32)
    interrupted[ends] = [float(t.interrupted) for t in trajectories]
    buf[BufferKey.INTERRUPTED] = interrupted
    buf[BufferKey.MASKS] = np.ones(n, np.float32)
    if first.action_masks is not None:
        buf[BufferKey.ACTION_MASK] = np.concatenate([t.action_masks for t in trajectories])
    if first.memories is not None:
        buf[BufferKey.MEMORY] = np.concatenate([t.memories for t in trajectories])
    buf[BufferKey.GROUP_ID] = np.repeat([t.group_id for t in trajectories], lengths)
    buf[BufferKey.GROUP_REWARD] = np.concatenate(
        [np.zeros(len(t), np.float32) if t.group_rewards is None else t.group_rewards
         for t in trajectories])
    if first.groupmate_rewards is not None:
        buf[BufferKey.GROUPMATE_REWARDS] = np.concatenate(
            [np.zeros(len(t), np.float32) if t.groupmate_rewards is None else t.groupmate_rewards
             for t in trajectories])
    if first.group_status is not None:
        statuses = [t.group_status for t in trajectories]
        width = max(g.size for g in statuses)  # type: ignore[union-attr]
        padded = [pad_group_status(g, width) for g in statuses]  # type: ignore[arg-type]
        _write_group_status(buf, GroupStatus(
            [np.concatenate([g.obs[i] for g in padded]) for i in range(len(first.obs))],
            np.concatenate([g.continuous_actions for g in padded]),
            np.concatenate([g.discrete_actions for g in padded]),
            np.concatenate([g.present for g in padded])))
    return buf


def pad_group_status(status: GroupStatus, width: int) -> GroupStatus:
    """The same teammates padded (absent) to `width` slots: the largest group can grow during
    a run, and trajectories recorded before must still stack with later ones."""
    if width <= status.size:
        return status
    return GroupStatus([pad_teammates(o, width) for o in status.obs],
                       pad_teammates(status.continuous_actions, width),
                       pad_teammates(status.discrete_actions, width),
                       pad_teammates(status.present, width))


def pad_teammates(column: np.ndarray, width: int) -> np.ndarray:
    """A teammate column (n, M, ...) padded with zeros (absent teammates) to (n, width, ...)."""
    extra = width - column.shape[1]
    if extra <= 0:
        return column
    pad = np.zeros((column.shape[0], extra, *column.shape[2:]), column.dtype)
    return np.concatenate([column, pad], 1)


def _write_group_status(buf: AgentBuffer, status: GroupStatus) -> None:
    for i, o in enumerate(status.obs):
        buf[group_obs_key(i)] = o
    buf[BufferKey.GROUP_CONTINUOUS_ACTION] = status.continuous_actions
    buf[BufferKey.GROUP_DISCRETE_ACTION] = status.discrete_actions
    buf[BufferKey.GROUP_PRESENT] = status.present
