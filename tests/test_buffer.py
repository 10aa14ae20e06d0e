"""`AgentBuffer`: growth, field checks, minibatches, views, truncation and reset."""
import numpy as np
import pytest

from palaestra.buffer import (AgentBuffer, BufferKey, advantage_key, next_obs_key, obs_key,
                              returns_key, rewards_key, value_estimates_key)


def make_buffer(start, n, obs_dim=3):
    """Rows start .. start+n-1; every field encodes its row number so rows can be traced."""
    rows = np.arange(start, start + n)
    buf = AgentBuffer()
    buf[obs_key(0)] = np.repeat(rows[:, None], obs_dim, axis=1).astype(np.float32)
    buf[BufferKey.ENVIRONMENT_REWARDS] = rows.astype(np.float32)
    buf[BufferKey.DISCRETE_ACTION] = np.stack([rows, -rows], axis=1).astype(np.int64)
    buf[BufferKey.DONE] = (rows % 5 == 4).astype(np.float32)
    return buf


def assert_rows(buf, rows):
    rows = np.asarray(rows)
    assert len(buf) == buf.num_experiences == len(rows)
    np.testing.assert_array_equal(buf[BufferKey.ENVIRONMENT_REWARDS], rows)
    np.testing.assert_array_equal(buf[obs_key(0)], np.repeat(rows[:, None], 3, axis=1))
    np.testing.assert_array_equal(buf[BufferKey.DISCRETE_ACTION], np.stack([rows, -rows], 1))
    np.testing.assert_array_equal(buf[BufferKey.DONE], (rows % 5 == 4))


def test_keys_are_distinct_and_hashable():
    keys = [obs_key(0), obs_key(1), next_obs_key(0), rewards_key("extrinsic"),
            value_estimates_key("extrinsic"), returns_key("extrinsic"),
            advantage_key("extrinsic"), rewards_key("curiosity"), BufferKey.DONE]
    assert len(set(keys)) == len(keys)
    assert obs_key(2) == obs_key(2)


def test_setitem_getitem_and_contains():
    buf = make_buffer(0, 4)
    assert len(buf) == 4
    assert obs_key(0) in buf and BufferKey.MEMORY not in buf
    assert set(buf.keys()) == {obs_key(0), BufferKey.ENVIRONMENT_REWARDS,
                               BufferKey.DISCRETE_ACTION, BufferKey.DONE}
    assert buf.get(BufferKey.MEMORY) is None
    np.testing.assert_array_equal(buf.get(BufferKey.ENVIRONMENT_REWARDS), [0, 1, 2, 3])
    with pytest.raises(KeyError, match="memory"):
        buf[BufferKey.MEMORY]
    # assigning a full-length array replaces the field
    buf[BufferKey.ENVIRONMENT_REWARDS] = np.full(4, 7.0, np.float32)
    np.testing.assert_array_equal(buf[BufferKey.ENVIRONMENT_REWARDS], [7, 7, 7, 7])
    assert dict(buf.items()).keys() == set(buf.keys())


@pytest.mark.parametrize("bad_len", [3, 5, 0])
def test_setting_field_of_wrong_length_raises(bad_len):
    buf = make_buffer(0, 4)
    with pytest.raises(ValueError, match="rows"):
        buf[BufferKey.ADVANTAGES] = np.zeros(bad_len, np.float32)
    assert BufferKey.ADVANTAGES not in buf
    assert len(buf) == 4


def test_setting_field_of_wrong_length_after_append_raises():
    buf = AgentBuffer()
    buf.append_buffer(make_buffer(0, 3))
    buf.append_buffer(make_buffer(3, 3))  # capacity now exceeds the length
    with pytest.raises(ValueError):
        buf[BufferKey.ADVANTAGES] = np.zeros(7)
    buf[BufferKey.ADVANTAGES] = np.arange(6, dtype=np.float32)
    np.testing.assert_array_equal(buf[BufferKey.ADVANTAGES], np.arange(6))


def test_append_buffer_grows_and_keeps_data():
    buf = AgentBuffer()
    buf.append_buffer(make_buffer(0, 5))
    assert_rows(buf, range(5))
    total = 5
    for k, n in enumerate([1, 7, 3, 20, 2, 64]):
        buf.append_buffer(make_buffer(total, n))
        total += n
        assert_rows(buf, range(total))
    assert buf[BufferKey.DISCRETE_ACTION].dtype == np.int64
    assert buf[obs_key(0)].dtype == np.float32


