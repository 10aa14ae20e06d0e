"""ML-Agents' side channels: small typed messages that ride in ``side_channel`` bytes.

Every `UnityRLInputProto` (trainer -> Unity) and `UnityRLOutputProto` (Unity -> trainer) carries
one ``side_channel`` byte string: a run of frames, each

    16 bytes  channel UUID, in .NET ``Guid.ToByteArray()`` order (Python ``uuid.bytes_le``)
     4 bytes  payload length, int32 little-endian
     N bytes  payload, read and written field by field by the channel

Payload fields are little-endian: bool is 1 byte, int32 4, float32 4, a string is an int32
byte count then that many ASCII bytes (Unity decodes with ``Encoding.ASCII``), a float list is
an int32 count then the floats. As in ML-Agents, reading past the *end* of a payload gives the
caller's default, so an older sender that omits a trailing field still parses; a field cut in
the middle, a negative length or one past the end raises `SideChannelError`, which names the
channel. Bytes from Unity are never trusted: nothing here can loop forever or raise IndexError.

Channels, managers and the stats they collect are per-environment objects (no module state).
"""
from __future__ import annotations

import logging
import struct
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from importlib import metadata
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from palaestra.describe import describe_error, short_repr
from palaestra.exception import PalaestraError
from palaestra.registry import PluginFailure

logger = logging.getLogger(__name__)

SIDE_CHANNEL_GROUP = "palaestra.side_channel"

ENGINE_CONFIGURATION_CHANNEL_ID = uuid.UUID("e951342c-4f7e-11ea-b238-784f4387d1f7")
ENVIRONMENT_PARAMETERS_CHANNEL_ID = uuid.UUID("534c891e-810f-11ea-a9d0-822485860400")
#: uuid5(NAMESPACE_URL, "com.unity.ml-agents/StatsSideChannel")
STATS_CHANNEL_ID = uuid.UUID("a1d8f7b7-cec8-50f9-b78b-d3e165a78520")
#: uuid5(NAMESPACE_URL, "com.unity.ml-agents/TrainingAnalyticsSideChannel"); payloads are
#: ``google.protobuf.Any`` packing TrainingEnvironmentInitialized / TrainingBehaviorInitialized.
TRAINING_ANALYTICS_CHANNEL_ID = uuid.UUID("b664a4a9-d86f-5a5f-95cb-e8353a7e8356")

_HEADER = struct.Struct("<16si")
_INT32_RANGE = range(-(2 ** 31), 2 ** 31)


class SideChannelError(PalaestraError):
    """Side-channel bytes that cannot be read or written; the message names the channel."""


# ---------------------------------------------------------------------------- messages


class IncomingMessage:
    """A reader over one payload; values must be read in the order they were written."""

    def __init__(self, data: bytes, channel_id: Optional[uuid.UUID] = None) -> None:
        self._data = bytes(data)
        self._offset = 0
        self.channel_id = channel_id

    def _fail(self, what: str) -> SideChannelError:
        where = ("a side-channel message" if self.channel_id is None
                 else f"side channel {self.channel_id}")
        return SideChannelError(f"Malformed message on {where}: {what} (at byte {self._offset} "
                                f"of {len(self._data)}). The Unity package and palaestra may "
                                "disagree on this channel's layout.")

    def _at_end(self) -> bool:
        return self._offset >= len(self._data)

    def _take(self, size: int, what: str) -> bytes:
        if size > len(self._data) - self._offset:
            raise self._fail(f"{what} needs {size} bytes, {len(self._data) - self._offset} left")
        chunk = self._data[self._offset:self._offset + size]
        self._offset += size
        return chunk

    def _length(self, what: str) -> int:
        count: int = struct.unpack("<i", self._take(4, f"the length of {what}"))[0]
        if count < 0:
            raise self._fail(f"{what} has negative length {count}")
        return count

    def read_bool(self, default_value: bool = False) -> bool:
        return default_value if self._at_end() else self._take(1, "a bool") != b"\x00"

    def read_int32(self, default_value: int = 0) -> int:
        if self._at_end():
            return default_value
        value: int = struct.unpack("<i", self._take(4, "an int32"))[0]
        return value

    def read_float32(self, default_value: float = 0.0) -> float:
        if self._at_end():
            return default_value
        value: float = struct.unpack("<f", self._take(4, "a float32"))[0]
        return value

    def read_float32_list(self, default_value: Optional[List[float]] = None) -> List[float]:
        if self._at_end():
            return [] if default_value is None else default_value
        count = self._length("a float list")
        return list(struct.unpack(f"<{count}f", self._take(4 * count, f"{count} floats")))

    def read_string(self, default_value: str = "") -> str:
        """ASCII on the wire; decoded as UTF-8 (a superset) so a lenient sender still reads."""
        if self._at_end():
            return default_value
        raw = self._take(self._length("a string"), "a string")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._fail(f"a string is not valid text ({exc.reason} at byte {exc.start})"
                             ) from None

    def get_raw_bytes(self) -> bytes:
        """The whole payload, however much of it has been read."""
        return self._data


