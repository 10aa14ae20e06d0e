"""The built-in Basic scene: spec, batched stepping, rewards, episode ends, Gymnasium view."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from palaestra.envs import ObservationKind, make_environment
from palaestra.envs.builtin import BUILTIN_ENVS
from palaestra.envs.builtin.basic import BasicCore
from palaestra.exception import EnvironmentSetupError
from helpers import discrete_actions, step_behavior

STAY, LEFT, RIGHT = 0, 1, 2
INF_BOX = "ignore:.*observation space (minimum|maximum) value is"  # vector obs are unbounded


actions = discrete_actions


def act(env, acts):
    return step_behavior(env, "Basic", acts)


def positions(obs):
    assert (obs.sum(axis=1) == 1).all()
    return obs.argmax(axis=1)


def test_registered_and_spec():
    assert BUILTIN_ENVS["Basic"] is BasicCore
    env = make_environment("Basic", num_envs=8, seed=0)
    spec = env.behavior_specs["Basic"]
    assert list(env.behavior_specs) == ["Basic"]
    assert [o.shape for o in spec.observation_specs] == [(20,)]
    assert spec.observation_specs[0].kind == ObservationKind.VECTOR
    assert spec.action_spec.discrete_branches == (3,)
    assert spec.action_spec.continuous_size == 0
    env.reset()
    decision, terminal = env.get_steps("Basic")
    assert len(decision) == 8 and len(terminal) == 0
    assert decision.agent_id.tolist() == list(range(8))
    assert decision.obs[0].shape == (8, 20) and decision.obs[0].dtype == np.float32
    assert positions(decision.obs[0]).tolist() == [10] * 8
    assert decision.action_mask is None
    assert (decision.reward == 0).all()


def test_large_goal_small_goal_and_staying_are_stepped_together():
    env = make_environment("Basic", num_envs=3, seed=0)
    env.reset()
    total = np.zeros(3)
    ends = {0: [], 1: [], 2: []}
    for t in range(1, 8):
        decision, terminal = act(env, actions(RIGHT, LEFT, STAY))
        total[decision.agent_id] += decision.reward
        for agent, reward, interrupted in zip(terminal.agent_id, terminal.reward,
                                              terminal.interrupted):
            total[agent] += reward
            ends[int(agent)].append((t, round(float(total[agent]), 4), bool(interrupted)))
            total[agent] = 0.0
        if t == 3:  # agent 1 reached the small goal and started again at 10
            assert terminal.agent_id.tolist() == [1]
            assert terminal.reward.tolist() == pytest.approx([0.09])
            assert positions(terminal.obs[0]).tolist() == [7]  # final observation kept
            assert positions(decision.obs[0]).tolist() == [13, 10, 10]
            assert decision.reward.tolist() == pytest.approx([-0.01, 0.0, -0.01])
    assert ends[0] == [(7, 0.93, False)]  # the optimal return
    assert ends[1] == [(3, 0.07, False), (6, 0.07, False)]
    assert ends[2] == []
    assert total[2] == pytest.approx(-0.07)
    # per-step cost without an end
    decision, terminal = act(env, actions(STAY, STAY, STAY))
    assert decision.reward.tolist() == pytest.approx([-0.01] * 3)


def test_step_cap_interrupts_and_env_args():
    env = make_environment("Basic", {"max_steps": 5}, num_envs=2, seed=0)
    env.reset()
    for move in (LEFT, LEFT, RIGHT, RIGHT):
        decision, terminal = act(env, actions(STAY, move))
        assert len(terminal) == 0
    decision, terminal = act(env, actions(STAY, RIGHT))  # step 5: cut at 10 and 11
    assert positions(terminal.obs[0]).tolist() == [10, 11]
    assert terminal.agent_id.tolist() == [0, 1]
    assert terminal.interrupted.tolist() == [True, True]
    assert terminal.reward.tolist() == pytest.approx([-0.01, -0.01])
    assert positions(decision.obs[0]).tolist() == [10, 10]
    # the default cap is 100
    core = BasicCore(1)
    core.reset_agents(np.ones(1, bool))
    for _ in range(99):
        assert core.step(actions(STAY))[2].tolist() == [False]
    assert core.step(actions(STAY))[2].tolist() == [True]
    with pytest.raises(EnvironmentSetupError):
        make_environment("Basic", {"no_such_arg": 1})


def test_corridor_ends_and_partial_reset():
    core = BasicCore(3)
    core.reset_agents(np.ones(3, bool))
    core.position[:] = [0, 19, 5]
    core.steps[:] = [4, 4, 4]
    reward, terminated, truncated = core.step(actions(LEFT, RIGHT, RIGHT))
    assert core.position.tolist() == [0, 19, 6]
    assert not terminated.any() and not truncated.any()
    core.reset_agents(np.array([False, True, False]))
    assert core.position.tolist() == [0, 10, 6]
    assert core.steps.tolist() == [5, 0, 5]


def test_deterministic_for_a_seed():
    def rollout(seed):
        env = make_environment("Basic", num_envs=4, seed=seed)
        env.reset()
        rng = np.random.default_rng(5)
        out = []
        for _ in range(60):
            decision, terminal = act(env, actions(*rng.integers(0, 3, 4)))
            out.append((decision.obs[0].copy(), decision.reward.copy(),
                        terminal.agent_id.copy(), terminal.reward.copy()))
        return out

    for a, b in zip(rollout(3), rollout(3)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.filterwarnings(INF_BOX)
def test_gymnasium_view_passes_the_env_checker():
    env = gym.make("palaestra/Basic-v0")
    assert env.observation_space.shape == (20,)
    assert env.action_space == gym.spaces.Discrete(3)
    check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    assert obs.argmax() == 10 and info == {}
    ret = 0.0
    for _ in range(7):
        obs, reward, terminated, truncated, _ = env.step(RIGHT)
        ret += reward
    assert terminated and not truncated and ret == pytest.approx(0.93)
