"""The YAML config loader: strict validation with file + key path, ML-Agents defaults and merging,
YAML 1.1 quirks, CLI overrides, the configuration.yaml round trip, and the CLI failing before it
writes anything."""
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from palaestra.config import ConfigLoader, dump_run_options, load_run_options, read_yaml
from palaestra.exception import TrainerConfigError
from palaestra.registry import TrainerRegistry
from palaestra.settings import (OnPolicyHyperparamSettings, RewardSignalType,
                                RunOptions, ScheduleType, TrainerSettings)
from palaestra.trainers.ppo import PPOSettings, PPOTrainer

BEHAVIOR = "CartPole-v1"


@pytest.fixture(scope="module")
def registry():
    return TrainerRegistry.from_entry_points()


@pytest.fixture
def write(tmp_path):
    """write(text) -> path of a YAML file holding the dedented text."""
    counter = iter(range(1000))

    def _write(text: str, name: str = "") -> str:
        path = tmp_path / (name or f"config{next(counter)}.yaml")
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return str(path)

    return _write


@pytest.fixture
def load(write, registry):
    """load(text, overrides=None) -> RunOptions, from a file written to tmp_path."""
    def _load(text: str, overrides=None) -> RunOptions:
        return load_run_options(write(text), registry, overrides)

    return _load


def config_error(write, registry, text: str, overrides=None):
    """The TrainerConfigError message for `text`, and the file it was written to."""
    path = write(text)
    with pytest.raises(TrainerConfigError) as info:
        load_run_options(path, registry, overrides)
    return str(info.value), path


# --------------------------------------------------------------------------------- bad keys


def test_unknown_deep_key_names_file_path_value_suggestion_and_allowed_keys(write, registry):
    msg, path = config_error(write, registry, """
        behaviors:
          CartPole-v1:
            trainer_type: ppo
            hyperparameters:
              batch_size: 64
              betta: 0.01
        """)
    assert path in msg
    assert "behaviors.CartPole-v1.hyperparameters.betta" in msg
    assert "0.01" in msg
    assert "Did you mean 'beta'" in msg
    allowed = msg.split("Allowed keys:")[1]
    for key in ("batch_size", "beta", "buffer_size", "epsilon", "lambd", "learning_rate",
                "learning_rate_schedule", "num_epoch", "beta_schedule", "epsilon_schedule"):
        assert key in allowed
    # the misspelling is not offered as an allowed key
    assert "betta" not in allowed


def test_unknown_key_without_close_match_has_no_suggestion(write, registry):
    msg, _ = config_error(write, registry, """
        behaviors:
          CartPole-v1:
            network_settings:
              zzzzzz: 1
        """)
    assert "behaviors.CartPole-v1.network_settings.zzzzzz" in msg
    assert "Did you mean" not in msg
    assert "hidden_units" in msg and "num_layers" in msg


@pytest.mark.parametrize("section,line,key_path,needles", [
    ("hyperparameters", "batch_size: abc", "hyperparameters.batch_size",
     ["expected a number", "abc"]),
    ("hyperparameters", "num_epoch: 2.5", "hyperparameters.num_epoch",
     ["expected a whole number", "2.5"]),
    ("hyperparameters", "num_epoch: true", "hyperparameters.num_epoch",
     ["expected a number", "True"]),
    ("network_settings", "normalize: 3", "network_settings.normalize",
     ["expected true or false", "3"]),
    ("network_settings", "hidden_units: [1, 2]", "network_settings.hidden_units",
     ["expected a number"]),
])
def test_wrong_type(write, registry, section, line, key_path, needles):
    msg, path = config_error(write, registry, f"""
        behaviors:
          CartPole-v1:
            {section}:
              {line}
        """)
    assert path in msg
    assert f"behaviors.CartPole-v1.{key_path}" in msg
    for needle in needles:
        assert needle in msg


@pytest.mark.parametrize("yaml_text,key_path,bound", [
    ("hyperparameters:\n      lambd: 1.5", "hyperparameters.lambd", "<= 1.0"),
    ("hyperparameters:\n      num_epoch: 0", "hyperparameters.num_epoch", ">= 1"),
    ("hyperparameters:\n      learning_rate: 0", "hyperparameters.learning_rate", "> 0.0"),
    ("hyperparameters:\n      epsilon: -0.1", "hyperparameters.epsilon", "> 0.0"),
    ("reward_signals:\n      extrinsic:\n        gamma: -1", "reward_signals.extrinsic.gamma",
     ">= 0.0"),
    ("reward_signals:\n      extrinsic:\n        gamma: 1.01", "reward_signals.extrinsic.gamma",
     "<= 1.0"),
    ("time_horizon: 0", "time_horizon", ">= 1"),
    ("max_steps: -5", "max_steps", ">= 0"),
])
def test_out_of_range(write, registry, yaml_text, key_path, bound):
    msg, path = config_error(write, registry,
                             "behaviors:\n  CartPole-v1:\n    " + yaml_text + "\n")
    assert path in msg
    assert f"behaviors.CartPole-v1.{key_path}" in msg
    assert "out of range" in msg and bound in msg


