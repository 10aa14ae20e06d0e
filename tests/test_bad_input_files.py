"""Hostile files and plugin objects: each must give one clear error, never a traceback, a hang or
a huge allocation.

A buffer file (``buffer-<step>.npz``) comes from a run folder that may have been downloaded, so
`load_columns` reads it as hostile and `check_columns_fit` checks its values against the
behavior; a plugin's exception or object may fail even to be printed (`describe_error`,
`short_repr`).
"""
from __future__ import annotations

import io
import os
import resource
import signal
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy_format

from palaestra.buffer import (AgentBuffer, BufferKey, ReplayBuffer, check_columns_fit,
                              group_obs_key, load_columns, next_obs_key, obs_key, save_columns)
from palaestra.envs.base import ActionSpec, BehaviorSpec, ObservationSpec
from palaestra.registry import TrainerRegistry, describe_error, short_repr
from palaestra.stats import _short_repr, make_stats_writers
from palaestra.trajectory import Trajectory, trajectories_to_agentbuffer

# -- Task A: load_columns refuses hostile files ------------------------------------------------


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    return out.getvalue()


def _zip(path, members, compression=zipfile.ZIP_STORED) -> str:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return str(path)


def _refused(path, match: str = "") -> ValueError:
    with pytest.raises(ValueError, match="cannot be read") as info:
        load_columns(str(path))
    message = str(info.value)
    assert message.startswith(f"buffer file {path} cannot be read: ")
    assert "\n" not in message
    assert match in message, message
    return info.value


def _good_columns(n: int = 4) -> dict:
    return {"key|done.npy": _npy(np.zeros(n, np.float32)),
            "obs|obs|0.npy": _npy(np.ones((n, 3), np.float32))}


def test_round_trip_of_save_columns(tmp_path):
    buf = AgentBuffer()
    buf[obs_key(0)] = np.arange(12, dtype=np.float32).reshape(4, 3)
    buf[BufferKey.DISCRETE_ACTION] = np.array([[0], [1], [2], [1]], np.int64)
    buf[BufferKey.DONE] = np.array([0, 0, 0, 1], np.float32)
    buf[BufferKey.ACTION_MASK] = np.ones((4, 3), bool)
    buf[(next_obs_key(0))] = np.zeros((4, 3), np.float32)
    path = str(tmp_path / "buffer-10.npz")
    save_columns(buf, path)
    loaded = load_columns(path)
    assert set(loaded.keys()) == set(buf.keys())
    for key in buf.keys():
        np.testing.assert_array_equal(loaded[key], buf[key])
        assert loaded[key].dtype == buf[key].dtype
    replay = ReplayBuffer(10)
    replay.load(path)
    assert replay.num_experiences == 4


def test_fortran_ordered_column_still_loads(tmp_path):
    buf = AgentBuffer()
    buf[obs_key(0)] = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3))
    path = str(tmp_path / "buffer-1.npz")
    save_columns(buf, path)
    np.testing.assert_array_equal(load_columns(path)[obs_key(0)], buf[obs_key(0)])


@pytest.mark.parametrize("column, match", [
    (np.float32(3.0), "shape ()"),
    (np.array(["a", "b"]), "dtype <U1"),
    (np.array([1 + 2j, 3j]), "dtype complex128"),
    (np.array([{"a": 1}, None], dtype=object), "dtype object"),
    (np.zeros(2, [("x", "f4"), ("y", "i4")]), "buffers hold only"),
    (np.array(["2020-01-01"], "datetime64[D]"), "dtype datetime64"),
])
def test_columns_of_wrong_kind_are_refused(tmp_path, column, match):
    path = _zip(tmp_path / "buffer-3.npz", {"key|done.npy": _npy(column)})
    _refused(path, match)


def test_extra_dimension_loads_and_is_left_to_check_columns_fit(tmp_path):
    path = _zip(tmp_path / "buffer-3.npz", {"key|done.npy": _npy(np.zeros((4, 2), np.float32))})
    assert load_columns(path)[BufferKey.DONE].shape == (4, 2)


def _forged_npy(shape, dtype="<f8", payload: bytes = b"\0" * 64) -> bytes:
    out = io.BytesIO()
    npy_format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False,
                                            "shape": shape})
    return out.getvalue() + payload


def test_huge_declared_shape_is_refused_before_allocating(tmp_path):
    # numpy allocates the declared shape before reading: 14.6 TiB.
    path = _zip(tmp_path / "buffer-5.npz", {"key|done.npy": _forged_npy((10**12, 4))})
    _refused(path, "more than the")


