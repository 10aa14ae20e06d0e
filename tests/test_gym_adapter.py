"""`make_environment` and `GymnasiumEnv`: specs, stepping, episode ends, spaces and errors."""
from collections import OrderedDict

import gymnasium as gym
import numpy as np
import pytest

import envs_for_tests as E
from palaestra.envs import (ActionSpec, ActionTuple, ObservationKind, make_environment,
                            parse_env_args)
from palaestra.envs.gym_adapter import GymnasiumEnv
from palaestra.exception import EnvironmentSetupError


def discrete(*indices_per_agent):
    """ActionTuple of discrete actions, one row per agent."""
    disc = np.asarray(indices_per_agent, np.int64).reshape(len(indices_per_agent), -1)
    return ActionTuple(np.zeros((len(disc), 0), np.float32), disc)


def continuous(*rows):
    cont = np.asarray(rows, np.float32).reshape(len(rows), -1)
    return ActionTuple(cont, np.zeros((len(cont), 0), np.int64))


def act(env, actions):
    env.set_actions(next(iter(env.behavior_specs)), actions)
    env.step()
    return env.get_steps(next(iter(env.behavior_specs)))


def single(space_env, name="test"):
    """One copy of a SpaceEnv (the instance is returned too, to read what it received)."""
    env = GymnasiumEnv(lambda: space_env, 1, name)
    env.reset()
    return env, space_env


# -- CartPole ---------------------------------------------------------------------------------
def test_cartpole_behavior_spec():
    env = make_environment("CartPole-v1", num_envs=3, seed=0)
    specs = env.behavior_specs
    assert list(specs) == ["CartPole-v1"]
    spec = specs["CartPole-v1"]
    assert len(spec.observation_specs) == 1
    assert spec.observation_specs[0].shape == (4,)
    assert spec.observation_specs[0].kind == ObservationKind.VECTOR
    assert spec.action_spec.discrete_branches == (2,)
    assert spec.action_spec.continuous_size == 0
    env.close()


def test_cartpole_reset_and_step():
    env = make_environment("CartPole-v1", num_envs=3, seed=0)
    env.reset()
    decision, terminal = env.get_steps("CartPole-v1")
    assert len(decision) == 3 and len(terminal) == 0
    assert decision.agent_id.tolist() == [0, 1, 2]
    assert len(decision.obs) == 1 and decision.obs[0].shape == (3, 4)
    assert decision.obs[0].dtype == np.float32
    np.testing.assert_array_equal(decision.reward, np.zeros(3))
    assert decision.action_mask is None  # CartPole reports no mask: every action allowed
    # the three copies are seeded differently
    assert not np.allclose(decision.obs[0][0], decision.obs[0][1])
    first = decision.obs[0].copy()
    decision2, terminal2 = act(env, discrete(0, 1, 0))
    assert len(decision2) == 3 and len(terminal2) == 0
    np.testing.assert_array_equal(decision2.reward, np.ones(3))
    assert not np.allclose(decision2.obs[0], first)
    # CartPole: action 0 pushes left (velocity decreases), action 1 pushes right
    dv = decision2.obs[0][:, 1] - first[:, 1]
    assert dv[0] < 0 < dv[1] and dv[2] < 0
    with pytest.raises(RuntimeError):
        env.step()  # no actions set since the last step
    env.close()


def _rollout(seed, steps=50):
    env = make_environment("CartPole-v1", num_envs=3, seed=seed)
    spec = env.behavior_specs["CartPole-v1"]
    rng = np.random.default_rng(123)
    env.reset()
    seen, dones = [], 0
    for _ in range(steps):
        decision, terminal = env.get_steps("CartPole-v1")
        seen.append(decision.obs[0].copy())
        dones += len(terminal)
        env.set_actions("CartPole-v1", spec.action_spec.random_action(3, rng))
        env.step()
    env.close()
    return np.stack(seen), dones


def test_cartpole_determinism():
    a, dones_a = _rollout(seed=5)
    b, dones_b = _rollout(seed=5)
    c, _ = _rollout(seed=6)
    assert dones_a > 0  # 50 random steps end some episodes: auto-resets are deterministic too
    np.testing.assert_array_equal(a, b)
    assert dones_a == dones_b
    assert not np.allclose(a[0], c[0])
    assert not np.allclose(a, c)


