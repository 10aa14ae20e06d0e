"""SAC: learns continuous (Pendulum), discrete (Basic) and hybrid actions through the CLI; its
target critics follow by tau and its entropy coefficients move towards their targets."""
import os

import numpy as np
import pytest
import torch
import yaml

from palaestra import (ActionSpec, BehaviorSpec, BufferKey, NetworkSettings, ObservationSpec,
                       TrainerSettings, Trajectory, rewards_key)
from palaestra.cli import main
from palaestra.trainers.sac import SACSettings, SACTrainer

from helpers import scalars, run_context


def _run(tmp_path, config, max_steps):
    os.environ["PALAESTRA_NO_PROGRESS"] = "1"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["learn", str(path), "--run-id", "sac", "--results-dir", str(tmp_path / "r"),
                 "--max-steps", str(max_steps)]) == 0
    behavior = next(iter(config["behaviors"]))
    return [v for _, v in scalars(str(tmp_path / "r" / "sac" / behavior))[
        "Environment/Cumulative Reward"]]


def _behavior(hp, hidden=64, time_horizon=64, summary=1000, gamma=0.99):
    return {"trainer_type": "sac", "hyperparameters": hp,
            "network_settings": {"normalize": False, "hidden_units": hidden, "num_layers": 2,
                                 "activation": "relu"},
            "reward_signals": {"extrinsic": {"gamma": gamma}},
            "time_horizon": time_horizon, "summary_freq": summary}


def test_sac_learns_pendulum_within_6k_steps(tmp_path):
    hp = {"learning_rate": 1e-3, "batch_size": 64, "buffer_size": 20000,
          "buffer_init_steps": 100}
    rewards = _run(tmp_path, {"behaviors": {"Pendulum-v1": _behavior(hp)},
                              "env_settings": {"env_path": "Pendulum-v1", "seed": 1}}, 6000)
    assert rewards[0] < -900 and max(rewards[-2:]) >= -250, rewards


def test_sac_learns_discrete_basic(tmp_path):
    hp = {"learning_rate": 1e-3, "batch_size": 64, "buffer_size": 50000,
          "steps_per_update": 4.0, "init_entcoef": 0.1}
    rewards = _run(tmp_path, {"behaviors": {"Basic": _behavior(hp, hidden=32, time_horizon=16,
                                                               gamma=0.9)},
                              "env_settings": {"env_path": "Basic", "num_envs": 4, "seed": 1}},
                   8000)
    assert max(rewards[-2:]) >= 0.85, rewards


def test_sac_learns_hybrid_actions(tmp_path):
    hp = {"learning_rate": 1e-3, "batch_size": 64, "buffer_size": 20000,
          "steps_per_update": 4.0, "init_entcoef": 0.1}
    rewards = _run(tmp_path, {"behaviors": {"HybridTarget": _behavior(hp, time_horizon=10)},
                              "env_settings": {"env_path": "toy_envs:hybrid_target"}}, 8000)
    assert rewards[0] < 1.0 and max(rewards[-2:]) > 3.3, rewards


def _trainer(tmp_path, spec, **hp):
    settings = TrainerSettings(trainer_type="sac", hyperparameters=SACSettings(**hp),
                               network_settings=NetworkSettings(hidden_units=8, num_layers=1),
                               max_steps=10_000, summary_freq=10_000,
                               checkpoint_interval=10_000)
    return SACTrainer.build("B", settings, spec, run_context(tmp_path))


def _batch(rng, spec, n=32):
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    cont = rng.uniform(-1, 1, (n, spec.continuous_size)).astype(np.float32)
    disc = np.stack([rng.integers(0, b, n) for b in spec.discrete_branches], 1) \
        if spec.discrete_branches else np.zeros((n, 0), np.int64)
    t = Trajectory([obs], [obs[-1]], cont, disc, np.zeros(n, np.float32),
                   rng.normal(size=n).astype(np.float32), None, True, False, "a", "B")
    buffer = t.to_agentbuffer()
    buffer[rewards_key("extrinsic")] = buffer[BufferKey.ENVIRONMENT_REWARDS]
    return buffer


