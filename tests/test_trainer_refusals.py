"""A trainer (a plugin's, say) that refuses an environment, an actor that cannot do what the
config asks, and a run with nothing left to train: clear messages, and no half-made run left."""
import logging

import pytest
import torch
import yaml
from torch import nn

import palaestra.registry as registry_module
from helpers import learn
from palaestra import ActionSpec, BehaviorSpec, ObservationSpec, TorchPolicy
from palaestra.exception import TrainerConfigError
from palaestra.settings import NetworkSettings
from palaestra.trainers.ppo import PPOSettings, PPOTrainer


class PickyTrainer(PPOTrainer):
    """PPO that refuses environments with discrete actions, as a plugin would."""

    def create_policy(self, parsed_behavior_id, behavior_spec):
        if behavior_spec.action_spec.discrete_branches:
            raise TrainerConfigError("trainer_type picky needs continuous actions",
                                     key="trainer_type", value="picky", allowed=["ppo", "sac"])
        return super().create_policy(parsed_behavior_id, behavior_spec)


@pytest.fixture
def picky(monkeypatch):
    original = registry_module.TrainerRegistry.from_entry_points.__func__

    def with_picky(cls, *args, **kwargs):
        registry = original(cls, *args, **kwargs)
        registry.register({"picky": PickyTrainer}, {"picky": PPOSettings}, distribution="tests")
        return registry
    monkeypatch.setattr(registry_module.TrainerRegistry, "from_entry_points",
                        classmethod(with_picky))


def test_a_trainer_refusing_the_environment_names_file_and_behavior_and_leaves_nothing(
        picky, tmp_path, capsys):
    config = tmp_path / "picky.yaml"
    config.write_text(yaml.safe_dump({"default_settings": {"trainer_type": "picky"}}))
    results = tmp_path / "results"
    assert learn(str(config), "--env", "CartPole-v1", "--run-id", "p",
                 "--results-dir", str(results)) == 1
    err = capsys.readouterr().err
    assert f"{config}: behaviors.CartPole-v1: trainer_type: trainer_type picky needs continuous" \
        in err
    assert "Allowed: ppo, sac." in err  # a list is written as a list of names
    assert not (results / "p").exists()  # the same --run-id works again without --force
    assert learn(str(config), "--env", "Pendulum-v1", "--run-id", "p", "--results-dir",
                 str(results), "--max-steps", "300") == 0


class BareActor(nn.Module):
    """An actor with get_action_and_stats but no update_normalization."""

    def __init__(self, observation_specs, network_settings, action_spec):
        super().__init__()
        self.layer = nn.Linear(observation_specs[0].shape[0], action_spec.continuous_size)

    def get_action_and_stats(self, obs, masks=None):
        raise AssertionError("not called here")


def test_normalize_with_an_actor_that_cannot_normalise_is_refused_when_the_policy_is_built():
    spec = BehaviorSpec([ObservationSpec((3,))], ActionSpec.create_continuous(1))
    with pytest.raises(TrainerConfigError, match="actor BareActor has no update_normalization"):
        TorchPolicy(0, spec, NetworkSettings(normalize=True), BareActor, {})
    policy = TorchPolicy(0, spec, NetworkSettings(normalize=False), BareActor, {})
    assert isinstance(policy.actor.layer.weight, torch.Tensor)


def test_resuming_a_finished_run_says_there_is_nothing_to_train(tmp_path, caplog):
    config = tmp_path / "cart.yaml"
    config.write_text(yaml.safe_dump({"behaviors": {"CartPole-v1": {
        "hyperparameters": {"batch_size": 64, "buffer_size": 256}}}}))
    results = str(tmp_path / "results")
    args = [str(config), "--env", "CartPole-v1", "--run-id", "done", "--results-dir", results]
    assert learn(*args, "--max-steps", "500") == 0
    caplog.set_level(logging.INFO, logger="palaestra")
    assert learn(*args, "--max-steps", "500", "--resume") == 0
    assert any("already reaches max_steps 500: nothing to train" in r.getMessage()
               for r in caplog.records)
