"""Pictures of runs: event files read back with TensorBoard's purge rule, curves.png of a run,
several seeds as mean and spread, and errors that name what exists."""
import os

import numpy as np
import pytest

from palaestra.exception import PalaestraError
from palaestra.plot import (behavior_dirs, main, mean_and_spread, plot_runs, read_scalars,
                            resolve_run, write_run_curves)
from palaestra.tensorboard_events import EventFileWriter

REWARD = "Environment/Cumulative Reward"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(folder, points, start=None):
    """One session's event file: {tag: [(step, value), ...]} after an optional start mark."""
    writer = EventFileWriter(str(folder))
    if start is not None:
        writer.add_session_start(start)
    for tag, series in points.items():
        for step, value in series:
            writer.add_scalar(tag, value, step)
    writer.close()
    return writer.path


def _fake_run(run_dir, behaviors=("Ball",), scale=1.0, steps=range(100, 2100, 100)):
    for behavior in behaviors:
        xs = np.asarray(list(steps))
        _write(run_dir / behavior, {
            REWARD: [(int(s), scale * np.sqrt(s)) for s in xs],
            "Environment/Episode Length": [(int(s), 10 + s / 100) for s in xs],
            "Losses/Policy Loss": [(int(s), 1 / s) for s in xs[::2]],
            "Losses/Value Loss": [(int(s), 100 / s) for s in xs[::2]],
            "Policy/Entropy": [(int(s), 1.4) for s in xs]}, start=1)
    (run_dir / "run_logs").mkdir(exist_ok=True)
    return str(run_dir)


def _image(path):
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return np.asarray(img.convert("RGB"))


def _colours(pixels):
    return len(np.unique(pixels.reshape(-1, 3), axis=0))


# ------------------------------------------------------------------ reading

def test_scalars_read_back_sorted_by_step(tmp_path):
    _write(tmp_path, {"a": [(30, 3.0), (10, 1.0), (20, 2.0)], "b": [(5, -1.5)]})
    got = read_scalars(str(tmp_path))
    assert sorted(got) == ["a", "b"]
    steps, values = got["a"]
    assert steps.dtype == np.int64 and values.dtype == np.float64
    assert steps.tolist() == [10, 20, 30] and values.tolist() == [1.0, 2.0, 3.0]
    assert got["b"][0].tolist() == [5] and got["b"][1].tolist() == [-1.5]


def test_a_session_start_purges_the_earlier_files_later_steps(tmp_path):
    # the interrupted run got to 10, its checkpoint was at 5; the resumed one writes 6..12
    _write(tmp_path, {"x": [(s, float(s)) for s in range(1, 11)]}, start=1)
    _write(tmp_path, {"x": [(s, 100.0 + s) for s in range(6, 13)]}, start=6)
    steps, values = read_scalars(str(tmp_path))["x"]
    assert steps.tolist() == list(range(1, 13))
    assert values.tolist() == [float(s) for s in range(1, 6)] + [100.0 + s for s in range(6, 13)]


def test_reads_the_same_as_tensorboard(tmp_path):
    from helpers import scalars

    _write(tmp_path, {"x": [(s, float(s)) for s in range(1, 11)], "y": [(4, 4.0), (9, 9.0)]},
           start=1)
    _write(tmp_path, {"x": [(s, -s) for s in range(3, 8)]}, start=3)
    ours = read_scalars(str(tmp_path))
    theirs = scalars(str(tmp_path))
    assert theirs["y"] == [] and "y" not in ours  # the start mark at 3 purges every tag
    assert list(zip(ours["x"][0].tolist(), ours["x"][1].tolist())) == theirs["x"]


