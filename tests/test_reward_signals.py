"""Learned reward signals (curiosity, RND, GAIL), behavioral cloning, and the plugin path for
reward signals: each model does what its paper says on small, fixed data, and each trains
end to end through `palaestra learn` with ML-Agents' stat names."""
from importlib import metadata

import numpy as np
import pytest
import torch

from palaestra import (ActionSpec, AgentBuffer, BehaviorSpec, BufferKey, ObservationSpec,
                       RewardSignalType)
from palaestra.buffer import next_obs_key, obs_key
from palaestra.demo import Episode, write_demonstration
from palaestra.reward_signals import (ExtrinsicRewardSignal, RewardSignal,
                                      RewardSignalRegistry, create_reward_signals)
from palaestra.settings import (CuriositySettings, GAILSettings, RewardSignalSettings,
                                RNDSettings)

from helpers import learn, scalars

SPEC = BehaviorSpec([ObservationSpec((20,))], ActionSpec(0, (3,)))


def _buffer(positions, actions, next_positions=None, done=None) -> AgentBuffer:
    """Basic-like one-hot positions with discrete actions."""
    positions = np.asarray(positions)
    nxt = positions if next_positions is None else np.asarray(next_positions)
    eye = np.eye(20, dtype=np.float32)
    buffer = AgentBuffer()
    buffer[obs_key(0)] = eye[positions]
    buffer[next_obs_key(0)] = eye[nxt]
    buffer[BufferKey.CONTINUOUS_ACTION] = np.zeros((len(positions), 0), np.float32)
    buffer[BufferKey.DISCRETE_ACTION] = np.asarray(actions, np.int64).reshape(-1, 1)
    buffer[BufferKey.DONE] = np.zeros(len(positions), np.float32) if done is None else \
        np.asarray(done, np.float32)
    buffer[BufferKey.ENVIRONMENT_REWARDS] = np.zeros(len(positions), np.float32)
    return buffer


def _walk_right_demo(path, episodes=20):
    """Basic's expert: seven steps right from 10 to the large goal (return 0.93)."""
    eye = np.eye(20, dtype=np.float32)
    write_demonstration(path, SPEC, [
        Episode(obs=[eye[10:18]], rewards=np.array([-0.01] * 6 + [0.99], np.float32),
                discrete=np.full((7, 1), 2, np.int64)) for _ in range(episodes)],
        name="walk_right", behavior_name="Basic")
    return str(path)


def test_curiosity_rewards_unfamiliar_transitions_and_nothing_before_it_learns():
    torch.manual_seed(0)
    [signal] = create_reward_signals(
        {RewardSignalType.CURIOSITY: CuriositySettings(strength=0.1)}, SPEC).values()
    seen = _buffer(np.arange(5, 15), np.full(10, 2), np.arange(6, 16))
    unseen = _buffer(np.arange(5, 15), np.full(10, 1), np.arange(4, 14))
    assert signal.ignore_done
    assert not signal.evaluate(seen).any()  # ML-Agents: nothing before the first update
    first = signal.update(seen)
    assert set(first) == {"Losses/Curiosity Forward Loss", "Losses/Curiosity Inverse Loss"}
    for _ in range(300):
        last = signal.update(seen)
    assert last["Losses/Curiosity Forward Loss"] < first["Losses/Curiosity Forward Loss"]
    assert last["Losses/Curiosity Inverse Loss"] < 0.5 * first["Losses/Curiosity Inverse Loss"]
    assert signal.evaluate(unseen).mean() > 3 * signal.evaluate(seen).mean()
    assert signal.evaluate(unseen).max() <= 1 / 0.1 + 1e-6  # capped at 1 / strength


