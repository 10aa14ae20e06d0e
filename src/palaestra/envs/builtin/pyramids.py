"""ML-Agents' **Pyramids** scene as a grid: a sparse-reward task that asks for exploration.

The floor is ``rooms`` x ``rooms`` square rooms of ``room_size`` x ``room_size`` cells,
separated by walls one cell thick with one doorway (a gap of one cell) in the middle of every
wall between two neighbouring rooms; the grid's side is ``rooms * (room_size + 1) - 1`` cells
(default 3 x 3 rooms of 5 x 5: 17 x 17, 237 free cells). Stepping onto the switch turns it on
for the rest of the episode and spawns the pyramid; stepping onto the pyramid then ends the
episode with reward exactly **+2** (ML-Agents' ``SetReward(2f)``); before the switch is on, the
pyramid's future cell is plain floor. Every other step costs ``-1 / max_steps`` (ML-Agents'
``AddReward(-1f / MaxStep)``), so an episode that never reaches the pyramid returns -1; it is
cut (truncated, bootstrapped) after ``max_steps`` steps. As in ML-Agents' scene (agent, switch
and pyramid in three distinct spawn areas of nine), the three are far apart; there are no stone
pyramids, no rotation and no raycasts here.

``spawn`` says where they are:

- ``"fixed"`` (the default): the same far places every episode. The agent starts on a random
  cell of the bottom-left room, the switch is the top-right corner cell of the top-right room
  (26-32 moves away), the pyramid spawns on the top-left corner cell of the top-left room (20
  moves from the switch). A route is all the policy needs; what is hard is finding the reward
  at all: a uniformly random policy presses the switch in about 2% of its episodes and reaches
  the pyramid in about 1 in 10,000. That is the case exploration bonuses (curiosity, RND) are
  for, and what ML-Agents' Pyramids shows them on.
- ``"random"``: new places every episode: the agent on a random free cell, the switch on a
  random free cell at least ``min_distance`` moves away (shortest path around the walls), the
  pyramid at least ``min_distance`` moves from the switch. The policy must then learn to reach
  any offset through the doorways, a navigation problem as much as an exploration one (random
  walk success about 0.8%; neither the extrinsic reward nor curiosity solved it within 1M
  steps, docs/benchmarks.md). ``min_distance`` applies to this mode only.

- actions: one discrete branch of 5, ML-Agents' count: 0 = stay, 1 = up (y+1), 2 = down (y-1),
  3 = left (x-1), 4 = right (x+1). A move into a wall or off the grid leaves the agent in place;
  no action masks (as in ML-Agents, bumping into walls is the agent's to learn).
- observation: one vector of ``2 * side + 5`` float32 (39 by default): 0..side-1 the one-hot of
  the agent's x, side..2*side-1 the one-hot of its y; then the switch's state (1 = on); the
  switch's position minus the agent's (dx, dy); the pyramid's position minus the agent's
  (dx, dy), 0 until it is spawned. Differences are divided by ``side - 1``, so in [-1, 1].
  x grows to the right, y upwards. The whole floor is visible (no walls hide anything); what
  makes the task hard is that the reward needs the switch first and both lie far away.

Measurements (docs/benchmarks.md, "Sparse reward: Pyramids"): the random walk's rates above,
and PPO with the extrinsic reward alone against curiosity and RND over three seeds each.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from palaestra.envs.base import ActionSpec, ActionTuple, ObservationKind, ObservationSpec
from palaestra.envs.builtin import register_builtin
from palaestra.envs.builtin.draw import grid_canvas
from palaestra.envs.vector_core import VectorCore

STAY, UP, DOWN, LEFT, RIGHT = range(5)
SPAWNS = ("fixed", "random")
_DX = np.array([0, 0, 0, -1, 1], np.int64)
_DY = np.array([0, 1, -1, 0, 0], np.int64)
PYRAMID_REWARD = 2.0
NO_PYRAMID = -1  # `pyramid` of an agent whose switch is still off

# Frames (`render`): the floor from above, cells of about 20 pixels (top row = largest y)
FRAME_SIDE = 280  # pixels: the floor's side (about)
WALL, FLOOR, GRID = (85, 80, 75), (225, 220, 205), (205, 200, 185)
SWITCH_OFF, SWITCH_ON = (190, 40, 40), (40, 170, 70)
PYRAMID_COLOUR, AGENT_COLOUR = (235, 185, 20), (50, 90, 220)


def room_layout(rooms: int, room_size: int) -> np.ndarray:
    """(side, side) bool, True = free floor, indexed ``[x, y]``: ``rooms`` x ``rooms`` rooms
    with a one-cell doorway in the middle of each wall between two neighbouring rooms."""
    side = rooms * (room_size + 1) - 1
    free = np.ones((side, side), bool)
    middle = [r * (room_size + 1) + room_size // 2 for r in range(rooms)]
    for k in range(1, rooms):
        wall = k * (room_size + 1) - 1
        free[wall, :] = False
        free[:, wall] = False
        free[wall, middle] = True
        free[middle, wall] = True
    return free


def move_table(free: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(cells (F, 2) int64: the free (x, y); next_cell (F, 5) int64: the cell index after each
    action from each cell, the same cell where a wall or the edge blocks the move)."""
    cells = np.argwhere(free)
    index = -np.ones(free.shape, np.int64)
    index[cells[:, 0], cells[:, 1]] = np.arange(len(cells))
    side_x, side_y = free.shape
    nx = np.clip(cells[:, :1] + _DX, 0, side_x - 1)
    ny = np.clip(cells[:, 1:] + _DY, 0, side_y - 1)
    moved = index[nx, ny]
    return cells, np.where(moved >= 0, moved, np.arange(len(cells))[:, None])


