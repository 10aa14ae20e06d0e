"""ML-Agents' **GridWorld** scene: reach the goal, avoid the pit, on a small grid with walls.

Each episode places the agent, one goal and one pit on three distinct random cells of a
``grid_size`` x ``grid_size`` grid (default 5). Every step costs -0.01; stepping onto the goal
ends the episode with reward +1, onto the pit with -1 (ML-Agents' ``SetReward``: the final
step's reward is exactly +1 or -1). Episodes are cut (``interrupted``) after ``max_steps`` steps
(default 50; ML-Agents uses 100).

- actions: one discrete branch of 5: 0 = no-op, 1 = up (y+1), 2 = down (y-1), 3 = left
  (x-1), 4 = right (x+1), ML-Agents' order. **Action masks** forbid moves into the outer wall
  (no-op is always allowed); a forbidden move that is taken anyway leaves the agent in place.
- observation (default): one vector (6,) float32 = agent x, y, goal x, y, pit x, y, each
  divided by ``grid_size - 1`` (so in [0, 1]).
- observation with ``visual=True``: one visual observation of the grid, channel-last float32
  in [0, 1] of shape (grid_size * cell_pixels, grid_size * cell_pixels, 3): channel 0 = agent,
  1 = goal, 2 = pit, each cell ``cell_pixels`` wide (default 4: a 20x20x3 image for the
  ``simple`` encoder; ``cell_pixels=1`` gives a 5x5x3 image for ``match3``). Image row 0 is the
  top of the grid (largest y), column 0 the left (x = 0).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from palaestra.envs.base import ActionSpec, ActionTuple, ObservationKind, ObservationSpec
from palaestra.envs.builtin import register_builtin
from palaestra.envs.builtin.draw import grid_canvas
from palaestra.envs.vector_core import VectorCore

NOOP, UP, DOWN, LEFT, RIGHT = range(5)
# (dx, dy) per action
_DX = np.array([0, 0, 0, -1, 1], np.int64)
_DY = np.array([0, 1, -1, 0, 0], np.int64)
STEP_REWARD = -0.01
GOAL_REWARD = 1.0
PIT_REWARD = -1.0

# Frames (`render`): ML-Agents' look, a green plus for the goal and a red cross for the pit
FRAME_SIDE = 200  # pixels: the grid's side (about)
FLOOR, GRID = (225, 228, 232), (120, 125, 135)
GOAL_COLOUR, PIT_COLOUR, AGENT_COLOUR = (40, 170, 70), (210, 50, 50), (50, 90, 220)


@register_builtin("GridWorld", 1)
class GridWorldCore(VectorCore):
    behavior_name = "GridWorld"
    render_fps = 5

    def __init__(self, num_agents: int, visual: bool = False, grid_size: int = 5,
                 max_steps: int = 50, cell_pixels: int = 4) -> None:
        super().__init__(num_agents)
        grid_size, max_steps, cell_pixels = int(grid_size), int(max_steps), int(cell_pixels)
        if grid_size < 2:
            raise ValueError(f"grid_size must be at least 2, got {grid_size}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        if cell_pixels < 1:
            raise ValueError(f"cell_pixels must be at least 1, got {cell_pixels}")
        self.visual = bool(visual)
        self.size = grid_size
        self.max_steps = max_steps
        self.cell_pixels = cell_pixels
        if self.visual:
            side = grid_size * cell_pixels
            self.observation_specs = [ObservationSpec((side, side, 3), ObservationKind.VISUAL,
                                                      "grid")]
        else:
            self.observation_specs = [ObservationSpec((6,), ObservationKind.VECTOR, "positions")]
        self.action_spec = ActionSpec.create_discrete((5,))
        # cells as (x, y), shape (N, 2); placed by the first reset
        self.agent = np.zeros((num_agents, 2), np.int64)
        self.goal = np.zeros((num_agents, 2), np.int64)
        self.pit = np.zeros((num_agents, 2), np.int64)
        self.steps = np.zeros(num_agents, np.int64)
        self._rows = np.arange(num_agents)
        self.reset_agents(np.ones(num_agents, bool))

    def reset_agents(self, mask: np.ndarray) -> None:
        idx = np.nonzero(np.asarray(mask, bool))[0]
        if not len(idx):
            return
        cells = self.size * self.size
        # three distinct cells per agent: the first three of a random permutation
        picks = np.argsort(self.rng.random((len(idx), cells)), axis=1)[:, :3]
        xy = np.stack([picks % self.size, picks // self.size], axis=-1)  # (n, 3, 2)
        self.agent[idx] = xy[:, 0]
        self.goal[idx] = xy[:, 1]
        self.pit[idx] = xy[:, 2]
        self.steps[idx] = 0

    def observe(self) -> List[np.ndarray]:
        if self.visual:
            return [self._render()]
        obs = np.concatenate([self.agent, self.goal, self.pit], axis=1).astype(np.float32)
        return [obs / np.float32(self.size - 1)]

    def _render(self) -> np.ndarray:
        g = self.size
        grid = np.zeros((self.num_agents, g, g, 3), np.float32)
        for channel, xy in enumerate((self.agent, self.goal, self.pit)):
            grid[self._rows, g - 1 - xy[:, 1], xy[:, 0], channel] = 1.0
        if self.cell_pixels > 1:
            grid = np.repeat(np.repeat(grid, self.cell_pixels, axis=1), self.cell_pixels, axis=2)
        return grid

    def render(self, agent: int = 0) -> Optional[np.ndarray]:
        """Agent `agent`'s grid seen from above, about 200 x 200 (rows top = largest y, as the
        visual observation): goal a green plus, pit a red cross, the agent a blue square."""
        g = self.size
        canvas, cell = grid_canvas(g, FRAME_SIDE, FLOOR, GRID, 2.0)
        arm, width = 0.32 * cell, max(2.0, 0.14 * cell)

        def centre(xy: np.ndarray) -> Tuple[float, float]:
            return (xy[0] + 0.5) * cell, (g - 1 - xy[1] + 0.5) * cell

        x, y = centre(self.goal[agent])
        canvas.line(x - arm, y, x + arm, y, width, GOAL_COLOUR)
        canvas.line(x, y - arm, x, y + arm, width, GOAL_COLOUR)
        x, y = centre(self.pit[agent])
        canvas.line(x - arm, y - arm, x + arm, y + arm, width, PIT_COLOUR)
        canvas.line(x - arm, y + arm, x + arm, y - arm, width, PIT_COLOUR)
        x, y = centre(self.agent[agent])
        canvas.rect(x - 0.3 * cell, y - 0.3 * cell, x + 0.3 * cell, y + 0.3 * cell, AGENT_COLOUR)
        return canvas.pixels

    def action_mask(self) -> np.ndarray:
        x, y = self.agent[:, 0], self.agent[:, 1]
        top = self.size - 1
        mask = np.ones((self.num_agents, 5), bool)
        mask[:, UP] = y < top
        mask[:, DOWN] = y > 0
        mask[:, LEFT] = x > 0
        mask[:, RIGHT] = x < top
        return mask

    def step(self, actions: ActionTuple) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = np.asarray(actions.discrete, np.int64).reshape(self.num_agents, -1)[:, 0]
        top = self.size - 1
        self.agent[:, 0] = np.clip(self.agent[:, 0] + _DX[a], 0, top)  # walls block moves
        self.agent[:, 1] = np.clip(self.agent[:, 1] + _DY[a], 0, top)
        self.steps += 1
        at_goal = (self.agent == self.goal).all(axis=1)
        at_pit = (self.agent == self.pit).all(axis=1)
        reward = np.where(at_goal, GOAL_REWARD, np.where(at_pit, PIT_REWARD, STEP_REWARD))
        terminated = at_goal | at_pit
        truncated = (self.steps >= self.max_steps) & ~terminated
        return reward.astype(np.float32), terminated, truncated
