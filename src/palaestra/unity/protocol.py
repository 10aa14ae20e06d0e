"""ML-Agents' gRPC messages, built at import time from the schema below.

Unity builds and the Editor (package com.unity.ml-agents) talk to their trainer through one gRPC
method, ``communicator_objects.UnityToExternalProto/Exchange``, whose request and reply are both
`UnityMessageProto`. The trainer is the gRPC *server*; Unity is the client.

Why not generated ``_pb2`` modules: those are tied to the protoc that wrote them and refuse to
import on a newer or older protobuf runtime (ML-Agents' own pin ``protobuf<3.21`` is the reason
mlagents cannot run on a current Python stack). Here the same descriptors are assembled as a
``FileDescriptorProto`` in a private ``DescriptorPool``, which every runtime from 3.20 to 7.x
accepts, and the message classes come from that pool. The package name, message names, field
names, numbers, types, maps and the oneof match ML-Agents' ``.proto`` files (release 22,
mlagents_envs 1.1.0) exactly, so the bytes on the wire are identical; reserved numbers are
declared too, so that a stale field can never be reused by mistake.

The classes are typed ``Any``: they are made at run time, so a type checker cannot see their
fields. Enum values are plain ints on the wire; `CommandProto` and friends are `IntEnum`s built
from the same descriptors, and the values are also module constants (``STEP``, ``PNG``, ...) as
in ML-Agents' generated modules.
"""
from __future__ import annotations

import re
from enum import IntEnum, IntFlag
from typing import Any, Dict, NamedTuple, Optional, Tuple

from google.protobuf import (  # type: ignore[import-untyped, unused-ignore]
    descriptor_pb2, descriptor_pool, message_factory)

PACKAGE = "communicator_objects"
SERVICE_NAME = f"{PACKAGE}.UnityToExternalProto"
#: The gRPC method path Unity calls; a servicer must be registered under exactly this.
EXCHANGE_METHOD = f"/{SERVICE_NAME}/Exchange"

#: The communication (API) version palaestra announces: the one of mlagents_envs 1.1.0
#: (release 22) and of com.unity.ml-agents 2.x/3.x (``Academy.k_ApiVersion``). 1.5.0 added
#: variable-length observations and multi-agent groups.
COMMUNICATION_VERSION = "1.5.0"
#: The trainer package version palaestra announces in ``package_version``. The newest Unity
#: package only records it for its analytics (it no longer gates on it); this is what
#: mlagents_envs 1.1.0 sends, so Unity sees the newest trainer it knows.
PACKAGE_VERSION = "1.1.0"

# HeaderProto.status values. Both sides treat any status but 200 as "the other side stopped".
STATUS_OK = 200
#: Sent instead of a reply when the trainer closes: Unity then quits (Editor: leaves Play mode);
#: Unity sends it too when it quits or leaves Play mode.
STATUS_CLOSE = 400
#: An error status; no ML-Agents release sends it, but it reads as "stopped" on both sides.
STATUS_ERROR = 500


# ----------------------------------------------------------------------------------- schema


class _Field(NamedTuple):
    name: str
    number: int
    type: str  # a scalar ("int32", "float", ...) or a message/enum name in PACKAGE
    repeated: bool = False
    oneof: Optional[str] = None


class _Map(NamedTuple):
    """``map<string, value>``: protobuf encodes it as a repeated nested ``<Name>Entry``."""

    name: str
    number: int
    value: str


class _Message(NamedTuple):
    name: str
    fields: Tuple[Any, ...]  # _Field or _Map
    nested: Tuple["_Message", ...] = ()
    reserved: Tuple[int, ...] = ()


class _Enum(NamedTuple):
    name: str
    values: Tuple[Tuple[str, int], ...]
    reserved: Tuple[int, ...] = ()


def _f(name: str, number: int, type_: str, *, rep: bool = False,
       oneof: Optional[str] = None) -> _Field:
    return _Field(name, number, type_, rep, oneof)


_ENUMS = (
    _Enum("CommandProto", (("STEP", 0), ("RESET", 1), ("QUIT", 2))),
    _Enum("CompressionTypeProto", (("NONE", 0), ("PNG", 1))),
    _Enum("ObservationTypeProto", (("DEFAULT", 0), ("GOAL_SIGNAL", 1)), reserved=(2, 3)),
    _Enum("SpaceTypeProto", (("discrete", 0), ("continuous", 1))),
)

