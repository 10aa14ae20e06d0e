"""ML-Agents' wire protocol: the runtime-built messages and the side channels.

Expected bytes are written out by hand from ML-Agents' field numbers and wire types (tag byte =
field_number << 3 | wire_type; 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32) and from the
side channels' layouts, never computed with the code under test: a wrong field number, type or
UUID byte order fails here rather than against a Unity build."""
import logging
import struct
import subprocess
import sys
import textwrap
import uuid
from concurrent import futures
from importlib import metadata

import pytest
from google.protobuf import descriptor as gdescriptor

from palaestra.exception import PalaestraError
from palaestra.unity import protocol as P
from palaestra.unity.side_channels import (
    ENGINE_CONFIGURATION_CHANNEL_ID, ENVIRONMENT_PARAMETERS_CHANNEL_ID, SIDE_CHANNEL_GROUP,
    STATS_CHANNEL_ID, EngineConfig, EngineConfigurationChannel, EnvironmentParametersChannel,
    IncomingMessage, OutgoingMessage, RawBytesChannel, SideChannel, SideChannelError,
    SideChannelManager, StatsAggregationMethod, StatsSideChannel, load_side_channel_plugins,
    split_frames)

H = bytes.fromhex

# ------------------------------------------------------------------- names and constants


def test_method_path_comes_from_the_service_descriptor():
    service = P.POOL.FindServiceByName("communicator_objects.UnityToExternalProto")
    method = service.methods_by_name["Exchange"]
    assert method.input_type.full_name == method.output_type.full_name == \
        "communicator_objects.UnityMessageProto"
    assert f"/{service.full_name}/{method.name}" == P.EXCHANGE_METHOD == \
        "/communicator_objects.UnityToExternalProto/Exchange"


def test_versions_and_enum_values():
    assert (P.COMMUNICATION_VERSION, P.PACKAGE_VERSION) == ("1.5.0", "1.1.0")
    assert (P.STEP, P.RESET, P.QUIT) == (0, 1, 2) == tuple(P.CommandProto)
    assert (P.NONE, P.PNG) == (P.CompressionTypeProto.NONE, P.CompressionTypeProto.PNG) == (0, 1)
    assert (P.DEFAULT, P.GOAL_SIGNAL) == (0, 1)
    assert (P.SpaceTypeProto.discrete, P.SpaceTypeProto.continuous) == (0, 1)
    assert [int(v) for v in P.DimensionPropertyProto.__members__.values()] == [0, 1, 2, 4]
    assert P.ListAgentInfoProto is P.UnityRLOutputProto.ListAgentInfoProto
    assert P.ListAgentActionProto is P.UnityRLInputProto.ListAgentActionProto
    assert P.FloatDataProto is P.ObservationProto.FloatData
    assert P.UnityRLOutputProto.DESCRIPTOR.full_name == "communicator_objects.UnityRLOutputProto"


def test_protocol_imports_only_protobuf():
    code = "import sys, palaestra.unity.protocol; print('grpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------- hand-made encodings


def test_header_bytes():
    assert P.HeaderProto(status=200).SerializeToString() == b"\x08\xc8\x01"
    assert P.HeaderProto(status=400, message="x").SerializeToString() == H("08900312" "0178")
    assert P.HeaderProto.FromString(b"\x08\xc8\x01").status == 200


def test_agent_info_bytes():
    obs = P.ObservationProto(shape=[2], float_data=P.FloatDataProto(data=[1.0, 2.0]))
    info = P.AgentInfoProto(reward=1.5, done=True, max_step_reached=True, id=7,
                            action_mask=[True, False], observations=[obs], group_id=3,
                            group_reward=-0.5)
    expected = H(
        "3d" "0000c03f"          # 7 reward, fixed32 1.5
        "4001"                   # 8 done
        "4801"                   # 9 max_step_reached
        "5007"                   # 10 id
        "5a02" "0100"            # 11 action_mask, packed bools
        "6a0f"                   # 13 observations: 15 bytes
        "0a0102"                 #   1 shape [2], packed
        "220a" "0a08" "0000803f" "00000040"  # 4 float_data { 1 data [1.0, 2.0] packed }
        "7003"                   # 14 group_id
        "7d" "000000bf")         # 15 group_reward, fixed32 -0.5
    assert info.SerializeToString() == expected
    assert P.AgentInfoProto.FromString(expected) == info


