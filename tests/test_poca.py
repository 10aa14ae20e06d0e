"""POCA: the attention critic's set semantics, posthumous credit for a removed agent, the loss
stats, and a run through the CLI on the cooperative built-in environment."""
import os

import numpy as np
import pytest
import torch
import yaml

from palaestra import (ActionSpec, BehaviorSpec, NetworkSettings, ObservationSpec, TrainerSettings, returns_key)
from palaestra.trainers.poca import POCASettings, POCATrainer, POCAValueNetwork
from palaestra.trajectory import GroupStatus, Trajectory

from helpers import learn, scalars, run_context


def _critic(spec=ActionSpec(1, (3,)), hidden=16):
    torch.manual_seed(0)
    return POCAValueNetwork(["extrinsic"], [ObservationSpec((4,))],
                            NetworkSettings(hidden_units=hidden, num_layers=1), spec)


def test_defaults_are_ml_agents_poca_settings():
    hp = POCASettings()
    assert (hp.beta, hp.epsilon, hp.lambd, hp.num_epoch) == (5.0e-3, 0.2, 0.95, 3)
    assert (hp.batch_size, hp.buffer_size, hp.learning_rate) == (1024, 10240, 3.0e-4)


@pytest.mark.parametrize("members", [1, 2, 4])
def test_critic_ignores_the_teammates_order_and_padding(members):
    critic = _critic().eval()
    body = critic.network_body
    rng = np.random.default_rng(0)
    b, m = 5, members - 1
    obs = [torch.as_tensor(rng.normal(size=(b, 4)), dtype=torch.float32)]
    group = [torch.as_tensor(rng.normal(size=(b, m, 4)), dtype=torch.float32)]
    acts = body.flat_actions(torch.as_tensor(rng.uniform(-1, 1, (b, m, 1)), dtype=torch.float32),
                             torch.as_tensor(rng.integers(0, 3, (b, m, 1))))
    present = torch.ones(b, m, dtype=torch.bool)
    value = critic.critic_pass(obs, group, present)["extrinsic"]
    base = critic.baseline(obs, group, acts, present)["extrinsic"]
    perm = torch.randperm(m) if m else torch.arange(0)
    torch.testing.assert_close(critic.critic_pass(obs, [group[0][:, perm]], present)["extrinsic"],
                               value)
    torch.testing.assert_close(critic.baseline(obs, [group[0][:, perm]], acts[:, perm],
                                               present)["extrinsic"], base)
    # two absent (padded) teammates with garbage in them change nothing
    pad_obs = [torch.cat([group[0], 100 * torch.ones(b, 2, 4)], 1)]
    pad_act = torch.cat([acts, torch.ones(b, 2, acts.shape[-1])], 1)
    pad_present = torch.cat([present, torch.zeros(b, 2, dtype=torch.bool)], 1)
    torch.testing.assert_close(critic.critic_pass(obs, pad_obs, pad_present)["extrinsic"], value)
    torch.testing.assert_close(critic.baseline(obs, pad_obs, pad_act, pad_present)["extrinsic"],
                               base)


def test_baseline_depends_on_teammates_actions_not_on_its_own():
    critic = _critic(ActionSpec(0, (3,)))
    body = critic.network_body
    obs = [torch.randn(2, 4)]
    group = [torch.randn(2, 1, 4)]
    present = torch.ones(2, 1, dtype=torch.bool)
    a0 = body.flat_actions(torch.zeros(2, 1, 0), torch.zeros(2, 1, 1, dtype=torch.long))
    a2 = body.flat_actions(torch.zeros(2, 1, 0), torch.full((2, 1, 1), 2))
    b0 = critic.baseline(obs, group, a0, present)["extrinsic"]
    b2 = critic.baseline(obs, group, a2, present)["extrinsic"]
    assert not torch.allclose(b0, b2)


def _trainer(tmp_path, gamma=0.9, lambd=1.0):
    spec = BehaviorSpec([ObservationSpec((4,))], ActionSpec(0, (3,)))
    settings = TrainerSettings(trainer_type="poca",
                               hyperparameters=POCASettings(lambd=lambd, batch_size=4,
                                                            buffer_size=8),
                               network_settings=NetworkSettings(hidden_units=8, num_layers=1),
                               max_steps=1000)
    settings.reward_signals[next(iter(settings.reward_signals))].gamma = gamma
    return POCATrainer.build("B", settings, spec, run_context(tmp_path))


