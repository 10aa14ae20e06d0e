"""Environment copies in Ray actors (`env_settings.ray`, `palaestra.scale`): the settings and
their refusals, learning through local actors, a lost actor replaced (its agents' episodes
interrupted) within the restart quota, and a two-node cluster on the loopback interface of a
network namespace of its own. Tests that need Ray are skipped without it (``pip install -e
".[ray]"``; the test extra installs it)."""
import builtins
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from helpers import REPO, TESTS_DIR, assert_stops_past_restart_quota, fault_config, learn, scalars
from palaestra.exception import EnvironmentSetupError, TrainerConfigError

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install -e "
                                                    "'.[ray]'; the test extra has it)")
CARTPOLE = os.path.join(REPO, "src", "palaestra", "configs", "ppo", "CartPole.yaml")


@pytest.fixture(scope="module")
def ray_session():
    """One Ray for the tests that do not test starting it (about 5 s a start on 2 cores): a
    run finds the process already connected, uses that connection and leaves it open."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    printer = builtins.print  # ray.init replaces it, and ray.shutdown does not put it back
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()
        builtins.print = printer


def _fault_config(tmp_path, max_steps=800):
    return fault_config(tmp_path, max_steps, ray={"num_actors": 2, "chunk_steps": 16})


def _final_step(run):
    status = json.loads((run / "run_logs" / "training_status.json").read_text())
    return status["faulty"]["final_checkpoint"]["steps"]


# -- settings (no Ray needed) -------------------------------------------------------------------
def test_ray_block_flags_and_refusals(tmp_path, capsys):
    from palaestra.api import overrides_from_flags
    from palaestra.cli import _overrides, build_parser
    from palaestra.config import load_run_options
    from palaestra.registry import TrainerRegistry

    args = build_parser().parse_args(["learn", "--ray-address", "10.0.0.5:6379",
                                      "--ray-actors", "4", "--ray-chunk-steps", "32"])
    assert _overrides(args)["env_settings"] == {
        "ray": {"address": "10.0.0.5:6379", "num_actors": 4, "chunk_steps": 32}}
    assert overrides_from_flags({"ray_address": "auto"}) == {
        "env_settings": {"ray": {"address": "auto"}}}
    registry = TrainerRegistry.from_entry_points()
    base = {"env_path": "CartPole-v1", "num_envs": 4}
    options = load_run_options({"env_settings": base}, registry)
    assert options.env_settings.ray is None  # no block: no Ray
    if HAVE_RAY:
        ray = load_run_options({"env_settings": {**base, "ray": {}}}, registry).env_settings.ray
        assert (ray.address, ray.num_actors, ray.chunk_steps) == ("local", None, 64)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"env_settings": {**base, "ray": {"address": "nowhere"}}}))
    code = learn(str(config), "--results-dir", str(tmp_path))
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "bad.yaml" in err and "env_settings.ray.address" in err and "nowhere" in err
    assert "local, auto or HOST:PORT" in err
    for ray, key in [({"address": "head:99999"}, "env_settings.ray.address"),
                     ({"num_actors": 5}, "env_settings.ray.num_actors"),
                     ({"chunk_steps": 0}, "env_settings.ray.chunk_steps"),
                     ({"adress": "auto"}, "env_settings.ray.adress")]:
        with pytest.raises(TrainerConfigError) as info:
            load_run_options({"env_settings": {**base, "ray": ray}}, registry)
        assert key in str(info.value), info.value
    with pytest.raises(TrainerConfigError, match="num_workers"):
        load_run_options({"env_settings": {**base, "num_workers": 2, "ray": {}}}, registry)
    with pytest.raises(TrainerConfigError, match="Unity"):
        load_run_options({"env_settings": {"ray": {}}}, registry)  # the Editor
    if HAVE_RAY:  # a head that does not answer is named at once (Ray retries for minutes)
        assert learn("--env", "CartPole-v1", "--ray-address", "127.0.0.1:1", "--results-dir",
                     str(tmp_path)) == 1
        err = capsys.readouterr().err
        assert "env_settings.ray.address 127.0.0.1:1: nothing answers there" in err, err
        assert not (tmp_path / "ppo").exists()


def test_without_ray_palaestra_imports_and_a_ray_block_says_what_to_install(monkeypatch):
    from palaestra.config import load_run_options
    from palaestra.registry import TrainerRegistry

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    registry = TrainerRegistry.from_entry_points()
    with pytest.raises(TrainerConfigError) as info:
        load_run_options({"env_settings": {"env_path": "CartPole-v1", "ray": {}}}, registry)
    assert "env_settings.ray" in str(info.value) and 'palaestra[ray]' in str(info.value)
    from palaestra.scale.ray_fleet import import_ray

    with pytest.raises(EnvironmentSetupError, match=r"palaestra\[ray\]"):
        import_ray()


# -- does it learn ------------------------------------------------------------------------------
@needs_ray
def test_ppo_cartpole_reaches_195_through_local_ray_actors(tmp_path):
    """Ray started by the run itself (address local) and shut down at its end; two actors of
    four copies each, one chunk in flight per actor."""
    import ray

    import palaestra

    connected, printer = ray.is_initialized(), builtins.print
    result = palaestra.learn(CARTPOLE, run_id="cp", results_dir=str(tmp_path), seed=1,
                             max_steps=40000, env_settings={"ray": {
                                 "address": "local", "num_actors": 2, "num_cpus": 2}})
    rewards = scalars(str(tmp_path / "cp" / "CartPole-v1"))["Environment/Cumulative Reward"]
    assert rewards[-1][1] >= 195, rewards
    assert result.steps["CartPole-v1"] >= 40000
    assert (tmp_path / "cp" / "CartPole-v1" / "checkpoint.pt").is_file()
    assert ray.is_initialized() == connected  # a Ray it started is shut down again
    assert builtins.print is printer  # and the print Ray put in its place is undone


# -- the pipeline -------------------------------------------------------------------------------
def _manager(fleet, trajectories, horizon=1000):
    from palaestra.agent_processor import AgentProcessor
    from palaestra.networks.networks import SimpleActor
    from palaestra.policy import TorchPolicy
    from palaestra.scale.ray_manager import RayEnvManager
    from palaestra.settings import NetworkSettings
    from palaestra.stats import StatsReporter
    from palaestra.timers import Timers

    name, spec = next(iter(fleet.behavior_specs.items()))
    policy = TorchPolicy(0, spec, NetworkSettings(hidden_units=8, num_layers=1), SimpleActor,
                         {"conditional_sigma": False, "tanh_squash": False})
    manager = RayEnvManager(fleet, Timers())
    manager.add_behavior(name, policy, AgentProcessor(
        name, spec, horizon, StatsReporter(name, []), trajectories.append))
    return manager, policy


@needs_ray
def test_each_actor_is_asked_for_its_next_chunk_before_one_is_replayed(ray_session):
    """Sampling never waits for learning: an actor's next chunk is requested before its
    last one is replayed (so at most one chunk lags). The weights go to the object store
    once per change of the policy (`weights_changed`), not once per request."""
    from palaestra.scale.ray_fleet import FleetSettings, RayFleet

    fleet = RayFleet.start(FleetSettings("CartPole-v1", None, 2, 0, num_actors=2,
                                         chunk_steps=8))
    try:
        trajectories = []
        manager, policy = _manager(fleet, trajectories, horizon=16)
        events, puts = [], []
        request, replay = manager._request, manager._replay

        def ask(slot):
            events.append(("ask", slot.index))
            request(slot)

        def replayed(slot, rollout):
            events.append(("replay", slot.index))
            replay(slot, rollout)

        class Spy:  # Ray, with its puts counted
            def __getattr__(self, name):
                return getattr(ray_session, name)

            def put(self, value):
                puts.append(value)
                return ray_session.put(value)

        manager._request, manager._replay, manager.ray = ask, replayed, Spy()
        manager.reset()
        for k in range(8):
            if k == 3:
                policy.weights_changed()  # as a trainer does after an update
            manager.advance()
    finally:
        fleet.close()
    assert len(puts) == 2  # the first weights, and the changed ones
    for actor in (0, 1):
        mine = [what for what, index in events if index == actor]
        assert mine[0] == "ask" and "replay" in mine
        # every replay comes right after the next chunk was asked for
        assert all(mine[i - 1] == "ask" for i, what in enumerate(mine) if what == "replay")
    assert len(trajectories) >= 4  # 8 chunks of 8 steps, time_horizon 16, two copies


# -- faults -------------------------------------------------------------------------------------
@needs_ray
def test_a_killed_actor_is_replaced_and_its_agents_episodes_end_interrupted(tmp_path, caplog,
                                                                            monkeypatch,
                                                                            ray_session):
    """The copy of one of two actors (the first to get there) kills its own process in its
    40th step, in the third chunk of 16 steps: its agent had acted at step 32, so its episode
    ends as interrupted after 32 steps with its last observation, and a fresh actor goes on
    with fresh copies."""
    from palaestra.agent_processor import AgentProcessor
    from palaestra.scale.ray_fleet import FleetSettings, RayFleet

    dropped = []
    drop_part = AgentProcessor.drop_part
    monkeypatch.setattr(AgentProcessor, "drop_part", lambda self, part, parts, keep=(): (
        dropped.append((part, parts)), drop_part(self, part, parts, keep))[1])
    caplog.set_level("INFO")
    marker = tmp_path / "killed"
    fleet = RayFleet.start(FleetSettings(
        "worker_envs:faulty", {"at": 40, "how": "kill", "marker": str(marker), "length": 1000},
        2, 0, num_actors=2, chunk_steps=16))
    try:
        trajectories = []
        manager, _ = _manager(fleet, trajectories)
        manager.reset()
        before = [slot.life for slot in fleet.slots]
        chunks = 0
        while not trajectories:  # bounded by steps, not time: the kill comes in chunk 3
            manager.advance()
            chunks += 1
            assert chunks < 20
        for _ in range(4):  # the fresh actor answers
            manager.advance()
    finally:
        fleet.close()
    assert marker.exists() and before == [0, 0]
    killed = [slot for slot in fleet.slots if slot.life == 1]
    assert len(killed) == 1
    (lost,) = trajectories
    assert lost.interrupted and lost.done_reached and len(lost) == 32
    assert lost.agent_id == killed[0].index  # copy 0 of actor k: id 0 * 2 + k
    assert lost.next_obs[0][1] == pytest.approx(31 / 1000)  # its last observation, t = 31
    assert dropped == [(killed[0].index, 2)]  # what its agents waiting for their turn began
    assert "Replacing Ray actor" in caplog.text and "was lost" in caplog.text


@needs_ray
def test_an_actor_killed_mid_run_is_replaced_and_the_run_finishes(tmp_path, caplog,
                                                                  ray_session):
    caplog.set_level("WARNING")
    config, marker = _fault_config(tmp_path), tmp_path / "killed"
    assert learn(config, "--run-id", "k", "--results-dir", str(tmp_path),
                 "--env-args", "at=100", "how=kill", f"marker={marker}") == 0
    assert marker.exists() and "Replacing Ray actor" in caplog.text
    assert (tmp_path / "k" / "faulty" / "checkpoint.pt").is_file()
    assert 800 <= _final_step(tmp_path / "k") < 800 + 2 * 32 + 2 * 16


@needs_ray
def test_past_max_lifetime_restarts_the_run_stops_with_a_checkpoint(tmp_path, capsys,
                                                                    ray_session):
    assert_stops_past_restart_quota(tmp_path, capsys, _fault_config(tmp_path))


@needs_ray
def test_an_error_in_an_actor_stops_the_run_with_its_traceback(tmp_path, capsys, ray_session):
    code = learn(_fault_config(tmp_path), "--run-id", "e", "--results-dir", str(tmp_path),
                 "--env-args", "at=20", "how=raise")
    err = capsys.readouterr().err
    assert code == 1 and "RuntimeError" in err and "the simulator crashed" in err, err
    assert (tmp_path / "e" / "faulty" / "checkpoint.pt").is_file()


# -- a cluster of two nodes ---------------------------------------------------------------------
def _namespace_prefix():
    """The command that runs a script in new network and process namespaces (the loopback
    interface only; every process of the cluster ends with the script), or None where this
    machine does not allow it."""
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        return None
    prefix = [unshare, "--net", "--pid", "--fork", "--mount-proc"]
    if os.geteuid() != 0:
        prefix.insert(1, "--map-root-user")
    try:
        ok = subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], capture_output=True,
                            timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return prefix if ok else None


_CLUSTER_SCRIPT = """\
set -eu
ip link set lo up
ray start --head --node-ip-address=127.0.0.1 --port=6390 --num-cpus=1 --temp-dir="$T/head" \\
    --include-dashboard=false --disable-usage-stats >"$T/head.log" 2>&1
