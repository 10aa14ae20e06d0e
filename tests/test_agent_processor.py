"""`AgentProcessor` fed by hand: trajectory cutting, episode ends, many agents, masks, and
`Trajectory` -> `AgentBuffer` conversion."""
import numpy as np
import pytest

from palaestra.agent_processor import AgentProcessor
from palaestra.buffer import BufferKey, next_obs_key, obs_key
from palaestra.envs.base import (ActionSpec, ActionTuple, BehaviorSpec, DecisionSteps,
                                 ObservationSpec, TerminalSteps)
from palaestra.policy import ActionInfo
from palaestra.stats import StatsReporter
from palaestra.trajectory import AgentExperience, Trajectory

REWARD = "Environment/Cumulative Reward"
LENGTH = "Environment/Episode Length"


def make_spec(obs_shapes=((3,),), cont=0, branches=(2,)):
    return BehaviorSpec([ObservationSpec(tuple(s)) for s in obs_shapes],
                        ActionSpec(cont, tuple(branches)))


def make_processor(spec=None, horizon=5, initial_slots=16):
    spec = spec or make_spec()
    out = []
    reporter = StatsReporter("test", [])
    proc = AgentProcessor("beh", spec, horizon, reporter, out.append, initial_slots=initial_slots)
    return proc, out, reporter


def decision(ids, obs, reward, mask=None):
    ids = np.asarray(ids)
    obs = list(obs) if isinstance(obs, tuple) else [obs]  # a tuple: one batch per spec
    return DecisionSteps([np.asarray(o, np.float32) for o in obs],
                         np.asarray(reward, np.float32).reshape(len(ids)), ids,
                         None if mask is None else np.asarray(mask, bool))


def terminal(ids, obs, reward, interrupted):
    ids = np.asarray(ids)
    obs = list(obs) if isinstance(obs, tuple) else [obs]  # a tuple: one batch per spec
    return TerminalSteps([np.asarray(o, np.float32) for o in obs],
                         np.asarray(reward, np.float32).reshape(len(ids)),
                         np.asarray(interrupted, bool).reshape(len(ids)), ids)


def no_terminal(n_obs_dim=3):
    return terminal(np.zeros(0, np.int64), np.zeros((0, n_obs_dim)), [], [])


def no_decision(n_obs_dim=3):
    return decision(np.zeros(0, np.int64), np.zeros((0, n_obs_dim)), [])


def info(disc=None, cont=None, logp=None, n=None):
    n = n if n is not None else len(disc if disc is not None else cont)
    disc = np.zeros((n, 0), np.int64) if disc is None else np.asarray(disc, np.int64).reshape(n, -1)
    cont = (np.zeros((n, 0), np.float32) if cont is None
            else np.asarray(cont, np.float32).reshape(n, -1))
    logp = np.zeros(n, np.float32) if logp is None else np.asarray(logp, np.float32)
    action = ActionTuple(cont, disc)
    return ActionInfo(action, action, logp)


def obs_at(agent, t):
    """A recognisable observation for `agent` at time `t`."""
    return np.array([agent, t, agent * 1000 + t], np.float32)


def rew_at(agent, t):
    """The reward received after `agent`'s action at `t`."""
    return 100.0 * agent + t + 0.5


def act_at(agent, t):
    return (agent + t) % 2


def logp_at(agent, t):
    return -0.01 * (agent * 10 + t)


class Driver:
    """Scripted multi-agent loop in the env-manager order: record_step (previous actions'
    results), then record_actions for the agents that decide. `t` counts each agent's episode
    steps separately."""

    def __init__(self, proc, agents):
        self.proc = proc
        self.t = {a: 0 for a in agents}

    def start(self, agents):
        d = decision(agents, [obs_at(a, self.t[a]) for a in agents], [0.0] * len(agents))
        self.proc.record_step(d, no_terminal())
        self._act(d, agents)

    def _act(self, d, agents):
        self.proc.record_actions(d, info(
            [act_at(a, self.t[a]) for a in agents], logp=[logp_at(a, self.t[a]) for a in agents]))

    def step(self, agents, ending=(), interrupted=(), joining=()):
        """All `agents` acted; those in `ending` finish their episode now (and restart);
        `joining` agents appear in the decision batch for the first time."""
        rewards = {a: rew_at(a, self.t[a]) for a in agents}
        for a in agents:
            self.t[a] += 1
        ends = [a for a in agents if a in ending]
        term = terminal(ends, np.array([obs_at(a, self.t[a]) for a in ends]).reshape(-1, 3),
                        [rewards[a] for a in ends], [a in interrupted for a in ends]) \
            if ends else no_terminal()
        for a in ends:
            self.t[a] = 0
        deciding = list(agents) + list(joining)
        d = decision(deciding, [obs_at(a, self.t[a]) for a in deciding],
                     [0.0 if a in ends or a in joining else rewards[a] for a in deciding])
        self.proc.record_step(d, term)
        self._act(d, deciding)


