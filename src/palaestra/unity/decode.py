"""Unity's agent infos as palaestra's step batches, and behavior specs from brain parameters.

The conventions differ in three places, each converted here once: Unity sends images
channels-first and palaestra's encoders take them channels-last (height, width, channels);
Unity's action mask marks the actions that are NOT allowed, palaestra's the allowed ones; and
Unity's agent and group ids are per instance, made unique over instances by the caller.
"""
from __future__ import annotations

import io
import itertools
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from palaestra.envs.base import (ActionSpec, ActionTuple, BehaviorSpec, DecisionSteps,
                                 ObservationKind, ObservationSpec, TerminalSteps)
from palaestra.exception import EnvironmentSetupError
from palaestra.unity import protocol

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_VARIABLE_SIZE = 4  # DimensionPropertyProto.VARIABLE_SIZE


def behavior_spec(brain: Any, first_info: Optional[Any]) -> BehaviorSpec:
    """A behavior's spec: actions from its brain parameters (the deprecated fields of Unity
    packages before hybrid actions included), observations from its first agent's info."""
    name = brain.brain_name
    spec = brain.action_spec
    if spec.num_continuous_actions == 0 and spec.num_discrete_actions == 0:
        sizes = tuple(int(s) for s in brain.vector_action_size_deprecated)
        if brain.vector_action_space_type_deprecated == 1:  # continuous
            action = ActionSpec(sizes[0] if sizes else 0, ())
        else:
            action = ActionSpec(0, sizes)
    else:
        action = ActionSpec(int(spec.num_continuous_actions),
                            tuple(int(b) for b in spec.discrete_branch_sizes))
    observations = []
    for i, obs in enumerate(first_info.observations if first_info is not None else ()):
        shape = tuple(int(d) for d in obs.shape)
        if _VARIABLE_SIZE in [int(p) for p in obs.dimension_properties]:
            raise EnvironmentSetupError(
                f"Behavior {name}: observation {obs.name or i} has a variable number of "
                "entities (a BufferSensor); palaestra cannot train it yet. Remove the sensor "
                "or use fixed-size observations.")
        if len(shape) == 3:  # Unity: channels, height, width
            observations.append(ObservationSpec((shape[1], shape[2], shape[0]),
                                                ObservationKind.VISUAL, obs.name or f"obs_{i}"))
        elif len(shape) == 1:
            observations.append(ObservationSpec(shape, ObservationKind.VECTOR,
                                                obs.name or f"obs_{i}"))
        else:
            raise EnvironmentSetupError(
                f"Behavior {name}: observation {obs.name or i} has shape {list(shape)}; "
                "palaestra takes vectors (one dimension) and images (three).")
    if not observations:
        raise EnvironmentSetupError(f"Behavior {name}: its agents send no observation.")
    return BehaviorSpec(observations, action)


def steps(infos: Sequence[Any], spec: BehaviorSpec, name: str
          ) -> Tuple[DecisionSteps, TerminalSteps, List[int]]:
    """(decision steps, terminal steps, index in `infos` of each deciding agent) of one
    behavior's agent infos, in Unity's order (actions go back in the decision order)."""
    done = np.fromiter((i.done for i in infos), bool, len(infos))
    deciding = np.flatnonzero(~done)
    ending = np.flatnonzero(done)
    obs = [observations(infos, k, o, name) for k, o in enumerate(spec.observation_specs)]
    reward = np.fromiter((i.reward for i in infos), np.float32, len(infos))
    ids = np.fromiter((i.id for i in infos), np.int64, len(infos))
    groups = np.fromiter((i.group_id for i in infos), np.int64, len(infos))
    group_reward = np.fromiter((i.group_reward for i in infos), np.float32, len(infos))
    if not (np.isfinite(reward).all() and np.isfinite(group_reward).all()):
        raise EnvironmentSetupError(f"Behavior {name}: Unity sent a reward that is NaN or "
                                    "infinite (agent ids "
                                    f"{ids[~(np.isfinite(reward) & np.isfinite(group_reward))]})")
    has_groups = bool(groups.any())
    mask = allowed_actions(infos, deciding, spec.action_spec)
    decision = DecisionSteps([o[deciding] for o in obs], reward[deciding], ids[deciding], mask,
                             groups[deciding] if has_groups else None,
                             group_reward[deciding] if has_groups else None)
    interrupted = np.fromiter((i.max_step_reached for i in infos), bool, len(infos))
    terminal = TerminalSteps([o[ending] for o in obs], reward[ending], interrupted[ending],
                             ids[ending], groups[ending] if has_groups else None,
                             group_reward[ending] if has_groups else None)
    return decision, terminal, deciding.tolist()