def test_env_args_reach_gym_make():
    env = make_environment("CartPole-v1", {"max_episode_steps": 4}, num_envs=2, seed=1)
    env.reset()
    for t in range(4):
        decision, terminal = act(env, discrete(t % 2, (t + 1) % 2))
    assert terminal.agent_id.tolist() == [0, 1]
    assert terminal.interrupted.tolist() == [True, True]


# -- episode ends -----------------------------------------------------------------------------
def test_termination_vs_truncation_via_factory():
    E.reset_mixed_counter()
    env = make_environment("envs_for_tests:make_mixed", {"terminate_at": 3, "truncate_at": 5},
                           num_envs=4)
    name = "make_mixed"
    assert list(env.behavior_specs) == [name]
    env.reset()
    decision, terminal = env.get_steps(name)
    # copies 0, 2 terminate at t=3; copies 1, 3 are truncated (TimeLimit) at t=5
    np.testing.assert_array_equal(decision.obs[0][:, 1], [0, 1, 2, 3])
    for t in range(1, 3):
        decision, terminal = act(env, discrete(0, 0, 0, 0))
        assert len(terminal) == 0
        np.testing.assert_array_equal(decision.obs[0][:, 0], [t] * 4)
    decision, terminal = act(env, discrete(0, 0, 0, 0))  # t = 3
    assert terminal.agent_id.tolist() == [0, 2]
    assert terminal.interrupted.tolist() == [False, False]
    # the terminal observation is the final one (t=3, episode 0), not the reset one
    np.testing.assert_array_equal(terminal.obs[0], [[3, 0, 0], [3, 2, 0]])
    np.testing.assert_array_equal(terminal.reward, [3.0, 23.0])
    # the decision step of the same agents holds the reset observation and no reward
    np.testing.assert_array_equal(decision.obs[0][[0, 2]], [[0, 0, 1], [0, 2, 1]])
    np.testing.assert_array_equal(decision.reward, [0.0, 3.0 + 10, 0.0, 3.0 + 30])
    decision, terminal = act(env, discrete(0, 0, 0, 0))  # t = 4 (1 for copies 0, 2)
    assert len(terminal) == 0
    decision, terminal = act(env, discrete(0, 0, 0, 0))  # t = 5
    assert terminal.agent_id.tolist() == [1, 3]
    assert terminal.interrupted.tolist() == [True, True]
    np.testing.assert_array_equal(terminal.obs[0], [[5, 1, 0], [5, 3, 0]])
    np.testing.assert_array_equal(terminal.reward, [15.0, 35.0])
    np.testing.assert_array_equal(decision.obs[0][[1, 3]], [[0, 1, 1], [0, 3, 1]])
    np.testing.assert_array_equal(decision.obs[0][[0, 2]], [[2, 0, 1], [2, 2, 1]])
    decision, terminal = act(env, discrete(0, 0, 0, 0))  # t = 6: copies 0, 2 end episode 1
    assert terminal.agent_id.tolist() == [0, 2]
    np.testing.assert_array_equal(terminal.obs[0], [[3, 0, 1], [3, 2, 1]])
    # one step later the terminal batch is empty again
    decision, terminal = act(env, discrete(0, 0, 0, 0))
    assert len(terminal) == 0
    assert len(terminal.obs) == 1 and terminal.obs[0].shape == (0, 3)


def test_terminated_and_truncated_together_is_not_interrupted():
    made = iter([E.CountingEnv(terminate_at=2, truncate_at=2), E.CountingEnv(truncate_at=2)])
    env = GymnasiumEnv(lambda: next(made), 2, "both")
    env.reset()
    act(env, discrete(0, 0))
    _, terminal = act(env, discrete(0, 0))
    assert terminal.agent_id.tolist() == [0, 1]
    assert terminal.interrupted.tolist() == [False, True]


def test_terminal_obs_survives_env_reusing_its_buffer():
    env = GymnasiumEnv(E.InPlaceEnv, 1, "inplace")
    env.reset()
    act(env, discrete(0))
    decision, terminal = act(env, discrete(0))
    assert terminal.agent_id.tolist() == [0]
    np.testing.assert_array_equal(decision.obs[0], [[0, 100]])  # reset obs of episode 1
    np.testing.assert_array_equal(terminal.obs[0], [[2, 0]])  # final obs of episode 0