class OutgoingMessage:
    """A writer for one payload, in the layout Unity's ``IncomingMessage`` reads."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffer(self) -> bytes:
        return bytes(self._buffer)

    def write_bool(self, value: bool) -> None:
        self._buffer += b"\x01" if value else b"\x00"

    def write_int32(self, value: int) -> None:
        if int(value) not in _INT32_RANGE:
            raise SideChannelError(f"Cannot write {value!r} as an int32 side-channel value.")
        self._buffer += struct.pack("<i", int(value))

    def write_float32(self, value: float) -> None:
        try:
            self._buffer += struct.pack("<f", float(value))
        except OverflowError:
            raise SideChannelError(f"Cannot write {value!r} as a float32 side-channel value: "
                                   "out of range.") from None

    def write_float32_list(self, values: Sequence[float]) -> None:
        self.write_int32(len(values))
        for value in values:
            self.write_float32(value)

    def write_string(self, value: str) -> None:
        try:
            encoded = value.encode("ascii")
        except UnicodeEncodeError:
            raise SideChannelError(f"Side-channel string {value!r} is not ASCII; Unity reads "
                                   "strings as ASCII and would garble it.") from None
        self.write_int32(len(encoded))
        self._buffer += encoded

    def set_raw_bytes(self, data: Union[bytes, bytearray]) -> None:
        """Replace the payload (RawBytesChannel, protobuf ``Any`` payloads)."""
        self._buffer = bytearray(data)


# ---------------------------------------------------------------------------- channels


class SideChannel(ABC):
    """One channel: receives the payloads Unity sends to its UUID, queues payloads to send."""

    def __init__(self, channel_id: uuid.UUID) -> None:
        if not isinstance(channel_id, uuid.UUID):
            raise TypeError(f"a side channel id must be a uuid.UUID, got {short_repr(channel_id)}")
        self._channel_id = channel_id
        self.message_queue: List[bytes] = []

    @property
    def channel_id(self) -> uuid.UUID:
        return self._channel_id

    def queue_message_to_send(self, message: Union[OutgoingMessage, bytes, bytearray]) -> None:
        """Send with the next message to Unity (the next step or reset)."""
        data = message.buffer if isinstance(message, OutgoingMessage) else bytes(message)
        self.message_queue.append(data)

    @abstractmethod
    def on_message_received(self, msg: IncomingMessage) -> None:
        """Called once per payload Unity sent to this channel, in the order sent."""

    def _unexpected(self, msg: IncomingMessage) -> None:
        raise SideChannelError(f"{type(self).__name__} (side channel {self.channel_id}) got "
                               f"{len(msg.get_raw_bytes())} bytes from Unity, which never "
                               "sends on this channel.")


@dataclass(frozen=True)
class EngineConfig:
    """Unity engine settings; None leaves a setting as the build has it.

    ``training()`` holds mlagents-learn's defaults (its ``EngineSettings``), which differ from
    mlagents_envs' ``EngineConfig.default_config()`` (80x80, quality 1)."""

    width: Optional[int] = None
    height: Optional[int] = None
    quality_level: Optional[int] = None
    time_scale: Optional[float] = None
    target_frame_rate: Optional[int] = None
    capture_frame_rate: Optional[int] = None

    @staticmethod
    def training() -> "EngineConfig":
        return EngineConfig(84, 84, 5, 20.0, -1, 60)


