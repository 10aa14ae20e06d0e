"""Ctrl-C saves; --resume continues to the same end; the reward curve carries on."""
import glob
import json
import os
import re
import shlex
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
    hint = re.search(r"^Stopped \(CartPole-v1 at step \d+ of \d+\)\. Continue with: "
                     r"palaestra learn (.+)$", out, re.M)
    assert hint, out
    saved = torch.load(os.path.join(behavior_dir, "checkpoint.pt"), weights_only=True)
    stopped_at = saved["step"]
    assert 8000 <= stopped_at < MAX_STEPS, stopped_at
    assert _status(os.path.join(results, "r"))["final_checkpoint"]["steps"] == stopped_at
    before = scalars(behavior_dir)[REWARD]

    # A second run with the same id is refused without --resume/--force.
    assert learn(config, "--run-id", "r", "--results-dir", results) == 1

    # the command the interrupted run printed continues it
    assert learn(*shlex.split(hint.group(1))) == 0
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


def test_a_refused_resume_keeps_the_runs_configuration_and_its_own_file_resumes(tmp_path):
    config = _config(tmp_path)
    results = str(tmp_path / "results")
    assert learn(config, "--run-id", "r", "--results-dir", results, "--max-steps", "2000",
                 "--force") == 0
    saved = tmp_path / "results" / "r" / "configuration.yaml"
    before = saved.read_text()
    other = yaml.safe_load(open(config))
    other["behaviors"]["CartPole-v1"]["trainer_type"] = "sac"
    del other["behaviors"]["CartPole-v1"]["hyperparameters"]["num_epoch"]
    sac = tmp_path / "sac.yaml"
    sac.write_text(yaml.safe_dump(other))
    # a different trainer type cannot resume this run: a clear error, and nothing rewritten
    assert learn(str(sac), "--run-id", "r", "--results-dir", results, "--resume") == 1
    assert saved.read_text() == before
    # the run's own configuration.yaml resumes it; without --resume it is refused (its
    # `force` is written as false: the file lies in the folder that --force would delete)
    assert "force: false" in before
    assert learn(str(saved)) == 1 and saved.exists()
    assert learn(str(saved), "--resume", "--max-steps", "3000") == 0
    resumed = torch.load(os.path.join(results, "r", "CartPole-v1", "checkpoint.pt"),
                         weights_only=True)
    assert resumed["step"] >= 3000


def test_resume_with_another_trainer_type_names_both(tmp_path, capsys):
    config = _config(tmp_path)
    results = str(tmp_path / "results")
    assert learn(config, "--run-id", "r", "--results-dir", results, "--max-steps", "600") == 0
    other = yaml.safe_load(open(config))
    other["behaviors"]["CartPole-v1"] = {"trainer_type": "sac"}
    sac = tmp_path / "sac.yaml"
    sac.write_text(yaml.safe_dump(other))
    assert learn(str(sac), "--run-id", "r", "--results-dir", results, "--resume") == 1
    err = capsys.readouterr().err
    assert "was written by trainer type 'ppo'" in err
    assert "configured with trainer_type 'sac'" in err


def test_max_steps_from_the_command_line_is_validated(tmp_path, capsys):
    for bad in ("-5", "0.5"):
        assert learn(_config(tmp_path), "--run-id", "m", "--results-dir", str(tmp_path / "res"),
                     "--max-steps", bad) == 1
        assert "--max-steps: expected a whole number of steps >= 0" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_a_namespaced_gymnasium_id_checkpoints_in_nested_folders(tmp_path):
    config = tmp_path / "basic.yaml"
    config.write_text(yaml.safe_dump({"default_settings": {
        "trainer_type": "ppo", "hyperparameters": {"batch_size": 32, "buffer_size": 128},
        "max_steps": 600, "checkpoint_interval": 300, "summary_freq": 300}}))
    results = tmp_path / "results"
    assert learn(str(config), "--env", "palaestra/Basic-v0", "--run-id", "ns",
                 "--results-dir", str(results)) == 0
    behavior_dir = results / "ns" / "palaestra" / "Basic-v0"
    assert (behavior_dir / "checkpoint.pt").is_file()
    assert len(list(behavior_dir.glob("Basic-v0-*.pt"))) == 2  # the steps 300 and 600
    assert learn(str(config), "--env", "palaestra/Basic-v0", "--run-id", "ns",
                 "--results-dir", str(results), "--resume", "--max-steps", "900") == 0


def test_yaml_force_gives_way_to_resume_on_the_command_line(tmp_path):
    config = yaml.safe_load(open(_config(tmp_path)))
    config["checkpoint_settings"] = {"force": True}
    path = tmp_path / "forced.yaml"
    path.write_text(yaml.safe_dump(config))
    results = str(tmp_path / "results")
    assert learn(str(path), "--run-id", "f", "--results-dir", results, "--max-steps", "600") == 0
    assert learn(str(path), "--run-id", "f", "--results-dir", results, "--max-steps", "1200",
                 "--resume") == 0
    resumed = torch.load(os.path.join(results, "f", "CartPole-v1", "checkpoint.pt"),
                         weights_only=True)
    assert resumed["step"] >= 1200
    # continued, not started over: --force would have deleted the first run's checkpoint
    steps = [int(p.rsplit("-", 1)[1][:-3]) for p in
             glob.glob(os.path.join(results, "f", "CartPole-v1", "CartPole-v1-*.pt"))]
    assert min(steps) < 1200, steps


def test_segments_of_max_steps_make_the_updates_of_one_run(tmp_path):
    """The partly filled update buffer is part of the checkpoint: stopping at --max-steps and
    resuming, again and again, trains on every step (it once threw the buffer away each time)."""
    config = tmp_path / "fixed.yaml"
    config.write_text(yaml.safe_dump({"behaviors": {"fixed_length": {
        "trainer_type": "ppo", "hyperparameters": {"batch_size": 64, "buffer_size": 384},
        "network_settings": {"hidden_units": 8, "num_layers": 1}, "max_steps": 3000,
        "time_horizon": 32, "summary_freq": 1000}},
        "env_settings": {"env_path": "fault_envs:fixed_length", "num_envs": 2, "seed": 1}}))
    results = str(tmp_path / "results")
    assert learn(str(config), "--run-id", "whole", "--results-dir", results) == 0
    for k, steps in enumerate(("1000", "2000", "3000")):
        extra = ["--resume"] if k else []
        assert learn(str(config), "--run-id", "parts", "--results-dir", results,
                     "--max-steps", steps, *extra) == 0
    whole, parts = (torch.load(os.path.join(results, run, "fixed_length", "checkpoint.pt"),
                               weights_only=True) for run in ("whole", "parts"))
    assert parts["step"] == whole["step"] == 3008
    assert parts["updates"] == whole["updates"] == 3008 // 384
    assert "buffer_file" in parts  # 320 steps wait for the next update