@pytest.mark.parametrize("yaml_text", [
    "hyperparameters:\n      lambd: 1.0",
    "hyperparameters:\n      lambd: 0",
    "reward_signals:\n      extrinsic:\n        gamma: 1",
    "reward_signals:\n      extrinsic:\n        gamma: 0.0",
    "max_steps: 0",
])
def test_bounds_are_inclusive_where_ml_agents_allows_the_edge(load, yaml_text):
    load("behaviors:\n  CartPole-v1:\n    " + yaml_text + "\n")


def test_invalid_enum_lists_allowed_values(write, registry):
    msg, path = config_error(write, registry, """
        behaviors:
          CartPole-v1:
            hyperparameters:
              learning_rate_schedule: cosine
        """)
    assert path in msg
    assert "behaviors.CartPole-v1.hyperparameters.learning_rate_schedule" in msg
    assert "cosine" in msg
    assert "constant" in msg and "linear" in msg


def test_enum_is_case_insensitive(load):
    options = load("""
        behaviors:
          CartPole-v1:
            hyperparameters:
              learning_rate_schedule: Constant
        """)
    assert options.behaviors[BEHAVIOR].hyperparameters.learning_rate_schedule \
        is ScheduleType.CONSTANT


def test_unknown_top_level_key_that_looks_like_a_behavior_gets_a_hint(write, registry):
    msg, path = config_error(write, registry, """
        CartPole-v1:
          trainer_type: ppo
          max_steps: 1000
        """)
    assert path in msg
    assert "unknown key 'CartPole-v1'" in msg
    assert "behaviors" in msg and "env_settings" in msg  # the allowed top-level keys
    assert "It looks like a behavior: put it under 'behaviors:'" in msg


def test_unknown_top_level_key_not_like_a_behavior_has_suggestion_but_no_behavior_hint(
        write, registry):
    msg, _ = config_error(write, registry, """
        env_setings:
          num_envs: 2
        """)
    assert "unknown key 'env_setings'" in msg
    assert "Did you mean 'env_settings'" in msg
    assert "looks like a behavior" not in msg


def test_unknown_reward_signal_name(write, registry):
    msg, path = config_error(write, registry, """
        behaviors:
          CartPole-v1:
            reward_signals:
              extrinsic:
                gamma: 0.9
              curiousity:
                strength: 0.1
        """)
    assert path in msg
    assert "behaviors.CartPole-v1.reward_signals.curiousity" in msg
    assert "extrinsic" in msg.split("curiousity")[-1]  # allowed names come after the bad one


def test_memory_size_must_be_even(write, registry):
    msg, path = config_error(write, registry, """
        behaviors:
          CartPole-v1:
            network_settings:
              memory:
                sequence_length: 16
                memory_size: 127
        """)
    assert path in msg
    assert "behaviors.CartPole-v1.network_settings.memory.memory_size" in msg
    assert "divisible by 2" in msg and "127" in msg


def test_even_memory_size_is_accepted(load):
    options = load("""
        behaviors:
          CartPole-v1:
            network_settings:
              memory:
                sequence_length: 16
                memory_size: 64
        """)
    memory = options.behaviors[BEHAVIOR].network_settings.memory
    assert (memory.sequence_length, memory.memory_size) == (16, 64)


def test_sequence_length_longer_than_batch_is_rejected(write, registry):
    msg, _ = config_error(write, registry, """
        behaviors:
          CartPole-v1:
            hyperparameters:
              batch_size: 32
            network_settings:
              memory:
                sequence_length: 64
        """)
    assert "behaviors.CartPole-v1.network_settings.memory.sequence_length" in msg
    assert "batch_size" in msg


def test_top_level_must_be_a_mapping(write, registry):
    msg, path = config_error(write, registry, "- a\n- b\n")
    assert path in msg and "mapping" in msg


# ------------------------------------------------------------------------ trainer type


def test_unknown_trainer_type_lists_installed_types(write, registry):
    msg, path = config_error(write, registry, """
        behaviors:
          CartPole-v1:
            trainer_type: foo
        """)
    assert path in msg
    assert "behaviors.CartPole-v1.trainer_type" in msg
    assert "Invalid trainer type foo was found" in msg
    assert "Installed trainer types:" in msg and "ppo" in msg