def observations(infos: Sequence[Any], k: int, spec: ObservationSpec, name: str) -> np.ndarray:
    """Observation `k` of every info in `infos` as one float32 array (len(infos), *spec.shape),
    channels last; PNG-compressed ones decoded. Used for step batches and for demonstration
    files (`palaestra.demo`), which hold the same protos."""
    vectors = _vectors(infos, k, spec)
    if vectors is not None:
        out = vectors
    else:
        out = _per_agent(infos, k, spec, name)
    if not np.isfinite(out).all():
        raise EnvironmentSetupError(f"Behavior {name}: Unity sent an observation with NaN or "
                                    f"infinite values (observation {k}).")
    return out


def _vectors(infos: Sequence[Any], k: int, spec: ObservationSpec) -> Optional[np.ndarray]:
    """The common case in one pass: a float vector of the expected size from every agent
    (None otherwise, and the per-agent path says what is wrong)."""
    if len(spec.shape) != 1:
        return None
    size = spec.shape[0]
    try:
        data = [info.observations[k].float_data.data for info in infos]
    except IndexError:
        return None
    if any(len(d) != size for d in data) or \
            any(info.observations[k].compression_type != protocol.NONE for info in infos):
        return None
    flat = np.fromiter(itertools.chain.from_iterable(data), np.float32, len(infos) * size)
    return flat.reshape(len(infos), size)


def _per_agent(infos: Sequence[Any], k: int, spec: ObservationSpec, name: str) -> np.ndarray:
    out = np.empty((len(infos), *spec.shape), np.float32)
    for row, info in enumerate(infos):
        if k >= len(info.observations):
            raise EnvironmentSetupError(f"Behavior {name}: agent {info.id} sent "
                                        f"{len(info.observations)} observations, its behavior "
                                        f"has {k + 1} or more.")
        obs = info.observations[k]
        if obs.compression_type == protocol.PNG:
            chw = decode_png_observation(obs, name)
        else:
            chw = np.asarray(obs.float_data.data, np.float32)
            expected = math.prod(int(d) for d in obs.shape)
            if chw.size != expected:
                raise EnvironmentSetupError(
                    f"Behavior {name}: agent {info.id} sent {chw.size} values for an "
                    f"observation of shape {list(obs.shape)}.")
            chw = chw.reshape([int(d) for d in obs.shape])
        value = np.moveaxis(chw, 0, -1) if chw.ndim == 3 else chw
        if value.shape != spec.shape:
            raise EnvironmentSetupError(
                f"Behavior {name}: agent {info.id} sent observation {k} of shape "
                f"{list(value.shape)} (channels last) where the behavior has {list(spec.shape)}.")
        out[row] = value
    return out


