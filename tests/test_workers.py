"""Environment copies in worker processes (`palaestra.envs.workers`): the same run as in-process
for Gymnasium and PettingZoo copies, seeds, truncation, stats, errors with the worker's
traceback, restarts of killed and hung workers within the quota, the settings, and no process
left behind."""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import (REPO, TESTS_DIR, assert_seeded, assert_stops_past_restart_quota,
                     fault_config, learn, scalars)
from palaestra.envs import ActionTuple, make_environment
from palaestra.envs.workers import WorkerEnv, WorkerSettings, worker_seed
from palaestra.exception import EnvironmentSetupError, TrainerConfigError

TEAMS = "pettingzoo:pz_envs_for_tests:TeamsEnv"
CYCLE = "pettingzoo:pz_envs_for_tests:CycleAEC"


def _copy(steps):
    """A step batch with its own arrays (an in-process environment may reuse its buffers)."""
    import dataclasses

    return dataclasses.replace(steps, **{f.name: [o.copy() for o in steps.obs] if f.name == "obs"
                                         else None if getattr(steps, f.name) is None
                                         else np.array(getattr(steps, f.name))
                                         for f in dataclasses.fields(steps)})


def rollout(env, steps, seed=0, lost=None):
    """`steps` steps of random actions (the same for the same batches): per step, behavior ->
    (decision, terminal); `lost`, a list: each step's `env.lost_parts()` appended to it."""
    rng = np.random.default_rng(seed)
    env.reset()
    out = []
    for _ in range(steps):
        row = {}
        for name, spec in env.behavior_specs.items():
            decision, terminal = env.get_steps(name)
            row[name] = (_copy(decision), _copy(terminal))
            if len(decision):
                env.set_actions(name, spec.action_spec.random_action(len(decision), rng))
        if lost is not None:
            parts, count = env.lost_parts()
            lost.append((list(parts), count))
        env.step()
        out.append(row)
    return out


def assert_same_run(ref, got):
    """The same observations, rewards, flags, masks and group rewards, step by step; agent and
    group ids may be renumbered, but one to one over the whole run."""
    ids = {}
    assert len(ref) == len(got)
    for ref_row, got_row in zip(ref, got):
        assert list(ref_row) == list(got_row)
        for name in ref_row:
            for a, b in zip(ref_row[name], got_row[name]):
                for x, y in zip(a.obs, b.obs):
                    np.testing.assert_array_equal(x, y)
                for field in ("reward", "interrupted", "action_mask", "group_reward"):
                    x, y = getattr(a, field, None), getattr(b, field, None)
                    assert (x is None) == (y is None), field
                    if x is not None:
                        np.testing.assert_array_equal(x, y)
                for kind in ("agent_id", "group_id"):
                    x, y = getattr(a, kind), getattr(b, kind)
                    assert (x is None) == (y is None), kind
                    for i, j in zip([] if x is None else x, [] if y is None else y):
                        assert ids.setdefault((name, kind, i), j) == j, (name, kind, i)
    for kind in ("agent_id", "group_id"):
        seen = [j for (_, k, _), j in ids.items() if k == kind]
        assert len(set(seen)) == len(seen), kind  # no two agents (groups) merged


