"""The built-in Pyramids scene (sparse reward): layout, spec and observations, the switch and the
pyramid it spawns, step cost, episode ends, per-agent resets, independence of the vectorised
agents, seeding, a scripted policy that always solves it, frames and the Gymnasium view."""
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from palaestra.envs import ObservationKind, make_environment
from palaestra.envs.builtin import AGENTS_PER_COPY, BUILTIN_ENVS
from palaestra.envs.builtin.pyramids import NO_PYRAMID, PyramidsCore
from helpers import assert_seeded, discrete_actions, step_behavior

STAY, UP, DOWN, LEFT, RIGHT = range(5)
DXY = {STAY: (0, 0), UP: (0, 1), DOWN: (0, -1), LEFT: (-1, 0), RIGHT: (1, 0)}
INF_BOX = "ignore:.*observation space (minimum|maximum) value is"  # vector obs are unbounded
SIDE = 17  # the default floor: 3 x 3 rooms of 5 x 5 cells


actions = discrete_actions


def act(env, acts):
    return step_behavior(env, "Pyramids", acts)


def cell(core, x, y):
    """The cell index of free floor position (x, y)."""
    (match,) = np.nonzero((core.cells == (x, y)).all(axis=1))[0]
    return int(match)


def place(core, agent, switch, switch_on=False, pyramid=NO_PYRAMID):
    """Put every agent in the given state; positions as (x, y)."""
    core.agent[:] = cell(core, *agent)
    core.switch[:] = cell(core, *switch)
    core.switch_on[:] = switch_on
    core.pyramid[:] = pyramid if pyramid == NO_PYRAMID else cell(core, *pyramid)


def bfs_from(free, target):
    """Moves to `target` (x, y) from every cell of the (side, side) `free` map; -1 = walls."""
    dist = -np.ones(free.shape, int)
    dist[target] = 0
    queue = deque([target])
    while queue:
        x, y = queue.popleft()
        for dx, dy in DXY.values():
            n = (x + dx, y + dy)
            if 0 <= n[0] < free.shape[0] and 0 <= n[1] < free.shape[1] and free[n] \
                    and dist[n] < 0:
                dist[n] = dist[x, y] + 1
                queue.append(n)
    return dist


def scripted(core, cache):
    """Walk along a shortest path to the switch while it is off, then to the pyramid; the
    paths are found here by breadth-first search over the layout, not by the core's table."""
    chosen = []
    for i in range(core.num_agents):
        goal = tuple(core.cells[core.switch[i] if not core.switch_on[i] else core.pyramid[i]])
        if goal not in cache:
            cache[goal] = bfs_from(core.free, goal)
        dist = cache[goal]
        x, y = core.cells[core.agent[i]]
        best = min((a for a in (UP, DOWN, LEFT, RIGHT)
                    if 0 <= x + DXY[a][0] < core.side and 0 <= y + DXY[a][1] < core.side
                    and dist[x + DXY[a][0], y + DXY[a][1]] >= 0),
                   key=lambda a: dist[x + DXY[a][0], y + DXY[a][1]])
        chosen.append(best)
    return actions(*chosen)


def test_registered_and_spec():
    assert BUILTIN_ENVS["Pyramids"] is PyramidsCore and AGENTS_PER_COPY["Pyramids"] == 16
    env = make_environment("Pyramids", num_envs=2, seed=0)
    spec = env.behavior_specs["Pyramids"]
    assert list(env.behavior_specs) == ["Pyramids"]
    assert [o.shape for o in spec.observation_specs] == [(2 * SIDE + 5,)]
    assert spec.observation_specs[0].kind == ObservationKind.VECTOR
    assert spec.action_spec.discrete_branches == (5,) and spec.action_spec.continuous_size == 0
    env.reset()
    decision, terminal = env.get_steps("Pyramids")
    assert len(decision) == 32 and len(terminal) == 0 and decision.action_mask is None
    obs = decision.obs[0]
    assert obs.shape == (32, 2 * SIDE + 5) and obs.dtype == np.float32
    assert (obs[:, :SIDE].sum(1) == 1).all() and (obs[:, SIDE:2 * SIDE].sum(1) == 1).all()
    assert (obs[:, 2 * SIDE] == 0).all() and (obs[:, 2 * SIDE + 3:] == 0).all()  # no pyramid
    assert np.abs(obs).max() <= 1.0


