"""The built-in DungeonEscape scene: specs, the vectorised step against a per-agent reference,
removal / key / escape / time-limit semantics of the BaseEnv, group ids and rewards, a random
smoke run, solvability by a scripted policy, and the PettingZoo view."""
import warnings

import gymnasium as gym
import numpy as np
import pytest

from palaestra.envs import ActionTuple, EnvironmentSetupError, make_environment
from palaestra.envs.builtin import BUILTIN_ENVS, is_multi_agent_builtin
from palaestra.envs.builtin.dungeon_escape import (OBS_SIZE, DungeonArenas, DungeonEscape,
                                                   parallel_env)

NAME = "DungeonEscape"
STAY, UP, DOWN, LEFT, RIGHT = range(5)
DELTA = {STAY: (0, 0), UP: (0, 1), DOWN: (0, -1), LEFT: (-1, 0), RIGHT: (1, 0)}


def disc(acts):
    a = np.asarray(acts, np.int64).reshape(-1, 1)
    return ActionTuple(np.zeros((len(a), 0), np.float32), a)


def act(env, acts):
    env.set_actions(NAME, disc(acts))
    env.step()
    return env.get_steps(NAME)


def greedy(obs):
    """Scripted policy from observations: go to the dragon, else to the key, else (holder) to
    the door; teammates of the holder stay."""
    tgt = np.where(obs[:, 4:5] > 0, obs[:, 2:4], np.where(
        obs[:, 7:8] > 0, obs[:, 5:7], np.where(obs[:, 8:9] > 0, obs[:, 10:12], 0.0)))
    dx, dy = tgt[:, 0], tgt[:, 1]
    a = np.where(np.abs(dx) >= np.abs(dy), np.where(dx > 0, RIGHT, LEFT),
                 np.where(dy > 0, UP, DOWN))
    return np.where(np.abs(dx) + np.abs(dy) < 1e-6, STAY, a)


def reference_step(sim, k, actions):
    """The rules for arena `k`, one agent at a time, on plain Python values (slow reference)."""
    pos = [tuple(p) for p in sim.pos[k].tolist()]
    alive, holder = sim.alive[k].tolist(), int(sim.holder[k])
    dragon, door = tuple(sim.dragon[k].tolist()), tuple(sim.door[k].tolist())
    dragon_alive, key_on_ground = bool(sim.dragon_alive[k]), bool(sim.key_on_ground[k])
    for i, a in enumerate(actions):
        x, y = pos[i][0] + DELTA[a][0], pos[i][1] + DELTA[a][1]
        if alive[i] and 0 <= x < sim.size and 0 <= y < sim.size and \
                (holder == i or (x, y) != door):
            pos[i] = (x, y)
    removed = [False] * len(pos)
    for i in range(len(pos)):
        if dragon_alive and alive[i] and pos[i] == dragon:
            removed[i], alive[i], dragon_alive, key_on_ground = True, False, False, True
    for i in range(len(pos)):
        if key_on_ground and alive[i] and pos[i] == dragon:
            holder, key_on_ground = i, False
    escaped = holder >= 0 and pos[holder] == door
    timed_out = sim.steps[k] + 1 >= sim.max_steps and not escaped
    return pos, alive, holder, dragon_alive, key_on_ground, removed, escaped, timed_out