def test_a_truncated_last_record_is_skipped(tmp_path):
    path = _write(tmp_path, {"x": [(s, float(s)) for s in range(1, 6)]})
    with open(path, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.truncate(size - 7)  # a kill in the middle of the last write
    steps, _ = read_scalars(str(tmp_path))["x"]
    assert steps.tolist() == [1, 2, 3, 4]
    with open(path, "ab") as fh:  # garbage that is not a record at all
        fh.write(b"\xff" * 40)
    assert read_scalars(str(tmp_path))["x"][0].tolist() == [1, 2, 3, 4]


def test_non_finite_values_are_kept(tmp_path):
    _write(tmp_path, {"x": [(1, 1.0), (2, float("nan")), (3, float("inf"))]})
    values = read_scalars(str(tmp_path))["x"][1]
    assert values[0] == 1.0 and np.isnan(values[1]) and np.isposinf(values[2])


def test_behavior_dirs_finds_nested_and_team_folders_but_not_run_logs(tmp_path):
    for behavior in ("Ball", "palaestra/Basic-v0", "Striker?team=1", "run_logs"):
        _write(tmp_path / behavior, {"x": [(1, 1.0)]})
    (tmp_path / "empty").mkdir()
    found = behavior_dirs(str(tmp_path))
    assert list(found) == ["Ball", "Striker?team=1", "palaestra/Basic-v0"]
    assert found["palaestra/Basic-v0"] == str(tmp_path / "palaestra" / "Basic-v0")


# ------------------------------------------------------------------ curves.png

def test_run_curves_png(tmp_path):
    run = _fake_run(tmp_path / "run", behaviors=("Ball", "palaestra/Basic-v0"))
    _write(tmp_path / "run" / "Ball", {"Environment/Group Cumulative Reward": [
        (100, 1.0), (200, float("nan")), (300, 2.0)]})
    path = write_run_curves(run)
    assert path == os.path.join(run, "curves.png")
    pixels = _image(path)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 600  # two columns, four rows
    assert _colours(pixels) > 20
    assert [n for n in os.listdir(run) if ".tmp-" in n] == []


def test_many_behaviors_wrap_into_a_grid(tmp_path):
    for i in range(6):
        _write(tmp_path / "run" / f"B{i}", {REWARD: [(100, 1.0), (200, 2.0)]})
    height, width, _ = _image(write_run_curves(str(tmp_path / "run"))).shape
    assert 1200 < width < 2000 and height > 400  # 4 columns, then a second block below


def test_no_scalars_no_picture(tmp_path):
    (tmp_path / "run" / "run_logs").mkdir(parents=True)
    assert write_run_curves(str(tmp_path / "run")) is None
    EventFileWriter(str(tmp_path / "run" / "Ball")).close()  # a run that just started
    assert write_run_curves(str(tmp_path / "run")) is None
    assert not (tmp_path / "run" / "curves.png").exists()


def test_the_file_name_cannot_leave_the_run(tmp_path):
    run = _fake_run(tmp_path / "run")
    with pytest.raises(PalaestraError, match="plain folder name"):
        write_run_curves(run, out_name="../outside.png")


def test_a_real_short_run(tmp_path):
    import palaestra

    result = palaestra.learn(
        os.path.join(REPO, "src", "palaestra", "configs", "ppo", "3DBall.yaml"), run_id="short",
        results_dir=str(tmp_path), max_steps=2400,
        behaviors={"3DBall": {"summary_freq": 600, "checkpoint_interval": 2400,
                              "hyperparameters": {"buffer_size": 1200}}})
    scalars = read_scalars(os.path.join(result.path, "3DBall"))
    steps = scalars[REWARD][0]
    assert len(steps) >= 3 and (np.diff(steps) > 0).all()
    assert "Losses/Value Loss" in scalars
    path = write_run_curves(result.path)
    assert path is not None and _colours(_image(path)) > 20


# ------------------------------------------------------------------ several runs

def test_mean_and_spread_on_known_numbers():
    a = (np.array([0, 10, 20]), np.array([0.0, 10.0, 20.0]))
    b = (np.array([0, 20, 30]), np.array([2.0, 22.0, 50.0]))  # no point at 10: interpolated
    steps, mean, low, high = mean_and_spread([a, b])
    assert steps.tolist() == [0, 10, 20]  # 30 lies past a's end
    assert mean.tolist() == [1.0, 11.0, 21.0]
    assert low.tolist() == [0.0, 10.0, 20.0] and high.tolist() == [2.0, 12.0, 22.0]
    steps, mean, low, high = mean_and_spread([a])
    assert mean.tolist() == low.tolist() == high.tolist() == [0.0, 10.0, 20.0]
    three = [(np.array([5]), np.array([v])) for v in (1.0, 2.0, 6.0)]
    _, mean, low, _ = mean_and_spread(three)
    assert mean[0] == 3.0 and low[0] == pytest.approx(3.0 - np.sqrt(14 / 3))


def test_mean_and_spread_edge_cases():
    dup = (np.array([0, 10, 10]), np.array([0.0, 1.0, 5.0]))  # the later write wins
    assert mean_and_spread([dup])[1].tolist() == [0.0, 5.0]
    bad = (np.array([0, 10]), np.array([np.inf, 1.0]))
    assert np.isnan(mean_and_spread([bad])[1][0])
    with pytest.raises(ValueError, match="overlap"):
        mean_and_spread([(np.array([0, 1]), np.zeros(2)), (np.array([5, 6]), np.zeros(2))])


def test_three_seeds_on_one_figure(tmp_path):
    runs = [_fake_run(tmp_path / f"ppo_s{i}", scale=s) for i, s in enumerate((0.5, 1.0, 1.5))]
    out = str(tmp_path / "seeds.png")
    assert plot_runs(runs, out=out) == out
    pixels = _image(out)
    assert pixels.shape[1] > 300 and _colours(pixels) > 20
    one = plot_runs(runs[:1], out=str(tmp_path / "one.png"), title="one seed")
    assert _colours(_image(one)) > 20


def test_groups_and_behaviors(tmp_path):
    runs = [_fake_run(tmp_path / f"r{i}", behaviors=("A", "B", "C", "D")) for i in range(4)]
    out = plot_runs(runs, out=str(tmp_path / "g.svg"), labels=["ppo", "ppo", "sac", "sac"])
    assert open(out, encoding="utf-8").read().lstrip().startswith("<?xml")
    out = plot_runs(runs, out=str(tmp_path / "b.png"), behavior="C")
    assert _image(out).shape[1] < 600  # one panel


def test_main_resolves_run_ids(tmp_path, monkeypatch):
    for name in ("ppo_s1", "ppo_s2"):
        _fake_run(tmp_path / "results" / name)
    monkeypatch.chdir(tmp_path)
    assert main(["ppo_s1", "results/ppo_s2"], REWARD, "plot.png", "results", None) == "plot.png"
    assert (tmp_path / "plot.png").is_file()


def test_unknown_stat_lists_what_the_runs_have(tmp_path):
    runs = [_fake_run(tmp_path / f"s{i}") for i in range(2)]
    with pytest.raises(PalaestraError) as err:
        plot_runs(runs, stat="Environment/Cumulative Rewards", out=str(tmp_path / "p.png"))
    message = str(err.value)
    assert "Stats these runs have: Environment/Cumulative Reward," in message  # closest first
    assert "Losses/Value Loss" in message and "Policy/Entropy" in message


def test_unknown_behavior_and_unshared_behaviors(tmp_path):
    a = _fake_run(tmp_path / "a", behaviors=("Ball",))
    b = _fake_run(tmp_path / "b", behaviors=("Walker",))
    with pytest.raises(PalaestraError, match="--behavior 'Bal'.*it has: Ball"):
        plot_runs([a], behavior="Bal", out=str(tmp_path / "p.png"))
    with pytest.raises(PalaestraError, match="share no behavior"):
        plot_runs([a, b], out=str(tmp_path / "p.png"))


def test_runs_without_events_and_bad_outputs(tmp_path):
    (tmp_path / "fresh" / "run_logs").mkdir(parents=True)
    with pytest.raises(PalaestraError, match="no TensorBoard event files"):
        plot_runs([str(tmp_path / "fresh")], out=str(tmp_path / "p.png"))
    run = _fake_run(tmp_path / "run")
    with pytest.raises(PalaestraError, match="does not exist"):
        plot_runs([run], out=str(tmp_path / "nowhere" / "p.png"))
    with pytest.raises(PalaestraError, match=r"cannot write \.txt"):
        plot_runs([run], out=str(tmp_path / "p.txt"))


def test_resolve_run(tmp_path):
    (tmp_path / "results" / "ppo_s1").mkdir(parents=True)
    results = str(tmp_path / "results")
    assert resolve_run("ppo_s1", results) == os.path.join(results, "ppo_s1")
    assert resolve_run(results) == results
    with pytest.raises(PalaestraError) as err:
        resolve_run("ppo_s9", results)
    assert "'ppo_s9'" in str(err.value) and os.path.join(results, "ppo_s9") in str(err.value)
    assert "--results-dir" in str(err.value)


def test_no_pyplot_state_is_touched(tmp_path):
    import sys

    import matplotlib

    backend = matplotlib.get_backend()
    write_run_curves(_fake_run(tmp_path / "run"))
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []
