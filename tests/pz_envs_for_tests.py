"""Tiny PettingZoo environments for the adapter's tests (``pettingzoo:pz_envs_for_tests:...``).

Every quantity is a simple function of the step count and the agent, so a test can say exactly
what each agent must see."""
from typing import Any, Dict, List, Optional

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils import AgentSelector

INF = np.inf


class TeamsEnv(ParallelEnv):
    """Two teams: ``predator_0``, ``predator_1`` (obs (3,) = [t, agent index, episode], actions
    Discrete(3)) and ``prey_0`` (obs (2,) = [t, episode], actions Box(-2, 2, (2,))).

    The prey terminates at ``prey_done_at``; at ``max_steps`` predator_0 is truncated and
    predator_1 terminated. Reward at step t: t + 10 * agent index (prey: t + 100). With
    ``join_at``, ``predator_2`` joins the episode at that step. With ``groups``, predators report
    ``group_id`` 1 and ``group_reward`` t / 2; the prey reports no group."""

    metadata = {"name": "teams_v0"}

    def __init__(self, prey_done_at: int = 2, max_steps: int = 4, join_at: Optional[int] = None,
                 groups: bool = False, mismatch: bool = False) -> None:
        self.possible_agents = ["predator_0", "predator_1", "prey_0"]
        if join_at is not None:
            self.possible_agents.insert(2, "predator_2")
        self.prey_done_at, self.max_steps, self.join_at = prey_done_at, max_steps, join_at
        self.groups, self.mismatch = groups, mismatch
        self.episode = -1
        self.seeds: List[Optional[int]] = []
        self.received: List[Dict[str, Any]] = []

    def observation_space(self, agent: str) -> spaces.Space:
        if agent == "prey_0":
            return spaces.Box(-INF, INF, (2,), np.float32)
        size = 4 if self.mismatch and agent == "predator_1" else 3
        return spaces.Box(-INF, INF, (size,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        if agent == "prey_0":
            return spaces.Box(-2.0, 2.0, (2,), np.float32)
        return spaces.Discrete(3)

    def _obs(self, agent: str) -> np.ndarray:
        if agent == "prey_0":
            return np.array([self.t, self.episode], np.float32)
        return np.array([self.t, int(agent[-1]), self.episode], np.float32)

    def _infos(self) -> Dict[str, Dict[str, Any]]:
        if not self.groups:
            return {a: {} for a in self.agents}
        return {a: {"group_id": 1, "group_reward": self.t / 2} if a.startswith("predator") else {}
                for a in self.agents}

    def reset(self, seed: Optional[int] = None, options: Any = None):
        self.seeds.append(seed)
        self.episode += 1
        self.t = 0
        self.agents = [a for a in self.possible_agents if a != "predator_2"]
        return {a: self._obs(a) for a in self.agents}, self._infos()

    def step(self, actions: Dict[str, Any]):
        assert set(actions) == set(self.agents), (actions, self.agents)
        self.received.append(dict(actions))
        self.t += 1
        reward = {a: float(self.t + (100 if a == "prey_0" else 10 * int(a[-1])))
                  for a in self.agents}
        term = {a: False for a in self.agents}
        trunc = {a: False for a in self.agents}
        if "prey_0" in self.agents and self.t >= self.prey_done_at:
            term["prey_0"] = True
        if self.t >= self.max_steps:
            trunc["predator_0"] = True
            term["predator_1"] = True
            if "predator_2" in self.agents:
                term["predator_2"] = True
        obs = {a: self._obs(a) for a in self.agents}
        infos = self._infos()
        self.agents = [a for a in self.agents if not (term[a] or trunc[a])]
        if self.join_at is not None and self.t == self.join_at:
            self.agents.insert(2, "predator_2")
            obs["predator_2"] = self._obs("predator_2")
            infos["predator_2"] = {}
        return obs, reward, term, trunc, infos


class CycleAEC(AECEnv):
    """An AEC game both ``player_0`` and ``player_1`` play each cycle (so it is parallelizable):
    observation {"observation": [cycle, player index], "action_mask": [1, 1, cycle % 2]} (action
    2 allowed on odd cycles), actions Discrete(3), reward at the end of a cycle = the action
    taken; all terminate after ``cycles`` cycles."""

    metadata = {"name": "cycle_aec_v0", "is_parallelizable": True}

    def __init__(self, cycles: int = 3) -> None:
        super().__init__()
        self.possible_agents = ["player_0", "player_1"]
        self.cycles = cycles
        self._obs_space = spaces.Dict({
            "observation": spaces.Box(-INF, INF, (2,), np.float32),
            "action_mask": spaces.Box(0, 1, (3,), np.int8)})
        self.render_mode = None

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(3)

    def observe(self, agent: str) -> Dict[str, np.ndarray]:
        return {"observation": np.array([self.t, int(agent[-1])], np.float32),
                "action_mask": np.array([1, 1, self.t % 2], np.int8)}

    def reset(self, seed: Optional[int] = None, options: Any = None) -> None:
        self.agents = list(self.possible_agents)
        self.t = 0
        self.rewards = {a: 0.0 for a in self.agents}
        self._cumulative_rewards = {a: 0.0 for a in self.agents}
        self.terminations = {a: False for a in self.agents}
        self.truncations = {a: False for a in self.agents}
        self.infos = {a: {} for a in self.agents}
        self._chosen: Dict[str, int] = {}
        self._selector = AgentSelector(list(self.agents))
        self.agent_selection = self._selector.reset()

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        self._chosen[agent] = int(action)
        if self._selector.is_last():
            self.t += 1
            for a in self.agents:
                self.rewards[a] = float(self._chosen[a])
                self.terminations[a] = self.t >= self.cycles
        else:
            self._clear_rewards()
        self.agent_selection = self._selector.next()
        self._accumulate_rewards()


class TurnBasedAEC(CycleAEC):
    """The same game, but not declared parallelizable."""

    metadata = {"name": "turn_based_v0", "is_parallelizable": False}


class CueEnv(ParallelEnv):
    """Two learnable teams: each agent sees a one-hot cue (2,) drawn anew every step and picks
    Discrete(2). ``red_*`` earn 0.25 for answering the cue, ``blue_*`` 0.5 for answering the
    other action. Blue agents finish after 2 steps, red ones after 4, so each team's best
    episode scores 1.0 and random play 0.5."""

    metadata = {"name": "cue_v0"}
    LENGTH = {"red": 4, "blue": 2}
    PAY = {"red": 0.25, "blue": 0.5}

    def __init__(self) -> None:
        self.possible_agents = ["red_0", "red_1", "blue_0", "blue_1"]
        self.rng = np.random.default_rng()

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.Box(0.0, 1.0, (2,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2)

    def _observe(self) -> Dict[str, np.ndarray]:
        self.cue = {a: int(self.rng.integers(2)) for a in self.agents}
        return {a: np.eye(2, dtype=np.float32)[c] for a, c in self.cue.items()}

    def reset(self, seed: Optional[int] = None, options: Any = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions: Dict[str, Any]):
        self.t += 1
        reward, term = {}, {}
        for a in self.agents:
            team = a.split("_")[0]
            right = (int(actions[a]) == self.cue[a]) == (team == "red")
            reward[a] = self.PAY[team] if right else 0.0
            term[a] = self.t >= self.LENGTH[team]
        trunc = {a: False for a in self.agents}
        infos = {a: {} for a in self.agents}
        obs = self._observe()
        self.agents = [a for a in self.agents if not term[a]]
        return obs, reward, term, trunc, infos


def not_an_env(**kwargs: Any) -> Any:
    return object()


def failing_factory(**kwargs: Any) -> Any:
    raise RuntimeError("no such arena")


class BrokenTeamsEnv(TeamsEnv):
    """TeamsEnv whose ``predator_1`` gets a broken value at step 1: ``break_what`` is
    ``"obs"`` (NaN in its observation), ``"reward"`` (a NaN reward), ``"reward_list"`` (a
    reward of two numbers) or ``"group_reward"`` (an infinite group reward)."""

    def __init__(self, break_what: str = "obs", **kwargs: Any) -> None:
        super().__init__(groups=break_what == "group_reward", **kwargs)
        self.break_what = break_what

    def step(self, actions: Dict[str, Any]):
        obs, reward, term, trunc, infos = super().step(actions)
        if self.break_what == "obs":
            obs["predator_1"] = np.array([np.nan, 1, 0], np.float32)
        elif self.break_what == "reward":
            reward["predator_1"] = float("nan")
        elif self.break_what == "reward_list":
            reward["predator_1"] = [1.0, 2.0]
        else:
            infos["predator_1"] = {"group_id": 1, "group_reward": float("inf")}
        return obs, reward, term, trunc, infos