def test_compressed_observation_bytes_and_negative_mapping():
    obs = P.ObservationProto(shape=[3, 84, 84], compression_type=P.PNG,
                             compressed_data=b"\x89PNG", compressed_channel_mapping=[0, -1],
                             dimension_properties=[1, 2, 2], observation_type=P.GOAL_SIGNAL,
                             name="cam")
    expected = H(
        "0a03035454"             # 1 shape [3, 84, 84]
        "1001"                   # 2 compression_type PNG
        "1a04" "89504e47"        # 3 compressed_data
        "2a0b" "00" "ffffffffffffffffff01"  # 5 mapping [0, -1]: int32, not sint32
        "3203010202"             # 6 dimension_properties
        "3801"                   # 7 observation_type GOAL_SIGNAL
        "4203" "63616d")         # 8 name
    assert obs.SerializeToString() == expected


def test_oneof_observation_data():
    obs = P.ObservationProto(compressed_data=b"png")
    assert obs.WhichOneof("observation_data") == "compressed_data"
    obs.float_data.data.append(1.0)
    assert obs.WhichOneof("observation_data") == "float_data"
    assert obs.compressed_data == b""
    fields = obs.DESCRIPTOR.oneofs_by_name["observation_data"].fields
    assert [f.name for f in fields] == ["compressed_data", "float_data"]


def test_output_map_bytes():
    out = P.UnityRLOutputProto(side_channel=b"\x01")
    out.agentInfos["A?team=0"].value.add(id=1)
    expected = H(
        "1210"                   # 2 agentInfos entry, 16 bytes
        "0a08" "413f7465616d3d30"  # key "A?team=0"
        "1204" "0a02" "5001"     # value ListAgentInfoProto { 1 value [AgentInfo { id 1 }] }
        "1a0101")                # 3 side_channel
    assert out.SerializeToString() == expected
    entry = P.UnityRLOutputProto.DESCRIPTOR.fields_by_name["agentInfos"].message_type
    assert entry.name == "AgentInfosEntry" and entry.GetOptions().map_entry


def test_input_map_and_command_bytes():
    rl_in = P.UnityRLInputProto(command=P.RESET, side_channel=b"xy")
    rl_in.agent_actions["B"].value.add(continuous_actions=[0.5], discrete_actions=[2])
    expected = H(
        "0a10"                   # 1 agent_actions entry, 16 bytes
        "0a0142"                 # key "B"
        "120b" "0a09"            # value ListAgentActionProto { 1 value [9-byte action] }
        "3204" "0000003f"        # 6 continuous_actions [0.5]
        "3a0102"                 # 7 discrete_actions [2]
        "2001"                   # 4 command RESET
        "2a02" "7879")           # 5 side_channel
    assert rl_in.SerializeToString() == expected
    deprecated = P.AgentActionProto(vector_actions_deprecated=[1.0], value=2.0)
    assert deprecated.SerializeToString() == H("0a04" "0000803f" "25" "00000040")


