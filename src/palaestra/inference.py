"""`palaestra.load_policy`: a trained policy for acting outside a run, from an `.onnx` export
(through onnxruntime) or from a checkpoint (a `.pt` file, a behavior's results folder, or a run
folder), with no config file and no trainer.

A checkpoint rebuilds its actor from the description the trainer saves beside the weights
(`palaestra.policy.policy_description`): observation and action shapes, network settings and the actor class,
one of palaestra's own (`SimpleActor`, `SharedActorCritic`; a name from a downloaded file never
imports code). A plugin's own actor class is used through its ONNX export instead.
"""
from __future__ import annotations

import abc
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from palaestra.envs.base import ActionSpec, BehaviorSpec, DecisionSteps, ObservationKind, \
    ObservationSpec
from palaestra.exception import CheckpointError, PalaestraError, TrainerConfigError

Actions = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


class LoadedPolicy(abc.ABC):
    """`act(obs)` with a trained policy. `obs`: one observation array per observation of the
    behavior (or one array when it has one), batched (first axis: agents) or not; images as
    the environment gives them (height, width, channels). Returns what the environment
    takes: continuous actions clipped to [-1, 1] (as in training), discrete actions as branch
    indices, and for a hybrid action space a (continuous, discrete) pair. `deterministic`
    takes the most likely action instead of a sample."""

    def __init__(self, behavior_spec: BehaviorSpec, source: str) -> None:
        self.behavior_spec = behavior_spec
        self.source = source

    def act(self, obs: Union[np.ndarray, Sequence[np.ndarray]],
            action_mask: Optional[np.ndarray] = None, deterministic: bool = True) -> Actions:
        specs = self.behavior_spec.observation_specs
        arrays = [np.asarray(obs, np.float32)] if len(specs) == 1 else \
            [np.asarray(o, np.float32) for o in obs]
        if len(arrays) != len(specs):
            raise ValueError(f"{self.source} takes {len(specs)} observations, got {len(arrays)}")
        single = arrays[0].ndim == len(specs[0].shape)
        if single:
            arrays = [a[None] for a in arrays]
        for a, spec in zip(arrays, specs):
            if a.shape[1:] != tuple(spec.shape):
                raise ValueError(f"{self.source}: an observation of shape {a.shape[1:]} where "
                                 f"the policy takes {tuple(spec.shape)}")
        mask = None
        if action_mask is not None and self.behavior_spec.action_spec.discrete_branches:
            mask = np.asarray(action_mask, bool)
            mask = mask[None] if mask.ndim == 1 else mask
        cont, disc = self._act(arrays, mask, deterministic)
        if single:
            cont, disc = cont[0], disc[0]
        spec = self.behavior_spec.action_spec
        if spec.continuous_size and spec.discrete_branches:
            return cont, disc
        return cont if spec.continuous_size else disc

    @abc.abstractmethod
    def _act(self, obs: List[np.ndarray], mask: Optional[np.ndarray], deterministic: bool
             ) -> Tuple[np.ndarray, np.ndarray]:
        """(continuous (n, c), discrete (n, b)) for a batch."""


class _TorchPolicy(LoadedPolicy):
    def __init__(self, policy: Any, source: str) -> None:
        super().__init__(policy.behavior_spec, source)
        self.policy = policy

    def _act(self, obs: List[np.ndarray], mask: Optional[np.ndarray], deterministic: bool
             ) -> Tuple[np.ndarray, np.ndarray]:
        model = self.policy.actor.action_model
        model.deterministic = deterministic
        n = obs[0].shape[0]
        info = self.policy.get_action(DecisionSteps(obs, np.zeros(n, np.float32),
                                                    np.arange(n), mask))
        return info.env_action.continuous, info.env_action.discrete