class EngineConfigurationChannel(SideChannel):
    """Screen size, quality, time scale and frame rates; one payload per setting:
    int32 `ConfigurationType`, then int32 width + int32 height, int32, float32, int32, int32.
    Unity clamps the time scale to at least 1 (and at most 100 in the Editor)."""

    class ConfigurationType(IntEnum):
        SCREEN_RESOLUTION = 0
        QUALITY_LEVEL = 1
        TIME_SCALE = 2
        TARGET_FRAME_RATE = 3
        CAPTURE_FRAME_RATE = 4

    def __init__(self) -> None:
        super().__init__(ENGINE_CONFIGURATION_CHANNEL_ID)

    def on_message_received(self, msg: IncomingMessage) -> None:
        self._unexpected(msg)

    def set_configuration_parameters(self, width: Optional[int] = None,
                                     height: Optional[int] = None,
                                     quality_level: Optional[int] = None,
                                     time_scale: Optional[float] = None,
                                     target_frame_rate: Optional[int] = None,
                                     capture_frame_rate: Optional[int] = None) -> None:
        if (width is None) != (height is None):
            raise SideChannelError("Engine configuration: width and height must be set "
                                   f"together (got width={width!r}, height={height!r}).")
        kind = self.ConfigurationType
        if width is not None and height is not None:
            self._send(kind.SCREEN_RESOLUTION, ints=(width, height))
        if quality_level is not None:
            self._send(kind.QUALITY_LEVEL, ints=(quality_level,))
        if time_scale is not None:
            self._send(kind.TIME_SCALE, floats=(time_scale,))
        if target_frame_rate is not None:
            self._send(kind.TARGET_FRAME_RATE, ints=(target_frame_rate,))
        if capture_frame_rate is not None:
            self._send(kind.CAPTURE_FRAME_RATE, ints=(capture_frame_rate,))

    def set_configuration(self, config: EngineConfig) -> None:
        self.set_configuration_parameters(
            config.width, config.height, config.quality_level, config.time_scale,
            config.target_frame_rate, config.capture_frame_rate)

    def _send(self, kind: int, ints: Sequence[int] = (), floats: Sequence[float] = ()) -> None:
        msg = OutgoingMessage()
        msg.write_int32(kind)
        for value in ints:
            msg.write_int32(value)
        for number in floats:
            msg.write_float32(number)
        self.queue_message_to_send(msg)


class EnvironmentParametersChannel(SideChannel):
    """Values for ``Academy.Instance.EnvironmentParameters``: a fixed float, or a sampler that
    Unity draws from itself. Payload: string key, int32 `DataType`, then for FLOAT a float32;
    for SAMPLER int32 seed, int32 `SamplerType`, then (min, max) / (mean, std) as two float32
    or, for MULTIRANGE_UNIFORM, a float list of flattened (min, max) intervals."""

    class DataType(IntEnum):
        FLOAT = 0
        SAMPLER = 1

    class SamplerType(IntEnum):
        UNIFORM = 0
        GAUSSIAN = 1
        MULTIRANGE_UNIFORM = 2

    def __init__(self) -> None:
        super().__init__(ENVIRONMENT_PARAMETERS_CHANNEL_ID)

    def on_message_received(self, msg: IncomingMessage) -> None:
        self._unexpected(msg)

    def set_float_parameter(self, key: str, value: float) -> None:
        msg = self._start(key, self.DataType.FLOAT)
        msg.write_float32(value)
        self.queue_message_to_send(msg)

    def set_uniform_sampler_parameters(self, key: str, min_value: float, max_value: float,
                                       seed: int) -> None:
        msg = self._sampler(key, seed, self.SamplerType.UNIFORM)
        msg.write_float32(min_value)
        msg.write_float32(max_value)
        self.queue_message_to_send(msg)

    def set_gaussian_sampler_parameters(self, key: str, mean: float, st_dev: float,
                                        seed: int) -> None:
        msg = self._sampler(key, seed, self.SamplerType.GAUSSIAN)
        msg.write_float32(mean)
        msg.write_float32(st_dev)
        self.queue_message_to_send(msg)

    def set_multirangeuniform_sampler_parameters(
            self, key: str, intervals: Sequence[Tuple[float, float]], seed: int) -> None:
        msg = self._sampler(key, seed, self.SamplerType.MULTIRANGE_UNIFORM)
        msg.write_float32_list([bound for interval in intervals for bound in interval])
        self.queue_message_to_send(msg)

    def _start(self, key: str, data_type: int) -> OutgoingMessage:
        msg = OutgoingMessage()
        msg.write_string(key)
        msg.write_int32(data_type)
        return msg

    def _sampler(self, key: str, seed: int, sampler: int) -> OutgoingMessage:
        msg = self._start(key, self.DataType.SAMPLER)
        msg.write_int32(seed)
        msg.write_int32(sampler)
        return msg