def test_registered_and_spec():
    assert BUILTIN_ENVS[NAME] is DungeonEscape and is_multi_agent_builtin(NAME)
    assert not is_multi_agent_builtin("GridWorld")
    assert f"palaestra/{NAME}-v0" not in gym.registry
    env = make_environment(NAME, num_envs=4, seed=0)
    spec = env.behavior_specs[NAME]
    assert [o.shape for o in spec.observation_specs] == [(OBS_SIZE,)]
    assert spec.action_spec.discrete_branches == (5,) and not spec.action_spec.is_continuous
    env.reset()
    decision, terminal = env.get_steps(NAME)
    assert len(decision) == 12 and len(terminal) == 0
    assert terminal.group_id.dtype == np.int64 and terminal.group_reward.dtype == np.float32
    assert decision.agent_id.tolist() == list(range(12)) and decision.agent_id.dtype == np.int64
    assert decision.group_id.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert decision.group_id.dtype == np.int64 and decision.group_reward.dtype == np.float32
    assert not decision.group_reward.any() and not decision.reward.any()
    obs = decision.obs[0]
    assert obs.shape == (12, OBS_SIZE) and obs.dtype == np.float32
    assert obs.min() >= -1.0 and obs.max() <= 1.0 and decision.action_mask is None
    small = make_environment(NAME, env_args=["agents_per_group=2", "size=5"], num_envs=3)
    small.reset()
    assert len(small.get_steps(NAME)[0]) == 6 and small.sim.size == 5
    with pytest.raises(EnvironmentSetupError):
        make_environment(NAME, env_args={"no_such_arg": 1})
    with pytest.raises(ValueError):
        DungeonArenas(2, agents_per_group=1)


def test_episode_start_cells():
    sim = DungeonArenas(3000)
    sim.rng = np.random.default_rng(0)
    sim.reset_arenas(np.ones(3000, bool))
    top = sim.size - 1
    cell = lambda xy: xy[..., 1] * sim.size + xy[..., 0]  # noqa: E731
    door, dragon, agents = cell(sim.door), cell(sim.dragon), cell(sim.pos)
    on_border = (sim.door == 0) | (sim.door == top)
    assert on_border.any(axis=1).all()
    assert len(np.unique(door)) == 4 * top  # every border cell is used
    everything = np.concatenate([door[:, None], dragon[:, None], agents], axis=1)
    assert all(len(set(row)) == 5 for row in everything.tolist())
    assert sim.alive.all() and sim.dragon_alive.all() and (sim.holder == -1).all()


def test_vectorised_step_matches_reference():
    sim = DungeonArenas(32, size=5, max_steps=25)
    sim.rng = np.random.default_rng(1)
    sim.reset_arenas(np.ones(32, bool))
    rng = np.random.default_rng(2)
    events = np.zeros(3, int)
    for _ in range(400):
        actions = rng.integers(0, 5, (32, 3))
        expected = [reference_step(sim, k, actions[k].tolist()) for k in range(32)]
        out = sim.step(actions)
        for k, (pos, alive, holder, d_alive, k_ground, removed, esc, timed) in \
                enumerate(expected):
            assert [tuple(p) for p in sim.pos[k].tolist()] == pos
            assert sim.alive[k].tolist() == alive and sim.holder[k] == holder
            assert sim.dragon_alive[k] == d_alive and sim.key_on_ground[k] == k_ground
            assert out.removed[k].tolist() == removed
            assert out.escaped[k] == esc and out.timed_out[k] == timed
        events += [out.removed.sum(), out.escaped.sum(), out.timed_out.sum()]
        sim.reset_arenas(out.ended)
    assert (events > 10).all(), events  # removals, escapes and time-outs were all exercised