def test_registry_unknown_trainer_type_message_starts_with_spec_sentence(registry):
    with pytest.raises(TrainerConfigError) as info:
        registry.get("foo")
    assert str(info.value).startswith("Invalid trainer type foo was found")
    assert "ppo" in str(info.value)


def test_loader_unknown_trainer_type_message_starts_with_spec_sentence(write, registry):
    msg, _ = config_error(write, registry, """
        behaviors:
          CartPole-v1:
            trainer_type: foo
        """)
    assert msg.startswith("Invalid trainer type foo was found")


# ------------------------------------------------------------- default_settings / merging

ML_AGENTS_STYLE = """
default_settings:
  trainer_type: ppo
  hyperparameters:
    batch_size: 256
    buffer_size: 2048
    beta: 0.01
    learning_rate_schedule: constant
  network_settings:
    hidden_units: 64
    normalize: true
  reward_signals:
    extrinsic:
      gamma: 0.995
      strength: 1.0
  max_steps: 1.0e5
  time_horizon: 128
  summary_freq: 1000
behaviors:
  CartPole-v1:
    hyperparameters:
      batch_size: 64
    network_settings:
      num_layers: 3
    reward_signals:
      extrinsic:
        strength: 0.5
  Acrobot-v1:
    time_horizon: 32
    max_steps: 2000
"""


def test_ml_agents_style_config_with_default_settings(load):
    options = load(ML_AGENTS_STYLE)
    assert set(options.behaviors) == {"CartPole-v1", "Acrobot-v1"}
    cart, acro = options.behaviors["CartPole-v1"], options.behaviors["Acrobot-v1"]
    assert isinstance(cart.hyperparameters, PPOSettings)

    # CartPole overrides batch_size, num_layers and strength; inherits the rest
    assert cart.hyperparameters.batch_size == 64
    assert cart.hyperparameters.buffer_size == 2048
    assert cart.hyperparameters.beta == 0.01
    assert cart.hyperparameters.learning_rate_schedule is ScheduleType.CONSTANT
    assert cart.network_settings.num_layers == 3
    assert cart.network_settings.hidden_units == 64
    assert cart.network_settings.normalize is True
    extrinsic = cart.reward_signals[RewardSignalType.EXTRINSIC]
    assert extrinsic.strength == 0.5
    assert extrinsic.gamma == 0.995  # deep merge: the sibling key survives
    assert cart.time_horizon == 128
    assert cart.max_steps == 100000 and isinstance(cart.max_steps, int)
    assert cart.summary_freq == 1000

    # Acrobot overrides time_horizon and max_steps only
    assert acro.time_horizon == 32
    assert acro.max_steps == 2000
    assert acro.hyperparameters.batch_size == 256
    assert acro.network_settings.num_layers == 2  # ML-Agents default, not CartPole's
    assert acro.reward_signals[RewardSignalType.EXTRINSIC].strength == 1.0

    # behaviors are independent objects
    assert cart.hyperparameters is not acro.hyperparameters
    assert cart.network_settings is not acro.network_settings


def test_unnamed_behavior_falls_back_to_default_settings(load):
    options = load(ML_AGENTS_STYLE)
    other = options.behavior_settings("Pendulum-v1")
    assert other == options.default_settings
    assert other.hyperparameters.batch_size == 256
    assert other.max_steps == 100000
    # a copy: changing it does not change the defaults (or another fallback behavior)
    other.max_steps = 7
    assert options.default_settings.max_steps == 100000
    assert options.behavior_settings("MountainCar-v0").max_steps == 100000
    # named behaviors are returned as configured
    assert options.behavior_settings("CartPole-v1").hyperparameters.batch_size == 64


def test_unnamed_behavior_without_default_settings_is_a_clear_error(load):
    options = load("""
        behaviors:
          CartPole-v1:
            max_steps: 1000
        """)
    with pytest.raises(TrainerConfigError) as info:
        options.behavior_settings("Acrobot-v1")
    msg = str(info.value)
    assert "Acrobot-v1" in msg
    assert "CartPole-v1" in msg  # what is configured
    assert "default_settings" in msg


def test_behavior_with_empty_body_gets_defaults(load):
    options = load("behaviors:\n  CartPole-v1:\n")
    assert options.behaviors[BEHAVIOR] == TrainerSettings(hyperparameters=PPOSettings())


def test_bad_key_in_default_settings_names_default_settings(write, registry):
    msg, _ = config_error(write, registry, """
        default_settings:
          hyperparameters:
            epsilom: 0.1
        behaviors:
          CartPole-v1: {}
        """)
    assert "default_settings.hyperparameters.epsilom" in msg
    assert "Did you mean 'epsilon'" in msg


