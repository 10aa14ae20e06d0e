"""`pettingzoo:` environments: behaviors from agent names, finished agents, resets, groups,
masks, AEC conversion, errors, mpe2's simple_spread, and a two-team run through the CLI."""
import sys

import numpy as np
import pytest
import yaml

pytest.importorskip("pettingzoo")

import pz_envs_for_tests as P  # noqa: E402
from helpers import learn, scalars  # noqa: E402
from palaestra.envs import ActionTuple, make_environment  # noqa: E402
from palaestra.envs.pettingzoo_adapter import (BehaviorRule, PettingZooEnv,  # noqa: E402
                                               default_behavior)
from palaestra.exception import EnvironmentSetupError  # noqa: E402

TEAMS = "pettingzoo:pz_envs_for_tests:TeamsEnv"


def discrete(*rows):
    disc = np.asarray(rows, np.int64).reshape(len(rows), -1)
    return ActionTuple(np.zeros((len(disc), 0), np.float32), disc)


def continuous(*rows):
    cont = np.asarray(rows, np.float32).reshape(len(rows), -1)
    return ActionTuple(cont, np.zeros((len(cont), 0), np.int64))


def advance(env, **actions):
    """Set the given actions (behavior -> ActionTuple), step, and return every behavior's
    (decision, terminal)."""
    for name, action in actions.items():
        env.set_actions(name, action)
    env.step()
    return {name: env.get_steps(name) for name in env.behavior_specs}


def teams(num_envs=2, seed=7, **env_args):
    env = make_environment(TEAMS, env_args, num_envs=num_envs, seed=seed)
    env.reset()
    return env


# -- (a) two teams, an agent that finishes early, resets, truncation ---------------------------
def test_behaviors_specs_and_ids():
    env = teams()
    specs = env.behavior_specs
    assert list(specs) == ["predator", "prey"]
    assert specs["predator"].observation_specs[0].shape == (3,)
    assert specs["predator"].action_spec.discrete_branches == (3,)
    assert specs["prey"].observation_specs[0].shape == (2,)
    assert specs["prey"].action_spec.continuous_size == 2
    decision, terminal = env.get_steps("predator")
    assert decision.agent_id.dtype == np.int64 and decision.agent_id.tolist() == [0, 1, 3, 4]
    np.testing.assert_array_equal(decision.obs[0], [[0, 0, 0], [0, 1, 0]] * 2)
    np.testing.assert_array_equal(decision.reward, np.zeros(4))
    assert decision.action_mask is None and decision.group_id is None
    assert len(terminal) == 0 and terminal.obs[0].shape == (0, 3)
    assert env.get_steps("prey")[0].agent_id.tolist() == [2, 5]
    assert [e.seeds for e in env.envs] == [[7], [8]]  # copy k: seed + k


