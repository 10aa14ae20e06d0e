"""Does it learn: `palaestra learn` end to end with fixed seeds and step budgets."""
import os

import yaml

from helpers import REPO, TESTS_DIR, learn, scalars

REWARD = "Environment/Cumulative Reward"
SPEC_STATS = ["Environment/Cumulative Reward", "Environment/Episode Length", "Losses/Policy Loss",
              "Losses/Value Loss", "Policy/Learning Rate", "Policy/Epsilon", "Policy/Beta",
              "Policy/Entropy", "Policy/Extrinsic Value Estimate", "Policy/Extrinsic Reward"]


def test_ppo_cartpole_reaches_195_with_shipped_config(tmp_path):
    config = os.path.join(REPO, "src", "palaestra", "configs", "ppo", "CartPole.yaml")
    assert learn(config, "--run-id", "cp", "--results-dir", str(tmp_path), "--max-steps",
                 "30000", "--seed", "1") == 0
    run = tmp_path / "cp"
    series = scalars(str(run / "CartPole-v1"))
    assert set(SPEC_STATS) <= set(series), set(SPEC_STATS) - set(series)
    final = series[REWARD][-1][1]
    assert final >= 195, series[REWARD]
    # resolved configuration with defaults filled in
    resolved = yaml.safe_load((run / "configuration.yaml").read_text())
    behavior = resolved["behaviors"]["CartPole-v1"]
    assert behavior["max_steps"] == 30000
    assert behavior["hyperparameters"]["beta_schedule"] == "linear"
    assert behavior["keep_checkpoints"] == 5
    assert (run / "CartPole-v1" / "checkpoint.pt").is_file()
    assert (run / "run_logs" / "training_status.json").is_file()


def test_ppo_learns_continuous_control_clearly_better_than_random(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(TESTS_DIR)
    config = tmp_path / "point.yaml"
    config.write_text(yaml.safe_dump({"behaviors": {"point_target": {
        "trainer_type": "ppo",
        "hyperparameters": {"batch_size": 128, "buffer_size": 1024, "learning_rate": 3e-3,
                            "beta": 0.0, "num_epoch": 6},
        "network_settings": {"hidden_units": 32, "num_layers": 2},
        "reward_signals": {"extrinsic": {"gamma": 0.9}},
        "max_steps": 16000, "time_horizon": 64, "summary_freq": 4000}},
        "env_settings": {"env_path": "toy_envs:point_target", "num_envs": 4, "seed": 3}}))
    assert learn(str(config), "--run-id", "pt", "--results-dir", str(tmp_path)) == 0
    rewards = [v for _, v in scalars(str(tmp_path / "pt" / "point_target"))[REWARD]]
    # a random policy scores about -10 here; the first summary is mostly random play
    assert rewards[0] < -6, rewards
    assert rewards[-1] > -4.5, rewards


def test_ppo_shared_critic_with_normalisation_learns(tmp_path):
    """The other network arrangement: one body for actor and critic, normalised inputs."""
    config = tmp_path / "shared.yaml"
    config.write_text(yaml.safe_dump({"behaviors": {"CartPole-v1": {
        "trainer_type": "ppo",
        "hyperparameters": {"batch_size": 128, "buffer_size": 1024, "learning_rate": 1e-3,
                            "num_epoch": 6, "shared_critic": True},
        "network_settings": {"hidden_units": 64, "num_layers": 2, "normalize": True},
        "max_steps": 20000, "time_horizon": 128, "summary_freq": 5000}},
        "env_settings": {"env_path": "CartPole-v1", "num_envs": 8, "seed": 2}}))
    assert learn(str(config), "--run-id", "sh", "--results-dir", str(tmp_path)) == 0
    rewards = [v for _, v in scalars(str(tmp_path / "sh" / "CartPole-v1"))[REWARD]]
    assert rewards[-1] > 3 * rewards[0] and rewards[-1] > 100, rewards
