"""ML-Agents' demonstration files (``.demo``): read into an `AgentBuffer`, written from episodes.

The layout, as ML-Agents' ``demo_loader.py`` reads it and Unity's ``DemonstrationWriter``
writes it; every message is length-delimited (a varint byte count, then the protobuf bytes):

- byte 0: a `DemonstrationMetaProto` (api_version 1, demonstration_name, number_steps,
  number_episodes, mean_reward). Unity writes it again at the end of a recording, over the
  start of the file, so `INITIAL_POS` bytes are reserved for it; the rest are padding.
- byte `INITIAL_POS` (33): a `BrainParametersProto` (behavior name, action spec).
- then `number_steps` `AgentInfoActionPairProto`s, one agent's steps in order: its info (the
  observations, the reward received since its previous decision, done, max_step_reached, an
  action mask with True = NOT allowed) and an action. Unity appends a copy of the header's bytes
  after them, so a reader stops after number_steps pairs (0: a file Unity never closed, read to
  its end).

Rows follow ML-Agents' ``demo_to_buffer``: the observation and action of a pair, the reward and
done of the NEXT pair (what that action earned, and whether it ended the episode); the last pair
of a file makes no row. One difference: ML-Agents also makes a row of each pair that ends an
episode (done), whose observation is the final one and whose action no one took; palaestra
makes none and gives that observation as the last row's next observation instead.

Unity records an agent's info before the agent decides, so the action in a pair recorded in
Unity is the one of the agent's previous decision; ML-Agents reads pairs as they stand, and so
does this module. The writer stores each decision's own action, as it was taken.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from palaestra.buffer import AgentBuffer, BufferKey, next_obs_key, obs_key
from palaestra.envs.base import ActionTuple, BehaviorSpec
from palaestra.exception import PalaestraError, TrainerConfigError

#: Where the brain parameters start; the header (delimited) must end before it.
INITIAL_POS = 33
#: `DemonstrationMetaProto.api_version` values ML-Agents reads (and so palaestra), and the one
#: written (Unity's `DemonstrationMetaData.ApiVersion`).
SUPPORTED_API_VERSIONS = frozenset({0, 1})
API_VERSION = 1
#: Unity's recorder keeps demonstration names to 16 characters; with the step and episode
#: counts they must fit the 33 header bytes.
MAX_NAME_BYTES = 16
#: Refuse observations larger than this (elements, one agent, one step): no sensor comes near,
#: and a forged shape must not make the reader allocate gigabytes.
MAX_OBSERVATION_SIZE = 2 ** 24
#: PNG observations decode to float32: refuse files that would decode to more than this many
#: bytes per byte of file, or 1 GiB, whichever is larger (a few KB of PNG can say 4096x4096).
PNG_EXPANSION_LIMIT = 256

PathLike = Union[str, "os.PathLike[str]"]


class DemonstrationError(TrainerConfigError):
    """A demonstration file or folder that cannot be used: missing, truncated, corrupt, of an
    unsupported version, or not fitting the behavior that would learn from it."""


class DemonstrationMeta(NamedTuple):
    """One file's header, as written (Unity's counts its closing as one more episode)."""

    path: str
    api_version: int
    name: str
    number_steps: int
    number_episodes: int
    mean_reward: float


@dataclass
class Demonstrations:
    """Demonstrations ready to learn from.

    `buffer` columns, one row per step: `obs_key(i)` / `next_obs_key(i)` float32 (n, *shape)
    (images channels last), `BufferKey.CONTINUOUS_ACTION` float32 (n, c),
    `BufferKey.DISCRETE_ACTION` int64 (n, branches), `BufferKey.ACTION_MASK` bool
    (n, sum(branches)) True = allowed, `BufferKey.ENVIRONMENT_REWARDS` float32 (what the row's
    action earned), `BufferKey.DONE` and `BufferKey.INTERRUPTED` float32 (the episode ended
    after the row's action; interrupted: cut by a step limit). `episodes`: episodes that ended
    (rows after the last end of a file are kept, as ML-Agents does, and not counted);
    `mean_reward`: the mean of their returns; `steps`: rows."""

    spec: BehaviorSpec
    buffer: AgentBuffer
    episodes: int
    steps: int
    mean_reward: float
    name: str
    behavior_name: str
    files: List[str] = field(default_factory=list)
    metas: List[DemonstrationMeta] = field(default_factory=list)
    returns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def rows(self, user: str) -> AgentBuffer:
        """The buffer, for a `user` (GAIL, cloning) that samples from it: refused when it holds
        no row (every recorded step ended an episode)."""
        if not self.buffer.num_experiences:
            raise DemonstrationError(f"{user}: the demonstrations in {', '.join(self.files)} "
                                     "hold no step to learn from (every recorded step ends "
                                     "an episode).")
        return self.buffer


@dataclass
class Episode:
    """One agent's finished episode of T decisions, for `write_demonstration`.

    `obs`: one array per observation, (T + 1, *shape): the observation at each decision, then
    the final one; `rewards` (T,): what each action earned; `continuous` (T, c) and `discrete`
    (T, branches) the actions (None where the spec has none); `action_mask` (T, sum(branches))
    True = allowed, or None; `interrupted`: cut by a step limit rather than ended."""

    obs: Sequence[np.ndarray]
    rewards: np.ndarray
    continuous: Optional[np.ndarray] = None
    discrete: Optional[np.ndarray] = None
    action_mask: Optional[np.ndarray] = None
    interrupted: bool = False


# --------------------------------------------------------------------------------- reading


def demo_files(path: PathLike) -> List[str]:
    """`path` if it is a `.demo` file, or the `.demo` files of a folder, sorted by name."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".demo")
                       and os.path.isfile(os.path.join(path, n)))
        if not files:
            raise DemonstrationError(f"demonstrations {path}: the folder holds no .demo file.")
        return files
    if os.path.isfile(path):
        if not path.endswith(".demo"):
            raise DemonstrationError(f"demonstrations {path}: not a .demo file (ML-Agents' "
                                     "demonstration files end in .demo).")
        return [path]
    raise DemonstrationError(f"demonstrations {path}: no such file or folder (give a .demo "
                             "file or a folder of them).")