# -- spaces -----------------------------------------------------------------------------------
def test_dict_and_tuple_observations_become_leaves_in_order():
    space = gym.spaces.Dict(OrderedDict([
        ("pos", gym.spaces.Box(-1, 1, (2,), np.float32)),
        ("inner", gym.spaces.Tuple((gym.spaces.Discrete(3),
                                    gym.spaces.Box(0, 5, (2, 2), np.float32)))),
        ("flags", gym.spaces.MultiBinary(3)),
    ]))
    keys = list(space.spaces)  # Gymnasium decides the key order; palaestra must follow it

    def make_obs(t):
        return OrderedDict([
            ("pos", np.array([t, -t], np.float32) / 10),
            ("inner", (t % 3, np.arange(4, dtype=np.float32).reshape(2, 2) + t)),
            ("flags", np.array([1, 0, t % 2], np.int8)),
        ])

    expected_by_key = {
        "pos": [((2,), lambda t: np.array([t, -t]) / 10)],
        "inner": [((3,), lambda t: np.eye(3)[t % 3]),
                  ((4,), lambda t: np.arange(4) + t)],
        "flags": [((3,), lambda t: np.array([1, 0, t % 2]))],
    }
    expected = [e for k in keys for e in expected_by_key[k]]
    env, inner = single(E.SpaceEnv(space, gym.spaces.Discrete(2), make_obs=make_obs))
    specs = env.behavior_specs["test"].observation_specs
    assert [s.shape for s in specs] == [shape for shape, _ in expected]
    assert all(s.kind == ObservationKind.VECTOR for s in specs)
    assert len({s.name for s in specs}) == len(specs)
    for t in range(3):
        decision, _ = env.get_steps("test") if t == 0 else act(env, discrete(1))
        assert len(decision.obs) == len(expected)
        for got, (_, fn) in zip(decision.obs, expected):
            np.testing.assert_allclose(got[0], fn(t), rtol=1e-6)


def test_discrete_observation_is_one_hot_respecting_start():
    space = gym.spaces.Discrete(4, start=2)
    env, _ = single(E.SpaceEnv(space, gym.spaces.Discrete(2), make_obs=lambda t: 2 + t % 4))
    assert env.behavior_specs["test"].observation_specs[0].shape == (4,)
    for t in range(5):
        decision, _ = env.get_steps("test") if t == 0 else act(env, discrete(0))
        np.testing.assert_array_equal(decision.obs[0][0], np.eye(4)[t % 4])


def test_multidiscrete_observation_is_one_hot_per_part():
    space = gym.spaces.MultiDiscrete([2, 3])
    env, _ = single(E.SpaceEnv(space, gym.spaces.Discrete(2),
                               make_obs=lambda t: np.array([1, 2])))
    decision, _ = env.get_steps("test")
    np.testing.assert_array_equal(decision.obs[0][0], [0, 1, 0, 0, 1])


def test_visual_observation_scaled_to_unit_range():
    space = gym.spaces.Box(0, 255, (4, 5, 3), np.uint8)
    frame = np.arange(60, dtype=np.uint8).reshape(4, 5, 3) * 4
    env, _ = single(E.SpaceEnv(space, gym.spaces.Discrete(2), make_obs=lambda t: frame))
    spec = env.behavior_specs["test"].observation_specs[0]
    assert spec.kind == ObservationKind.VISUAL and spec.shape == (4, 5, 3)
    decision, _ = env.get_steps("test")
    obs = decision.obs[0]
    assert obs.shape == (1, 4, 5, 3) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[0], frame / 255.0, rtol=1e-6)
    assert obs.min() >= 0.0 and obs.max() <= 1.0
    # a float Box of the same shape is not an image: it is flattened into a vector
    fspace = gym.spaces.Box(0, 1, (4, 5, 3), np.float32)
    env2, _ = single(E.SpaceEnv(fspace, gym.spaces.Discrete(2)))
    spec2 = env2.behavior_specs["test"].observation_specs[0]
    assert spec2.kind == ObservationKind.VECTOR and spec2.shape == (60,)