def test_finished_agent_reported_once_then_gone_and_copy_resets():
    env = teams()
    steps = advance(env, predator=discrete(0, 1, 2, 0), prey=continuous([0.5, -1], [1, 0]))
    assert env.envs[0].received[0]["predator_1"] == 1
    np.testing.assert_allclose(env.envs[0].received[0]["prey_0"], [1.0, -2.0])  # [-1,1] -> [-2,2]
    (pred, pred_t), (prey, prey_t) = steps["predator"], steps["prey"]
    np.testing.assert_array_equal(pred.reward, [1, 11, 1, 11])  # earned by the last action
    np.testing.assert_array_equal(prey.reward, [101, 101])
    assert len(pred_t) == len(prey_t) == 0
    # t = 2: the prey terminates, the predators go on
    steps = advance(env, predator=discrete(0, 0, 0, 0), prey=continuous([0, 0], [0, 0]))
    prey, prey_t = steps["prey"]
    assert prey_t.agent_id.tolist() == [2, 5]
    assert prey_t.interrupted.tolist() == [False, False]
    np.testing.assert_array_equal(prey_t.reward, [102, 102])
    np.testing.assert_array_equal(prey_t.obs[0], [[2, 0], [2, 0]])  # its final observation
    assert len(prey) == 0 and prey.obs[0].shape == (0, 2)
    assert steps["predator"][0].agent_id.tolist() == [0, 1, 3, 4]
    # t = 3: the prey is gone, not reported again
    steps = advance(env, predator=discrete(0, 0, 0, 0))
    assert len(steps["prey"][0]) == len(steps["prey"][1]) == 0
    assert "prey_0" not in env.envs[0].received[-1]
    # t = 4: predator_0 truncated (interrupted), predator_1 terminated; the copies reset
    steps = advance(env, predator=discrete(0, 0, 0, 0))
    pred, pred_t = steps["predator"]
    assert pred_t.agent_id.tolist() == [0, 1, 3, 4]
    assert pred_t.interrupted.tolist() == [True, False, True, False]
    np.testing.assert_array_equal(pred_t.reward, [4, 14, 4, 14])
    np.testing.assert_array_equal(pred_t.obs[0], [[4, 0, 0], [4, 1, 0]] * 2)
    # ... and the same agents decide again in the new episode (same ids, reward 0)
    assert pred.agent_id.tolist() == [0, 1, 3, 4]
    np.testing.assert_array_equal(pred.obs[0], [[0, 0, 1], [0, 1, 1]] * 2)
    np.testing.assert_array_equal(pred.reward, np.zeros(4))
    prey, prey_t = steps["prey"]
    assert prey.agent_id.tolist() == [2, 5] and len(prey_t) == 0
    np.testing.assert_array_equal(prey.obs[0], [[0, 1], [0, 1]])
    assert [e.seeds for e in env.envs] == [[7, None], [8, None]]  # seeded on the first reset only
    steps = advance(env, predator=discrete(0, 0, 0, 0), prey=continuous([0, 0], [0, 0]))
    assert len(steps["predator"][1]) == 0  # the terminal batch is emptied again


def test_agent_joining_mid_episode_appears_in_decisions():
    env = teams(num_envs=1, join_at=1)
    assert env.get_steps("predator")[0].agent_id.tolist() == [0, 1]
    steps = advance(env, predator=discrete(0, 0), prey=continuous([0, 0]))
    decision, _ = steps["predator"]
    assert decision.agent_id.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(decision.obs[0][2], [1, 2, 0])
    assert decision.reward[2] == 0.0


def test_agent_outside_possible_agents_joins_a_known_behavior_or_fails():
    inner = P.TeamsEnv(join_at=1)
    inner.possible_agents.remove("predator_2")  # not announced, but a known behavior's spaces
    env = PettingZooEnv([inner], "unannounced")
    env.reset()
    decision, _ = advance(env, predator=discrete(0, 0), prey=continuous([0, 0]))["predator"]
    assert decision.agent_id.tolist() == [0, 1, 3]  # the next free id
    inner = P.TeamsEnv(join_at=1)
    inner.possible_agents.remove("predator_2")
    env = PettingZooEnv([inner], "renamed", agent_behaviors={"predator_2": "x"})
    env.reset()
    with pytest.raises(EnvironmentSetupError, match="'x'"):
        advance(env, predator=discrete(0, 0), prey=continuous([0, 0]))


def test_step_needs_every_live_behavior_to_act():
    env = teams(num_envs=1)
    env.set_actions("predator", discrete(0, 0))
    with pytest.raises(RuntimeError, match="prey"):
        env.step()


# -- (b) agent_behaviors and mismatched spaces -------------------------------------------------
def test_default_behavior_rule():
    assert default_behavior("adversary_0") == "adversary"
    assert default_behavior("agent_12") == "agent"
    assert default_behavior("red_team_3") == "red_team"
    assert default_behavior("speaker") == "speaker"
    assert default_behavior("agent_x") == "agent_x"
    rule = BehaviorRule({"pred": "hunter", "predator_1": "lone", "predator_": "pack"})
    assert [rule(a) for a in ["predator_0", "predator_1", "prey_0", "preda"]] == \
        ["pack", "lone", "prey", "hunter"]  # exact name, then the longest prefix


