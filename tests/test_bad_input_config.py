"""Bad configuration input through the real `palaestra learn`: every case must stop before
training with one clear last line naming the key or the value (and no traceback), and leave
every file where it was.

Three families: the YAML file's content (unknown keys at every level, wrong types, out-of-range
and non-finite values, nulls, enums, files that are not UTF-8 text, YAML alias bombs, duplicate
keys, deep nesting, huge numbers, devices), the command line's flags, and environments that
cannot be made. Each case names the words (the key, the value) that the message must contain:
a message that names neither leaves the user searching the file.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Dict, List, Tuple

import pytest
import torch
import yaml

from badinput import project_with, refused

BEHAVIOR = "CartPole-v1"
B = f"behaviors.{BEHAVIOR}."
H = B + "hyperparameters."
N = B + "network_settings."

# A valid, tiny config: if a case below were accepted it would finish at once (and fail on its
# exit code), instead of training for minutes.
BASE: Dict[str, Any] = {
    "behaviors": {BEHAVIOR: {
        "trainer_type": "ppo",
        "hyperparameters": {"batch_size": 32, "buffer_size": 64, "learning_rate": 1.0e-3},
        "network_settings": {"hidden_units": 16, "num_layers": 1},
        "max_steps": 64,
        "time_horizon": 16,
    }},
    "env_settings": {"env_path": BEHAVIOR, "seed": 1},
}

DELETE = object()


def config(edits: Dict[str, Any]) -> str:
    """BASE with `edits` applied ("dotted.key.path" -> value, or DELETE), as YAML text."""
    data = copy.deepcopy(BASE)
    for dotted, value in edits.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return yaml.safe_dump(data, sort_keys=False)


def raw(text: str) -> str:
    """BASE as YAML text with `text` (already indented where needed) appended."""
    return yaml.safe_dump(BASE, sort_keys=False) + text


def alias_bomb(section: str, use: str) -> str:
    """"Billion laughs": nine levels of ten aliases each, 10**9 values from a file of a few
    hundred bytes. The anchors are written under `section`, and `use: *a9` after them."""
    lines = [f"{section}:", "  a0: &a0 [lol]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "\n".join(lines) + f"\n{use}: *a9\n"


def _params(cases):
    """(id, value, needles) tuples as pytest params; pytest.param entries pass through."""
    for case in cases:
        yield pytest.param(case[1], case[2], id=case[0]) if type(case) is tuple else case


NO_CUDA = not torch.cuda.is_available()
FOUR_HUNDRED_DIGITS = "1" + "0" * 399

# (id, file content, needles)
CONTENT_CASES: List[Tuple[str, Any, Tuple[str, ...]]] = [
    # unknown keys, at every level
    ("unknown-top-level-key", config({"bogus_section": 1}), ("bogus_section",)),
    ("behavior-at-top-level", config({"CartPole-v0": {"trainer_type": "ppo"}}),
     ("CartPole-v0", "behaviors")),
    ("unknown-behavior-key", config({B + "max_stpes": 10}), ("max_stpes", "max_steps")),
    ("unknown-hyperparameter", config({H + "betta": 0.01}), ("betta", "beta")),
    ("unknown-network-key", config({N + "hidden_layers": 3}), ("hidden_layers",)),
    ("unknown-reward-signal-key", config({B + "reward_signals.extrinsic.gama": 0.9}),
     ("gama",)),
    ("unknown-reward-signal", config({B + "reward_signals.extrnsic": {}}), ("extrnsic",)),
    ("unknown-env-settings-key", config({"env_settings.num_env": 2}), ("num_env",)),
    ("unknown-torch-settings-key", config({"torch_settings.devise": "cpu"}), ("devise",)),
    ("unknown-checkpoint-key", config({"checkpoint_settings.run_name": "x"}), ("run_name",)),
    ("unknown-engine-key", config({"engine_settings.fps": 30}), ("fps",)),
    ("unknown-default-settings-key", config({"default_settings.hyperparameters.bogus": 1}),
     ("default_settings", "bogus")),
    ("unsupported-gail", config({B + "reward_signals.gail": {"strength": 0.1}}), ("gail",)),
    ("unsupported-memory", config({N + "memory": {"memory_size": 64, "sequence_length": 16}}),
     ("memory", "recurrent")),
    # wrong types
    ("hidden-units-word", config({N + "hidden_units": "many"}), ("hidden_units", "many")),
    ("hidden-units-bool", config({N + "hidden_units": True}), ("hidden_units",)),
    ("learning-rate-list", config({H + "learning_rate": [0.1]}), ("learning_rate",)),
    ("batch-size-mapping", config({H + "batch_size": {"a": 1}}), ("batch_size",)),
    ("num-epoch-fraction", config({H + "num_epoch": 2.5}), ("num_epoch", "2.5")),
    ("normalize-number", config({N + "normalize": 3}), ("normalize",)),
    ("debug-word", config({"debug": "maybe"}), ("debug", "maybe")),
    ("env-path-list", config({"env_settings.env_path": ["a", "b"]}), ("env_path",)),
    ("reward-signals-number", config({B + "reward_signals": 7}), ("reward_signals",)),
    ("torch-settings-number", config({"torch_settings": 5}), ("torch_settings",)),
    ("behaviors-list", "behaviors: [a, b]\n", ("behaviors",)),
    ("behavior-body-number", config({"behaviors": {BEHAVIOR: 5}}), (BEHAVIOR,)),
    ("behavior-body-list", config({"behaviors": {BEHAVIOR: []}}), (BEHAVIOR,)),
    ("hyperparameters-zero", config({B + "hyperparameters": 0}), ("hyperparameters",)),
    ("hyperparameters-word", config({B + "hyperparameters": "fast"}), ("hyperparameters",)),
    ("max-steps-bool", config({B + "max_steps": True}), ("max_steps",)),
    # out of range, negative counts
    ("gamma-above-one", config({B + "reward_signals.extrinsic.gamma": 1.5}), ("gamma", "1.5")),
    ("negative-beta", config({H + "beta": -0.1}), ("beta", "-0.1")),
    ("lambd-two", config({H + "lambd": 2}), ("lambd",)),
    ("zero-learning-rate", config({H + "learning_rate": 0}), ("learning_rate",)),
    ("zero-num-envs", config({"env_settings.num_envs": 0}), ("num_envs",)),
    ("negative-time-horizon", config({B + "time_horizon": -5}), ("time_horizon", "-5")),
    ("negative-batch-size", config({H + "batch_size": -1}), ("batch_size",)),
    ("zero-keep-checkpoints", config({B + "keep_checkpoints": 0}), ("keep_checkpoints",)),
    ("negative-buffer-init-steps",
     config({B + "trainer_type": "sac", H + "buffer_init_steps": -1}), ("buffer_init_steps",)),
    ("negative-max-steps", config({B + "max_steps": -10}), ("max_steps",)),
    # null where a value is required
    ("null-time-horizon", config({B + "time_horizon": None}), ("time_horizon", "null")),
    ("null-trainer-type", config({B + "trainer_type": None}), ("trainer_type",)),
    ("null-max-steps", config({B + "max_steps": None}), ("max_steps", "null")),
    ("null-results-dir", config({"checkpoint_settings.results_dir": None}), ("results_dir",)),
    ("null-network-settings", config({B + "network_settings": None}), ("network_settings",)),
    ("null-hidden-units", config({N + "hidden_units": None}), ("hidden_units", "null")),
    # enums and trainer types
    ("bad-encoder", config({N + "vis_encode_type": "potato"}), ("vis_encode_type", "potato")),
    ("bad-schedule", config({H + "learning_rate_schedule": "cosine"}),
     ("learning_rate_schedule", "cosine")),
    ("bad-activation", config({N + "activation": "gelu"}), ("activation", "gelu")),
    ("bad-worker-sync", config({"env_settings.worker_sync": "sometimes"}),
     ("worker_sync", "sometimes", "all, ready")),
    ("unknown-trainer-type", config({B + "trainer_type": "ppo2"}), ("ppo2",)),
    ("trainer-type-number", config({B + "trainer_type": 5}), ("trainer_type",)),
    # non-finite numbers
    ("nan-learning-rate", config({H + "learning_rate": float("nan")}), ("learning_rate", "nan")),
    ("inf-gamma", config({B + "reward_signals.extrinsic.gamma": float("inf")}), ("gamma",)),
    ("minus-inf-max-steps", config({B + "max_steps": float("-inf")}), ("max_steps",)),
    ("nan-strength", config({B + "reward_signals.extrinsic.strength": float("nan")}),
     ("strength",)),
    ("huge-float-string", config({H + "learning_rate": "1e400"}), ("learning_rate",)),
    # sizes that would exhaust memory or the machine
    ("hidden-units-1e8", raw("").replace("hidden_units: 16", "hidden_units: 1e8"),
     ("hidden_units", "<=")),
    ("num-layers-1e6", config({N + "num_layers": 1e6}), ("num_layers", "<=")),
    ("num-envs-1e8", config({"env_settings.num_envs": 1e8}), ("num_envs", "<=")),
    ("num-threads-100000", config({"torch_settings.num_threads": 100000}),
     ("num_threads", "<=")),
    ("buffer-size-1e9", config({H + "buffer_size": 10 ** 9}), ("buffer_size", "<=")),
    ("batch-size-1e8", config({H + "batch_size": 10 ** 8}), ("batch_size", "<=")),
    ("time-horizon-1e9", config({B + "time_horizon": 10 ** 9}), ("time_horizon", "<=")),
    ("keep-checkpoints-1e9", config({B + "keep_checkpoints": 10 ** 9}),
     ("keep_checkpoints", "<=")),
    ("num-epoch-1e9", config({H + "num_epoch": 10 ** 9}), ("num_epoch", "<=")),
    ("steps-per-update-tiny", config({B + "trainer_type": "sac", H + "steps_per_update": 1e-12}),
     ("steps_per_update", ">=")),
    ("seed-beyond-int32", config({"env_settings.seed": 2 ** 40}), ("seed", "<=")),
    # ML-Agents' run-without-training mode with no trained weights named: refused
    ("inference-true", config({"checkpoint_settings.inference": True}),
     ("inference", "--resume", "--initialize-from")),
    ("accel-unknown", config({"torch_settings.accel": "fast"}), ("accel", "auto", "off")),
    # numbers too long for any machine word
    ("400-digit-hidden-units",
     raw("").replace("hidden_units: 16", f"hidden_units: {FOUR_HUNDRED_DIGITS}"),
     ("hidden_units", "<=")),
    ("400-digit-base-port", config({"env_settings.base_port": int(FOUR_HUNDRED_DIGITS)}),
     ("base_port",)),
    ("400-digit-learning-rate",
     raw("").replace("learning_rate: 0.001", f"learning_rate: {FOUR_HUNDRED_DIGITS}"),
     ("learning_rate",)),
    ("5000-digit-integer", raw(f"environment_parameters:\n  n: {'9' * 5000}\n"), ("digits",)),
    ("5000-digit-hex-integer", raw(f"environment_parameters:\n  n: 0x{'f' * 5000}\n"),
     ("digits",)),
    ("impossible-date", raw("environment_parameters:\n  start: 2001-13-45\n"),
     ("2001-13-45",)),
    ("float-tag-on-a-word", raw("environment_parameters:\n  x: !!float abc\n"), ("abc",)),
    # devices
    ("device-potato", config({"torch_settings.device": "potato"}), ("device", "potato")),
    ("device-cuda-99", config({"torch_settings.device": "cuda:99"}), ("device", "cuda:99")),
    ("device-meta", config({"torch_settings.device": "meta"}), ("device", "meta")),
    ("device-number", config({"torch_settings.device": 5}), ("device", "5")),
    ("device-negative-index", config({"torch_settings.device": "cuda:-1"}), ("cuda:-1",)),
    pytest.param(config({"torch_settings.device": "cuda"}), ("device", "CUDA"),
                 id="device-cuda-without-cuda",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="has CUDA")),
    # env_args shapes
    ("env-args-string", config({"env_settings.env_args": "length=3"}), ("env_args",)),
    ("env-args-number", config({"env_settings.env_args": 5}), ("env_args",)),
    ("env-args-nested-list", config({"env_settings.env_args": [[1, 2]]}), ("env_args",)),
    ("env-args-without-equals", config({"env_settings.env_args": ["noequals"]}),
     ("noequals",)),
    ("env-args-unknown-kwarg", config({"env_settings.env_args": {"bogus_kwarg": 1}}),
     ("bogus_kwarg",)),
    # files that are not a YAML mapping
    ("binary-file", bytes(range(256)) * 4, ("binary",)),
    ("latin-1-file", raw("# Réglages d'entraînement\n").encode("latin-1"), ("UTF-8",)),
    ("control-character", raw("# \x01\n"), ("character",)),
    # no environment: the Unity Editor, as mlagents-learn; its refusal names --env too
    ("no-env-no-editor", "# nothing here yet\nenv_settings: {timeout_wait: 1}\n",
     ("Editor", "--env", "env_path")),
    ("top-level-list", "- behaviors\n- env_settings\n", ("mapping", "list")),
    ("top-level-number", "42\n", ("mapping",)),
    ("far-too-large-file", "# padding\n" * (2 * 2 ** 20), ("MiB",)),
    ("syntax-error", raw("behaviors: [unclosed\n"), ("line",)),
    ("two-documents", raw("---\ndebug: true\n"), ("document",)),
    ("undefined-alias", raw("debug: *nope\n"), ("nope",)),
    ("python-tag", raw("debug: !!python/object/apply:os.system ['true']\n"),
     ("python/object",)),
    ("unhashable-key", raw("environment_parameters:\n  ? [a, b]\n  : 1\n"), ("unhashable",)),
    # aliases, duplicates, nesting
    ("alias-bomb", alias_bomb("x_anchors", "behaviors"), ("alias",)),
    ("alias-bomb-environment-parameters", raw(alias_bomb("environment_parameters", "  lol")),
     ("alias",)),
    ("recursive-alias", raw("environment_parameters: &loop\n  again: *loop\n"), ("alias",)),
    ("duplicate-key",
     raw("").replace("hidden_units: 16", "hidden_units: 16\n      hidden_units: 32"),
     ("duplicate", "hidden_units")),
    ("duplicate-behavior", raw("").replace("env_settings:", f"  {BEHAVIOR}:\n    max_steps: 5\n"
                                                          "env_settings:"),
     ("duplicate", BEHAVIOR)),
    ("duplicate-section", raw("env_settings:\n  num_envs: 2\n"), ("duplicate", "env_settings")),
    ("deep-flow-nesting", raw("environment_parameters: " + "[" * 5000 + "]" * 5000 + "\n"),
     ("nested",)),
    ("deep-block-nesting",
     raw("environment_parameters:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(300))
         + "  " * 301 + "end\n"), ("nested",)),
]


@pytest.mark.parametrize("content,needles", list(_params(CONTENT_CASES)))
def test_bad_config_content_is_refused_naming_it(tmp_path, capsys, content, needles):
    project = project_with(tmp_path, {"cfg.yaml": content})
    refused(project, ["learn", "cfg.yaml", "--run-id", "r"], capsys, *needles)


# (id, extra files, argv after `learn`, needles)
CLI_CASES = [
    ("num-envs-zero", ["cfg.yaml", "--num-envs", "0"], ("num_envs",)),
    ("num-envs-1e8", ["cfg.yaml", "--num-envs", "1e8"], ("--num-envs", "1e8")),
    ("num-envs-huge", ["cfg.yaml", "--num-envs", "100000000"], ("num_envs", "<=")),
    ("seed-word", ["cfg.yaml", "--seed", "abc"], ("--seed", "abc")),
    ("seed-huge", ["cfg.yaml", "--seed", FOUR_HUNDRED_DIGITS], ("seed", "<=")),
    ("max-steps-negative", ["cfg.yaml", "--max-steps", "-1"], ("--max-steps",)),
    ("max-steps-nan", ["cfg.yaml", "--max-steps", "nan"], ("--max-steps", "nan")),
    ("max-steps-fraction", ["cfg.yaml", "--max-steps", "1.5"], ("--max-steps", "1.5")),
    ("max-steps-huge", ["cfg.yaml", "--max-steps", "1e30"], ("--max-steps",)),
    ("unknown-flag", ["cfg.yaml", "--bogus-flag", "2"], ("--bogus-flag",)),
    ("device-potato", ["cfg.yaml", "--torch-device", "potato"], ("--torch-device", "potato")),
    ("device-cuda-99", ["cfg.yaml", "--torch-device", "cuda:99"], ("cuda:99",)),
    pytest.param(["cfg.yaml", "--torch-device", "cuda"], ("--torch-device", "CUDA"),
                 id="device-cuda-without-cuda",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="has CUDA")),
    ("missing-config-file", ["missing.yaml"], ("missing.yaml",)),
    ("config-is-a-directory", ["a_folder"], ("a_folder", "directory")),
    pytest.param(["/dev/zero"], ("/dev/zero", "regular file"), id="config-is-a-device",
                 marks=pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev")),
    ("resume-without-run", ["cfg.yaml", "--resume"], ("resume",)),
    ("resume-and-force", ["cfg.yaml", "--resume", "--force"], ("resume", "force")),
    ("initialize-from-missing-run", ["cfg.yaml", "--initialize-from", "nope"], ("nope",)),
    ("env-args-without-equals", ["cfg.yaml", "--env-args", "noequals"], ("noequals",)),
    ("env-args-not-yaml", ["cfg.yaml", "--env-args", "k=[unclosed"], ("k=[unclosed",)),
    ("env-args-alias", ["cfg.yaml", "--env-args", "k=*nope"], ("nope",)),
    ("no-config-and-no-environment", ["--timeout-wait", "1"], ("Editor", "--env")),
]


@pytest.mark.parametrize("argv,needles", list(_params(CLI_CASES)))
def test_bad_command_line_is_refused_naming_it(tmp_path, capsys, argv, needles):
    project = project_with(tmp_path, {"cfg.yaml": config({})})
    os.makedirs(os.path.join(project, "a_folder"))
    # --run-id first: --env-args takes every argument after it.
    refused(project, ["learn", "--run-id", "r", *argv], capsys, *needles)


@pytest.mark.parametrize("argv,needles", [
    pytest.param(["lern", "cfg.yaml"], ("lern",), id="unknown-command"),
    pytest.param([], ("command",), id="no-command"),
])
def test_bad_command_is_refused_naming_it(tmp_path, capsys, argv, needles):
    project = project_with(tmp_path, {"cfg.yaml": config({})})
    refused(project, argv, capsys, *needles)


ENV_CASES = [
    ("no-such-module", ["--env", "no_such_module:f"], ("no_such_module",)),
    ("no-such-gymnasium-id", ["--env", "CartPole-v999"], ("CartPole-v999",)),
    ("factory-raises", ["--env", "envs_for_tests:failing_factory"], ("failing_factory",)),
    ("no-such-factory", ["--env", "envs_for_tests:no_such_factory"], ("no_such_factory",)),
    ("not-callable", ["--env", "envs_for_tests:NOT_CALLABLE"], ("NOT_CALLABLE",)),
    ("factory-returns-no-env", ["--env", "envs_for_tests:not_an_env"], ("not_an_env",)),
    ("text-observations", ["--env", "envs_for_tests:text_obs_env"], ("observation", "Text")),
    ("graph-actions", ["--env", "envs_for_tests:graph_action_env"], ("action", "Graph")),
    ("empty-factory-name", ["--env", "envs_for_tests:"], ("envs_for_tests:",)),
    ("no-such-pettingzoo-module", ["--env", "pettingzoo:no_such_pz:f"], ("no_such_pz",)),
    ("builtin-unknown-env-arg", ["--env", "3DBall", "--env-args", "bogus_kwarg=1"],
     ("bogus_kwarg",)),
    ("gymnasium-unknown-env-arg", ["--env", "CartPole-v1", "--env-args", "bogus_kwarg=1"],
     ("bogus_kwarg",)),
]


@pytest.mark.parametrize("argv,needles", [pytest.param(a, n, id=i) for i, a, n in ENV_CASES])
def test_an_environment_that_cannot_be_made_is_named(tmp_path, capsys, argv, needles):
    # default_settings: whatever behavior name the environment has, the config covers it.
    project = project_with(tmp_path, {"cfg.yaml": config({
        "default_settings": BASE["behaviors"][BEHAVIOR], "env_settings.env_path": DELETE})})
    refused(project, ["learn", "cfg.yaml", "--run-id", "r", *argv], capsys, *needles)


def test_a_behavior_the_config_does_not_name_is_named(tmp_path, capsys):
    project = project_with(tmp_path, {"cfg.yaml": config({
        "behaviors": {"Other": BASE["behaviors"][BEHAVIOR]}})})
    refused(project, ["learn", "cfg.yaml", "--run-id", "r"], capsys, BEHAVIOR)


def test_a_normal_ml_agents_config_with_anchors_and_merge_keys_still_loads(tmp_path):
    """Anchors, aliases and `<<` merges are ordinary YAML: only their explosion is refused, and
    a key that a merge brings in may be overridden (that is not a duplicate)."""
    from palaestra.config import load_run_options
    from palaestra.registry import TrainerRegistry

    path = tmp_path / "anchors.yaml"
    path.write_text("""\