def test_initialization_bytes():
    init = P.UnityRLInitializationInputProto(
        seed=5, communication_version="1.5.0", package_version="1.1.0",
        capabilities=P.palaestra_capabilities(), num_areas=2)
    assert init.SerializeToString() == H(
        "0805" "1205" "312e352e30" "1a05" "312e312e30"
        "220e" "0801" "1001" "1801" "2001" "2801" "3001" "3801"
        "2802")
    spec = P.ActionSpecProto(num_continuous_actions=2, num_discrete_actions=2,
                             discrete_branch_sizes=[3, 2], action_descriptions=["a"])
    brain = P.BrainParametersProto(brain_name="3DBall?team=0", is_training=True,
                                   action_spec=spec, vector_action_size_deprecated=[2],
                                   vector_action_space_type_deprecated=P.SpaceTypeProto.continuous)
    assert brain.SerializeToString() == H(
        "1a0102" "3001" "3a0d" + "3DBall?team=0".encode().hex() + "4001"
        "4a0b" "0802" "1002" "1a020302" "220161")
    out = P.UnityRLInitializationOutputProto(
        name="N", communication_version="1.5.0", log_path="L", package_version="3.0.0",
        capabilities=P.UnityRLCapabilitiesProto(baseRLCapabilities=True))
    out.brain_parameters.add(brain_name="B")
    assert out.SerializeToString() == H(
        "0a014e" "1205312e352e30" "1a014c" "2a03" "3a0142" "3a05332e302e30" "42020801")


def test_unity_message_bytes():
    msg = P.UnityMessageProto()
    msg.header.status = 200
    msg.unity_input.rl_input.command = P.RESET
    assert msg.SerializeToString() == H("0a0308c801" "1a04" "0a02" "2001")
    reply = P.UnityMessageProto()
    reply.header.status = 200
    reply.unity_output.rl_initialization_output.name = "A"
    assert reply.SerializeToString() == H("0a0308c801" "1205" "1203" "0a0141")
    close = P.UnityMessageProto(header=P.HeaderProto(status=P.STATUS_CLOSE))
    assert close.SerializeToString() == H("0a03089003")


# ------------------------------------------------------------------------ round trips

_SCALAR = {gdescriptor.FieldDescriptor.TYPE_INT32: -7, gdescriptor.FieldDescriptor.TYPE_FLOAT: 0.25,
           gdescriptor.FieldDescriptor.TYPE_BOOL: True,
           gdescriptor.FieldDescriptor.TYPE_STRING: "s?team=1",
           gdescriptor.FieldDescriptor.TYPE_BYTES: b"\x00\xff"}
_MESSAGE_NAMES = [
    "HeaderProto", "UnityRLCapabilitiesProto", "ObservationProto", "FloatDataProto",
    "AgentInfoProto", "AgentActionProto", "ActionSpecProto", "BrainParametersProto",
    "UnityRLInitializationInputProto", "UnityRLInitializationOutputProto",
    "UnityRLInputProto", "ListAgentActionProto", "UnityRLOutputProto", "ListAgentInfoProto",
    "UnityInputProto", "UnityOutputProto", "UnityMessageProto", "AgentInfoActionPairProto",
    "DemonstrationMetaProto", "EngineConfigurationProto", "CustomResetParametersProto",
    "TrainingEnvironmentInitialized", "TrainingBehaviorInitialized"]


def _repeated(fd):
    """`is_repeated` on current protobuf (7 dropped `label`), `label` on older ones."""
    flag = getattr(fd, "is_repeated", None)
    return flag if flag is not None else fd.label == fd.LABEL_REPEATED


def _fill(msg, depth=0):
    """Set every field (one of each oneof: the last) to a non-default value."""
    for fd in msg.DESCRIPTOR.fields:
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            _fill(getattr(msg, fd.name)["key"], depth + 1)
        elif fd.message_type is not None:
            if depth > 5:
                continue
            if _repeated(fd):
                _fill(getattr(msg, fd.name).add(), depth + 1)
            else:
                _fill(getattr(msg, fd.name), depth + 1)
        else:
            value = fd.enum_type.values[-1].number if fd.enum_type else _SCALAR[fd.type]
            if _repeated(fd):
                getattr(msg, fd.name).extend([value, value])
            else:
                setattr(msg, fd.name, value)
    return msg


@pytest.mark.parametrize("name", _MESSAGE_NAMES)
def test_every_message_round_trips(name):
    cls = getattr(P, name)
    msg = _fill(cls())
    data = msg.SerializeToString()
    assert cls.FromString(data) == msg
    assert cls.FromString(data).SerializeToString(deterministic=True) == \
        msg.SerializeToString(deterministic=True)


