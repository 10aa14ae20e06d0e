"""Groups end to end in the agent processor: teammates' status per step, group rewards, an
agent removed before its group finishes, the group's episode ending for all, the group stat,
and the extrinsic signal adding the group reward."""
import numpy as np

from palaestra.agent_processor import AgentProcessor, teammates
from palaestra.buffer import BufferKey, group_obs_key
from palaestra.envs.base import (ActionSpec, BehaviorSpec, DecisionSteps, ObservationSpec,
                                 TerminalSteps)
from palaestra.optimizer import ExtrinsicRewardSignal
from palaestra.settings import RewardSignalSettings
from palaestra.stats import StatsReporter

from test_agent_processor import info

GROUP = "Environment/Group Cumulative Reward"


def test_teammates_lists_the_others_of_each_group_and_none_for_group_zero():
    groups = np.array([1, 1, 2, 0, 2, 1, 0])
    mates = teammates(groups)
    assert mates.shape == (7, 2)
    as_sets = [set(row[row >= 0].tolist()) for row in mates]
    assert as_sets == [{1, 5}, {0, 5}, {4}, set(), {2}, {0, 1}, set()]
    assert teammates(np.zeros(3, np.int64)).shape == (3, 0)


def _spec():
    return BehaviorSpec([ObservationSpec((2,))], ActionSpec(0, (3,)))


def _decision(ids, step, reward=0.0, group_reward=0.0):
    ids = np.asarray(ids)
    obs = np.stack([[a, step] for a in ids]).astype(np.float32)
    return DecisionSteps([obs], np.full(len(ids), reward, np.float32), ids,
                         group_id=np.full(len(ids), 7), group_reward=np.full(len(ids), group_reward,
                                                                           np.float32))


def _terminal(ids, step, group_reward=0.0, interrupted=False):
    ids = np.asarray(ids)
    obs = np.stack([[a, step] for a in ids]).astype(np.float32)
    return TerminalSteps([obs], np.zeros(len(ids), np.float32), np.full(len(ids), interrupted),
                         ids, group_id=np.full(len(ids), 7),
                         group_reward=np.full(len(ids), group_reward, np.float32))


def _act(proc, d):
    proc.record_actions(d, info(disc=(d.agent_id * 10 + d.obs[0][:, 1]).astype(np.int64) % 3))


def test_removed_agent_then_group_end():
    out = []
    reporter = StatsReporter("test", [])
    proc = AgentProcessor("beh", _spec(), 50, reporter, out.append)
    d = _decision([0, 1, 2], 0)
    _act(proc, d)
    # step 1: agent 2 is removed (gives itself up), 0 and 1 go on
    d = _decision([0, 1], 1)
    proc.record_step(d, _terminal([2], 1))
    assert len(out) == 1
    removed = out[0]
    assert removed.agent_id == 2 and removed.done_reached
    assert removed.all_group_dones_reached is False and not removed.group_done
    status = removed.group_status
    assert status.present.tolist() == [[True, True]]
    assert sorted(status.obs[0][0, :, 0].tolist()) == [0.0, 1.0]  # teammates' own obs at step 0
    # the group's value after it is read from the teammates' next observations
    assert removed.next_group_present.tolist() == [True, True]
    assert sorted(removed.next_group_obs[0][:, 0].tolist()) == [0.0, 1.0]
    assert removed.next_group_obs[0][0, 1] == 1.0  # observed after step 1
    _act(proc, d)
    # step 2: the group escapes, reward 1 for everyone left: the episode ends for all
    proc.record_step(_decision([0, 1, 2], 0), _terminal([0, 1], 2, group_reward=1.0))
    assert [t.agent_id for t in out[1:]] == [0, 1]
    for t in out[1:]:
        assert t.all_group_dones_reached and t.group_done
        assert t.group_rewards.tolist() == [0.0, 1.0]
        assert t.group_status.present[:, :].sum(1).tolist() == [2, 1]  # 2 left after step 0
        buf = t.to_agentbuffer()
        assert buf[group_obs_key(0)].shape == (2, 2, 2)
        assert buf[BufferKey.GROUP_PRESENT].shape == (2, 2)
        assert buf[BufferKey.GROUP_DISCRETE_ACTION].shape == (2, 2, 1)
    assert reporter.get_pending(GROUP) == [1.0, 1.0]  # not for the removed agent (ML-Agents)


def test_time_limit_is_interrupted_and_group_done():
    out = []
    proc = AgentProcessor("beh", _spec(), 50, StatsReporter("t", []), out.append)
    d = _decision([0, 1], 0)
    _act(proc, d)
    proc.record_step(_decision([0, 1], 0), _terminal([0, 1], 1, interrupted=True))
    assert all(t.interrupted and t.all_group_dones_reached for t in out)


def test_no_groups_means_no_group_work():
    out = []
    proc = AgentProcessor("beh", _spec(), 2, StatsReporter("t", []), out.append)
    for step in range(3):
        d = DecisionSteps([np.zeros((2, 2), np.float32)], np.zeros(2, np.float32),
                          np.arange(2))
        if step:
            proc.record_step(d, TerminalSteps([np.zeros((0, 2), np.float32)], np.zeros(0),
                                              np.zeros(0, bool), np.zeros(0, np.int64)))
        proc.record_actions(d, info(disc=[0, 1]))
    assert out and all(t.group_status is None and t.all_group_dones_reached is None
                       for t in out)
    assert BufferKey.GROUP_PRESENT not in out[0].to_agentbuffer()


def test_extrinsic_reward_adds_the_group_reward():
    out = []
    proc = AgentProcessor("beh", _spec(), 50, StatsReporter("t", []), out.append)
    _act(proc, _decision([0, 1], 0))
    proc.record_step(_decision([0, 1], 0), _terminal([0, 1], 1, group_reward=2.0))
    signal = ExtrinsicRewardSignal("extrinsic", RewardSignalSettings())
    np.testing.assert_allclose(signal.evaluate(out[0].to_agentbuffer()), [2.0])


def test_groupmate_rewards_are_recorded_and_added_for_poca_only():
    out = []
    proc = AgentProcessor("beh", _spec(), 50, StatsReporter("t", []), out.append)
    _act(proc, _decision([0, 1, 2], 0))
    d = _decision([0, 1, 2], 1)
    d.reward[:] = [1.0, 2.0, 4.0]
    none = TerminalSteps([np.zeros((0, 2), np.float32)], np.zeros(0, np.float32),
                         np.zeros(0, bool), np.zeros(0, np.int64))
    proc.record_step(d, none)
    _act(proc, d)
    proc.record_step(_decision([0, 1, 2], 0), _terminal([0, 1, 2], 2))
    by_agent = {t.agent_id: t for t in out}
    np.testing.assert_allclose(by_agent[0].groupmate_rewards, [6.0, 0.0])
    np.testing.assert_allclose(by_agent[2].groupmate_rewards, [3.0, 0.0])
    buffer = by_agent[0].to_agentbuffer()
    signal = ExtrinsicRewardSignal("extrinsic", RewardSignalSettings())
    np.testing.assert_allclose(signal.evaluate(buffer), [1.0, 0.0])  # PPO, SAC: own + group
    signal.add_groupmate_rewards = True  # what POCA's optimizer sets, as ML-Agents' POCA does
    np.testing.assert_allclose(signal.evaluate(buffer), [7.0, 0.0])
