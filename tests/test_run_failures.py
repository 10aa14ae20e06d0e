"""Runs that go wrong stop with a message and leave a usable checkpoint: non-finite training
(learning_rate 1e308, observations of 1e30, a plugin's NaN loss), an error inside an update,
an environment that hangs (watchdog, SIGTERM), Ctrl-C during start-up, a kill before the first
checkpoint."""
import os
import signal
import subprocess
import sys
import time
from typing import Dict

import pytest
import torch
import yaml

from helpers import TESTS_DIR, learn
from palaestra.registry import TrainerRegistry
from palaestra.trainers.ppo.optimizer import TorchPPOOptimizer
from palaestra.trainers.ppo.settings import PPOSettings
from palaestra.trainers.ppo.trainer import PPOTrainer


def _config(tmp_path, env, **behavior):
    settings = {"trainer_type": "ppo",
                "hyperparameters": {"batch_size": 64, "buffer_size": 256},
                "network_settings": {"hidden_units": 16, "num_layers": 1},
                "max_steps": 3000, "summary_freq": 500, "time_horizon": 32}
    for key, value in behavior.items():
        if isinstance(value, dict):
            settings.setdefault(key, {}).update(value)
        else:
            settings[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"default_settings": settings,
                                    "env_settings": {"env_path": env, "num_envs": 2,
                                                     "seed": 1}}))
    return str(path)


def _finite_checkpoint(path) -> int:
    saved = torch.load(path, weights_only=True)
    for module in saved["modules"].values():
        for value in module.values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                assert torch.isfinite(value).all(), path
    return saved["step"]


def _stops_non_finite(tmp_path, capsys, config, behavior, *args):
    results = tmp_path / "results"
    rc = learn(config, "--run-id", "r", "--results-dir", str(results), *args)
    err = capsys.readouterr().err
    assert rc == 1
    assert "NonFiniteError" in err and behavior in err and "at step" in err, err
    assert "Likely causes" in err and "checkpoint.pt keeps the last finite weights" in err
    step = _finite_checkpoint(results / "r" / behavior / "checkpoint.pt")
    return err, step


def test_a_huge_learning_rate_stops_within_one_update(tmp_path, capsys):
    config = _config(tmp_path, "CartPole-v1", hyperparameters={"learning_rate": 1e308})
    err, step = _stops_non_finite(tmp_path, capsys, config, "CartPole-v1")
    assert "(update 1)" in err  # the first update's second minibatch sees the inf weights
    assert step == 0


def test_observations_of_1e30_stop_within_one_update(tmp_path, capsys):
    config = _config(tmp_path, "fault_envs:huge_observations")
    err, _ = _stops_non_finite(tmp_path, capsys, config, "huge_observations")
    assert "(update 1)" in err or "actions are not finite" in err


class NaNLossOptimizer(TorchPPOOptimizer):
    def update(self, batch, num_sequences) -> Dict[str, float]:
        stats = super().update(batch, num_sequences)
        stats["Losses/Policy Loss"] = float("nan")
        return stats


class NaNLossTrainer(PPOTrainer):
    @staticmethod
    def get_trainer_name() -> str:
        return "nan_loss"

    def create_optimizer(self):
        return NaNLossOptimizer(self.policy, self.trainer_settings)


class CrashingOptimizer(TorchPPOOptimizer):
    def update(self, batch, num_sequences) -> Dict[str, float]:
        raise RuntimeError("a bug in the plugin's loss")


class CrashingTrainer(PPOTrainer):
    @staticmethod
    def get_trainer_name() -> str:
        return "crashing"

    def create_optimizer(self):
        return CrashingOptimizer(self.policy, self.trainer_settings)


@pytest.fixture
def plugin_types(monkeypatch):
    original = TrainerRegistry.from_entry_points.__func__

    def with_plugins(cls, *args, **kwargs):
        registry = original(cls, *args, **kwargs)
        registry.register({"nan_loss": NaNLossTrainer, "crashing": CrashingTrainer},
                          {"nan_loss": PPOSettings, "crashing": PPOSettings})
        return registry

    monkeypatch.setattr(TrainerRegistry, "from_entry_points", classmethod(with_plugins))


