"""Ctrl-C saves; --resume continues to the same end; the reward curve carries on."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import torch
import yaml

from helpers import learn, scalars

REWARD = "Environment/Cumulative Reward"
MAX_STEPS = 24000


def _config(tmp_path):
    path = tmp_path / "cartpole.yaml"
    path.write_text(yaml.safe_dump({"behaviors": {"CartPole-v1": {
        "trainer_type": "ppo",
        "hyperparameters": {"batch_size": 128, "buffer_size": 512, "learning_rate": 1e-3,
                            "num_epoch": 6},
        "network_settings": {"hidden_units": 64, "num_layers": 2, "activation": "tanh"},
        "max_steps": MAX_STEPS, "time_horizon": 128, "summary_freq": 2000,
        "checkpoint_interval": 4000, "keep_checkpoints": 3}},
        "env_settings": {"env_path": "CartPole-v1", "num_envs": 4, "seed": 5}}))
    return str(path)


def _status(run_dir):
    with open(os.path.join(run_dir, "run_logs", "training_status.json")) as fh:
        return json.load(fh)["CartPole-v1"]


def test_interrupted_run_resumes_to_the_same_end(tmp_path):
    config = _config(tmp_path)
    results = str(tmp_path / "results")
    env = dict(os.environ, PALAESTRA_NO_PROGRESS="1")
    cmd = [sys.executable, "-m", "palaestra", "learn", config, "--run-id", "r",
           "--results-dir", results]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    behavior_dir = os.path.join(results, "r", "CartPole-v1")
    deadline = time.time() + 120
    while not glob.glob(os.path.join(behavior_dir, "CartPole-v1-8*.pt")):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint at 8k steps in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "interrupted" in out
    saved = torch.load(os.path.join(behavior_dir, "checkpoint.pt"), weights_only=True)
    stopped_at = saved["step"]
    assert 8000 <= stopped_at < MAX_STEPS, stopped_at
    assert _status(os.path.join(results, "r"))["final_checkpoint"]["steps"] == stopped_at
    before = scalars(behavior_dir)[REWARD]

    # A second run with the same id is refused without --resume/--force.
    assert learn(config, "--run-id", "r", "--results-dir", results) == 1

    assert learn(config, "--run-id", "r", "--results-dir", results, "--resume") == 0
    resumed = torch.load(os.path.join(behavior_dir, "checkpoint.pt"), weights_only=True)
    assert MAX_STEPS <= resumed["step"] < MAX_STEPS + 4 * 128
    assert resumed["step"] > stopped_at
    # keep_checkpoints: only the newest 3 step checkpoints stay
    assert len(glob.glob(os.path.join(behavior_dir, "CartPole-v1-*.pt"))) == 3

    curve = scalars(behavior_dir)[REWARD]
    after = [(s, v) for s, v in curve if s > stopped_at]
    assert after and all(s > stopped_at for s, _ in after)
    steps = [s for s, _ in curve]
    assert steps == sorted(steps), "summary steps must continue, not restart from 0"
    # the resumed policy plays like the trained one, not like a fresh one (the exact reward
    # depends on the step the signal arrived at, so only the contrast is pinned)
    assert after[0][1] > 2 * before[0][1], (before, after)


def test_resume_without_previous_run_is_refused(tmp_path):
    assert learn(_config(tmp_path), "--run-id", "none", "--results-dir", str(tmp_path),
                 "--resume") == 1


def test_initialize_from_starts_a_new_run_with_old_weights(tmp_path):
    config = _config(tmp_path)
    results = str(tmp_path)
    assert learn(config, "--run-id", "a", "--results-dir", results, "--max-steps", "6000") == 0
    assert learn(config, "--run-id", "b", "--results-dir", results, "--max-steps", "2000",
                 "--initialize-from", "a") == 0
    a = scalars(str(tmp_path / "a" / "CartPole-v1"))[REWARD]
    b = scalars(str(tmp_path / "b" / "CartPole-v1"))[REWARD]
    assert 2000 <= b[0][0] < 2600  # a new run counts from 0
    assert b[0][1] > 1.5 * a[0][1], (a, b)  # but plays like the trained one