def workers_gone(pids, deadline=60.0):
    """Whether every pid has ended within `deadline` seconds (a guard, not a timing): a zombie
    waiting for a reaper counts as ended."""
    end = time.monotonic() + deadline

    def running(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False
        except OSError:
            return True

    while any(running(pid) for pid in pids):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def no_worker_children():
    return not [p for p in multiprocessing.active_children()
                if p.name.startswith("palaestra-env-worker")]


# -- the same run as in-process -----------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_cartpole_in_workers_is_the_in_process_run(workers):
    args = {"max_episode_steps": 12}  # many truncations: their final observations compared
    inproc = make_environment("CartPole-v1", args, 4, 3)
    ref = rollout(inproc, 150)
    inproc.close()
    env = WorkerEnv("CartPole-v1", args, 4, 3, WorkerSettings(workers))
    try:
        got = rollout(env, 150)
    finally:
        env.close()
    assert_same_run(ref, got)
    ends = [t for row in ref for _, t in row.values()]
    assert any(t.interrupted.any() for t in ends) and any((~t.interrupted).any() for t in ends)
    if workers == 1:  # one worker: even the ids are those of the in-process run
        for a, b in zip(ref, got):
            np.testing.assert_array_equal(a["CartPole-v1"][0].agent_id,
                                          b["CartPole-v1"][0].agent_id)
    assert no_worker_children()


def _per_copy(rows, copy_of):
    """Each copy's decisions (observation, reward) and episode ends in order, from rollout
    rows; `copy_of` maps an agent id to its copy."""
    out = {}
    for row in rows:
        for decision, terminal in row.values():
            for i, agent in enumerate(decision.agent_id.tolist()):
                out.setdefault(copy_of(agent), []).append(
                    ("d", decision.obs[0][i].tolist(), float(decision.reward[i])))
            for i, agent in enumerate(terminal.agent_id.tolist()):
                out.setdefault(copy_of(agent), []).append(
                    ("t", terminal.obs[0][i].tolist(), float(terminal.reward[i]),
                     bool(terminal.interrupted[i])))
    return out


def _sign_policy(env, steps):
    """`steps` steps acting on the sign of the pole's angle: actions follow from each copy's
    own observations, so a copy's run does not depend on how copies are batched."""
    env.reset()
    out = []
    for _ in range(steps):
        decision, terminal = env.get_steps("CartPole-v1")
        out.append({"CartPole-v1": (_copy(decision), _copy(terminal))})
        if len(decision):
            act = (decision.obs[0][:, 2] > 0).astype(np.int64)[:, None]
            env.set_actions("CartPole-v1", ActionTuple(np.zeros((len(decision), 0), np.float32),
                                                       act))
        env.step()
    return out


def test_ready_sync_steps_every_copy_as_in_process():
    """worker_sync ready: whatever the batches, each copy lives the in-process copy's life."""
    args = {"max_episode_steps": 12}
    inproc = make_environment("CartPole-v1", args, 4, 3)
    ref = _per_copy(_sign_policy(inproc, 60), lambda agent: agent)
    inproc.close()
    env = WorkerEnv("CartPole-v1", args, 4, 3, WorkerSettings(2, ready_only=True))
    try:
        got = _per_copy(_sign_policy(env, 150), lambda agent: 2 * (agent % 2) + agent // 2)
    finally:
        env.close()
    assert sorted(got) == [0, 1, 2, 3]
    for copy, events in ref.items():
        assert got[copy][:len(events)] == events, copy
    assert no_worker_children()


def test_ready_sync_does_not_wait_for_a_slow_worker(tmp_path):
    """worker_sync ready: while worker 0's copy is held (it waits for a file at its 3rd step),
    worker 1's copy goes on stepping; once released, worker 0's copy comes back where it
    was. With worker_sync all the same run would stand still."""
    gate = tmp_path / "gate"
    args = {"gate": str(gate), "gate_seed": 5, "at": 3}
    env = WorkerEnv("worker_envs:gated", args, 2, 5, WorkerSettings(2, ready_only=True))
    try:
        env.reset()
        seen = {0: [], 1: []}  # per worker: the step counts its copy reported
        spec = env.behavior_specs["gated"].action_spec

        def step_until(done):
            while not done():
                decision, _ = env.get_steps("gated")
                for i, agent in enumerate(decision.agent_id.tolist()):
                    seen[agent % 2].append(round(float(decision.obs[0][i][1]) * 1000))
                env.set_actions("gated", spec.empty_action(len(decision)))
                env.step()

        step_until(lambda: len(seen[1]) >= 30)
        assert seen[0] == [0, 1, 2]  # held at its 3rd step
        gate.touch()
        step_until(lambda: len(seen[0]) >= 6)
        assert seen[0][:6] == [0, 1, 2, 3, 4, 5]
        assert seen[1][:30] == list(range(30))
    finally:
        env.close()


@pytest.mark.parametrize("env_path, args", [
    (TEAMS, {"groups": True}), (TEAMS, {"join_at": 1}), (CYCLE, {"cycles": 2})],
    ids=["teams-groups-truncation", "agent-joins-blocks-grow", "aec-masks"])
def test_pettingzoo_behaviors_groups_and_masks_in_workers(env_path, args):
    pytest.importorskip("pettingzoo")
    inproc = make_environment(env_path, args, 3, 7)
    ref = rollout(inproc, 12)
    env = WorkerEnv(env_path, args, 3, 7, WorkerSettings(2))  # shares of 2 and 1 copies
    try:
        got = rollout(env, 12)
    finally:
        env.close()
    assert_same_run(ref, got)
    first = ref[0][next(iter(ref[0]))][0]
    if "groups" in args:
        assert list(ref[0]) == ["predator", "prey"] and first.group_id is not None
        assert any(t.interrupted.any() for row in ref for _, t in row.values())
    elif "join_at" in args:  # 2 predators a copy at the reset, 3 from step 1: blocks grew
        assert len(first) == 6 and len(ref[1]["predator"][0]) == 9
    else:
        assert first.action_mask is not None
    if os.path.isdir("/dev/shm"):  # every shared block was unlinked (a test-only peek)
        assert not [f for f in os.listdir("/dev/shm") if f.startswith(env._prefix)]


def test_a_builtin_scene_in_one_worker_is_the_in_process_run_and_draws_its_first_copy():
    inproc = make_environment("3DBall", None, 2, 5)
    env = WorkerEnv("3DBall", None, 2, 5, WorkerSettings(1))
    try:
        inproc.reset()
        env.reset()
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.ndim == 3
        np.testing.assert_array_equal(frame, inproc.render())
        assert env.render_fps == inproc.render_fps
        assert_same_run(rollout(inproc, 40), rollout(env, 40))
    finally:
        env.close()


def test_builtin_copies_in_two_workers_are_reproducible_for_a_seed():
    """A built-in scene draws all its copies from one generator: worker w is seeded seed +
    its first copy, so its copies differ from the other worker's and repeat with the seed."""
    def run(seed):
        env = WorkerEnv("3DBall", None, 2, seed, WorkerSettings(2))
        try:
            env.reset()
            obs = env.get_steps("3DBall")[0].obs[0]
            steps = rollout(env, 5)
        finally:
            env.close()
        assert not np.array_equal(obs[:12], obs[12:])  # 12 agents a copy, one copy a worker
        return [obs] + [row["3DBall"][0].obs[0] for row in steps]

    assert_seeded(run)
    assert worker_seed(3, 2, 0, 4) == 5 and worker_seed(3, 2, 1, 4) == 9
    assert worker_seed(None, 2, 1, 4) is None and worker_seed(-1, 0, 0, 4) is None


def test_stats_of_every_worker_are_merged_and_a_base_env_factory_runs_in_each():
    env = WorkerEnv("worker_envs:reporting", None, 2, 0, WorkerSettings(2))
    try:
        env.reset()
        for _ in range(3):
            decision, _ = env.get_steps("reporting")
            env.set_actions("reporting",
                            env.behavior_specs["reporting"].action_spec.empty_action(4))
            env.step()
        decision, _ = env.get_steps("reporting")
        assert decision.agent_id.tolist() == [0, 2, 1, 3]  # id * 2 + worker
        np.testing.assert_array_equal(decision.obs[0], np.full((4, 1), 3.0))
        assert env.pop_stats() == {"Custom/Steps": [(1.0, "sum")] * 6}
        assert env.pop_stats() == {}
        # Ctrl-C in a terminal reaches the workers too: they leave it to the training process
        pids = env.worker_pids
        for pid in pids:
            os.kill(pid, signal.SIGINT)
        env.set_actions("reporting", env.behavior_specs["reporting"].action_spec.empty_action(4))
        env.step()
        np.testing.assert_array_equal(env.get_steps("reporting")[0].obs[0], np.full((4, 1), 4.0))
        assert env.worker_pids == pids
    finally:
        env.close()


# -- errors and faults --------------------------------------------------------------------------
def test_an_error_in_a_worker_comes_back_with_its_traceback_and_no_worker_survives():
    with pytest.raises(EnvironmentSetupError, match="unknown environment") as info:
        WorkerEnv("NoSuchEnv-v0", None, 2, 0, WorkerSettings(2))
    assert "environment worker 0" in str(info.value)
    env = WorkerEnv("worker_envs:faulty", {"at": 2, "how": "raise"}, 2, 0, WorkerSettings(2))
    pids = env.worker_pids
    try:
        with pytest.raises(EnvironmentSetupError) as info:
            rollout(env, 4)
    finally:
        env.close()
    message = str(info.value)
    assert "RuntimeError: the simulator crashed" in message, message
    assert "traceback" in message and "worker_envs.py" in message
    assert len(pids) == 2 and workers_gone(pids, 1.0) and env.worker_pids == []
    env.close()  # twice is fine


def test_a_hung_worker_is_restarted_after_timeout_step(tmp_path, caplog):
    """One copy blocks for ever in its 5th step: after timeout_step its worker is replaced;
    the copy's episode ends as interrupted with its last observation and a fresh one starts."""
    caplog.set_level("WARNING")
    args = {"at": 5, "how": "hang", "marker": str(tmp_path / "hung"), "length": 100}
    env = WorkerEnv("worker_envs:faulty", args, 2, 0, WorkerSettings(2, timeout=2.0))
    try:
        before = env.worker_pids
        lost = []
        steps = rollout(env, 8, lost=lost)
        after = env.worker_pids
    finally:
        env.close()
    decision, terminal = steps[5]["faulty"]  # what the 5th step returned
    assert len(terminal) == 1 and terminal.interrupted.tolist() == [True]
    hung = int(terminal.agent_id[0])
    last = steps[4]["faulty"][0]
    np.testing.assert_array_equal(terminal.obs[0][0], last.obs[0][last.agent_id == hung][0])
    assert terminal.reward.tolist() == [0.0]
    assert decision.agent_id.tolist() == [0, 1]
    assert decision.obs[0][hung, 1] == 0.0  # a fresh copy at t = 0; the other at t / 100
    assert decision.obs[0][1 - hung, 1] == pytest.approx(0.05)
    assert [len(row["faulty"][1]) for row in steps[6:]] == [0, 0]
    # the replaced worker is named with the batch that ends its episode, and only there
    # (EnvManager then drops what its agents waiting for their turn had started)
    assert lost == [([], 2)] * 5 + [([hung], 2)] + [([], 2)] * 2
    assert before[1 - hung] == after[1 - hung] and before[hung] != after[hung]
    assert "did not answer a step within 2 s" in caplog.text
    assert workers_gone(before + after, 5.0)


def _final_step(run):
    status = json.loads((run / "run_logs" / "training_status.json").read_text())
    return status["faulty"]["final_checkpoint"]["steps"]


def test_a_worker_killed_mid_run_restarts_and_the_run_finishes(tmp_path, caplog):
    caplog.set_level("WARNING")
    config, marker = fault_config(tmp_path), tmp_path / "killed"
    assert learn(config, "--run-id", "k", "--results-dir", str(tmp_path), "--num-workers", "2",
                 "--env-args", "at=100", "how=kill", f"marker={marker}") == 0
    assert marker.exists() and "was killed by SIGKILL" in caplog.text
    assert (tmp_path / "k" / "faulty" / "checkpoint.pt").is_file()
    # max_steps reached, give or take the trajectories that crossed it (2 copies, horizon 32)
    assert 800 <= _final_step(tmp_path / "k") < 800 + 2 * 32
    assert no_worker_children()


def test_past_max_lifetime_restarts_the_run_stops_with_a_checkpoint(tmp_path, capsys):
    assert_stops_past_restart_quota(tmp_path, capsys, fault_config(tmp_path),
                                    "--num-workers", "2")
    assert no_worker_children()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_do_not_outlive_a_killed_training_process(tmp_path):
    script = ("import sys\nfrom palaestra.envs.workers import WorkerEnv, WorkerSettings\n"
              "if __name__ == '__main__':\n"
              "    env = WorkerEnv('CartPole-v1', None, 2, 0, WorkerSettings(2))\n"
              "    print(*env.worker_pids, flush=True)\n"
              "    sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.path.join(REPO, "src")})
    pids = [int(p) for p in proc.stdout.readline().split()]
    proc.kill()
    proc.wait(timeout=60)
    assert len(pids) == 2 and workers_gone(pids)


# -- settings -----------------------------------------------------------------------------------
def test_num_workers_flag_setting_and_refusals(tmp_path, capsys, caplog):
    from palaestra.api import overrides_from_flags
    from palaestra.cli import _overrides, build_parser
    from palaestra.config import load_run_options
    from palaestra.registry import TrainerRegistry

    args = build_parser().parse_args(["learn", "--num-envs", "4", "--num-workers", "2"])
    assert _overrides(args)["env_settings"] == {"num_envs": 4, "num_workers": 2}
    assert overrides_from_flags({"num_workers": 3}) == {"env_settings": {"num_workers": 3}}
    registry = TrainerRegistry.from_entry_points()
    options = load_run_options({"env_settings": {"env_path": "CartPole-v1"}}, registry)
    assert options.env_settings.num_workers == 0
    with pytest.raises(TrainerConfigError) as info:
        load_run_options({"env_settings": {"env_path": "CartPole-v1", "num_envs": 2,
                                           "num_workers": 3}}, registry)
    assert "env_settings.num_workers" in str(info.value)
    assert "allowed: 0 (the copies in the training process) to 2 (got 3)" in str(info.value)
    with pytest.raises(TrainerConfigError, match="Unity builds and the Editor already run"):
        load_run_options({"env_settings": {"num_workers": 1}}, registry)  # the Editor
    assert learn("--env", "CartPole-v1", "--num-envs", "2", "--num-workers", "3",
                 "--results-dir", str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "env_settings.num_workers" in err
    # the restart quota means something with workers: warned about only without them
    caplog.set_level("WARNING")
    restarts = {"env_path": "CartPole-v1", "num_envs": 2, "max_lifetime_restarts": 3}
    load_run_options({"env_settings": {**restarts, "num_workers": 2}}, registry)
    assert "max_lifetime_restarts" not in caplog.text
    load_run_options({"env_settings": restarts}, registry)
    assert "env_settings.max_lifetime_restarts" in caplog.text and "num_workers" in caplog.text


# -- does it learn ------------------------------------------------------------------------------
@pytest.mark.parametrize("sync", ["all", "ready"])
def test_ppo_cartpole_reaches_195_with_two_workers(tmp_path, sync):
    """As tests/test_learning.py's run. With worker_sync ready the batches (hence the run)
    depend on timing; CartPole's PPO learns whatever they are."""
    config = os.path.join(REPO, "src", "palaestra", "configs", "ppo", "CartPole.yaml")
    assert learn(config, "--run-id", "cp", "--results-dir", str(tmp_path), "--max-steps",
                 "30000", "--seed", "1", "--num-workers", "2", "--worker-sync", sync) == 0
    rewards = scalars(str(tmp_path / "cp" / "CartPole-v1"))["Environment/Cumulative Reward"]
    assert rewards[-1][1] >= 195, rewards
    assert no_worker_children()



@pytest.mark.parametrize("threaded", [None, False])
def test_sac_with_workers_paces_its_gradient_steps_unless_told_not_to(tmp_path, caplog,
                                                                      threaded):
    """Unset, `threaded` is on with workers (the run says so); `false` is honoured."""
    import torch
    import yaml

    sac = {"trainer_type": "sac", "max_steps": 600, "time_horizon": 32,
           "hyperparameters": {"batch_size": 32, "buffer_init_steps": 64},
           "network_settings": {"hidden_units": 16, "num_layers": 1}}
    if threaded is not None:
        sac["threaded"] = threaded
    config = tmp_path / "sac.yaml"
    config.write_text(yaml.safe_dump({"behaviors": {"Pendulum-v1": sac}}))
    caplog.set_level("INFO")
    assert learn(str(config), "--run-id", "s", "--results-dir", str(tmp_path), "--env",
                 "Pendulum-v1", "--num-envs", "2", "--num-workers", "2", "--seed", "1") == 0
    paced = "gradient steps paced" in caplog.text
    assert paced == (threaded is None), caplog.text
    saved = torch.load(tmp_path / "s" / "Pendulum-v1" / "checkpoint.pt", weights_only=True)
    due = saved["step"] - 64  # steps_per_update 1; the last trajectories' steps come due at
    assert due - 2 * 2 * 32 <= saved["update_steps"] <= due  # the end, with none to take
    assert no_worker_children()


def test_ctrl_c_breaks_out_of_waiting_for_a_hung_worker_and_saves(tmp_path):
    """No step timeout: only Ctrl-C ends the wait for a worker that hangs in its 41st step
    (the environment creates $FAULT_HANG_MARKER first). The run saves and ends as any
    Ctrl-C'd run, and the worker goes with it."""
    import torch

    marker = tmp_path / "hanging"
    proc = subprocess.Popen(
        [sys.executable, "-m", "palaestra", "learn", "--env", "fault_envs:hanging",
         "--run-id", "c", "--results-dir", str(tmp_path), "--num-workers", "1",
         "--timeout-step", "0", "--env-args", "after=40"],
        env={**os.environ, "PALAESTRA_NO_PROGRESS": "1", "FAULT_HANG_MARKER": str(marker),
             "PYTHONPATH": os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")])},
        cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # a guard against a hang, not a condition
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in out + err, out + err
    assert "Training interrupted: saving checkpoints" in out
    assert torch.load(tmp_path / "c" / "hanging" / "checkpoint.pt",
                      weights_only=True)["step"] > 0


def test_the_kept_poll_reports_busy_workers_and_sets_aside_one_that_stirs_out_of_turn():
    """`_Readiness` (POSIX): a worker that is not busy and whose pipe becomes readable (it died
    between steps) is left out until it is busy again, instead of being reported at every
    wait; then its pipe is reported like any other."""
    from palaestra.envs.workers import _Readiness

    class Fake:  # what _Readiness reads of a WorkerHandle
        def __init__(self):
            self.conn, self.other = multiprocessing.Pipe()
            self.exit_read, self.exit_write = os.pipe()  # stands for the process sentinel
            self.process, self.busy_since = object(), None

        @property
        def waitables(self):
            return [self.conn, self.exit_read]

    readiness = _Readiness()
    if readiness.poll is None:
        pytest.skip("no kept poll on this platform (multiprocessing's wait is used)")
    a, b = Fake(), Fake()
    try:
        for fake in (a, b):
            readiness.add(fake)
        a.busy_since = 1.0
        b.other.send_bytes(b"x")  # b speaks out of turn, and its exit too (in one poll)
        os.write(b.exit_write, b"!")
        assert readiness.ready([a], 0) == {}
        assert b in readiness.quiet and readiness.ready([a], 0) == {}
        assert len(readiness.owners) == 2  # only a's pipe and exit
        a.other.send_bytes(b"y")
        assert readiness.ready([a], None) == {a: True}  # its pipe
        a.conn.recv_bytes()
        b.busy_since = 2.0  # b is sent a command: watched again, its pipe read
        assert readiness.ready([a, b], 0) == {b: True} and not readiness.quiet
        os.write(a.exit_write, b"!")
        assert readiness.ready([a, b], 0) == {b: True, a: False}  # a: only its exit
        for fake in (a, b):
            readiness.remove(fake)
        assert len(readiness.owners) == 0
    finally:
        readiness.close()
        for fake in (a, b):
            fake.conn.close()
            fake.other.close()
            os.close(fake.exit_read)
            os.close(fake.exit_write)