def test_every_message_of_the_schema_is_exported():
    names = {m.name for m in P.file_descriptor_proto().message_type}
    assert names <= set(_MESSAGE_NAMES)


def test_round_trip_of_a_full_step_message():
    out = P.UnityMessageProto(header=P.HeaderProto(status=200))
    rl = out.unity_output.rl_output
    for behavior in ("Walker?team=0", "Striker?team=1"):
        for agent in range(3):
            info = rl.agentInfos[behavior].value.add(id=agent, reward=agent / 4)
            info.observations.add(shape=[3], float_data=P.FloatDataProto(data=[agent] * 3))
    again = P.UnityMessageProto.FromString(out.SerializeToString())
    assert again == out
    assert sorted(again.unity_output.rl_output.agentInfos) == ["Striker?team=1", "Walker?team=0"]
    assert [i.id for i in again.unity_output.rl_output.agentInfos["Walker?team=0"].value] == \
        [0, 1, 2]


# ---------------------------------------------------------------- version compatibility


@pytest.mark.parametrize("unity,ours", [("1.5.0", "1.5.0"), ("1.0.0", "1.5.0"),
                                        ("1.6.2", "1.5.0"), ("1.5", "1.5.0"),
                                        ("0.15.0", "0.15.1")])
def test_compatible_versions(unity, ours):
    assert P.check_communication_version(unity, ours) is None


def test_default_version_is_ours():
    assert P.check_communication_version("1.2.0") is None
    assert "palaestra's 1.5.0" in P.check_communication_version("2.0.0")


@pytest.mark.parametrize("unity,ours,upgrade", [
    ("2.0.0", "1.5.0", "upgrade palaestra"),
    ("0.15.0", "1.5.0", "com.unity.ml-agents"),
    ("0.14.0", "0.15.0", "com.unity.ml-agents"),
    ("0.16.0", "0.15.0", "upgrade palaestra"),
])
def test_incompatible_versions(unity, ours, upgrade):
    message = P.check_communication_version(unity, ours)
    assert message is not None
    assert unity in message and ours in message and upgrade in message


@pytest.mark.parametrize("bad", ["", "one.two", "1", "1.x.0", None])
def test_unreadable_version(bad):
    message = P.check_communication_version(bad, "1.5.0")
    assert message is not None and "Cannot read" in message and "1.5.0" in message


# ------------------------------------------------------------------------------ gRPC