def test_scripted_episode_removal_key_escape():
    env = DungeonEscape(num_envs=2, seed=0)
    env.reset()
    # arena 0: dragon above agent 0, agent 1 below it, agent 2 just above the door (0, 3)
    env.sim.place(0, [(3, 2), (3, 1), (0, 4)], (3, 3), (0, 3))
    env.sim.place(1, [(6, 6), (6, 5), (5, 6)], (1, 1), (0, 3))
    stay = [STAY] * 3
    # agent 0 slays the dragon; agent 2 may not enter the door without the key
    decision, terminal = act(env, [UP, UP, DOWN] + stay)
    assert terminal.agent_id.tolist() == [0] and terminal.group_id.tolist() == [1]
    assert terminal.interrupted.tolist() == [False] and not terminal.reward.any()
    assert terminal.group_reward.tolist() == [0.0]
    final = terminal.obs[0][0]
    assert final[4] == 0 and final[7] == 1 and final[5] == final[6] == 0  # key at its feet
    assert decision.agent_id.tolist() == [1, 2, 3, 4, 5]
    assert env.sim.pos[0, 2].tolist() == [0, 4]
    with pytest.raises(ValueError):
        env.set_actions(NAME, disc([STAY] * 6))
    # agent 1 takes the key; the removed agent stays absent
    decision, terminal = act(env, [UP, STAY] + stay)
    assert len(terminal) == 0 and decision.agent_id.tolist() == [1, 2, 3, 4, 5]
    obs = decision.obs[0]
    assert obs[0, 8] == 1 and obs[0, 9] == 0 and obs[1, 8] == 0 and obs[1, 9] == 1
    assert obs[0, 7] == 0 and obs[2:, 9].sum() == 0
    # three steps left to the door: the group escapes on the third
    for _ in range(2):
        decision, terminal = act(env, [LEFT, STAY] + stay)
        assert len(terminal) == 0 and not decision.group_reward.any()
    decision, terminal = act(env, [LEFT, STAY] + stay)
    assert terminal.agent_id.tolist() == [1, 2] and terminal.group_id.tolist() == [1, 1]
    assert terminal.interrupted.tolist() == [False, False] and not terminal.reward.any()
    assert terminal.group_reward.tolist() == [1.0, 1.0]
    assert terminal.obs[0][0, 8] == 1 and terminal.obs[0][0, 10:12].tolist() == [0.0, 0.0]
    # arena 0 restarts at once with all its agents; arena 1 goes on untouched
    assert decision.agent_id.tolist() == list(range(6)) and not decision.group_reward.any()
    assert (decision.obs[0][:3, 12] == 1.0).all() and (decision.obs[0][:3, 4] == 1).all()
    assert env.sim.steps.tolist() == [0, 5] and env.sim.pos[1].tolist() == [[6, 6], [6, 5],
                                                                            [5, 6]]


def test_same_step_slayer_and_taker_and_time_penalty():
    env = DungeonEscape(num_envs=1, seed=0, time_penalty=0.01)
    env.reset()
    env.sim.place(0, [(2, 3), (4, 3), (6, 6)], (3, 3), (6, 0))
    decision, terminal = act(env, [RIGHT, LEFT, STAY])  # both reach the dragon together
    assert terminal.agent_id.tolist() == [0]  # the lower index slays it ...
    assert env.sim.holder[0] == 1 and not env.sim.key_on_ground[0]  # ... the other takes the key
    np.testing.assert_allclose(terminal.group_reward, [-0.01])
    np.testing.assert_allclose(decision.group_reward, [-0.01, -0.01])


def test_time_limit_interrupts_remaining_members():
    env = DungeonEscape(num_envs=2, seed=0, max_steps=4)
    env.reset()
    env.sim.place(0, [(3, 2), (0, 0), (1, 0)], (3, 3), (6, 3))
    env.sim.place(1, [(5, 5), (5, 4), (4, 5)], (1, 1), (0, 3))
    decision, terminal = act(env, [UP] + [STAY] * 5)
    assert terminal.agent_id.tolist() == [0] and decision.agent_id.tolist() == [1, 2, 3, 4, 5]
    for _ in range(2):
        decision, terminal = act(env, [STAY] * 5)
        assert len(terminal) == 0
    decision, terminal = act(env, [STAY] * 5)
    assert terminal.agent_id.tolist() == [1, 2, 3, 4, 5]
    assert terminal.interrupted.all() and not terminal.group_reward.any()
    assert terminal.group_id.tolist() == [1, 1, 2, 2, 2]
    assert (terminal.obs[0][:, 12] == 0).all()
    assert decision.agent_id.tolist() == list(range(6)) and (decision.obs[0][:, 12] == 1).all()