def test_rnd_rewards_rarely_seen_states_and_keeps_its_target_fixed():
    torch.manual_seed(0)
    [signal] = create_reward_signals({RewardSignalType.RND: RNDSettings()}, SPEC).values()
    target = [p.clone() for p in signal.target.parameters()]
    seen, unseen = _buffer(np.arange(0, 10), np.zeros(10)), _buffer(np.arange(10, 20),
                                                                      np.zeros(10))
    before = signal.evaluate(seen).mean()
    signal.optimizer.param_groups[0]["lr"] = 1e-3
    for _ in range(300):
        stats = signal.update(seen)
    assert set(stats) == {"Losses/RND Loss"}
    assert signal.evaluate(seen).mean() < 0.2 * before
    assert signal.evaluate(unseen).mean() > 3 * signal.evaluate(seen).mean()
    assert all(torch.equal(a, b) for a, b in zip(target, signal.target.parameters()))


@pytest.mark.parametrize("use_actions, use_vail, updates, margin",
                         [(False, False, 300, 0.3), (True, False, 300, 0.3),
                          (True, True, 150, 0.05)])  # VAIL's noisy code learns slower
def test_gail_discriminator_tells_expert_steps_from_the_agents(tmp_path, use_actions, use_vail,
                                                               updates, margin):
    torch.manual_seed(0)
    demo = _walk_right_demo(tmp_path / "expert.demo")
    settings = GAILSettings(demo_path=demo, use_actions=use_actions, use_vail=use_vail,
                            learning_rate=1e-3)
    [signal] = create_reward_signals({RewardSignalType.GAIL: settings}, SPEC).values()
    assert not signal.ignore_done
    agent = _buffer(np.arange(0, 10), np.zeros(10, np.int64))  # elsewhere, standing still
    for _ in range(updates):  # slowish by design: ML-Agents' gradient penalty (weight 10)
        stats = signal.update(agent)
    assert stats["Policy/GAIL Expert Estimate"] > stats["Policy/GAIL Policy Estimate"] + margin
    expected = {"Policy/GAIL Policy Estimate", "Policy/GAIL Expert Estimate",
                "Losses/GAIL Loss", "Policy/GAIL Grad Mag Loss"}
    if use_vail:
        expected |= {"Policy/GAIL Beta", "Losses/GAIL KL Loss"}
    assert set(stats) == expected
    expert_like = _buffer(np.arange(10, 17), np.full(7, 2))
    assert signal.evaluate(expert_like).mean() > signal.evaluate(agent).mean() * \
        (1.0 + 4 * margin)
    assert (signal.evaluate(agent) >= 0).all()  # -log(1 - D) >= 0


def test_gail_absorbing_state_pays_the_last_reward_for_ever_after_a_real_end(tmp_path):
    demo = _walk_right_demo(tmp_path / "expert.demo")
    plain, absorbing = (create_reward_signals({RewardSignalType.GAIL: GAILSettings(
        demo_path=demo, gamma=0.9, absorbing_state=flag)}, SPEC)["gail"] for flag in (0, 1))
    absorbing.discriminator.load_state_dict(plain.discriminator.state_dict())
    steps = _buffer([14, 15, 16, 16], [2, 2, 2, 2], done=[0, 0, 1, 1])
    steps[BufferKey.INTERRUPTED] = np.array([0, 0, 0, 1], np.float32)  # the last: a time limit
    r, a = plain.evaluate(steps), absorbing.evaluate(steps)
    np.testing.assert_allclose(a, [r[0], r[1], r[2] / (1 - 0.9), r[3]], rtol=1e-5)


def test_gail_refuses_demonstrations_of_another_behavior(tmp_path):
    from palaestra.exception import TrainerConfigError

    demo = _walk_right_demo(tmp_path / "expert.demo")
    other = BehaviorSpec([ObservationSpec((8,))], ActionSpec(2, ()))
    with pytest.raises(TrainerConfigError, match="expert.demo"):
        create_reward_signals({RewardSignalType.GAIL: GAILSettings(demo_path=demo)}, other)


