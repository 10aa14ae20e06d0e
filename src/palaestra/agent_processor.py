"""`AgentProcessor`: turns batched step results into per-agent `Trajectory`s, vectorised.

Each agent owns a slot in preallocated arrays shaped ``(slots, time_horizon, ...)``. Per step
the processor writes every acting agent's row with one fancy-indexed assignment; Python-level
work per agent happens only when a trajectory is emitted (episode end or `time_horizon`), never
per step. Slots are re-used by id, so agents that appear and disappear (multi-agent
environments) cost a dictionary look-up only when the set of ids changes.

Groups (a `group_id` > 0 in the step data) add, per step, the group reward and each agent's
teammates' observations and actions (their "group status"), found for all agents at once by
sorting on group id; with no groups none of that work is done.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from palaestra.envs.base import BehaviorSpec, DecisionSteps, TerminalSteps
from palaestra.policy import ActionInfo
from palaestra.stats import StatsReporter
from palaestra.trajectory import GroupStatus, Trajectory


class AgentProcessor:
    def __init__(self, behavior_id: str, spec: BehaviorSpec, time_horizon: int,
                 stats_reporter: StatsReporter,
                 publish: Callable[[Trajectory], None], initial_slots: int = 16) -> None:
        self.behavior_id = behavior_id
        self.spec = spec
        self.horizon = time_horizon
        self.stats = stats_reporter
        self.publish = publish
        self._ids: Dict[Any, int] = {}
        self._slot_ids: List[Any] = []
        self._last_ids: Optional[np.ndarray] = None
        self._last_index: Union[slice, np.ndarray] = slice(0, 0)
        self._last_slots = np.zeros(0, np.int64)
        self._mates = 0  # teammate slots per step (largest group - 1); 0 until a group shows up
        self._alloc(initial_slots)

    # -- storage ------------------------------------------------------------------------------
    def _alloc(self, n: int) -> None:
        """(Re)allocate storage for `n` slots, keeping what the first slots hold."""
        h, a = self.horizon, self.spec.action_spec
        layout = {"_cont": ((h, a.continuous_size), np.float32),
                  "_disc": ((h, a.discrete_size), np.int64), "_logp": ((h,), np.float32),
                  "_rew": ((h,), np.float32), "_mask": ((h, sum(a.discrete_branches)), bool),
                  "_pos": ((), np.int64), "_pending": ((), bool),
                  "_ep_reward": ((), np.float64), "_ep_len": ((), np.int64),
                  "_grew": ((h,), np.float32), "_gmrew": ((h,), np.float32),
                  "_gid": ((), np.int64),
                  "_ep_group_reward": ((), np.float64)}

        def grow(old: Optional[np.ndarray], shape: tuple, dtype: Any) -> np.ndarray:
            new = np.zeros((n, *shape), dtype)
            if old is not None:  # more slots, or more teammates per step: keep what is there
                new[tuple(slice(0, d) for d in old.shape)] = old
            return new

        for name, (shape, dtype) in layout.items():
            setattr(self, name, grow(getattr(self, name, None), shape, dtype))
        old_obs = getattr(self, "_obs", [None] * len(self.spec.observation_specs))
        self._obs = [grow(old, (h, *o.shape), np.float32)
                     for old, o in zip(old_obs, self.spec.observation_specs)]
        # (slot, t) rows addressed by one flat index slot * horizon + t: 1-D fancy indexing
        # is several times cheaper than the 2-D form on the per-step path.
        def flat(arr: np.ndarray) -> np.ndarray:
            return arr.reshape(n * h, *arr.shape[2:])

        self._flat_obs = [flat(o) for o in self._obs]
        self._flat_grew, self._flat_gmrew = flat(self._grew), flat(self._gmrew)
        m = self._mates
        old_gobs = getattr(self, "_gobs", [None] * len(self.spec.observation_specs))
        self._gobs = [grow(old, (h, m, *o.shape), np.float32)
                      for old, o in zip(old_gobs, self.spec.observation_specs)]
        self._gcont = grow(getattr(self, "_gcont", None), (h, m, a.continuous_size), np.float32)
        self._gdisc = grow(getattr(self, "_gdisc", None), (h, m, a.discrete_size), np.int64)
        self._gpresent = grow(getattr(self, "_gpresent", None), (h, m), bool)
        self._flat_gobs = [flat(o) for o in self._gobs]
        self._flat_gcont, self._flat_gdisc, self._flat_gpresent = (
            flat(self._gcont), flat(self._gdisc), flat(self._gpresent))
        self._flat_cont, self._flat_disc = flat(self._cont), flat(self._disc)
        self._flat_logp, self._flat_rew, self._flat_mask = (flat(self._logp), flat(self._rew),
                                                            flat(self._mask))
        self._base = np.arange(n, dtype=np.int64) * h  # flat row of (slot, 0)
        self._n = n
        self._last_ids = None  # slots of cached ids stay valid, but re-check after growth

    def _index(self, agent_ids: np.ndarray) -> Union[slice, np.ndarray]:
        """Slots of `agent_ids` as an index: a slice when they are slots 0..n-1 in order (the
        usual case, e.g. Gymnasium copies), so per-slot arrays are read through views."""
        last = self._last_ids
        if last is not None and len(last) == len(agent_ids) and (last == agent_ids).all():
            return self._last_index
        slots = self._slots(agent_ids)
        contiguous = bool((slots == np.arange(len(slots))).all())
        self._last_index = slice(0, len(slots)) if contiguous else slots
        return self._last_index

    def _slots(self, agent_ids: np.ndarray) -> np.ndarray:
        last = self._last_ids
        if last is not None and len(last) == len(agent_ids) and (last == agent_ids).all():
            return self._last_slots
        slots = np.empty(len(agent_ids), np.int64)
        for k, agent_id in enumerate(agent_ids.tolist()):
            slot = self._ids.get(agent_id)
            if slot is None:
                slot = self._ids[agent_id] = len(self._ids)
                self._slot_ids.append(agent_id)
                if slot >= self._n:
                    self._alloc(max(2 * self._n, slot + 1))
            slots[k] = slot
        self._last_ids, self._last_slots = agent_ids.copy(), slots
        return slots

    # -- per step ------------------------------------------------------------------------------
    def record_actions(self, decision: DecisionSteps, info: ActionInfo) -> None:
        """The policy acted for `decision`: store observation, action, log-prob and mask."""
        if not len(decision):
            return
        index = self._index(decision.agent_id)
        rows = self._base[index] + self._pos[index]
        for store, obs in zip(self._flat_obs, decision.obs):
            store[rows] = obs
        if self.spec.action_spec.continuous_size:
            self._flat_cont[rows] = info.action.continuous
        if self.spec.action_spec.discrete_size:
            self._flat_disc[rows] = info.action.discrete
            # no mask from the environment means every action was allowed
            self._flat_mask[rows] = True if decision.action_mask is None else \
                decision.action_mask
        self._flat_logp[rows] = info.log_probs
        self._pending[index] = True
        groups = decision.group_id
        if groups is not None and (self._mates or bool((groups > 0).any())):
            self._gid[index] = groups
            self._record_group_status(rows, groups, decision.obs, info)

    def _record_group_status(self, rows: np.ndarray, groups: np.ndarray,
                             obs: List[np.ndarray], info: ActionInfo) -> None:
        mates = teammates(groups)
        k = mates.shape[1]
        if k > self._mates:
            self._mates = k
            self._alloc(self._n)
        present = mates >= 0
        safe = np.where(present, mates, 0)
        self._flat_gpresent[rows] = False
        self._flat_gpresent[rows, :k] = present
        for store, o in zip(self._flat_gobs, obs):
            store[rows, :k] = o[safe] * present.reshape(*present.shape, *[1] * (o.ndim - 1))
        a = self.spec.action_spec
        if a.continuous_size:
            self._flat_gcont[rows, :k] = info.action.continuous[safe] * present[..., None]
        if a.discrete_size:
            self._flat_gdisc[rows, :k] = info.action.discrete[safe] * present[..., None]

    def record_step(self, decision: DecisionSteps, terminal: TerminalSteps) -> None:
        """The environment answered the last actions: complete the pending rows and emit the
        trajectories that ended (terminal agents) or filled `time_horizon`."""
        grouped = self._mates > 0
        context = _GroupContext() if grouped else None
        t_slots = np.zeros(0, np.int64)
        if len(terminal):
            slots = np.asarray([self._ids.get(a, -1) for a in terminal.agent_id.tolist()])
            rows = np.nonzero((slots >= 0) & self._pending[np.maximum(slots, 0)])[0]
            t_slots = slots[rows]
            self._pending[t_slots] = False  # done: not completed again as a decision below
        d_slots = np.zeros(0, np.int64)
        if len(decision):
            index = self._index(decision.agent_id)
            pending = self._pending[index]
            d_rows = None if pending.all() else np.nonzero(pending)[0]
            if d_rows is None:
                d_slots = np.arange(self._n)[index]
                d_rewards, d_group = decision.reward, decision.group_reward
            else:
                index = d_slots = self._last_slots[d_rows]
                d_rewards = decision.reward[d_rows]
                d_group = _rows_of(decision.group_reward, d_rows)
        mates_t = mates_d = None
        if grouped:  # what each agent's live teammates earned this step (their own rewards)
            mates = _teammates_sum(np.concatenate([self._gid[t_slots], self._gid[d_slots]]),
                                   np.concatenate([terminal.reward[rows] if len(terminal)
                                                   else np.zeros(0), d_rewards
                                                   if len(decision) else np.zeros(0)]))
            mates_t, mates_d = mates[: len(t_slots)], mates[len(t_slots):]
        if len(terminal):
            self._complete(t_slots, terminal.reward[rows], _rows_of(terminal.group_reward, rows),
                           mates_t)
            self.stats.add_stats("Environment/Cumulative Reward", self._ep_reward[t_slots])
            self.stats.add_stats("Environment/Episode Length", self._ep_len[t_slots])
            if context is not None:
                context.add(t_slots, self._gid[t_slots], [o[rows] for o in terminal.obs], True)
        if len(decision):
            self._complete(index, d_rewards, d_group, mates_d)
            if context is not None:
                obs = decision.obs if d_rows is None else [o[d_rows] for o in decision.obs]
                context.add(d_slots, self._gid[d_slots], obs, False)
        if len(terminal):
            for row, slot in zip(rows.tolist(), t_slots.tolist()):
                self._emit(slot, [o[row].copy() for o in terminal.obs], True,
                           bool(terminal.interrupted[row]), context)
            self._ep_reward[t_slots] = 0.0
            self._ep_len[t_slots] = 0
            self._ep_group_reward[t_slots] = 0.0
        if len(decision):
            full = np.nonzero(self._pos[index] >= self.horizon)[0]
            if len(full):
                for k in full.tolist():
                    row = k if d_rows is None else int(d_rows[k])
                    self._emit(int(d_slots[k]), [o[row].copy() for o in decision.obs], False,
                               False, context)

    def _complete(self, index: Union[slice, np.ndarray], rewards: np.ndarray,
                  group_rewards: Optional[np.ndarray] = None,
                  groupmate_rewards: Optional[np.ndarray] = None) -> None:
        rows = self._base[index] + self._pos[index]
        self._flat_rew[rows] = rewards
        if groupmate_rewards is not None:
            self._flat_gmrew[rows] = groupmate_rewards
        if group_rewards is not None:
            self._flat_grew[rows] = group_rewards
            self._ep_group_reward[index] += group_rewards
        elif self._mates:
            self._flat_grew[rows] = 0.0
        self._pos[index] += 1
        self._pending[index] = False
        self._ep_reward[index] += rewards
        self._ep_len[index] += 1

    def _emit(self, slot: int, next_obs: List[np.ndarray], done: bool, interrupted: bool,
              context: Optional["_GroupContext"] = None) -> None:
        n = int(self._pos[slot])
        self._pos[slot] = 0
        if n == 0:
            return
        agent_id = self._slot_ids[slot]
        masks = self._mask[slot, :n].copy() if self.spec.action_spec.discrete_size else None
        trajectory = Trajectory(
            obs=[o[slot, :n].copy() for o in self._obs], next_obs=next_obs,
            continuous_actions=self._cont[slot, :n].copy(),
            discrete_actions=self._disc[slot, :n].copy(), log_probs=self._logp[slot, :n].copy(),
            rewards=self._rew[slot, :n].copy(), action_masks=masks, done_reached=done,
            interrupted=interrupted, agent_id=agent_id, behavior_id=self.behavior_id)
        if context is not None:
            group = int(self._gid[slot])
            trajectory.group_id = group
            trajectory.group_rewards = self._grew[slot, :n].copy()
            trajectory.groupmate_rewards = self._gmrew[slot, :n].copy()
            trajectory.group_status = GroupStatus(
                [o[slot, :n].copy() for o in self._gobs], self._gcont[slot, :n].copy(),
                self._gdisc[slot, :n].copy(), self._gpresent[slot, :n].copy())
            next_group, present, all_done = context.teammates_after(slot, group, self._mates,
                                                                    self.spec)
            trajectory.next_group_obs, trajectory.next_group_present = next_group, present
            trajectory.all_group_dones_reached = all_done if done else False
            if done and group > 0 and all_done:
                self.stats.add_stat("Environment/Group Cumulative Reward",
                                    float(self._ep_group_reward[slot]))
        self.publish(trajectory)

    def drop_part(self, part: int, parts: int, keep: Sequence[Any] = ()) -> None:
        """Drop the partial trajectories of part `part` of `parts` (a worker process, Unity
        instance or Ray actor that was lost and replaced; its agents' ids are
        ``id * parts + part``), except those of the agents in `keep`: the ones the
        environment ends this step as interrupted, with their last observation. What is
        dropped is the agents that were waiting for their turn when the part was lost (turn
        based games, decision periods): their ids come back with the replacement's fresh
        agents, whose steps must not continue them."""
        kept = set(np.asarray(keep).tolist())
        slots = [slot for slot, agent_id in enumerate(self._slot_ids)
                 if isinstance(agent_id, (int, np.integer)) and agent_id % parts == part
                 and agent_id not in kept]
        if not slots:
            return
        index = np.asarray(slots, np.int64)
        self._pos[index] = 0
        self._pending[index] = False
        self._ep_reward[index] = 0.0
        self._ep_len[index] = 0
        self._ep_group_reward[index] = 0.0

    def end_episodes(self) -> None:
        """Drop partial trajectories (the environment was reset under them)."""
        self._pos[:] = 0
        self._pending[:] = False
        self._ep_reward[:] = 0.0
        self._ep_len[:] = 0
        self._ep_group_reward[:] = 0.0


def _rows_of(values: Optional[np.ndarray], rows: np.ndarray) -> Optional[np.ndarray]:
    return None if values is None else values[rows]


def _teammates_sum(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each agent, the sum of `values` over the other agents with its group id (0 for
    agents without a group)."""
    if not len(groups):
        return np.zeros(0, np.float32)
    keys, inverse = np.unique(groups, return_inverse=True)
    totals = np.bincount(inverse, weights=values, minlength=len(keys))
    return np.where(groups > 0, totals[inverse] - values, 0.0).astype(np.float32)