class _OtherSettings(OnPolicyHyperparamSettings):
    alpha: float = 1.0


@pytest.fixture
def registry_with_other():
    reg = TrainerRegistry.from_entry_points()
    reg.register({"other": PPOTrainer}, {"other": _OtherSettings})
    return reg


def test_behavior_switching_trainer_type_drops_defaults_hyperparameters(write,
                                                                        registry_with_other):
    path = write("""
        default_settings:
          trainer_type: ppo
          hyperparameters:
            beta: 0.01
          time_horizon: 99
        behaviors:
          CartPole-v1:
            trainer_type: other
            hyperparameters:
              alpha: 2.0
        """)
    options = load_run_options(path, registry_with_other)
    settings = options.behaviors[BEHAVIOR]
    assert isinstance(settings.hyperparameters, _OtherSettings)
    assert settings.hyperparameters.alpha == 2.0
    assert settings.time_horizon == 99  # non-hyperparameter defaults still apply


def test_behavior_switching_from_implicit_ppo_default_drops_defaults_hyperparameters(
        write, registry_with_other):
    path = write("""
        default_settings:
          hyperparameters:
            beta: 0.01
        behaviors:
          CartPole-v1:
            trainer_type: other
            hyperparameters:
              alpha: 2.0
        """)
    options = load_run_options(path, registry_with_other)
    assert options.behaviors[BEHAVIOR].hyperparameters.alpha == 2.0


# ----------------------------------------------------------------------------- defaults


def test_ml_agents_defaults_when_keys_are_omitted(load):
    options = load("behaviors:\n  CartPole-v1:\n    trainer_type: ppo\n")
    s = options.behaviors[BEHAVIOR]
    assert s.trainer_type == "ppo"
    assert (s.time_horizon, s.summary_freq, s.max_steps, s.keep_checkpoints,
            s.checkpoint_interval) == (64, 50000, 500000, 5, 500000)
    h = s.hyperparameters
    assert type(h) is PPOSettings
    assert (h.batch_size, h.buffer_size, h.num_epoch) == (1024, 10240, 3)
    assert h.learning_rate == pytest.approx(3e-4)
    assert h.beta == pytest.approx(5e-3)
    assert h.epsilon == pytest.approx(0.2)
    assert h.lambd == pytest.approx(0.95)
    assert h.learning_rate_schedule is ScheduleType.LINEAR
    assert h.beta_schedule is ScheduleType.LINEAR
    assert h.epsilon_schedule is ScheduleType.LINEAR
    assert h.shared_critic is False
    n = s.network_settings
    assert (n.hidden_units, n.num_layers, n.normalize, n.memory) == (128, 2, False, None)
    assert list(s.reward_signals) == [RewardSignalType.EXTRINSIC]
    ext = s.reward_signals[RewardSignalType.EXTRINSIC]
    assert ext.gamma == pytest.approx(0.99) and ext.strength == pytest.approx(1.0)
    # run-level defaults
    assert options.env_settings.num_envs == 1
    assert options.checkpoint_settings.run_id == "ppo"
    assert options.checkpoint_settings.results_dir == "results"
    assert options.default_settings is None


def test_empty_file_gives_default_run_options(write, registry):
    options = load_run_options(write(""), registry)
    assert options == RunOptions()


@pytest.mark.parametrize("lr_schedule,extra,beta_expected,eps_expected", [
    ("constant", "", "constant", "constant"),
    ("linear", "", "linear", "linear"),
    ("constant", "beta_schedule: linear", "linear", "constant"),
    ("linear", "epsilon_schedule: constant", "linear", "constant"),
])
def test_beta_and_epsilon_schedules_default_to_learning_rate_schedule(
        load, lr_schedule, extra, beta_expected, eps_expected):
    options = load(f"""
        behaviors:
          CartPole-v1:
            hyperparameters:
              learning_rate_schedule: {lr_schedule}
              {extra}
        """)
    h = options.behaviors[BEHAVIOR].hyperparameters
    assert h.learning_rate_schedule is ScheduleType(lr_schedule)
    assert h.beta_schedule is ScheduleType(beta_expected)
    assert h.epsilon_schedule is ScheduleType(eps_expected)


# -------------------------------------------------------------------------- YAML quirks


