"""The built-in GridWorld scene: spec, masks at walls, rewards, episode ends, visual variant,
determinism and the Gymnasium view."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from palaestra.envs import ObservationKind, make_environment
from palaestra.envs.builtin import BUILTIN_ENVS
from palaestra.envs.builtin.gridworld import GridWorldCore
from helpers import assert_seeded, discrete_actions, step_behavior

NOOP, UP, DOWN, LEFT, RIGHT = range(5)
DXY = {NOOP: (0, 0), UP: (0, 1), DOWN: (0, -1), LEFT: (-1, 0), RIGHT: (1, 0)}
INF_BOX = "ignore:.*observation space (minimum|maximum) value is"  # vector obs are unbounded


actions = discrete_actions


def act(env, acts):
    return step_behavior(env, "GridWorld", acts)


def cells(obs):
    """Vector observations (N, 6) -> integer (N, 3, 2): agent, goal, pit as (x, y)."""
    return np.rint(obs * 4).astype(int).reshape(-1, 3, 2)


def expected_mask(xy, size=5):
    x, y = xy
    return [True, y < size - 1, y > 0, x > 0, x < size - 1]


def place(env, agent, goal, pit):
    core = env.core
    core.agent[:] = agent
    core.goal[:] = goal
    core.pit[:] = pit


def test_registered_and_spec():
    assert BUILTIN_ENVS["GridWorld"] is GridWorldCore
    env = make_environment("GridWorld", num_envs=8, seed=0)
    spec = env.behavior_specs["GridWorld"]
    assert [o.shape for o in spec.observation_specs] == [(6,)]
    assert spec.observation_specs[0].kind == ObservationKind.VECTOR
    assert spec.action_spec.discrete_branches == (5,)
    env.reset()
    decision, terminal = env.get_steps("GridWorld")
    assert len(decision) == 8 and len(terminal) == 0
    obs = decision.obs[0]
    assert obs.shape == (8, 6) and obs.dtype == np.float32
    assert obs.min() >= 0.0 and obs.max() <= 1.0
    np.testing.assert_allclose(obs * 4, np.rint(obs * 4), atol=1e-6)
    assert decision.action_mask.shape == (8, 5) and decision.action_mask.dtype == bool


def test_three_distinct_cells_and_partial_reset():
    core = GridWorldCore(2000)
    core.seed(0)
    core.reset_agents(np.ones(2000, bool))
    a, g, p = core.agent, core.goal, core.pit
    assert not (a == g).all(1).any() and not (a == p).all(1).any() and \
        not (g == p).all(1).any()
    # every cell is used for every role
    for xy in (a, g, p):
        assert len(np.unique(xy[:, 0] * 5 + xy[:, 1])) == 25
    before = [x.copy() for x in (a, g, p)]
    core.steps[:] = 7
    mask = np.zeros(2000, bool)
    mask[::2] = True
    core.reset_agents(mask)
    for old, new in zip(before, (core.agent, core.goal, core.pit)):
        np.testing.assert_array_equal(old[1::2], new[1::2])
        assert (old[::2] != new[::2]).any()
    assert core.steps[::2].tolist() == [0] * 1000 and core.steps[1::2].tolist() == [7] * 1000


def test_masks_forbid_exactly_the_wall_moves():
    env = make_environment("GridWorld", num_envs=25, seed=0)
    env.reset()
    grid = np.array([(x, y) for x in range(5) for y in range(5)])
    env.core.agent[:] = grid
    decision, _ = env.get_steps("GridWorld")
    for xy, mask in zip(grid, decision.action_mask):
        assert mask.tolist() == expected_mask(xy), xy
    by_cell = {tuple(xy): m.tolist() for xy, m in zip(grid, decision.action_mask)}
    #                    noop  up     down   left   right
    assert by_cell[0, 0] == [True, True, False, False, True]
    assert by_cell[4, 4] == [True, False, True, True, False]
    assert by_cell[0, 4] == [True, False, True, False, True]
    assert by_cell[4, 0] == [True, True, False, True, False]
    assert by_cell[2, 0] == [True, True, False, True, True]
    assert by_cell[0, 2] == [True, True, True, False, True]
    assert by_cell[2, 2] == [True] * 5


def test_masks_match_positions_through_random_play_and_resets():
    """Random allowed moves for 16 agents over many episodes: the mask always matches the
    observed position, and an allowed move always moves the agent by exactly one cell."""
    env = make_environment("GridWorld", num_envs=16, seed=1)
    env.reset()
    rng = np.random.default_rng(0)
    decision, _ = env.get_steps("GridWorld")
    episodes = 0
    for _ in range(300):
        pos = cells(decision.obs[0])
        for xy, mask in zip(pos[:, 0], decision.action_mask):
            assert mask.tolist() == expected_mask(xy)
        choice = np.array([rng.choice(np.nonzero(m)[0]) for m in decision.action_mask])
        decision, terminal = act(env, actions(*choice))
        after = cells(decision.obs[0]).copy()
        done = terminal.agent_id
        if len(done):
            episodes += len(done)
            after[done] = cells(terminal.obs[0])
        moved = after[:, 0] - pos[:, 0]
        assert moved.tolist() == [list(DXY[int(a)]) for a in choice]
        np.testing.assert_array_equal(after[:, 1:], pos[:, 1:])  # goal and pit stay put
    assert episodes > 50


def test_rewards_and_episode_ends():
    env = make_environment("GridWorld", num_envs=5, seed=0)
    env.reset()
    place(env, agent=[[1, 1], [1, 1], [1, 1], [0, 0], [2, 2]],
          goal=[[2, 1], [3, 3], [3, 3], [4, 4], [4, 4]],
          pit=[[3, 3], [1, 2], [0, 4], [0, 4], [0, 4]])
    decision, terminal = act(env, actions(RIGHT, UP, NOOP, LEFT, DOWN))
    assert terminal.agent_id.tolist() == [0, 1]
    assert terminal.reward.tolist() == pytest.approx([1.0, -1.0])
    assert terminal.interrupted.tolist() == [False, False]
    assert cells(terminal.obs[0])[:, 0].tolist() == [[2, 1], [1, 2]]
    assert decision.reward.tolist() == pytest.approx([0.0, 0.0, -0.01, -0.01, -0.01])
    # a masked move taken anyway (LEFT at x = 0) leaves the agent where it was
    assert cells(decision.obs[0])[3, 0].tolist() == [0, 0]
    assert cells(decision.obs[0])[4, 0].tolist() == [2, 1]


def test_step_cap_interrupts():
    env = make_environment("GridWorld", {"max_steps": 3}, num_envs=2, seed=0)
    env.reset()
    place(env, agent=[[0, 0], [0, 0]], goal=[[4, 4], [4, 4]], pit=[[2, 2], [2, 2]])
    for _ in range(2):
        assert len(act(env, actions(NOOP, UP))[1]) == 0
    decision, terminal = act(env, actions(NOOP, UP))
    assert terminal.agent_id.tolist() == [0, 1]
    assert terminal.interrupted.tolist() == [True, True]
    assert terminal.reward.tolist() == pytest.approx([-0.01, -0.01])
    assert cells(terminal.obs[0])[:, 0].tolist() == [[0, 0], [0, 3]]
    assert env.core.steps.tolist() == [0, 0]
    assert GridWorldCore(1).max_steps == 50


def test_deterministic_for_a_seed():
    def rollout(seed):
        env = make_environment("GridWorld", num_envs=8, seed=seed)
        env.reset()
        rng = np.random.default_rng(5)
        out = [env.get_steps("GridWorld")[0].obs[0].copy()]
        for _ in range(100):
            decision, terminal = act(env, actions(*rng.integers(0, 5, 8)))
            out += [decision.obs[0].copy(), decision.reward.copy(), decision.action_mask.copy(),
                    terminal.agent_id.copy(), terminal.reward.copy()]
        return out

    assert_seeded(rollout)


def test_visual_variant():
    env = make_environment("GridWorld", {"visual": True}, num_envs=4, seed=0)
    spec = env.behavior_specs["GridWorld"]
    assert len(spec.observation_specs) == 1
    assert spec.observation_specs[0].shape == (20, 20, 3)
    assert spec.observation_specs[0].kind == ObservationKind.VISUAL
    env.reset()
    place(env, agent=[[0, 0]] * 4, goal=[[4, 4]] * 4, pit=[[1, 3]] * 4)
    decision, _ = env.get_steps("GridWorld")
    img = decision.obs[0]
    assert img.shape == (4, 20, 20, 3) and img.dtype == np.float32
    assert set(np.unique(img).tolist()) == {0.0, 1.0}
    assert img.sum(axis=(1, 2)).tolist() == [[16.0, 16.0, 16.0]] * 4  # one 4x4 cell each
    # row 0 is the top (y = 4), column 0 is x = 0
    assert (img[:, 16:20, 0:4, 0] == 1).all()    # agent at (0, 0): bottom left
    assert (img[:, 0:4, 16:20, 1] == 1).all()    # goal at (4, 4): top right
    assert (img[:, 4:8, 4:8, 2] == 1).all()      # pit at (1, 3)
    assert decision.action_mask[0].tolist() == [True, True, False, False, True]
    decision, _ = act(env, actions(RIGHT, UP, NOOP, NOOP))
    assert (decision.obs[0][0, 16:20, 4:8, 0] == 1).all()
    assert (decision.obs[0][1, 12:16, 0:4, 0] == 1).all()
    small = make_environment("GridWorld", {"visual": True, "cell_pixels": 1}, num_envs=2)
    assert small.behavior_specs["GridWorld"].observation_specs[0].shape == (5, 5, 3)
    small.reset()
    assert small.get_steps("GridWorld")[0].obs[0].sum(axis=(1, 2)).tolist() == [[1, 1, 1]] * 2


@pytest.mark.filterwarnings(INF_BOX)
@pytest.mark.parametrize("kwargs", [{}, {"visual": True}], ids=["vector", "visual"])
def test_gymnasium_view_passes_the_env_checker(kwargs):
    env = gym.make("palaestra/GridWorld-v0", **kwargs)
    assert env.action_space == gym.spaces.Discrete(5)
    if kwargs:
        assert env.observation_space == gym.spaces.Box(0, 255, (20, 20, 3), np.uint8)
    else:
        assert env.observation_space.shape == (6,)
    check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    obs2, info2 = env.reset(seed=0)
    np.testing.assert_array_equal(obs, obs2)
    assert info["action_mask"].dtype == np.int8 and info["action_mask"].shape == (5,)
    core = env.unwrapped.core
    assert info["action_mask"].tolist() == [int(m) for m in expected_mask(core.agent[0])]
    allowed = np.nonzero(info["action_mask"])[0]
    _, reward, terminated, truncated, info = env.step(int(allowed[-1]))
    assert reward == pytest.approx(1.0 if terminated and reward > 0 else
                                   -1.0 if terminated else -0.01)
    if not terminated:
        assert info["action_mask"].tolist() == [int(m) for m in expected_mask(core.agent[0])]