def test_layout_rooms_doorways_and_distances():
    core = PyramidsCore(1)
    assert core.side == SIDE and core.free.shape == (SIDE, SIDE)
    assert core.free.sum() == 9 * 25 + 12  # nine rooms of 5 x 5 and twelve doorways
    for wall in (5, 11):
        assert core.free[wall, :].sum() == 3 and core.free[:, wall].sum() == 3
        assert core.free[wall, [2, 8, 14]].all() and core.free[[2, 8, 14], wall].all()
    assert (core.distance >= 0).all()  # every free cell reaches every other
    start = cell(core, 0, 0)
    assert core.distance[start, cell(core, 4, 4)] == 8
    assert core.distance[start, cell(core, 6, 0)] == 7 + 1 + 2  # through the door (5, 2)
    assert core.max_steps == 500 and core.min_distance == 10
    assert core.step_reward == pytest.approx(-1 / 500)
    open_floor = PyramidsCore(1, rooms=1, room_size=6, min_distance=3)
    assert open_floor.side == 6 and open_floor.free.all()
    for bad in ({"rooms": 0}, {"room_size": 1}, {"max_steps": 0}, {"min_distance": 0},
                {"min_distance": 100, "spawn": "random"}, {"spawn": "anywhere"}):
        with pytest.raises(ValueError):
            PyramidsCore(1, **bad)


def test_observation_holds_position_switch_and_pyramid():
    core = PyramidsCore(1)
    place(core, agent=(3, 1), switch=(10, 16))
    obs = core.observe()[0][0]
    assert obs[:SIDE].argmax() == 3 and obs[SIDE:2 * SIDE].argmax() == 1
    assert obs[2 * SIDE] == 0.0
    np.testing.assert_allclose(obs[2 * SIDE + 1:], [7 / 16, 15 / 16, 0.0, 0.0], rtol=1e-6)
    place(core, agent=(3, 1), switch=(10, 16), switch_on=True, pyramid=(0, 4))
    obs = core.observe()[0][0]
    assert obs[2 * SIDE] == 1.0
    np.testing.assert_allclose(obs[2 * SIDE + 3:], [-3 / 16, 3 / 16], rtol=1e-6)


def test_random_spawn_places_the_switch_far_away_and_off():
    core = PyramidsCore(2000, spawn="random")
    core.seed(0)
    core.reset_agents(np.ones(2000, bool))
    assert (core.distance[core.agent, core.switch] >= 10).all()
    assert not core.switch_on.any() and (core.pyramid == NO_PYRAMID).all()
    assert len(np.unique(core.agent)) == len(core.cells)  # every cell can be a start


def test_fixed_spawn_keeps_switch_and_pyramid_in_far_corners():
    core = PyramidsCore(2000)
    assert core.spawn == "fixed"
    core.seed(0)
    core.reset_agents(np.ones(2000, bool))
    start = core.cells[core.agent]
    assert (start < 5).all()  # the bottom-left room
    assert len(np.unique(core.agent)) == 25  # any of its cells
    assert (core.cells[core.switch] == (16, 16)).all() and not core.switch_on.any()
    assert (core.pyramid == NO_PYRAMID).all()
    assert core.distance[core.agent, core.switch].min() == 26
    place(core, agent=(16, 15), switch=(16, 16))
    core.step(actions(*[UP] * 2000))
    assert core.switch_on.all() and (core.cells[core.pyramid] == (0, 16)).all()
    assert core.distance[core.switch[0], core.pyramid[0]] == 20
    small = PyramidsCore(3, rooms=1, room_size=3)  # one room: the corners of that room
    small.seed(0)
    small.reset_agents(np.ones(3, bool))
    assert (small.cells[small.switch] == (2, 2)).all()
    assert small.cells[small.fixed_pyramid].tolist() == [0, 2]


def test_random_switch_spawns_the_pyramid_far_from_the_agent():
    env = make_environment("Pyramids", {"spawn": "random"}, num_envs=1, seed=0)
    env.reset()
    core = env.core
    place(core, agent=(2, 2), switch=(3, 2))
    decision, terminal = act(env, actions(*[RIGHT] * 8 + [UP] * 8))
    pressed = np.arange(16) < 8
    assert len(terminal) == 0
    assert (core.switch_on == pressed).all()
    assert (core.pyramid[~pressed] == NO_PYRAMID).all()
    assert (core.distance[core.switch[pressed], core.pyramid[pressed]] >= 10).all()
    assert len(np.unique(core.pyramid[pressed])) > 1  # a random cell per agent
    assert decision.reward.tolist() == pytest.approx([-1 / 500] * 16)  # pressing pays nothing
    obs = decision.obs[0]
    assert (obs[pressed, 2 * SIDE] == 1).all() and (obs[~pressed, 2 * SIDE] == 0).all()
    offsets = (core.cells[core.pyramid[pressed]] - core.cells[core.agent[pressed]]) / 16
    np.testing.assert_allclose(obs[pressed, 2 * SIDE + 3:], offsets, rtol=1e-6)
    assert (obs[~pressed, 2 * SIDE + 3:] == 0).all()
    # stepping off and back on does not move the pyramid or turn anything off
    before = core.pyramid.copy()
    act(env, actions(*[LEFT] * 16))
    act(env, actions(*[RIGHT] * 16))
    assert (core.pyramid == before).all() and (core.switch_on == pressed).all()