behaviors:
  A: &ppo
    trainer_type: ppo
    hyperparameters: {batch_size: 64, buffer_size: 2048000}
    network_settings: &net {hidden_units: 64, num_layers: 2}
    max_steps: 5.0e6
  B:
    <<: *ppo
    time_horizon: 1000
    max_steps: 2.0e6
  C:
    network_settings: *net
env_settings: {env_path: CartPole-v1, num_envs: 64}
""")
    options = load_run_options(str(path), TrainerRegistry.from_entry_points())
    assert options.behaviors["B"].time_horizon == 1000
    assert options.behaviors["B"].max_steps == 2_000_000
    assert options.behaviors["A"].hyperparameters.buffer_size == 2_048_000
    assert options.behaviors["C"].network_settings.hidden_units == 64


class _FakeCuda:
    """What `torch.cuda` answers on a machine with `count` GPUs (this test machine may have none,
    and the device check must be right on one that has)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def is_available(self) -> bool:
        return self.count > 0

    def device_count(self) -> int:
        return self.count


@pytest.mark.parametrize("device,count,needles", [
    ("cuda:2", 2, ("cuda:2", "2 CUDA device", "cuda:1")),
    ("cuda", 0, ("cuda", "no CUDA device is available")),
    ("cuda:0", 0, ("cuda:0", "no CUDA device is available")),
])
def test_a_cuda_device_this_machine_lacks_is_refused(tmp_path, monkeypatch, device, count,
                                                     needles):
    from palaestra.config import load_run_options
    from palaestra.exception import TrainerConfigError
    from palaestra.registry import TrainerRegistry

    monkeypatch.setattr(torch.version, "cuda", "12.1")
    monkeypatch.setattr(torch, "cuda", _FakeCuda(count))
    path = tmp_path / "cfg.yaml"
    path.write_text(config({"torch_settings.device": device}))
    with pytest.raises(TrainerConfigError) as info:
        load_run_options(str(path), TrainerRegistry.from_entry_points())
    for needle in ("torch_settings.device", *needles):
        assert needle in str(info.value)


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:1"])
def test_the_devices_a_machine_has_are_accepted(tmp_path, monkeypatch, device):
    from palaestra.config import load_run_options
    from palaestra.registry import TrainerRegistry

    monkeypatch.setattr(torch.version, "cuda", "12.1")
    monkeypatch.setattr(torch, "cuda", _FakeCuda(2))
    path = tmp_path / "cfg.yaml"
    path.write_text(config({"torch_settings.device": device}))
    options = load_run_options(str(path), TrainerRegistry.from_entry_points())
    assert options.torch_settings.device == device


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_config_saved_with_a_byte_order_mark_loads(tmp_path, encoding):
    """Windows editors save UTF-8 with a BOM, or UTF-16: that is text, not a binary file."""
    from palaestra.config import load_run_options
    from palaestra.registry import TrainerRegistry

    path = tmp_path / "cfg.yaml"
    path.write_bytes(config({}).encode(encoding))
    options = load_run_options(str(path), TrainerRegistry.from_entry_points())
    assert options.behaviors[BEHAVIOR].network_settings.hidden_units == 16
