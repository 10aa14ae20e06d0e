"""Trajectories processed as a batch (one critic pass) must give what one-by-one gives."""
import numpy as np
import pytest

from helpers import run_context
from palaestra import (ActionSpec, BehaviorSpec, BufferKey, NetworkSettings, ObservationSpec,
                       TrainerSettings, Trajectory, advantage_key, returns_key,
                       value_estimates_key)
from palaestra.trainer.returns import get_gae
from palaestra.trainers.ppo.settings import PPOSettings
from palaestra.trainers.ppo.trainer import PPOTrainer
from palaestra.trajectory import trajectories_to_agentbuffer


def _trajectory(rng, n, agent, done, interrupted=False, masks=False):
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    return Trajectory([obs], [rng.normal(size=3).astype(np.float32)],
                      np.zeros((n, 0), np.float32), rng.integers(0, 2, (n, 1)),
                      rng.normal(size=n).astype(np.float32),
                      rng.normal(size=n).astype(np.float32),
                      np.ones((n, 2), bool) if masks else None, done, interrupted, agent, "B")


def _trainer(tmp_path, normalize=False, buffer_size=64, summary_freq=10_000):
    hp = PPOSettings(batch_size=16, buffer_size=buffer_size, lambd=0.9)
    settings = TrainerSettings(
        trainer_type="ppo", hyperparameters=hp, max_steps=100_000, summary_freq=summary_freq,
        checkpoint_interval=100_000,
        network_settings=NetworkSettings(hidden_units=8, num_layers=1, normalize=normalize))
    spec = BehaviorSpec([ObservationSpec((3,))], ActionSpec.create_discrete((2,)))
    return PPOTrainer.build("B", settings, spec, run_context(tmp_path))


def test_trajectories_to_agentbuffer_equals_appending_each():
    rng = np.random.default_rng(0)
    trajectories = [_trajectory(rng, n, i, i % 2 == 0, i == 1, masks=True)
                    for i, n in enumerate((5, 1, 7))]
    batched = trajectories_to_agentbuffer(trajectories)
    one_by_one = trajectories[0].to_agentbuffer()
    for t in trajectories[1:]:
        one_by_one.append_buffer(t.to_agentbuffer())
    assert sorted(map(str, batched.keys())) == sorted(map(str, one_by_one.keys()))
    for key in one_by_one.keys():
        np.testing.assert_array_equal(batched[key], one_by_one[key], err_msg=str(key))
        assert batched[key].dtype == one_by_one[key].dtype, key


@pytest.mark.parametrize("done,interrupted", [(True, False), (True, True), (False, False)])
def test_batch_gae_equals_per_trajectory_gae(tmp_path, done, interrupted):
    rng = np.random.default_rng(1)
    trajectories = [_trajectory(rng, n, f"a{i}", done, interrupted)
                    for i, n in enumerate((4, 9, 1, 6))]
    trainer = _trainer(tmp_path)
    batched = trainer.process_with_gae_batch(trajectories, 0.9)
    start = 0
    optimizer = trainer.optimizer
    for t in trajectories:
        n = len(t)
        values, bootstrap = optimizer.get_trajectory_value_estimates(
            t.to_agentbuffer(), t.next_obs, done and not interrupted)
        expected = get_gae(t.rewards, values["extrinsic"], bootstrap["extrinsic"], 0.99, 0.9)
        rows = slice(start, start + n)
        np.testing.assert_allclose(batched[value_estimates_key("extrinsic")][rows],
                                   values["extrinsic"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched[advantage_key("extrinsic")][rows], expected,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched[returns_key("extrinsic")][rows],
                                   expected + values["extrinsic"], rtol=1e-5, atol=1e-6)
        start += n
    np.testing.assert_array_equal(batched[BufferKey.ADVANTAGES],
                                  batched[advantage_key("extrinsic")])


def test_same_agent_two_episodes_in_one_batch_reports_each_episode(tmp_path):
    rng = np.random.default_rng(2)
    first = _trajectory(rng, 3, "a", done=True)
    second_part = _trajectory(rng, 4, "a", done=False)
    second_end = _trajectory(rng, 2, "a", done=True)
    trainer = _trainer(tmp_path)
    trainer.process_with_gae_batch([first, second_part, second_end], 0.9)
    reported = trainer.stats_reporter.get_pending("Policy/Extrinsic Reward")
    expected = [float(first.rewards.sum()),
                float(second_part.rewards.sum() + second_end.rewards.sum())]
    np.testing.assert_allclose(reported, expected, rtol=1e-5)
    assert "a" not in trainer.collected_rewards["extrinsic"]


def test_queue_waits_for_the_update_and_then_processes_everything(tmp_path):
    rng = np.random.default_rng(3)
    trainer = _trainer(tmp_path, normalize=True, buffer_size=64)
    normalizer = trainer.policy.actor.network_body.encoder.normalizer
    for i in range(6):  # 60 steps < buffer_size: nothing is needed yet
        trainer.publish_trajectory(_trajectory(rng, 10, f"a{i}", done=True))
        trainer.advance()
    assert trainer.get_step == 0 and trainer.update_buffer.num_experiences == 0
    assert float(normalizer.count) < 1
    trainer.publish_trajectory(_trajectory(rng, 10, "a6", done=True))
    trainer.advance()  # 70 >= 64: processed in one batch, then the update runs and clears
    assert trainer.get_step == 70
    assert float(normalizer.count) == pytest.approx(70, abs=1e-3)
    assert trainer.update_buffer.num_experiences == 0
    assert len(trainer.stats_reporter.get_pending("Policy/Extrinsic Reward")) == 7
    assert trainer.stats_reporter.get_pending("Losses/Policy Loss")


def test_queue_is_processed_when_a_summary_is_due(tmp_path):
    rng = np.random.default_rng(4)
    trainer = _trainer(tmp_path, buffer_size=1000, summary_freq=25)
    trainer.publish_trajectory(_trajectory(rng, 20, "a", done=True))
    trainer.advance()
    assert trainer.get_step == 0
    trainer.publish_trajectory(_trajectory(rng, 10, "b", done=True))
    trainer.advance()
    assert trainer.get_step == 30 and trainer.update_buffer.num_experiences == 30