class StatsAggregationMethod(Enum):
    """How Unity's ``StatsRecorder.Add`` wants repeated values of one summary period combined."""

    AVERAGE = 0
    MOST_RECENT = 1
    SUM = 2
    HISTOGRAM = 3


StatList = List[Tuple[float, StatsAggregationMethod]]


class StatsSideChannel(SideChannel):
    """Collects Unity's stats (payload: string key, float32 value, int32 aggregation; an
    omitted aggregation reads as AVERAGE, as older packages sent none)."""

    def __init__(self) -> None:
        super().__init__(STATS_CHANNEL_ID)
        self.stats: Dict[str, StatList] = {}

    def on_message_received(self, msg: IncomingMessage) -> None:
        key = msg.read_string()
        value = msg.read_float32()
        code = msg.read_int32()
        try:
            method = StatsAggregationMethod(code)
        except ValueError:
            raise SideChannelError(f"Stats side channel {self.channel_id}: unknown aggregation "
                                   f"method {code} for stat {key!r}.") from None
        self.stats.setdefault(key, []).append((value, method))

    def get_and_reset_stats(self) -> Dict[str, StatList]:
        stats, self.stats = self.stats, {}
        return stats


class RawBytesChannel(SideChannel):
    """Opaque payloads both ways, for a project's own channel UUID."""

    def __init__(self, channel_id: uuid.UUID) -> None:
        super().__init__(channel_id)
        self._received: List[bytes] = []

    def on_message_received(self, msg: IncomingMessage) -> None:
        self._received.append(msg.get_raw_bytes())

    def get_and_clear_received_messages(self) -> List[bytes]:
        received, self._received = self._received, []
        return received

    def send_raw_data(self, data: Union[bytes, bytearray]) -> None:
        self.queue_message_to_send(bytes(data))


# ----------------------------------------------------------------------------- manager


class SideChannelManager:
    """Splits Unity's side-channel bytes among the registered channels and joins theirs."""

    def __init__(self, channels: Iterable[SideChannel] = ()) -> None:
        self._channels: Dict[uuid.UUID, SideChannel] = {}
        self._warned: Set[uuid.UUID] = set()
        for channel in channels:
            self.register(channel)

    @property
    def channels(self) -> Dict[uuid.UUID, SideChannel]:
        return dict(self._channels)

    def register(self, channel: SideChannel) -> None:
        if channel.channel_id in self._channels:
            raise SideChannelError(f"Two side channels share the id {channel.channel_id}: "
                                   f"{type(self._channels[channel.channel_id]).__name__} and "
                                   f"{type(channel).__name__}.")
        self._channels[channel.channel_id] = channel

    def process_side_channel_message(self, data: bytes) -> None:
        """Deliver every frame of `data`, in order. The whole buffer is split first, so a
        malformed frame raises `SideChannelError` before any channel has seen anything; a
        malformed payload raises from its channel after the frames before it were delivered.
        A frame for an unregistered UUID is skipped with one warning per UUID."""
        for channel_id, payload in split_frames(data):
            channel = self._channels.get(channel_id)
            if channel is None:
                if channel_id not in self._warned:
                    self._warned.add(channel_id)
                    logger.warning("Unity sent side-channel data for unknown channel %s; "
                                   "it is ignored (register a channel for it to read it).",
                                   channel_id)
                continue
            channel.on_message_received(IncomingMessage(payload, channel_id))

    def generate_side_channel_messages(self) -> bytes:
        """Every queued payload, framed, in registration order; empties the queues."""
        frames = bytearray()
        for channel_id, channel in self._channels.items():
            for payload in channel.message_queue:
                frames += _HEADER.pack(channel_id.bytes_le, len(payload)) + payload
            channel.message_queue = []
        return bytes(frames)