def load_demonstrations(path: PathLike, behavior_spec: Optional[BehaviorSpec] = None
                        ) -> Demonstrations:
    """The demonstrations of a `.demo` file or of every `.demo` file in a folder (sorted by
    name; each file's steps are its own: the last pair of one never pairs with the next file).

    With `behavior_spec`, demonstrations whose observation shapes or actions differ from it are
    refused. Every fault raises `DemonstrationError` (a `TrainerConfigError`) naming the file."""
    files = demo_files(path)
    parts, metas = [], []
    spec: Optional[BehaviorSpec] = None
    behavior_name = ""
    for file in files:
        meta, brain, pairs = read_demo_file(file)
        file_spec = _spec(file, brain, pairs[0].agent_info)
        if spec is None:
            spec, behavior_name = file_spec, brain.brain_name
            if behavior_spec is not None:
                _check_fits(file, file_spec, behavior_spec, "the behavior")
        else:
            _check_fits(file, file_spec, spec, files[0])
        metas.append(meta)
        parts.append(_rows(file, pairs, spec, brain.brain_name))
    assert spec is not None
    returns = _episode_returns(parts)
    buffer = parts[0]  # its columns exist even when a file makes no row
    for part in parts[1:]:
        buffer.append_buffer(part)
    return Demonstrations(spec, buffer, len(returns), len(buffer),
                          float(returns.mean()) if len(returns) else 0.0, metas[0].name,
                          behavior_name, files, metas, returns)


