"""Frames for videos (`BaseEnv.render`, `make_environment(render_mode=...)`): every built-in
draws a changing picture, Gymnasium's rendering contract holds for the ``palaestra/<name>-v0``
ids, and rendering that cannot work is an `EnvironmentSetupError` that says why."""
import importlib
import importlib.util
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest

from palaestra.envs import BaseEnv, make_environment
from palaestra.envs.builtin import AGENTS_PER_COPY, BUILTIN_ENVS
from palaestra.envs.builtin import ball3d
from palaestra.envs.builtin.draw import Canvas
from palaestra.exception import EnvironmentSetupError


def behavior(env):
    return next(iter(env.behavior_specs))


def random_step(env, rng):
    name = behavior(env)
    decision, _ = env.get_steps(name)
    env.set_actions(name, env.behavior_specs[name].action_spec.random_action(len(decision), rng))
    env.step()


def assert_frame(frame):
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
    assert frame.ndim == 3 and frame.shape[2] == 3 and min(frame.shape[:2]) >= 40
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 1


def colour_mask(frame, colour):
    return (frame == np.asarray(colour, np.uint8)).all(axis=-1)


@pytest.mark.parametrize("name", sorted(BUILTIN_ENVS))
def test_builtin_frames_change_as_the_scene_moves(name):
    env = make_environment(name, num_envs=2, seed=0, render_mode="rgb_array")
    env.reset()
    first = env.render()
    assert_frame(first)
    assert env.render_fps > 0
    rng = np.random.default_rng(0)
    for _ in range(20):
        random_step(env, rng)
        frame = env.render()
        assert frame.shape == first.shape
        if not np.array_equal(frame, first):
            break
    else:
        pytest.fail(f"{name}: 20 random steps left the frame unchanged")
    assert frame is not env.render()  # a new array each call: a recorder may keep them


def test_3dball_ball_is_drawn_where_it_is():
    env = make_environment("3DBall", seed=0, render_mode="rgb_array")
    env.reset()
    core = env.core
    core.tilt[:, 0] = 0.0
    centres = []
    for u in (-1.0, 0.0, 1.0):
        core.pos[:, 0] = (u, 0.0)
        ball = colour_mask(env.render(), ball3d.BALL_COLOUR)
        left = ball[:, : ball3d.PANEL]
        assert left.sum() > 500  # a disc of radius 20 px, about 1257 pixels
        centres.append(np.nonzero(left)[1].mean())
        # the other view's ball stays put: only x' moved
        assert abs(np.nonzero(ball[:, ball3d.PANEL:])[1].mean() - ball3d.PANEL / 2) < 1.0
    assert centres[0] < centres[1] - 30 and centres[1] < centres[2] - 30
    # the platform's tilt shows: tilting changes the frame with the ball held in place
    level = env.render()
    core.tilt[:, 0] = (0.3, -0.2)
    assert (env.render() != level).any(axis=-1).sum() > 500


def test_3dball_frames_follow_the_rolling_ball():
    env = make_environment("3DBall", seed=1, render_mode="rgb_array")
    env.reset()
    core, name = env.core, behavior(env)
    # platform 0 tilted up to the right in both views, ball at rest in the middle: the ball
    # rolls down to the left in both panels (x' and z' decrease), about 20 px in 10 decisions
    core.tilt[:, 0], core.pos[:, 0], core.vel[:, 0] = (0.15, -0.15), 0.0, 0.0
    still = env.behavior_specs[name].action_spec.empty_action(12)
    frames = [env.render()]
    for _ in range(10):
        env.set_actions(name, still)
        env.step()
        frames.append(env.render())
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))
    for panel in (slice(None, ball3d.PANEL), slice(ball3d.PANEL, None)):
        ball_x = [np.nonzero(colour_mask(f, ball3d.BALL_COLOUR)[:, panel])[1].mean()
                  for f in frames]
        assert ball_x[-1] < ball_x[0] - 10
        assert all(later <= earlier + 0.5 for earlier, later in zip(ball_x, ball_x[1:]))