def test_append_copies_source():
    src = make_buffer(0, 4)
    buf = AgentBuffer()
    buf.append_buffer(src)
    buf.append_buffer(make_buffer(4, 2))
    src[BufferKey.ENVIRONMENT_REWARDS][:] = -1  # the source is not referenced
    assert_rows(buf, range(6))
    first = AgentBuffer()
    first.append_buffer(src)
    src[obs_key(0)][:] = -5
    assert (first[obs_key(0)] != -5).all()


def test_append_empty_buffer_is_noop():
    buf = make_buffer(0, 3)
    buf.append_buffer(AgentBuffer())
    assert_rows(buf, range(3))


def test_append_mismatched_keys_raises():
    buf = AgentBuffer()
    buf.append_buffer(make_buffer(0, 3))
    other = make_buffer(3, 2)
    other[BufferKey.ADVANTAGES] = np.zeros(2)
    with pytest.raises(ValueError, match="fields"):
        buf.append_buffer(other)
    missing = AgentBuffer()
    missing[obs_key(0)] = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError):
        buf.append_buffer(missing)
    assert_rows(buf, range(3))  # unchanged


@pytest.mark.parametrize("n,batch_size", [(20, 5), (23, 5), (8, 8), (7, 3), (100, 16)])
def test_minibatches_cover_each_index_once(n, batch_size):
    buf = make_buffer(0, n)
    rng = np.random.default_rng(n)
    seen_orders = []
    for _ in range(2):  # two epochs
        batches = list(buf.minibatches(batch_size, rng))
        assert len(batches) == n // batch_size
        assert all(len(b) == batch_size for b in batches)
        rows = np.concatenate([b[BufferKey.ENVIRONMENT_REWARDS] for b in batches]).astype(int)
        assert len(rows) == len(set(rows.tolist())) == (n // batch_size) * batch_size
        assert set(rows.tolist()) <= set(range(n))
        for b in batches:  # every field of a row stays together
            r = b[BufferKey.ENVIRONMENT_REWARDS]
            np.testing.assert_array_equal(b[obs_key(0)][:, 0], r)
            np.testing.assert_array_equal(b[BufferKey.DISCRETE_ACTION][:, 1], -r)
        seen_orders.append(rows)
    if n % batch_size == 0:  # nothing dropped: a permutation of all rows
        assert sorted(seen_orders[0].tolist()) == list(range(n))
    if n > batch_size:
        assert not np.array_equal(seen_orders[0], seen_orders[1])  # shuffled anew


def test_minibatches_are_shuffled_and_seeded():
    buf = make_buffer(0, 50)
    def epoch(seed):
        return [mb[BufferKey.ENVIRONMENT_REWARDS].copy()
                for mb in buf.minibatches(10, np.random.default_rng(seed))]

    a, b = epoch(3), epoch(3)
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    assert not np.array_equal(np.concatenate(a), np.arange(50))


def test_minibatches_larger_than_buffer_yield_nothing():
    assert list(make_buffer(0, 4).minibatches(5, np.random.default_rng(0))) == []


def test_minibatches_whole_sequences():
    buf = make_buffer(0, 22)
    batches = list(buf.minibatches(8, np.random.default_rng(1), sequence_length=4))
    assert len(batches) == 2  # 5 whole sequences, 2 per batch; the rest is dropped
    starts = []
    for b in batches:
        r = b[BufferKey.ENVIRONMENT_REWARDS].astype(int).reshape(-1, 4)
        assert len(b) == 8
        for seq in r:
            assert seq[0] % 4 == 0 and (np.diff(seq) == 1).all()
            starts.append(seq[0])
    assert len(set(starts)) == 4 and max(starts) <= 16


def test_make_mini_batch_views():
    buf = AgentBuffer()
    buf.append_buffer(make_buffer(0, 6))
    buf.append_buffer(make_buffer(6, 4))
    mb = buf.make_mini_batch(2, 7)
    assert_rows(mb, range(2, 7))
    assert np.shares_memory(mb[obs_key(0)], buf[obs_key(0)])
    mb[BufferKey.ENVIRONMENT_REWARDS][0] = 99.0  # a view: writes show in the buffer
    assert buf[BufferKey.ENVIRONMENT_REWARDS][2] == 99.0
    tail = buf.make_mini_batch(8, 20)  # end clipped to the length, not the capacity
    assert len(tail) == 2
    np.testing.assert_array_equal(tail[BufferKey.ENVIRONMENT_REWARDS], [8, 9])
    assert len(buf.make_mini_batch(12, 20)) == 0


def test_take_copies_rows():
    buf = make_buffer(0, 10)
    sub = buf.take(np.array([7, 2, 2]))
    assert_rows(sub, [7, 2, 2])
    sub[BufferKey.ENVIRONMENT_REWARDS][:] = -1
    assert_rows(buf, range(10))


def test_truncate_keeps_newest_rows():
    buf = AgentBuffer()
    for start in range(0, 30, 6):
        buf.append_buffer(make_buffer(start, 6))
    buf.truncate(40)  # shorter already: unchanged
    assert_rows(buf, range(30))
    buf.truncate(11)
    assert_rows(buf, range(19, 30))
    buf.append_buffer(make_buffer(30, 3))  # still appendable after truncation
    assert_rows(buf, range(19, 33))
    buf.truncate(0)
    assert len(buf) == 0


def test_reset_keeps_capacity_and_fields():
    buf = AgentBuffer()
    buf.append_buffer(make_buffer(0, 10))
    buf.append_buffer(make_buffer(10, 10))
    arrays = {k: buf._data[k] for k in buf.keys()}
    capacity = len(arrays[obs_key(0)])
    assert capacity >= 20
    buf.reset()
    assert len(buf) == 0
    assert set(buf.keys()) == set(arrays)
    assert len(buf[obs_key(0)]) == 0
    buf.append_buffer(make_buffer(100, 7))
    assert_rows(buf, range(100, 107))
    for k, arr in arrays.items():  # no reallocation: the same storage is reused
        assert buf._data[k] is arr
    assert len(buf._data[obs_key(0)]) == capacity
    buf.clear()
    assert len(buf) == 0


def test_sample_mini_batch_shape():
    buf = make_buffer(0, 10)
    rng = np.random.default_rng(0)
    mb = buf.sample_mini_batch(32, rng)
    assert len(mb) == 32
    assert set(mb.keys()) == set(buf.keys())
    assert mb[obs_key(0)].shape == (32, 3)
    assert mb[BufferKey.DISCRETE_ACTION].shape == (32, 2)
    r = mb[BufferKey.ENVIRONMENT_REWARDS]
    assert set(r.astype(int).tolist()) <= set(range(10))
    np.testing.assert_array_equal(mb[obs_key(0)][:, 0], r)  # rows stay together
    # only valid rows are sampled, not the spare capacity
    grown = AgentBuffer()
    grown.append_buffer(make_buffer(0, 3))
    grown.append_buffer(make_buffer(3, 2))
    assert len(grown._data[obs_key(0)]) > 5
    s = grown.sample_mini_batch(200, np.random.default_rng(1))
    assert set(s[BufferKey.ENVIRONMENT_REWARDS].astype(int).tolist()) == set(range(5))


def _rows(start, n):
    from palaestra import AgentBuffer, obs_key

    buf = AgentBuffer()
    buf[obs_key(0)] = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(2, 1)
    buf[BufferKey.DONE] = np.zeros(n, np.float32)
    return buf


def test_replay_buffer_is_a_ring_of_the_newest_rows():
    from palaestra import ReplayBuffer, obs_key

    replay = ReplayBuffer(10)
    replay.append_buffer(_rows(0, 6))
    assert replay.num_experiences == 6
    np.testing.assert_array_equal(replay[obs_key(0)][:, 0], np.arange(6))
    replay.append_buffer(_rows(6, 7))  # wraps: rows 3..12 remain, oldest first
    assert replay.num_experiences == 10
    np.testing.assert_array_equal(replay[obs_key(0)][:, 0], np.arange(3, 13))
    replay.append_buffer(_rows(13, 25))  # more than the capacity at once: the newest 10
    np.testing.assert_array_equal(replay[obs_key(0)][:, 0], np.arange(28, 38))
    batch = replay.sample_mini_batch(64, np.random.default_rng(0))
    assert batch.num_experiences == 64
    assert set(batch[obs_key(0)][:, 0].tolist()) <= set(range(28, 38))
    replay.reset()
    assert replay.num_experiences == 0


def test_replay_buffer_refuses_other_fields():
    from palaestra import ReplayBuffer

    replay = ReplayBuffer(4)
    replay.append_buffer(_rows(0, 2))
    other = _rows(0, 2)
    other[BufferKey.MASKS] = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="cannot append"):
        replay.append_buffer(other)
