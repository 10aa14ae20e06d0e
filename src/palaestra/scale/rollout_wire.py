"""What an actor's chunk is (`Rollout` of `BehaviorStep`s) and how it crosses the wire: by
columns, not by step.

A chunk of 64 steps of one agent is about 1,300 small arrays (each step's rewards, ids, masks,
observations, actions). Pickled one by one (what Ray does with a plain dataclass) it cost
3.3 ms in the actor and 1.5 ms in the training process on a 2-core EPYC, nearly as much as
the actor's own acting and stepping of those 64 steps (5.5 ms). So `Rollout.__reduce__` sends each
behavior's fields concatenated over the chunk (a few dozen arrays) with the agent counts of
each step, and the receiving side cuts them back into per-step views.

Nothing is lost on the way: a field that is None in some steps and set in others (an action
mask first reported mid-chunk, groups) keeps which steps had it, a behavior absent from a step
stays absent, a step's actions travel with their log-probabilities (an actor records both or
neither; a step with only one of them arrives with neither, which is how the replay reads it
anyway), and a chunk whose steps do not stack (a field's dtype or trailing shape changing
between steps, observation lists of different lengths) is sent as it is, pickled step by step.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from palaestra.envs.base import (DECISION_FIELDS, TERMINAL_FIELDS, ActionTuple, DecisionSteps,
                                 TerminalSteps)



@dataclass
class BehaviorStep:
    """One behavior's part of one step, as `EnvManager.advance` sees it: the steps the
    environment answered (ids already unique over actors) and, when agents decided, the
    actions the actor's policy took for them (as sampled: what trajectories store) and their
    log-probabilities."""

    decision: DecisionSteps
    terminal: TerminalSteps
    action: Optional[ActionTuple] = None
    log_probs: Optional[np.ndarray] = None


@dataclass
class Rollout:
    """A chunk of steps of one actor, oldest first, and its environment's own stats
    (`BaseEnv.pop_stats`) over the chunk."""

    steps: List[Dict[str, BehaviorStep]]
    stats: Dict[str, List[Tuple[float, str]]] = dataclasses.field(default_factory=dict)

    def __reduce__(self) -> Tuple[Any, ...]:
        """Pickled by columns: a fraction of the cost of its arrays one by one; as it is
        where its steps do not stack."""
        try:
            return (unpacked, (pack(self.steps), self.stats))
        except NotStackable:
            return (Rollout, (self.steps, self.stats))


# A column: which of its steps have the field (None: all of them) and the field's rows of
# those steps, concatenated.
Column = Tuple[Optional[np.ndarray], np.ndarray]
# One kind of steps (decision or terminal) of one behavior: agents per step, observations
# (one column each), the fields.
Part = Tuple[np.ndarray, List[np.ndarray], List[Optional[Column]]]


class NotStackable(ValueError):
    """A chunk whose steps cannot be concatenated field by field."""


def pack(steps: Sequence[Dict[str, Any]]) -> Tuple[int, Dict[str, Any]]:
    """(number of steps, per behavior: which steps have it and its columns). Raises
    `NotStackable` for a chunk to send as it is."""
    names = list(dict.fromkeys(name for row in steps for name in row))
    packed = {}
    for name in names:
        present = np.array([name in row for row in steps], bool)
        records = [row[name] for row in steps if name in row]
        acted = np.array([r.action is not None and r.log_probs is not None for r in records],
                         bool)
        done = [r for r, a in zip(records, acted) if a]
        actions = None
        if done:
            actions = (_join([r.action.continuous for r in done]),
                       _join([r.action.discrete for r in done]),
                       _join([r.log_probs for r in done]))
        packed[name] = (present, _part([r.decision for r in records], DECISION_FIELDS),
                        _part([r.terminal for r in records], TERMINAL_FIELDS), acted, actions)
    return len(steps), packed


def unpacked(packed: Tuple[int, Dict[str, Any]], stats: Dict[str, List[Tuple[float, str]]]
             ) -> Rollout:
    """The `Rollout` that `pack` packed (what unpickling calls)."""
    n_steps, behaviors = packed
    rows: List[Dict[str, BehaviorStep]] = [{} for _ in range(n_steps)]
    for name, (present, decision, terminal, acted, actions) in behaviors.items():
        decisions = _steps(decision, DecisionSteps, DECISION_FIELDS)
        terminals = _steps(terminal, TerminalSteps, TERMINAL_FIELDS)
        taken: List[Tuple[Optional[ActionTuple], Optional[np.ndarray]]] = [(None, None)] * len(
            decisions)
        if actions is not None:
            counts = decision[0][acted]
            continuous, discrete, log_probs = (_cut(a, counts) for a in actions)
            for k, i in enumerate(np.flatnonzero(acted).tolist()):
                taken[i] = (ActionTuple(continuous[k], discrete[k]), log_probs[k])
        for i, t in enumerate(np.flatnonzero(present).tolist()):
            rows[t][name] = BehaviorStep(decisions[i], terminals[i], *taken[i])
    return Rollout(rows, stats)


def _join(arrays: List[np.ndarray]) -> np.ndarray:
    first = arrays[0]
    for a in arrays:
        if not isinstance(a, np.ndarray) or a.ndim == 0 or a.dtype != first.dtype or \
                a.shape[1:] != first.shape[1:]:
            raise NotStackable("a field changes dtype or shape between steps")
    return np.concatenate(arrays)


def _part(items: List[Any], fields: Sequence[str]) -> Part:
    counts = np.array([len(s) for s in items], np.int64)
    n_obs = len(items[0].obs)
    if any(len(s.obs) != n_obs for s in items):
        raise NotStackable("the number of observations changes between steps")
    obs = [_join([s.obs[k] for s in items]) for k in range(n_obs)]
    columns: List[Optional[Column]] = []
    for field in fields:
        values = [getattr(s, field) for s in items]
        has = np.array([v is not None for v in values], bool)
        if not has.any():
            columns.append(None)
            continue
        joined = _join([v for v in values if v is not None])
        columns.append((None if has.all() else has, joined))
    return counts, obs, columns


def _cut(array: np.ndarray, counts: np.ndarray) -> List[np.ndarray]:
    """`array`'s rows in consecutive pieces of `counts` rows (views)."""
    ends = np.cumsum(counts).tolist()
    starts = [0] + ends[:-1]
    return [array[a:b] for a, b in zip(starts, ends)]


def _steps(part: Part, cls: type, fields: Sequence[str]) -> List[Any]:
    counts, obs, columns = part
    n = len(counts)
    obs_parts = [_cut(o, counts) for o in obs]
    values: List[List[Optional[np.ndarray]]] = []
    for column in columns:
        if column is None:
            values.append([None] * n)
            continue
        has, joined = column
        if has is None:
            values.append(_cut(joined, counts))
            continue
        pieces = iter(_cut(joined, counts[has]))
        values.append([next(pieces) if h else None for h in has.tolist()])
    return [cls([o[i] for o in obs_parts], *(v[i] for v in values)) for i in range(n)]