def read_demo_file(path: str) -> Tuple[DemonstrationMeta, Any, List[Any]]:
    """(header, `BrainParametersProto`, `AgentInfoActionPairProto`s) of one file, checked:
    every length stays inside the file, so nothing larger than the file is allocated."""
    from palaestra.unity import protocol

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise DemonstrationError(f"demonstration file {path} cannot be read: "
                                 f"{exc.strerror or exc}") from None
    start, end = _delimited(path, data, 0, "its header")
    if end > INITIAL_POS:
        raise DemonstrationError(f"demonstration file {path}: its header is {end} bytes long; "
                                 f"ML-Agents' layout has {INITIAL_POS} (not a .demo file, or "
                                 "corrupt).")
    proto = _parse(protocol.DemonstrationMetaProto, data[start:end], path, "its header")
    if proto.api_version not in SUPPORTED_API_VERSIONS:
        raise DemonstrationError(
            f"demonstration file {path}: api_version {proto.api_version} is not supported "
            f"(palaestra and ML-Agents read {sorted(SUPPORTED_API_VERSIONS)}).")
    meta = DemonstrationMeta(path, proto.api_version, proto.demonstration_name,
                             proto.number_steps, proto.number_episodes, proto.mean_reward)
    if len(data) < INITIAL_POS:
        raise DemonstrationError(f"demonstration file {path} is truncated: {len(data)} bytes, "
                                 "less than its header and brain parameters take.")
    start, pos = _delimited(path, data, INITIAL_POS, "its brain parameters")
    brain = _parse(protocol.BrainParametersProto, data[start:pos], path, "its brain parameters")
    pairs: List[Any] = []
    expected = meta.number_steps
    while pos < len(data) and (expected <= 0 or len(pairs) < expected):
        start, pos = _delimited(path, data, pos, f"step {len(pairs)}")
        pairs.append(_parse(protocol.AgentInfoActionPairProto, data[start:pos], path,
                            f"step {len(pairs)}"))
    if expected > 0 and len(pairs) < expected:
        raise DemonstrationError(f"demonstration file {path} is truncated: it holds "
                                 f"{len(pairs)} of the {expected} steps its header announces.")
    if not pairs:
        raise DemonstrationError(f"demonstration file {path} holds no steps.")
    return meta, brain, pairs


def _varint(path: str, data: bytes, pos: int, what: str) -> Tuple[int, int]:
    """(value, position after it) of the varint at `pos`: at most 5 bytes (a uint32)."""
    value = 0
    for i in range(5):
        if pos + i >= len(data):
            raise DemonstrationError(f"demonstration file {path} is truncated: it ends inside "
                                     f"the length of {what} (byte {pos + i}).")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value, pos + i + 1
    raise DemonstrationError(f"demonstration file {path} is corrupt: the length of {what} at "
                             f"byte {pos} is not a valid varint.")


def _delimited(path: str, data: bytes, pos: int, what: str) -> Tuple[int, int]:
    """(start, end) of the length-delimited message at `pos`, checked against the file."""
    size, start = _varint(path, data, pos, what)
    if start + size > len(data):
        raise DemonstrationError(f"demonstration file {path} is truncated or corrupt: {what} "
                                 f"at byte {pos} declares {size} bytes, {len(data) - start} "
                                 "are left.")
    return start, start + size


def _parse(cls: Any, data: bytes, path: str, what: str) -> Any:
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]

    try:
        return cls.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:  # RuntimeError: recursion depth
        why = str(exc).splitlines()[0] if str(exc) else "bad protobuf bytes"
        raise DemonstrationError(f"demonstration file {path} is corrupt: {what} does not "
                                 f"decode ({why}).") from None


def _spec(path: str, brain: Any, first_info: Any) -> BehaviorSpec:
    from palaestra.exception import EnvironmentSetupError
    from palaestra.unity import decode

    try:
        spec = decode.behavior_spec(brain, first_info)
    except EnvironmentSetupError as exc:
        raise DemonstrationError(f"demonstration file {path}: {exc}") from None
    for i, obs in enumerate(spec.observation_specs):
        if math.prod(obs.shape) > MAX_OBSERVATION_SIZE or min(obs.shape) < 1:
            raise DemonstrationError(f"demonstration file {path}: observation {i} has shape "
                                     f"{list(obs.shape)}; palaestra reads observations of 1 "
                                     f"to {MAX_OBSERVATION_SIZE} values.")
    return spec


