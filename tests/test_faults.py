"""Kill -9 at random moments: every run resumes and ends as an uninterrupted one would.

A PPO run is killed 21 times and a SAC run (save_replay_buffer on) 10 times, a third of the
kills while a checkpoint file is half-written (fault injection: the save pauses half-way
through a file of a randomly chosen kind, buffer, step checkpoint, checkpoint.pt or status,
and the test kills it there). After every kill: `checkpoint.pt` reads,
the status file is valid, and the next `--resume` starts at most one checkpoint interval (plus
the trajectory that crossed it) before the last summary the killed process printed. At the
end: the run reaches max_steps with as many updates as an uninterrupted run, TensorBoard shows
every summary step once, no temporary file is left and at most keep_checkpoints step
checkpoints.

The kill moments are random but anchored to events, not to wall time: a random step after the
last resume (seen in the summaries) plus a few random milliseconds, a random moment of
start-up, or a chosen file of a save; so a faster or slower machine kills at the same kinds of
moment and never finishes the run before its kills. Every moment must be safe, so the
assertions do not depend on timing.
"""
import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import yaml

from helpers import TESTS_DIR, scalars
from palaestra.atomic import PAUSE_ENV
from palaestra.checkpoint import CheckpointManager, load_checkpoint

pytestmark = pytest.mark.faults

REWARD = "Environment/Cumulative Reward"
HORIZON = 32
# the files of one save, in the order they are written: the buffer, the step checkpoint (the
# first .pt of a save), checkpoint.pt, the status file
SAVED_FILES = (".npz", ".pt", "checkpoint.pt", "training_status.json")


@dataclass
class Run:
    config: str
    behavior: str
    max_steps: int
    interval: int  # checkpoint_interval
    stride: int  # a kill while training comes up to this many steps after the last resume


def _ppo_config(tmp_path):
    path = tmp_path / "ppo.yaml"
    path.write_text(yaml.safe_dump({"behaviors": {"fixed_length": {
        "trainer_type": "ppo",
        "hyperparameters": {"batch_size": 64, "buffer_size": 384, "num_epoch": 2},
        "network_settings": {"hidden_units": 16, "num_layers": 1},
        "max_steps": 49152, "time_horizon": 32, "summary_freq": 256,
        "checkpoint_interval": 512, "keep_checkpoints": 3}},
        "env_settings": {"env_path": "fault_envs:fixed_length", "num_envs": 2, "seed": 3}}))
    return Run(str(path), "fixed_length", 49152, interval=512, stride=1000)


def _sac_config(tmp_path):
    path = tmp_path / "sac.yaml"
    path.write_text(yaml.safe_dump({"behaviors": {"Pendulum-v1": {
        "trainer_type": "sac",
        "hyperparameters": {"batch_size": 32, "buffer_size": 5000, "buffer_init_steps": 200,
                            "save_replay_buffer": True},
        "network_settings": {"hidden_units": 16, "num_layers": 1},
        "max_steps": 4000, "time_horizon": 32, "summary_freq": 100,
        "checkpoint_interval": 200, "keep_checkpoints": 2}},
        "env_settings": {"env_path": "Pendulum-v1", "num_envs": 1, "seed": 3}}))
    return Run(str(path), "Pendulum-v1", 4000, interval=200, stride=150)


def _spawn(tmp_path, config, run_id, resume, log, pause=None):
    env = dict(os.environ, PALAESTRA_NO_PROGRESS="1",
               PYTHONPATH=os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]))
    env.pop(PAUSE_ENV, None)
    if pause:
        env[PAUSE_ENV] = pause
    cmd = [sys.executable, "-m", "palaestra", "learn", config, "--run-id", run_id]
    if resume:
        cmd.append("--resume")
    return subprocess.Popen(cmd, env=env, cwd=str(tmp_path), stdout=log,
                            stderr=subprocess.STDOUT)


def _finished(tmp_path, config, run_id, resume):
    log_path = tmp_path / f"{run_id}-final.log"
    with open(log_path, "w") as log:
        proc = _spawn(tmp_path, config, run_id, resume, log)
        assert proc.wait(timeout=600) == 0, log_path.read_text()


def _printed_steps(text):
    return [int(s) for s in re.findall(r"Step: (\d+)\.", text)]


def _check_after_kill(run_dir, behavior):
    """The step the next --resume starts from (None: no checkpoint yet)."""
    folder = os.path.join(run_dir, behavior)
    step = None
    if os.path.exists(os.path.join(folder, "checkpoint.pt")):
        load_checkpoint(os.path.join(folder, "checkpoint.pt"))  # never unreadable
        step = CheckpointManager(folder, behavior, 100).load_latest()[1]["step"]
    status = os.path.join(run_dir, "run_logs", "training_status.json")
    if os.path.exists(status):
        with open(status) as fh:
            json.load(fh)
    return step