def check_rows(traj, agent, t0, n):
    """The trajectory holds steps t0 .. t0+n-1 of `agent`'s episode."""
    ts = np.arange(t0, t0 + n)
    assert len(traj) == n
    np.testing.assert_array_equal(traj.obs[0], [obs_at(agent, t) for t in ts])
    np.testing.assert_array_equal(traj.discrete_actions[:, 0], [act_at(agent, t) for t in ts])
    np.testing.assert_allclose(traj.log_probs, [logp_at(agent, t) for t in ts], rtol=1e-6)
    np.testing.assert_allclose(traj.rewards, [rew_at(agent, t) for t in ts], rtol=1e-6)


# -- time horizon -----------------------------------------------------------------------------
def test_cut_at_time_horizon():
    proc, out, reporter = make_processor(horizon=4)
    drv = Driver(proc, [7])
    drv.start([7])
    for k in range(10):
        drv.step([7])
        assert len(out) == (k + 1) // 4
    assert len(out) == 2
    for i, traj in enumerate(out):
        check_rows(traj, 7, 4 * i, 4)
        assert not traj.done_reached and not traj.interrupted
        assert traj.agent_id == 7 and traj.behavior_id == "beh"
        np.testing.assert_array_equal(traj.next_obs[0], obs_at(7, 4 * i + 4))
        assert traj.obs[0].dtype == np.float32
    # no episode ended: nothing reported
    assert reporter.get_stats_summaries(REWARD) is None


def test_published_trajectories_do_not_share_storage():
    proc, out, _ = make_processor(horizon=2)
    drv = Driver(proc, [0])
    drv.start([0])
    for _ in range(4):
        drv.step([0])
    assert len(out) == 2
    check_rows(out[0], 0, 0, 2)  # still intact after the slot was re-filled
    check_rows(out[1], 0, 2, 2)


# -- episode end ------------------------------------------------------------------------------
@pytest.mark.parametrize("interrupted", [False, True])
def test_terminal_emits_done_trajectory_and_stats(interrupted):
    proc, out, reporter = make_processor(horizon=10)
    drv = Driver(proc, [3])
    drv.start([3])
    drv.step([3])
    drv.step([3])
    drv.step([3], ending=[3], interrupted=[3] if interrupted else [])
    assert len(out) == 1
    traj = out[0]
    check_rows(traj, 3, 0, 3)
    assert traj.done_reached and traj.interrupted == interrupted
    np.testing.assert_array_equal(traj.next_obs[0], obs_at(3, 3))  # the terminal observation
    rew = reporter.get_stats_summaries(REWARD)
    length = reporter.get_stats_summaries(LENGTH)
    assert rew.num == 1 and rew.mean == pytest.approx(sum(rew_at(3, t) for t in range(3)))
    assert length.num == 1 and length.mean == 3


def test_episode_stats_span_horizon_cuts():
    proc, out, reporter = make_processor(horizon=3)
    drv = Driver(proc, [0])
    drv.start([0])
    for _ in range(6):
        drv.step([0])
    drv.step([0], ending=[0])  # 7 steps: cut at 3, 6, then done with 1 step
    assert [len(t) for t in out] == [3, 3, 1]
    assert [t.done_reached for t in out] == [False, False, True]
    check_rows(out[2], 0, 6, 1)
    rew = reporter.get_stats_summaries(REWARD)
    assert rew.num == 1 and rew.sum == pytest.approx(sum(rew_at(0, t) for t in range(7)))
    assert reporter.get_stats_summaries(LENGTH).mean == 7


