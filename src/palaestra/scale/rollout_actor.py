"""What runs inside a Ray actor: a share of the environment copies and a copy of each policy.

`RolloutActor` is a plain class; `ray_fleet` turns it into a Ray actor class at run time, so
this module never imports `ray` and its logic can be exercised without it. One call of
`sample(weights, n_steps)` loads the weights it is handed (only when they are new), then steps
its copies `n_steps` times acting with its own policies, exactly as `EnvManager.advance` does
in-process (get each behavior's steps, act, set the actions, step), and returns every step's
records: no remote call per step, and the trainers never leave the training process.

What crosses the wire is plain data: a `PolicyRecipe` per behavior (the actor class is pickled
by reference, so it must be importable on every node: palaestra's own actors, or an installed
plugin's), the actor state (`actor_state`: the `state_dict` as numpy arrays, weights and
observation-normaliser statistics alike) and `Rollout`s (`rollout_wire`), which travel by
columns.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, TypeVar

import numpy as np

from palaestra.envs.base import (BehaviorSpec, DecisionSteps, TerminalSteps,
                                 globalise_ids)
from palaestra.exception import NonFiniteError
from palaestra.scale.rollout_wire import BehaviorStep, Rollout
from palaestra.settings import NetworkSettings


@dataclass(frozen=True)
class PolicyRecipe:
    """How to build a copy of the training process's `TorchPolicy` for one behavior: the
    arguments the trainer's `create_policy` gave it, and whether to act through the NumPy
    mirror (the run's accel plan)."""

    behavior_spec: BehaviorSpec
    network_settings: NetworkSettings
    actor_cls: type
    actor_kwargs: Dict[str, Any]
    numpy_acting: bool = False

    @classmethod
    def of(cls, policy: Any, numpy_acting: bool) -> "PolicyRecipe":
        return cls(policy.behavior_spec, policy.network_settings, policy.actor_cls,
                   dict(policy.actor_kwargs), numpy_acting)


def actor_state(policy: Any) -> Dict[str, np.ndarray]:
    """The policy's actor state as numpy arrays (weights, normaliser statistics: everything
    its `state_dict` holds), for `ray.put`. The arrays share memory with the tensors; `put`
    copies them into the object store at once."""
    return {key: value.detach().cpu().numpy()
            for key, value in policy.actor.state_dict().items()}


_Steps = TypeVar("_Steps", DecisionSteps, TerminalSteps)


_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls))
           for cls in (DecisionSteps, TerminalSteps)}


def _owned(steps: _Steps) -> _Steps:
    """`steps` with arrays of its own: an environment may reuse its buffers from one step to
    the next, and a chunk keeps every step."""
    values = []
    names = _FIELDS.get(type(steps)) or tuple(f.name for f in dataclasses.fields(steps))
    for name in names:
        value = getattr(steps, name)
        if isinstance(value, np.ndarray):
            value = value.copy()
        elif isinstance(value, list):
            value = [np.array(v) for v in value]
        values.append(value)
    return type(steps)(*values)


class RolloutActor:
    """A share of a run's copies (`make_environment(env_path, env_args, copies, seed)`), as
    actor `part` of `parts`: agent and group ids are made unique over the actors as over
    worker processes (`globalise_ids`: id * parts + part).

    `path` is the training process's `sys.path`: entries missing here are appended, so an
    environment module that the training process finds by its path (a script's folder, a
    test folder) is found on the same machine, as a spawned worker process finds it; on
    other machines it must be installed (or lie at the same path)."""

    def __init__(self, env_path: str, env_args: Any, copies: int, seed: Optional[int],
                 part: int, parts: int, path: List[str], threads: int = 1) -> None:
        try:  # Ctrl-C in a terminal reaches the whole process group: the run decides
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread of the actor's process
            pass
        sys.path.extend(p for p in path if p not in sys.path and os.path.isdir(p))
        from palaestra.accel.process import set_threads
        from palaestra.envs import make_environment

        # the actor's process is the run's: torch's threads and NumPy's BLAS threads (the
        # NumPy acting mirror, which otherwise switches BLAS to one thread and back at every
        # step, 13 us of a 2-core EPYC) get the actor's share of the node
        set_threads(max(1, threads))
        self.seed = -1 if seed is None else seed
        self.part, self.parts = part, parts
        self.env = make_environment(env_path, env_args, copies, seed)
        self.policies: Dict[str, Any] = {}
        self._loaded: Dict[str, Any] = {}  # behavior -> the weights object last loaded

    def describe(self) -> Tuple[Dict[str, BehaviorSpec], Optional[float], str, str]:
        """Its behaviors, render rate, and where it runs: Ray node id and node address."""
        import ray

        return (dict(self.env.behavior_specs), self.env.render_fps,
                ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address())

    def reset(self, recipes: Mapping[str, PolicyRecipe]) -> Dict[str, BehaviorSpec]:
        """Build the policies (once) and reset the copies; returns the behaviors."""
        from palaestra.policy import TorchPolicy

        for name, recipe in recipes.items():
            if name not in self.policies:
                policy = TorchPolicy(self.seed, recipe.behavior_spec, recipe.network_settings,
                                     recipe.actor_cls, recipe.actor_kwargs)
                policy.act_with_numpy(recipe.numpy_acting)
                self.policies[name] = policy
        self.env.reset()
        return dict(self.env.behavior_specs)

    def sample(self, weights: Mapping[str, Any], n_steps: int) -> Rollout:
        """Load `weights` (behavior -> object ref of its `actor_state`) where they changed,
        then step the copies `n_steps` times, acting with the policies."""
        self._load(weights)
        steps: List[Dict[str, BehaviorStep]] = []
        stats: Dict[str, List[Tuple[float, str]]] = {}
        env, part, parts = self.env, self.part, self.parts
        for _ in range(n_steps):
            row: Dict[str, BehaviorStep] = {}
            for name in list(env.behavior_specs):
                decision, terminal = env.get_steps(name)
                record = BehaviorStep(globalise_ids(_owned(decision), part, parts),
                                      globalise_ids(_owned(terminal), part, parts))
                policy = self.policies.get(name)
                if policy is not None and len(decision):
                    info = policy.get_action(record.decision)
                    continuous = info.env_action.continuous
                    if continuous.size and not np.isfinite(continuous.sum()):
                        raise NonFiniteError(
                            f"{name}: the policy's continuous actions are not finite (the "
                            "weights or the observations they were computed from are not): "
                            "training stopped before the environment was given them.")
                    env.set_actions(name, info.env_action)
                    record.action, record.log_probs = info.action, info.log_probs
                row[name] = record
            env.step()
            steps.append(row)
            for key, values in env.pop_stats().items():
                stats.setdefault(key, []).extend(values)
        return Rollout(steps, stats)

    def _load(self, weights: Mapping[str, Any]) -> None:
        import ray
        import torch

        new = {name: ref for name, ref in weights.items()
               if name in self.policies and self._loaded.get(name) != ref}
        if not new:
            return
        for (name, ref), state in zip(new.items(), ray.get(list(new.values()))):
            policy = self.policies[name]
            policy.actor.load_state_dict({key: torch.tensor(value)
                                          for key, value in state.items()})
            policy.weights_changed()
            self._loaded[name] = ref

    def close(self) -> None:
        self.env.close()
