"""palaestra.load_policy: a trained policy acting outside a run, from its checkpoint or its
ONNX export, with the same deterministic actions either way."""
import os

import numpy as np
import pytest
import torch

import palaestra
from helpers import learn
from palaestra import CheckpointError, PalaestraError

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A short 3DBall run (continuous) and a short Basic run (discrete), with ONNX exports."""
    old = os.environ.pop("PALAESTRA_NO_ONNX", None)
    root = tmp_path_factory.mktemp("runs")
    try:
        for env, run_id in (("3DBall", "ball"), ("Basic", "basic")):
            config = root / f"{run_id}.yaml"
            config.write_text(f"behaviors:\n  {env}:\n    trainer_type: ppo\n"
                              "    checkpoint_interval: 1200\n    summary_freq: 1200\n"
                              "    hyperparameters: {buffer_size: 1200, batch_size: 120}\n")
            assert learn(str(config), "--env", env, "--run-id", run_id, "--results-dir",
                         str(root), "--max-steps", "2400", "--seed", "1") == 0
    finally:
        if old is not None:
            os.environ["PALAESTRA_NO_ONNX"] = old
    return root


def _obs(policy, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, *o.shape)).astype(np.float32) * 2
            for o in policy.behavior_spec.observation_specs]


def test_checkpoint_and_onnx_act_alike_on_3dball(runs):
    from_pt = palaestra.load_policy(runs / "ball")  # a run folder with one behavior
    from_onnx = palaestra.load_policy(runs / "ball" / "3DBall.onnx")
    assert from_pt.behavior_spec == from_onnx.behavior_spec
    obs = _obs(from_pt, 1000)
    a, b = from_pt.act(obs[0]), from_onnx.act(obs[0])
    assert a.shape == (1000, 2) and np.all(np.abs(a) <= 1.0)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    single = from_pt.act(obs[0][0])
    assert single.shape == (2,)
    np.testing.assert_allclose(single, a[0], rtol=1e-6, atol=1e-6)
    sampled = from_onnx.act(obs[0], deterministic=False)
    assert sampled.shape == (1000, 2) and not np.allclose(sampled, b)


def test_discrete_actions_respect_masks_from_either_file(runs):
    from_pt = palaestra.load_policy(runs / "basic" / "Basic" / "checkpoint.pt")
    from_onnx = palaestra.load_policy(runs / "basic" / "Basic.onnx")
    branches = from_pt.behavior_spec.action_spec.discrete_branches
    obs = _obs(from_pt, 500, seed=1)
    rng = np.random.default_rng(2)
    mask = rng.random((500, sum(branches))) < 0.5
    mask[np.arange(500), rng.integers(0, branches[0], 500)] = True
    a = from_pt.act(obs if len(obs) > 1 else obs[0], action_mask=mask)
    b = from_onnx.act(obs if len(obs) > 1 else obs[0], action_mask=mask)
    np.testing.assert_array_equal(a, b)
    assert mask[np.arange(500), a[:, 0]].all()
    for sampled in (from_pt.act(obs if len(obs) > 1 else obs[0], mask, deterministic=False),
                    from_onnx.act(obs if len(obs) > 1 else obs[0], mask, deterministic=False)):
        assert mask[np.arange(500), sampled[:, 0]].all()


def test_bad_paths_and_shapes_are_named(runs, tmp_path):
    with pytest.raises(PalaestraError, match="no such file"):
        palaestra.load_policy(tmp_path / "missing")
    with pytest.raises(PalaestraError, match="2 behaviors"):
        palaestra.load_policy(runs)
    with pytest.raises(PalaestraError, match="has: 3DBall"):
        palaestra.load_policy(runs / "ball", behavior="Walker")
    policy = palaestra.load_policy(runs / "ball", behavior="3DBall")
    with pytest.raises(ValueError, match="shape"):
        policy.act(np.zeros((4, 5), np.float32))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not an ONNX model"):
        palaestra.load_policy(junk)


def test_a_checkpoint_naming_a_foreign_actor_class_is_refused(runs, tmp_path):
    saved = torch.load(runs / "ball" / "3DBall" / "checkpoint.pt", weights_only=True)
    saved["policy"]["actor"] = "os.system"
    bad = tmp_path / "bad.pt"
    torch.save(saved, bad)
    with pytest.raises(CheckpointError, match="cannot be rebuilt"):
        palaestra.load_policy(bad)
    del saved["policy"]
    torch.save(saved, bad)
    with pytest.raises(CheckpointError, match="does not describe its policy"):
        palaestra.load_policy(bad)