def test_terminal_on_horizon_boundary_is_done():
    proc, out, _ = make_processor(horizon=3)
    drv = Driver(proc, [0])
    drv.start([0])
    drv.step([0])
    drv.step([0])
    drv.step([0], ending=[0])
    assert len(out) == 1 and out[0].done_reached and len(out[0]) == 3


def test_autoreset_starts_fresh_trajectory():
    """The agent is terminal and in the decision steps in the same step: the new trajectory's
    first row is the reset observation and its first reward comes from the *next* step."""
    proc, out, reporter = make_processor(horizon=10)
    drv = Driver(proc, [1])
    drv.start([1])
    drv.step([1])
    drv.step([1], ending=[1])  # episode 0: 2 steps
    assert len(out) == 1 and out[0].done_reached
    drv.step([1])
    drv.step([1])
    drv.step([1], ending=[1])  # episode 1: 3 steps
    assert len(out) == 2
    check_rows(out[1], 1, 0, 3)  # starts with the reset obs, rewards of episode 1 only
    assert out[1].done_reached
    rew = reporter.get_stats_summaries(REWARD)
    episodes = [sum(rew_at(1, t) for t in range(2)), sum(rew_at(1, t) for t in range(3))]
    assert rew.num == 2
    assert rew.mean == pytest.approx(np.mean(episodes))
    assert rew.std == pytest.approx(np.std(episodes))
    assert reporter.get_stats_summaries(LENGTH).mean == 2.5


def test_terminal_without_pending_action_is_ignored():
    proc, out, reporter = make_processor()
    proc.record_step(no_decision(), terminal([5], [obs_at(5, 0)], [1.0], [False]))
    assert out == []
    assert reporter.get_stats_summaries(REWARD) is None


# -- several agents ---------------------------------------------------------------------------
def test_agents_kept_apart_one_terminates():
    proc, out, reporter = make_processor(horizon=4)
    agents = [0, 1, 2]
    drv = Driver(proc, agents)
    drv.start(agents)
    drv.step(agents)
    drv.step(agents, ending=[1], interrupted=[1])  # agent 1 ends after 2 steps
    assert len(out) == 1
    assert out[0].agent_id == 1 and out[0].done_reached and out[0].interrupted
    check_rows(out[0], 1, 0, 2)
    drv.step(agents)
    drv.step(agents)  # agents 0, 2 reach the horizon (4 steps)
    by_agent = {t.agent_id: t for t in out[1:]}
    assert sorted(by_agent) == [0, 2]
    for a in (0, 2):
        check_rows(by_agent[a], a, 0, 4)
        assert not by_agent[a].done_reached
        np.testing.assert_array_equal(by_agent[a].next_obs[0], obs_at(a, 4))
    for _ in range(2):
        drv.step(agents)  # agent 1 (restarted 4 steps ago) reaches the horizon
    assert out[-1].agent_id == 1 and len(out[-1]) == 4
    check_rows(out[-1], 1, 0, 4)
    assert reporter.get_stats_summaries(LENGTH).mean == 2


def test_agents_at_different_positions_subset_decides():
    """Agents that do not decide every step (not in the decision batch) keep their rows."""
    proc, out, _ = make_processor(horizon=3)
    drv = Driver(proc, [0, 1])
    drv.start([0, 1])
    drv.step([0, 1])
    # agent 1 is absent for a step: only agent 0 is pending and completed
    drv.step([0])
    assert out == []
    drv.step([0])  # agent 0 reaches 3 steps
    assert len(out) == 1 and out[0].agent_id == 0
    check_rows(out[0], 0, 0, 3)
    # agent 1 comes back: its pending action from t=1 is completed now
    drv.step([1])
    drv.step([1])
    assert len(out) == 2 and out[1].agent_id == 1
    check_rows(out[1], 1, 0, 3)


