"""Unity through ML-Agents' protocol, end to end against the fake Unity of tests/fake_unity (its
own process, a gRPC client on a loopback port, palaestra's 3DBall physics behind it)."""
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("grpc")

from helpers import learn, scalars  # noqa: E402
from palaestra.envs.base import ActionTuple  # noqa: E402
from palaestra.exception import EnvironmentSetupError  # noqa: E402
from palaestra.unity.connection import free_base_port  # noqa: E402
from palaestra.unity.environment import UnityEnvironment, UnitySettings  # noqa: E402

FAKE = Path(__file__).parent / "fake_unity"
BUILD = str(FAKE / "FakeBall")
REWARD = "Environment/Cumulative Reward"
CONFIG = os.path.join(os.path.dirname(__file__), "..", "src", "palaestra", "configs", "ppo",
                      "3DBall.yaml")


@pytest.fixture(autouse=True)
def fake_python(monkeypatch):
    monkeypatch.setenv("FAKE_UNITY_PYTHON", sys.executable)


def free_port(count: int = 1) -> int:
    return free_base_port(count)


def _unity(tmp_path, *extra, num_envs=1, **settings):
    return UnityEnvironment(UnitySettings(
        executable=str(FAKE / "FakeBall.x86_64"), num_envs=num_envs,
        base_port=free_port(num_envs), seed=3, timeout_wait=30,
        env_args=list(extra), log_folder=str(tmp_path), **settings))


def test_the_fake_3dball_trains_as_the_builtin_one(tmp_path):
    """Same config, seed and budget as test_ppo_3dball_shipped_config_learns_quickly (the
    built-in scene): the mean reward goes from about 1 to over 8 within 84k agent steps
    (last summary at 84k, fake / built in: seed 1 12.0 / 10.6, seed 2 8.1 / 8.9, seed 3
    9.4 / 9.6, seed 4 11.1 / 14.3; `palaestra learn src/palaestra/configs/ppo/3DBall.yaml
    --seed N --max-steps 84000 [--env tests/fake_unity/FakeBall --no-graphics]`)."""
    assert learn(CONFIG, "--env", BUILD, "--run-id", "fake", "--results-dir", str(tmp_path),
                 "--max-steps", "84000", "--base-port", str(free_port()), "--no-graphics") == 0
    rewards = [v for _, v in scalars(str(tmp_path / "fake" / "3DBall"))[REWARD]]
    assert rewards[0] < 3, rewards
    assert rewards[-1] > 8 and rewards[-1] > 5 * rewards[0], rewards
    series = scalars(str(tmp_path / "fake" / "3DBall"))
    # the build's StatsRecorder values, with their aggregation: time scale most recent (the
    # engine setting sent), steps summed over each summary period
    assert {v for _, v in series["Fake/Time Scale"]} == {20.0}
    assert all(v > 100 for _, v in series["Fake/Steps"])
    log = (tmp_path / "fake" / "run_logs" / "Player-0.log").read_text()
    assert "-nographics" in log or "nographics" in log.lower()
    assert log.rstrip().endswith("exit 0")


def test_several_instances_feed_one_trainer(tmp_path):
    """Three instances of 3 agents: each step acts for the instances that have answered
    (all of them after a reset), their agents with ids unique over instances."""
    env = _unity(tmp_path, "--agents", "3", num_envs=3)
    try:
        env.reset()
        decision, _ = env.get_steps("3DBall")
        assert len(decision) == 9 and len(set(decision.agent_id.tolist())) == 9
        env.pop_stats()  # the resets' outputs carry stats too
        seen, decisions, instance_steps = set(), 0, 0
        for _ in range(400):
            decision, terminal = env.get_steps("3DBall")
            assert len(decision) in (3, 6, 9)  # whole instances, at least one
            seen.update(decision.agent_id.tolist())
            decisions += len(decision)
            env.set_actions("3DBall", ActionTuple(np.zeros((len(decision), 2), np.float32),
                                                  np.zeros((len(decision), 0), np.int64)))
            env.step()
            instance_steps += sum(v for v, _ in env.pop_stats().get("Fake/Steps", []))
            if instance_steps >= 120:
                break
        assert len(seen) == 9 and instance_steps >= 120
        # every output an instance sent was acted on: its 3 agents' decisions (plus the
        # reset's 9, whose stats were popped before the loop)
        assert decisions == 3 * instance_steps + 9
    finally:
        env.close()
    for worker in range(3):
        assert (tmp_path / f"Player-{worker}.log").read_text().rstrip().endswith("exit 0")