def teammates(groups: np.ndarray) -> np.ndarray:
    """For each agent, the rows of the other agents with its group id, (n, largest group - 1),
    padded with -1; agents with group id 0 (no group) have none. One sort, no loop over
    agents."""
    n = len(groups)
    keys = np.where(groups > 0, groups, -1 - np.arange(n))  # group 0: each agent alone
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    counts = np.diff(np.r_[starts, n])
    size = int(counts.max()) if n else 1
    if size <= 1:
        return np.full((n, 0), -1, np.int64)
    group_of = np.repeat(np.arange(len(starts)), counts)
    position = np.arange(n) - starts[group_of]
    members = np.full((len(starts), size), -1, np.int64)
    members[group_of, position] = order
    others = np.array([[j for j in range(size) if j != p] for p in range(size)], np.int64)
    mates = np.empty((n, size - 1), np.int64)
    mates[order] = members[group_of[:, None], others[position]]
    return mates


class _GroupContext:
    """The agents whose step completed in this `record_step` (the live members of their
    groups), with their observations after it: teammates' next observations and whether a
    group's episode is over for all, for the trajectories emitted in this step."""

    def __init__(self) -> None:
        self.slots: List[np.ndarray] = []
        self.groups: List[np.ndarray] = []
        self.obs: List[List[np.ndarray]] = []
        self.done: List[np.ndarray] = []
        self._joined: Optional[tuple] = None

    def add(self, slots: np.ndarray, groups: np.ndarray, obs: List[np.ndarray],
            done: bool) -> None:
        self.slots.append(np.asarray(slots))
        self.groups.append(np.asarray(groups))
        self.obs.append(obs)
        self.done.append(np.full(len(slots), done))
        self._joined = None

    def teammates_after(self, slot: int, group: int, width: int, spec: BehaviorSpec
                        ) -> Tuple[List[np.ndarray], np.ndarray, bool]:
        if self._joined is None:
            self._joined = (np.concatenate(self.slots), np.concatenate(self.groups),
                            [np.concatenate(parts) for parts in zip(*self.obs)],
                            np.concatenate(self.done))
        slots, groups, obs, done = self._joined
        rows = np.nonzero((groups == group) & (slots != slot))[0] if group > 0 else \
            np.zeros(0, np.int64)
        rows = rows[:width]
        present = np.zeros(width, bool)
        present[: len(rows)] = True
        next_obs = []
        for o, s in zip(obs, spec.observation_specs):
            padded = np.zeros((width, *s.shape), np.float32)
            padded[: len(rows)] = o[rows]
            next_obs.append(padded)
        return next_obs, present, bool(done[rows].all())