def test_yaml_1_1_number_strings_are_accepted_as_numbers(load):
    text = """
        behaviors:
          CartPole-v1:
            max_steps: 5.0e5
            checkpoint_interval: 1e5
            hyperparameters:
              learning_rate: 3e-4
              beta: 1e-3
        """
    raw = yaml.safe_load(textwrap.dedent(text))["behaviors"][BEHAVIOR]
    # the premise: PyYAML reads these as strings, so the loader must convert them
    assert raw["max_steps"] == "5.0e5" and raw["hyperparameters"]["learning_rate"] == "3e-4"
    s = load(text).behaviors[BEHAVIOR]
    assert s.max_steps == 500000 and type(s.max_steps) is int
    assert s.checkpoint_interval == 100000 and type(s.checkpoint_interval) is int
    assert s.hyperparameters.learning_rate == pytest.approx(3e-4)
    assert type(s.hyperparameters.learning_rate) is float
    assert s.hyperparameters.beta == pytest.approx(1e-3)


def test_max_steps_as_float_in_default_settings(load):
    options = load("default_settings:\n  max_steps: 2.5e4\nbehaviors:\n  CartPole-v1: {}\n")
    assert options.default_settings.max_steps == 25000
    assert options.behaviors[BEHAVIOR].max_steps == 25000


@pytest.mark.parametrize("value", [".inf", ".nan", "1e400"])
def test_non_finite_number_for_int_field_is_a_config_error(write, registry, value):
    path = write(f"behaviors:\n  CartPole-v1:\n    hyperparameters:\n      batch_size: {value}\n")
    with pytest.raises(TrainerConfigError, match=r"behaviors\.CartPole-v1\.hyperparameters"
                                                 r"\.batch_size"):
        load_run_options(path, registry)


# --------------------------------------------------------- Unity-only settings accepted


def _unity_warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and "Unity-only"
            in r.getMessage()]


def test_engine_settings_and_unity_env_keys_are_accepted_with_one_warning(load, caplog):
    caplog.set_level(logging.WARNING)
    unity = """
        env_settings:
          base_port: 5006
          num_areas: 3
          timeout_wait: 30
          num_envs: 2
        engine_settings:
          width: 100
          time_scale: 1.0
          no_graphics: true
        behaviors:
          CartPole-v1: {}
        """
    load(unity)  # no env_path: the Unity Editor, where these settings mean what they say
    assert not _unity_warnings(caplog)
    options = load(unity.replace("num_envs: 2", "num_envs: 2\n          env_path: CartPole-v1"))
    assert options.engine_settings.width == 100
    assert options.engine_settings.time_scale == 1.0
    assert options.engine_settings.no_graphics is True
    assert options.env_settings.base_port == 5006
    assert options.env_settings.num_areas == 3
    assert options.env_settings.num_envs == 2
    warnings = _unity_warnings(caplog)
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    for key in ("engine_settings.width", "engine_settings.time_scale", "env_settings.base_port",
                "env_settings.num_areas", "env_settings.timeout_wait"):
        assert key in text
    assert "num_envs" not in text  # a real setting is not called Unity-only


def test_no_unity_warning_without_unity_keys(load, caplog):
    caplog.set_level(logging.WARNING)
    load("env_settings:\n  num_envs: 2\n  seed: 3\nbehaviors:\n  CartPole-v1: {}\n")
    assert _unity_warnings(caplog) == []


def test_bad_engine_settings_key_is_still_an_error(write, registry):
    msg, _ = config_error(write, registry, "engine_settings:\n  widht: 3\n")
    assert "engine_settings.widht" in msg and "Did you mean 'width'" in msg


# ------------------------------------------------------------------------ CLI overrides


def test_cli_overrides_win_over_yaml_and_keep_other_yaml_values(load):
    options = load("""
        env_settings:
          num_envs: 2
          seed: 7
        checkpoint_settings:
          run_id: from_yaml
          results_dir: my_results
        behaviors:
          CartPole-v1: {}
        """, overrides={"env_settings": {"num_envs": 4},
                        "checkpoint_settings": {"run_id": "x"},
                        "debug": True})
    assert options.env_settings.num_envs == 4
    assert options.env_settings.seed == 7
    assert options.checkpoint_settings.run_id == "x"
    assert options.checkpoint_settings.results_dir == "my_results"
    assert options.debug is True


def test_cli_overrides_fill_sections_missing_from_yaml(load):
    options = load("behaviors:\n  CartPole-v1: {}\n",
                   overrides={"env_settings": {"env_path": "CartPole-v1", "num_envs": 3}})
    assert options.env_settings.env_path == "CartPole-v1"
    assert options.env_settings.num_envs == 3


def test_cli_overrides_are_validated_too(write, registry):
    with pytest.raises(TrainerConfigError, match=r"env_settings\.num_envs.*out of range"):
        load_run_options(write("behaviors:\n  CartPole-v1: {}\n"), registry,
                         {"env_settings": {"num_envs": 0}})