def test_intrinsic_values_bootstrap_past_an_episode_end():
    from palaestra import TorchOptimizer

    class Holder(TorchOptimizer):
        def __init__(self, signals):
            self.reward_signals = signals

        def update(self, batch, num_sequences):
            return {}

    signals = create_reward_signals({RewardSignalType.EXTRINSIC: RewardSignalSettings(),
                                     RewardSignalType.CURIOSITY: CuriositySettings()}, SPEC)
    keep = Holder(signals).bootstrap_keep(np.array([True, False]))
    np.testing.assert_array_equal(keep["extrinsic"], [0.0, 1.0])
    np.testing.assert_array_equal(keep["curiosity"], [1.0, 1.0])


def _basic_config(tmp_path, trainer, signals, extra="", steps=3000, hyper=None):
    hyper = hyper or "{batch_size: 32, buffer_size: 256, learning_rate: 1.0e-3}"
    path = tmp_path / "config.yaml"
    path.write_text(f"""
behaviors:
  Basic:
    trainer_type: {trainer}
    hyperparameters: {hyper}
    network_settings: {{hidden_units: 32, num_layers: 1}}
    reward_signals:
{signals}
{extra}
    max_steps: {steps}
    summary_freq: 1000
env_settings: {{env_path: Basic, seed: 1}}
""")
    return str(path)


def test_curiosity_and_rnd_train_with_ppo_and_resume_with_their_models(tmp_path):
    config = _basic_config(tmp_path, "ppo", """      extrinsic: {strength: 1.0, gamma: 0.99}
      curiosity: {strength: 0.02, gamma: 0.99, network_settings: {hidden_units: 32}}
      rnd: {strength: 0.01, gamma: 0.99, network_settings: {hidden_units: 32}}""", steps=2000)
    results = tmp_path / "results"
    assert learn(config, "--run-id", "r", "--results-dir", str(results)) == 0
    series = scalars(str(results / "r" / "Basic"))
    for name in ("Policy/Curiosity Reward", "Policy/Curiosity Value Estimate",
                 "Losses/Curiosity Forward Loss", "Losses/Curiosity Inverse Loss",
                 "Policy/Rnd Reward", "Policy/Rnd Value Estimate", "Losses/RND Loss"):
        assert name in series, name
    checkpoint = torch.load(results / "r" / "Basic" / "checkpoint.pt", weights_only=False)
    modules = set(checkpoint["modules"]) if "modules" in checkpoint else set(checkpoint)
    assert any("curiosity" in m for m in modules) and any("rnd" in m for m in modules), modules
    assert learn(str(results / "r" / "configuration.yaml"), "--run-id", "r", "--results-dir",
                 str(results), "--resume", "--max-steps", "3000") == 0
    steps = [s for s, _ in scalars(str(results / "r" / "Basic"))["Policy/Curiosity Reward"]]
    assert max(steps) >= 3000


def test_behavioral_cloning_speeds_up_ppo_on_basic(tmp_path):
    """20 walk-right episodes: with cloning PPO is past 0.9 by 3000 steps (seeds 1-3: 0.92,
    0.93, 0.92); alone it is at 0.69 / 0.75 / 0.68 then (0.90-0.91 by 5000)."""
    demo = _walk_right_demo(tmp_path / "expert.demo")
    config = _basic_config(tmp_path, "ppo", "      extrinsic: {strength: 1.0, gamma: 0.9}",
                           extra=f"    behavioral_cloning: {{demo_path: '{demo}', strength: 1.0}}")
    results = tmp_path / "results"
    assert learn(config, "--run-id", "bc", "--results-dir", str(results)) == 0
    series = scalars(str(results / "bc" / "Basic"))
    assert "Losses/Pretraining Loss" in series
    rewards = [v for _, v in series["Environment/Cumulative Reward"]]
    assert rewards[-1] > 0.9, rewards


