"""Built-in environments as vectorised "cores", and the two views palaestra gives of them.

A `VectorCore` simulates `num_agents` independent agents at once with array operations (no
Python loop over agents). Two adapters expose it:
- `CoreEnv`: a palaestra `BaseEnv` (one behavior, all agents batched, finished agents reset in
  place and reported as terminal steps with their final observation);
- `CoreGymEnv`: a single-agent `gymnasium.Env` (a core with one agent), registered as
  ``palaestra/<Name>-v0`` so other libraries can train on the same simulation.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, List, Mapping, Optional, Tuple

import gymnasium as gym
import numpy as np

from palaestra.envs.base import (ActionSpec, ActionTuple, BaseEnv, BehaviorSpec, DecisionSteps,
                                 ObservationKind, ObservationSpec, TerminalSteps,
                                 empty_terminal_steps)


class VectorCore(abc.ABC):
    """`num_agents` agents simulated together. Arrays are batched over agents (first axis)."""

    behavior_name: str = "Core"
    observation_specs: List[ObservationSpec]
    action_spec: ActionSpec
    #: frames per second at which `render` frames play in real time (Gymnasium's render_fps)
    render_fps: int = 10

    def __init__(self, num_agents: int) -> None:
        self.num_agents = num_agents
        self.rng = np.random.default_rng()

    def seed(self, seed: Optional[int]) -> None:
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def reset_agents(self, mask: np.ndarray) -> None:
        """Start a new episode for the agents where `mask` (bool, (N,)) is True."""

    @abc.abstractmethod
    def observe(self) -> List[np.ndarray]:
        """Current observations, one float32 array (N, *shape) per observation spec."""

    def action_mask(self) -> Optional[np.ndarray]:
        """(N, sum(branches)) bool, True = allowed; None when every action is allowed."""
        return None

    @abc.abstractmethod
    def step(self, actions: ActionTuple) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance every agent: (reward (N,), terminated (N,), truncated (N,))."""

    def render(self, agent: int = 0) -> Optional[np.ndarray]:
        """Agent `agent`'s scene as an RGB frame (H, W, 3) uint8, for videos; None (the
        default) when the core draws nothing. Drawn from the state alone, so it costs nothing
        unless asked for and never changes the simulation."""
        return None


class CoreEnv(BaseEnv):
    """A `VectorCore` as a palaestra environment with one behavior; agent id = agent index."""

    def __init__(self, core: VectorCore, seed: Optional[int] = None) -> None:
        self.core = core
        self.name = core.behavior_name
        self.render_fps = float(core.render_fps)
        self._spec = BehaviorSpec(list(core.observation_specs), core.action_spec)
        self._seed = seed
        self._ids = np.arange(core.num_agents, dtype=np.int64)
        self._reward = np.zeros(core.num_agents, np.float32)
        self._terminal = empty_terminal_steps(self._spec)
        self._actions: Optional[ActionTuple] = None

    @property
    def behavior_specs(self) -> Mapping[str, BehaviorSpec]:
        return {self.name: self._spec}

    def reset(self) -> None:
        self.core.seed(None if self._seed is None or self._seed < 0 else self._seed)
        self.core.reset_agents(np.ones(self.core.num_agents, bool))
        self._reward[:] = 0.0
        self._terminal = empty_terminal_steps(self._spec)

    def get_steps(self, behavior_name: str) -> Tuple[DecisionSteps, TerminalSteps]:
        return DecisionSteps(self.core.observe(), self._reward, self._ids,
                             self.core.action_mask()), self._terminal

    def set_actions(self, behavior_name: str, actions: ActionTuple) -> None:
        self._actions = actions

    def render(self) -> Optional[np.ndarray]:
        """The first agent's scene (see `VectorCore.render`)."""
        return self.core.render(0)

    def step(self) -> None:
        if self._actions is None:
            raise RuntimeError("set_actions must be called before step")
        reward, terminated, truncated = self.core.step(self._actions)
        self._actions = None
        done = terminated | truncated
        if done.any():
            idx = np.nonzero(done)[0]
            final = [o[idx] for o in self.core.observe()]
            self._terminal = TerminalSteps(final, reward[idx].astype(np.float32),
                                           truncated[idx] & ~terminated[idx], self._ids[idx])
            self.core.reset_agents(done)
            reward = np.where(done, 0.0, reward)
        elif len(self._terminal):
            self._terminal = empty_terminal_steps(self._spec)
        self._reward = reward.astype(np.float32)