def describe_spec(spec: BehaviorSpec) -> str:
    a = spec.action_spec
    return (f"observations {[tuple(o.shape) for o in spec.observation_specs]}, "
            f"{a.continuous_size} continuous actions and discrete branches "
            f"{list(a.discrete_branches)}")


def _check_fits(path: str, got: BehaviorSpec, wanted: BehaviorSpec, whose: str) -> None:
    shapes = [tuple(o.shape) for o in got.observation_specs]
    if shapes != [tuple(o.shape) for o in wanted.observation_specs] or \
            (got.action_spec.continuous_size, tuple(got.action_spec.discrete_branches)) != \
            (wanted.action_spec.continuous_size, tuple(wanted.action_spec.discrete_branches)):
        raise DemonstrationError(f"demonstration file {path} does not fit: it has "
                                 f"{describe_spec(got)}; {whose} has {describe_spec(wanted)}.")


def _rows(path: str, pairs: Sequence[Any], spec: BehaviorSpec, behavior: str) -> AgentBuffer:
    from palaestra.exception import EnvironmentSetupError
    from palaestra.unity import decode

    infos = [p.agent_info for p in pairs]
    n = len(infos)
    done = np.fromiter((i.done for i in infos), bool, n)
    rows = np.flatnonzero(~done[:-1])  # a pair that ends an episode, and the last, make none
    after = rows + 1
    _check_observation_sizes(path, infos, spec, os.path.getsize(path))
    out = AgentBuffer()
    try:
        for k, o in enumerate(spec.observation_specs):
            values = decode.observations(infos, k, o, behavior)
            out[obs_key(k)] = values[rows]
            out[next_obs_key(k)] = values[after]
    except EnvironmentSetupError as exc:
        raise DemonstrationError(f"demonstration file {path}: {exc}") from None
    cont, disc = _actions(path, [pairs[int(i)].action_info for i in rows], rows, spec)
    out[BufferKey.CONTINUOUS_ACTION] = cont
    out[BufferKey.DISCRETE_ACTION] = disc
    mask = decode.allowed_actions(infos, rows, spec.action_spec)
    out[BufferKey.ACTION_MASK] = np.ones((len(rows), sum(spec.action_spec.discrete_branches)),
                                         bool) if mask is None else mask
    reward = np.fromiter((i.reward for i in infos), np.float32, n)
    if not np.isfinite(reward).all():
        raise DemonstrationError(f"demonstration file {path}: a reward is NaN or infinite "
                                 f"(step {int(np.flatnonzero(~np.isfinite(reward))[0])}).")
    interrupted = np.fromiter((i.max_step_reached for i in infos), bool, n)
    out[BufferKey.ENVIRONMENT_REWARDS] = reward[after]
    out[BufferKey.DONE] = done[after].astype(np.float32)
    out[BufferKey.INTERRUPTED] = (done & interrupted)[after].astype(np.float32)
    return out