ray start --address=127.0.0.1:6390 --node-ip-address=127.0.0.1 --num-cpus=1 \\
    --temp-dir="$T/node" --disable-usage-stats >"$T/node.log" 2>&1
code=0
python -m palaestra learn --env CartPole-v1 --num-envs 2 --seed 1 --max-steps 1500 \\
    --ray-address 127.0.0.1:6390 --ray-actors 2 --ray-chunk-steps 32 --run-id two \\
    --results-dir "$T/results" || code=$?
ray stop >/dev/null 2>&1 || true
exit $code
"""


@needs_ray
@pytest.mark.cluster
def test_a_run_on_a_two_node_cluster_uses_both_nodes():
    """A head and a second node of one CPU each (`ray start`, each with a folder of its own),
    in a network namespace whose only interface is the loopback: nothing leaves it. Two
    actors of one CPU cannot share a node, so the run's log names two nodes."""
    from conftest import TEST_ACCEL

    if TEST_ACCEL == "off":  # the run is a separate command: PALAESTRA_TEST_ACCEL is not seen
        pytest.skip("the same command as in the accel auto pass (CI runs the suite twice)")
    prefix = _namespace_prefix()
    if prefix is None:
        pytest.skip("unshare (network and process namespaces) is not permitted here")
    folder = tempfile.mkdtemp(prefix="pr")  # short: Ray's socket paths must stay short
    try:
        token = Path(folder) / "token"
        token.write_text(secrets.token_hex(32))
        bin_dir = os.path.dirname(sys.executable)
        env = {**os.environ, "T": folder, "PALAESTRA_NO_PROGRESS": "1",
               "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
               "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
               "PYTHONPATH": os.pathsep.join([TESTS_DIR, os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run([*prefix, "bash", "-c", _CLUSTER_SCRIPT], env=env, cwd=folder,
                              capture_output=True, text=True, timeout=300)
        out = proc.stdout + proc.stderr
        logs = "".join(p.read_text() for p in Path(folder).glob("*.log"))
        assert proc.returncode == 0, out + logs
        line = next(x for x in out.splitlines() if "Ray: 2 actors" in x)
        nodes = {part.split(" on node ")[1].split()[0] for part in line.split(";")}
        assert len(nodes) == 2, line
        assert "(127.0.0.1)" in line and "joined the cluster at 127.0.0.1:6390" in out
        assert (Path(folder) / "results" / "two" / "CartPole-v1" / "checkpoint.pt").is_file()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