def test_agent_behaviors_override_from_env_args_strings():
    env = make_environment(TEAMS, ["agent_behaviors={predator_1: lone, pred: hunter}"],
                           num_envs=2)
    env.reset()
    assert list(env.behavior_specs) == ["hunter", "lone", "prey"]
    assert env.get_steps("hunter")[0].agent_id.tolist() == [0, 3]
    assert env.get_steps("lone")[0].agent_id.tolist() == [1, 4]


def test_mismatched_spaces_in_one_behavior_is_an_error():
    with pytest.raises(EnvironmentSetupError) as info:
        make_environment(TEAMS, {"mismatch": True})
    message = str(info.value)
    for part in ["'predator'", "predator_0", "predator_1", "(3,)", "(4,)", "agent_behaviors"]:
        assert part in message, message
    env = make_environment(TEAMS, {"mismatch": True, "agent_behaviors": {"predator_1": "big"}})
    assert env.behavior_specs["big"].observation_specs[0].shape == (4,)
    with pytest.raises(EnvironmentSetupError, match="agent_behaviors"):
        make_environment(TEAMS, {"agent_behaviors": ["predator"]})


# -- (c) AEC through aec_to_parallel, masks from the observation dict --------------------------
def test_aec_env_through_conversion_with_action_masks():
    env = make_environment("pettingzoo:pz_envs_for_tests:CycleAEC", {"cycles": 2}, num_envs=2)
    env.reset()
    spec = env.behavior_specs["player"]
    assert list(env.behavior_specs) == ["player"]
    assert spec.observation_specs[0].shape == (2,) and spec.action_spec.discrete_branches == (3,)
    decision, _ = env.get_steps("player")
    np.testing.assert_array_equal(decision.obs[0], [[0, 0], [0, 1]] * 2)
    np.testing.assert_array_equal(decision.action_mask, [[True, True, False]] * 4)
    decision, terminal = advance(env, player=discrete(1, 0, 0, 1))["player"]
    np.testing.assert_array_equal(decision.reward, [1, 0, 0, 1])
    np.testing.assert_array_equal(decision.action_mask, [[True, True, True]] * 4)
    assert len(terminal) == 0
    decision, terminal = advance(env, player=discrete(2, 2, 1, 0))["player"]
    assert terminal.agent_id.tolist() == [0, 1, 2, 3]
    assert terminal.interrupted.tolist() == [False] * 4
    np.testing.assert_array_equal(terminal.reward, [2, 2, 1, 0])
    np.testing.assert_array_equal(terminal.obs[0], [[2, 0], [2, 1]] * 2)
    np.testing.assert_array_equal(decision.obs[0], [[0, 0], [0, 1]] * 2)  # reset


def test_turn_based_aec_env_is_refused():
    with pytest.raises(EnvironmentSetupError, match="parallelizable"):
        make_environment("pettingzoo:pz_envs_for_tests:TurnBasedAEC")


# -- (d) groups and masks from infos -----------------------------------------------------------
def test_group_id_and_reward_from_infos():
    env = teams(groups=True)
    decision, _ = env.get_steps("predator")
    assert decision.group_id.dtype == np.int64
    assert decision.group_id.tolist() == [1, 1, 1_000_001, 1_000_001]  # unique across copies
    np.testing.assert_array_equal(decision.group_reward, np.zeros(4))
    assert env.get_steps("prey")[0].group_id is None  # no prey reports a group
    steps = advance(env, predator=discrete(0, 0, 0, 0), prey=continuous([0, 0], [0, 0]))
    assert steps["predator"][0].group_reward.dtype == np.float32
    np.testing.assert_array_equal(steps["predator"][0].group_reward, [0.5] * 4)
    advance(env, predator=discrete(0, 0, 0, 0), prey=continuous([0, 0], [0, 0]))
    advance(env, predator=discrete(0, 0, 0, 0))
    terminal = advance(env, predator=discrete(0, 0, 0, 0))["predator"][1]
    assert terminal.group_id.tolist() == [1, 1, 1_000_001, 1_000_001]
    np.testing.assert_array_equal(terminal.group_reward, [2.0] * 4)
    assert env.get_steps("predator")[0].group_reward.tolist() == [0.0] * 4  # new episode


