"""**DungeonEscape**: a cooperative scene with a group reward only, in which one agent has to
give itself up so that its team can leave (the idea of ML-Agents' Dungeon Escape; own rules).

Each arena is a ``size`` x ``size`` grid (default 7) with ``agents_per_group`` agents (default
3), one dragon on a random free cell and one door on a random border cell; the agents start on
distinct random cells that hold neither. All agents move at once (stay / up / down / left /
right); a move off the grid, or onto the door by an agent without the key, leaves it in place;
agents may share cells. Within a step, after the moves:

1. the alive agent with the lowest index on the dragon's cell slays it and is **removed** for the
   rest of the episode; the dragon leaves the key on that cell;
2. the alive agent with the lowest index on the key's cell picks it up (so a teammate arriving
   together with the slayer takes it at once);
3. the holder standing on the door: the group escapes, earns the group reward ``escape_reward``
   and its episode ends for every remaining member (terminated).

After ``max_steps`` steps the episode ends for the remaining members as interrupted. Individual
rewards are always 0; every step also earns the group ``-time_penalty`` (default 0).

Observation, one vector (13,) float32 per agent, grid distances divided by ``size - 1``:
0-1 own x, y; 2-3 dragon minus own position (0 once slain); 4 dragon alive; 5-6 key minus own
position (0 unless on the ground); 7 key on the ground; 8 I hold the key; 9 a teammate holds it;
10-11 door minus own position; 12 fraction of the episode's steps left.

`DungeonArenas` is the vectorised simulation (arrays over ``(arena, agent)``); `DungeonEscape`
is its palaestra `BaseEnv` (``--env DungeonEscape``) and `parallel_env` a PettingZoo view of one
arena (PettingZoo is imported only there).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import gymnasium as gym
import numpy as np

from palaestra.envs.base import (ActionSpec, ActionTuple, BaseEnv, BehaviorSpec, DecisionSteps,
                                 ObservationSpec, TerminalSteps, empty_terminal_steps)
from palaestra.envs.builtin import register_multi_agent_builtin
from palaestra.envs.builtin.draw import Canvas

BEHAVIOR_NAME = "DungeonEscape"
STAY, UP, DOWN, LEFT, RIGHT = range(5)
_DELTA = np.array([[0, 0], [0, 1], [0, -1], [-1, 0], [1, 0]], np.int64)  # (dx, dy) per action
OBS_SIZE = 13

# Frames (`render`): an arena from above, cells of about 28 pixels inside a wall half a cell thick
FRAME_SIDE, MIN_CELL = 200, 8
WALL, FLOOR, GRID = (85, 80, 75), (215, 205, 185), (195, 185, 165)
DOOR_COLOUR, DRAGON_COLOUR, KEY_COLOUR = (140, 90, 40), (190, 30, 40), (235, 190, 20)
AGENT_COLOURS = ((50, 90, 220), (40, 160, 200), (120, 70, 210), (30, 60, 140))


@dataclass
class StepOutcome:
    """What one `DungeonArenas.step` did: per agent ``(A, G)`` or per arena ``(A,)``."""

    removed: np.ndarray       # (A, G) bool: slew the dragon this step, now out of the episode
    escaped: np.ndarray       # (A,) bool: the group left through the door (terminated)
    timed_out: np.ndarray     # (A,) bool: reached max_steps without escaping (interrupted)
    group_reward: np.ndarray  # (A,) float32: what the group earned this step

    @property
    def ended(self) -> np.ndarray:
        return self.escaped | self.timed_out


class DungeonArenas:
    """``num_arenas`` independent arenas of ``agents_per_group`` agents, stepped together.

    State arrays (cells as integer (x, y), x to the right, y upwards): ``pos (A, G, 2)``,
    ``alive (A, G)`` (False once removed), ``dragon (A, 2)`` (also where the key lies once the
    dragon is slain), ``dragon_alive (A,)``, ``key_on_ground (A,)``, ``holder (A,)`` (index of
    the agent holding the key, -1 for none), ``door (A, 2)`` and ``steps (A,)``. Tests and
    scripted demos may write them directly (see `place`). Ended arenas are not reset here: the
    caller decides when (`reset_arenas`)."""

    def __init__(self, num_arenas: int, agents_per_group: int = 3, size: int = 7,
                 max_steps: int = 60, escape_reward: float = 1.0,
                 time_penalty: float = 0.0) -> None:
        num_arenas, agents_per_group = int(num_arenas), int(agents_per_group)
        size, max_steps = int(size), int(max_steps)
        if num_arenas < 1:
            raise ValueError(f"num_envs (arenas) must be at least 1, got {num_arenas}")
        if agents_per_group < 2:
            raise ValueError("agents_per_group must be at least 2 (the slayer is removed, so one "
                             f"agent alone can never escape), got {agents_per_group}")
        if size < 3 or size * size < agents_per_group + 2:
            raise ValueError(f"size {size} is too small for {agents_per_group} agents, a dragon "
                             "and a door (at least 3 and size * size >= agents + 2)")
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.num_arenas, self.group_size = num_arenas, agents_per_group
        self.size, self.max_steps = size, max_steps
        self.escape_reward, self.time_penalty = float(escape_reward), float(time_penalty)
        self.rng = np.random.default_rng()
        a, g = num_arenas, agents_per_group
        self.pos = np.zeros((a, g, 2), np.int64)
        self.alive = np.ones((a, g), bool)
        self.dragon = np.zeros((a, 2), np.int64)
        self.dragon_alive = np.ones(a, bool)
        self.key_on_ground = np.zeros(a, bool)
        self.holder = np.full(a, -1, np.int64)
        self.door = np.zeros((a, 2), np.int64)
        self.steps = np.zeros(a, np.int64)
        self._index = np.arange(g)
        top = size - 1
        self._border = np.array([(x, y) for y in range(size) for x in range(size)
                                 if x in (0, top) or y in (0, top)], np.int64)
        self.reset_arenas(np.ones(a, bool))

    def reset_arenas(self, mask: np.ndarray) -> None:
        """Start a new episode in the arenas where `mask` (bool, (A,)) is True."""
        idx = np.flatnonzero(mask)
        n, s, g = len(idx), self.size, self.group_size
        if not n:
            return
        door = self._border[self.rng.integers(0, len(self._border), n)]
        # dragon and agents: the first g + 1 cells of a random order in which the door comes last
        order = self.rng.random((n, s * s))
        order[np.arange(n), door[:, 1] * s + door[:, 0]] = 2.0
        cells = np.argsort(order, axis=1)[:, : g + 1]
        xy = np.stack([cells % s, cells // s], axis=-1)  # (n, g + 1, 2)
        self.place(idx, xy[:, 1:], xy[:, 0], door)

    def place(self, arenas: Any, agents: Any, dragon: Any, door: Any) -> None:
        """Start a new episode in `arenas` with the given cells: agents ``(..., G, 2)``, dragon
        and door ``(..., 2)``. For tests and scripted scenes; no check that the cells are free."""
        self.pos[arenas] = agents
        self.dragon[arenas] = dragon
        self.door[arenas] = door
        self.alive[arenas] = True
        self.dragon_alive[arenas] = True
        self.key_on_ground[arenas] = False
        self.holder[arenas] = -1
        self.steps[arenas] = 0

    def observe(self) -> np.ndarray:
        """Observations of every agent, removed ones included: (A * G, 13) float32."""
        a, g = self.num_arenas, self.group_size
        pos = self.pos.astype(np.float32)
        scale = np.float32(1.0 / (self.size - 1))
        obs = np.empty((a, g, OBS_SIZE), np.float32)
        to_dragon = (self.dragon[:, None, :] - pos) * scale
        mine = self.holder[:, None] == self._index
        obs[..., 0:2] = pos * scale
        obs[..., 2:4] = to_dragon * self.dragon_alive[:, None, None]
        obs[..., 4] = self.dragon_alive[:, None]
        obs[..., 5:7] = to_dragon * self.key_on_ground[:, None, None]
        obs[..., 7] = self.key_on_ground[:, None]
        obs[..., 8] = mine
        obs[..., 9] = (self.holder[:, None] >= 0) & ~mine
        obs[..., 10:12] = (self.door[:, None, :] - pos) * scale
        obs[..., 12] = (1.0 - self.steps / self.max_steps)[:, None]
        return obs.reshape(a * g, OBS_SIZE)

    def step(self, actions: np.ndarray) -> StepOutcome:
        """Advance every arena by one step; `actions` (A, G) int, ignored for removed agents."""
        new = self.pos + _DELTA[actions]
        inside = ((new >= 0) & (new < self.size)).all(-1)
        mine = self.holder[:, None] == self._index
        onto_door = (new == self.door[:, None, :]).all(-1)
        move = inside & self.alive & (mine | ~onto_door)
        self.pos = np.where(move[..., None], new, self.pos)
        on_cell = self.alive & (self.pos == self.dragon[:, None, :]).all(-1)  # dragon's / key's
        slay = on_cell & self.dragon_alive[:, None]
        removed = slay & (np.cumsum(slay, axis=1) == 1)  # the lowest index among them
        slain = slay.any(axis=1)
        self.alive &= ~removed
        self.dragon_alive &= ~slain
        self.key_on_ground |= slain
        grab = on_cell & ~removed & self.key_on_ground[:, None]
        picked = grab.any(axis=1)
        self.holder = np.where(picked, grab.argmax(axis=1), self.holder)
        self.key_on_ground &= ~picked
        at_door = (self.pos == self.door[:, None, :]).all(-1)
        escaped = (at_door & (self.holder[:, None] == self._index)).any(axis=1)
        self.steps += 1
        timed_out = (self.steps >= self.max_steps) & ~escaped
        group_reward = (escaped * self.escape_reward - self.time_penalty).astype(np.float32)
        return StepOutcome(removed, escaped, timed_out, group_reward)


@register_multi_agent_builtin(BEHAVIOR_NAME)
class DungeonEscape(BaseEnv):
    """`DungeonArenas` as a palaestra environment: one behavior, ``num_envs`` arenas.

    Agent id = ``arena * agents_per_group + index`` and group id = ``arena + 1`` (0 means no
    group), both int64. Decision and terminal steps list agents in id order. An agent removed by
    slaying the dragon appears once in the terminal steps (not interrupted) and then no more
    until its arena's next episode; when a group's episode ends, its remaining members are
    terminal steps and the arena restarts at once, so all its agents, removed ones included,
    are in the decision steps of the same `get_steps` with their first observation. Individual
    rewards are 0; ``group_reward`` is the group's reward since the agent's last decision."""

    render_fps = 5.0

    def __init__(self, num_envs: int = 1, seed: Optional[int] = None, agents_per_group: int = 3,
                 size: int = 7, max_steps: int = 60, escape_reward: float = 1.0,
                 time_penalty: float = 0.0) -> None:
        self.sim = DungeonArenas(num_envs, agents_per_group, size, max_steps, escape_reward,
                                 time_penalty)
        self._seed = seed
        n, g = self.sim.num_arenas * agents_per_group, self.sim.group_size
        self._ids = np.arange(n, dtype=np.int64)
        self._groups = self._ids // g + 1
        self._spec = BehaviorSpec([ObservationSpec((OBS_SIZE,), name="dungeon")],
                                  ActionSpec.create_discrete((5,)))
        self._empty_terminal = empty_terminal_steps(self._spec)
        self._empty_terminal.group_id = np.zeros(0, np.int64)
        self._empty_terminal.group_reward = np.zeros(0, np.float32)
        self._terminal = self._empty_terminal
        self._group_reward = np.zeros(self.sim.num_arenas, np.float32)
        self._actions: Optional[np.ndarray] = None

    @property
    def behavior_specs(self) -> Mapping[str, BehaviorSpec]:
        return {BEHAVIOR_NAME: self._spec}

    def _check(self, behavior_name: str) -> None:
        if behavior_name != BEHAVIOR_NAME:
            raise KeyError(f"unknown behavior {behavior_name!r}; this environment has "
                           f"{BEHAVIOR_NAME!r}")

    def reset(self) -> None:
        self.sim.rng = np.random.default_rng(
            None if self._seed is None or self._seed < 0 else self._seed)
        self.sim.reset_arenas(np.ones(self.sim.num_arenas, bool))
        self._group_reward[:] = 0.0
        self._terminal = self._empty_terminal

    def get_steps(self, behavior_name: str) -> Tuple[DecisionSteps, TerminalSteps]:
        self._check(behavior_name)
        idx = np.flatnonzero(self.sim.alive)
        decision = DecisionSteps([self.sim.observe()[idx]], np.zeros(len(idx), np.float32),
                                 self._ids[idx], None, self._groups[idx],
                                 self._group_reward[idx // self.sim.group_size])
        return decision, self._terminal

    def set_actions(self, behavior_name: str, actions: ActionTuple) -> None:
        self._check(behavior_name)
        acting = np.count_nonzero(self.sim.alive)
        disc = np.asarray(actions.discrete, np.int64).reshape(len(actions.discrete), -1)
        if disc.shape != (acting, 1):
            raise ValueError(f"expected discrete actions of shape ({acting}, 1) for the agents "
                             f"of the last decision steps, got {disc.shape}")
        self._actions = disc[:, 0]

    def render(self) -> Optional[np.ndarray]:
        """The first arena from above (see `draw_arena`)."""
        return draw_arena(self.sim, 0)

    def step(self) -> None:
        if self._actions is None:
            raise RuntimeError("set_actions must be called before step")
        sim = self.sim
        full = np.zeros(sim.alive.shape, np.int64)
        full[sim.alive] = self._actions  # boolean order = agent id order = decision order
        self._actions = None
        out = sim.step(full)
        ended = out.ended
        finishing = (out.removed | (ended[:, None] & sim.alive)).ravel()
        if finishing.any():
            idx = np.flatnonzero(finishing)
            arena = idx // sim.group_size
            interrupted = out.timed_out[arena] & ~out.removed.ravel()[idx]
            self._terminal = TerminalSteps([sim.observe()[idx]], np.zeros(len(idx), np.float32),
                                           interrupted, self._ids[idx], self._groups[idx],
                                           out.group_reward[arena])
            sim.reset_arenas(ended)
        else:
            self._terminal = self._empty_terminal
        self._group_reward = np.where(ended, np.float32(0.0), out.group_reward)


def draw_arena(sim: DungeonArenas, arena: int = 0) -> np.ndarray:
    """Arena `arena` from above as an RGB frame (about 224 x 224, y upwards): the wall with the
    door (brown, an opening in the wall), the dragon (a red diamond) while alive, the key (gold)
    while on the ground, and the agents still in the episode (blue discs, one shade per index,
    shifted a little by index so agents sharing a cell stay visible; the key holder wears a
    gold dot). A removed agent is not drawn."""
    s = sim.size
    cell = max(MIN_CELL, FRAME_SIDE // s)
    wall = cell // 2
    side = s * cell + 2 * wall
    canvas = Canvas(side, side, WALL)
    canvas.rect(wall, wall, side - wall, side - wall, FLOOR)
    for k in range(1, s):
        canvas.line(wall + k * cell, wall, wall + k * cell, side - wall, 1.0, GRID)
        canvas.line(wall, wall + k * cell, side - wall, wall + k * cell, 1.0, GRID)

    def corner(xy: np.ndarray) -> Tuple[float, float]:
        """Top-left pixel of cell (x, y): row 0 of the frame is the top (largest y)."""
        return wall + int(xy[0]) * cell, wall + (s - 1 - int(xy[1])) * cell

    x0, y0 = corner(sim.door[arena])
    x1, y1 = x0 + cell, y0 + cell
    dx, dy = sim.door[arena]
    if dx == 0:  # the opening reaches through the wall on one border side the door is on
        x0 -= wall
    elif dx == s - 1:
        x1 += wall
    elif dy == s - 1:
        y0 -= wall
    else:
        y1 += wall
    canvas.rect(x0, y0, x1, y1, DOOR_COLOUR)
    x, y = corner(sim.dragon[arena])
    cx, cy, r = x + cell / 2.0, y + cell / 2.0, 0.4 * cell
    if sim.dragon_alive[arena]:
        canvas.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], DRAGON_COLOUR)
    elif sim.key_on_ground[arena]:
        canvas.circle(cx - 0.15 * cell, cy, 0.2 * cell, KEY_COLOUR)
        canvas.line(cx - 0.15 * cell, cy, cx + 0.35 * cell, cy, 0.12 * cell, KEY_COLOUR)
    g = sim.group_size
    for i in np.flatnonzero(sim.alive[arena]):
        x, y = corner(sim.pos[arena, i])
        shift = (i - (g - 1) / 2.0) * 0.12 * cell
        cx, cy = x + cell / 2.0 + shift, y + cell / 2.0 + shift
        canvas.circle(cx, cy, 0.28 * cell, AGENT_COLOURS[i % len(AGENT_COLOURS)])
        if sim.holder[arena] == i:
            canvas.circle(cx, cy, 0.12 * cell, KEY_COLOUR)
    return canvas.pixels


class _ParallelView:
    """The PettingZoo `ParallelEnv` behaviour of `parallel_env` (mixed into PettingZoo's class
    when it is first asked for, so palaestra imports without PettingZoo)."""

    metadata: Dict[str, Any] = {"name": "dungeon_escape_v0", "render_modes": [],
                                "is_parallelizable": True}

    def __init__(self, **env_args: Any) -> None:
        self.sim = DungeonArenas(1, **env_args)
        self.possible_agents = [f"agent_{i}" for i in range(self.sim.group_size)]
        self.agents: List[str] = []
        self._slot = {agent: i for i, agent in enumerate(self.possible_agents)}
        high = np.ones(OBS_SIZE, np.float32)
        self.observation_spaces = {a: gym.spaces.Box(-high, high, dtype=np.float32)
                                   for a in self.possible_agents}
        self.action_spaces = {a: gym.spaces.Discrete(5) for a in self.possible_agents}

    def observation_space(self, agent: str) -> gym.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> gym.Space:
        return self.action_spaces[agent]

    def _info(self, reward: float) -> Dict[str, Any]:
        return {"group_reward": reward, "group_id": 1}

    def reset(self, seed: Optional[int] = None, options: Optional[dict] = None
              ) -> Tuple[Dict[str, np.ndarray], Dict[str, Dict[str, Any]]]:
        if seed is not None:
            self.sim.rng = np.random.default_rng(seed)
            for i, agent in enumerate(self.possible_agents):
                self.action_spaces[agent].seed(seed + i)
        self.sim.reset_arenas(np.ones(1, bool))
        self.agents = list(self.possible_agents)
        obs = self.sim.observe()
        return ({a: obs[i] for i, a in enumerate(self.agents)},
                {a: self._info(0.0) for a in self.agents})

    def step(self, actions: Mapping[str, Any]) -> Tuple[Dict[str, Any], ...]:
        """Actions of agents that are not live are ignored; a live agent without one stays."""
        if not self.agents:
            return {}, {}, {}, {}, {}
        act = np.zeros((1, self.sim.group_size), np.int64)
        for agent, action in actions.items():
            if agent in self.agents:
                act[0, self._slot[agent]] = int(action)
        out = self.sim.step(act)
        obs_all, reward = self.sim.observe(), float(out.group_reward[0])
        escaped, timed_out = bool(out.escaped[0]), bool(out.timed_out[0])
        live, slots = self.agents, [self._slot[a] for a in self.agents]
        obs = {a: obs_all[i] for a, i in zip(live, slots)}
        rewards = {a: reward for a in live}
        terminated = {a: escaped or bool(out.removed[0, i]) for a, i in zip(live, slots)}
        truncated = {a: timed_out and not terminated[a] for a in live}
        infos = {a: self._info(reward) for a in live}
        self.agents = [a for a in live if not (terminated[a] or truncated[a])]
        return obs, rewards, terminated, truncated, infos

    def render(self) -> None:
        return None

    def close(self) -> None:
        pass


@functools.lru_cache(maxsize=None)
def parallel_env_class() -> type:
    """The PettingZoo class of `parallel_env` (imports PettingZoo)."""
    from pettingzoo import ParallelEnv

    return type("DungeonEscapeParallelEnv", (_ParallelView, ParallelEnv),
                {"__module__": __name__, "__doc__": _ParallelView.__doc__})


def parallel_env(**env_args: Any) -> Any:
    """A PettingZoo ParallelEnv of ONE arena: agents ``agent_0 .. agent_{n-1}``, Discrete(5)
    actions, Box(-1, 1, (13,)) observations. A removed agent leaves ``agents``; every reported
    agent gets the group's reward as its reward and in ``infos[agent]["group_reward"]``, with
    ``infos[agent]["group_id"] = 1``. `env_args` as for ``--env DungeonEscape``."""
    return parallel_env_class()(**env_args)