@pytest.mark.parametrize("str_dtype", [object, str])
def test_string_and_large_int_ids_appear_and_disappear(str_dtype):
    spec = make_spec()
    proc, out, reporter = make_processor(spec, horizon=50)
    ids = np.array(["red", "blue"], dtype=str_dtype)
    big = 2 ** 40 + 7
    # red and blue act; blue terminates and disappears; "green" appears
    proc.record_step(decision(ids, [obs_at(0, 0), obs_at(1, 0)], [0, 0]), no_terminal())
    proc.record_actions(decision(ids, [obs_at(0, 0), obs_at(1, 0)], [0, 0]), info([0, 1]))
    d = decision(np.array(["red", "green"], dtype=str_dtype), [obs_at(0, 1), obs_at(2, 0)], [1, 0])
    proc.record_step(d, terminal(np.array(["blue"], dtype=str_dtype), [obs_at(1, 1)], [5.0],
                                 [False]))
    assert len(out) == 1 and out[0].agent_id == "blue" and out[0].done_reached
    np.testing.assert_array_equal(out[0].rewards, [5.0])
    proc.record_actions(d, info([1, 0]))
    # large integer ids (a different array type) alongside
    dl = decision(np.array([big, 3], np.int64), [obs_at(3, 0), obs_at(4, 0)], [0, 0])
    proc.record_step(dl, no_terminal())
    proc.record_actions(dl, info([1, 1]))
    proc.record_step(no_decision(), terminal(
        np.array(["red", "green"], dtype=str_dtype), [obs_at(0, 2), obs_at(2, 1)], [2.0, 3.0],
        [True, False]))
    proc.record_step(no_decision(), terminal(np.array([big, 3], np.int64),
                                             [obs_at(3, 1), obs_at(4, 1)], [4.0, 6.0],
                                             [False, True]))
    by_agent = {t.agent_id: t for t in out}
    assert set(by_agent) == {"blue", "red", "green", big, 3}
    np.testing.assert_array_equal(by_agent["red"].rewards, [1.0, 2.0])
    np.testing.assert_array_equal(by_agent["red"].obs[0], [obs_at(0, 0), obs_at(0, 1)])
    np.testing.assert_array_equal(by_agent["red"].discrete_actions[:, 0], [0, 1])
    assert by_agent["red"].interrupted and not by_agent["green"].interrupted
    np.testing.assert_array_equal(by_agent["green"].rewards, [3.0])
    np.testing.assert_array_equal(by_agent[big].obs[0], [obs_at(3, 0)])
    np.testing.assert_array_equal(by_agent[big].next_obs[0], obs_at(3, 1))
    np.testing.assert_array_equal(by_agent[3].rewards, [6.0])
    assert by_agent[3].interrupted
    assert reporter.get_stats_summaries(REWARD).num == 5
    assert reporter.get_stats_summaries(REWARD).sum == pytest.approx(5 + 3 + 3 + 4 + 6)


def test_storage_grows_beyond_initial_slots_keeping_partial_trajectories():
    proc, out, _ = make_processor(horizon=4, initial_slots=2)
    first = [100, 101, 102]
    drv = Driver(proc, first + list(range(40)))
    drv.start(first)
    drv.step(first)  # the first agents hold 1 row each
    everyone = first + list(range(40))
    drv.step(first, joining=list(range(40)))  # growth while the first agents hold 2 rows
    assert out == []
    drv.step(everyone)
    drv.step(everyone)  # first agents reach 4 steps
    assert sorted(t.agent_id for t in out) == first
    for traj in out:
        check_rows(traj, traj.agent_id, 0, 4)
    drv.step(everyone)
    assert len(out) == 3
    drv.step(everyone)  # the 40 newcomers reach 4 steps
    newcomers = [t for t in out if t.agent_id not in first]
    assert sorted(t.agent_id for t in newcomers) == list(range(40))
    for traj in newcomers:
        check_rows(traj, traj.agent_id, 0, 4)
        np.testing.assert_array_equal(traj.next_obs[0], obs_at(traj.agent_id, 4))


def test_end_episodes_drops_partial_trajectories():
    proc, out, reporter = make_processor(horizon=3)
    drv = Driver(proc, [0])
    drv.start([0])
    drv.step([0])
    proc.end_episodes()
    drv.t[0] = 0
    drv.start([0])
    for _ in range(3):
        drv.step([0])
    assert len(out) == 1
    check_rows(out[0], 0, 0, 3)