def test_group_by_behavior_puts_each_copys_team_in_one_group():
    env = make_environment("pettingzoo:pz_envs_for_tests:TeamsEnv", {"group_by_behavior": True},
                           num_envs=2, seed=7)
    env.reset()
    decision, _ = env.get_steps("predator")
    assert decision.group_id.tolist() == [1, 1, 1_000_001, 1_000_001]
    np.testing.assert_array_equal(decision.group_reward, np.zeros(4))
    assert env.get_steps("prey")[0].group_id.tolist() == [1, 1_000_001]
    with pytest.raises(EnvironmentSetupError, match="group_by_behavior"):
        make_environment("pettingzoo:pz_envs_for_tests:TeamsEnv", {"group_by_behavior": "yes"})


def test_action_mask_from_infos_others_allowed():
    class Masked(P.TeamsEnv):
        def _infos(self):
            return {a: {"action_mask": np.array([1, 0, 1], np.int8)} if a == "predator_0" else {}
                    for a in self.agents}

    env = PettingZooEnv([Masked()], "masked")
    env.reset()
    np.testing.assert_array_equal(env.get_steps("predator")[0].action_mask,
                                  [[True, False, True], [True, True, True]])
    assert env.get_steps("prey")[0].action_mask is None  # continuous: no mask


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_path, expected", [
    ("pettingzoo:no_such_module_xyz:env", "cannot import module 'no_such_module_xyz'"),
    ("pettingzoo:pz_envs_for_tests:NoSuchEnv", "neither an attribute"),
    ("pettingzoo:json:decoder", "neither a parallel_env nor an env"),
    ("pettingzoo:pz_envs_for_tests:INF", "not callable"),
    ("pettingzoo:pz_envs_for_tests:not_an_env", "not a PettingZoo ParallelEnv or AECEnv"),
    ("pettingzoo:pz_envs_for_tests:failing_factory", "making the environment failed"),
    ("pettingzoo:", "expected pettingzoo:<module>:<factory>"),
])
def test_bad_env_strings_name_what_failed(env_path, expected):
    with pytest.raises(EnvironmentSetupError) as info:
        make_environment(env_path)
    assert env_path in str(info.value) and expected in str(info.value), str(info.value)


def test_pettingzoo_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pettingzoo", None)
    with pytest.raises(EnvironmentSetupError, match=r"palaestra\[pettingzoo\]"):
        make_environment("pettingzoo:mpe2:simple_spread_v3")


# -- (e) mpe2's simple_spread ------------------------------------------------------------------
@pytest.mark.parametrize("env_path", ["pettingzoo:mpe2:simple_spread_v3",
                                      "pettingzoo:mpe2.simple_spread_v3:parallel_env"])
def test_mpe2_simple_spread(env_path):
    pytest.importorskip("mpe2")
    env = make_environment(env_path, {"N": 3, "max_cycles": 5}, num_envs=2, seed=0)
    spec = env.behavior_specs["agent"]
    assert list(env.behavior_specs) == ["agent"]
    assert spec.observation_specs[0].shape == (18,) and spec.action_spec.discrete_branches == (5,)
    env.reset()
    rng = np.random.default_rng(0)
    ended = []
    for _ in range(5):
        decision, terminal = env.get_steps("agent")
        assert decision.agent_id.tolist() == list(range(6))
        assert decision.obs[0].shape == (6, 18) and np.isfinite(decision.obs[0]).all()
        ended.append(terminal)
        env.set_actions("agent", spec.action_spec.random_action(6, rng))
        env.step()
    assert all(len(t) == 0 for t in ended)
    decision, terminal = env.get_steps("agent")
    assert terminal.agent_id.tolist() == list(range(6))
    assert terminal.interrupted.all()  # max_cycles is a time limit
    assert (decision.reward == 0).all()  # the copies were reset
    env.close()