def test_gail_alone_with_sac_imitates_basic_with_an_absorbing_end(tmp_path):
    """No extrinsic reward: SAC learns Basic from 20 walk-right demonstrations alone. With
    `absorbing_state` the expert's way of ending pays for ever after; without it GAIL's
    always-positive reward makes stalling pay more (docs/reward-signals.md: seeds 1-3 fall to
    -1 without it, seeds 1-4 hold 0.93 with it)."""
    demo = _walk_right_demo(tmp_path / "expert.demo")
    config = _basic_config(
        tmp_path, "sac", f"""      gail: {{strength: 1.0, gamma: 0.99, demo_path: '{demo}', use_actions: true,
             absorbing_state: true, learning_rate: 1.0e-3, network_settings: {{hidden_units: 64}}}}""",
        steps=4000, hyper="{batch_size: 64, buffer_size: 50000, learning_rate: 3.0e-4, "
                          "buffer_init_steps: 500, steps_per_update: 4}")
    config_text = open(config).read().replace("hidden_units: 32, num_layers: 1",
                                              "hidden_units: 64, num_layers: 2")
    open(config, "w").write(config_text)
    results = tmp_path / "results"
    assert learn(config, "--run-id", "g", "--results-dir", str(results)) == 0
    series = scalars(str(results / "g" / "Basic"))
    rewards = [v for _, v in series["Environment/Cumulative Reward"]]
    assert rewards[-1] > 0.9, rewards
    assert "Policy/GAIL Expert Estimate" in series and "Policy/Gail Reward" in series


def test_a_missing_demonstration_is_refused_before_anything_is_written(tmp_path):
    config = _basic_config(tmp_path, "ppo", "      gail: {demo_path: nowhere/expert.demo}")
    results = tmp_path / "results"
    assert learn(config, "--run-id", "x", "--results-dir", str(results)) == 1
    assert not (results / "x").exists()


# -- the plugin path ----------------------------------------------------------------------------
class VisitCountSignal(RewardSignal):
    """The documented example (docs/plugin-api.md): a count-based exploration bonus,
    bonus / sqrt(N(s)) over exact observations."""

    ignore_done = True

    def __init__(self, name, settings, behavior_spec):
        super().__init__(name, settings, behavior_spec)
        self.counts = {}

    def evaluate(self, buffer):
        keys = [row.tobytes() for row in np.asarray(buffer[next_obs_key(0)])]
        return np.array([self.settings.bonus / np.sqrt(self.counts.get(k, 0) + 1)
                         for k in keys], np.float32)

    def update(self, buffer):
        for row in np.asarray(buffer[next_obs_key(0)]):
            self.counts[row.tobytes()] = self.counts.get(row.tobytes(), 0) + 1
        return {"Policy/Visited States": float(len(self.counts))}


class VisitCountSettings(RewardSignalSettings):
    bonus: float = 1.0


def get_visit_count_signal():
    return {"visit_count": VisitCountSignal}, {"visit_count": VisitCountSettings}


def steal_extrinsic():
    return {"extrinsic": VisitCountSignal}, {"extrinsic": VisitCountSettings}


def _entry_point(value):
    return metadata.EntryPoint("visit_count", value, "palaestra.reward_signal")


def test_a_plugin_reward_signal_trains_through_its_entry_point(tmp_path, monkeypatch, capsys):
    import palaestra.reward_signals.registry as registry

    ep = _entry_point("test_reward_signals:get_visit_count_signal")
    installed = metadata.entry_points
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group=None, **kw: [ep] if
                        group == registry.REWARD_SIGNAL_GROUP else installed(group=group, **kw))
    config = _basic_config(tmp_path, "ppo", """      extrinsic: {strength: 1.0}
      visit_count: {strength: 0.1, gamma: 0.9, bonus: 2.0}""", steps=1000)
    results = tmp_path / "results"
    assert learn(config, "--run-id", "p", "--results-dir", str(results)) == 0
    series = scalars(str(results / "p" / "Basic"))
    assert "Policy/Visit_count Reward" in series and "Policy/Visited States" in series
    resolved = (results / "p" / "configuration.yaml").read_text()
    assert "visit_count" in resolved and "bonus: 2.0" in resolved
    from palaestra.cli import main

    capsys.readouterr()
    assert main(["trainers"]) == 0
    listed = capsys.readouterr().out
    assert "reward signals: curiosity (palaestra)" in listed and "visit_count (" in listed