def test_the_pyramid_pays_two_and_ends_the_episode_only_after_the_switch():
    env = make_environment("Pyramids", num_envs=1, seed=0)
    env.reset()
    core = env.core
    place(core, agent=(0, 0), switch=(16, 16), switch_on=True, pyramid=(1, 0))
    core.switch_on[8:] = False  # the second half: the switch is still off
    core.steps[:] = 7
    decision, terminal = act(env, actions(*[RIGHT] * 16))
    assert terminal.agent_id.tolist() == list(range(8))
    assert terminal.reward.tolist() == [2.0] * 8  # exactly +2, as ML-Agents' SetReward(2f)
    assert terminal.interrupted.tolist() == [False] * 8
    assert (terminal.obs[0][:, 1] == 1).all()  # the final observation: the agent at x = 1
    # the agents restarted; the others stand on that cell with nothing happening
    assert decision.reward.tolist() == pytest.approx([0.0] * 8 + [-1 / 500] * 8)
    assert core.steps.tolist() == [0] * 8 + [8] * 8
    assert not core.switch_on[:8].any() and (core.pyramid[:8] == NO_PYRAMID).all()
    assert (core.agent[8:] == cell(core, 1, 0)).all()


def test_step_cost_walls_and_truncation():
    env = make_environment("Pyramids", {"max_steps": 4}, num_envs=1, seed=0)
    env.reset()
    core = env.core
    assert core.step_reward == pytest.approx(-0.25)
    place(core, agent=(4, 0), switch=(16, 16))
    moves = [STAY, UP, DOWN, LEFT, RIGHT] + [RIGHT] * 11  # x = 5 at y = 0 is a wall
    for _ in range(3):
        decision, terminal = act(env, actions(*moves))
        assert len(terminal) == 0
        assert decision.reward.tolist() == pytest.approx([-0.25] * 16)
    assert core.cells[core.agent[:5]].tolist() == [[4, 0], [4, 3], [4, 0], [1, 0], [4, 0]]
    decision, terminal = act(env, actions(*moves))
    assert terminal.agent_id.tolist() == list(range(16))
    assert terminal.interrupted.all() and terminal.reward.tolist() == pytest.approx([-0.25] * 16)
    assert core.steps.tolist() == [0] * 16


def test_partial_reset_touches_only_the_masked_agents():
    core = PyramidsCore(6, spawn="random")
    core.seed(1)
    core.reset_agents(np.ones(6, bool))
    place(core, agent=(0, 0), switch=(16, 16), switch_on=True, pyramid=(8, 8))
    core.steps[:] = 9
    mask = np.array([True, False, True, False, False, True])
    core.reset_agents(mask)
    assert core.steps.tolist() == [0, 9, 0, 9, 9, 0]
    assert core.switch_on.tolist() == [False, True, False, True, True, False]
    assert (core.pyramid[mask] == NO_PYRAMID).all()
    assert (core.pyramid[~mask] == cell(core, 8, 8)).all()
    assert (core.agent[~mask] == cell(core, 0, 0)).all()
    assert (core.distance[core.agent[mask], core.switch[mask]] >= 10).all()


def test_vectorised_agents_are_independent():
    """Changing one agent's action changes nothing for the others; a batch steps as its agents
    would one at a time (no spawn this step, so no random draw)."""
    states = [((0, 0), (16, 16)), ((5, 2), (0, 16)), ((16, 16), (0, 0)), ((8, 11), (8, 0))]
    first = [RIGHT, LEFT, DOWN, UP]

    def batch(moves):
        core = PyramidsCore(4)
        for i, (a, s) in enumerate(states):
            core.agent[i], core.switch[i] = cell(core, *a), cell(core, *s)
        out = core.step(actions(*moves))
        return core, out

    core, (reward, terminated, truncated) = batch(first)
    other, _ = batch([RIGHT, UP, DOWN, UP])
    assert core.agent[[0, 2, 3]].tolist() == other.agent[[0, 2, 3]].tolist()
    assert core.agent[1] != other.agent[1]
    for i, ((a, s), move) in enumerate(zip(states, first)):
        single = PyramidsCore(1)
        single.agent[0], single.switch[0] = cell(single, *a), cell(single, *s)
        r, t, tr = single.step(actions(move))
        assert single.agent[0] == core.agent[i]
        assert (r[0], t[0], tr[0]) == (reward[i], terminated[i], truncated[i])
        np.testing.assert_array_equal(single.observe()[0][0], core.observe()[0][i])


