"""ML-Agents demonstration files (`palaestra.demo`): every field written comes back; a file
built byte by byte from ML-Agents' .proto field numbers (not with the writer) reads as
ML-Agents' demo_to_buffer reads it; every bad input is one line naming the file."""
import io
import os
import struct
import time

import numpy as np
import pytest

from palaestra.buffer import BufferKey, next_obs_key, obs_key
from palaestra.demo import (INITIAL_POS, DemonstrationError, DemonstrationWriter, Episode,
                            load_demonstrations, write_demonstration)
from palaestra.envs.base import ActionSpec, BehaviorSpec, ObservationKind, ObservationSpec
from palaestra.exception import PalaestraError, TrainerConfigError

OBS = [ObservationSpec((3,), ObservationKind.VECTOR, "ray"),
       ObservationSpec((1,), ObservationKind.VECTOR, "speed"),
       ObservationSpec((4, 5, 3), ObservationKind.VISUAL, "camera")]
ACTIONS = {"continuous": ActionSpec(2, ()), "discrete": ActionSpec(0, (3, 2)),
           "hybrid": ActionSpec(1, (4,))}


def _episode(spec, length, rng, interrupted=False, masked=True):
    a = spec.action_spec
    obs = [rng.random((length + 1, *o.shape)).astype(np.float32) for o in spec.observation_specs]
    disc = np.stack([rng.integers(0, b, length) for b in a.discrete_branches], axis=1) \
        if a.discrete_branches else np.zeros((length, 0), np.int64)
    mask = None
    if masked and a.discrete_branches:  # a random mask that leaves the chosen action allowed
        mask = rng.random((length, sum(a.discrete_branches))) < 0.6
        offsets = np.concatenate([[0], np.cumsum(a.discrete_branches)[:-1]])
        np.put_along_axis(mask, disc + offsets, True, axis=1)
    return Episode(obs, rng.normal(size=length).astype(np.float32),
                   rng.uniform(-1, 1, (length, a.continuous_size)).astype(np.float32), disc,
                   mask, interrupted)


@pytest.mark.parametrize("kind", sorted(ACTIONS))
def test_every_field_round_trips(tmp_path, kind):
    spec = BehaviorSpec(OBS, ACTIONS[kind])
    rng = np.random.default_rng(len(kind))
    episodes = [_episode(spec, 4, rng), _episode(spec, 1, rng, interrupted=True),
                _episode(spec, 6, rng, masked=False)]
    path = tmp_path / "expert.demo"
    meta = write_demonstration(path, spec, episodes, name="expert", behavior_name="Walker")
    demo = load_demonstrations(path, spec)

    assert demo.spec == spec  # shapes, kinds and observation names
    assert (demo.name, demo.behavior_name, demo.files) == ("expert", "Walker", [str(path)])
    assert (demo.episodes, demo.steps, len(demo.buffer)) == (3, 11, 11)
    returns = [float(np.sum(e.rewards, dtype=np.float64)) for e in episodes]
    np.testing.assert_allclose(demo.returns, returns, rtol=1e-6)
    assert demo.mean_reward == pytest.approx(np.mean(returns), rel=1e-6)
    assert demo.metas == [meta]
    assert (meta.api_version, meta.name, meta.number_steps, meta.number_episodes) == \
        (1, "expert", 11 + 3, 3)  # a pair per decision and one that ends each episode
    assert meta.mean_reward == pytest.approx(np.mean(returns), rel=1e-6)

    buf = demo.buffer
    for k in range(len(OBS)):
        np.testing.assert_array_equal(buf[obs_key(k)], np.concatenate([e.obs[k][:-1]
                                                                        for e in episodes]))
        np.testing.assert_array_equal(buf[next_obs_key(k)], np.concatenate([e.obs[k][1:]
                                                                             for e in episodes]))
        assert buf[obs_key(k)].dtype == np.float32
    np.testing.assert_array_equal(buf[BufferKey.CONTINUOUS_ACTION],
                                  np.concatenate([e.continuous for e in episodes]))
    np.testing.assert_array_equal(buf[BufferKey.DISCRETE_ACTION],
                                  np.concatenate([e.discrete for e in episodes]))
    width = sum(spec.action_spec.discrete_branches)
    masks = [e.action_mask if e.action_mask is not None else np.ones((len(e.rewards), width),
                                                                     bool) for e in episodes]
    np.testing.assert_array_equal(buf[BufferKey.ACTION_MASK], np.concatenate(masks))
    np.testing.assert_array_equal(buf[BufferKey.ENVIRONMENT_REWARDS],
                                  np.concatenate([e.rewards for e in episodes]))
    ends = np.zeros(11, np.float32)
    ends[[3, 4, 10]] = 1
    np.testing.assert_array_equal(buf[BufferKey.DONE], ends)
    np.testing.assert_array_equal(buf[BufferKey.INTERRUPTED], np.eye(11, dtype=np.float32)[4])
    assert buf[BufferKey.CONTINUOUS_ACTION].dtype == np.float32
    assert buf[BufferKey.DISCRETE_ACTION].dtype.kind == "i"
    assert buf[BufferKey.ACTION_MASK].dtype == bool
    assert buf[BufferKey.DONE].dtype == buf[BufferKey.ENVIRONMENT_REWARDS].dtype == np.float32