def _check_observation_sizes(path: str, infos: Sequence[Any], spec: BehaviorSpec,
                             file_size: int) -> None:
    """Before anything is decoded: uncompressed observations hold as many values as their
    shape says (so they are no larger than the file), and PNG ones could not decode to far
    more memory than the file (or 1 GiB) takes."""
    from palaestra.unity import protocol

    n, specs = len(infos), spec.observation_specs
    counts = np.fromiter((len(i.observations) for i in infos), np.int64, n)
    if (counts < len(specs)).any():
        step = int(np.flatnonzero(counts < len(specs))[0])
        raise DemonstrationError(f"demonstration file {path}: step {step} has {counts[step]} "
                                 f"observations, the first has {len(specs)}.")
    png_values = 0
    for k, o in enumerate(specs):
        size = math.prod(o.shape)
        png = np.fromiter((i.observations[k].compression_type == protocol.PNG for i in infos),
                          bool, n)
        held = np.fromiter((len(i.observations[k].float_data.data) for i in infos), np.int64, n)
        wrong = np.flatnonzero(~png & (held != size))
        if len(wrong):
            raise DemonstrationError(f"demonstration file {path}: step {wrong[0]} holds "
                                     f"{held[wrong[0]]} values for observation {k} of shape "
                                     f"{list(o.shape)}.")
        png_values += int(png.sum()) * size
    if 4 * png_values > max(2 ** 30, PNG_EXPANSION_LIMIT * file_size):
        raise DemonstrationError(f"demonstration file {path}: its PNG observations would "
                                 f"decode to {4 * png_values / 2 ** 30:.1f} GiB; split the "
                                 "recording into several files.")


def _actions(path: str, actions: Sequence[Any], rows: np.ndarray, spec: BehaviorSpec
             ) -> Tuple[np.ndarray, np.ndarray]:
    """(continuous, discrete) of the rows. A pair without actions (Unity's first step) gives
    zeros; files from before hybrid actions hold them in the deprecated vector."""
    a = spec.action_spec
    c, branches = a.continuous_size, np.asarray(a.discrete_branches, np.int64)
    cont = np.zeros((len(actions), c), np.float32)
    disc = np.zeros((len(actions), len(branches)), np.int64)
    for row, action in enumerate(actions):
        cv, dv = list(action.continuous_actions), list(action.discrete_actions)
        if not cv and not dv:
            old = list(action.vector_actions_deprecated)
            cv, dv = (old, []) if c else ([], old)
        if not cv and not dv:
            continue
        if len(cv) != c or len(dv) != len(branches):
            raise DemonstrationError(
                f"demonstration file {path}: step {int(rows[row])} holds {len(cv)} continuous "
                f"and {len(dv)} discrete actions; its brain parameters say {c} and "
                f"{len(branches)}.")
        cont[row], values = cv, np.asarray(dv, np.float64)
        if len(values) and ((values != np.round(values)) | (values < 0) |
                            (values >= branches)).any():
            raise DemonstrationError(f"demonstration file {path}: step {int(rows[row])} has "
                                     f"discrete action {dv} for branches {branches.tolist()}.")
        disc[row] = values
    if not np.isfinite(cont).all():
        raise DemonstrationError(f"demonstration file {path}: a continuous action is NaN or "
                                 "infinite.")
    return cont, disc


def _episode_returns(parts: Iterable[AgentBuffer]) -> np.ndarray:
    returns = []
    for part in parts:
        reward = part[BufferKey.ENVIRONMENT_REWARDS].astype(np.float64)
        ends = np.flatnonzero(part[BufferKey.DONE] > 0)
        total = np.concatenate([[0.0], np.cumsum(reward)])
        starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
        returns.append(total[ends + 1] - total[starts])
    return np.concatenate(returns).astype(np.float32) if returns else np.zeros(0, np.float32)


# --------------------------------------------------------------------------------- writing