_CAPABILITY_FLAGS = ("baseRLCapabilities", "concatenatedPngObservations",
                     "compressedChannelMapping", "hybridActions", "trainingAnalytics",
                     "variableLengthObservation", "multiAgentGroups")

_MESSAGES = (
    _Message("HeaderProto", (_f("status", 1, "int32"), _f("message", 2, "string"))),
    _Message("UnityRLCapabilitiesProto", tuple(
        _f(flag, number, "bool") for number, flag in enumerate(_CAPABILITY_FLAGS, start=1))),
    _Message("ObservationProto", (
        _f("shape", 1, "int32", rep=True),
        _f("compression_type", 2, "CompressionTypeProto"),
        _f("compressed_data", 3, "bytes", oneof="observation_data"),
        _f("float_data", 4, "ObservationProto.FloatData", oneof="observation_data"),
        _f("compressed_channel_mapping", 5, "int32", rep=True),
        _f("dimension_properties", 6, "int32", rep=True),
        _f("observation_type", 7, "ObservationTypeProto"),
        _f("name", 8, "string"),
    ), nested=(_Message("FloatData", (_f("data", 1, "float", rep=True),)),)),
    _Message("AgentInfoProto", (
        _f("reward", 7, "float"), _f("done", 8, "bool"), _f("max_step_reached", 9, "bool"),
        _f("id", 10, "int32"), _f("action_mask", 11, "bool", rep=True),
        _f("observations", 13, "ObservationProto", rep=True),
        _f("group_id", 14, "int32"), _f("group_reward", 15, "float"),
    ), reserved=(1, 2, 3, 4, 5, 6, 12)),
    _Message("AgentActionProto", (
        _f("vector_actions_deprecated", 1, "float", rep=True), _f("value", 4, "float"),
        _f("continuous_actions", 6, "float", rep=True),
        _f("discrete_actions", 7, "int32", rep=True),
    ), reserved=(2, 3, 5)),
    _Message("ActionSpecProto", (
        _f("num_continuous_actions", 1, "int32"), _f("num_discrete_actions", 2, "int32"),
        _f("discrete_branch_sizes", 3, "int32", rep=True),
        _f("action_descriptions", 4, "string", rep=True),
    )),
    _Message("BrainParametersProto", (
        _f("vector_action_size_deprecated", 3, "int32", rep=True),
        _f("vector_action_descriptions_deprecated", 5, "string", rep=True),
        _f("vector_action_space_type_deprecated", 6, "SpaceTypeProto"),
        _f("brain_name", 7, "string"), _f("is_training", 8, "bool"),
        _f("action_spec", 9, "ActionSpecProto"),
    ), reserved=(1, 2, 4)),
    _Message("UnityRLInitializationInputProto", (
        _f("seed", 1, "int32"), _f("communication_version", 2, "string"),
        _f("package_version", 3, "string"),
        _f("capabilities", 4, "UnityRLCapabilitiesProto"), _f("num_areas", 5, "int32"),
    )),
    _Message("UnityRLInitializationOutputProto", (
        _f("name", 1, "string"), _f("communication_version", 2, "string"),
        _f("log_path", 3, "string"),
        _f("brain_parameters", 5, "BrainParametersProto", rep=True),
        _f("package_version", 7, "string"),
        _f("capabilities", 8, "UnityRLCapabilitiesProto"),
    ), reserved=(6,)),
    _Message("UnityRLInputProto", (
        _Map("agent_actions", 1, "UnityRLInputProto.ListAgentActionProto"),
        _f("command", 4, "CommandProto"), _f("side_channel", 5, "bytes"),
    ), nested=(_Message("ListAgentActionProto", (
        _f("value", 1, "AgentActionProto", rep=True),)),), reserved=(2, 3)),
    _Message("UnityRLOutputProto", (
        _Map("agentInfos", 2, "UnityRLOutputProto.ListAgentInfoProto"),
        _f("side_channel", 3, "bytes"),
    ), nested=(_Message("ListAgentInfoProto", (
        _f("value", 1, "AgentInfoProto", rep=True),)),), reserved=(1,)),
    _Message("UnityInputProto", (
        _f("rl_input", 1, "UnityRLInputProto"),
        _f("rl_initialization_input", 2, "UnityRLInitializationInputProto"),
    )),
    _Message("UnityOutputProto", (
        _f("rl_output", 1, "UnityRLOutputProto"),
        _f("rl_initialization_output", 2, "UnityRLInitializationOutputProto"),
    )),
    _Message("UnityMessageProto", (
        _f("header", 1, "HeaderProto"), _f("unity_output", 2, "UnityOutputProto"),
        _f("unity_input", 3, "UnityInputProto"),
    )),
    _Message("AgentInfoActionPairProto", (
        _f("agent_info", 1, "AgentInfoProto"), _f("action_info", 2, "AgentActionProto"),
    )),
    _Message("DemonstrationMetaProto", (
        _f("api_version", 1, "int32"), _f("demonstration_name", 2, "string"),
        _f("number_steps", 3, "int32"), _f("number_episodes", 4, "int32"),
        _f("mean_reward", 5, "float"),
    )),
    _Message("EngineConfigurationProto", (
        _f("width", 1, "int32"), _f("height", 2, "int32"), _f("quality_level", 3, "int32"),
        _f("time_scale", 4, "float"), _f("target_frame_rate", 5, "int32"),
        _f("show_monitor", 6, "bool"),
    )),
    _Message("CustomResetParametersProto", ()),
    _Message("TrainingEnvironmentInitialized", (
        _f("mlagents_version", 1, "string"), _f("mlagents_envs_version", 2, "string"),
        _f("python_version", 3, "string"), _f("torch_version", 4, "string"),
        _f("torch_device_type", 5, "string"), _f("num_envs", 6, "int32"),
        _f("num_environment_parameters", 7, "int32"), _f("run_options", 8, "string"),
    )),
    _Message("TrainingBehaviorInitialized", (
        _f("behavior_name", 1, "string"), _f("trainer_type", 2, "string"),
        _f("extrinsic_reward_enabled", 3, "bool"), _f("gail_reward_enabled", 4, "bool"),
        _f("curiosity_reward_enabled", 5, "bool"), _f("rnd_reward_enabled", 6, "bool"),
        _f("behavioral_cloning_enabled", 7, "bool"), _f("recurrent_enabled", 8, "bool"),
        _f("visual_encoder", 9, "string"), _f("num_network_layers", 10, "int32"),
        _f("num_network_hidden_units", 11, "int32"), _f("trainer_threaded", 12, "bool"),
        _f("self_play_enabled", 13, "bool"), _f("curriculum_enabled", 14, "bool"),
        _f("config", 15, "string"),
    )),
)