class _OnnxPolicy(LoadedPolicy):
    def __init__(self, path: str) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise PalaestraError(f"{path}: running an .onnx file needs onnxruntime: pip "
                                 "install \"palaestra[onnx]\"") from None
        try:
            self.session = onnxruntime.InferenceSession(path,
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own error types
            raise CheckpointError(f"{path} is not an ONNX model onnxruntime can run: "
                                  f"{str(exc).splitlines()[0][:200]}") from None
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        obs_names = sorted((n for n in inputs if n.startswith("obs_")),
                           key=lambda n: int(n[4:]) if n[4:].isdigit() else -1)
        if not obs_names or "version_number" not in outputs:
            raise CheckpointError(f"{path} is not a policy in ML-Agents' ONNX format (inputs "
                                  f"{sorted(inputs)}, outputs {outputs})")
        specs = []
        for name in obs_names:
            shape = [d if isinstance(d, int) else -1 for d in inputs[name].shape[1:]]
            if len(shape) == 3:  # the file is channel-first; the environment is not
                specs.append(ObservationSpec((shape[1], shape[2], shape[0]),
                                             ObservationKind.VISUAL))
            else:
                specs.append(ObservationSpec(tuple(shape)))
        consts = dict(zip(outputs, self.session.run(None, self._dummy(specs, inputs))))
        continuous = int(consts["continuous_action_output_shape"].reshape(-1)[0]) \
            if "continuous_action_output_shape" in consts else 0
        branches = tuple(int(b) for b in consts["discrete_action_output_shape"].reshape(-1)) \
            if "discrete_action_output_shape" in consts else ()
        super().__init__(BehaviorSpec(specs, ActionSpec(continuous, branches)), path)
        self.obs_names = obs_names
        self.has_mask = "action_masks" in inputs

    def _dummy(self, specs: Sequence[ObservationSpec], inputs: Mapping[str, Any]
               ) -> Dict[str, np.ndarray]:
        from palaestra.export import onnx_shape

        feed = {f"obs_{i}": np.zeros((1, *onnx_shape(s.shape)), np.float32)
                for i, s in enumerate(specs)}
        if "action_masks" in inputs:
            width = inputs["action_masks"].shape[1]
            feed["action_masks"] = np.ones((1, width if isinstance(width, int) else 1),
                                           np.float32)
        return feed

    def _act(self, obs: List[np.ndarray], mask: Optional[np.ndarray], deterministic: bool
             ) -> Tuple[np.ndarray, np.ndarray]:
        feed = {name: np.ascontiguousarray(o.transpose(0, 3, 1, 2)) if o.ndim == 4 else o
                for name, o in zip(self.obs_names, obs)}
        n = obs[0].shape[0]
        spec = self.behavior_spec.action_spec
        if self.has_mask:
            width = sum(spec.discrete_branches)
            feed["action_masks"] = np.ones((n, width), np.float32) if mask is None \
                else mask.astype(np.float32)
        prefix = "deterministic_" if deterministic else ""
        wanted = ([f"{prefix}continuous_actions"] if spec.continuous_size else []) + \
            ([f"{prefix}discrete_actions"] if spec.discrete_branches else [])
        got = dict(zip(wanted, self.session.run(wanted, feed)))
        cont = got.get(f"{prefix}continuous_actions", np.zeros((n, 0), np.float32))
        disc = got.get(f"{prefix}discrete_actions", np.zeros((n, 0), np.int64))
        return cont.astype(np.float32), disc.astype(np.int64)


def _checkpoint_file(path: str, behavior: Optional[str]) -> str:
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise PalaestraError(f"{path}: no such file or folder (give an .onnx file, a .pt "
                             "checkpoint, a behavior's results folder or a run folder)")
    if os.path.isfile(os.path.join(path, "checkpoint.pt")):
        return os.path.join(path, "checkpoint.pt")
    found = {}
    for root, dirs, files in os.walk(path):
        depth = os.path.relpath(root, path).count(os.sep)
        # a run's behavior folders lie at most a few levels down (namespaced Gymnasium ids)
        dirs[:] = [] if depth >= 3 else [d for d in dirs if d != "run_logs" and
                                         not os.path.islink(os.path.join(root, d))]
        if "checkpoint.pt" in files:
            found[os.path.relpath(root, path).replace(os.sep, "/")] = \
                os.path.join(root, "checkpoint.pt")
    if behavior is not None:
        if behavior not in found:
            raise PalaestraError(f"{path} has no checkpoint of behavior {behavior!r}; it has: "
                                 f"{', '.join(sorted(found)) or 'none'}")
        return found[behavior]
    if len(found) != 1:
        raise PalaestraError(f"{path} holds checkpoints of {len(found)} behaviors "
                             f"({', '.join(sorted(found)) or 'none'}): name one with behavior=")
    return next(iter(found.values()))


def load_policy(path: Union[str, "os.PathLike[str]"], behavior: Optional[str] = None,
                seed: int = 0) -> LoadedPolicy:
    """A trained policy from an `.onnx` file, a `.pt` checkpoint, a behavior's results folder
    or a run folder (`behavior=` picks one when it trained several)."""
    path = os.fspath(path)
    if path.endswith(".onnx") and os.path.isfile(path):
        return _OnnxPolicy(path)
    from palaestra.checkpoint import load_checkpoint
    from palaestra.config import network_settings_from
    from palaestra.networks.networks import SharedActorCritic, SimpleActor
    from palaestra.policy import TorchPolicy

    file = _checkpoint_file(path, behavior)
    saved = load_checkpoint(file)
    desc = saved.get("policy")
    if not isinstance(desc, dict):
        raise CheckpointError(f"{file} does not describe its policy (written by an older "
                              "palaestra, or by a trainer with its own actor class): use the "
                              "run's .onnx export instead")
    actors = {"SimpleActor": SimpleActor, "SharedActorCritic": SharedActorCritic}
    try:
        actor_cls = actors[desc["actor"]]
        obs = [ObservationSpec(tuple(int(d) for d in shape), ObservationKind(kind))
               for shape, kind in desc["observations"]]
        spec = BehaviorSpec(obs, ActionSpec(int(desc["continuous_size"]),
                                            tuple(int(b) for b in desc["discrete_branches"])))
        settings = network_settings_from(desc["network_settings"], file)
        kwargs = {k: v for k, v in dict(desc["actor_kwargs"]).items()
                  if k in ("conditional_sigma", "tanh_squash", "stream_names")}
        policy = TorchPolicy(seed, spec, settings, actor_cls, kwargs)
        policy.actor.load_state_dict(saved["modules"]["Policy"])
    except (KeyError, TypeError, ValueError, RuntimeError, TrainerConfigError) as exc:
        raise CheckpointError(f"{file}: its policy cannot be rebuilt: {exc}") from None
    policy.act_with_numpy(False)
    return _TorchPolicy(policy, file)
