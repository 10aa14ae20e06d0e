"""`palaestra record`: a scripted or trained policy's episodes written as an ML-Agents .demo
file that `load_demonstrations` reads back with the environment's spec and rewards."""
import os
import re

import numpy as np
import pytest

import palaestra
from helpers import REPO
from palaestra.buffer import BufferKey, next_obs_key, obs_key
from palaestra.cli import main
from palaestra.demo import load_demonstrations
from palaestra.envs import make_environment
from palaestra.exception import PalaestraError
from palaestra.play import play
from palaestra.record import record

WALK = [-0.01] * 6 + [0.99]  # Basic: seven steps right from 10 reach the large goal at 17


def walk_right(obs, action_mask):
    """Basic's best policy: branch 0, action 2 (right) for every agent."""
    assert len(obs) == 1 and obs[0].shape[1:] == (20,) and action_mask is None
    return np.full((obs[0].shape[0], 1), 2)


def wrong_shape(obs, action_mask):
    return np.zeros((obs[0].shape[0], 5))


def fails(obs, action_mask):
    raise KeyError("no such key")


def push_hard(obs, action_mask):
    """Pendulum: a torque beyond the action range, which is clipped to [-1, 1]."""
    return np.where(obs[0][:, 1:2] > 0, 3.0, -0.25).astype(np.float32)


def test_a_scripted_policy_on_basic_writes_every_episode(tmp_path, capsys):
    out = tmp_path / "walk.demo"
    assert main(["record", "--policy", "test_record:walk_right", "--env", "Basic",
                 "--episodes", "4", "-o", str(out), "--name", "walker"]) == 0
    printed = capsys.readouterr().out
    assert f"Basic: 4 episodes (28 decisions) written to {out}. Mean return 0.930" in printed

    demo = load_demonstrations(out)
    spec = make_environment("Basic").behavior_specs["Basic"]
    assert demo.spec == spec and demo.behavior_name == "Basic" and demo.name == "walker"
    assert (demo.episodes, demo.steps) == (4, 28)
    np.testing.assert_allclose(demo.returns, [0.93] * 4, atol=1e-6)
    assert demo.mean_reward == pytest.approx(0.93, abs=1e-6)
    assert demo.metas[0][2:] == ("walker", 32, 4, pytest.approx(0.93, abs=1e-6))
    buf = demo.buffer
    np.testing.assert_allclose(buf[BufferKey.ENVIRONMENT_REWARDS], WALK * 4, atol=1e-6)
    np.testing.assert_array_equal(buf[BufferKey.DONE], ([0.0] * 6 + [1.0]) * 4)
    assert not buf[BufferKey.INTERRUPTED].any()
    np.testing.assert_array_equal(buf[BufferKey.DISCRETE_ACTION], np.full((28, 1), 2))
    assert buf[BufferKey.ACTION_MASK].all() and buf[BufferKey.CONTINUOUS_ACTION].shape == (28, 0)
    # the one-hot position: 10, 11, ..., 16 at the decisions, then 11, ..., 17
    np.testing.assert_array_equal(buf[obs_key(0)].argmax(axis=1), list(range(10, 17)) * 4)
    np.testing.assert_array_equal(buf[next_obs_key(0)].argmax(axis=1), list(range(11, 18)) * 4)

    # the file is never replaced without --force
    before = out.read_bytes()
    assert main(["record", "--policy", "test_record:walk_right", "--env", "Basic",
                 "--episodes", "2", "-o", str(out)]) == 1
    assert "exists; give --force to replace it" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["record", "--policy", "test_record:walk_right", "--env", "Basic",
                 "--episodes", "2", "-o", str(out), "--force"]) == 0
    assert load_demonstrations(out).episodes == 2
    assert sorted(os.listdir(tmp_path)) == ["walk.demo"]  # no temporary file left


def test_a_gymnasium_scripted_policy_records_clipped_continuous_actions(tmp_path):
    out = tmp_path / "pendulum.demo"
    result = record(policy=push_hard, env="Pendulum-v1", episodes=2, output=str(out), seed=1)
    demo = load_demonstrations(out)
    assert (demo.episodes, demo.steps, demo.behavior_name) == (2, 400, "Pendulum-v1")
    assert demo.spec.action_spec.continuous_size == 1
    actions = demo.buffer[BufferKey.CONTINUOUS_ACTION][:, 0]
    velocity = demo.buffer[obs_key(0)][:, 1]
    np.testing.assert_array_equal(actions, np.where(velocity > 0, 1.0, -0.25))
    assert demo.buffer[BufferKey.INTERRUPTED].sum() == 2  # Pendulum ends by its time limit
    np.testing.assert_allclose(demo.returns, result.returns, rtol=1e-5)