def test_exchange_over_grpc_loopback():
    grpc = pytest.importorskip("grpc")

    def exchange(request, context):
        reply = P.UnityMessageProto(header=P.HeaderProto(status=200))
        reply.unity_input.rl_initialization_input.seed = request.header.status + 1
        return reply

    handler = grpc.method_handlers_generic_handler(P.SERVICE_NAME, {
        "Exchange": grpc.unary_unary_rpc_method_handler(
            exchange, request_deserializer=P.UnityMessageProto.FromString,
            response_serializer=P.UnityMessageProto.SerializeToString)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(P.EXCHANGE_METHOD,
                                       request_serializer=P.UnityMessageProto.SerializeToString,
                                       response_deserializer=P.UnityMessageProto.FromString)
            reply = call(P.UnityMessageProto(header=P.HeaderProto(status=200)), timeout=10)
    finally:
        server.stop(None)
    assert reply.unity_input.rl_initialization_input.seed == 201


# ===================================================================== side channels

ENGINE_LE = H("2c3451e97e4fea11b238784f4387d1f7")     # e951342c-4f7e-11ea-b238-784f4387d1f7
PARAMS_LE = H("1e894c530f81ea11a9d0822485860400")     # 534c891e-810f-11ea-a9d0-822485860400
STATS_LE = H("b7f7d8a1c8cef950b78bd3e165a78520")      # a1d8f7b7-cec8-50f9-b78b-d3e165a78520


def frame(uuid_le, payload):
    return uuid_le + struct.pack("<i", len(payload)) + payload


def test_uuid_byte_order_is_dotnet_guid_order():
    assert ENGINE_CONFIGURATION_CHANNEL_ID.bytes_le == ENGINE_LE
    assert ENVIRONMENT_PARAMETERS_CHANNEL_ID.bytes_le == PARAMS_LE
    assert STATS_CHANNEL_ID.bytes_le == STATS_LE


def test_engine_configuration_layout():
    channel = EngineConfigurationChannel()
    manager = SideChannelManager([channel])
    channel.set_configuration(EngineConfig.training())
    assert manager.generate_side_channel_messages() == (
        ENGINE_LE + H("0c000000") + H("00000000" "54000000" "54000000")
        + ENGINE_LE + H("08000000") + H("01000000" "05000000")
        + ENGINE_LE + H("08000000") + H("02000000" "0000a041")    # time scale 20.0
        + ENGINE_LE + H("08000000") + H("03000000" "ffffffff")    # target frame rate -1
        + ENGINE_LE + H("08000000") + H("04000000" "3c000000"))   # capture frame rate 60
    assert manager.generate_side_channel_messages() == b""       # queues were emptied
    channel.set_configuration_parameters(time_scale=1.0)
    assert channel.message_queue == [H("02000000" "0000803f")]
    with pytest.raises(SideChannelError, match="width and height"):
        channel.set_configuration_parameters(width=84)


def test_environment_parameters_layouts():
    channel = EnvironmentParametersChannel()
    channel.set_float_parameter("gravity", 2.5)
    channel.set_uniform_sampler_parameters("a", 1.0, 2.0, seed=3)
    channel.set_gaussian_sampler_parameters("a", 0.5, 0.25, seed=7)
    channel.set_multirangeuniform_sampler_parameters("a", [(1.0, 2.0), (3.0, 4.0)], seed=9)
    assert channel.message_queue == [
        H("07000000") + b"gravity" + H("00000000" "00002040"),
        H("01000000") + b"a" + H("01000000" "03000000" "00000000" "0000803f" "00000040"),
        H("01000000") + b"a" + H("01000000" "07000000" "01000000" "0000003f" "0000803e"),
        H("01000000") + b"a" + H("01000000" "09000000" "02000000"
                                 "04000000" "0000803f" "00000040" "00004040" "00008040"),
    ]
    manager = SideChannelManager([channel])
    data = manager.generate_side_channel_messages()
    assert data.startswith(PARAMS_LE + H("13000000"))  # 4 + 7 + 4 + 4 = 19 bytes


def test_stats_channel_reads_unity_layout():
    stats = StatsSideChannel()
    manager = SideChannelManager([stats])
    payload = H("09000000") + b"Env/Score" + H("00002040" "02000000")     # 2.5, SUM
    old_payload = H("01000000") + b"k" + H("0000803f")                     # no aggregation
    manager.process_side_channel_message(frame(STATS_LE, payload) + frame(STATS_LE, payload)
                                         + frame(STATS_LE, old_payload))
    assert stats.get_and_reset_stats() == {
        "Env/Score": [(2.5, StatsAggregationMethod.SUM)] * 2,
        "k": [(1.0, StatsAggregationMethod.AVERAGE)]}
    assert stats.get_and_reset_stats() == {}
    with pytest.raises(SideChannelError, match="aggregation method 9"):
        manager.process_side_channel_message(
            frame(STATS_LE, H("01000000") + b"k" + H("0000803f" "09000000")))


def test_raw_bytes_channel_both_ways():
    channel_id = uuid.UUID("12345678-1234-5678-9abc-def012345678")
    raw = RawBytesChannel(channel_id)
    manager = SideChannelManager([raw])
    raw.send_raw_data(b"\x00hello")
    assert manager.generate_side_channel_messages() == \
        H("78563412341278569abcdef012345678") + H("06000000") + b"\x00hello"
    manager.process_side_channel_message(frame(channel_id.bytes_le, b"abc")
                                         + frame(channel_id.bytes_le, b""))
    assert raw.get_and_clear_received_messages() == [b"abc", b""]
    assert raw.get_and_clear_received_messages() == []


def test_message_field_encodings_round_trip():
    out = OutgoingMessage()
    out.write_bool(True)
    out.write_bool(False)
    out.write_int32(-2)
    out.write_float32(0.5)
    out.write_string("key")
    out.write_float32_list([1.0, -1.0])
    assert out.buffer == H("01" "00" "feffffff" "0000003f" "03000000") + b"key" + \
        H("02000000" "0000803f" "000080bf")
    msg = IncomingMessage(out.buffer)
    assert [msg.read_bool(), msg.read_bool(), msg.read_int32(), msg.read_float32(),
            msg.read_string(), msg.read_float32_list()] == [True, False, -2, 0.5, "key",
                                                           [1.0, -1.0]]
    # past the end: the caller's defaults, as ML-Agents' readers do
    assert (msg.read_bool(True), msg.read_int32(4), msg.read_float32(1.5), msg.read_string("d"),
            msg.read_float32_list([2.0])) == (True, 4, 1.5, "d", [2.0])
    assert msg.get_raw_bytes() == out.buffer


def test_channels_get_their_frames_in_order_and_unknown_ids_warn_once(caplog):
    a, b = RawBytesChannel(uuid.uuid4()), RawBytesChannel(uuid.uuid4())
    unknown = uuid.uuid4()
    manager = SideChannelManager([a, b])
    data = (frame(a.channel_id.bytes_le, b"1") + frame(unknown.bytes_le, b"?")
            + frame(b.channel_id.bytes_le, b"2") + frame(a.channel_id.bytes_le, b"3")
            + frame(unknown.bytes_le, b"?"))
    with caplog.at_level(logging.WARNING):
        manager.process_side_channel_message(data)
        manager.process_side_channel_message(frame(unknown.bytes_le, b"?"))
    assert a.get_and_clear_received_messages() == [b"1", b"3"]
    assert b.get_and_clear_received_messages() == [b"2"]
    warnings = [r for r in caplog.records if str(unknown) in r.getMessage()]
    assert len(warnings) == 1
    a.send_raw_data(b"x")
    b.send_raw_data(b"y")
    a.send_raw_data(b"z")
    assert split_frames(manager.generate_side_channel_messages()) == [
        (a.channel_id, b"x"), (a.channel_id, b"z"), (b.channel_id, b"y")]


def test_duplicate_channel_ids_are_refused():
    with pytest.raises(SideChannelError, match=str(STATS_CHANNEL_ID)):
        SideChannelManager([StatsSideChannel(), StatsSideChannel()])


# ------------------------------------------------------------------- malformed bytes

GOOD = frame(STATS_LE, H("01000000") + b"k" + H("0000803f" "00000000"))


@pytest.mark.parametrize("data,words", [
    (ENGINE_LE[:10], "Truncated"),
    (GOOD + STATS_LE + H("0400"), "Truncated"),
    (STATS_LE + H("05000000") + b"abc", "does not fit"),
    (STATS_LE + H("ffffffff"), "does not fit"),
    (STATS_LE + H("ffffff7f") + b"x", "does not fit"),
])
def test_malformed_framing_raises_before_any_delivery(data, words):
    stats = StatsSideChannel()
    manager = SideChannelManager([stats])
    with pytest.raises(SideChannelError, match=words) as info:
        manager.process_side_channel_message(GOOD + data)
    assert isinstance(info.value, PalaestraError)
    assert stats.stats == {}
    if len(data) >= 20:
        assert str(STATS_CHANNEL_ID) in str(info.value)


@pytest.mark.parametrize("payload,words", [
    (H("05000000") + b"ab", "string"),                     # string longer than the payload
    (H("feffffff") + b"ab", "negative length"),            # negative string length
    (H("02000000") + b"\xff\xfe" + H("0000803f"), "not valid text"),
    (H("01000000") + b"k" + H("0000"), "float32 needs 4 bytes"),   # a float cut in two
])
def test_malformed_payloads_name_the_channel(payload, words):
    manager = SideChannelManager([StatsSideChannel()])
    with pytest.raises(SideChannelError, match=words) as info:
        manager.process_side_channel_message(frame(STATS_LE, payload))
    assert str(STATS_CHANNEL_ID) in str(info.value)


def test_huge_float_list_count_fails_fast():
    msg = IncomingMessage(H("ffffff7f") + b"\x00" * 8, uuid.UUID(int=1))
    with pytest.raises(SideChannelError, match="floats"):
        msg.read_float32_list()
    with pytest.raises(SideChannelError, match="negative length"):
        IncomingMessage(H("ffffffff")).read_float32_list()


def test_channels_that_unity_never_writes_to_refuse_data():
    manager = SideChannelManager([EngineConfigurationChannel(), EnvironmentParametersChannel()])
    for uuid_le in (ENGINE_LE, PARAMS_LE):
        with pytest.raises(SideChannelError, match="never sends"):
            manager.process_side_channel_message(frame(uuid_le, b"\x00"))


@pytest.mark.parametrize("write", [
    lambda m: m.write_string("grüße"), lambda m: m.write_int32(2 ** 31),
    lambda m: m.write_float32(1e300)])
def test_unwritable_values(write):
    with pytest.raises(SideChannelError):
        write(OutgoingMessage())


# ---------------------------------------------------------------------------- plugins


class _Channel(SideChannel):
    def on_message_received(self, msg):
        pass


class _EP:
    """Just enough of an entry point: `name`, `load()`, no distribution."""

    def __init__(self, name, target):
        self.name = name
        self._target = target

    def load(self):
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


def test_side_channel_plugins(caplog):
    one, two, three = (uuid.UUID(int=n) for n in (1, 2, 3))

    def exits():
        sys.exit(3)

    eps = [_EP("h_taken", lambda: _Channel(STATS_CHANNEL_ID)),
           _EP("g_clash", lambda: _Channel(one)),
           _EP("f_exits", exits),
           _EP("e_notcallable", 42),
           _EP("d_wrong", lambda: "not a channel"),
           _EP("c_import", ImportError("needs a missing package")),
           _EP("b_several", lambda: [_Channel(two), _Channel(three)]),
           _EP("a_single", lambda: _Channel(one))]
    with caplog.at_level(logging.WARNING):
        result = load_side_channel_plugins(entry_points=eps, taken=[STATS_CHANNEL_ID])
    assert [c.channel_id for c in result.channels] == [one, two, three]  # loaded by name
    failed = {f.entry_point: f.error for f in result.failures}
    assert set(failed) == {"c_import", "d_wrong", "e_notcallable", "f_exits", "g_clash",
                           "h_taken"}
    assert "needs a missing package" in failed["c_import"]
    assert "sys.exit(3)" in failed["f_exits"]
    assert "already used" in failed["g_clash"] and "already used" in failed["h_taken"]
    assert all(f.distribution == "unknown" for f in result.failures)
    assert sum("Skipping side-channel plugin" in r.getMessage() for r in caplog.records) == 6


def test_side_channel_plugin_through_a_real_entry_point(tmp_path, monkeypatch):
    module = f"palaestra_test_side_channel_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        import uuid
        from palaestra.unity.side_channels import RawBytesChannel

        def make():
            return RawBytesChannel(uuid.UUID(int=77))
    """), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = metadata.EntryPoint("mine", f"{module}:make", SIDE_CHANNEL_GROUP)
    result = load_side_channel_plugins(entry_points=[ep])
    assert result.failures == []
    assert [c.channel_id for c in result.channels] == [uuid.UUID(int=77)]
    monkeypatch.delitem(sys.modules, module)
    assert load_side_channel_plugins(entry_points=[]).channels == []