def test_overrides_without_file(registry):
    options = load_run_options(None, registry, {"checkpoint_settings": {"run_id": "x"}})
    assert options.checkpoint_settings.run_id == "x"
    assert options.behaviors == {}


def test_cli_override_of_a_non_mapping_section_is_a_config_error(write, registry):
    path = write("env_settings: CartPole-v1\n")
    with pytest.raises(TrainerConfigError, match="env_settings"):
        load_run_options(path, registry, {"env_settings": {"num_envs": 4}})


# ---------------------------------------------------------------------------- round trip


def test_dump_run_options_round_trip_with_defaults_filled_in(load, registry, tmp_path):
    options = load(ML_AGENTS_STYLE + textwrap.dedent("""
        env_settings:
          env_path: CartPole-v1
          env_args:
            render_mode: null
          num_envs: 2
          seed: 3
        checkpoint_settings:
          run_id: rt
        torch_settings:
          num_threads: 2
        """), overrides={"checkpoint_settings": {"results_dir": str(tmp_path / "r")}})
    options.behaviors["CartPole-v1"].network_settings.memory = None
    out = str(tmp_path / "configuration.yaml")
    dump_run_options(options, out)
    assert not os.path.exists(out + ".tmp")

    data = read_yaml(out)
    cart = data["behaviors"]["CartPole-v1"]
    # defaults that were never written in the source file are spelled out
    assert cart["keep_checkpoints"] == 5
    assert cart["hyperparameters"]["lambd"] == 0.95
    assert cart["hyperparameters"]["epsilon_schedule"] == "constant"
    assert cart["network_settings"]["vis_encode_type"] == "simple"
    assert cart["reward_signals"]["extrinsic"]["gamma"] == 0.995
    assert data["default_settings"]["hyperparameters"]["batch_size"] == 256
    assert data["checkpoint_settings"]["run_id"] == "rt"
    assert data["env_settings"]["num_envs"] == 2

    again = load_run_options(out, registry)
    assert again == options
    assert again.behaviors["Acrobot-v1"].time_horizon == 32
    # and it is stable: dumping the reloaded options writes the same file
    out2 = str(tmp_path / "configuration2.yaml")
    dump_run_options(again, out2)
    assert read_yaml(out2) == data


def test_dump_of_minimal_config_round_trips(load, registry, tmp_path):
    options = load("behaviors:\n  CartPole-v1:\n    hyperparameters:\n      beta: 0.02\n")
    out = str(tmp_path / "c.yaml")
    dump_run_options(options, out)
    text = open(out, encoding="utf-8").read()
    assert "time_horizon: 64" in text and "beta: 0.02" in text
    assert load_run_options(out, registry) == options


def test_loader_class_direct_use(registry):
    loader = ConfigLoader(registry, source="inline.yaml")
    options = loader.load({"behaviors": {BEHAVIOR: {"hyperparameters": {"batch_size": 32}}}})
    assert options.behaviors[BEHAVIOR].hyperparameters.batch_size == 32
    with pytest.raises(TrainerConfigError, match=r"^inline\.yaml: behaviors\.CartPole-v1"
                                                 r"\.network_settings: expected a mapping"):
        loader.load({"behaviors": {BEHAVIOR: {"network_settings": 5}}})


# ---------------------------------------------------------------------- file problems


def test_missing_config_file_names_the_file(registry, tmp_path):
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(TrainerConfigError) as info:
        load_run_options(path, registry)
    assert path in str(info.value)
    assert "not found" in str(info.value)


def test_invalid_yaml_names_the_file(write, registry):
    path = write("behaviors:\n  CartPole-v1: [unclosed\n    max_steps: 3\n")
    with pytest.raises(TrainerConfigError) as info:
        load_run_options(path, registry)
    assert path in str(info.value)
    assert "not valid YAML" in str(info.value)


# ---------------------------------------------------------------------- the real CLI


def _learn(cfg: str, results: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "palaestra", "learn", cfg, "--env", "CartPole-v1",
         "--results-dir", results, "--run-id", "x", *extra],
        capture_output=True, text=True, timeout=120)


def test_cli_bad_key_exits_1_before_writing_anything(write, tmp_path):
    cfg = write("""
        behaviors:
          CartPole-v1:
            hyperparameters:
              betta: 0.01
        """)
    results = tmp_path / "results"
    proc = _learn(cfg, str(results))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "TrainerConfigError" in proc.stderr
    assert "behaviors.CartPole-v1.hyperparameters.betta" in proc.stderr
    assert "Did you mean 'beta'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not results.exists()


def test_mlagents_features_not_implemented_are_named_as_such(write, registry):
    msg, _ = config_error(write, registry, """
        behaviors:
          CartPole-v1:
            trainer_type: ppo
            self_play:
              window: 10
        """)
    assert "behaviors.CartPole-v1.self_play" in msg
    assert "self-play is not supported by palaestra yet" in msg


