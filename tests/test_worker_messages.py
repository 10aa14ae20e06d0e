"""The pipe messages of environment workers: step replies encoded without pickling read back
field for field, dtype and shape included; what the encoding cannot carry is pickled."""
import dataclasses
import multiprocessing
import os
import threading

import numpy as np
import pytest

from helpers import assert_same_steps
from palaestra.envs import worker_messages as messages
from palaestra.envs.base import DecisionSteps, TerminalSteps


def _steps(n_decision, n_terminal, grouped, masked, rng):
    decision = DecisionSteps(
        [], rng.normal(size=n_decision).astype(np.float32), np.arange(n_decision) * 7 + 3,
        rng.random((n_decision, 5)) > 0.3 if masked else None,
        rng.integers(0, 3, n_decision) if grouped else None,
        rng.normal(size=n_decision).astype(np.float32) if grouped else None)
    terminal = TerminalSteps(
        [], rng.normal(size=n_terminal).astype(np.float32), rng.random(n_terminal) > 0.5,
        np.arange(n_terminal, dtype=np.int32) + 100,
        rng.integers(1, 3, n_terminal) if grouped else None,
        rng.normal(size=n_terminal).astype(np.float32) if grouped else None)
    return decision, terminal


def _assert_same(a, b):
    assert a.obs == b.obs == []
    assert_same_steps(a, b)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("sizes", [(1, 0), (0, 0), (12, 3)])
def test_every_field_round_trips(grouped, masked, sizes):
    rng = np.random.default_rng(0)
    first = _steps(*sizes, grouped, masked, rng)
    second = _steps(2, 1, not grouped, not masked, rng)
    data = messages.encode_steps([(1, *first), (0, *second)])
    back = messages.decode_steps(data, ["zero", "one"])
    assert list(back) == ["one", "zero"]
    for got, want in zip(back["one"] + back["zero"], first + second):
        _assert_same(got, want)
    back["one"][0].reward[:] = 5.0  # writable, and the message itself is untouched
    assert messages.decode_steps(data, ["zero", "one"])["one"][0].reward.tolist() == \
        first[0].reward.tolist()


def test_a_non_contiguous_array_is_sent_in_its_logical_order():
    wide = np.arange(12, dtype=np.int64).reshape(3, 4)
    decision = DecisionSteps([], np.zeros(3, np.float32), wide[:, 1], wide.T[:3, :3] > 4)
    terminal = TerminalSteps([], np.zeros(0, np.float32), np.zeros(0, bool),
                             np.zeros(0, np.int64))
    (got, _), = messages.decode_steps(messages.encode_steps([(0, decision, terminal)]),
                                      ["b"]).values()
    np.testing.assert_array_equal(got.agent_id, [1, 5, 9])
    np.testing.assert_array_equal(got.action_mask, wide.T[:3, :3] > 4)


def test_what_cannot_be_encoded_is_refused_before_anything_is_sent():
    decision = DecisionSteps([], np.zeros(2, np.float32), np.array(["a", 1], dtype=object))
    terminal = TerminalSteps([], np.zeros(0, np.float32), np.zeros(0, bool),
                             np.zeros(0, np.int64))
    with pytest.raises(messages.NotEncodable):
        messages.encode_steps([(0, decision, terminal)])


def test_a_message_claiming_an_object_array_is_refused():
    decision, terminal = _steps(1, 0, False, False, np.random.default_rng(3))
    data = messages.encode_steps([(0, decision, terminal)])
    forged = data.replace(np.dtype(np.float32).str.encode(), b"|O8", 1)
    with pytest.raises(ValueError, match="object"):
        messages.decode_steps(forged, ["b"])


def test_messages_over_a_pipe_pickled_or_encoded():
    here, there = multiprocessing.Pipe()
    try:
        messages.send(here, ("step", {"b": 3}))
        assert messages.receive(there, []) == ("step", {"b": 3})
        for rows in ({"b": 3}, {"b": 2, "c": 1}, {"b": 3}):  # the second {"b": 3} remembered
            messages.send_step_command(here, rows)
            assert messages.receive(there, []) == ("step", rows)
        decision, terminal = _steps(2, 1, True, True, np.random.default_rng(1))
        messages.send_steps(here, [(0, decision, terminal)])
        kind, reports, new_specs, stats = messages.receive(there, ["b"])
        assert (kind, list(reports), new_specs, stats) == ("steps", ["b"], {}, {})
        block, got_decision, got_terminal = reports["b"]
        assert block is None
        _assert_same(got_decision, decision)
        _assert_same(got_terminal, terminal)
    finally:
        here.close()
        there.close()