def test_a_plugin_returning_a_nan_loss_stops_at_its_first_update(tmp_path, capsys,
                                                                 plugin_types):
    config = _config(tmp_path, "CartPole-v1", trainer_type="nan_loss", checkpoint_interval=100)
    err, step = _stops_non_finite(tmp_path, capsys, config, "CartPole-v1")
    assert "'Losses/Policy Loss' is nan" in err and "(update 1)" in err
    assert step > 0  # checkpoints before the first update stay


def test_an_error_inside_an_update_saves_nothing_half_done(tmp_path, caplog, plugin_types):
    config = _config(tmp_path, "CartPole-v1", trainer_type="crashing")
    results = tmp_path / "results"
    with pytest.raises(RuntimeError, match="a bug in the plugin's loss"):
        learn(config, "--run-id", "r", "--results-dir", str(results))
    out = caplog.text
    assert "checkpoints are not saved now" in out and "CartPole-v1 step 0" in out
    assert torch.load(results / "r" / "CartPole-v1" / "checkpoint.pt",
                      weights_only=True)["step"] == 0


def test_a_hanging_environment_stops_at_the_step_timeout_and_resumes(tmp_path, capsys,
                                                                     caplog):
    config = _config(tmp_path, "fault_envs:hanging")
    results = str(tmp_path / "results")
    rc = learn(config, "--run-id", "r", "--results-dir", results, "--timeout-step", "1")
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("EnvironmentTimeout:") and "step has not returned after 1 s" in err
    assert "--timeout-step" in err
    step = torch.load(os.path.join(results, "r", "hanging", "checkpoint.pt"),
                      weights_only=True)["step"]
    assert step > 0  # the trainers were consistent: saved
    # --resume picks up from that checkpoint (the environment hangs again after 100 steps)
    assert learn(config, "--run-id", "r", "--results-dir", results, "--resume",
                 "--timeout-step", "1") == 1
    assert "Resumed hanging" in caplog.text


def _spawn(tmp_path, *args, **env):
    cmd = [sys.executable, "-m", "palaestra", "learn", *args]
    full_env = dict(os.environ, PALAESTRA_NO_PROGRESS="1",
                    PYTHONPATH=os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")]),
                    **env)
    return subprocess.Popen(cmd, env=full_env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc):
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)