class DemonstrationWriter:
    """Episodes into a `.demo` file, as Unity's recorder lays it out; nothing appears at `path`
    until `close`, which moves the finished file into place atomically (`palaestra.atomic`).
    The steps are kept in a temporary file meanwhile, not in memory. Use as a context manager:
    leaving it by an exception writes nothing."""

    def __init__(self, path: PathLike, spec: BehaviorSpec, *, name: str = "palaestra",
                 behavior_name: str = "palaestra") -> None:
        from palaestra.unity import protocol

        self.path, self.spec = os.fspath(path), spec
        self.name = check_name(name)
        for i, o in enumerate(spec.observation_specs):
            if len(o.shape) not in (1, 3):
                raise PalaestraError(f"{self.path}: observation {i} has shape {list(o.shape)}; "
                                     "a .demo file holds vectors and images (height, width, "
                                     "channels).")
        self.episodes = self.steps = self.pairs = 0
        self.total_reward = 0.0
        self._body: Optional[IO[bytes]] = tempfile.TemporaryFile(
            dir=os.path.dirname(os.path.abspath(self.path)) or None)
        a = spec.action_spec
        brain = protocol.BrainParametersProto(brain_name=behavior_name, is_training=False)
        brain.action_spec.num_continuous_actions = a.continuous_size
        brain.action_spec.num_discrete_actions = len(a.discrete_branches)
        brain.action_spec.discrete_branch_sizes.extend(a.discrete_branches)
        if not (a.continuous_size and a.discrete_branches):  # readers from before hybrids
            brain.vector_action_size_deprecated.extend(
                [a.continuous_size] if a.continuous_size else a.discrete_branches)
            brain.vector_action_space_type_deprecated = 1 if a.continuous_size else 0
        self._body.write(_delimited_bytes(brain))

    def add_episode(self, episode: Episode) -> None:
        """Write one finished episode: a pair per decision, then the pair that ends it."""
        if self._body is None:
            raise PalaestraError(f"{self.path}: the demonstration writer is closed.")
        self._body.write(b"".join(_delimited_bytes(p) for p in
                                  _episode_pairs(self.spec, episode, self.episodes)))
        t = len(episode.rewards)
        self.episodes += 1
        self.steps += t
        self.pairs += t + 1
        self.total_reward += float(np.sum(np.asarray(episode.rewards, np.float64)))

    def close(self) -> DemonstrationMeta:
        """Write the header and move the file into place; the header as written."""
        from palaestra.atomic import atomic_write

        if self._body is None:
            raise PalaestraError(f"{self.path}: the demonstration writer is closed.")
        body, self._body = self._body, None
        with body:
            header, meta = self._header()
            body.seek(0)

            def write(fh: IO[bytes]) -> None:
                fh.write(header.ljust(INITIAL_POS, b"\0"))
                while True:
                    chunk = body.read(1 << 20)
                    if not chunk:
                        break
                    fh.write(chunk)

            atomic_write(self.path, write)
        return meta

    def abort(self) -> None:
        """Drop what was written; nothing appears at `path`."""
        if self._body is not None:
            self._body.close()
            self._body = None

    def __enter__(self) -> "DemonstrationWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and self._body is not None:
            self.close()
        else:
            self.abort()

    def _header(self) -> Tuple[bytes, DemonstrationMeta]:
        """The delimited header; a name that would not fit the 33 bytes beside large step and
        episode counts is shortened."""
        from palaestra.unity import protocol

        mean = self.total_reward / self.episodes if self.episodes else 0.0
        name = self.name
        while True:
            proto = protocol.DemonstrationMetaProto(
                api_version=API_VERSION, demonstration_name=name, number_steps=self.pairs,
                number_episodes=self.episodes, mean_reward=mean)
            header = _delimited_bytes(proto)
            if len(header) <= INITIAL_POS:
                return header, DemonstrationMeta(self.path, API_VERSION, name, self.pairs,
                                                 self.episodes, proto.mean_reward)
            name = name.encode("utf-8")[:-1].decode("utf-8", "ignore")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name.isprintable() or \
            len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise PalaestraError(f"demonstration name {name!r}: give up to {MAX_NAME_BYTES} "
                             "printable characters (bytes in UTF-8), as Unity's recorder does.")
    return name


def write_demonstration(path: PathLike, spec: BehaviorSpec, episodes: Iterable[Episode], *,
                        name: str = "palaestra", behavior_name: str = "palaestra"
                        ) -> DemonstrationMeta:
    """Write `episodes` into the `.demo` file `path` (atomically; an existing file is
    replaced); the header written. `load_demonstrations(path)` gives them back."""
    with DemonstrationWriter(path, spec, name=name, behavior_name=behavior_name) as writer:
        for episode in episodes:
            writer.add_episode(episode)
        return writer.close()