def test_a_folder_reads_its_files_in_name_order(tmp_path):
    spec = BehaviorSpec(OBS[:1], ACTIONS["discrete"])
    rng = np.random.default_rng(3)
    first, second = [_episode(spec, 2, rng)], [_episode(spec, 3, rng), _episode(spec, 1, rng)]
    write_demonstration(tmp_path / "b.demo", spec, second, name="b")
    write_demonstration(tmp_path / "a.demo", spec, first, name="a")
    (tmp_path / "notes.txt").write_text("not a demonstration")
    demo = load_demonstrations(tmp_path)
    assert [os.path.basename(f) for f in demo.files] == ["a.demo", "b.demo"]
    assert (demo.episodes, demo.steps, demo.name) == (3, 6, "a")
    np.testing.assert_array_equal(demo.buffer[obs_key(0)], np.concatenate(
        [e.obs[0][:-1] for e in first + second]))
    np.testing.assert_array_equal(demo.buffer[BufferKey.DONE], [0, 1, 0, 0, 1, 1])


def test_the_writer_streams_and_writes_nothing_until_closed(tmp_path):
    spec = BehaviorSpec(OBS[:1], ACTIONS["continuous"])
    path = tmp_path / "x.demo"
    rng = np.random.default_rng(0)
    with pytest.raises(RuntimeError, match="boom"):
        with DemonstrationWriter(path, spec, name="x") as writer:
            writer.add_episode(_episode(spec, 3, rng))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    writer = DemonstrationWriter(path, spec, name="x")
    writer.add_episode(_episode(spec, 3, rng))
    assert not path.exists()
    writer.close()
    assert load_demonstrations(path).steps == 3
    with pytest.raises(PalaestraError, match="observation 0 has shape"):
        writer = DemonstrationWriter(tmp_path / "y.demo", spec)
        writer.add_episode(Episode([np.zeros((2, 3))], np.zeros(2), np.zeros((2, 2))))
    with pytest.raises(PalaestraError, match="16 printable characters"):
        DemonstrationWriter(tmp_path / "y.demo", spec, name="a name longer than 16")


# ------------------------------------------------------------ a file built byte by byte
# Field numbers and wire types from ML-Agents' .proto files (communicator_objects):
# DemonstrationMetaProto 1 api_version, 2 demonstration_name, 3 number_steps,
#   4 number_episodes, 5 mean_reward; BrainParametersProto 3 vector_action_size_deprecated,
#   6 vector_action_space_type_deprecated, 7 brain_name, 9 action_spec; ActionSpecProto
#   1 num_continuous_actions, 2 num_discrete_actions, 3 discrete_branch_sizes;
#   AgentInfoActionPairProto 1 agent_info, 2 action_info; AgentInfoProto 7 reward, 8 done,
#   9 max_step_reached, 10 id, 11 action_mask (True = NOT allowed), 13 observations;
#   ObservationProto 1 shape, 2 compression_type (1 = PNG), 3 compressed_data, 4 float_data
#   (FloatData 1 data), 8 name; AgentActionProto 1 vector_actions_deprecated,
#   6 continuous_actions, 7 discrete_actions.


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def key(number, wire):
    return varint(number << 3 | wire)


