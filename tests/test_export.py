"""ONNX export (palaestra.export): ML-Agents' input/output names and constants, and the same
deterministic actions as the torch policy, checked with onnxruntime."""
import os

import numpy as np
import pytest
import torch

from helpers import learn
from palaestra import (ActionSpec, AgentBuffer, BehaviorSpec, DecisionSteps, NetworkSettings,
                       ObservationSpec, SharedActorCritic, SimpleActor, TorchPolicy, obs_key)
from palaestra.envs.base import ObservationKind
from palaestra.export import onnx_bytes

ort = pytest.importorskip("onnxruntime")
ROWS = 1000


@pytest.fixture(autouse=True)
def _exports_on(monkeypatch):
    monkeypatch.delenv("PALAESTRA_NO_ONNX", raising=False)  # conftest turns them off elsewhere


def _policy(action_spec, obs_specs, actor=SimpleActor, tanh=False, **actor_kwargs):
    spec = BehaviorSpec(obs_specs, action_spec)
    ns = NetworkSettings(hidden_units=32, num_layers=2, normalize=True)
    kwargs = {"conditional_sigma": tanh, "tanh_squash": tanh, **actor_kwargs}
    policy = TorchPolicy(3, spec, ns, actor, kwargs)
    rng = np.random.default_rng(0)
    buf = AgentBuffer()  # a normaliser that has seen data: the export must bake it in
    for i, o in enumerate(obs_specs):
        buf[obs_key(i)] = (rng.normal(size=(64, *o.shape)) * 3 + 1).astype(np.float32)
    policy.update_normalization(buf)
    with torch.no_grad():  # heads that are not near zero, so that actions differ
        for p in policy.actor.action_model.parameters():
            p.normal_(0.0, 0.3)
    return policy


def _session(policy):
    return ort.InferenceSession(onnx_bytes(policy.actor, policy.behavior_spec),
                                providers=["CPUExecutionProvider"])


def _observations(policy, rng):
    return [rng.normal(size=(ROWS, *o.shape)).astype(np.float32) * 2
            for o in policy.behavior_spec.observation_specs]


def _feed(policy, obs, masks):
    feed = {}
    for i, (o, spec) in enumerate(zip(obs, policy.behavior_spec.observation_specs)):
        feed[f"obs_{i}"] = np.ascontiguousarray(o.transpose(0, 3, 1, 2)) if len(spec.shape) == 3 \
            else o
    if masks is not None:
        feed["action_masks"] = masks.astype(np.float32)
    return feed


def _masks(policy, rng):
    branches = policy.behavior_spec.action_spec.discrete_branches
    if not branches:
        return None
    parts = []
    for n in branches:
        m = rng.random((ROWS, n)) < 0.6
        m[np.arange(ROWS), rng.integers(0, n, ROWS)] = True  # at least one allowed
        parts.append(m)
    return np.concatenate(parts, 1)


def _torch_deterministic(policy, obs, masks):
    policy.actor.action_model.deterministic = True
    info = policy.get_action(DecisionSteps(obs, np.zeros(ROWS, np.float32), np.arange(ROWS),
                                           masks))
    policy.actor.action_model.deterministic = False
    return info.env_action


CASES = {
    "continuous (3DBall)": dict(action_spec=ActionSpec.create_continuous(2),
                                obs_specs=[ObservationSpec((8,))]),
    "discrete with masks": dict(action_spec=ActionSpec.create_discrete((5, 3)),
                                obs_specs=[ObservationSpec((6,)), ObservationSpec((2,))]),
    "hybrid": dict(action_spec=ActionSpec(2, (4,)), obs_specs=[ObservationSpec((5,))]),
    "tanh-squashed (SAC)": dict(action_spec=ActionSpec.create_continuous(3),
                                obs_specs=[ObservationSpec((4,))], tanh=True),
    "shared critic, visual": dict(action_spec=ActionSpec.create_discrete((3,)),
                                  obs_specs=[ObservationSpec((3,)),
                                             ObservationSpec((24, 20, 2), ObservationKind.VISUAL)],
                                  actor=SharedActorCritic, stream_names=["extrinsic"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_deterministic_actions_match_the_torch_policy(case):
    policy = _policy(**CASES[case])
    session = _session(policy)
    rng = np.random.default_rng(1)
    obs, masks = _observations(policy, rng), _masks(policy, rng)
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, _feed(policy, obs, masks))))
    want = _torch_deterministic(policy, obs, masks)
    spec = policy.behavior_spec.action_spec
    if spec.continuous_size:
        np.testing.assert_allclose(out["deterministic_continuous_actions"], want.continuous,
                                   rtol=1e-5, atol=1e-5)
        assert np.all(np.abs(out["continuous_actions"]) <= 1.0)
    if spec.discrete_branches:
        np.testing.assert_array_equal(out["deterministic_discrete_actions"], want.discrete)
        sampled = out["discrete_actions"]
        offsets = np.cumsum([0, *spec.discrete_branches[:-1]])
        allowed = masks[np.arange(ROWS)[:, None], sampled + offsets]
        assert allowed.all(), "a sampled action was masked"


