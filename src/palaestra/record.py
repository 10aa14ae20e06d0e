"""`palaestra record`: expert demonstrations written as ML-Agents `.demo` files, for GAIL and
behavioral cloning here or in ML-Agents.

The expert is a trained policy (a run id, run or behavior folder, `.pt` or `.onnx`, resolved
as `palaestra play` does, in the run's environment unless `--env` names one) or a scripted
policy, `--policy module:function`, in any environment `--env` names (built-in, Gymnasium,
PettingZoo, Unity). A scripted policy is called once per step for all deciding agents of the
recorded behavior:

    def policy(obs: list[np.ndarray], action_mask: np.ndarray | None) -> actions

- `obs`: one float32 array per observation of the behavior, (n_agents, *shape), images
  channels last (height, width, channels) in [0, 1];
- `action_mask`: None, or bool (n_agents, sum(discrete branches)) with True = allowed;
- returns continuous actions (n_agents, c) in [-1, 1] (clipped there), discrete branch indices
  (n_agents, branches), a (continuous, discrete) pair for hybrid actions, or an `ActionTuple`.

The episode loop is `palaestra.play`'s (`run_episodes`); every episode of the recorded
behavior that ends, up to `--episodes`, goes into the file, which appears (atomically) only
when the recording is over.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from palaestra.demo import MAX_NAME_BYTES, DemonstrationWriter, Episode, check_name
from palaestra.exception import EnvironmentSetupError, PalaestraError
from palaestra.play import (Actor, EpisodeWatcher, as_action_tuple, is_run_folder,
                            load_policies, open_environment, policy_actor, resolve_model,
                            run_episodes)

#: A scripted policy: (observations, action mask) -> actions (see the module's docstring).
ScriptedPolicy = Callable[[List[np.ndarray], Optional[np.ndarray]], Any]


@dataclass
class RecordResult:
    """What was written: `returns` of the episodes in the file (sum of their rewards), in the
    order they ended; `steps`: their decisions; `env_steps`: environment steps taken."""

    path: str
    behavior: str
    wanted: int
    returns: List[float] = field(default_factory=list)
    steps: int = 0
    env_steps: int = 0
    interrupted: bool = False

    def lines(self) -> List[str]:
        r = np.asarray(self.returns)
        out = [f"{self.behavior}: {len(r)} episodes ({self.steps} decisions) written to "
               f"{self.path}. Mean return {r.mean():.3f}, std {r.std():.3f} (min "
               f"{r.min():.3f}, max {r.max():.3f})."]
        if len(r) < self.wanted:
            why = "Ctrl-C" if self.interrupted else f"the limit of {self.env_steps} steps"
            out.append(f"Only {len(r)} of the {self.wanted} episodes asked for ended before "
                       f"{why}.")
        return out


def record(model: Optional[str] = None, *, output: str, episodes: int = 10,
           policy: Union[None, str, ScriptedPolicy] = None, env: Optional[str] = None,
           env_args: Any = None, behavior: Optional[str] = None, deterministic: bool = False,
           seed: int = 0, name: Optional[str] = None, force: bool = False,
           max_steps: int = 100_000, results_dir: str = "results") -> RecordResult:
    """Record `episodes` episodes of a trained policy `model`, or of the scripted `policy` (a
    callable or "module:function"), into the `.demo` file `output`. An existing `output` is
    replaced only with `force`; nothing is written when no episode ends."""
    if episodes < 1:
        raise PalaestraError(f"--episodes {episodes}: give at least 1.")
    if (model is None) == (policy is None):
        raise PalaestraError("palaestra record: give either a trained policy (RUN_ID_OR_MODEL) "
                             "or --policy module:function, not both." if model else
                             "palaestra record: give a trained policy (RUN_ID_OR_MODEL) or "
                             "--policy module:function.")
    output = check_output(output, force)
    demo_name = check_name(name) if name is not None else default_name(output)
    label = policy if isinstance(policy, str) else getattr(policy, "__name__", repr(policy))
    scripted = load_scripted_policy(policy) if isinstance(policy, str) else policy
    path = resolve_model(model, results_dir) if model is not None else None
    _, environment = open_environment("record", model, path, env, env_args, seed)
    try:
        specs = dict(environment.behavior_specs)
        target = recorded_behavior(specs, behavior)
        if scripted is not None:
            actors: Dict[str, Actor] = {target: scripted_actor(scripted, specs[target], label)}
        else:
            assert path is not None
            # a run folder: every behavior acts with its own trained policy
            chosen = None if is_run_folder(path) else behavior
            actors = {n: policy_actor(p, specs[n], deterministic)
                      for n, p in load_policies(path, specs, chosen, seed).items()}
        with DemonstrationWriter(output, specs[target], name=demo_name,
                                 behavior_name=target) as writer:
            watcher = _Recording(target, writer, episodes)
            result = RecordResult(output, target, episodes)
            result.env_steps, result.interrupted = run_episodes(environment, actors, watcher,
                                                                max_steps, None, seed)
            result.returns, result.steps = watcher.returns, writer.steps
            if not watcher.returns:
                raise PalaestraError(f"palaestra record: no episode of {target} ended in "
                                     f"{result.env_steps} steps; nothing written.")
            if not force and os.path.lexists(output):
                raise PalaestraError(f"-o {output}: the file appeared while recording; "
                                     "nothing written (give --force to replace it).")
    finally:
        environment.close()
    return result


def check_output(output: str, force: bool) -> str:
    """The output file, checked before anything runs: a `.demo` name (ML-Agents reads no
    other), not replacing a file unless `force`. Missing folders of the path are made, as
    `-o demos/Expert.demo` in the docs asks (the user's own path)."""
    output = os.fspath(output)
    if not output.endswith(".demo"):
        raise PalaestraError(f"-o {output}: the file name must end in .demo (ML-Agents reads "
                             "demonstrations only from such files).")
    folder = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise PalaestraError(f"-o {output}: cannot make the folder {folder} "
                             f"({exc.strerror or exc}).") from None
    if os.path.isdir(output):
        raise PalaestraError(f"-o {output} is a folder; give a file name ending in .demo.")
    if os.path.lexists(output) and not force:
        raise PalaestraError(f"-o {output} exists; give --force to replace it.")
    return output


def default_name(output: str) -> str:
    """The file's name without `.demo`, as Unity names a recording, cut to what fits."""
    stem = "".join(c for c in os.path.basename(output)[: -len(".demo")] if c.isprintable())
    return (stem.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore")) or "palaestra"


def recorded_behavior(specs: Dict[str, Any], behavior: Optional[str]) -> str:
    if behavior is not None:
        if behavior not in specs:
            raise PalaestraError(f"--behavior {behavior}: the environment has "
                                 f"{', '.join(specs)}.")
        return behavior
    if len(specs) != 1:
        raise PalaestraError(f"the environment has {len(specs)} behaviors ({', '.join(specs)}); "
                             "name the one to record with --behavior.")
    return next(iter(specs))


def load_scripted_policy(text: str) -> ScriptedPolicy:
    """The callable `module:function` names (the module also looked for in the working
    directory, as `--env module:factory` is)."""
    from palaestra.envs.gym_adapter import import_env_module

    module_name, _, attr = text.partition(":")
    if not module_name or not attr:
        raise PalaestraError(f"--policy {text}: expected module:function (both parts "
                             "non-empty).")
    try:
        module = import_env_module(text, module_name)
    except EnvironmentSetupError as exc:
        raise PalaestraError(str(exc).replace(f"--env {text}", f"--policy {text}", 1)) from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise PalaestraError(f"--policy {text}: {module_name} has no function {attr!r}.")
    scripted: ScriptedPolicy = function
    return scripted


def scripted_actor(function: ScriptedPolicy, spec: Any, label: str) -> Actor:
    """A scripted policy as an actor: its answers checked (shape, finite, branch range, mask)
    and continuous actions clipped to [-1, 1], so that what is recorded is what was sent."""
    a = spec.action_spec
    branches = np.asarray(a.discrete_branches, np.int64)

    def act(decision: Any) -> Any:
        n = len(decision)
        try:
            answer = function(list(decision.obs), decision.action_mask)
        except Exception as exc:
            raise PalaestraError(f"--policy {label} failed: {type(exc).__name__}: "
                                 f"{exc}") from exc
        try:
            actions = as_action_tuple(answer, a, n)
        except (TypeError, ValueError):
            raise PalaestraError(
                f"--policy {label} returned {_shape_of(answer)} for {n} agents; expected "
                f"{_expected(a, n)}.") from None
        if not np.isfinite(actions.continuous).all():
            raise PalaestraError(f"--policy {label} returned a continuous action that is NaN "
                                 "or infinite.")
        actions.continuous = np.clip(actions.continuous, -1.0, 1.0)
        disc = actions.discrete
        if len(branches) and ((disc < 0) | (disc >= branches)).any():
            raise PalaestraError(f"--policy {label} returned discrete actions outside the "
                                 f"branches {branches.tolist()}: {disc.tolist()[:4]}.")
        if decision.action_mask is not None and len(branches):
            offsets = np.concatenate([[0], np.cumsum(branches)[:-1]])
            chosen = np.take_along_axis(decision.action_mask, disc + offsets, axis=1)
            if not chosen.all():
                raise PalaestraError(f"--policy {label} chose an action its action mask "
                                     "forbids.")
        return actions

    return act


def _shape_of(answer: Any) -> str:
    if isinstance(answer, (tuple, list)) and answer and not np.isscalar(answer[0]):
        return "(" + ", ".join(_shape_of(a) for a in answer) + ")"
    try:
        return f"an array of shape {np.shape(answer)}"
    except Exception:  # noqa: BLE001 - only for the message
        return type(answer).__name__


def _expected(a: Any, n: int) -> str:
    cont = f"continuous actions ({n}, {a.continuous_size})"
    disc = f"discrete branch indices ({n}, {len(a.discrete_branches)})"
    if a.continuous_size and a.discrete_branches:
        return f"a pair ({cont}, {disc})"
    return cont if a.continuous_size else disc


class _Steps:
    """One agent's episode so far: what it saw and did at each decision, and what it earned."""

    def __init__(self) -> None:
        self.obs: List[List[np.ndarray]] = []
        self.continuous: List[np.ndarray] = []
        self.discrete: List[np.ndarray] = []
        self.masks: List[Optional[np.ndarray]] = []
        self.rewards: List[float] = []

    def episode(self, final_obs: List[np.ndarray], reward: float, interrupted: bool) -> Episode:
        rewards = np.asarray(self.rewards + [reward], np.float32)
        obs = [np.stack([o[k] for o in self.obs] + [final_obs[k]])
               for k in range(len(final_obs))]
        mask = None
        if any(m is not None for m in self.masks):
            width = next(len(m) for m in self.masks if m is not None)
            mask = np.stack([np.ones(width, bool) if m is None else m for m in self.masks])
        return Episode(obs, rewards, np.stack(self.continuous), np.stack(self.discrete), mask,
                       interrupted)


class _Recording(EpisodeWatcher):
    """Every finished episode of `behavior` into `writer`, until `wanted` are written."""

    def __init__(self, behavior: str, writer: DemonstrationWriter, wanted: int) -> None:
        self.behavior, self.writer, self.wanted = behavior, writer, wanted
        self.open: Dict[int, _Steps] = {}
        self.returns: List[float] = []

    def finished(self) -> bool:
        return len(self.returns) >= self.wanted

    def seen(self, name: str, decision: Any, terminal: Any) -> None:
        if name != self.behavior:
            return
        for i, agent in enumerate(terminal.agent_id.tolist()):
            steps = self.open.pop(agent, None)
            if steps is None or self.finished():
                continue
            episode = steps.episode([np.array(o[i]) for o in terminal.obs],
                                    float(terminal.reward[i]), bool(terminal.interrupted[i]))
            self.writer.add_episode(episode)
            self.returns.append(float(np.sum(episode.rewards, dtype=np.float64)))
        for i, agent in enumerate(decision.agent_id.tolist()):
            steps = self.open.get(agent)
            if steps is not None:  # what its previous action earned
                steps.rewards.append(float(decision.reward[i]))

    def acted(self, name: str, decision: Any, actions: Any) -> None:
        if name != self.behavior:
            return
        mask = decision.action_mask
        for i, agent in enumerate(decision.agent_id.tolist()):
            steps = self.open.setdefault(agent, _Steps())
            steps.obs.append([np.array(o[i]) for o in decision.obs])  # copies: buffers get reused
            steps.continuous.append(np.array(actions.continuous[i]))
            steps.discrete.append(np.array(actions.discrete[i]))
            steps.masks.append(None if mask is None else np.array(mask[i], bool))