def test_reward_signals_load_into_their_own_settings(load, write, registry):
    """ML-Agents' four signals, each with its own keys and defaults; the deprecated
    encoding_size sizes the network when network_settings is not given (as in ML-Agents)."""
    from palaestra.settings import CuriositySettings, GAILSettings, RNDSettings

    options = load("""
        behaviors:
          CartPole-v1:
            reward_signals:
              extrinsic: {strength: 1.0, gamma: 0.99}
              curiosity: {strength: 0.02, gamma: 0.99, encoding_size: 256}
              rnd: {strength: 0.01, network_settings: {hidden_units: 64}}
              gail: {strength: 0.01, demo_path: demos/Expert.demo, use_actions: true}
        """)
    signals = {k.value: v for k, v in options.behaviors["CartPole-v1"].reward_signals.items()}
    assert list(signals) == ["extrinsic", "curiosity", "rnd", "gail"]
    assert isinstance(signals["curiosity"], CuriositySettings)
    assert signals["curiosity"].network_settings.hidden_units == 256
    assert signals["curiosity"].learning_rate == 3.0e-4
    assert isinstance(signals["rnd"], RNDSettings) and signals["rnd"].learning_rate == 1.0e-4
    assert signals["rnd"].network_settings.hidden_units == 64
    assert isinstance(signals["gail"], GAILSettings) and signals["gail"].use_actions
    assert signals["gail"].demo_path == "demos/Expert.demo" and not signals["gail"].use_vail


@pytest.mark.parametrize("text, fragments", [
    ("reward_signals: {curiosty: {strength: 0.1}}",
     ["reward_signals.curiosty", "unknown reward signal 'curiosty'",
      "curiosity, extrinsic, gail, rnd"]),
    ("reward_signals: {gail: {strength: 0.1}}",
     ["reward_signals.gail.demo_path", "demo_path is required"]),
    ("reward_signals: {rnd: {use_actions: true}}",
     ["reward_signals.rnd.use_actions", "unknown key 'use_actions'"]),
    ("reward_signals: {curiosity: {learning_rate: -1}}",
     ["reward_signals.curiosity.learning_rate", "> 0"]),
    ("behavioral_cloning: {strength: 0.5}",
     ["behavioral_cloning.demo_path", "demo_path is required"]),
    ("behavioral_cloning: {demo_path: x.demo, steps: -5}",
     ["behavioral_cloning.steps", ">= 0"]),
])
def test_bad_reward_signal_and_cloning_settings_name_the_key(write, registry, text, fragments):
    msg, path = config_error(write, registry, "behaviors:\n  CartPole-v1:\n    " + text + "\n")
    assert path in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_recurrent_memory_is_refused_before_anything_is_written(tmp_path):
    from helpers import learn

    config = tmp_path / "lstm.yaml"
    config.write_text("behaviors:\n  CartPole-v1:\n    network_settings:\n      memory:\n"
                      "        sequence_length: 16\n        memory_size: 32\n")
    results = tmp_path / "results"
    assert learn(str(config), "--env", "CartPole-v1", "--run-id", "m",
                 "--results-dir", str(results)) == 1
    assert not results.exists()


# ------------------------------------------------- what mlagents-learn writes loads here too

MLAGENTS_RESOLVED = """
    default_settings: null
    behaviors:
      CartPole-v1:
        trainer_type: ppo
        hyperparameters:
          batch_size: 256
          buffer_size: 2048
          learning_rate: 0.0003
          beta: 0.005
          epsilon: 0.2
          lambd: 0.95
          num_epoch: 3
          shared_critic: false
          learning_rate_schedule: linear
          beta_schedule: linear
          epsilon_schedule: linear
        checkpoint_interval: 500000
        network_settings:
          normalize: false
          hidden_units: 64
          num_layers: 2
          vis_encode_type: simple
          memory: null
          goal_conditioning_type: hyper
          deterministic: false
        reward_signals:
          extrinsic:
            gamma: 0.99
            strength: 1.0
            network_settings:
              normalize: false
              hidden_units: 128
              num_layers: 2
              vis_encode_type: simple
              memory: null
              goal_conditioning_type: hyper
              deterministic: false
        init_path: null
        keep_checkpoints: 4
        even_checkpoints: true
        max_steps: 8000
        time_horizon: 64
        summary_freq: 2000
        threaded: false
        self_play: null
        behavioral_cloning: null
    env_settings:
      env_path: CartPole-v1
      env_args: null
      base_port: 5005
      num_envs: 1
      num_areas: 1
      timeout_wait: 60
      seed: 3
      max_lifetime_restarts: 10
      restarts_rate_limit_n: 1
      restarts_rate_limit_period_s: 60
    engine_settings:
      width: 84
      height: 84
      quality_level: 5
      time_scale: 20.0
      target_frame_rate: -1
      capture_frame_rate: 60
      no_graphics: false
    environment_parameters: null
    checkpoint_settings:
      run_id: ppo
      initialize_from: null
      load_model: false
      resume: false
      force: false
      train_model: false
      inference: false
      results_dir: results
    torch_settings:
      device: null
    debug: false
    """


