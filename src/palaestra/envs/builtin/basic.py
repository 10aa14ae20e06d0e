"""ML-Agents' **Basic** scene: a 1-D corridor with a small goal nearby and a large goal further.

Each agent sits on one of 20 positions (0..19), starting at 10. The small goal is at 7 (+0.1)
and the large goal at 17 (+1); reaching either ends the episode. Every step costs -0.01
(added, as ML-Agents does, so the step that reaches a goal earns 0.09 or 0.99). The optimal
policy walks right seven times: return 6 * -0.01 + 0.99 = 0.93.

- observation: one vector, the one-hot of the position, (20,) float32;
- actions: one discrete branch of 3: 0 = stay, 1 = left, 2 = right (walking off either end
  of the corridor leaves the agent where it is);
- episodes are cut (``interrupted``) after ``max_steps`` steps (default 100; ML-Agents has no
  cap here).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from palaestra.envs.base import ActionSpec, ActionTuple, ObservationKind, ObservationSpec
from palaestra.envs.builtin import register_builtin
from palaestra.envs.builtin.draw import Canvas
from palaestra.envs.vector_core import VectorCore

NUM_POSITIONS = 20
START = 10
SMALL_GOAL, SMALL_REWARD = 7, 0.1
LARGE_GOAL, LARGE_REWARD = 17, 1.0
STEP_REWARD = -0.01
_MOVE = np.array([0, -1, 1], np.int64)  # stay, left, right

# Frames (`render`): the corridor as a row of 20 cells, 20 pixels each
CELL, FRAME_HEIGHT = 20, 60
BACKGROUND, FLOOR, GRID = (235, 240, 245), (210, 210, 200), (160, 160, 150)
GOAL_COLOUR, AGENT_COLOUR = (40, 170, 70), (50, 90, 220)


@register_builtin("Basic", 1)
class BasicCore(VectorCore):
    behavior_name = "Basic"
    render_fps = 5

    def __init__(self, num_agents: int, max_steps: int = 100) -> None:
        super().__init__(num_agents)
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.max_steps = int(max_steps)
        self.observation_specs = [ObservationSpec((NUM_POSITIONS,), ObservationKind.VECTOR,
                                                  "position")]
        self.action_spec = ActionSpec.create_discrete((3,))
        self.position = np.full(num_agents, START, np.int64)
        self.steps = np.zeros(num_agents, np.int64)
        self._rows = np.arange(num_agents)

    def reset_agents(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, bool)
        self.position[mask] = START
        self.steps[mask] = 0

    def render(self, agent: int = 0) -> Optional[np.ndarray]:
        """The corridor of agent `agent`, 400 x 60: the small goal (a small green disc), the
        large goal (a large one) and the agent (blue, drawn over a goal it stands on)."""
        canvas = Canvas(NUM_POSITIONS * CELL, FRAME_HEIGHT, BACKGROUND)
        top, bottom = (FRAME_HEIGHT - CELL) / 2.0, (FRAME_HEIGHT + CELL) / 2.0
        canvas.rect(0, top, NUM_POSITIONS * CELL, bottom, FLOOR)
        for i in range(NUM_POSITIONS + 1):
            canvas.line(i * CELL, top, i * CELL, bottom, 1.0, GRID)
        mid = FRAME_HEIGHT / 2.0
        canvas.circle((SMALL_GOAL + 0.5) * CELL, mid, 0.25 * CELL, GOAL_COLOUR)
        canvas.circle((LARGE_GOAL + 0.5) * CELL, mid, 0.45 * CELL, GOAL_COLOUR)
        canvas.circle((self.position[agent] + 0.5) * CELL, mid, 0.3 * CELL, AGENT_COLOUR)
        return canvas.pixels

    def observe(self) -> List[np.ndarray]:
        obs = np.zeros((self.num_agents, NUM_POSITIONS), np.float32)
        obs[self._rows, self.position] = 1.0
        return [obs]

    def step(self, actions: ActionTuple) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        move = _MOVE[np.asarray(actions.discrete, np.int64).reshape(self.num_agents, -1)[:, 0]]
        self.position = np.clip(self.position + move, 0, NUM_POSITIONS - 1)
        self.steps += 1
        small = self.position == SMALL_GOAL
        large = self.position == LARGE_GOAL
        reward = (STEP_REWARD + SMALL_REWARD * small + LARGE_REWARD * large).astype(np.float32)
        terminated = small | large
        truncated = (self.steps >= self.max_steps) & ~terminated
        return reward, terminated, truncated