def test_broken_reward_signal_plugins_are_reported_and_skipped():
    bad = [_entry_point("test_reward_signals:no_such_function"),
           metadata.EntryPoint("thief", "test_reward_signals:steal_extrinsic",
                               "palaestra.reward_signal")]
    found = RewardSignalRegistry.installed(entry_points=bad)
    assert found.names() == ["curiosity", "extrinsic", "gail", "rnd"]
    assert len(found.failures) == 2
    assert found.signal_class("extrinsic") is ExtrinsicRewardSignal
    with pytest.raises(Exception, match="unknown reward signal 'visit_count'"):
        found.settings_for("visit_count")


# ML-Agents' release configs with these keys (config/ppo/PyramidsRND.yaml,
# config/imitation/Pyramids.yaml, config/sac/Pyramids.yaml of ML-Agents 1.1), key for key
MLAGENTS_PYRAMIDS = {
    "ppo_rnd": """
behaviors:
  Pyramids:
    trainer_type: ppo
    hyperparameters: {batch_size: 128, buffer_size: 2048, learning_rate: 0.0003, beta: 0.01,
                      epsilon: 0.2, lambd: 0.95, num_epoch: 3, learning_rate_schedule: linear}
    network_settings: {normalize: false, hidden_units: 512, num_layers: 2,
                       vis_encode_type: simple}
    reward_signals:
      extrinsic: {gamma: 0.99, strength: 1.0}
      rnd: {gamma: 0.99, strength: 0.01, network_settings: {hidden_units: 64, num_layers: 3},
            learning_rate: 0.0001}
    keep_checkpoints: 5
    max_steps: 3000000
    time_horizon: 128
    summary_freq: 30000
""",
    "imitation": """
behaviors:
  Pyramids:
    trainer_type: ppo
    time_horizon: 128
    max_steps: 1.0e7
    hyperparameters: {batch_size: 128, beta: 0.01, buffer_size: 2048, epsilon: 0.2,
                      lambd: 0.95, learning_rate: 0.0003, num_epoch: 3}
    network_settings: {num_layers: 2, normalize: false, hidden_units: 512}
    reward_signals:
      extrinsic: {strength: 1.0, gamma: 0.99}
      curiosity: {strength: 0.02, gamma: 0.99, encoding_size: 256}
      gail: {strength: 0.01, gamma: 0.99, encoding_size: 128,
             demo_path: Project/Assets/ML-Agents/Examples/Pyramids/Demos/ExpertPyramid.demo}
    behavioral_cloning:
      demo_path: Project/Assets/ML-Agents/Examples/Pyramids/Demos/ExpertPyramid.demo
      strength: 0.5
      steps: 150000
""",
    "sac_gail": """
behaviors:
  Pyramids:
    trainer_type: sac
    hyperparameters: {learning_rate: 0.0003, learning_rate_schedule: constant, batch_size: 128,
                      buffer_size: 2000000, buffer_init_steps: 1000, tau: 0.01,
                      steps_per_update: 10.0, save_replay_buffer: false, init_entcoef: 0.01,
                      reward_signal_steps_per_update: 10.0}
    network_settings: {normalize: false, hidden_units: 512, num_layers: 3,
                       vis_encode_type: simple}
    reward_signals:
      extrinsic: {gamma: 0.995, strength: 2.0}
      gail: {gamma: 0.99, strength: 0.01, learning_rate: 0.0003, use_actions: true,
             use_vail: false,
             demo_path: Project/Assets/ML-Agents/Examples/Pyramids/Demos/ExpertPyramid.demo}
    keep_checkpoints: 5
    max_steps: 3000000
    time_horizon: 128
    summary_freq: 30000
""",
}