# -- (f) two teams trained through the CLI -----------------------------------------------------
@pytest.mark.parametrize("blue_trainer", ["ppo", "poca"])
def test_two_behaviors_learn_through_cli(tmp_path, blue_trainer):
    """red must echo its cue, blue must answer the other action: two policies, each with its
    own settings (and trainer type), both well above random play (0.5) within a small
    budget."""
    def behavior(lr, buffer_size, max_steps, trainer="ppo"):
        return {"trainer_type": trainer,
                "hyperparameters": {"batch_size": 32, "buffer_size": buffer_size,
                                    "learning_rate": lr, "beta": 5e-3, "num_epoch": 3},
                "network_settings": {"hidden_units": 16, "num_layers": 1},
                "reward_signals": {"extrinsic": {"gamma": 0.5}},
                "max_steps": max_steps, "time_horizon": 8, "summary_freq": max_steps // 3}

    config = tmp_path / "cue.yaml"
    config.write_text(yaml.safe_dump({
        "behaviors": {"red": behavior(3e-3, 256, 3000),
                      "blue": behavior(5e-3, 128, 1500, blue_trainer)},
        "env_settings": {"env_path": "pettingzoo:pz_envs_for_tests:CueEnv", "num_envs": 4,
                         "seed": 1}}))
    assert learn(str(config), "--run-id", "cue", "--results-dir", str(tmp_path)) == 0
    run = tmp_path / "cue"
    for name in ["red", "blue"]:
        rewards = [v for _, v in scalars(str(run / name))["Environment/Cumulative Reward"]]
        assert rewards[0] < 0.75 and rewards[-1] > 0.85, (name, rewards)  # seeds 1-5: >= 0.93
        assert (run / name / "checkpoint.pt").is_file()
    resolved = yaml.safe_load((run / "configuration.yaml").read_text())
    assert resolved["behaviors"]["blue"]["hyperparameters"]["buffer_size"] == 128
    assert resolved["behaviors"]["blue"]["trainer_type"] == blue_trainer


@pytest.mark.parametrize("broken, needle", [
    ("obs", "agent 'predator_1' got a non-finite observation obs (NaN or inf)"),
    ("reward", "agent 'predator_1' got reward nan; a reward must be one finite number"),
    ("reward_list", "agent 'predator_1' got reward [1.0, 2.0]; a reward must be one finite"),
    ("group_reward", "agent 'predator_1' got group_reward inf")])
def test_non_finite_or_malformed_values_stop_the_run_naming_the_agent(broken, needle):
    env = make_environment("pettingzoo:pz_envs_for_tests:BrokenTeamsEnv",
                           {"break_what": broken}, num_envs=1, seed=0)
    env.reset()
    env.set_actions("predator", discrete(0, 0))
    env.set_actions("prey", continuous([0, 0]))
    with pytest.raises(EnvironmentSetupError) as info:
        env.step()
    assert "copy 0" in str(info.value) and needle in str(info.value), str(info.value)


def test_a_family_member_missing_its_extra_package_or_an_old_version_is_named(
        tmp_path, monkeypatch):
    (tmp_path / "fake_family.py").write_text(
        "from pettingzoo.utils.deprecated_module import DeprecatedModule\n"
        "racer_v1 = DeprecatedModule('racer', 1, 2)\n"
        "def __getattr__(name):\n"
        "    if name == 'physics_v0':\n"
        "        import a_physics_engine_that_is_not_installed\n"
        "    raise AttributeError(name)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(EnvironmentSetupError) as info:
        make_environment("pettingzoo:fake_family:physics_v0")
    assert "needs a package that is not installed" in str(info.value)
    assert "a_physics_engine_that_is_not_installed" in str(info.value)
    with pytest.raises(EnvironmentSetupError, match="racer_v1 is now deprecated, use racer_v2"):
        make_environment("pettingzoo:fake_family:racer_v1")
