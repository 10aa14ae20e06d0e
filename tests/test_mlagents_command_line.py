"""A command line copied from ML-Agents' docs runs: every flag of `mlagents-learn` (ML-Agents
1.1, `mlagents/trainers/cli_utils.py`) is accepted with its meaning, and a wrong one is one line,
not argparse's usage dump."""
import subprocess
import sys

import pytest

from palaestra.cli import _overrides, build_parser, main

# flag -> (config section, key, value given)
MLAGENTS_FLAGS = [
    (["--env", "3DBall"], "env_settings", "env_path", "3DBall"),
    (["--resume"], "checkpoint_settings", "resume", True),
    (["--force"], "checkpoint_settings", "force", True),
    (["--run-id", "r"], "checkpoint_settings", "run_id", "r"),
    (["--initialize-from", "old"], "checkpoint_settings", "initialize_from", "old"),
    (["--seed", "7"], "env_settings", "seed", 7),
    (["--inference"], "checkpoint_settings", "inference", True),
    (["--base-port", "5010"], "env_settings", "base_port", 5010),
    (["--num-envs", "2"], "env_settings", "num_envs", 2),
    (["--num-areas", "3"], "env_settings", "num_areas", 3),
    (["--max-lifetime-restarts", "4"], "env_settings", "max_lifetime_restarts", 4),
    (["--restarts-rate-limit-n", "2"], "env_settings", "restarts_rate_limit_n", 2),
    (["--restarts-rate-limit-period-s", "30"], "env_settings", "restarts_rate_limit_period_s",
     30),
    (["--results-dir", "out"], "checkpoint_settings", "results_dir", "out"),
    (["--width", "160"], "engine_settings", "width", 160),
    (["--height", "120"], "engine_settings", "height", 120),
    (["--quality-level", "1"], "engine_settings", "quality_level", 1),
    (["--time-scale", "20"], "engine_settings", "time_scale", 20.0),
    (["--target-frame-rate", "30"], "engine_settings", "target_frame_rate", 30),
    (["--capture-frame-rate", "50"], "engine_settings", "capture_frame_rate", 50),
    (["--no-graphics"], "engine_settings", "no_graphics", True),
    (["--timeout-wait", "90"], "env_settings", "timeout_wait", 90),
    (["--torch-device", "cpu"], "torch_settings", "device", "cpu"),
    (["--load"], "checkpoint_settings", "load_model", True),
    (["--env-args", "--x=1", "y=2"], "env_settings", "env_args", ["--x=1", "y=2"]),
]


@pytest.mark.parametrize("argv, section, key, value", MLAGENTS_FLAGS,
                         ids=[a[0] for a, *_ in MLAGENTS_FLAGS])
def test_every_mlagents_learn_flag_sets_its_setting(argv, section, key, value):
    overrides = _overrides(build_parser().parse_args(["learn", "config.yaml", *argv]))
    assert overrides[section][key] == value


def test_flags_without_a_setting():
    args = build_parser().parse_args(["learn", "--debug", "--deterministic", "--train",
                                      "--torch", "--tensorflow"])
    # --train (removed from ML-Agents, training is the default) and --torch / --tensorflow
    # (removed, a warning) change nothing
    assert _overrides(args) == {"debug": True, "deterministic": True}


def test_a_command_line_from_mlagents_docs_trains(tmp_path, caplog):
    caplog.set_level("WARNING")
    assert main(["learn", "--env=3DBall", "--run-id=docs", "--no-graphics", "--time-scale",
                 "20", "--num-envs", "2", "--base-port", "5005", "--results-dir",
                 str(tmp_path), "--max-steps", "600", "--deterministic"]) == 0
    assert (tmp_path / "docs" / "3DBall" / "checkpoint.pt").is_file()
    # engine settings mean nothing to a built-in scene: said once, never silently
    assert "engine_settings.no_graphics" in caplog.text
    import yaml
    saved = yaml.safe_load((tmp_path / "docs" / "configuration.yaml").read_text())
    assert saved["default_settings"]["network_settings"]["deterministic"] is True
    assert saved["engine_settings"]["no_graphics"] is True


def test_load_is_resume_as_in_mlagents(tmp_path, caplog):
    assert main(["learn", "--env", "Basic", "--run-id", "b", "--results-dir", str(tmp_path),
                 "--max-steps", "300"]) == 0
    assert main(["learn", "--env", "Basic", "--run-id", "b", "--results-dir", str(tmp_path),
                 "--max-steps", "600", "--load"]) == 0
    assert "deprecated" in caplog.text and "Resumed Basic" in caplog.text


@pytest.mark.parametrize("argv, said", [
    (["learn", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["learn", "--num-envs", "two"], "argument --num-envs: invalid int value: 'two'"),
    (["lern"], "invalid choice: 'lern'"),
])
def test_a_wrong_command_line_is_one_line(argv, said):
    proc = subprocess.run([sys.executable, "-m", "palaestra", *argv], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and said in proc.stderr, proc.stderr
    assert "usage:" not in proc.stderr