def _signal_when_hanging(tmp_path, signum, *args):
    """Start `palaestra learn *args`, wait until its environment hangs, send `signum`."""
    marker = str(tmp_path / f"hanging-{len(os.listdir(tmp_path))}")
    proc = _spawn(tmp_path, *args, FAULT_HANG_MARKER=marker)
    _wait_for(marker, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in out + err, out + err
    return proc.returncode, out, err


def test_sigterm_stops_a_run_whose_environment_hangs_and_saves(tmp_path):
    config = _config(tmp_path, "fault_envs:hanging")
    rc, out, err = _signal_when_hanging(tmp_path, signal.SIGTERM, config, "--run-id", "r",
                                        "--timeout-step", "0")
    assert rc == 0, out + err
    assert "Training interrupted: saving checkpoints" in out
    assert torch.load(tmp_path / "results" / "r" / "hanging" / "checkpoint.pt",
                      weights_only=True)["step"] > 0


def test_ctrl_c_during_start_up_says_so_and_leaves_no_folder(tmp_path):
    config = _config(tmp_path, "fault_envs:hanging")
    # the environment hangs in its very first step: the first Ctrl-C breaks out of it, and
    # the run saves its step-0 checkpoint
    rc, out, err = _signal_when_hanging(tmp_path, signal.SIGINT, config, "--run-id", "r",
                                        "--env-args", "after=0")
    assert rc == 0, out + err
    # the environment hangs while it is made: nothing to save, no folder left behind
    rc, out, err = _signal_when_hanging(tmp_path, signal.SIGINT, "--env",
                                        "fault_envs:hanging_factory", "--run-id", "s")
    assert rc == 130, out + err
    assert err.strip().startswith("Interrupted"), err
    assert not (tmp_path / "results" / "s").exists()


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(tmp_path, caplog):
    config = _config(tmp_path, "CartPole-v1", max_steps=500)
    run = tmp_path / "results" / "r"
    (run / "run_logs").mkdir(parents=True)  # what a kill during start-up leaves
    assert learn(config, "--run-id", "r", "--results-dir", str(tmp_path / "results"),
                 "--resume") == 0
    assert "no checkpoint yet" in caplog.text
    assert torch.load(run / "CartPole-v1" / "checkpoint.pt", weights_only=True)["step"] >= 500


def test_a_new_run_writes_its_first_checkpoint_before_its_first_step(tmp_path):
    config = _config(tmp_path, "fault_envs:hanging")
    results = str(tmp_path / "results")
    assert learn(config, "--run-id", "r", "--results-dir", results, "--timeout-step", "1",
                 "--env-args", "after=0") == 1
    assert torch.load(os.path.join(results, "r", "hanging", "checkpoint.pt"),
                      weights_only=True)["step"] == 0


def test_a_full_disk_ends_the_run_with_one_line_and_the_last_checkpoint_intact(
        tmp_path, capsys, monkeypatch):
    import errno

    import palaestra.checkpoint as checkpoint

    real = checkpoint.atomic_write_bytes
    calls = []

    def filling_up(data, path):
        calls.append(path)
        if len(calls) > 1:  # the first checkpoint fits; the disk is full after it
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real(data, path)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", filling_up)
    config = _config(tmp_path, "CartPole-v1", checkpoint_interval=200)
    results = tmp_path / "results"
    assert learn(config, "--run-id", "r", "--results-dir", str(results)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "--resume" in err
    assert "Traceback" not in err
    assert _finite_checkpoint(results / "r" / "CartPole-v1" / "checkpoint.pt") == 0
    assert not list(results.glob("**/*.tmp-*"))


def test_an_error_inside_the_environment_saves_first(tmp_path, caplog):
    config = _config(tmp_path, "fault_envs:failing")
    results = tmp_path / "results"
    with pytest.raises(RuntimeError, match="the simulator crashed"):
        learn(config, "--run-id", "r", "--results-dir", str(results))
    assert "The environment failed (RuntimeError: the simulator crashed): saving" in caplog.text
    assert torch.load(results / "r" / "failing" / "checkpoint.pt", weights_only=True)["step"] > 0


def test_sigterm_during_start_up_says_so_and_leaves_no_folder(tmp_path):
    rc, out, err = _signal_when_hanging(tmp_path, signal.SIGTERM, "--env",
                                        "fault_envs:hanging_factory", "--run-id", "s")
    assert rc == 143, out + err
    assert err.strip().startswith("Terminated") and err.strip().count("\n") == 0, err
    assert not (tmp_path / "results" / "s").exists()


def test_an_environment_raising_keyboardinterrupt_is_a_stop_that_saves(tmp_path, caplog):
    config = _config(tmp_path, "fault_envs:raising")
    results = tmp_path / "results"
    assert learn(config, "--run-id", "r", "--results-dir", str(results)) == 0
    assert "Training interrupted: saving checkpoints" in caplog.text
    assert torch.load(results / "r" / "raising" / "checkpoint.pt", weights_only=True)["step"] > 0


def test_an_environment_calling_sys_exit_is_named_and_saves_first(tmp_path, caplog):
    config = _config(tmp_path, "fault_envs:raising")
    results = tmp_path / "results"
    with pytest.raises(SystemExit):
        learn(config, "--run-id", "r", "--results-dir", str(results), "--env-args",
              "what=SystemExit")
    assert "The environment failed (SystemExit: it called sys.exit(3))" in caplog.text
    assert torch.load(results / "r" / "raising" / "checkpoint.pt", weights_only=True)["step"] > 0
