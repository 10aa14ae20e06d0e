"""`palaestra play` (a trained policy acting, returns and videos) and `palaestra learn
--inference` (ML-Agents' run without training): neither updates nor writes the run."""
import os
import re

import numpy as np
import pytest
import yaml

from helpers import learn
from palaestra.cli import main
from palaestra.exception import EnvironmentSetupError, PalaestraError, TrainerConfigError
from palaestra.play import play

CONFIG = {"behaviors": {"3DBall": {
    "trainer_type": "ppo", "hyperparameters": {"batch_size": 64, "buffer_size": 1200},
    "summary_freq": 1200, "checkpoint_interval": 2400, "max_steps": 2400}},
    "env_settings": {"env_path": "3DBall", "seed": 5}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A short 3DBall run, with its ONNX export (conftest turns the export off elsewhere)."""
    root = tmp_path_factory.mktemp("play")
    config = root / "3DBall.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    previous = os.environ.pop("PALAESTRA_NO_ONNX", None)
    try:
        assert learn(str(config), "--run-id", "ball", "--results-dir", str(root)) == 0
    finally:
        if previous is not None:
            os.environ["PALAESTRA_NO_ONNX"] = previous
    return root


def _snapshot(folder):
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            out[path] = (st.st_size, st.st_mtime_ns)
    return out


def test_play_prints_the_returns_of_the_episodes(run, capsys):
    before = _snapshot(run)
    assert main(["play", "ball", "--results-dir", str(run), "--episodes", "5"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"3DBall: 5 episodes\. Mean return (-?[\d.]+), std ([\d.]+)", out)
    assert match, out
    assert _snapshot(run) == before  # playing writes nothing into the run


def test_the_onnx_export_and_the_checkpoint_play_alike(run):
    kwargs = dict(episodes=6, deterministic=True, seed=3)
    from_onnx = play(str(run / "ball" / "3DBall.onnx"), **kwargs)
    from_pt = play(str(run / "ball" / "3DBall" / "checkpoint.pt"), **kwargs)
    np.testing.assert_allclose(from_onnx.returns["3DBall"], from_pt.returns["3DBall"],
                               atol=1e-3)
    assert from_pt.lengths["3DBall"] == from_onnx.lengths["3DBall"]
    sampled = play(str(run / "ball"), episodes=6, seed=3)
    assert len(sampled.returns["3DBall"]) == 6


def test_a_gif_of_3dball_shows_the_ball_moving(run, tmp_path):
    from PIL import Image, ImageSequence

    out = tmp_path / "ball.gif"
    result = play(str(run / "ball"), episodes=2, record=str(out), max_frames=60)
    assert 1 < result.frames <= 60
    with Image.open(out) as gif:
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    assert len(frames) == result.frames
    assert frames[0].ndim == 3 and len(np.unique(frames[0].reshape(-1, 3), axis=0)) > 2
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])


def test_an_mp4_decodes_to_frames_that_differ(run, tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "ball.mp4"
    result = play(str(run / "ball"), episodes=2, record=str(out), max_frames=40)
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = reader.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]
    assert len(frames) == result.frames
    assert any(np.abs(frames[0].astype(int) - f).mean() > 0.5 for f in frames[1:])


def test_play_errors_say_what_to_give(run, tmp_path):
    with pytest.raises(PalaestraError, match="neither a file or folder nor a run id"):
        play("no-such-run", results_dir=str(run))
    lone = tmp_path / "policy.onnx"
    lone.write_bytes((run / "ball" / "3DBall.onnx").read_bytes())
    with pytest.raises(EnvironmentSetupError, match="give --env"):
        play(str(lone))
    assert len(play(str(lone), env="3DBall", episodes=1).returns["3DBall"]) == 1
    with pytest.raises(PalaestraError, match="does not fit behavior 3DBallHard"):
        play(str(lone), env="3DBallHard")
    with pytest.raises(PalaestraError, match=r"\.gif or \.mp4"):
        play(str(run / "ball"), record=str(tmp_path / "x.avi"))
    with pytest.raises(PalaestraError, match="--episodes 0"):
        play(str(run / "ball"), episodes=0)
    with pytest.raises(PalaestraError, match="--behavior Nope"):
        play(str(run / "ball"), behavior="Nope")
    assert main(["play", "no-such-run", "--results-dir", str(run)]) == 1


def test_inference_acts_without_training_or_writing(run, tmp_path, capsys, caplog):
    caplog.set_level("INFO", logger="palaestra")
    config = tmp_path / "3DBall.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    before = _snapshot(run)
    assert main(["learn", str(config), "--run-id", "ball", "--results-dir", str(run),
                 "--resume", "--inference", "--max-steps", "1300"]) == 0
    assert "Not Training." in caplog.text and "inference from step" in caplog.text
    assert "nothing was trained or written" in capsys.readouterr().out
    assert _snapshot(run) == before
    # a config saying inference: true does the same; without a run to read it is refused
    data = dict(CONFIG, checkpoint_settings={"inference": True, "run_id": "ball",
                                             "results_dir": str(run), "resume": True})
    config.write_text(yaml.safe_dump(data))
    assert main(["learn", str(config), "--max-steps", "600"]) == 0
    assert _snapshot(run) == before
    data["checkpoint_settings"] = {"inference": True, "run_id": "fresh",
                                   "results_dir": str(tmp_path / "results")}
    config.write_text(yaml.safe_dump(data))
    from palaestra import learn as learn_api
    with pytest.raises(TrainerConfigError, match="--resume"):
        learn_api(str(config))
    with pytest.raises(TrainerConfigError, match="--force"):
        learn_api(str(config), resume=True, force=True)
    with pytest.raises(PalaestraError, match="no palaestra run 'fresh'"):
        learn_api(str(config), resume=True)
    assert not (tmp_path / "results").exists()
    # weights of another run, and this run id never created
    result = learn_api(str(config), results_dir=str(run), initialize_from="ball",
                       max_steps=600)
    assert result.training is False and not (run / "fresh").exists()
    assert _snapshot(run) == before