@pytest.mark.parametrize("name", sorted(AGENTS_PER_COPY))
def test_gymnasium_ids_render_rgb_array(name):
    env = gym.make(f"palaestra/{name}-v0", render_mode="rgb_array")
    assert env.metadata["render_modes"] == ["rgb_array"] and env.metadata["render_fps"] > 0
    env.reset(seed=0)
    assert_frame(env.render())
    env.step(env.action_space.sample())
    assert_frame(env.render())
    plain = gym.make(f"palaestra/{name}-v0")
    plain.reset(seed=0)
    assert plain.render() is None  # Gymnasium's contract: no render_mode, no frame


def test_baseenv_draws_nothing_by_default():
    class Blind(BaseEnv):
        behavior_specs = {}

        def reset(self): ...
        def get_steps(self, behavior_name): ...
        def set_actions(self, behavior_name, actions): ...
        def step(self): ...

    assert Blind().render() is None and Blind().render_fps is None


def test_human_mode_on_builtin_points_to_record():
    with pytest.raises(EnvironmentSetupError) as err:
        make_environment("3DBall", render_mode="human")
    assert "window" in str(err.value) and "--record" in str(err.value)


def test_unknown_render_mode_lists_the_allowed_ones():
    with pytest.raises(EnvironmentSetupError) as err:
        make_environment("CartPole-v1", render_mode="rgb")
    assert "'rgb'" in str(err.value) and "rgb_array" in str(err.value) \
        and "human" in str(err.value)


FACTORIES = '''
import gymnasium as gym
import numpy as np

MODES = []


class Tiny(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.renders = 0
        MODES.append(render_mode)

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}

    def render(self):
        self.renders += 1
        if self.render_mode == "rgb_array":  # RGBA floats in [0, 1]: palaestra converts them
            return np.full((8, 6, 4), 0.5, np.float32)
        return None


def plain():
    return Tiny()


def drawing(render_mode=None, size=1):
    return Tiny(render_mode)


def through_kwargs(**kwargs):
    return Tiny(**kwargs)
'''


@pytest.fixture
def factories(tmp_path, monkeypatch):
    """A fresh `render_factories` module (module:factory strings need an importable module)."""
    (tmp_path / "render_factories.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("render_factories", None)
    yield importlib.import_module("render_factories")
    sys.modules.pop("render_factories", None)


def test_factory_without_render_mode_still_works(factories):
    env = make_environment("render_factories:plain", num_envs=2, render_mode="rgb_array")
    env.reset()
    assert factories.MODES == [None, None] and env.render() is None


@pytest.mark.parametrize("factory", ["drawing", "through_kwargs"])
def test_factory_with_render_mode_gets_it_on_the_first_copy(factories, factory):
    env = make_environment(f"render_factories:{factory}", num_envs=3, render_mode="rgb_array")
    env.reset()
    assert factories.MODES == ["rgb_array", None, None]
    frame = env.render()
    assert frame.shape == (8, 6, 3) and frame.dtype == np.uint8 and (frame == 127).all()


def test_human_mode_updates_the_window_and_returns_none(factories):
    env = make_environment("render_factories:drawing", num_envs=2, render_mode="human")
    env.reset()
    assert env.render() is None and env.envs[0].renders == 1 and env.envs[1].renders == 0


def test_canvas_shapes_cover_what_they_should():
    c = Canvas(20, 10, (0, 0, 0))
    c.rect(2, 1, 6, 4, (255, 0, 0))
    assert colour_mask(c.pixels, (255, 0, 0)).sum() == 4 * 3
    c.circle(15, 5, 3, (0, 255, 0))
    disc = colour_mask(c.pixels, (0, 255, 0))
    assert disc[5, 15] and disc.sum() == pytest.approx(np.pi * 9, rel=0.2)
    c.polygon([(0, 9), (4, 5), (8, 9)], (0, 0, 255))  # a triangle, either winding
    assert colour_mask(c.pixels, (0, 0, 255))[8, 4]
    c.line(0, 0, 19, 9, 1.0, (9, 9, 9))  # clipped to the canvas, no error
    assert colour_mask(c.pixels, (9, 9, 9)).any()


def test_cartpole_rgb_array_frame_or_a_clear_error():
    env = make_environment("CartPole-v1", num_envs=2, seed=0, render_mode="rgb_array")
    env.reset()
    if importlib.util.find_spec("pygame") is not None:
        assert_frame(env.render())
        return
    with pytest.raises(EnvironmentSetupError) as err:
        env.render()
    message = str(err.value)
    assert "CartPole-v1" in message and "pygame" in message and "classic-control" in message