def test_negative_declared_shape_is_refused(tmp_path):
    path = _zip(tmp_path / "buffer-5.npz", {"key|done.npy": _forged_npy((-4,))})
    _refused(path, "shape (-4,)")


def test_truncated_data_is_refused(tmp_path):
    path = _zip(tmp_path / "buffer-5.npz", {"key|done.npy": _forged_npy((4,), payload=b"\0" * 8)})
    _refused(path)


def test_compressed_member_is_refused_without_inflating_it(tmp_path):
    # ~100 MB of zeros deflate to ~100 kB; the check must not inflate them.
    zeros = _npy(np.zeros(12_500_000, np.float64))
    path = _zip(tmp_path / "buffer-6.npz", {"key|done.npy": zeros}, zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 1_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _refused(path, "compressed")
    # ru_maxrss is in kB on Linux: no 100 MB array was allocated.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000


def test_savez_compressed_is_refused(tmp_path):
    path = str(tmp_path / "buffer-6.npz")
    np.savez_compressed(path, **{"key|done": np.zeros(4, np.float32)})
    _refused(path, "compressed")


def test_member_not_npy_is_refused(tmp_path):
    path = _zip(tmp_path / "buffer-7.npz", {**_good_columns(), "readme.txt": b"hello"})
    _refused(path, "readme.txt")


def test_overlapping_members_declaring_more_than_the_file_are_refused(tmp_path):
    path = tmp_path / "buffer-7.npz"
    _zip(path, _good_columns())
    data = path.read_bytes()
    # Claim the second member is as large as the whole file (its central directory entry).
    with zipfile.ZipFile(path) as archive:
        info = archive.infolist()[1]
    forged = bytearray(data)
    cd = data.rfind(b"PK\x01\x02")  # the last central directory entry: the second member
    assert data[cd + 46: cd + 46 + len(info.filename)] == info.filename.encode()
    big = (len(data)).to_bytes(4, "little")
    forged[cd + 20: cd + 24] = big  # compressed size
    forged[cd + 24: cd + 28] = big  # uncompressed size
    path.write_bytes(bytes(forged))
    _refused(path, "more data than the file holds")


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"\x93NUMPY" + b"\0" * 100])
def test_non_zip_files_are_refused(tmp_path, content):
    path = tmp_path / "buffer-8.npz"
    path.write_bytes(content)
    _refused(path)


def test_npy_file_with_an_appended_zip_is_read_as_the_zip_only(tmp_path):
    # A polyglot: a forged .npy header up front, a valid archive behind it. Reading arrays
    # from the checked archive (not np.load, which sniffs the first bytes) never sees it.
    archive = tmp_path / "a.zip"
    _zip(archive, {"key|done.npy": _npy(np.zeros(4, np.float32))})
    path = tmp_path / "buffer-8.npz"
    path.write_bytes(_forged_npy((10**12, 4)) + archive.read_bytes())
    try:
        loaded = load_columns(str(path))
    except ValueError as exc:
        assert "cannot be read" in str(exc)
    else:
        assert loaded[BufferKey.DONE].shape == (4,)


def test_empty_zip_is_refused(tmp_path):
    _refused(_zip(tmp_path / "buffer-9.npz", {}), "no columns")


def test_unequal_lengths_and_unknown_names_are_refused(tmp_path):
    _refused(_zip(tmp_path / "buffer-1.npz", {"key|done.npy": _npy(np.zeros(3)),
                                              "obs|obs|0.npy": _npy(np.zeros((4, 2)))}), "rows")
    _refused(_zip(tmp_path / "buffer-2.npz", {"key|nonsense.npy": _npy(np.zeros(3))}),
             "nonsense")


def test_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "buffer-310.npz"
    os.mkfifo(path)

    def hung(*_):
        raise TimeoutError("load_columns blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        _refused(path, "not a regular file")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_symlink_is_refused_even_to_a_good_file(tmp_path):
    good = tmp_path / "elsewhere.npz"
    _zip(good, _good_columns())
    load_columns(str(good))  # the target itself is fine
    link = tmp_path / "buffer-310.npz"
    os.symlink(good, link)
    _refused(link, "not a regular file")
    stdin_link = tmp_path / "buffer-311.npz"
    os.symlink("/dev/stdin", stdin_link)
    _refused(stdin_link, "not a regular file")


def test_directory_and_missing_file_are_refused(tmp_path):
    _refused(tmp_path, "not a regular file")
    _refused(tmp_path / "buffer-404.npz")


# -- Task B: check_columns_fit checks the values against the behavior ---------------------------

SPEC = BehaviorSpec([ObservationSpec((3,)), ObservationSpec((2, 2))],
                    ActionSpec(continuous_size=2, discrete_branches=(3, 2)))


def _trajectory(rng, n, agent="a", done=True) -> Trajectory:
    return Trajectory(
        [rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 2, 2)).astype(np.float32)],
        [rng.normal(size=3).astype(np.float32), rng.normal(size=(2, 2)).astype(np.float32)],
        rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        np.stack([rng.integers(0, 3, n), rng.integers(0, 2, n)], axis=1),
        rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32),
        np.ones((n, 5), bool), done, False, agent, "B")