def split_frames(data: bytes) -> List[Tuple[uuid.UUID, bytes]]:
    """(channel id, payload) for each frame; raises `SideChannelError` on any framing fault."""
    frames: List[Tuple[uuid.UUID, bytes]] = []
    view, offset = bytes(data), 0
    while offset < len(view):
        left = len(view) - offset
        if left < _HEADER.size:
            named = f" (side channel {uuid.UUID(bytes_le=view[offset:offset + 16])})" \
                if left >= 16 else ""
            raise SideChannelError(
                f"Truncated side-channel data{named}: {left} bytes at offset {offset} cannot "
                f"hold a frame header ({_HEADER.size} bytes: UUID and length).")
        raw_id, length = _HEADER.unpack_from(view, offset)
        channel_id = uuid.UUID(bytes_le=raw_id)
        offset += _HEADER.size
        if length < 0 or length > len(view) - offset:
            raise SideChannelError(
                f"Side channel {channel_id}: frame length {length} at offset "
                f"{offset - _HEADER.size} does not fit the {len(view) - offset} bytes left.")
        frames.append((channel_id, view[offset:offset + length]))
        offset += length
    return frames


# ----------------------------------------------------------------------------- plugins


@dataclass
class SideChannelPlugins:
    """Channels from ``palaestra.side_channel`` entry points, and the plugins that failed."""

    channels: List[SideChannel] = field(default_factory=list)
    failures: List[PluginFailure] = field(default_factory=list)


def load_side_channel_plugins(group: str = SIDE_CHANNEL_GROUP,
                              entry_points: Optional[Iterable[Any]] = None,
                              taken: Iterable[uuid.UUID] = ()) -> SideChannelPlugins:
    """Call each entry point of `group`; each returns a `SideChannel` or a list of them.

    A plugin that fails to import, raises (SystemExit too), returns something else, or reuses
    a channel id already in `taken` or claimed by an earlier plugin is logged and recorded in
    ``failures``, and adds nothing: like trainer plugins, one broken plugin must not stop a
    run or the others. Ctrl-C still propagates."""
    result = SideChannelPlugins()
    used = set(taken)
    eps = metadata.entry_points(group=group) if entry_points is None else entry_points
    for ep in sorted(eps, key=lambda e: str(e.name)):
        dist = _distribution(ep)
        try:
            found = _plugin_channels(ep.load()())
            clash = [c.channel_id for c in found if c.channel_id in used]
            if clash or len({c.channel_id for c in found}) != len(found):
                raise ValueError(f"side channel id {clash[0] if clash else 'repeated'} is "
                                 "already used by another channel")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: B036 - a plugin's sys.exit() too
            why = describe_error(exc)
            result.failures.append(PluginFailure(str(ep.name), dist, why))
            logger.warning("Skipping side-channel plugin '%s' from %s: %s", ep.name, dist, why)
            continue
        used.update(c.channel_id for c in found)
        result.channels.extend(found)
    return result


def _distribution(ep: Any) -> str:
    """The distribution that declared `ep`, for the report line (never raises)."""
    try:
        return str(ep.dist.metadata["Name"]) or "unknown"
    except Exception:  # no dist (a hand-made EntryPoint), or broken metadata
        return "unknown"


def _plugin_channels(returned: Any) -> List[SideChannel]:
    items = [returned] if isinstance(returned, SideChannel) else returned
    if not isinstance(items, (list, tuple)) or not all(isinstance(c, SideChannel) for c in items):
        raise TypeError("a palaestra.side_channel entry point must return a SideChannel or a "
                        f"list of them, got {short_repr(returned)}")
    return list(items)