def decode_png_observation(obs: Any, name: str) -> np.ndarray:
    """One PNG-compressed observation as float32 channels-first in [0, 1]: several PNGs one
    after another hold more than 3 channels; the channel mapping averages decoded channels
    into observation channels (-1 drops one), as Unity's compressed sensors write them."""
    from PIL import Image

    data = bytes(obs.compressed_data)
    shape = [int(d) for d in obs.shape]
    images = []
    start = data.find(_PNG_SIGNATURE)
    while start >= 0:
        end = data.find(_PNG_SIGNATURE, start + len(_PNG_SIGNATURE))
        chunk = data[start:end if end >= 0 else len(data)]
        try:
            with Image.open(io.BytesIO(chunk)) as image:
                array = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB", "RGBA")
                                   else image, np.float32) / 255.0
        except Exception as exc:  # noqa: BLE001 - a broken image is the environment's error
            raise EnvironmentSetupError(f"Behavior {name}: a PNG observation does not decode "
                                        f"({type(exc).__name__}: {exc})") from None
        images.append(array[:, :, None] if array.ndim == 2 else array)
        start = end
    if not images:
        raise EnvironmentSetupError(f"Behavior {name}: a PNG-compressed observation holds no "
                                    "PNG image.")
    channels = np.concatenate([np.moveaxis(a, -1, 0) for a in images], axis=0)
    mapping = [int(m) for m in obs.compressed_channel_mapping]
    if mapping:
        if len(mapping) != channels.shape[0]:
            raise EnvironmentSetupError(f"Behavior {name}: the channel mapping has "
                                        f"{len(mapping)} entries for {channels.shape[0]} "
                                        "decoded channels.")
        kept = sorted({m for m in mapping if m >= 0})
        if kept != list(range(len(kept))):
            raise EnvironmentSetupError(f"Behavior {name}: invalid channel mapping {mapping}.")
        index = np.asarray(mapping)
        channels = np.stack([channels[index == k].mean(axis=0) for k in kept])
    elif shape and shape[0] == 1:
        channels = images[0].mean(axis=-1)[None]
    else:
        channels = channels[: shape[0]] if shape else channels
    if list(channels.shape) != shape:
        raise EnvironmentSetupError(f"Behavior {name}: a PNG observation decodes to shape "
                                    f"{list(channels.shape)}, its proto says {shape}.")
    return channels.astype(np.float32)


def allowed_actions(infos: Sequence[Any], deciding: np.ndarray, spec: ActionSpec
                    ) -> Optional[np.ndarray]:
    """(n, sum of branches) True = allowed, from Unity's masks (True = NOT allowed); None when
    no deciding agent masks anything. A mask of the wrong length masks nothing, as in
    ML-Agents."""
    total = sum(spec.discrete_branches)
    if total == 0 or not len(deciding):
        return None
    rows = [infos[i].action_mask for i in deciding]
    if not any(len(r) == total and any(r) for r in rows):
        return None
    allowed = np.ones((len(deciding), total), bool)
    for row, masked in enumerate(rows):
        if len(masked) == total:
            allowed[row] = ~np.fromiter(masked, bool, total)
    # a branch with every action masked would leave nothing to sample: allow all of it
    start = 0
    for size in spec.discrete_branches:
        dead = ~allowed[:, start:start + size].any(axis=1)
        allowed[dead, start:start + size] = True
        start += size
    return allowed


def action_protos(actions: ActionTuple) -> List[Any]:
    """One AgentActionProto per agent, with the deprecated vector (continuous then discrete,
    as floats) that Unity packages before hybrid actions read."""
    n = len(actions)
    if n == 0:
        return []
    cont = np.asarray(actions.continuous, np.float32).reshape(n, -1).tolist()
    disc = np.asarray(actions.discrete, np.int64).reshape(n, -1).tolist()
    make = protocol.AgentActionProto
    return [make(continuous_actions=c, discrete_actions=d,
                 vector_actions_deprecated=c + [float(v) for v in d])
            for c, d in zip(cont, disc)]


def parse_behavior_name(name: str) -> Tuple[str, int]:
    """`Name?team=1` -> ("Name", 1); a name without a team is team 0 (ML-Agents' rule)."""
    from urllib.parse import parse_qs, urlparse

    parsed = urlparse(name)
    team = parse_qs(parsed.query).get("team", ["0"])[0]
    try:
        return parsed.path, int(team)
    except ValueError:
        return parsed.path, 0


def infos_by_behavior(output: Any) -> Dict[str, List[Any]]:
    return {name: list(lst.value) for name, lst in output.agentInfos.items()}