def _valid_buffer() -> AgentBuffer:
    rng = np.random.default_rng(0)
    return trajectories_to_agentbuffer([_trajectory(rng, 5, "a"), _trajectory(rng, 7, "b")])


def test_buffer_from_trajectories_fits_and_survives_a_file(tmp_path):
    buf = _valid_buffer()
    check_columns_fit(buf, SPEC)
    path = str(tmp_path / "buffer-12.npz")
    save_columns(buf, path)
    check_columns_fit(load_columns(path), SPEC)


def test_discrete_only_and_continuous_only_specs(tmp_path):
    rng = np.random.default_rng(1)
    n = 4
    discrete = Trajectory([rng.normal(size=(n, 3)).astype(np.float32)],
                          [rng.normal(size=3).astype(np.float32)],
                          np.zeros((n, 0), np.float32), rng.integers(0, 2, (n, 1)),
                          np.zeros(n, np.float32), np.zeros(n, np.float32), None, True, False,
                          "a", "B")
    spec = BehaviorSpec([ObservationSpec((3,))], ActionSpec.create_discrete((2,)))
    check_columns_fit(discrete.to_agentbuffer(), spec)
    with pytest.raises(ValueError, match="continuous action column has shape"):
        check_columns_fit(discrete.to_agentbuffer(),
                          BehaviorSpec([ObservationSpec((3,))], ActionSpec.create_continuous(2)))


def _with(buf: AgentBuffer, key, value) -> AgentBuffer:
    out = buf.take(np.arange(len(buf)))
    out[key] = value
    return out


def _without(buf: AgentBuffer, gone) -> AgentBuffer:
    out = AgentBuffer()
    for key, value in buf.items():
        if key != gone:
            out[key] = value
    return out