@pytest.mark.parametrize("name", sorted(MLAGENTS_PYRAMIDS))
def test_mlagents_release_configs_with_these_keys_load(tmp_path, name):
    import yaml

    from palaestra.config import load_run_options
    from palaestra.registry import TrainerRegistry

    options = load_run_options(yaml.safe_load(MLAGENTS_PYRAMIDS[name]),
                               TrainerRegistry.from_entry_points())
    settings = options.behaviors["Pyramids"]
    names = [k.value for k in settings.reward_signals]
    assert names[0] == "extrinsic" and len(names) >= 2
    if name == "imitation":
        assert settings.reward_signals[RewardSignalType.CURIOSITY].network_settings \
            .hidden_units == 256
        assert settings.reward_signals[RewardSignalType.GAIL].network_settings \
            .hidden_units == 128
        assert settings.behavioral_cloning.steps == 150000


def test_poca_learns_a_value_and_baseline_per_signal_with_rnd_and_cloning(tmp_path):
    """POCA with a learned signal beside the group reward, and SAC with cloning: every trainer
    type of palaestra takes them (the stats are what ML-Agents writes)."""
    import yaml

    from palaestra.envs.builtin import make_builtin

    env = make_builtin("DungeonEscape", 1, seed=0)
    spec = env.behavior_specs["DungeonEscape"]
    rng = np.random.default_rng(0)
    branches = spec.action_spec.discrete_branches
    write_demonstration(tmp_path / "d.demo", spec, [Episode(
        obs=[rng.normal(size=(6, *o.shape)).astype(np.float32) for o in spec.observation_specs],
        rewards=np.zeros(5, np.float32),
        discrete=np.stack([rng.integers(0, n, 5) for n in branches], 1))
        for _ in range(3)])
    config = {"behaviors": {"DungeonEscape": {
        "trainer_type": "poca",
        "hyperparameters": {"batch_size": 128, "buffer_size": 512, "num_epoch": 1},
        "network_settings": {"hidden_units": 16, "num_layers": 1},
        "reward_signals": {"extrinsic": {}, "rnd": {"strength": 0.01,
                                                    "network_settings": {"hidden_units": 16}}},
        "behavioral_cloning": {"demo_path": str(tmp_path / "d.demo"), "strength": 0.5},
        "max_steps": 1500, "summary_freq": 500, "time_horizon": 32}},
        "env_settings": {"env_path": "DungeonEscape", "num_envs": 4, "seed": 1}}
    path = tmp_path / "poca.yaml"
    path.write_text(yaml.safe_dump(config))
    assert learn(str(path), "--results-dir", str(tmp_path), "--run-id", "r") == 0
    series = scalars(str(tmp_path / "r" / "DungeonEscape"))
    for tag in ("Policy/Rnd Value Estimate", "Policy/Rnd Baseline Estimate", "Losses/RND Loss",
                "Losses/Pretraining Loss"):
        assert series.get(tag), tag


def test_sac_clones_demonstrations_beside_its_updates(tmp_path):
    demo = _walk_right_demo(tmp_path / "expert.demo")
    config = _basic_config(
        tmp_path, "sac", "      extrinsic: {strength: 1.0, gamma: 0.9}",
        extra=f"    behavioral_cloning: {{demo_path: '{demo}', strength: 1.0, "
              "samples_per_update: 64}", steps=1500,
        hyper="{batch_size: 64, buffer_size: 5000, buffer_init_steps: 200, "
              "steps_per_update: 4}")
    results = tmp_path / "results"
    assert learn(config, "--run-id", "s", "--results-dir", str(results)) == 0
    losses = [v for _, v in scalars(str(results / "s" / "Basic"))["Losses/Pretraining Loss"]]
    assert losses and losses[-1] < losses[0], losses