def _wait_for_summary(log_path, proc, step):
    """Until the process prints a summary at `step` or later: kills anchored to progress, not
    to wall time, so a faster machine cannot finish the run before its kills."""
    while proc.poll() is None:
        printed = _printed_steps(log_path.read_text())
        if printed and max(printed) >= step:
            return
        time.sleep(0.01)


def _kill_and_resume(tmp_path, run, kills, rng):
    """`kills` runs killed with SIGKILL, each resuming the last: every third while a file of a
    save is half-written, the others at a random step after the last resume (plus a random
    few milliseconds), or, at random, during start-up."""
    run_id = "killed"
    run_dir = str(tmp_path / "results" / run_id)
    started = False
    mid_save = 0
    resumed_at = None
    for k in range(kills):
        log_path = tmp_path / f"kill-{k}.log"
        during_save = k % 3 == 2
        marker = str(tmp_path / f"saving-{k}")
        with open(log_path, "w") as log:
            proc = _spawn(tmp_path, run.config, run_id, started, log,
                          f"{marker}:{rng.choice(SAVED_FILES)}" if during_save else None)
            if during_save:
                while not os.path.exists(marker) and proc.poll() is None:
                    time.sleep(0.01)
                mid_save += 1
            elif k % 3 == 1 and rng.random() < 0.5:
                time.sleep(rng.uniform(0.0, 0.3))  # start-up: imports, env, first checkpoint
            else:
                _wait_for_summary(log_path, proc, (resumed_at or 0) + rng.randint(0, run.stride))
                time.sleep(rng.uniform(0.0, 0.05))
            assert proc.poll() is None, "the run ended before its kill: " + \
                log_path.read_text()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        started = started or os.path.isdir(run_dir)
        resumed_at = _check_after_kill(run_dir, run.behavior)
        printed = _printed_steps(log_path.read_text())
        if printed and resumed_at is not None:
            # a save is due once a trajectory crosses the interval: it may end past it
            assert max(printed) - resumed_at <= run.interval + HORIZON, (printed, resumed_at)
        assert resumed_at is None or resumed_at < run.max_steps
    assert mid_save == kills // 3
    _finished(tmp_path, run.config, run_id, started)
    return run_dir


def _check_end(ref_dir, run_dir, behavior, max_steps, keep):
    ref = load_checkpoint(os.path.join(ref_dir, behavior, "checkpoint.pt"))
    end = load_checkpoint(os.path.join(run_dir, behavior, "checkpoint.pt"))
    assert end["step"] >= max_steps
    assert end["updates"] == ref["updates"], (end["updates"], ref["updates"])
    if "update_steps" in ref:
        assert end["update_steps"] == ref["update_steps"]
    steps = [s for s, _ in scalars(os.path.join(run_dir, behavior))[REWARD]]
    assert len(steps) == len(set(steps)) and steps == sorted(steps), steps
    assert not glob.glob(os.path.join(run_dir, "**", "*.tmp-*"), recursive=True)
    assert len(glob.glob(os.path.join(run_dir, behavior, f"{behavior}-*.pt"))) <= keep


def test_ppo_survives_21_kills(tmp_path):
    run = _ppo_config(tmp_path)
    _finished(tmp_path, run.config, "reference", False)
    run_dir = _kill_and_resume(tmp_path, run, 21, random.Random(1))
    _check_end(str(tmp_path / "results" / "reference"), run_dir, run.behavior, run.max_steps, 3)
    ref = load_checkpoint(str(tmp_path / "results" / "reference" / run.behavior /
                              "checkpoint.pt"))
    # whole trajectories make every update exact; the last one is due at max_steps, where
    # training has ended
    assert ref["updates"] == (run.max_steps - 1) // 384


def test_sac_survives_10_kills(tmp_path):
    run = _sac_config(tmp_path)
    _finished(tmp_path, run.config, "reference", False)
    run_dir = _kill_and_resume(tmp_path, run, 10, random.Random(2))
    _check_end(str(tmp_path / "results" / "reference"), run_dir, run.behavior, run.max_steps, 2)
    # the replay buffer came back with every resume: it holds as many rows as the reference
    ref = glob.glob(str(tmp_path / "results" / "reference" / run.behavior / "buffer-*.npz"))
    end = glob.glob(os.path.join(run_dir, run.behavior, "buffer-*.npz"))
    assert len(ref) == len(end) == 1