def test_random_smoke_64_arenas_and_determinism():
    def run(seed):
        env = make_environment(NAME, num_envs=64, seed=seed)
        env.reset()
        rng = np.random.default_rng(seed)
        absent = np.zeros(192, bool)  # removed and not yet back
        counts, trace = np.zeros(3, int), []
        decision, _ = env.get_steps(NAME)
        for _ in range(1000):
            decision, terminal = act(env, rng.integers(0, 5, len(decision)))
            ids, tids = decision.agent_id, terminal.agent_id
            assert (np.diff(ids) > 0).all() and (np.diff(tids) > 0).all()
            assert (decision.group_id == ids // 3 + 1).all()
            assert (terminal.group_id == tids // 3 + 1).all()
            assert not decision.reward.any() and not terminal.reward.any()
            assert not absent[tids].any()  # a removed agent is reported once
            group_ended = np.zeros(65, bool)
            group_ended[terminal.group_id[terminal.group_reward != 0]] = True
            group_ended[terminal.group_id[terminal.interrupted]] = True
            removed = tids[~terminal.interrupted & (terminal.group_reward == 0)]
            absent[removed] = True
            absent[group_ended[np.arange(192) // 3 + 1]] = False
            assert (~absent[ids]).all() and len(ids) == 192 - absent.sum()
            assert np.isin(terminal.group_reward, [0.0, 1.0]).all()
            assert decision.obs[0].min() >= -1 and decision.obs[0].max() <= 1
            counts += [len(removed), (terminal.group_reward == 1).sum(),
                       terminal.interrupted.sum()]
            trace.append(decision.obs[0][:4].copy())
        return counts, np.stack(trace)

    counts, trace = run(3)
    assert (counts > 0).all(), counts
    counts2, trace2 = run(3)
    np.testing.assert_array_equal(counts, counts2)
    np.testing.assert_array_equal(trace, trace2)


def test_scripted_policy_escapes():
    sim = DungeonArenas(256)
    sim.rng = np.random.default_rng(4)
    sim.reset_arenas(np.ones(256, bool))
    escaped = timed_out = 0
    for _ in range(120):
        out = sim.step(greedy(sim.observe()).reshape(256, 3))
        escaped, timed_out = escaped + out.escaped.sum(), timed_out + out.timed_out.sum()
        sim.reset_arenas(out.ended)
    assert escaped + timed_out > 1000 and escaped / (escaped + timed_out) > 0.95


@pytest.mark.filterwarnings("ignore:The old environment creation API:DeprecationWarning")
def test_pettingzoo_api():
    pytest.importorskip("pettingzoo")
    from pettingzoo import ParallelEnv
    from pettingzoo.test import parallel_api_test

    env = parallel_env()
    assert isinstance(env, ParallelEnv)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(env, num_cycles=200)
        parallel_api_test(parallel_env(agents_per_group=4, size=5, max_steps=30),
                          num_cycles=200)


def test_pettingzoo_episode():
    pytest.importorskip("pettingzoo")
    env = parallel_env(escape_reward=2.0)
    obs, infos = env.reset(seed=0)
    assert env.agents == ["agent_0", "agent_1", "agent_2"]
    assert all(env.observation_space(a).contains(o) for a, o in obs.items())
    assert infos["agent_1"] == {"group_reward": 0.0, "group_id": 1}
    env.sim.place(0, [(3, 2), (3, 1), (0, 4)], (3, 3), (0, 3))
    obs, rew, term, trunc, infos = env.step({"agent_0": UP, "agent_1": UP, "agent_2": STAY})
    assert term == {"agent_0": True, "agent_1": False, "agent_2": False}
    assert not any(trunc.values()) and env.agents == ["agent_1", "agent_2"]
    env.step({"agent_1": UP, "agent_2": STAY})
    for _ in range(2):
        env.step({"agent_1": LEFT, "agent_2": STAY})
    obs, rew, term, trunc, infos = env.step({"agent_1": LEFT})
    assert set(obs) == {"agent_1", "agent_2"} and rew == {"agent_1": 2.0, "agent_2": 2.0}
    assert all(term.values()) and not any(trunc.values()) and env.agents == []
    assert infos["agent_2"] == {"group_reward": 2.0, "group_id": 1}