def stay(obs, action_mask):
    """Branch 0, action 0 for every agent (the test PettingZoo scene's predators)."""
    return np.zeros((obs[0].shape[0], 1), np.int64)


def test_a_pettingzoo_behavior_is_recorded_and_loads_for_its_own_spec(tmp_path):
    from palaestra.envs import make_environment

    out = tmp_path / "predator.demo"
    result = record(policy=stay, env="pettingzoo:pz_envs_for_tests:TeamsEnv",
                    behavior="predator", episodes=3, output=str(out), seed=1)
    env = make_environment("pettingzoo:pz_envs_for_tests:TeamsEnv")
    try:
        spec = env.behavior_specs["predator"]
    finally:
        env.close()
    demo = load_demonstrations(out, spec)
    assert demo.episodes == 3 and demo.behavior_name == "predator"
    assert not demo.buffer[BufferKey.DISCRETE_ACTION].any()
    np.testing.assert_allclose(demo.returns, result.returns, rtol=1e-5)


def test_record_refuses_what_it_cannot_do(tmp_path, capsys):
    out = str(tmp_path / "x.demo")
    cases = [
        (["--policy", "test_record:wrong_shape", "--env", "Basic", "-o", out],
         r"returned an array of shape \(1, 5\) for 1 agents; expected discrete branch "
         r"indices \(1, 1\)"),
        (["--policy", "test_record:fails", "--env", "Basic", "-o", out],
         "--policy test_record:fails failed: KeyError: 'no such key'"),
        (["--policy", "test_record:nothing", "--env", "Basic", "-o", out],
         "has no function 'nothing'"),
        (["--policy", "no_such_module_here:f", "--env", "Basic", "-o", out],
         "--policy no_such_module_here:f: cannot import module"),
        (["--policy", "test_record:walk_right", "-o", out], "no environment; give --env"),
        (["--policy", "test_record:walk_right", "--env", "Basic", "-o", str(tmp_path / "x")],
         "must end in .demo"),
        (["--env", "Basic", "-o", out], "give a trained policy"),
        (["run", "--policy", "test_record:walk_right", "--env", "Basic", "-o", out],
         "not both"),
        (["--policy", "test_record:walk_right", "--env", "Basic", "-o", out, "--episodes",
          "0"], "--episodes 0"),
        (["--policy", "test_record:walk_right", "--env", "Basic", "-o", out, "--name",
          "x" * 17], "16 printable characters"),
        (["--policy", "test_record:walk_right", "--env", "Basic", "-o", out, "--max-steps",
          "3"], "no episode of Basic ended in 3 steps; nothing written"),
    ]
    for args, words in cases:
        assert main(["record", *args]) == 1, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, (args, err)
        assert words in err or re.search(words, err), (args, err)
    assert os.listdir(tmp_path) == []
    with pytest.raises(PalaestraError, match="--behavior Nope"):
        record(policy=walk_right, env="Basic", output=out, behavior="Nope")


@pytest.fixture(scope="module")
def basic_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("record")
    config = os.path.join(REPO, "src", "palaestra", "configs", "ppo", "Basic.yaml")
    palaestra.learn(config, run_id="basic", results_dir=str(root), max_steps=2000)
    return root


def test_a_trained_run_is_recorded_as_play_plays_it(basic_run, tmp_path, capsys):
    out = tmp_path / "expert.demo"
    assert main(["record", "basic", "--results-dir", str(basic_run), "--episodes", "5",
                 "-o", str(out), "--deterministic", "--seed", "3"]) == 0
    assert "Basic: 5 episodes" in capsys.readouterr().out
    played = play("basic", results_dir=str(basic_run), episodes=5, deterministic=True, seed=3)
    policy = palaestra.load_policy(basic_run / "basic")
    demo = load_demonstrations(out, policy.behavior_spec)
    assert demo.episodes == 5 and demo.name == "expert"
    np.testing.assert_allclose(demo.returns, played.returns["Basic"], atol=1e-5)
    assert demo.steps == sum(played.lengths["Basic"])
    # the actions are the policy's own
    acted = policy.act(demo.buffer[obs_key(0)], deterministic=True)
    np.testing.assert_array_equal(demo.buffer[BufferKey.DISCRETE_ACTION], acted)


def test_the_output_folder_is_made_and_a_file_in_its_way_is_named(tmp_path):
    from palaestra.record import check_output

    out = tmp_path / "demos" / "sub" / "expert.demo"
    assert check_output(str(out), force=False) == str(out) and out.parent.is_dir()
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(PalaestraError, match="cannot make the folder"):
        check_output(str(tmp_path / "blocker" / "expert.demo"), force=False)