def test_a_configuration_yaml_written_by_mlagents_learn_loads_unchanged(load, caplog):
    caplog.set_level(logging.WARNING)
    options = load(MLAGENTS_RESOLVED)
    s = options.behaviors[BEHAVIOR]
    assert s.even_checkpoints is True and s.checkpoint_interval == 500000
    assert s.checkpoint_every() == 2000  # max_steps / keep_checkpoints
    assert s.hyperparameters.batch_size == 256
    assert [r.getMessage() for r in caplog.records] == []  # nothing there to warn about


def test_even_checkpoints_follows_a_max_steps_changed_after_loading(load):
    s = load(MLAGENTS_RESOLVED).behaviors[BEHAVIOR]
    s.max_steps = 1000  # as --max-steps does
    assert s.checkpoint_every() == 250
    s.even_checkpoints = False
    assert s.checkpoint_every() == 500000


def test_null_self_play_and_behavioral_cloning_mean_off_but_settings_are_refused(
        load, write, registry):
    options = load("behaviors:\n  CartPole-v1:\n    self_play: null\n"
                   "    behavioral_cloning: null\n")
    assert options.behaviors[BEHAVIOR].behavioral_cloning is None
    msg, _ = config_error(write, registry, """
        behaviors:
          CartPole-v1:
            self_play:
              window: 10
        """)
    assert "behaviors.CartPole-v1.self_play" in msg
    assert "self-play is not supported by palaestra yet" in msg
    cloning = load("""
        behaviors:
          CartPole-v1:
            behavioral_cloning:
              demo_path: expert.demo
              strength: 0.5
              steps: 150000
        """).behaviors[BEHAVIOR].behavioral_cloning
    assert (cloning.demo_path, cloning.strength, cloning.steps) == ("expert.demo", 0.5, 150000)
    assert (cloning.samples_per_update, cloning.num_epoch, cloning.batch_size) == (0, None, None)


def test_deprecated_framework_key_is_dropped_with_a_warning(load, caplog):
    caplog.set_level(logging.WARNING)
    options = load("""
        default_settings:
          framework: pytorch
        behaviors:
          CartPole-v1:
            framework: pytorch
            trainer_type: ppo
        """)
    assert options.behaviors[BEHAVIOR].trainer_type == "ppo"
    messages = [r.getMessage() for r in caplog.records]
    assert any("behaviors.CartPole-v1.framework: deprecated ML-Agents option" in m
               for m in messages), messages


def test_environment_parameters_are_accepted_with_a_warning_that_they_are_not_applied(
        load, caplog):
    caplog.set_level(logging.WARNING)
    options = load("""
        env_settings: {env_path: CartPole-v1}
        behaviors:
          CartPole-v1: {}
        environment_parameters:
          mass:
            sampler_type: uniform
            sampler_parameters: {min_value: 0.5, max_value: 10}
          gravity: 9.81
        """)
    assert set(options.environment_parameters) == {"mass", "gravity"}
    warnings = [r.getMessage() for r in caplog.records if "environment_parameters" in r.getMessage()]
    assert len(warnings) == 1 and "mass, gravity" in warnings[0]
    assert "env_settings.env_args" in warnings[0]


def test_even_checkpoints_spreads_the_checkpoints_over_the_run(write, tmp_path):
    from helpers import learn

    config = write(MLAGENTS_RESOLVED.replace("results_dir: results",
                                             f"results_dir: {tmp_path / 'results'}"))
    assert learn(config, "--run-id", "even") == 0
    behavior_dir = tmp_path / "results" / "even" / BEHAVIOR
    steps = sorted(int(p.stem.rsplit("-", 1)[1]) for p in behavior_dir.glob(f"{BEHAVIOR}-*.pt"))
    # keep_checkpoints 4 over max_steps 8000: one each 2000 steps (a step count is a multiple
    # of the batch of steps taken at once, so each lands at or just past its mark)
    assert len(steps) == 4, steps
    for mark, step in zip((2000, 4000, 6000, 8000), steps):
        assert mark <= step < mark + 64, steps