def vint(number, value):
    return key(number, 0) + varint(value)


def f32(number, value):
    return key(number, 5) + struct.pack("<f", value)


def ld(number, payload):
    return key(number, 2) + varint(len(payload)) + payload


def packed_f32(number, values):
    return ld(number, b"".join(struct.pack("<f", v) for v in values))


def packed_int(number, values):
    return ld(number, b"".join(varint(v) for v in values))


def delimited(payload):
    return varint(len(payload)) + payload


def header(steps, episodes=1, version=1, name=b"hand"):
    meta = vint(1, version) + ld(2, name) + vint(3, steps) + vint(4, episodes) + f32(5, 0.5)
    return delimited(meta).ljust(INITIAL_POS, b"\0")


def png_gray(values):
    from PIL import Image

    data = io.BytesIO()
    Image.fromarray(np.asarray(values, np.uint8), mode="L").save(data, format="PNG")
    return data.getvalue()


def hybrid_brain():
    return delimited(ld(7, b"Hand") + ld(9, vint(1, 1) + vint(2, 1) + packed_int(3, [2])))


def hand_pair(vector, pixels, reward, done=False, mask=None, cont=0.0, disc=0, ended=False):
    vec = packed_int(1, [2]) + ld(4, packed_f32(1, vector)) + ld(8, b"vec")
    img = packed_int(1, [1, 2, 2]) + vint(2, 1) + ld(3, png_gray(pixels)) + ld(8, b"eye")
    info = f32(7, reward) + vint(8, int(done)) + vint(9, int(ended)) + vint(10, 5)
    if mask is not None:
        info += packed_int(11, [int(m) for m in mask])
    info += ld(13, vec) + ld(13, img)
    action = packed_f32(6, [cont]) + packed_int(7, [disc])
    return delimited(ld(1, info) + ld(2, action))


