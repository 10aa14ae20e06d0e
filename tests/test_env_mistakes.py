"""A user's environment that breaks the Gymnasium API or its own spaces stops the run with an
error that names the environment, the copy and what was expected, instead of a numpy traceback
or, worse, NaN weights."""
import os
import sys

import gymnasium as gym
import numpy as np
import pytest

import envs_for_tests as E
from palaestra.envs import ActionTuple, ObservationKind, make_environment
from palaestra.envs.gym_adapter import GymnasiumEnv
from palaestra.exception import EnvironmentSetupError

BOX3 = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
TWO = gym.spaces.Discrete(2)


class RewardEnv(E.SpaceEnv):
    """SpaceEnv whose step reward is `make_reward(t)`."""

    def __init__(self, make_reward, **kwargs):
        super().__init__(kwargs.pop("observation_space", BOX3), kwargs.pop("action_space", TWO),
                         **kwargs)
        self.make_reward = make_reward

    def step(self, action):
        obs, _, done, trunc, info = super().step(action)
        return obs, self.make_reward(self.t), done, trunc, info


def stepped(make, n=2, steps=3, name="mine"):
    env = GymnasiumEnv(make, n, name)
    env.reset()
    for _ in range(steps):
        env.set_actions(name, ActionTuple(np.zeros((n, 0), np.float32), np.zeros((n, 1), np.int64)))
        env.step()
    return env


def error(make, **kwargs):
    with pytest.raises(EnvironmentSetupError) as info:
        stepped(make, **kwargs)
    return str(info.value)


def test_a_nan_observation_stops_the_run_naming_env_copy_and_values():
    def obs(t):
        return np.array([np.nan if t == 2 else 0.1, 0.2, 0.3], np.float32)
    msg = error(lambda: E.SpaceEnv(BOX3, TWO, make_obs=obs))
    assert "mine: step() returned a non-finite observation obs (NaN or inf) in copy 0" in msg
    assert "nan" in msg


def test_an_infinite_first_observation_stops_the_run_at_reset():
    msg = error(lambda: E.SpaceEnv(BOX3, TWO, make_obs=lambda t: np.full(3, np.inf, np.float32)))
    assert "reset() returned a non-finite observation" in msg


def test_a_nan_in_an_episodes_last_observation_is_caught_too():
    class NanAtTheEnd(E.SpaceEnv):
        def step(self, action):
            obs, reward, done, trunc, info = super().step(action)
            return np.full(3, np.nan, np.float32), reward, done, trunc, info
    msg = error(lambda: NanAtTheEnd(BOX3, TWO, make_obs=lambda t: np.zeros(3, np.float32),
                                    episode_len=1), n=1)
    assert "an episode's last step" in msg


@pytest.mark.parametrize("reward, allowed", [
    (np.float32(1.5), True), (2, True), (np.array(0.5), True), (np.array([0.5]), True),
    (True, True), (None, False), (np.nan, False), ([1.0, 2.0], False), (np.inf, False)])
def test_rewards_must_be_one_finite_number(reward, allowed):
    make = lambda: RewardEnv(lambda t: reward)  # noqa: E731
    if allowed:
        env = stepped(make)
        assert env.get_steps("mine")[0].reward.tolist() == [float(np.asarray(reward, float).reshape(()))] * 2
    else:
        msg = error(make)
        assert "mine copy 0: step() returned reward" in msg and "one finite number" in msg


def test_a_bad_reward_at_an_episodes_end_names_its_copy():
    make = lambda: RewardEnv(lambda t: None, episode_len=1)  # noqa: E731
    msg = error(make, n=3)
    assert "mine copy 0: step() returned reward None" in msg


def test_old_gym_api_is_named():
    class OldApi(E.SpaceEnv):
        def reset(self, *, seed=None, options=None):
            return np.zeros(3, np.float32)
    msg = error(lambda: OldApi(BOX3, TWO))
    assert "reset() must return (observation, info) as in the Gymnasium API" in msg

    class OldStep(E.SpaceEnv):
        def step(self, action):
            return np.zeros(3, np.float32), 0.0, False, {}
    msg = error(lambda: OldStep(BOX3, TWO))
    assert "step() must return (observation, reward, terminated, truncated, info)" in msg
    assert "got 4 values" in msg