def test_the_zoo_scene_decodes_as_palaestra_expects(tmp_path):
    env = _unity(tmp_path, "--scene", "zoo")
    try:
        specs = env.behavior_specs
        assert set(specs) == {"Visual", "Hybrid?team=1", "Group"}
        visual = specs["Visual"]
        assert [o.shape for o in visual.observation_specs] == [(16, 16, 3), (3,)]
        assert visual.action_spec.discrete_branches == (3, 2)
        hybrid = specs["Hybrid?team=1"].action_spec
        assert (hybrid.continuous_size, hybrid.discrete_branches) == (1, (2,))
        env.reset()
        decision, _ = env.get_steps("Visual")
        # Unity's mask says "not allowed"; palaestra's "allowed"
        assert not decision.action_mask[0, 0] and decision.action_mask[0, 1:].all()
        assert not decision.action_mask[1, 4] and decision.action_mask[1, :4].all()
        image = decision.obs[0][0]
        assert image.dtype == np.float32 and image.shape == (16, 16, 3)
        assert image[0, 1, 0] == pytest.approx(16 / 255, abs=1e-6)  # red = 16 x column
        assert image[1, 0, 1] == pytest.approx(16 / 255, abs=1e-6)  # green = 16 x row
        group, _ = env.get_steps("Group")
        assert set(group.group_id.tolist()) == {7} and len(group) == 3
        ends = 0
        for _ in range(6):
            for name, spec in specs.items():
                d, t = env.get_steps(name)
                ends += len(t) if name == "Group" else 0
                mask = d.action_mask
                disc = np.zeros((len(d), len(spec.action_spec.discrete_branches)), np.int64)
                if mask is not None:  # choose an allowed action in every branch
                    start = 0
                    for b, size in enumerate(spec.action_spec.discrete_branches):
                        disc[:, b] = np.argmax(mask[:, start:start + size], axis=1)
                        start += size
                env.set_actions(name, ActionTuple(
                    np.zeros((len(d), spec.action_spec.continuous_size), np.float32), disc))
            env.step()
        assert ends == 3  # the group's 5-step episode ended once for each of its agents
        assert "Fake/Masked Actions" not in env.pop_stats()
    finally:
        env.close()


def test_editor_mode_waits_on_5004_and_trains_when_play_is_pressed(tmp_path):
    """No --env: palaestra listens on 5004 as mlagents-learn does; the fake connects as the
    Editor does after Play (it retries until the server is up)."""
    editor = subprocess.Popen([sys.executable, str(FAKE / "fake_unity.py"), "--agents", "4",
                               "-logFile", str(tmp_path / "editor.log")])
    try:
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump({"behaviors": {"3DBall": {
            "trainer_type": "ppo", "max_steps": 800, "summary_freq": 400,
            "hyperparameters": {"batch_size": 32, "buffer_size": 400}}}}))
        assert learn(str(config), "--run-id", "editor", "--results-dir", str(tmp_path),
                     "--timeout-wait", "60") == 0
        assert editor.wait(timeout=60) == 0
    finally:
        editor.kill()
    assert (tmp_path / "editor" / "3DBall" / "checkpoint.pt").is_file()