def test_a_file_built_by_hand_reads_as_ml_agents_reads_it(tmp_path):
    pairs = [hand_pair([1, 2], [[0, 51], [102, 255]], 0.0, mask=[False, True], cont=0.5),
             hand_pair([3, 4], [[255, 0], [0, 0]], 0.25, mask=[True, False], disc=1,
                       cont=-0.5),
             hand_pair([5, 6], [[0, 0], [0, 51]], 1.0, done=True),
             hand_pair([7, 8], [[0, 0], [0, 0]], 0.0, cont=0.75)]
    trailer = b"\x08\x01\x12\x04hand"  # Unity appends the header's bytes after the pairs
    path = tmp_path / "hand.demo"
    path.write_bytes(header(steps=4) + hybrid_brain() + b"".join(pairs) + trailer)

    demo = load_demonstrations(path)
    assert demo.behavior_name == "Hand" and demo.name == "hand"
    assert demo.spec == BehaviorSpec([ObservationSpec((2,), ObservationKind.VECTOR, "vec"),
                                      ObservationSpec((2, 2, 1), ObservationKind.VISUAL, "eye")],
                                     ActionSpec(1, (2,)))
    assert demo.metas[0][1:] == (1, "hand", 4, 1, 0.5)
    # rows: pairs 0 and 1 (pair 2 ends the episode, pair 3 is the last of the file)
    buf = demo.buffer
    assert (len(buf), demo.episodes, demo.steps) == (2, 1, 2)
    np.testing.assert_array_equal(buf[obs_key(0)], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(buf[next_obs_key(0)], [[3, 4], [5, 6]])
    np.testing.assert_allclose(buf[obs_key(1)][0, :, :, 0], [[0, 0.2], [0.4, 1]], atol=1e-6)
    np.testing.assert_allclose(buf[next_obs_key(1)][1, :, :, 0], [[0, 0], [0, 0.2]], atol=1e-6)
    np.testing.assert_array_equal(buf[BufferKey.CONTINUOUS_ACTION], [[0.5], [-0.5]])
    np.testing.assert_array_equal(buf[BufferKey.DISCRETE_ACTION], [[0], [1]])
    np.testing.assert_array_equal(buf[BufferKey.ACTION_MASK], [[True, False], [False, True]])
    np.testing.assert_array_equal(buf[BufferKey.ENVIRONMENT_REWARDS], [0.25, 1.0])
    np.testing.assert_array_equal(buf[BufferKey.DONE], [0, 1])
    assert demo.returns.tolist() == [1.25] and demo.mean_reward == 1.25

    # number_steps 0 (a recording Unity never closed): read to the end
    path.write_bytes(header(steps=0) + hybrid_brain() + b"".join(pairs))
    assert len(load_demonstrations(path).buffer) == 2
    # one step makes no row, but the columns are there
    path.write_bytes(header(steps=1) + hybrid_brain() + b"".join(pairs))
    one = load_demonstrations(path)
    assert (one.steps, one.episodes, one.mean_reward) == (0, 0, 0.0)
    assert one.buffer[obs_key(1)].shape == (0, 2, 2, 1)
    assert one.buffer[BufferKey.ACTION_MASK].shape == (0, 2)


def test_a_written_file_reads_as_ml_agents_load_demonstration_walks_it(tmp_path):
    """ML-Agents' loop: a varint and the header at 0, then position 33, then varint-delimited
    brain parameters and number_steps pairs; decoded here with the message classes only."""
    from palaestra.unity import protocol as P

    spec = BehaviorSpec(OBS[:1], ACTIONS["hybrid"])
    episode = _episode(spec, 2, np.random.default_rng(5))
    path = tmp_path / "w.demo"
    write_demonstration(path, spec, [episode], name="w", behavior_name="Striker")
    data = path.read_bytes()

    def read(pos):
        size = shift = 0
        while True:
            byte = data[pos]
            size |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if byte < 0x80:
                return data[pos:pos + size], pos + size

    raw, end = read(0)
    meta = P.DemonstrationMetaProto.FromString(raw)
    assert (meta.api_version, meta.demonstration_name, meta.number_steps,
            meta.number_episodes) == (1, "w", 3, 1)
    assert data[end:INITIAL_POS] == bytes(INITIAL_POS - end)  # zero padding
    raw, pos = read(INITIAL_POS)
    brain = P.BrainParametersProto.FromString(raw)
    assert brain.brain_name == "Striker" and not brain.is_training
    assert (brain.action_spec.num_continuous_actions, brain.action_spec.num_discrete_actions,
            list(brain.action_spec.discrete_branch_sizes)) == (1, 1, [4])
    pairs = []
    while pos < len(data):
        raw, pos = read(pos)
        pairs.append(P.AgentInfoActionPairProto.FromString(raw))
    assert len(pairs) == meta.number_steps
    assert [p.agent_info.done for p in pairs] == [False, False, True]
    assert [p.agent_info.reward for p in pairs] == [0.0, *episode.rewards.tolist()]
    assert list(pairs[1].action_info.discrete_actions) == episode.discrete[1].tolist()
    assert list(pairs[1].action_info.continuous_actions) == episode.continuous[1].tolist()
    assert list(pairs[0].agent_info.action_mask) == (~episode.action_mask[0]).tolist()
    assert list(pairs[2].agent_info.observations[0].float_data.data) == \
        episode.obs[0][2].tolist()


def test_a_file_of_an_old_unity_with_deprecated_action_fields(tmp_path):
    brain = delimited(packed_int(3, [2]) + vint(6, 1) + ld(7, b"Old"))  # continuous, size 2
    vec = packed_int(1, [1]) + ld(4, packed_f32(1, [9.0]))

    def pair(reward, done, actions):
        info = f32(7, reward) + vint(8, done) + ld(13, vec)
        return delimited(ld(1, info) + ld(2, packed_f32(1, actions)))

    path = tmp_path / "old.demo"
    path.write_bytes(header(steps=3, version=0) + brain + pair(0, 0, [0.1, 0.2]) +
                     pair(0.5, 0, [0.3, 0.4]) + pair(1, 1, []))
    demo = load_demonstrations(path)
    assert demo.spec.action_spec == ActionSpec(2, ())
    np.testing.assert_allclose(demo.buffer[BufferKey.CONTINUOUS_ACTION],
                               [[0.1, 0.2], [0.3, 0.4]], rtol=1e-6)
    np.testing.assert_array_equal(demo.buffer[BufferKey.ENVIRONMENT_REWARDS], [0.5, 1.0])


# ------------------------------------------------------------------------- bad inputs


def _one_line(exc_info, path):
    message = str(exc_info.value)
    assert "\n" not in message and str(path) in message, message
    return message


@pytest.fixture
def good(tmp_path):
    spec = BehaviorSpec(OBS[:2], ACTIONS["hybrid"])
    path = tmp_path / "good.demo"
    write_demonstration(path, spec, [_episode(spec, 3, np.random.default_rng(1))], name="g")
    return path, spec


def test_missing_empty_and_misnamed_inputs(tmp_path, good):
    for target, words in [(tmp_path / "none.demo", "no such file or folder"),
                          (tmp_path / "empty", "holds no .demo file"),
                          (tmp_path / "expert.txt", "not a .demo file")]:
        if target.name == "empty":
            target.mkdir()
        elif target.suffix == ".txt":
            target.write_bytes(good[0].read_bytes())
        with pytest.raises(DemonstrationError, match=words) as err:
            load_demonstrations(target)
        _one_line(err, target)


def test_truncated_files_name_the_file(tmp_path, good):
    data = good[0].read_bytes()
    bad = tmp_path / "cut.demo"
    for size in (0, 1, 10, INITIAL_POS, INITIAL_POS + 5, len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:size])
        with pytest.raises(DemonstrationError, match="truncated") as err:
            load_demonstrations(bad)
        _one_line(err, bad)
    bad.write_bytes(header(steps=9) + data[INITIAL_POS:])  # whole steps, fewer than announced
    with pytest.raises(DemonstrationError, match="holds 4 of the 9 steps its header announces"):
        load_demonstrations(bad)


