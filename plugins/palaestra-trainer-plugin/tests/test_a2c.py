"""A2C as an installed plugin: registered, listed, trains through `palaestra learn`."""
import os
import pathlib
import subprocess
import sys

from palaestra.cli import main
from palaestra.registry import TrainerRegistry

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "palaestra_trainer_plugin" / "a2c" / \
    "a2c_3DBall.yaml"


def _rewards(behavior_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(behavior_dir))
    acc.Reload()
    return [e.value for e in acc.Scalars("Environment/Cumulative Reward")]


def test_a2c_is_registered_by_the_installed_package():
    info = TrainerRegistry.from_entry_points().get("a2c")
    assert info.distribution == "palaestra-trainer-plugin"
    out = subprocess.run([sys.executable, "-m", "palaestra", "trainers"], capture_output=True,
                         text=True, check=True).stdout
    assert any(line.split()[:2] == ["a2c", "palaestra-trainer-plugin"]
               for line in out.splitlines()), out


def test_a2c_learns_3dball_on_a_budget(tmp_path):
    os.environ["PALAESTRA_NO_PROGRESS"] = "1"
    assert main(["learn", str(CONFIG), "--run-id", "a2c", "--results-dir", str(tmp_path),
                 "--max-steps", "60000"]) == 0
    rewards = _rewards(tmp_path / "a2c" / "3DBall")
    assert rewards[0] < 3, rewards
    assert rewards[-1] > 3 * rewards[0], rewards