def test_multidiscrete_actions_are_branches_offset_by_start():
    space = gym.spaces.MultiDiscrete([3, 4, 2], start=[1, -2, 5])
    env, inner = single(E.SpaceEnv(gym.spaces.Box(-1, 1, (1,), np.float32), space))
    assert env.behavior_specs["test"].action_spec == ActionSpec(0, (3, 4, 2))
    act(env, discrete([2, 0, 1]))
    act(env, discrete([0, 3, 0]))
    np.testing.assert_array_equal(inner.received[0], [3, -2, 6])
    np.testing.assert_array_equal(inner.received[1], [1, 1, 5])
    assert all(space.contains(np.asarray(a, space.dtype)) for a in inner.received)


def test_discrete_action_offset_by_start():
    space = gym.spaces.Discrete(3, start=-1)
    env, inner = single(E.SpaceEnv(gym.spaces.Box(-1, 1, (1,), np.float32), space))
    for a in range(3):
        act(env, discrete(a))
    assert inner.received == [-1, 0, 1]


def test_multibinary_action():
    space = gym.spaces.MultiBinary(3)
    env, inner = single(E.SpaceEnv(gym.spaces.Box(-1, 1, (1,), np.float32), space))
    assert env.behavior_specs["test"].action_spec.discrete_branches == (2, 2, 2)
    act(env, discrete([1, 0, 1]))
    act(env, discrete([0, 1, 1]))
    np.testing.assert_array_equal(inner.received[0], [1, 0, 1])
    np.testing.assert_array_equal(inner.received[1], [0, 1, 1])
    assert all(space.contains(a) for a in inner.received)


@pytest.mark.parametrize("low,high,cases", [
    (-2.0, 2.0, [(1.0, 2.0), (-1.0, -2.0), (0.0, 0.0), (0.5, 1.0)]),
    (0.0, 10.0, [(1.0, 10.0), (-1.0, 0.0), (0.0, 5.0), (0.5, 7.5)]),
])
def test_box_action_rescaled_to_bounds(low, high, cases):
    space = gym.spaces.Box(low, high, (1,), np.float32)
    env, inner = single(E.SpaceEnv(gym.spaces.Box(-1, 1, (1,), np.float32), space))
    assert env.behavior_specs["test"].action_spec == ActionSpec.create_continuous(1)
    for given, _ in cases:
        act(env, continuous([given]))
    got = [float(np.asarray(a).ravel()[0]) for a in inner.received]
    np.testing.assert_allclose(got, [want for _, want in cases], rtol=1e-6, atol=1e-6)


