"""DQN as an installed plugin: registered, refuses continuous actions, acts epsilon-greedily
within action masks, computes (double) DQN targets, follows the target with tau, learns."""
import os
import pathlib

import numpy as np
import pytest
import torch

from palaestra import (ActionSpec, BehaviorSpec, BufferKey, NetworkSettings, ObservationSpec,
                       RunContext, TrainerConfigError, TrainerSettings, Trajectory)
from palaestra.cli import main
from palaestra.registry import TrainerRegistry
from palaestra_trainer_plugin.dqn import DQNSettings, DQNTrainer

HERE = pathlib.Path(__file__).resolve().parents[1] / "palaestra_trainer_plugin" / "dqn"


def _trainer(tmp_path, spec=None, **hp):
    settings = TrainerSettings(trainer_type="dqn", hyperparameters=DQNSettings(**hp),
                               network_settings=NetworkSettings(hidden_units=8, num_layers=1),
                               max_steps=10_000, summary_freq=10_000,
                               checkpoint_interval=10_000)
    spec = spec or BehaviorSpec([ObservationSpec((3,))], ActionSpec.create_discrete((3, 2)))
    return DQNTrainer.build("B", settings, spec, RunContext(artifact_path=str(tmp_path)))


def test_dqn_is_registered_by_the_installed_package():
    info = TrainerRegistry.from_entry_points().get("dqn")
    assert info.distribution == "palaestra-trainer-plugin"
    assert info.settings_cls is DQNSettings


def test_continuous_actions_are_a_config_error_naming_the_trainer(tmp_path):
    spec = BehaviorSpec([ObservationSpec((3,))], ActionSpec.create_continuous(2))
    with pytest.raises(TrainerConfigError, match="dqn needs discrete actions") as err:
        _trainer(tmp_path, spec)
    assert "continuous" in str(err.value) and "ppo" in str(err.value)


def test_continuous_env_through_the_cli_fails_before_training(tmp_path, capsys):
    config = tmp_path / "dqn_3dball.yaml"
    config.write_text("behaviors:\n  3DBall:\n    trainer_type: dqn\n")
    code = main(["learn", str(config), "--env", "3DBall", "--results-dir",
                 str(tmp_path / "results")])
    assert code != 0
    err = capsys.readouterr().err
    assert "dqn needs discrete actions" in err and "3DBall" in err


def test_epsilon_greedy_respects_masks_and_decays(tmp_path):
    trainer = _trainer(tmp_path, exploration_initial_eps=1.0, exploration_final_eps=0.0,
                       exploration_steps=100)
    actor = trainer.policy.actor
    obs = [torch.randn(500, 3)]
    masks = torch.ones(500, 5, dtype=torch.bool)
    masks[:, 0] = masks[:, 1] = False  # branch 0: only action 2 allowed
    masks[:, 4] = False                # branch 1: only action 0 allowed
    action = actor.get_action_and_stats(obs, masks)[0].discrete_tensor
    assert (action[:, 0] == 2).all() and (action[:, 1] == 0).all()
    unmasked = actor.get_action_and_stats(obs)[0].discrete_tensor  # epsilon 1: uniform
    assert set(unmasked[:, 0].tolist()) == {0, 1, 2}
    rng = np.random.default_rng(0)
    trainer.publish_trajectory(_trajectory(rng, 50))
    trainer.advance()
    assert actor.exploration_rate == pytest.approx(0.5)
    trainer.publish_trajectory(_trajectory(rng, 60))
    trainer.advance()
    assert actor.exploration_rate == 0.0
    greedy = actor.get_action_and_stats(obs)[0].discrete_tensor
    q = actor.critic_pass(obs)[0]["extrinsic"]
    torch.testing.assert_close(greedy, actor.greedy(q))


def _trajectory(rng, n, done=True, interrupted=False):
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    return Trajectory([obs], [rng.normal(size=3).astype(np.float32)],
                      np.zeros((n, 0), np.float32), rng.integers(0, 2, (n, 2)),
                      np.zeros(n, np.float32), rng.normal(size=n).astype(np.float32), None,
                      done, interrupted, "a", "B")


@pytest.mark.parametrize("double", [True, False])
def test_td_target_and_target_network_update(tmp_path, double):
    trainer = _trainer(tmp_path, double_dqn=double, tau=0.25, target_update_interval=2,
                       learning_rate=1e-3)
    optimizer = trainer.optimizer
    online, target = optimizer.q_network, optimizer.target
    with torch.no_grad():  # make the target differ from the online network
        for p in target.parameters():
            p.add_(0.1)
    rng = np.random.default_rng(1)
    buffer = _trajectory(rng, 7, done=True).to_agentbuffer()
    buffer[BufferKey.INTERRUPTED][:] = 0
    from palaestra import rewards_key, next_obs_key, obs_key
    buffer[rewards_key("extrinsic")] = buffer[BufferKey.ENVIRONMENT_REWARDS]
    # expected loss, by hand
    obs = torch.as_tensor(buffer[obs_key(0)])
    nxt = torch.as_tensor(buffer[next_obs_key(0)])
    with torch.no_grad():
        q = online.critic_pass([obs])[0]["extrinsic"]
        tq = target.critic_pass([nxt])[0]["extrinsic"]
        chooser = online.critic_pass([nxt])[0]["extrinsic"] if double else tq
        terminal = torch.as_tensor(buffer[BufferKey.DONE])
        r = torch.as_tensor(buffer[BufferKey.ENVIRONMENT_REWARDS])
        a = torch.as_tensor(buffer[BufferKey.DISCRETE_ACTION])
        next_vals, taken = [], []
        for b, (lo, hi) in enumerate(((0, 3), (3, 5))):
            best = chooser[:, lo:hi].argmax(1)
            next_vals.append(tq[:, lo:hi].gather(1, best[:, None]).squeeze(1))
            taken.append(q[:, lo:hi].gather(1, a[:, b:b + 1]).squeeze(1))
        y = r + 0.99 * (1 - terminal) * torch.stack(next_vals, 1).mean(1)
        expected = torch.nn.functional.smooth_l1_loss(torch.stack(taken, 1),
                                                      y[:, None].expand(-1, 2))
    before = [p.clone() for p in target.parameters()]
    stats = optimizer.update(buffer, 7)
    assert stats["Losses/Value Loss"] == pytest.approx(float(expected), rel=1e-5)
    assert all(torch.equal(p, b) for p, b in zip(target.parameters(), before))  # 1 of 2
    optimizer.update(buffer, 7)
    for p_t, p_before, p_o in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(p_t, 0.75 * p_before + 0.25 * p_o)


def test_dqn_learns_basic(tmp_path):
    os.environ["PALAESTRA_NO_PROGRESS"] = "1"
    run = ["learn", str(HERE / "dqn_Basic.yaml"), "--run-id", "dqn", "--results-dir",
           str(tmp_path), "--max-steps", "25000"]
    assert main(run) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "dqn" / "Basic"))
    acc.Reload()
    rewards = [e.value for e in acc.Scalars("Environment/Cumulative Reward")]
    assert max(rewards[-3:]) >= 0.9, rewards
