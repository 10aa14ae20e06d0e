"""Small environments for tests: importable as `toy_envs:<factory>` with tests/ on sys.path."""
import gymnasium as gym
import numpy as np


class PointTarget(gym.Env):
    """Move a point on a line to a random target with a continuous action in [-1, 1].

    Reward -|distance| per step, 20 steps (truncation). A random policy scores about -10, a
    good one about -2: enough signal for a continuous-control learning test in seconds."""

    def __init__(self, episode_length: int = 20, speed: float = 0.2) -> None:
        self.observation_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.episode_length = episode_length
        self.speed = speed

    def _obs(self):
        return np.array([self.target - self.pos, self.pos], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = float(self.np_random.uniform(-1, 1))
        self.target = float(self.np_random.uniform(-1, 1))
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = float(np.clip(self.pos + self.speed * float(np.clip(action[0], -1, 1)), -2, 2))
        self.t += 1
        reward = -abs(self.target - self.pos)
        return self._obs(), reward, False, self.t >= self.episode_length, {}


def point_target(**kwargs):
    return PointTarget(**kwargs)