def _trajectory(agent, done, all_done, group_reward_last=0.0, n=3):
    rng = np.random.default_rng(agent)
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    group_rewards = np.zeros(n, np.float32)
    group_rewards[-1] = group_reward_last
    return Trajectory(
        [obs], [rng.normal(size=4).astype(np.float32)], np.zeros((n, 0), np.float32),
        rng.integers(0, 3, (n, 1)), np.zeros(n, np.float32), np.zeros(n, np.float32), None,
        done, False, agent, "B", group_id=1, group_rewards=group_rewards,
        group_status=GroupStatus([rng.normal(size=(n, 2, 4)).astype(np.float32)],
                                 np.zeros((n, 2, 0), np.float32), rng.integers(0, 3, (n, 2, 1)),
                                 np.ones((n, 2), bool)),
        next_group_obs=[rng.normal(size=(2, 4)).astype(np.float32)],
        next_group_present=np.ones(2, bool), all_group_dones_reached=all_done)


def test_removed_agent_bootstraps_from_the_group_value_and_a_finished_group_does_not(tmp_path):
    trainer = _trainer(tmp_path)
    removed = _trajectory(1, done=True, all_done=False)
    finished = _trajectory(2, done=True, all_done=True, group_reward_last=1.0)
    buffer = trainer.process_group_batch([removed, finished])
    returns = buffer[returns_key("extrinsic")]
    optimizer = trainer.optimizer
    after = optimizer.next_values([np.stack([removed.next_obs[0]])],
                                  [removed.next_group_obs[0][None]],
                                  removed.next_group_present[None])["extrinsic"][0]
    # lambda = 1: the removed agent's return is the discounted group value after it
    np.testing.assert_allclose(returns[:3], [0.9 ** 3 * after, 0.9 ** 2 * after, 0.9 * after],
                               rtol=1e-5)
    # the finished group's last step returns exactly its reward: no bootstrap
    np.testing.assert_allclose(returns[3:], [0.81, 0.9, 1.0], rtol=1e-5)
    assert trainer.stats_reporter.get_pending("Policy/Extrinsic Baseline Estimate")


def test_poca_trains_through_the_cli_on_dungeon_escape(tmp_path):
    config = {"behaviors": {"DungeonEscape": {
        "trainer_type": "poca",
        "hyperparameters": {"batch_size": 256, "buffer_size": 1024, "num_epoch": 2},
        "network_settings": {"hidden_units": 32, "num_layers": 1},
        "max_steps": 3000, "summary_freq": 1000, "time_horizon": 32}},
        "env_settings": {"env_path": "DungeonEscape", "num_envs": 8, "seed": 1}}
    path = tmp_path / "poca.yaml"
    path.write_text(yaml.safe_dump(config))
    assert learn(str(path), "--results-dir", str(tmp_path), "--run-id", "r") == 0
    series = scalars(os.path.join(tmp_path, "r", "DungeonEscape"))
    for tag in ("Losses/Baseline Loss", "Losses/Value Loss", "Losses/Policy Loss",
                "Policy/Extrinsic Baseline Estimate", "Environment/Group Cumulative Reward"):
        assert series.get(tag), tag
    assert all(np.isfinite(v) for _, v in series["Losses/Baseline Loss"])


def _dungeon_run(tmp_path, trainer_type, steps=160_000):
    """A small DungeonEscape (5x5, 40 steps, 16 arenas of 3) with the shipped POCA values."""
    with open(os.path.join(os.path.dirname(__file__), "..", "src", "palaestra", "configs", "poca",
                           "DungeonEscape.yaml")) as f:
        config = yaml.safe_load(f)
    behavior = config["behaviors"]["DungeonEscape"]
    behavior["trainer_type"] = trainer_type
    behavior["hyperparameters"].update(batch_size=512, buffer_size=4096)
    behavior["summary_freq"] = 10_000
    config["env_settings"].update(env_args={"size": 5, "max_steps": 40}, num_envs=16, seed=1)
    path = tmp_path / f"{trainer_type}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert learn(str(path), "--results-dir", str(tmp_path), "--run-id", trainer_type,
                 "--max-steps", str(steps)) == 0
    series = scalars(os.path.join(tmp_path, trainer_type, "DungeonEscape"))
    return [v for _, v in series["Environment/Group Cumulative Reward"]]


def test_poca_beats_ppo_on_dungeon_escape(tmp_path):
    """The agent that slays the dragon is removed before its group escapes: PPO never credits
    the sacrifice, POCA does through the group's value (random play escapes ~10% here)."""
    poca = _dungeon_run(tmp_path, "poca")
    ppo = _dungeon_run(tmp_path, "ppo")
    poca_end, ppo_end = float(np.mean(poca[-3:])), float(np.mean(ppo[-3:]))
    assert poca_end >= 0.5, poca
    assert poca_end >= ppo_end + 0.3, (poca, ppo)