def test_unsupported_version_and_the_header_size(tmp_path, good):
    data = good[0].read_bytes()
    bad = tmp_path / "v2.demo"
    bad.write_bytes(header(steps=4, version=2) + data[INITIAL_POS:])
    with pytest.raises(DemonstrationError, match=r"api_version 2 is not supported \(palaestra "
                                                 r"and ML-Agents read \[0, 1\]\)") as err:
        load_demonstrations(bad)
    _one_line(err, bad)
    bad.write_bytes(delimited(vint(1, 1) + ld(2, b"x" * 40)) + data[INITIAL_POS:])
    with pytest.raises(DemonstrationError, match="header is 45 bytes long") as err:
        load_demonstrations(bad)


def test_a_hostile_length_allocates_nothing(tmp_path, good):
    data = good[0].read_bytes()
    bad = tmp_path / "huge.demo"
    for position in (0, INITIAL_POS, len(data)):
        forged = data[:position] + varint(2 ** 32 - 1) + b"\x0a\x00"
        if position == len(data):  # one pair more than the header announces: read to the end
            forged = header(steps=0) + data[INITIAL_POS:] + varint(2 ** 32 - 1) + b"\x0a\x00"
        bad.write_bytes(forged)
        start = time.perf_counter()
        with pytest.raises(DemonstrationError, match="declares 4294967295 bytes") as err:
            load_demonstrations(bad)
        assert time.perf_counter() - start < 1.0
        _one_line(err, bad)
    bad.write_bytes(data[:INITIAL_POS] + b"\xff" * 6)
    with pytest.raises(DemonstrationError, match="not a valid varint"):
        load_demonstrations(bad)