# ------------------------------------------------------------------------------ assembling

_FD = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"int32": _FD.TYPE_INT32, "float": _FD.TYPE_FLOAT, "bool": _FD.TYPE_BOOL,
            "string": _FD.TYPE_STRING, "bytes": _FD.TYPE_BYTES}
_ENUM_NAMES = frozenset(e.name for e in _ENUMS)


def _set_type(field: descriptor_pb2.FieldDescriptorProto, type_: str) -> None:
    if type_ in _SCALARS:
        field.type = _SCALARS[type_]
    else:
        field.type = _FD.TYPE_ENUM if type_ in _ENUM_NAMES else _FD.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{type_}"


def _entry_name(field_name: str) -> str:
    """protoc's name for a map's entry type: ``agent_actions`` -> ``AgentActionsEntry``."""
    parts = field_name.split("_")
    return "".join(p[:1].upper() + p[1:] for p in parts) + "Entry"


def _add_message(out: descriptor_pb2.DescriptorProto, spec: _Message, scope: str) -> None:
    out.name = spec.name
    full = f"{scope}.{spec.name}" if scope else spec.name
    for nested in spec.nested:
        _add_message(out.nested_type.add(), nested, full)
    oneofs: Dict[str, int] = {}
    for item in spec.fields:
        field = out.field.add(name=item.name, number=item.number)
        if isinstance(item, _Map):
            entry = out.nested_type.add(name=_entry_name(item.name))
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=_FD.TYPE_STRING, label=_FD.LABEL_OPTIONAL)
            value = entry.field.add(name="value", number=2, label=_FD.LABEL_OPTIONAL)
            _set_type(value, item.value)
            field.label = _FD.LABEL_REPEATED
            field.type = _FD.TYPE_MESSAGE
            field.type_name = f".{PACKAGE}.{full}.{entry.name}"
            continue
        field.label = _FD.LABEL_REPEATED if item.repeated else _FD.LABEL_OPTIONAL
        _set_type(field, item.type)
        if item.oneof is not None:
            if item.oneof not in oneofs:
                oneofs[item.oneof] = len(out.oneof_decl)
                out.oneof_decl.add(name=item.oneof)
            field.oneof_index = oneofs[item.oneof]
    for number in spec.reserved:
        out.reserved_range.add(start=number, end=number + 1)  # end is exclusive


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """The whole schema as one ``FileDescriptorProto`` (proto3, package ``communicator_objects``).

    ML-Agents spreads it over 20 ``.proto`` files; file names never reach the wire, so one file
    is enough. Exposed for tests and for tools that want to print or diff the schema."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="palaestra/unity/communicator_objects.proto", package=PACKAGE, syntax="proto3")
    fdp.options.csharp_namespace = "Unity.MLAgents.CommunicatorObjects"
    for enum in _ENUMS:
        out = fdp.enum_type.add(name=enum.name)
        for name, number in enum.values:
            out.value.add(name=name, number=number)
        for number in enum.reserved:
            out.reserved_range.add(start=number, end=number)  # enum ranges are inclusive
    for spec in _MESSAGES:
        _add_message(fdp.message_type.add(), spec, "")
    service = fdp.service.add(name="UnityToExternalProto")
    service.method.add(name="Exchange", input_type=f".{PACKAGE}.UnityMessageProto",
                       output_type=f".{PACKAGE}.UnityMessageProto")
    return fdp


def _build_pool() -> descriptor_pool.DescriptorPool:
    # A private pool: mlagents' generated modules (if installed) use the default one, and the
    # two definitions of `communicator_objects.*` must not meet.
    pool = descriptor_pool.DescriptorPool()
    serialized = file_descriptor_proto().SerializeToString()
    if hasattr(pool, "AddSerializedFile"):
        pool.AddSerializedFile(serialized)
    else:  # pragma: no cover - very old pure-Python runtimes
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(serialized))
    return pool


POOL = _build_pool()


def _message_class(full_name: str) -> Any:
    descriptor = POOL.FindMessageTypeByName(f"{PACKAGE}.{full_name}")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(POOL).GetPrototype(descriptor)  # pragma: no cover


def _enum(name: str) -> Any:
    values = POOL.FindEnumTypeByName(f"{PACKAGE}.{name}").values
    return IntEnum(name, [(v.name, v.number) for v in values])


# ---------------------------------------------------------------------------- the messages

HeaderProto: Any = _message_class("HeaderProto")
UnityRLCapabilitiesProto: Any = _message_class("UnityRLCapabilitiesProto")
#: Alias by file name (capabilities.proto).
CapabilitiesProto: Any = UnityRLCapabilitiesProto
ObservationProto: Any = _message_class("ObservationProto")
FloatDataProto: Any = _message_class("ObservationProto.FloatData")
AgentInfoProto: Any = _message_class("AgentInfoProto")
AgentActionProto: Any = _message_class("AgentActionProto")
ActionSpecProto: Any = _message_class("ActionSpecProto")
BrainParametersProto: Any = _message_class("BrainParametersProto")
UnityRLInitializationInputProto: Any = _message_class("UnityRLInitializationInputProto")
UnityRLInitializationOutputProto: Any = _message_class("UnityRLInitializationOutputProto")
UnityRLInputProto: Any = _message_class("UnityRLInputProto")
ListAgentActionProto: Any = _message_class("UnityRLInputProto.ListAgentActionProto")
UnityRLOutputProto: Any = _message_class("UnityRLOutputProto")
ListAgentInfoProto: Any = _message_class("UnityRLOutputProto.ListAgentInfoProto")
UnityInputProto: Any = _message_class("UnityInputProto")
UnityOutputProto: Any = _message_class("UnityOutputProto")
UnityMessageProto: Any = _message_class("UnityMessageProto")
AgentInfoActionPairProto: Any = _message_class("AgentInfoActionPairProto")
DemonstrationMetaProto: Any = _message_class("DemonstrationMetaProto")
EngineConfigurationProto: Any = _message_class("EngineConfigurationProto")
CustomResetParametersProto: Any = _message_class("CustomResetParametersProto")
TrainingEnvironmentInitialized: Any = _message_class("TrainingEnvironmentInitialized")
TrainingBehaviorInitialized: Any = _message_class("TrainingBehaviorInitialized")

CommandProto: Any = _enum("CommandProto")
CompressionTypeProto: Any = _enum("CompressionTypeProto")
ObservationTypeProto: Any = _enum("ObservationTypeProto")
SpaceTypeProto: Any = _enum("SpaceTypeProto")

STEP, RESET, QUIT = (int(v) for v in CommandProto)
NONE, PNG = (int(v) for v in CompressionTypeProto)
DEFAULT, GOAL_SIGNAL = (int(v) for v in ObservationTypeProto)


class DimensionPropertyProto(IntFlag):
    """Values of ``ObservationProto.dimension_properties`` (one per shape entry).

    Not a protobuf enum: the field is ``repeated int32`` and these are flags (C#
    ``DimensionProperty``, Python ``mlagents_envs.base_env.DimensionProperty``). An empty list
    means UNSPECIFIED for every dimension. Unity's visual observations are
    (NONE, TRANSLATIONAL_EQUIVARIANCE, TRANSLATIONAL_EQUIVARIANCE) for (C, H, W); a
    variable-length observation is (VARIABLE_SIZE, NONE).
    """

    UNSPECIFIED = 0
    NONE = 1
    TRANSLATIONAL_EQUIVARIANCE = 2
    VARIABLE_SIZE = 4


def palaestra_capabilities() -> Any:
    """The `UnityRLCapabilitiesProto` palaestra announces: every capability, like mlagents_envs.

    Unity adapts to a trainer that lacks one (uncompressed observations instead of stacked
    PNGs, deprecated action fields instead of hybrid actions, group rewards dropped) and throws
    for variable-length observations, so a trainer must implement all of them to say yes."""
    return UnityRLCapabilitiesProto(**{flag: True for flag in _CAPABILITY_FLAGS})


# ------------------------------------------------------------------------- version rule

_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?\s*$")


def _parse(version: str) -> Optional[Tuple[int, int]]:
    match = _VERSION.match(version) if isinstance(version, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_communication_version(unity_version: str,
                                python_version: str = COMMUNICATION_VERSION) -> Optional[str]:
    """None when Unity's communication version can talk to ours, else the reason, for a user.

    ML-Agents' rule (``RpcCommunicator.CheckCommunicationVersionsAreCompatible`` in C#,
    ``UnityEnvironment._check_communication_compatibility`` in Python): the major versions must
    be equal; below 1.0 the minor versions must be equal too. A different minor version at 1.x
    is accepted silently: the newer side only uses what both announce in their capabilities.
    """
    unity, ours = _parse(unity_version), _parse(python_version)
    if unity is None or ours is None:
        bad = unity_version if unity is None else python_version
        return (f"Cannot read the ML-Agents communication version {bad!r} (Unity announced "
                f"{unity_version!r}, palaestra speaks {python_version!r}); expected "
                "MAJOR.MINOR.PATCH.")
    same_minor_needed = unity[0] == 0 or ours[0] == 0
    if unity[0] == ours[0] and (not same_minor_needed or unity[1] == ours[1]):
        return None
    older = "Unity" if unity < ours else "palaestra"
    what = ("upgrade the com.unity.ml-agents package of the Unity project (or rebuild the "
            "environment with a newer one)" if older == "Unity" else "upgrade palaestra")
    rule = "major and minor versions" if same_minor_needed else "major versions"
    return (f"Unity's ML-Agents communication version {unity_version} is not compatible with "
            f"palaestra's {python_version}: the {rule} must match. {older} is the older side: "
            f"{what}.")