@pytest.mark.parametrize("env_path, behavior, threshold", [
    ("toy_envs:point_target", "point_target", -4.5),   # continuous (random ~ -10)
    ("toy_envs:hybrid_target", "HybridTarget", 1.0),   # hybrid (random ~ -4.5)
])
def test_poca_learns_continuous_and_hybrid_actions(tmp_path, env_path, behavior, threshold):
    """Without groups POCA's critic sees the agent alone: PPO's values from
    tests/test_learning.py then work for it too."""
    config = {"behaviors": {behavior: {
        "trainer_type": "poca",
        "hyperparameters": {"batch_size": 128, "buffer_size": 1024, "learning_rate": 3e-3,
                            "beta": 0.0, "num_epoch": 6},
        "network_settings": {"hidden_units": 32, "num_layers": 2},
        "reward_signals": {"extrinsic": {"gamma": 0.9}},
        "max_steps": 16000, "summary_freq": 4000, "time_horizon": 64}},
        "env_settings": {"env_path": env_path, "num_envs": 4, "seed": 3}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert learn(str(path), "--results-dir", str(tmp_path), "--run-id", "r") == 0
    rewards = [v for _, v in scalars(os.path.join(tmp_path, "r", behavior))[
        "Environment/Cumulative Reward"]]
    assert rewards[-1] > threshold, rewards


@pytest.mark.parametrize("threaded", [False, True])
def test_split_update_follows_the_gradient_of_the_whole_loss(tmp_path, threaded):
    """The value pass runs apart (on a side thread when a core is free) and its gradients are
    summed in: the step must follow the gradient of policy + 0.5 (value + 0.5 baseline) -
    beta entropy taken in one backward."""
    from palaestra import (Accel, AgentAction, BufferKey, ModelUtils, baselines_key,
                           value_estimates_key)

    torch.manual_seed(0)
    trainer = _trainer(tmp_path)
    optimizer = trainer.optimizer
    optimizer.accel = Accel(side_thread=threaded)
    batch = trainer.process_group_batch([_trajectory(1, True, False),
                                         _trajectory(2, True, True, group_reward_last=1.0)])
    eps, beta = optimizer.decay_epsilon.get_value(0), optimizer.decay_beta.get_value(0)

    def t(key, dtype=torch.float32):
        return torch.as_tensor(batch[key], dtype=dtype)

    obs, group, group_actions, present = optimizer.group_tensors(batch)
    stats = optimizer.policy.actor.get_stats(
        obs, AgentAction(t(BufferKey.CONTINUOUS_ACTION), t(BufferKey.DISCRETE_ACTION, torch.long)),
        t(BufferKey.ACTION_MASK, torch.bool) if BufferKey.ACTION_MASK in batch else None)
    returns = {"extrinsic": t(returns_key("extrinsic"))}
    value_loss = ModelUtils.trust_region_value_loss(
        optimizer.critic.critic_pass(obs, group, present),
        {"extrinsic": t(value_estimates_key("extrinsic"))}, returns, eps, None)
    baseline_loss = ModelUtils.trust_region_value_loss(
        optimizer.critic.baseline(obs, group, group_actions, present),
        {"extrinsic": t(baselines_key("extrinsic"))}, returns, eps, None)
    policy_loss = ModelUtils.trust_region_policy_loss(
        t(BufferKey.ADVANTAGES), stats["log_probs"], t(BufferKey.LOG_PROBS), None, eps)
    loss = policy_loss + 0.5 * (value_loss + 0.5 * baseline_loss) - beta * stats["entropy"].mean()
    params = optimizer.optimizer.params
    expected = torch.autograd.grad(loss, params, allow_unused=True)

    seen = []
    step = optimizer.optimizer.step
    optimizer.optimizer.step = lambda: (seen.extend(p.grad.clone() if p.grad is not None
                                                    else None for p in params), step())
    out = optimizer.update(batch, batch.num_experiences)
    assert out["Losses/Value Loss"] == pytest.approx(value_loss.item(), rel=1e-6)
    assert out["Losses/Baseline Loss"] == pytest.approx(baseline_loss.item(), rel=1e-6)
    for want, got in zip(expected, seen):
        if want is None:
            assert got is None or not got.any()
        else:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_estimates_in_row_chunks_equal_one_pass(tmp_path, monkeypatch):
    """Buffer-wide value and baseline estimates go through the critic in row chunks (cache
    sized); the result must be the one pass over all rows."""
    import palaestra.trainers.poca.optimizer as poca_optimizer

    trainer = _trainer(tmp_path)
    optimizer = trainer.optimizer
    buffer = trainer.process_group_batch([_trajectory(1, True, False),
                                          _trajectory(2, True, True, group_reward_last=1.0)])
    obs, group, actions, present = optimizer.group_tensors(buffer)
    with torch.no_grad():
        values = optimizer.critic.critic_pass(obs, group, present)["extrinsic"].numpy()
        baselines = optimizer.critic.baseline(obs, group, actions, present)["extrinsic"].numpy()
    monkeypatch.setattr(poca_optimizer, "ESTIMATE_CHUNK", 4)  # 6 rows: a piece of 4, one of 2
    got_values, got_baselines = optimizer.value_and_baseline_estimates(buffer)
    np.testing.assert_allclose(got_values["extrinsic"], values, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got_baselines["extrinsic"], baselines, rtol=1e-6, atol=1e-7)