@pytest.mark.parametrize("case", ["continuous (3DBall)", "discrete with masks", "hybrid"])
def test_names_and_constants_are_ml_agents(case):
    policy = _policy(**CASES[case])
    session = _session(policy)
    spec = policy.behavior_spec.action_spec
    inputs = [i.name for i in session.get_inputs()]
    assert inputs == [f"obs_{i}" for i in range(len(policy.behavior_spec.observation_specs))] + \
        (["action_masks"] if spec.discrete_branches else [])
    rng = np.random.default_rng(2)
    obs, masks = _observations(policy, rng), _masks(policy, rng)
    out = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, _feed(policy, obs, masks))))
    expected = ["version_number", "memory_size"]
    if spec.continuous_size:
        expected += ["continuous_actions", "continuous_action_output_shape",
                     "deterministic_continuous_actions"]
        assert out["continuous_action_output_shape"].tolist() == [spec.continuous_size]
        assert out["continuous_actions"].shape == (ROWS, spec.continuous_size)
    if spec.discrete_branches:
        expected += ["discrete_actions", "discrete_action_output_shape",
                     "deterministic_discrete_actions"]
        assert out["discrete_action_output_shape"].tolist() == [list(spec.discrete_branches)]
        assert out["discrete_actions"].shape == (ROWS, len(spec.discrete_branches))
    assert list(out) == expected
    assert out["version_number"].tolist() == [3.0] and out["memory_size"].tolist() == [0.0]


def _short_run(tmp_path, run_id, steps, keep=None):
    """A 3DBall PPO run checkpointing every 1200 steps; returns its folder."""
    config = tmp_path / f"{run_id}.yaml"
    config.write_text("behaviors:\n  3DBall:\n    trainer_type: ppo\n"
                      + (f"    keep_checkpoints: {keep}\n" if keep else "")
                      + "    checkpoint_interval: 1200\n    summary_freq: 1200\n"
                      "    hyperparameters: {buffer_size: 1200, batch_size: 120}\n")
    assert learn(str(config), "--env", "3DBall", "--run-id", run_id, "--results-dir",
                 str(tmp_path), "--max-steps", str(steps), "--seed", "1") == 0
    return tmp_path / run_id


def test_a_run_exports_each_checkpoint_and_the_latest_beside_the_behavior(tmp_path):
    folder = _short_run(tmp_path, "k", 6000, keep=2) / "3DBall"
    steps = sorted(int(p.stem.split("-")[1]) for p in folder.glob("3DBall-*.pt"))
    onnx_steps = sorted(int(p.stem.split("-")[1]) for p in folder.glob("3DBall-*.onnx"))
    assert len(steps) == 2 and onnx_steps == steps  # rotated with keep_checkpoints
    latest = tmp_path / "k" / "3DBall.onnx"
    assert latest.read_bytes() == (folder / f"3DBall-{steps[-1]}.onnx").read_bytes()
    session = ort.InferenceSession(str(latest), providers=["CPUExecutionProvider"])
    out = session.run(["deterministic_continuous_actions"],
                      {"obs_0": np.zeros((3, 8), np.float32)})[0]
    assert out.shape == (3, 2) and np.all(np.abs(out) <= 1.0)


def test_without_onnx_the_run_warns_once_and_keeps_its_checkpoints(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("palaestra.export.onnx_available", lambda: False)
    _short_run(tmp_path, "n", 3600)
    assert not list(tmp_path.rglob("*.onnx"))
    assert list((tmp_path / "n" / "3DBall").glob("3DBall-*.pt"))
    warnings = [r for r in caplog.records if "no ONNX export" in r.getMessage()]
    assert len(warnings) == 1 and "palaestra[onnx]" in warnings[0].getMessage()
    assert os.path.isfile(tmp_path / "n" / "3DBall" / "checkpoint.pt")


def test_palaestra_no_onnx_exports_nothing_and_says_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PALAESTRA_NO_ONNX", "1")
    _short_run(tmp_path, "q", 2400)
    assert not list(tmp_path.rglob("*.onnx"))
    assert not [r for r in caplog.records if "ONNX" in r.getMessage()]