# -- actions, masks ---------------------------------------------------------------------------
def test_action_masks_carried_into_trajectory():
    spec = make_spec(branches=(3, 2))
    proc, out, _ = make_processor(spec, horizon=3)
    masks = [np.array([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]], bool),
             np.array([[1, 1, 0, 1, 1], [1, 0, 0, 1, 0]], bool),
             np.array([[0, 0, 1, 0, 1], [1, 1, 1, 1, 1]], bool)]
    ids = [0, 1]
    for t in range(3):
        d = decision(ids, [obs_at(a, t) for a in ids], [t, t], mask=masks[t])
        proc.record_step(d, no_terminal())
        proc.record_actions(d, info([[t % 3, 1], [2, t % 2]]))
    proc.record_step(decision(ids, [obs_at(a, 3) for a in ids], [3, 3], mask=masks[0]),
                     no_terminal())
    assert len(out) == 2
    for traj in out:
        a = traj.agent_id
        assert traj.action_masks.shape == (3, 5) and traj.action_masks.dtype == bool
        np.testing.assert_array_equal(traj.action_masks, [m[a] for m in masks])
        assert traj.discrete_actions.shape == (3, 2)
    np.testing.assert_array_equal(out[0].discrete_actions, [[0, 1], [1, 1], [2, 1]])
    np.testing.assert_array_equal(out[1].discrete_actions, [[2, 0], [2, 1], [2, 0]])
    np.testing.assert_array_equal(out[0].rewards, [1, 2, 3])


@pytest.mark.parametrize("masked_before", [False, True])
def test_missing_action_mask_means_all_allowed(masked_before):
    spec = make_spec(branches=(3,))
    proc, out, _ = make_processor(spec, horizon=2)
    if masked_before:  # a masked trajectory first: its masks must not leak into the next one
        for t in range(2):
            d = decision([0], [obs_at(0, t)], [t], mask=[[1, 0, 0]])
            proc.record_step(d, no_terminal())
            proc.record_actions(d, info([0]))
    for t in range(2, 4):
        d = decision([0], [obs_at(0, t)], [t])
        proc.record_step(d, no_terminal())
        proc.record_actions(d, info([1]))
    proc.record_step(decision([0], [obs_at(0, 4)], [4]), no_terminal())
    assert len(out) == (2 if masked_before else 1)
    masks = out[-1].action_masks
    assert masks is None or masks.all()


def test_continuous_and_hybrid_actions_and_log_probs_copied():
    spec = make_spec(obs_shapes=((3,), (2, 2)), cont=2, branches=(4,))
    proc, out, _ = make_processor(spec, horizon=3)
    rng = np.random.default_rng(0)
    conts = rng.normal(size=(3, 2, 2)).astype(np.float32)  # (t, agent, dim)
    logps = rng.normal(size=(3, 2)).astype(np.float32)
    second = rng.normal(size=(4, 2, 2, 2)).astype(np.float32)  # (t, agent, 2, 2)
    for t in range(4):
        d = decision([10, 20], (np.stack([obs_at(1, t), obs_at(2, t)]), second[t]), [t, -t],
                     mask=np.ones((2, 4), bool))
        proc.record_step(d, no_terminal())
        if t < 3:
            ai = info([[t], [3 - t]], cont=conts[t].copy(), logp=logps[t].copy())
            proc.record_actions(d, ai)
            ai.action.continuous[:] = 99.0  # the caller's arrays are not kept by reference
            ai.log_probs[:] = 99.0
    by_agent = {t.agent_id: t for t in out}
    for k, a in enumerate((10, 20)):
        traj = by_agent[a]
        np.testing.assert_array_equal(traj.continuous_actions, conts[:, k])
        np.testing.assert_array_equal(traj.log_probs, logps[:, k])
        np.testing.assert_array_equal(traj.discrete_actions[:, 0],
                                      [0, 1, 2] if k == 0 else [3, 2, 1])
        assert traj.continuous_actions.dtype == np.float32
        assert len(traj.obs) == 2
        np.testing.assert_array_equal(traj.obs[1], second[:3, k])
        np.testing.assert_array_equal(traj.next_obs[1], second[3, k])
        np.testing.assert_array_equal(traj.rewards, [1, 2, 3] if k == 0 else [-1, -2, -3])