def test_a_killed_build_is_relaunched_and_the_run_finishes(tmp_path, caplog, monkeypatch):
    from palaestra.agent_processor import AgentProcessor

    dropped = []
    drop_part = AgentProcessor.drop_part
    monkeypatch.setattr(AgentProcessor, "drop_part", lambda self, part, parts, keep=(): (
        dropped.append((part, parts)), drop_part(self, part, parts, keep))[1])
    marker = tmp_path / "crashed"
    assert learn(CONFIG, "--env", BUILD, "--run-id", "crash", "--results-dir", str(tmp_path),
                 "--max-steps", "3000", "--base-port", str(free_port()),
                 "--env-args", "--crash-after-steps", "60", "--crash-marker", str(marker)) == 0
    assert marker.exists()
    assert "Restarting Unity instance 0" in caplog.text
    assert dropped == [(0, 1)]  # what the lost instance's waiting agents had started
    import torch
    saved = torch.load(tmp_path / "crash" / "3DBall" / "checkpoint.pt", weights_only=True)
    assert saved["step"] >= 3000


def _one_line_failure(tmp_path, *args):
    proc = subprocess.run([sys.executable, "-m", "palaestra", "learn", CONFIG, "--run-id", "bad",
                           "--results-dir", str(tmp_path / "results"), "--base-port",
                           str(free_port()), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PALAESTRA_NO_PROGRESS": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "results" / "bad").exists()  # no half-written run
    return proc.stderr


def _no_fake_left(marker: str) -> None:
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    assert not left.strip(), left


def test_a_version_mismatch_is_one_clear_line(tmp_path):
    err = _one_line_failure(tmp_path, "--env", BUILD, "--env-args", "--api-version", "2.0.0",
                            "--agents", "5")
    assert re.search(r"2\.0\.0.*1\.5\.0|1\.5\.0.*2\.0\.0", err), err
    _no_fake_left(str(tmp_path))


def test_a_build_that_never_connects_is_one_clear_line(tmp_path):
    err = _one_line_failure(tmp_path, "--env", BUILD, "--timeout-wait", "3", "--env-args",
                            "--never-connect", "--agents", "7")
    assert "did not connect" in err and "--timeout-wait" in err, err
    _no_fake_left(str(tmp_path))


def test_a_missing_build_is_one_clear_line(tmp_path):
    err = _one_line_failure(tmp_path, "--env", str(tmp_path / "Builds" / "Nothing.x86_64"))
    assert "no Unity build found" in err, err


def test_environment_parameters_and_engine_settings_reach_unity(tmp_path):
    env = _unity(tmp_path, environment_parameters={"gravity": -3.5})
    try:
        env.reset()
        stats = env.pop_stats()
        assert stats["Fake/Parameter/gravity"][-1][0] == pytest.approx(-3.5)
        assert stats["Fake/Time Scale"][-1] == (20.0, "most_recent")
    finally:
        env.close()


def test_a_port_in_use_is_refused(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EnvironmentSetupError, match=f"Port {port} is in use"):
            UnityEnvironment(UnitySettings(executable=str(FAKE / "FakeBall.x86_64"),
                                           base_port=port, timeout_wait=5))


def test_past_the_restart_quota_the_run_stops_with_a_checkpoint(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "palaestra", "learn", CONFIG, "--env", BUILD, "--run-id", "q",
         "--results-dir", str(tmp_path), "--max-steps", "30000", "--base-port",
         str(free_port()), "--max-lifetime-restarts", "1", "--env-args",
         "--crash-after-steps", "40"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PALAESTRA_NO_PROGRESS": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Restarting Unity instance 0" in proc.stdout
    assert "exceeded the allowed restarts" in proc.stderr and "Traceback" not in proc.stderr
    import torch
    saved = torch.load(tmp_path / "q" / "3DBall" / "checkpoint.pt", weights_only=True)
    assert 40 * 12 <= saved["step"] < 30000  # the steps before the stop are kept


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_build_does_not_outlive_a_killed_trainer(tmp_path):
    """kill -9 of the trainer while its build runs: the build gets SIGTERM from the kernel
    (a real Unity build whose trainer is gone would otherwise run on for ever)."""
    import signal
    import time

    trainer = subprocess.Popen(
        [sys.executable, "-m", "palaestra", "learn", CONFIG, "--env", BUILD, "--run-id", "k",
         "--results-dir", str(tmp_path), "--base-port", str(free_port()), "--timeout-wait",
         "600", "--env-args", "--never-connect"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PALAESTRA_NO_PROGRESS": "1"})
    log = tmp_path / "k" / "run_logs" / "Player-0.log"
    deadline = time.monotonic() + 120  # a guard against a hang, not a condition
    while "never connecting" not in (log.read_text() if log.exists() else ""):
        assert trainer.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    pid = int(re.search(r"start: pid (\d+)", log.read_text()).group(1))
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(timeout=60)
    def running() -> bool:  # a zombie waiting for a reaper that never comes counts as ended
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False

    while running():
        assert time.monotonic() < deadline, "the build outlived its trainer"
        time.sleep(0.05)


def test_play_runs_a_policy_in_the_unity_build_it_was_trained_on(tmp_path):
    from palaestra.play import play

    assert learn(CONFIG, "--env", str(Path(BUILD).resolve()), "--run-id", "p", "--results-dir",
                 str(tmp_path), "--max-steps", "1200", "--base-port", str(free_port())) == 0
    result = play(str(tmp_path / "p"), episodes=4)
    assert len(result.returns["3DBall"]) == 4 and result.steps > 0
    assert all(-1.0 <= r <= 100.0 for r in result.returns["3DBall"])


def test_a_behavior_that_appears_mid_run_gets_a_trainer(tmp_path, caplog):
    """A scene that spawns agents of a second behavior after 40 steps: palaestra makes its
    trainer then (as ML-Agents does), and it trains and checkpoints beside the first. Without
    settings for it (no entry, no default_settings) the run goes on and says why it acts with
    zeros."""
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump({"behaviors": {
        "3DBall": {"trainer_type": "ppo", "max_steps": 3000, "summary_freq": 1000,
                   "hyperparameters": {"batch_size": 64, "buffer_size": 512}},
        "Late": {"trainer_type": "ppo", "max_steps": 300, "summary_freq": 100,
                 "hyperparameters": {"batch_size": 16, "buffer_size": 64}}}}))
    assert learn(str(config), "--env", BUILD, "--run-id", "late", "--results-dir",
                 str(tmp_path), "--base-port", str(free_port()), "--no-graphics",
                 "--env-args", "--agents", "4", "--late-behavior-after", "40") == 0
    late = tmp_path / "late" / "Late"
    assert (late / "checkpoint.pt").exists()
    assert scalars(str(late))["Environment/Cumulative Reward"]
    log = (tmp_path / "late" / "run_logs" / "Player-0.log").read_text()
    assert "behavior Late appears at step 40" in log and "PROTOCOL VIOLATION" not in log

    del_late = tmp_path / "one.yaml"
    del_late.write_text(yaml.safe_dump({"behaviors": {"3DBall": {
        "trainer_type": "ppo", "max_steps": 1000, "summary_freq": 500,
        "hyperparameters": {"batch_size": 64, "buffer_size": 512}}}}))
    caplog.set_level("ERROR")
    assert learn(str(del_late), "--env", BUILD, "--run-id", "unset", "--results-dir",
                 str(tmp_path), "--base-port", str(free_port()), "--no-graphics",
                 "--env-args", "--agents", "4", "--late-behavior-after", "10") == 0
    assert not (tmp_path / "unset" / "Late").exists()
    assert any("Behavior Late appeared during the run but cannot be trained" in r.getMessage()
               for r in caplog.records)
    log = (tmp_path / "unset" / "run_logs" / "Player-0.log").read_text()
    assert "PROTOCOL VIOLATION" not in log and log.rstrip().endswith("exit 0")

    # a name that would put its folder outside the run's: refused the same way, nothing written
    caplog.clear()
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(yaml.safe_dump({"default_settings": {
        "trainer_type": "ppo", "max_steps": 1000, "summary_freq": 500,
        "hyperparameters": {"batch_size": 64, "buffer_size": 512}}}))
    assert learn(str(hostile), "--env", BUILD, "--run-id", "hostile", "--results-dir",
                 str(tmp_path), "--base-port", str(free_port()), "--no-graphics",
                 "--env-args", "--agents", "4", "--late-behavior-after", "10",
                 "--late-behavior-name", "../escape") == 0
    assert not (tmp_path / "escape").exists()
    assert any("Behavior ../escape appeared during the run but cannot be trained" in
               r.getMessage() for r in caplog.records)
