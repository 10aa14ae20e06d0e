"""`TorchPolicy`: acts for every agent of a behavior in one batched, gradient-free forward pass.

The policy is shared by the environment loop (acting) and the trainer (whose optimizer updates
the actor in place), so no weights are copied between them in-process. It also owns the
behavior's step count, which schedules and checkpoints read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Type

import numpy as np
import torch
from torch import nn

from palaestra.buffer import AgentBuffer
from palaestra.envs.base import ActionTuple, BehaviorSpec, DecisionSteps
from palaestra.exception import TrainerConfigError
from palaestra.accel.numpy_actor import NumpyActor
from palaestra.settings import NetworkSettings

# ML-Agents' convention: a Gaussian sample is clipped to [-3, 3] and scaled to [-1, 1] for the
# environment, while the unclipped sample is what the trainer stores and evaluates.
_CLIP = 3.0


@dataclass
class ActionInfo:
    """What the policy decided for a DecisionSteps batch.

    `action`: as sampled (stored in trajectories); `env_action`: what the environment gets;
    `log_probs`: joint log-probability per agent, (n,)."""

    action: ActionTuple
    env_action: ActionTuple
    log_probs: np.ndarray


class TorchPolicy:
    def __init__(self, seed: int, behavior_spec: BehaviorSpec, network_settings: NetworkSettings,
                 actor_cls: Type[nn.Module], actor_kwargs: Dict[str, Any],
                 device: str = "cpu") -> None:
        if seed >= 0:
            torch.manual_seed(seed)
        self.seed = seed
        self.behavior_spec = behavior_spec
        self.network_settings = network_settings
        self.device = torch.device(device)
        # Any: actors are duck-typed (SimpleActor, SharedActorCritic or a plugin's own module),
        # and nn.Module's attribute type would reject every call of their methods; narrow with
        # isinstance(policy.actor, YourActor) where the type matters.
        self.actor_cls = actor_cls
        self.actor_kwargs = dict(actor_kwargs)
        self.actor: Any = actor_cls(observation_specs=behavior_spec.observation_specs,
                                    network_settings=network_settings,
                                    action_spec=behavior_spec.action_spec, **actor_kwargs)
        self.actor.to(self.device)
        if network_settings.normalize and not callable(getattr(self.actor, "update_normalization",
                                                               None)):
            raise TrainerConfigError(
                f"network_settings.normalize is true, but the actor {actor_cls.__name__} has no "
                "update_normalization(buffer) method to keep its observation normaliser; give it "
                "one (NetworkBody's encoder has one: self.network_body.update_normalization), or "
                "set normalize: false.")
        self.global_step = 0
        # +1 at every `weights_changed`: copies of the actor in other processes (Ray actors,
        # palaestra.scale) are sent the weights again when it moved
        self.weights_version = 0
        self._tanh = bool(actor_kwargs.get("tanh_squash", False))
        # The NumPy acting mirror (palaestra.accel), when the run's accel plan switches it on.
        self._numpy_actor: Optional[NumpyActor] = None
        self._use_numpy = False

    # -- acting ------------------------------------------------------------------------------
    def get_action(self, decision_requests: DecisionSteps) -> ActionInfo:
        n = len(decision_requests)
        spec = self.behavior_spec.action_spec
        if n == 0:
            empty = spec.empty_action(0)
            return ActionInfo(empty, empty, np.zeros(0, np.float32))
        on_cpu = self.device.type == "cpu"
        if on_cpu and self._use_numpy:
            if self._numpy_actor is None:
                self._numpy_actor = NumpyActor(self.actor, self.network_settings.activation,
                                               self.seed)
            cont, disc, log_probs_np = self._numpy_actor(decision_requests.obs,
                                                         decision_requests.action_mask)
            env_cont = (cont if self._tanh or not cont.size
                        else np.clip(cont, -_CLIP, _CLIP) / _CLIP)
            return ActionInfo(ActionTuple(cont, disc), ActionTuple(env_cont, disc), log_probs_np)
        with torch.inference_mode():
            obs = [torch.from_numpy(o) if on_cpu else torch.as_tensor(o, device=self.device)
                   for o in decision_requests.obs]
            masks = None
            if decision_requests.action_mask is not None:
                masks = torch.as_tensor(decision_requests.action_mask, device=self.device)
            action, log_probs, _, _ = self.actor.get_action_and_stats(obs, masks)
            cont = action.continuous_tensor.cpu().numpy()
            disc = action.discrete_tensor.cpu().numpy()
            log_probs_np = log_probs.cpu().numpy()
        stored = ActionTuple(cont, disc)
        env_cont = cont if self._tanh else np.clip(cont, -_CLIP, _CLIP) / _CLIP
        return ActionInfo(stored, ActionTuple(env_cont, disc), log_probs_np)

    def act_with_numpy(self, on: bool) -> bool:
        """Act through the NumPy mirror of the actor (`palaestra.accel.numpy_actor`) where it
        covers the actor and the policy runs on the CPU. Returns whether it is used. Set by the
        run's accel plan; off by default."""
        self._use_numpy = bool(on) and NumpyActor.supports(self.actor)
        self._numpy_actor = None
        return self._use_numpy

    def weights_changed(self) -> None:
        """The actor's weights were changed in place (an optimizer step, a checkpoint load).
        The trainer calls this after every `_update_policy` that returns True and after a
        restore; a trainer that changes the actor's weights anywhere else calls it too, or an
        accelerated acting path, or a copy of the policy in another process, would go on acting
        with the weights it last read."""
        self.weights_version += 1
        if self._numpy_actor is not None:
            self._numpy_actor.stale = True

    def to(self, device: str | torch.device) -> "TorchPolicy":
        self.device = torch.device(device)
        self.actor.to(self.device)
        self.weights_changed()
        return self

    # -- training support --------------------------------------------------------------------
    def update_normalization(self, buffer: AgentBuffer) -> None:
        if self.network_settings.normalize:
            self.actor.update_normalization(buffer)
            self.weights_changed()

    def get_current_step(self) -> int:
        return self.global_step

    def set_step(self, step: int) -> int:
        self.global_step = int(step)
        return self.global_step

    def increment_step(self, n_steps: int) -> int:
        self.global_step += int(n_steps)
        return self.global_step

    def get_modules(self) -> Dict[str, nn.Module]:
        """What a checkpoint saves for the policy."""
        return {"Policy": self.actor}


def policy_description(policy: Any) -> Optional[Dict[str, Any]]:
    """What a checkpoint keeps to rebuild `policy`'s actor (plain values only), or None for
    an actor class that is not palaestra's own."""
    from palaestra.networks.networks import SharedActorCritic, SimpleActor

    if policy.actor_cls not in (SimpleActor, SharedActorCritic):
        return None
    spec = policy.behavior_spec
    return {"actor": policy.actor_cls.__name__,
            "actor_kwargs": dict(policy.actor_kwargs),
            "observations": [[list(o.shape), o.kind.value] for o in spec.observation_specs],
            "continuous_size": spec.action_spec.continuous_size,
            "discrete_branches": list(spec.action_spec.discrete_branches),
            "network_settings": policy.network_settings.as_dict()}