def _delimited_bytes(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    size, prefix = len(data), bytearray()
    while size >= 0x80:
        prefix.append((size & 0x7F) | 0x80)
        size >>= 7
    prefix.append(size)
    return bytes(prefix) + data


def _episode_pairs(spec: BehaviorSpec, episode: Episode, episode_id: int) -> List[Any]:
    from palaestra.unity import decode, protocol

    t, cont, disc, mask = _checked_episode(spec, episode)
    actions = decode.action_protos(ActionTuple(cont, disc))
    actions.append(actions[-1])  # the ending pair: Unity stores the last action taken
    rewards = np.concatenate([[0.0], np.asarray(episode.rewards, np.float32)])
    pairs = []
    for step in range(t + 1):
        info = protocol.AgentInfoProto(reward=float(rewards[step]), done=step == t,
                                       max_step_reached=step == t and bool(episode.interrupted),
                                       id=episode_id)
        if mask is not None and step < t:
            info.action_mask.extend((~mask[step]).tolist())
        for k, o in enumerate(spec.observation_specs):
            info.observations.append(_observation_proto(np.asarray(episode.obs[k][step],
                                                                   np.float32), o))
        pairs.append(protocol.AgentInfoActionPairProto(agent_info=info, action_info=actions[step]))
    return pairs


def _observation_proto(value: np.ndarray, spec: Any) -> Any:
    """Uncompressed, so that it reads back exactly; images channels first, as Unity's."""
    from palaestra.unity import protocol

    if value.ndim == 3:
        value = np.moveaxis(value, -1, 0)
        dims = [int(protocol.DimensionPropertyProto.NONE)] + \
            [int(protocol.DimensionPropertyProto.TRANSLATIONAL_EQUIVARIANCE)] * 2
    else:
        dims = [int(protocol.DimensionPropertyProto.NONE)]
    proto = protocol.ObservationProto(shape=list(value.shape), dimension_properties=dims,
                                      name=spec.name)
    proto.float_data.data.extend(value.ravel().tolist())
    return proto


def _checked_episode(spec: BehaviorSpec, episode: Episode
                     ) -> Tuple[int, np.ndarray, np.ndarray, Optional[np.ndarray]]:
    a = spec.action_spec
    t = len(episode.rewards)
    problems = []
    if t < 1:
        problems.append("it has no step")
    if len(episode.obs) != len(spec.observation_specs):
        problems.append(f"{len(episode.obs)} observations where the spec has "
                        f"{len(spec.observation_specs)}")
    for k, (values, o) in enumerate(zip(episode.obs, spec.observation_specs)):
        if np.shape(values) != (t + 1, *o.shape):
            problems.append(f"observation {k} has shape {np.shape(values)}, not {(t + 1, *o.shape)}"
                            " (one per decision, then the final one)")
    cont = np.zeros((t, 0), np.float32) if episode.continuous is None else \
        np.asarray(episode.continuous, np.float32)
    disc = np.zeros((t, 0), np.int64) if episode.discrete is None else \
        np.asarray(episode.discrete, np.int64)
    if cont.shape != (t, a.continuous_size) or disc.shape != (t, len(a.discrete_branches)):
        problems.append(f"actions of shapes {cont.shape} and {disc.shape} for {t} steps of "
                        f"{a.continuous_size} continuous and {len(a.discrete_branches)} discrete")
    mask = None if episode.action_mask is None else np.asarray(episode.action_mask, bool)
    if mask is not None and mask.shape != (t, sum(a.discrete_branches)):
        problems.append(f"an action mask of shape {mask.shape}, not {(t, sum(a.discrete_branches))}")
    if problems:
        raise PalaestraError(f"episode for a demonstration file: {'; '.join(problems)}.")
    return t, cont, disc, mask