@pytest.mark.parametrize("spawn", ["fixed", "random"])
def test_deterministic_for_a_seed(spawn):
    def rollout(seed):
        env = make_environment("Pyramids", {"max_steps": 30, "spawn": spawn}, num_envs=1,
                               seed=seed)
        env.reset()
        rng = np.random.default_rng(5)
        out = [env.get_steps("Pyramids")[0].obs[0].copy()]
        for _ in range(70):
            decision, terminal = act(env, actions(*rng.integers(0, 5, 16)))
            out += [decision.obs[0].copy(), decision.reward.copy(), terminal.agent_id.copy(),
                    terminal.reward.copy(), env.core.pyramid.copy()]
        return out

    assert_seeded(rollout)


@pytest.mark.parametrize("spawn", ["fixed", "random"])
def test_a_scripted_policy_solves_every_episode(spawn):
    env = make_environment("Pyramids", {"spawn": spawn}, num_envs=1, seed=2)
    env.reset()
    core = env.core
    returns, lengths = [], []
    total, steps, cache = np.zeros(16), np.zeros(16, int), {}
    for _ in range(150):
        decision, terminal = act(env, scripted(core, cache))
        total[decision.agent_id] += decision.reward
        steps += 1
        for agent, reward, interrupted in zip(terminal.agent_id, terminal.reward,
                                              terminal.interrupted):
            assert not interrupted and reward == 2.0
            returns.append(total[agent] + reward)
            lengths.append(steps[agent])
            total[agent], steps[agent] = 0.0, 0
    assert len(returns) >= 32
    # at least 2 * min_distance moves, far fewer than max_steps: return 2 - (n - 1) / 500
    assert min(lengths) >= 20 and max(lengths) < 100
    np.testing.assert_allclose(returns, [2 - (n - 1) / 500 for n in lengths], rtol=1e-5)


def test_random_play_never_pays_without_the_switch():
    env = make_environment("Pyramids", {"max_steps": 60}, num_envs=4, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(120):
        was_on = env.core.switch_on.copy()
        decision, terminal = act(env, actions(*rng.integers(0, 5, 64)))
        ended = terminal.agent_id[~terminal.interrupted]
        assert was_on[ended].all() and (terminal.reward[~terminal.interrupted] == 2.0).all()
        live = np.setdiff1d(decision.agent_id, terminal.agent_id)
        np.testing.assert_allclose(decision.reward[live], -1 / 60, rtol=1e-6)


def test_render_draws_the_floor_switch_pyramid_and_agent():
    env = make_environment("Pyramids", num_envs=1, seed=0, render_mode="rgb_array")
    env.reset()
    core = env.core
    place(core, agent=(0, 0), switch=(16, 16))
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (16 * SIDE, 16 * SIDE, 3)

    def has(colour):
        return (frame == np.asarray(colour, np.uint8)).all(-1).any()

    from palaestra.envs.builtin import pyramids
    assert has(pyramids.WALL) and has(pyramids.SWITCH_OFF) and has(pyramids.AGENT_COLOUR)
    assert not has(pyramids.PYRAMID_COLOUR) and not has(pyramids.SWITCH_ON)
    # the agent (0, 0) is drawn bottom left
    assert (frame[-16:, :16] == np.asarray(pyramids.AGENT_COLOUR, np.uint8)).all(-1).any()
    place(core, agent=(0, 0), switch=(16, 16), switch_on=True, pyramid=(8, 8))
    frame = env.render()
    assert has(pyramids.PYRAMID_COLOUR) and has(pyramids.SWITCH_ON)
    assert not has(pyramids.SWITCH_OFF)


@pytest.mark.filterwarnings(INF_BOX)
def test_gymnasium_view_passes_the_env_checker():
    env = gym.make("palaestra/Pyramids-v0")
    assert env.observation_space.shape == (2 * SIDE + 5,)
    assert env.action_space == gym.spaces.Discrete(5)
    check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    obs2, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, obs2)
    assert info == {}
    _, reward, terminated, truncated, _ = env.step(STAY)
    assert reward == pytest.approx(-1 / 500) and not terminated and not truncated