def shortest_paths(next_cell: np.ndarray) -> np.ndarray:
    """(F, F) int64: moves between every two free cells (-1 = unreachable), by one
    breadth-first search from all cells at once (a frontier matrix times the adjacency
    matrix per distance); run at construction, never per step."""
    count = len(next_cell)
    adjacent = np.zeros((count, count), np.float32)
    adjacent[np.repeat(np.arange(count), next_cell.shape[1]), next_cell.ravel()] = 1.0
    dist = np.where(np.eye(count, dtype=bool), 0, -1).astype(np.int64)
    frontier = np.eye(count, dtype=np.float32)
    steps = 0
    while frontier.any():
        steps += 1
        reached = (frontier @ adjacent > 0) & (dist < 0)
        dist[reached] = steps
        frontier = reached.astype(np.float32)
    return dist


@register_builtin("Pyramids", 16)
class PyramidsCore(VectorCore):
    behavior_name = "Pyramids"
    render_fps = 5

    def __init__(self, num_agents: int, rooms: int = 3, room_size: int = 5,
                 max_steps: int = 500, min_distance: int = 10, spawn: str = "fixed") -> None:
        super().__init__(num_agents)
        rooms, room_size = int(rooms), int(room_size)
        max_steps, min_distance = int(max_steps), int(min_distance)
        if rooms < 1:
            raise ValueError(f"rooms must be at least 1, got {rooms}")
        if room_size < 2 or rooms * room_size < 3:
            raise ValueError(f"room_size must be at least 2 (and the floor at least 3 wide), "
                             f"got {room_size}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        if min_distance < 1:
            raise ValueError(f"min_distance must be at least 1, got {min_distance}")
        if spawn not in SPAWNS:
            raise ValueError(f"spawn must be one of {', '.join(SPAWNS)}, got {spawn!r}")
        self.free = room_layout(rooms, room_size)
        self.side = self.free.shape[0]
        self.cells, self.next_cell = move_table(self.free)
        self.distance = shortest_paths(self.next_cell)
        reach = int(self.distance.max(axis=1).min())
        self.spawn = spawn
        if spawn == "fixed":
            top = self.side - 1
            index = {tuple(c): i for i, c in enumerate(self.cells.tolist())}
            self.fixed_switch, self.fixed_pyramid = index[(top, top)], index[(0, top)]
            self.start_cells = np.nonzero((self.cells < room_size).all(axis=1))[0]
        elif min_distance > reach:
            raise ValueError(f"min_distance {min_distance} is too far: from some cells of this "
                             f"floor nothing is more than {reach} steps away")
        self.max_steps, self.min_distance = max_steps, min_distance
        self.step_reward = -1.0 / max_steps
        self.observation_specs = [ObservationSpec((2 * self.side + 5,), ObservationKind.VECTOR,
                                                  "pyramids")]
        self.action_spec = ActionSpec.create_discrete((5,))
        # per agent: cell indices into `cells`; `pyramid` is NO_PYRAMID while the switch is off
        self.agent = np.zeros(num_agents, np.int64)
        self.switch = np.zeros(num_agents, np.int64)
        self.switch_on = np.zeros(num_agents, bool)
        self.pyramid = np.full(num_agents, NO_PYRAMID, np.int64)
        self.steps = np.zeros(num_agents, np.int64)
        self._rows = np.arange(num_agents)
        self.reset_agents(np.ones(num_agents, bool))

    def _far_from(self, origin: np.ndarray) -> np.ndarray:
        """A random free cell at least `min_distance` moves from each cell of `origin`."""
        far = self.distance[origin] >= self.min_distance
        score = np.where(far, self.rng.random(far.shape), -1.0)
        return score.argmax(axis=1)

    def reset_agents(self, mask: np.ndarray) -> None:
        idx = np.nonzero(np.asarray(mask, bool))[0]
        if not len(idx):
            return
        if self.spawn == "fixed":
            self.agent[idx] = self.rng.choice(self.start_cells, len(idx))
            self.switch[idx] = self.fixed_switch
        else:
            self.agent[idx] = self.rng.integers(0, len(self.cells), len(idx))
            self.switch[idx] = self._far_from(self.agent[idx])
        self.switch_on[idx] = False
        self.pyramid[idx] = NO_PYRAMID
        self.steps[idx] = 0

    def observe(self) -> List[np.ndarray]:
        n, s = self.num_agents, self.side
        obs = np.zeros((n, 2 * s + 5), np.float32)
        agent = self.cells[self.agent]
        obs[self._rows, agent[:, 0]] = 1.0
        obs[self._rows, s + agent[:, 1]] = 1.0
        obs[:, 2 * s] = self.switch_on
        scale = np.float32(1.0 / (s - 1))
        obs[:, 2 * s + 1:2 * s + 3] = (self.cells[self.switch] - agent) * scale
        spawned = self.switch_on[:, None]
        pyramid = self.cells[np.maximum(self.pyramid, 0)]
        obs[:, 2 * s + 3:2 * s + 5] = np.where(spawned, pyramid - agent, 0) * scale
        return [obs]

    def step(self, actions: ActionTuple) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = np.asarray(actions.discrete, np.int64).reshape(self.num_agents, -1)[:, 0]
        self.agent = self.next_cell[self.agent, a]
        self.steps += 1
        reached = self.switch_on & (self.agent == self.pyramid)
        pressed = ~self.switch_on & (self.agent == self.switch)
        if pressed.any():
            idx = np.nonzero(pressed)[0]
            self.switch_on[idx] = True
            self.pyramid[idx] = (self.fixed_pyramid if self.spawn == "fixed"
                                 else self._far_from(self.agent[idx]))
        reward = np.where(reached, PYRAMID_REWARD, self.step_reward).astype(np.float32)
        truncated = (self.steps >= self.max_steps) & ~reached
        return reward, reached, truncated

    def render(self, agent: int = 0) -> Optional[np.ndarray]:
        """Agent `agent`'s floor from above, about 280 x 280 (top row = largest y): walls dark,
        the switch a square (red while off, green once on), the pyramid a gold triangle once
        spawned, the agent a blue disc drawn over whatever it stands on."""
        s = self.side
        canvas, cell = grid_canvas(s, FRAME_SIDE, FLOOR, GRID, 1.0)
        for x, y in np.argwhere(~self.free):
            canvas.rect(x * cell, (s - 1 - y) * cell, (x + 1) * cell, (s - y) * cell, WALL)

        def centre(c: int) -> Tuple[float, float]:
            x, y = self.cells[c]
            return (x + 0.5) * cell, (s - 1 - y + 0.5) * cell

        x, y = centre(int(self.switch[agent]))
        canvas.rect(x - 0.35 * cell, y - 0.35 * cell, x + 0.35 * cell, y + 0.35 * cell,
                    SWITCH_ON if self.switch_on[agent] else SWITCH_OFF)
        if self.pyramid[agent] != NO_PYRAMID:
            x, y = centre(int(self.pyramid[agent]))
            h = 0.4 * cell
            canvas.polygon([(x - h, y + h), (x + h, y + h), (x, y - h)], PYRAMID_COLOUR)
        x, y = centre(int(self.agent[agent]))
        canvas.circle(x, y, 0.3 * cell, AGENT_COLOUR)
        return canvas.pixels
