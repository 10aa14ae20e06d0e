"""Every config the project ships loads and validates (trainer types, keys, bounds), so a typo
in one is caught here rather than by the user who runs it."""
import pathlib

import pytest

from palaestra.config import load_run_options
from palaestra.registry import TrainerRegistry

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(REPO.glob("src/palaestra/configs/**/*.yaml")) + sorted(REPO.glob("bench/configs/*.yaml")) + \
    sorted(REPO.glob("plugins/palaestra-trainer-plugin/palaestra_trainer_plugin/*/*.yaml"))


def test_the_configs_are_found():
    names = {p.name for p in CONFIGS}
    assert {"3DBall.yaml", "Pendulum.yaml", "HalfCheetah.yaml", "dqn_CartPole.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_config_loads(path):
    options = load_run_options(str(path), TrainerRegistry.from_entry_points())
    assert options.behaviors
    for settings in options.behaviors.values():
        assert settings.max_steps > 0