def test_a_forged_observation_shape_is_refused_before_decoding(tmp_path):
    obs = packed_int(1, [100000, 100000, 3]) + ld(4, packed_f32(1, [0.0]))
    pair = delimited(ld(1, f32(7, 0) + ld(13, obs)) + ld(2, packed_f32(6, [0.0])))
    bad = tmp_path / "shape.demo"
    brain = delimited(ld(7, b"B") + ld(9, vint(1, 1)))
    bad.write_bytes(header(steps=2) + brain + pair + pair)
    with pytest.raises(DemonstrationError, match="observation 0 has shape") as err:
        load_demonstrations(bad)
    _one_line(err, bad)
    obs = packed_int(1, [4]) + ld(4, packed_f32(1, [0.0]))  # 1 value for 4
    pair = delimited(ld(1, f32(7, 0) + ld(13, obs)) + ld(2, packed_f32(6, [0.0])))
    bad.write_bytes(header(steps=2) + brain + pair + pair)
    with pytest.raises(DemonstrationError, match="holds 1 values for observation 0"):
        load_demonstrations(bad)


def test_corrupt_bytes_give_one_error_and_never_a_protobuf_traceback(tmp_path, good):
    data = bytearray(good[0].read_bytes())
    bad = tmp_path / "flip.demo"
    rng = np.random.default_rng(7)
    failures = 0
    for _ in range(300):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(data), rng.integers(1, 4)):
            mutated[pos] = int(rng.integers(0, 256))
        bad.write_bytes(bytes(mutated))
        try:
            load_demonstrations(bad)
        except DemonstrationError as exc:
            assert "\n" not in str(exc) and str(bad) in str(exc)
            failures += 1
    assert failures > 50  # most mutations are caught; the others still read as a demonstration
    bad.write_bytes(bytes(data[:INITIAL_POS]) + delimited(b"\xff\xff\xff"))
    with pytest.raises(DemonstrationError, match="brain parameters does not decode") as err:
        load_demonstrations(bad)
    _one_line(err, bad)


def test_a_demonstration_that_does_not_fit_the_behavior(tmp_path, good):
    path, spec = good
    assert load_demonstrations(path, spec).steps == 3
    other = BehaviorSpec([ObservationSpec((8,)), ObservationSpec((1,))], ActionSpec(1, (4,)))
    with pytest.raises(TrainerConfigError) as err:
        load_demonstrations(path, other)
    assert _one_line(err, path) == (
        f"demonstration file {path} does not fit: it has observations [(3,), (1,)], 1 "
        "continuous actions and discrete branches [4]; the behavior has observations [(8,), "
        "(1,)], 1 continuous actions and discrete branches [4].")
    with pytest.raises(TrainerConfigError, match=r"discrete branches \[5\]"):
        load_demonstrations(path, BehaviorSpec(spec.observation_specs, ActionSpec(1, (5,))))
    # a folder whose files disagree names the odd one
    other_path = tmp_path / "z.demo"
    write_demonstration(other_path, other, [_episode(other, 2, np.random.default_rng(0))])
    with pytest.raises(DemonstrationError, match=f"{other_path} does not fit: .*; "
                                                 f"{path} has observations"):
        load_demonstrations(tmp_path)


def test_demonstrations_without_a_row_are_refused_by_their_users(tmp_path):
    """A file whose one step makes no (observation, action) row loads with an empty buffer;
    GAIL and cloning, which sample from it, refuse it with the files named."""
    path = tmp_path / "one.demo"
    path.write_bytes(header(steps=1) + hybrid_brain() + hand_pair([1, 2], [[0, 0], [0, 0]], 0.0))
    demos = load_demonstrations(path)
    assert demos.buffer.num_experiences == 0
    with pytest.raises(DemonstrationError, match="behavioral_cloning: .*one.demo hold no step"):
        demos.rows("behavioral_cloning")