def test_an_observation_that_does_not_fit_the_space_is_named():
    msg = error(lambda: E.SpaceEnv(BOX3, TWO, make_obs=lambda t: np.zeros(5, np.float32)))
    assert "mine copy 0: reset() returned an observation of shape (5,)" in msg
    assert "Box(-1.0, 1.0, (3,), float32)" in msg

    later = lambda t: np.zeros(3 if t < 2 else 4, np.float32)  # noqa: E731
    msg = error(lambda: E.SpaceEnv(BOX3, TWO, make_obs=later))
    assert "mine copy 0: step() returned an observation of shape (4,)" in msg


@pytest.mark.parametrize("value", [5, -1])
def test_a_discrete_observation_outside_its_space_is_named(value):
    space = gym.spaces.Discrete(5)
    msg = error(lambda: E.SpaceEnv(space, TWO, make_obs=lambda t: value if t == 1 else 0))
    assert "mine copy 0: step() returned" in msg and "outside its space Discrete(5)" in msg


def test_a_multidiscrete_observation_outside_its_space_is_named():
    space = gym.spaces.MultiDiscrete([2, 3])
    msg = error(lambda: E.SpaceEnv(space, TWO, make_obs=lambda t: np.array([1, 3])))
    assert "outside its space MultiDiscrete([2 3])" in msg


def test_an_action_mask_of_the_wrong_length_is_named():
    make = lambda: E.SpaceEnv(BOX3, gym.spaces.Discrete(3),  # noqa: E731
                              make_info=lambda t: {"action_mask": np.ones(2, np.int8)})
    msg = error(make)
    assert "info['action_mask'] has 2 entries, the action space Discrete(3) needs 3" in msg


def test_copies_must_be_new_objects_with_the_same_spaces():
    one = E.SpaceEnv(BOX3, TWO)
    with pytest.raises(EnvironmentSetupError, match="returned the same environment object"):
        GymnasiumEnv(lambda: one, 3, "mine")
    spaces = iter([BOX3, gym.spaces.Box(-1.0, 1.0, (4,), np.float32)])
    with pytest.raises(EnvironmentSetupError, match="copy 1 of mine has observation_space"):
        GymnasiumEnv(lambda: E.SpaceEnv(next(spaces), TWO), 2, "mine")


def test_an_observation_without_elements_is_refused_at_setup():
    with pytest.raises(EnvironmentSetupError, match=r"has no elements"):
        GymnasiumEnv(lambda: E.SpaceEnv(gym.spaces.Box(0, 1, (0,), np.float32), TWO), 1, "m")


def test_channels_first_images_are_read_as_images():
    space = gym.spaces.Box(0, 255, (3, 32, 24), np.uint8)
    frame = np.zeros((3, 32, 24), np.uint8)
    frame[1] = 255  # the green channel
    env = GymnasiumEnv(lambda: E.SpaceEnv(space, TWO, make_obs=lambda t: frame), 1, "m")
    spec = env.behavior_specs["m"].observation_specs[0]
    assert spec.kind == ObservationKind.VISUAL and spec.shape == (32, 24, 3)
    env.reset()
    obs = env.get_steps("m")[0].obs[0][0]
    assert obs.shape == (32, 24, 3) and obs[..., 1].min() == 1.0 and obs[..., 0].max() == 0.0


def test_a_factory_module_that_fails_on_import_is_named(tmp_path, monkeypatch):
    (tmp_path / "broken_env_module.py").write_text("raise RuntimeError('no licence server')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EnvironmentSetupError) as info:
        make_environment("broken_env_module:make")
    assert ("importing module 'broken_env_module' failed: RuntimeError: no licence server"
            in str(info.value))


def test_a_factory_module_in_the_working_directory_is_found(tmp_path, monkeypatch):
    (tmp_path / "cwd_env_module.py").write_text(
        "import gymnasium as gym\n"
        "def make():\n    return gym.make('CartPole-v1')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    env = make_environment("cwd_env_module:make", num_envs=2)
    assert list(env.behavior_specs) == ["make"]
    env.close()


def test_an_error_inside_the_environments_own_step_keeps_its_traceback():
    class Picky(E.SpaceEnv):
        def step(self, action):
            raise ValueError("action 0 is not allowed in this state")
    with pytest.raises(ValueError, match="action 0 is not allowed"):
        stepped(lambda: Picky(BOX3, TWO))