@pytest.mark.parametrize("spec", [ActionSpec(2, ()), ActionSpec(0, (3, 2)), ActionSpec(1, (2,))])
def test_target_critics_follow_by_tau_and_alpha_moves_towards_target_entropy(tmp_path, spec):
    trainer = _trainer(tmp_path, BehaviorSpec([ObservationSpec((3,))], spec), tau=0.1,
                       learning_rate=0.01, init_entcoef=0.5)
    optimizer = trainer.optimizer
    with torch.no_grad():
        for p in optimizer.target.parameters():
            p.add_(0.3)
    old_target = [p.clone() for p in optimizer.target.parameters()]
    old_alpha = optimizer.log_alpha.detach().clone()
    buffer = _batch(np.random.default_rng(0), spec)
    stats = optimizer.update(buffer, 32)
    for t, old, c in zip(optimizer.target.parameters(), old_target,
                         optimizer.critic.parameters()):
        torch.testing.assert_close(t, 0.9 * old + 0.1 * c)
    assert set(stats) >= {"Losses/Policy Loss", "Losses/Q1 Loss", "Losses/Q2 Loss"}
    new_alpha = optimizer.log_alpha.detach()
    # Adam's first step moves each log-alpha by the learning rate, against its gradient's sign
    moved = (new_alpha - old_alpha).abs()
    torch.testing.assert_close(moved, torch.full_like(moved, 0.01), rtol=1e-3, atol=1e-5)
    assert np.isclose(stats.get("Policy/Continuous Entropy Coeff",
                                stats.get("Policy/Discrete Entropy Coeff")),
                      float(new_alpha.exp()[0]) if spec.continuous_size else
                      float(new_alpha.exp().mean()), rtol=1e-5)


def test_entropy_coefficient_falls_when_entropy_is_above_its_target(tmp_path):
    spec = ActionSpec(0, (4,))  # a fresh categorical policy is near uniform: entropy log 4
    trainer = _trainer(tmp_path, BehaviorSpec([ObservationSpec((3,))], spec),
                       learning_rate=0.01)
    before = float(trainer.optimizer.log_alpha.detach()[0])
    trainer.optimizer.update(_batch(np.random.default_rng(1), spec), 32)
    assert float(trainer.optimizer.log_alpha.detach()[0]) < before  # log 4 > target 0.2 log 4


@pytest.mark.parametrize("spec", [ActionSpec(2, ()), ActionSpec(1, (2,))])
def test_update_on_a_worker_thread_equals_the_update_on_one_thread(tmp_path, spec):
    """The critics' and the policy's gradients are taken side by side when the run has a core
    to spare (Accel.parallel_grads): the result must not depend on it (random draws in a fixed
    order, every optimizer stepped after both)."""
    from palaestra import Accel

    behavior = BehaviorSpec([ObservationSpec((3,))], spec)
    results = []
    for threaded in (False, True):
        torch.manual_seed(0)
        optimizer = _trainer(tmp_path / str(threaded), behavior, learning_rate=0.01).optimizer
        optimizer.accel = Accel(side_thread=threaded)
        rng = np.random.default_rng(3)
        stats = [optimizer.update(_batch(rng, spec), 32) for _ in range(3)]
        params = [p.detach().clone() for module in (optimizer.policy.actor, optimizer.critic,
                                                     optimizer.target) for p in module.parameters()]
        results.append((stats, params, optimizer.log_alpha.detach().clone()))
        optimizer.accel.close()
    (stats_a, params_a, alpha_a), (stats_b, params_b, alpha_b) = results
    assert stats_a == stats_b
    for a, b in zip(params_a, params_b):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(alpha_a, alpha_b, rtol=0, atol=0)


def test_reward_signal_batches_are_drawn_only_for_signals_that_learn(tmp_path):
    """The extrinsic signal has no model: no batch is sampled for it (a wasted replay-buffer
    gather per step). A signal whose `update` trains gets its batches at its own ratio."""
    from palaestra.optimizer import ExtrinsicRewardSignal

    class Learning(ExtrinsicRewardSignal):
        def update(self, buffer):
            seen.append(len(buffer[BufferKey.ENVIRONMENT_REWARDS]))
            return {"Losses/Learning Signal Loss": 1.0}

    spec = ActionSpec(1, ())
    trainer = _trainer(tmp_path, BehaviorSpec([ObservationSpec((3,))], spec), batch_size=16,
                       reward_signal_steps_per_update=2.0)
    trainer.update_buffer.append_buffer(_batch(np.random.default_rng(0), spec))
    seen = []
    trainer._step = 8
    state = trainer.rng.bit_generator.state
    trainer._update_policy()  # 8 gradient steps, the extrinsic signal needs no batch
    assert trainer.update_steps == 8 and trainer.reward_signal_update_steps == 4
    draws = np.random.Generator(np.random.PCG64())
    draws.bit_generator.state = state
    for _ in range(8):
        trainer.update_buffer.sample_mini_batch(16, draws)
    assert draws.bit_generator.state == trainer.rng.bit_generator.state
    signal = trainer.optimizer.reward_signals["extrinsic"]
    signal.__class__ = Learning
    trainer._step = 16
    trainer._update_policy()
    assert seen == [16] * 4 and trainer.reward_signal_update_steps == 8
