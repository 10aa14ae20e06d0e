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


class HybridTargetCore:
    """Hybrid actions for tests: each agent steers a point towards a target with one
    continuous action and must also pick the discrete action (of 2) that its observation's
    sign bit names. Reward per step: -|target - pos| + 0.5 for the right pick; 10 steps.
    A random policy scores about -4.5 (-7 from the distance, +2.5 from lucky picks), a good
    one about +3.8."""

    def __new__(cls, num_agents: int = 16):  # built on palaestra's VectorCore at call time
        from palaestra.envs.base import ActionSpec, ObservationSpec
        from palaestra.envs.vector_core import VectorCore

        class _Core(VectorCore):
            behavior_name = "HybridTarget"
            observation_specs = [ObservationSpec((3,))]
            action_spec = ActionSpec(continuous_size=1, discrete_branches=(2,))

            def reset_agents(self, mask):
                n = int(mask.sum())
                self.pos = getattr(self, "pos", np.zeros(self.num_agents, np.float32))
                self.target = getattr(self, "target", np.zeros(self.num_agents, np.float32))
                self.bit = getattr(self, "bit", np.zeros(self.num_agents, np.int64))
                self.t = getattr(self, "t", np.zeros(self.num_agents, np.int64))
                self.pos[mask] = self.rng.uniform(-1, 1, n)
                self.target[mask] = self.rng.uniform(-1, 1, n)
                self.bit[mask] = self.rng.integers(0, 2, n)
                self.t[mask] = 0

            def observe(self):
                return [np.stack([self.target - self.pos, self.pos,
                                  2.0 * self.bit - 1.0], 1).astype(np.float32)]

            def step(self, actions):
                self.pos = np.clip(self.pos + 0.3 * np.clip(actions.continuous[:, 0], -1, 1),
                                   -2, 2).astype(np.float32)
                self.t += 1
                reward = -np.abs(self.target - self.pos) + 0.5 * (actions.discrete[:, 0] ==
                                                                    self.bit)
                truncated = self.t >= 10
                return reward.astype(np.float32), np.zeros(self.num_agents, bool), truncated

        return _Core(num_agents)


def hybrid_target(num_agents: int = 16, seed: int = 0):
    from palaestra.envs.vector_core import CoreEnv

    return CoreEnv(HybridTargetCore(num_agents), seed)
