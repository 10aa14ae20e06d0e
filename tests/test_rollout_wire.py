"""A Ray actor's chunk crosses the wire by columns (`palaestra.scale.rollout_wire`): what
arrives is, step for step and field for field, what was sent, including fields that are set in
some steps only, behaviors absent from some steps and steps without actions; a chunk whose
steps do not stack travels as it is."""
import pickle

import numpy as np
import pytest

from helpers import assert_same_steps
from palaestra.envs.base import ActionTuple, DecisionSteps, TerminalSteps
from palaestra.scale import rollout_wire
from palaestra.scale.rollout_wire import BehaviorStep, Rollout


def _step(rng, n, m, masked, grouped, acted, visual=False):
    obs = [rng.normal(size=(n, 3)).astype(np.float32)]
    if visual:
        obs.append(rng.random((n, 4, 4, 1)).astype(np.float32))
    decision = DecisionSteps(
        obs, rng.normal(size=n).astype(np.float32), rng.integers(0, 99, n),
        rng.random((n, 5)) > 0.2 if masked else None,
        rng.integers(0, 3, n) if grouped else None,
        rng.normal(size=n).astype(np.float32) if grouped else None)
    tobs = [rng.normal(size=(m, 3)).astype(np.float32)]
    if visual:
        tobs.append(rng.random((m, 4, 4, 1)).astype(np.float32))
    terminal = TerminalSteps(tobs, rng.normal(size=m).astype(np.float32), rng.random(m) > 0.5,
                             rng.integers(0, 99, m), rng.integers(0, 3, m) if grouped else None,
                             rng.normal(size=m).astype(np.float32) if grouped else None)
    if not acted:
        return BehaviorStep(decision, terminal)
    action = ActionTuple(rng.normal(size=(n, 2)).astype(np.float32), rng.integers(0, 5, (n, 1)))
    return BehaviorStep(decision, terminal, action, rng.normal(size=n).astype(np.float32))


def _assert_same(got, want):
    assert got.stats == want.stats
    assert len(got.steps) == len(want.steps)
    for row_got, row_want in zip(got.steps, want.steps):
        assert list(row_got) == list(row_want)
        for name in row_want:
            g, w = row_got[name], row_want[name]
            assert_same_steps(g.decision, w.decision)
            assert_same_steps(g.terminal, w.terminal)
            assert (g.action is None) == (w.action is None)
            if w.action is not None:
                np.testing.assert_array_equal(g.action.continuous, w.action.continuous)
                np.testing.assert_array_equal(g.action.discrete, w.action.discrete)
                np.testing.assert_array_equal(g.log_probs, w.log_probs)


def test_a_chunk_arrives_as_it_was_sent_field_for_field():
    rng = np.random.default_rng(0)
    steps = []
    for t in range(12):
        row = {"walker": _step(rng, int(rng.integers(0, 4)), int(rng.integers(0, 3)),
                               masked=t >= 5, grouped=t % 3 == 0, acted=t % 4 != 1)}
        if t % 2:  # a second behavior in some steps only, with two observations
            row["seer"] = _step(rng, 2, 1, masked=False, grouped=False, acted=True, visual=True)
        steps.append(row)
    rollout = Rollout(steps, {"Environment/Size": [(1.0, "average")]})
    reduced = rollout.__reduce__()
    assert reduced[0] is not Rollout  # by columns
    _assert_same(pickle.loads(pickle.dumps(rollout, protocol=5)), rollout)


def test_an_empty_chunk_and_a_chunk_of_empty_steps():
    rng = np.random.default_rng(1)
    _assert_same(pickle.loads(pickle.dumps(Rollout([]))), Rollout([]))
    steps = [{"b": _step(rng, 0, 0, False, False, acted=False)} for _ in range(3)]
    _assert_same(pickle.loads(pickle.dumps(Rollout(steps))), Rollout(steps))


@pytest.mark.parametrize("change", ["dtype", "shape", "observations", "scalar"])
def test_steps_that_do_not_stack_travel_as_they_are(change):
    rng = np.random.default_rng(2)
    steps = [{"b": _step(rng, 2, 1, False, False, acted=True)} for _ in range(3)]
    last = steps[-1]["b"]
    if change == "dtype":
        last.decision.reward = last.decision.reward.astype(np.float64)
    elif change == "shape":
        last.decision.obs[0] = np.zeros((2, 4), np.float32)
    elif change == "observations":
        last.terminal.obs = []
    else:
        last.decision.reward = np.float32(1.0)
    rollout = Rollout(steps)
    with pytest.raises(rollout_wire.NotStackable):
        rollout_wire.pack(steps)
    assert rollout.__reduce__()[0] is Rollout
    back = pickle.loads(pickle.dumps(rollout))
    assert back.steps[-1]["b"].decision.reward.dtype == last.decision.reward.dtype