def test_box_action_per_dimension_bounds_and_batch():
    space = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32))
    made = [E.SpaceEnv(gym.spaces.Box(-1, 1, (1,), np.float32), space) for _ in range(2)]
    it = iter(made)
    env = GymnasiumEnv(lambda: next(it), 2, "box")
    env.reset()
    act(env, continuous([1.0, -1.0], [-0.5, 0.5]))
    np.testing.assert_allclose(made[0].received[0], [2.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(made[1].received[0], [-1.0, 7.5], atol=1e-6)
    assert made[0].received[0].dtype == np.float32 and made[0].received[0].shape == (2,)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_unbounded_box_action_passed_through():
    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    env, inner = single(E.SpaceEnv(gym.spaces.Box(-1, 1, (1,), np.float32), space))
    act(env, continuous([0.25, -3.0]))
    np.testing.assert_allclose(inner.received[0], [0.25, -3.0])


def test_box_action_with_2d_shape():
    space = gym.spaces.Box(-2.0, 2.0, (2, 2), np.float32)
    env, inner = single(E.SpaceEnv(gym.spaces.Box(-1, 1, (1,), np.float32), space))
    assert env.behavior_specs["test"].action_spec.continuous_size == 4
    act(env, continuous([1.0, -1.0, 0.0, 0.5]))
    np.testing.assert_allclose(inner.received[0], [[2.0, -2.0], [0.0, 1.0]])


def test_action_mask_from_info():
    masks = [np.array([1, 0, 1, 0], np.int8), np.array([0, 1, 1, 1], np.int8),
             np.array([1, 1, 0, 0], np.int8)]

    def info(t):
        return {"action_mask": masks[t % 3]}

    env, _ = single(E.SpaceEnv(gym.spaces.Box(-1, 1, (1,), np.float32), gym.spaces.Discrete(4),
                               make_info=info, episode_len=2))
    for t in range(4):  # the episode ends at t=2: the mask then comes from the reset's info
        decision, _ = env.get_steps("test") if t == 0 else act(env, discrete(0))
        assert decision.action_mask.dtype == bool and decision.action_mask.shape == (1, 4)
        np.testing.assert_array_equal(decision.action_mask[0], masks[t % 3].astype(bool))


def test_no_action_mask_for_continuous():
    env, _ = single(E.SpaceEnv(gym.spaces.Box(-1, 1, (1,), np.float32),
                               gym.spaces.Box(-1, 1, (1,), np.float32)))
    decision, _ = env.get_steps("test")
    assert decision.action_mask is None


# -- errors -----------------------------------------------------------------------------------
def test_unknown_gymnasium_id_suggests_close_ids():
    with pytest.raises(EnvironmentSetupError) as err:
        make_environment("CartPol-v1")
    msg = str(err.value)
    assert "CartPol-v1" in msg
    assert "CartPole-v1" in msg and "CartPole-v0" in msg


def test_unknown_id_without_close_match_has_no_suggestion():
    with pytest.raises(EnvironmentSetupError) as err:
        make_environment("Zzzqqqxxx-v9")
    assert "Zzzqqqxxx-v9" in str(err.value) and "Did you mean" not in str(err.value)


def test_unsupported_observation_space():
    with pytest.raises(EnvironmentSetupError) as err:
        make_environment("envs_for_tests:text_obs_env")
    msg = str(err.value)
    assert "Text" in msg
    for name in ("Box", "Discrete", "MultiBinary", "MultiDiscrete", "Dict", "Tuple"):
        assert name in msg


def test_unsupported_action_space():
    with pytest.raises(EnvironmentSetupError) as err:
        make_environment("envs_for_tests:graph_action_env")
    msg = str(err.value)
    assert "Graph" in msg
    for name in ("Box", "Discrete", "MultiDiscrete", "MultiBinary"):
        assert name in msg


def test_missing_module():
    with pytest.raises(EnvironmentSetupError) as err:
        make_environment("no_such_module_for_palaestra:factory")
    assert "no_such_module_for_palaestra" in str(err.value)
    assert "import" in str(err.value)


@pytest.mark.parametrize("attr", ["does_not_exist", "NOT_CALLABLE"])
def test_missing_or_non_callable_attribute(attr):
    with pytest.raises(EnvironmentSetupError) as err:
        make_environment(f"envs_for_tests:{attr}")
    assert attr in str(err.value) and "envs_for_tests" in str(err.value)


def test_no_env_given():
    for empty in (None, ""):
        with pytest.raises(EnvironmentSetupError) as err:
            make_environment(empty)
        assert "--env" in str(err.value)


def test_factory_exception_is_wrapped():
    with pytest.raises(EnvironmentSetupError) as err:
        make_environment("envs_for_tests:failing_factory")
    msg = str(err.value)
    assert "envs_for_tests:failing_factory" in msg
    assert "ValueError" in msg and "boom: simulator license missing" in msg
    assert isinstance(err.value.__cause__, ValueError)


def test_factory_returning_non_env():
    with pytest.raises(EnvironmentSetupError) as err:
        make_environment("envs_for_tests:not_an_env")
    assert "gymnasium.Env" in str(err.value) and "str" in str(err.value)


@pytest.mark.parametrize("env_args,expected", [
    ({"speed": 3, "name": "fast", "ratio": 0.5},
     {"speed": 3, "name": "fast", "ratio": 0.5}),
    (["speed=3", "name=fast", "ratio=0.5", "flag=true", "none=null", "--dash-key=[1, 2]"],
     {"speed": 3, "name": "fast", "ratio": 0.5, "flag": True, "none": None, "dash_key": [1, 2]}),
])
def test_env_args_reach_factory(env_args, expected):
    E.RECEIVED_KWARGS.clear()
    env = make_environment("envs_for_tests:record_kwargs", env_args, num_envs=3)
    assert list(env.behavior_specs) == ["record_kwargs"]
    assert len(env.envs) == 3
    assert E.RECEIVED_KWARGS == [expected] * 3  # every copy gets the same arguments


def test_env_args_malformed_entry():
    with pytest.raises(EnvironmentSetupError) as err:
        parse_env_args(["speed"])
    assert "speed" in str(err.value) and "key=value" in str(err.value)
    assert parse_env_args(None) == {}


def test_env_args_exponent_float():
    assert parse_env_args(["lr=1e-3"]) == {"lr": 1e-3}
