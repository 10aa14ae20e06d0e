"""Built-in 3DBall / 3DBallHard: specs, stepping, episode ends, learnability, Gymnasium."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import palaestra.envs.builtin  # noqa: F401  (registers palaestra/<name>-v0)
from palaestra.envs import ActionTuple, ObservationKind, make_environment
from palaestra.envs.builtin import AGENTS_PER_COPY, BUILTIN_ENVS
from palaestra.envs.builtin.ball3d import (HALF_SIZE, MAX_STEPS, MAX_TILT, START_OFFSET,
                                           START_TILT, Ball3DCore)


def cont(a):
    a = np.asarray(a, np.float32)
    return ActionTuple(a, np.zeros((len(a), 0), np.int64))


def act(env, actions):
    name = next(iter(env.behavior_specs))
    env.set_actions(name, cont(actions))
    env.step()
    return env.get_steps(name)


def local_pos(obs):
    """Ball position along the platform's own x' and z' axes, from a 3DBall observation
    (inverse of the world rotation R = Rz(rot_z) @ Rx(rot_x) used by the core)."""
    rz, rx = obs[:, 0].astype(np.float64), obs[:, 1].astype(np.float64)
    x, y, z = obs[:, 2], obs[:, 3], obs[:, 4]
    u = np.cos(rz) * x + np.sin(rz) * y
    yl = -np.sin(rz) * x + np.cos(rz) * y          # Rz^T
    w = -np.sin(rx) * yl + np.cos(rx) * z          # Rx^T
    return u, w


def controller(obs):
    """Hand-written PD control: tilt towards a target that pushes back against the ball's offset
    and velocity (rot_z > 0 rolls the ball towards -x, rot_x > 0 towards +z)."""
    target_z = 0.2 * obs[:, 2] + 0.1 * obs[:, 5]
    target_x = -(0.2 * obs[:, 4] + 0.1 * obs[:, 7])
    return np.clip(np.stack([3 * (target_z - obs[:, 0]), 3 * (target_x - obs[:, 1])], 1), -1, 1)


def flat_and_centred(core, vel=0.0):
    core.tilt[:] = 0.0
    core.pos[:] = 0.0
    core.vel[:] = vel


# -- specs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, size", [("3DBall", 8), ("3DBallHard", 5)])
def test_specs(name, size):
    assert name in BUILTIN_ENVS and AGENTS_PER_COPY[name] == 12
    env = make_environment(name, num_envs=2, seed=0)
    spec = env.behavior_specs[name]
    assert [o.shape for o in spec.observation_specs] == [(size,)]
    assert spec.observation_specs[0].kind == ObservationKind.VECTOR
    assert spec.action_spec.continuous_size == 2 and not spec.action_spec.is_discrete
    env.reset()
    decisions, terminal = env.get_steps(name)
    assert len(decisions) == 24 and len(terminal) == 0
    assert decisions.obs[0].shape == (24, size) and decisions.obs[0].dtype == np.float32


# -- stepping ---------------------------------------------------------------------------------
def test_three_copies_step_together_with_random_actions():
    env = make_environment("3DBall", num_envs=3, seed=0)
    env.reset()
    decisions, _ = env.get_steps("3DBall")
    assert len(decisions) == 36 and list(decisions.agent_id) == list(range(36))
    obs = decisions.obs[0]
    assert np.all(np.abs(obs[:, :2]) <= START_TILT + 1e-6) and np.all(obs[:, 5:] == 0)
    u, w = local_pos(obs)
    assert np.all(np.abs(u) <= START_OFFSET + 1e-5) and np.all(np.abs(w) <= START_OFFSET + 1e-5)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(60):
        decisions, terminal = act(env, rng.uniform(-1, 1, (36, 2)))
        assert len(decisions) == 36 and decisions.obs[0].shape == (36, 8)
        assert np.all(np.abs(decisions.obs[0][:, :2]) <= MAX_TILT + 1e-6)
        restarted = np.isin(decisions.agent_id, terminal.agent_id)
        assert np.all(decisions.reward[restarted] == 0)
        assert np.allclose(decisions.reward[~restarted], 0.1)
        assert np.all(terminal.reward == -1) and not terminal.interrupted.any()
        ended += len(terminal)
    assert ended > 36  # random tilting drops balls within tens of decisions


def test_same_seed_same_trajectory_other_seed_differs():
    def rollout(seed):
        env = make_environment("3DBall", num_envs=2, seed=seed)
        env.reset()
        rng = np.random.default_rng(5)
        out = [env.get_steps("3DBall")[0].obs[0]]
        for _ in range(80):
            decisions, terminal = act(env, rng.uniform(-1, 1, (24, 2)))
            out += [decisions.obs[0], decisions.reward, terminal.agent_id]
        return out

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_reset_agents_touches_only_masked_agents():
    core = Ball3DCore(6)
    core.seed(0)
    core.reset_agents(np.ones(6, bool))
    core.step(cont(np.full((6, 2), 0.5)))
    before = [core.tilt.copy(), core.pos.copy(), core.vel.copy(), core.steps.copy()]
    mask = np.array([True, False, True, False, False, False])
    core.reset_agents(mask)
    for old, new in zip(before, [core.tilt, core.pos, core.vel, core.steps]):
        assert np.array_equal(old[..., ~mask], new[..., ~mask])
        assert not np.array_equal(old[..., mask], new[..., mask])
    assert np.all(core.vel[:, mask] == 0) and np.all(core.steps[mask] == 0)


# -- physics and episode ends -----------------------------------------------------------------
def test_flat_platform_keeps_a_slowly_rolling_ball():
    core = Ball3DCore(4, max_steps=10_000)
    core.seed(0)
    core.reset_agents(np.ones(4, bool))
    flat_and_centred(core, vel=0.0)
    core.vel[:, 1] = [0.1, -0.1]  # agent 1 rolls: rolling resistance stops it within ~1 unit
    zero = cont(np.zeros((4, 2)))
    for _ in range(2000):
        reward, terminated, truncated = core.step(zero)
        assert not terminated.any() and not truncated.any()
        assert np.allclose(reward, 0.1)
    assert np.all(core.pos[:, [0, 2, 3]] == 0)
    assert 0.5 < np.abs(core.pos[:, 1]).max() < 1.0
    assert np.abs(core.vel[:, 1]).max() < 1e-3


def test_constantly_tilted_platform_drops_the_ball():
    env = make_environment("3DBall", num_envs=1, seed=1)
    env.reset()
    core = env.core
    first_end = {}
    for t in range(1, 40):
        before = core.steps.copy()
        decisions, terminal = act(env, np.tile([1.0, 0.0], (12, 1)))  # keep tilting about z
        for k, agent in enumerate(terminal.agent_id):
            assert terminal.reward[k] == -1 and not terminal.interrupted[k]
            final = terminal.obs[0][k:k + 1]
            assert final[0, 0] == pytest.approx(MAX_TILT, abs=1e-6)
            u, w = local_pos(final)
            assert u[0] < -HALF_SIZE and abs(w[0]) <= HALF_SIZE  # rolled off the low (-x) edge
            first_end.setdefault(agent, (t, before[agent] + 1))
            # the agent restarts in the same step: fresh state in its next decision
            i = int(np.flatnonzero(decisions.agent_id == agent)[0])
            assert decisions.reward[i] == 0
            restart = decisions.obs[0][i:i + 1]
            assert np.all(np.abs(restart[0, :2]) <= START_TILT + 1e-6)
            assert np.all(restart[0, 5:] == 0)
            assert np.all(np.abs(np.concatenate(local_pos(restart))) <= START_OFFSET + 1e-5)
            assert core.steps[agent] == 0
    assert sorted(first_end) == list(range(12))
    assert all(steps <= 20 for _, steps in first_end.values())


def test_episode_is_truncated_after_1000_decisions_with_a_score_of_100():
    assert MAX_STEPS == 1000
    env = make_environment("3DBall", num_envs=1, seed=0)
    env.reset()
    flat_and_centred(env.core)
    returns = np.zeros(12)
    zero = np.zeros((12, 2))
    for t in range(1, 1001):
        decisions, terminal = act(env, zero)
        if t < 1000:
            assert len(terminal) == 0
            returns += decisions.reward
    assert list(terminal.agent_id) == list(range(12))
    assert terminal.interrupted.all()
    returns += terminal.reward
    assert np.allclose(returns, 100.0, atol=1e-3)
    assert np.all(decisions.reward == 0) and np.all(env.core.steps == 0)


def test_max_steps_is_an_env_arg():
    env = make_environment("3DBall", env_args={"max_steps": 3}, num_envs=1, seed=0)
    env.reset()
    flat_and_centred(env.core)
    for _ in range(2):
        assert len(act(env, np.zeros((12, 2)))[1]) == 0
    assert act(env, np.zeros((12, 2)))[1].interrupted.all()


def test_hand_written_controller_outlasts_random_actions():
    def episode_lengths(policy, decisions_total=300):
        env = make_environment("3DBall", num_envs=2, seed=2)
        env.reset()
        rng = np.random.default_rng(0)
        obs = env.get_steps("3DBall")[0].obs[0]
        falls = 0
        for _ in range(decisions_total):
            decisions, terminal = act(env, policy(obs, rng))
            falls += int(np.count_nonzero(~terminal.interrupted))
            obs = decisions.obs[0]
        return 24 * decisions_total / max(falls, 1), falls

    random_len, random_falls = episode_lengths(lambda o, rng: rng.uniform(-1, 1, (len(o), 2)))
    ctrl_len, ctrl_falls = episode_lengths(lambda o, rng: controller(o))
    assert random_len < 30          # a random policy fails within tens of decisions
    assert ctrl_falls == 0          # the controller balances every ball for 300 decisions
    assert random_falls > 100


def test_hard_variant_is_3dball_without_velocity():
    full = make_environment("3DBall", num_envs=1, seed=7)
    hard = make_environment("3DBallHard", num_envs=1, seed=7)
    full.reset()
    hard.reset()
    rng = np.random.default_rng(0)
    for _ in range(10):
        a = rng.uniform(-1, 1, (12, 2))
        d_full, _ = act(full, a)
        d_hard, _ = act(hard, a)
        np.testing.assert_array_equal(d_full.obs[0][:, :5], d_hard.obs[0])


# -- Gymnasium --------------------------------------------------------------------------------
# The checker only warns that Box(-inf, inf) bounds are "probably too low/high": they are meant.
@pytest.mark.filterwarnings("ignore:.*A Box observation space m")
@pytest.mark.parametrize("name", ["3DBall", "3DBallHard"])
def test_gymnasium_env_checker_passes(name):
    env = gym.make(f"palaestra/{name}-v0")
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and reward in (0.1, -1.0)
    env.close()