def test_a_channel_carries_messages_each_way_and_is_waited_on_by_its_reading_pipe():
    """`Channel`: one one-way pipe each way (a worker's end and the training process's)."""
    from multiprocessing.connection import wait

    ours, theirs = messages.Channel.pair(multiprocessing.get_context("spawn"))
    try:
        assert not ours.poll() and wait([ours, theirs], 0) == []
        messages.send(ours, ("step", {"b": 1}))
        assert wait([ours, theirs], 0) == [theirs] and not ours.poll()
        assert messages.receive(theirs, []) == ("step", {"b": 1})
        decision, terminal = _steps(2, 0, False, False, np.random.default_rng(4))
        messages.send_steps(theirs, [(0, decision, terminal)])
        assert ours.poll() and ours.fileno() == ours.reader.fileno()
        _assert_same(messages.receive(ours, ["b"])[1]["b"][1], decision)
        big = np.random.default_rng(6).bytes(1 << 20)  # more than a pipe holds: written and
        sender = threading.Thread(target=theirs.send_bytes, args=(big,))  # read in parts
        sender.start()
        assert ours.recv_bytes() == big
        sender.join()
        theirs.send_bytes(b"")
        assert ours.recv_bytes() == b""
        theirs.writer.send_bytes(b"same framing")  # as multiprocessing's connections frame
        assert ours.recv_bytes() == b"same framing"
        os.write(theirs.writer.fileno(), b"\xff\xff\xff\xff" + (5).to_bytes(8, "big") + b"12345")
        assert ours.recv_bytes() == b"12345"  # the framing of a message over 2 GiB
        os.write(theirs.writer.fileno(), b"\0\0\0\x10cut")  # 16 bytes promised, 3 sent
        theirs.close()
        with pytest.raises(OSError, match="inside a message"):
            ours.recv_bytes()
        with pytest.raises(EOFError):  # the other end gone
            ours.recv_bytes()
    finally:
        ours.close()
        theirs.close()
    with pytest.raises(OSError):
        ours.send_bytes(b"x")  # closed


@pytest.mark.parametrize("grouped", [False, True])
def test_ids_are_sent_unique_over_the_parts_and_the_steps_are_left_as_they_were(grouped):
    """Worker 2 of 3 sends id * 3 + 2 (group 0, no group, stays 0), as `globalise_ids`
    makes them, without touching the steps it was given (an environment may hand out the
    same ones again)."""
    from palaestra.envs.base import globalise_ids

    decision, terminal = _steps(6, 3, grouped, False, np.random.default_rng(5))
    if grouped:
        decision.group_id[:3] = 0
    kept = [(a.agent_id.copy(), None if a.group_id is None else a.group_id.copy())
            for a in (decision, terminal)]
    (got_decision, got_terminal), = messages.decode_steps(
        messages.encode_steps([(0, decision, terminal)], 2, 3), ["b"]).values()
    for got, sent, (ids, groups) in zip((got_decision, got_terminal), (decision, terminal), kept):
        np.testing.assert_array_equal(sent.agent_id, ids)
        np.testing.assert_array_equal(got.agent_id, ids * 3 + 2)
        if grouped:
            np.testing.assert_array_equal(sent.group_id, groups)
            np.testing.assert_array_equal(got.group_id, np.where(groups == 0, 0, groups * 3 + 2))
        _assert_same(got, globalise_ids(dataclasses.replace(sent), 2, 3))


def test_a_truncated_or_padded_message_is_an_error():
    decision, terminal = _steps(2, 1, False, False, np.random.default_rng(2))
    data = messages.encode_steps([(0, decision, terminal)])
    with pytest.raises(ValueError, match="1 bytes longer than its fields"):
        messages.decode_steps(data + b"\0", ["b"])
    for cut in range(1, len(data) - 1):
        with pytest.raises(ValueError, match="cut short"):
            messages.decode_steps(data[:-cut], ["b"])


def test_messages_with_the_same_header_keep_their_own_values():
    """Both sides remember what a header says; the values are still each message's own (and
    an array in the other byte order is not taken for the native one)."""
    rng = np.random.default_rng(4)
    first, second = _steps(3, 1, True, True, rng), _steps(3, 1, True, True, rng)
    data_first = messages.encode_steps([(0, *first)])
    data_second = messages.encode_steps([(0, *second)])
    assert data_first[:40] == data_second[:40] and data_first != data_second
    for data, want in ((data_first, first), (data_second, second), (data_first, first)):
        back = messages.decode_steps(data, ["b"])["b"]
        for got, w in zip(back, want):
            _assert_same(got, w)
    swapped = first[0].reward.astype(">f4")
    decision = DecisionSteps([], swapped, first[0].agent_id)
    (got, _), = messages.decode_steps(messages.encode_steps([(0, decision, first[1])]),
                                      ["b"]).values()
    assert got.reward.dtype == np.dtype(">f4")
    np.testing.assert_array_equal(got.reward, first[0].reward)


def test_a_long_header_is_read_but_not_remembered():
    """What the reading side keeps of headers stays small whatever a worker sends: a header
    past the limit (here: many behaviors) is read correctly each time and not kept."""
    rng = np.random.default_rng(5)
    names = [f"b{i}" for i in range(300)]
    steps = [(i, *_steps(1, 0, True, True, rng)) for i in range(len(names))]
    data = messages.encode_steps(steps)
    before = len(messages._PLANS)
    for _ in range(2):
        back = messages.decode_steps(data, names)
        assert list(back) == names
        _assert_same(back["b7"][0], steps[7][1])
    assert len(messages._PLANS) == before