def test_next_obs_does_not_alias_step_arrays():
    proc, out, _ = make_processor(horizon=1)
    d0 = decision([0], [obs_at(0, 0)], [0])
    proc.record_step(d0, no_terminal())
    proc.record_actions(d0, info([1]))
    d1 = decision([0], [obs_at(0, 1)], [1])
    proc.record_step(d1, no_terminal())
    assert len(out) == 1
    d1.obs[0][:] = -1.0  # the environment writes its next observation into the same buffer
    np.testing.assert_array_equal(out[0].next_obs[0], obs_at(0, 1))


# -- Trajectory -------------------------------------------------------------------------------
def make_trajectory(done, interrupted, n=4):
    proc, out, _ = make_processor(make_spec(obs_shapes=((3,), (2,)), cont=1, branches=(2, 3)),
                                  horizon=n + 1 if done else n)
    for t in range(n):
        d = decision([9], ([obs_at(9, t)], [[t, -t]]), [t], mask=[[1, t % 2, 1, 0, 1]])
        proc.record_step(d, no_terminal())
        proc.record_actions(d, info([[t % 2, t % 3]], cont=[[t / 10]], logp=[-t]))
    if done:
        proc.record_step(no_decision(), terminal([9], ([obs_at(9, n)], [[n, -n]]), [n],
                                                 [interrupted]))
    else:
        proc.record_step(decision([9], ([obs_at(9, n)], [[n, -n]]), [n]), no_terminal())
    assert len(out) == 1
    return out[0]


@pytest.mark.parametrize("done,interrupted", [(True, False), (True, True), (False, False)])
def test_to_agentbuffer(done, interrupted):
    traj = make_trajectory(done, interrupted)
    n = len(traj)
    assert n == 4
    buf = traj.to_agentbuffer()
    assert len(buf) == n
    for key in (obs_key(0), obs_key(1), next_obs_key(0), next_obs_key(1),
                BufferKey.CONTINUOUS_ACTION, BufferKey.DISCRETE_ACTION, BufferKey.LOG_PROBS,
                BufferKey.ENVIRONMENT_REWARDS, BufferKey.DONE, BufferKey.INTERRUPTED,
                BufferKey.MASKS, BufferKey.ACTION_MASK, BufferKey.GROUP_ID,
                BufferKey.GROUP_REWARD):
        assert key in buf, key
    assert BufferKey.MEMORY not in buf
    for i in range(2):
        np.testing.assert_array_equal(buf[obs_key(i)], traj.obs[i])
        np.testing.assert_array_equal(buf[next_obs_key(i)][:-1], traj.obs[i][1:])
        np.testing.assert_array_equal(buf[next_obs_key(i)][-1], traj.next_obs[i])
    np.testing.assert_array_equal(buf[next_obs_key(0)][-1], obs_at(9, 4))
    np.testing.assert_array_equal(buf[next_obs_key(1)][-1], [4, -4])
    np.testing.assert_array_equal(buf[BufferKey.DONE], [0, 0, 0, float(done)])
    np.testing.assert_array_equal(buf[BufferKey.INTERRUPTED], [0, 0, 0, float(interrupted)])
    np.testing.assert_array_equal(buf[BufferKey.MASKS], np.ones(n))
    np.testing.assert_array_equal(buf[BufferKey.ENVIRONMENT_REWARDS], [1, 2, 3, 4])
    np.testing.assert_array_equal(buf[BufferKey.DISCRETE_ACTION], [[0, 0], [1, 1], [0, 2], [1, 0]])
    np.testing.assert_allclose(buf[BufferKey.CONTINUOUS_ACTION][:, 0], [0, .1, .2, .3], rtol=1e-6)
    np.testing.assert_array_equal(buf[BufferKey.LOG_PROBS], [0, -1, -2, -3])
    np.testing.assert_array_equal(buf[BufferKey.ACTION_MASK][:, 1], [0, 1, 0, 1])
    np.testing.assert_array_equal(buf[BufferKey.GROUP_ID], np.zeros(n))
    np.testing.assert_array_equal(buf[BufferKey.GROUP_REWARD], np.zeros(n))


def test_to_agentbuffer_single_step_trajectory():
    traj = make_trajectory(True, False, n=1)
    buf = traj.to_agentbuffer()
    assert len(buf) == 1
    np.testing.assert_array_equal(buf[next_obs_key(0)], [obs_at(9, 1)])
    np.testing.assert_array_equal(buf[BufferKey.DONE], [1.0])