def _fails(buf: AgentBuffer, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_columns_fit(buf, SPEC)


def test_discrete_action_out_of_range_is_refused():
    buf = _valid_buffer()
    actions = buf[BufferKey.DISCRETE_ACTION].copy()
    actions[3, 1] = 10**9
    _fails(_with(buf, BufferKey.DISCRETE_ACTION, actions), r"branch 1 holds 1e\+09.*0 to 1")
    actions = buf[BufferKey.DISCRETE_ACTION].copy()
    actions[0, 0] = 3  # one past the end of branch 0
    _fails(_with(buf, BufferKey.DISCRETE_ACTION, actions), "branch 0 holds 3")


def test_negative_nan_and_fractional_discrete_actions_are_refused():
    buf = _valid_buffer()
    actions = buf[BufferKey.DISCRETE_ACTION].copy()
    actions[2, 0] = -1
    _fails(_with(buf, BufferKey.DISCRETE_ACTION, actions), "branch 0 holds -1")
    for bad in (np.nan, 0.5):
        floats = buf[BufferKey.DISCRETE_ACTION].astype(np.float32)
        floats[1, 1] = bad
        _fails(_with(buf, BufferKey.DISCRETE_ACTION, floats), "branch 1 holds")


@pytest.mark.parametrize("key, shape, match", [
    (BufferKey.DISCRETE_ACTION, (12, 3), "discrete action column has shape"),
    (BufferKey.DISCRETE_ACTION, (12,), "discrete action column has shape"),
    (BufferKey.CONTINUOUS_ACTION, (12, 5), r"continuous action column has shape \(12, 5\).*"
                                           r"\(n, 2\)"),
    (BufferKey.ACTION_MASK, (12, 4), "action mask"),
    (obs_key(0), (12, 4), r"observation 0 column has shape \(12, 4\), the behavior's is "
                          r"\(n, 3\)"),
    (next_obs_key(1), (12, 2, 3), "next observation 1"),
    (group_obs_key(0), (12, 3), "teammates' observation 0"),
    (BufferKey.ENVIRONMENT_REWARDS, (12, 2), "environment rewards column"),
    (BufferKey.DONE, (12, 1), "done column"),
])
def test_columns_of_wrong_width_are_refused(key, shape, match):
    _fails(_with(_valid_buffer(), key, np.zeros(shape, np.float32)), match)


@pytest.mark.parametrize("key, match", [
    (BufferKey.ENVIRONMENT_REWARDS, "no environment rewards column"),
    (BufferKey.DONE, "no done column"),
    (obs_key(1), "no observation 1 column"),
    (BufferKey.DISCRETE_ACTION, "no discrete action column"),
    (BufferKey.CONTINUOUS_ACTION, "no continuous action column"),
])
def test_missing_columns_are_refused(key, match):
    _fails(_without(_valid_buffer(), key), match)


def test_observation_the_behavior_does_not_have_is_refused():
    buf = _valid_buffer()
    _fails(_with(buf, obs_key(2), np.zeros((len(buf), 3), np.float32)), "2 observation")


def test_group_discrete_actions_are_checked():
    buf = _valid_buffer()
    group = np.zeros((len(buf), 2, 2), np.int64)
    check_columns_fit(_with(buf, BufferKey.GROUP_DISCRETE_ACTION, group), SPEC)
    group[4, 1, 0] = 7
    _fails(_with(buf, BufferKey.GROUP_DISCRETE_ACTION, group), "teammates' discrete action")


# -- Task C: a plugin's exception or object that cannot be printed -------------------------------


class Unprintable(RuntimeError):
    def __str__(self) -> str:
        raise ValueError("no")


class Exits(Exception):
    def __str__(self) -> str:
        raise SystemExit(4)


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr broke")


class BadMeta(type):
    @property
    def __name__(cls):  # type: ignore[override]
        raise RuntimeError("no name")


class WeirdName(metaclass=BadMeta):
    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


def test_describe_error_never_raises():
    assert describe_error(Unprintable()) == "Unprintable (its message could not be shown)"
    assert describe_error(Exits()) == "Exits (its message could not be shown)"
    assert describe_error(RuntimeError("plain")) == "RuntimeError: plain"
    assert describe_error(KeyError()) == "KeyError"
    assert describe_error(SystemExit(BadRepr())) == \
        "SystemExit: the plugin called sys.exit(<BadRepr object (its repr failed)>)"
    assert describe_error(SystemExit(3)) == "SystemExit: the plugin called sys.exit(3)"


def test_short_repr_never_raises():
    assert _short_repr(BadRepr()) == "<BadRepr object (its repr failed)>"
    assert short_repr(WeirdName()) == "<object object (its repr failed)>"
    assert _short_repr("x" * 100) == "'" + "x" * 56 + "..."
    assert _short_repr([1, 2]) == "[1, 2]"


def test_stats_writer_factory_of_unprintable_things(caplog):
    from palaestra.registry import StatsWriterFactory

    def raises(_options):
        raise Unprintable()

    factories = [StatsWriterFactory("a", "dist-a", raises),
                 StatsWriterFactory("b", "dist-b", lambda _options: BadRepr()),
                 StatsWriterFactory("c", "dist-c", lambda _options: [BadRepr()])]
    assert make_stats_writers(None, factories) == []  # type: ignore[arg-type]
    text = caplog.text
    assert "Unprintable (its message could not be shown)" in text
    assert "returned <BadRepr object (its repr failed)>" in text
    assert "Skipping <BadRepr object (its repr failed)> from stats writer plugin 'c'" in text


class _EntryPoint:
    """What TrainerRegistry reads of an importlib.metadata entry point."""

    def __init__(self, name, fn):
        self.name, self._fn, self.dist = name, fn, None

    def load(self):
        return self._fn


def test_trainer_plugin_failing_with_unprintable_things_is_listed():
    def raises():
        raise Unprintable()

    def bad_names():
        return {BadRepr(): object}, {}

    def bad_key():
        name = BadRepr()
        return {name: object}, {name: object}

    registry = TrainerRegistry.from_entry_points(entry_points=[
        _EntryPoint("raises", raises), _EntryPoint("missing", bad_names),
        _EntryPoint("badkey", bad_key)])
    errors = {f.entry_point: f.error for f in registry.failures}
    assert errors["raises"] == "Unprintable (its message could not be shown)"
    assert "no settings class for trainer type(s) [<BadRepr object (its repr failed)>]" \
        in errors["missing"]
    assert "trainer type name <BadRepr object (its repr failed)> is not a non-empty string" \
        in errors["badkey"]