def _gym_space(spec: ObservationSpec) -> gym.Space:
    if spec.kind == ObservationKind.VISUAL:
        return gym.spaces.Box(0, 255, spec.shape, np.uint8)
    return gym.spaces.Box(-np.inf, np.inf, spec.shape, np.float32)


class CoreGymEnv(gym.Env):
    """A one-agent `VectorCore` as a Gymnasium environment.

    One observation: a Box (visual ones as uint8 images, as Gymnasium expects); several: a
    Dict ``{"obs0": ..., "obs1": ...}``. Actions: Box(-1, 1) for continuous, Discrete /
    MultiDiscrete for discrete branches (hybrid actions are not offered here). The action mask,
    if the core has one, is in ``info["action_mask"]``. ``render_mode="rgb_array"`` makes
    `render` return the core's frame (Gymnasium's contract: None in any other mode); there is
    no window of its own, but ``gymnasium.make(id, render_mode="human")`` shows the frames
    through Gymnasium's HumanRendering wrapper (which needs pygame)."""

    metadata: Dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, core: VectorCore, render_mode: Optional[str] = None) -> None:
        if core.num_agents != 1:
            raise ValueError("CoreGymEnv needs a core with exactly one agent")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not one of "
                             f"{self.metadata['render_modes']} (or None)")
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": core.render_fps}
        if core.action_spec.is_continuous and core.action_spec.is_discrete:
            raise ValueError("hybrid actions have no Gymnasium space here")
        self.core = core
        specs = core.observation_specs
        self.observation_space = _gym_space(specs[0]) if len(specs) == 1 else \
            gym.spaces.Dict({f"obs{i}": _gym_space(s) for i, s in enumerate(specs)})
        a = core.action_spec
        if a.is_continuous:
            self.action_space = gym.spaces.Box(-1.0, 1.0, (a.continuous_size,), np.float32)
        elif a.discrete_size == 1:
            self.action_space = gym.spaces.Discrete(a.discrete_branches[0])
        else:
            self.action_space = gym.spaces.MultiDiscrete(list(a.discrete_branches))

    def _obs(self) -> Any:
        parts = []
        for spec, o in zip(self.core.observation_specs, self.core.observe()):
            o = o[0]
            if spec.kind == ObservationKind.VISUAL:
                o = np.clip(o * 255.0, 0, 255).astype(np.uint8)
            parts.append(o.astype(np.float32) if o.dtype != np.uint8 else o)
        return parts[0] if len(parts) == 1 else {f"obs{i}": p for i, p in enumerate(parts)}

    def _info(self) -> Dict[str, Any]:
        mask = self.core.action_mask()
        return {} if mask is None else {"action_mask": mask[0].astype(np.int8)}

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None
              ) -> Tuple[Any, Dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.core.seed(seed)
        self.core.reset_agents(np.ones(1, bool))
        return self._obs(), self._info()

    def step(self, action: Any) -> Tuple[Any, float, bool, bool, Dict[str, Any]]:
        a = self.core.action_spec
        if a.is_continuous:
            cont = np.asarray(action, np.float32).reshape(1, -1)
            actions = ActionTuple(np.clip(cont, -1.0, 1.0), np.zeros((1, 0), np.int64))
        else:
            disc = np.asarray(action, np.int64).reshape(1, -1)
            actions = ActionTuple(np.zeros((1, 0), np.float32), disc)
        reward, terminated, truncated = self.core.step(actions)
        return (self._obs(), float(reward[0]), bool(terminated[0]), bool(truncated[0]),
                self._info())

    def render(self) -> Optional[np.ndarray]:
        return self.core.render(0) if self.render_mode == "rgb_array" else None