@pytest.mark.parametrize("done,interrupted", [(True, True), (False, False)])
def test_steps_view_consistent_with_arrays(done, interrupted):
    traj = make_trajectory(done, interrupted)
    steps = traj.steps
    assert len(steps) == len(traj)
    for t, exp in enumerate(steps):
        assert isinstance(exp, AgentExperience)
        np.testing.assert_array_equal(exp.obs[0], traj.obs[0][t])
        np.testing.assert_array_equal(exp.obs[1], traj.obs[1][t])
        assert exp.reward == traj.rewards[t] == t + 1
        assert exp.log_prob == traj.log_probs[t]
        np.testing.assert_array_equal(exp.continuous_action, traj.continuous_actions[t])
        np.testing.assert_array_equal(exp.discrete_action, traj.discrete_actions[t])
        np.testing.assert_array_equal(exp.action_mask, traj.action_masks[t])
        last = t == len(traj) - 1
        assert exp.done == (done and last)
        assert exp.interrupted == (interrupted and last)
        assert exp.memory is None and exp.group_id == 0 and exp.group_reward == 0.0


def test_trajectory_without_masks():
    traj = Trajectory(obs=[np.zeros((2, 1), np.float32)], next_obs=[np.ones(1, np.float32)],
                      continuous_actions=np.zeros((2, 1), np.float32),
                      discrete_actions=np.zeros((2, 0), np.int64),
                      log_probs=np.zeros(2, np.float32), rewards=np.array([1.0, 2.0], np.float32),
                      action_masks=None, done_reached=False, interrupted=False, agent_id=0,
                      behavior_id="b")
    buf = traj.to_agentbuffer()
    assert BufferKey.ACTION_MASK not in buf
    assert all(s.action_mask is None for s in traj.steps)
    np.testing.assert_array_equal(buf[next_obs_key(0)], [[0.0], [1.0]])


def test_a_lost_part_drops_its_waiting_agents_and_its_ids_start_afresh():
    """Two parts (ids id * 2 + part): agents 0 and 2 of part 0, 1 of part 1. Agent 2 acted
    at t=0 and waits for its turn when part 0 is lost at t=2; agent 0, deciding then, is
    ended interrupted by the environment. The replacement's fresh agents 0 and 2 (the same
    ids) start new trajectories: agent 2's must not complete its lost life's pending row."""
    proc, out, _ = make_processor(horizon=10)
    proc.record_step(decision([0, 1, 2], np.stack([obs_at(a, 0) for a in (0, 1, 2)]),
                              [0.0] * 3), no_terminal())
    proc.record_actions(decision([0, 1, 2], np.stack([obs_at(a, 0) for a in (0, 1, 2)]),
                                 [0.0] * 3), info([0, 1, 0]))
    step1 = decision([0, 1], np.stack([obs_at(a, 1) for a in (0, 1)]),
                     [rew_at(0, 0), rew_at(1, 0)])
    proc.record_step(step1, no_terminal())
    proc.record_actions(step1, info([1, 0]))
    # part 0 lost: agent 0's episode ends interrupted at its last observation; the new life's
    # agents 0 and 2 decide beside part 1's agent 1
    fresh = decision([0, 1, 2], np.stack([obs_at(10, 0), obs_at(1, 2), obs_at(12, 0)]),
                     [0.0, rew_at(1, 1), 0.0])
    ended = terminal([0], obs_at(0, 1)[None], [0.0], [True])
    proc.drop_part(0, 2, keep=ended.agent_id)
    proc.record_step(fresh, ended)
    assert [(t.agent_id, len(t.rewards), t.interrupted) for t in out] == [(0, 2, True)]
    proc.record_actions(fresh, info([0, 1, 1]))
    proc.record_step(no_decision(), terminal([0, 1, 2], np.stack(
        [obs_at(10, 1), obs_at(1, 3), obs_at(12, 1)]), [5.0, 6.0, 7.0], [False] * 3))
    by_agent = {t.agent_id: t for t in out[1:]}
    assert len(by_agent[2].rewards) == 1 and by_agent[2].rewards[0] == 7.0
    np.testing.assert_array_equal(by_agent[2].obs[0][0], obs_at(12, 0))  # the new life's
    assert len(by_agent[0].rewards) == 1 and len(by_agent[1].rewards) == 3
