"""The fake Unity player (tests/fake_unity) follows ML-Agents' protocol.

Each test plays the trainer: a bare gRPC server whose Exchange handler hands every request
to the test through a queue and answers with the reply the test puts in another queue, the
way palaestra's server will. Waits are on queues and process exits; their timeouts only
guard against a hang.
"""
from __future__ import annotations

import io
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from fake_unity.fake_unity import AGENT_ID_BASE, EDITOR_PORT, EDITOR_PORT_ENV, parse_args, \
    zoo_image
from palaestra.envs.base import ActionTuple
from palaestra.envs.builtin.ball3d import Ball3DCore
from palaestra.unity import protocol as pb
from palaestra.unity.side_channels import (EngineConfigurationChannel,
                                           EnvironmentParametersChannel, SideChannelManager,
                                           StatsAggregationMethod, StatsSideChannel)

FAKE_DIR = Path(__file__).parent / "fake_unity"
WAIT = 30.0  # seconds: only a guard against a hang, never a condition of success


class Trainer:
    """The server side: ``recv()`` Unity's next request, ``send()`` the reply to it."""

    def __init__(self, port: int = 0) -> None:
        self.requests: "queue.Queue" = queue.Queue()
        self.replies: "queue.Queue" = queue.Queue()
        self._stopped = threading.Event()
        handler = grpc.unary_unary_rpc_method_handler(
            self._exchange, request_deserializer=pb.UnityMessageProto.FromString,
            response_serializer=pb.UnityMessageProto.SerializeToString)
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(pb.SERVICE_NAME, {"Exchange": handler}),))
        self.port = self.server.add_insecure_port(f"[::]:{port}")
        self.server.start()

    def _exchange(self, request, context):
        self.requests.put(request)
        while not self._stopped.is_set() and context.is_active():
            try:
                return self.replies.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def recv(self):
        return self.requests.get(timeout=WAIT)

    def send(self, message) -> None:
        self.replies.put(message)

    def stop(self) -> None:
        self._stopped.set()
        self.server.stop(None).wait(WAIT)


@pytest.fixture
def trainer():
    server = Trainer()
    yield server
    server.stop()


@pytest.fixture
def launch(tmp_path):
    """launch(port, *args) starts the fake with a log file; it is killed if still running."""
    started = []

    def start(port, *args, via_launcher=False, env=None):
        log = tmp_path / f"Player-{len(started)}.log"
        exe = [str(FAKE_DIR / "FakeBall.x86_64")] if via_launcher else \
            [sys.executable, str(FAKE_DIR / "fake_unity.py")]
        port_args = [] if port is None else ["--mlagents-port", str(port)]
        env = dict(os.environ if env is None else env, FAKE_UNITY_PYTHON=sys.executable)
        proc = subprocess.Popen(exe + ["-nographics", "-batchmode"] + port_args +
                                ["-logFile", str(log)] + list(args), env=env)
        proc.log = log
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)


def status(code: int):
    return pb.UnityMessageProto(header=pb.HeaderProto(status=code))


def init_reply(seed: int = 5, num_areas: int = 1):
    message = status(pb.STATUS_OK)
    given = message.unity_input.rl_initialization_input
    given.seed, given.num_areas = seed, num_areas
    given.communication_version = pb.COMMUNICATION_VERSION
    given.package_version = pb.PACKAGE_VERSION
    given.capabilities.CopyFrom(pb.palaestra_capabilities())
    return message


def command(kind: int, actions=None, side_channel: bytes = b""):
    message = status(pb.STATUS_OK)
    rl_input = message.unity_input.rl_input
    rl_input.command, rl_input.side_channel = kind, side_channel
    for name, protos in (actions or {}).items():
        rl_input.agent_actions[name].value.extend(protos)
    return message


def continuous(rows):
    return [pb.AgentActionProto(continuous_actions=list(map(float, row))) for row in rows]


def reset_side_channels(time_scale: float = 20.0) -> bytes:
    engine, params = EngineConfigurationChannel(), EnvironmentParametersChannel()
    engine.set_configuration_parameters(time_scale=time_scale)
    params.set_float_parameter("gravity", 9.5)
    return SideChannelManager([engine, params]).generate_side_channel_messages()


def stats_of(message):
    channel = StatsSideChannel()
    manager = SideChannelManager([channel])
    manager.process_side_channel_message(message.unity_output.rl_output.side_channel)
    return channel.get_and_reset_stats()


def infos(message, behavior):
    return list(message.unity_output.rl_output.agentInfos[behavior].value)


def start_session(trainer, seed=5, num_areas=1, side_channel=b""):
    """Handshake, then the first RESET; returns (U1, the reset output)."""
    hello = trainer.recv()
    trainer.send(init_reply(seed, num_areas))
    second = trainer.recv()
    assert second.header.status == pb.STATUS_OK and not second.HasField("unity_output")
    trainer.send(command(pb.RESET, side_channel=side_channel))
    return hello, trainer.recv()


def close(trainer, proc) -> str:
    """Send the trainer's 400; the fake must exit 0. Returns its log."""
    trainer.send(status(pb.STATUS_CLOSE))
    assert proc.wait(WAIT) == 0
    return proc.log.read_text()


def wait_for_log(proc, text: str) -> None:
    deadline = time.monotonic() + WAIT
    while text not in (proc.log.read_text() if proc.log.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, f"no {text!r} in the log"
        time.sleep(0.02)


BALL = "3DBall?team=0"


def test_handshake_then_brain_parameters_with_the_first_reset(trainer, launch):
    proc = launch(trainer.port, "--agents", "3")
    hello, first = start_session(trainer, num_areas=2, side_channel=reset_side_channels())
    assert hello.header.status == pb.STATUS_OK
    init = hello.unity_output.rl_initialization_output
    assert (init.name, init.communication_version) == ("AcademySingleton",
                                                       pb.COMMUNICATION_VERSION)
    assert init.package_version and init.capabilities == pb.palaestra_capabilities()
    assert not init.brain_parameters and not hello.unity_output.HasField("rl_output")

    (brain,) = first.unity_output.rl_initialization_output.brain_parameters
    assert brain.brain_name == BALL and brain.is_training
    assert brain.action_spec.num_continuous_actions == 2
    assert brain.action_spec.num_discrete_actions == 0
    agents = infos(first, BALL)
    assert [a.id for a in agents] == list(range(1000, 1006))  # 3 agents x 2 areas
    for agent in agents:
        assert not agent.done and agent.reward == 0.0
        (obs,) = agent.observations
        assert list(obs.shape) == [8] and list(obs.dimension_properties) == [1]
        assert obs.compression_type == pb.NONE and len(obs.float_data.data) == 8
    stats = stats_of(first)
    assert stats["Fake/Time Scale"] == [(20.0, StatsAggregationMethod.MOST_RECENT)]
    assert stats["Fake/Steps"] == [(1.0, StatsAggregationMethod.SUM)]
    assert stats["Fake/Parameter/gravity"] == [(9.5, StatsAggregationMethod.MOST_RECENT)]

    trainer.send(command(pb.STEP, {BALL: continuous(np.zeros((6, 2)))}))
    second = trainer.recv()
    assert not second.unity_output.rl_initialization_output.brain_parameters
    assert len(infos(second, BALL)) == 6
    trainer.send(command(pb.RESET))  # a reset mid-run: brain parameters are not sent again
    third = trainer.recv()
    assert not third.unity_output.HasField("rl_initialization_output")
    log = close(trainer, proc)
    for line in ("seed 5, num_areas 2", "time scale 20", "gravity = 9.5", "reset #2",
                 "closed the connection (status 400)", "exit 0"):
        assert line in log


def test_actions_drive_the_3dball_physics_and_done_agents_reappear(trainer, launch):
    """The fake's observations equal palaestra's 3DBall core fed the same seed and actions;
    agents whose episode ends send a done info, then decide again with a fresh episode."""
    n, max_step = 4, 30
    proc = launch(trainer.port, "--agents", str(n), "--max-step", str(max_step))
    reference = Ball3DCore(n, max_steps=max_step)
    reference.seed(11)
    reference.reset_agents(np.ones(n, bool))
    _, output = start_session(trainer, seed=11)
    seen_fall = seen_truncation = False
    for _ in range(max_step + 1):
        expected = reference.observe()[0]
        got = np.array([a.observations[0].float_data.data for a in infos(output, BALL)
                        if not a.done], np.float32)
        np.testing.assert_array_equal(got, expected)
        # two platforms tilt to the limit (their balls fall off), the others level themselves
        actions = np.clip(-expected[:, :2] / np.deg2rad(10.0), -1.0, 1.0).astype(np.float32)
        actions[:2] = 1.0
        trainer.send(command(pb.STEP, {BALL: continuous(actions)}))
        output = trainer.recv()
        reward, terminated, truncated = reference.step(
            ActionTuple(actions, np.zeros((n, 0), np.int64)))
        done = terminated | truncated
        agents = infos(output, BALL)
        finished, deciding = agents[:int(done.sum())], agents[int(done.sum()):]
        assert [a.id for a in finished] == [1000 + i for i in np.flatnonzero(done)]
        assert all(a.done for a in finished) and not any(a.done for a in deciding)
        for agent, i in zip(finished, np.flatnonzero(done)):
            assert agent.max_step_reached == bool(truncated[i] and not terminated[i])
            assert agent.reward == pytest.approx(reward[i])
            np.testing.assert_array_equal(agent.observations[0].float_data.data,
                                          reference.observe()[0][i])
        assert [a.id for a in deciding] == [1000 + i for i in range(n)]
        assert [a.reward for a in deciding] == pytest.approx(np.where(done, 0.0, reward))
        seen_fall |= bool(terminated.any())
        seen_truncation |= bool((truncated & ~terminated).any())
        reference.reset_agents(done)
    assert seen_fall and seen_truncation
    close(trainer, proc)


@pytest.mark.parametrize("actions, why", [
    ({BALL: continuous(np.zeros((11, 2)))}, "11 actions for '3DBall?team=0'"),
    ({}, "0 actions for '3DBall?team=0'"),
    ({BALL: continuous(np.zeros((12, 3)))}, "got 3 continuous"),
    ({BALL: continuous(np.zeros((12, 2))), "Other?team=0": []}, "never reported"),
])
def test_a_wrong_action_list_is_a_visible_protocol_violation(trainer, launch, actions, why):
    proc = launch(trainer.port)
    start_session(trainer)
    trainer.send(command(pb.STEP, actions))
    assert proc.wait(WAIT) == 2
    assert "PROTOCOL VIOLATION" in proc.log.read_text() and why in proc.log.read_text()


def test_a_step_before_any_reset_is_a_protocol_violation(trainer, launch):
    proc = launch(trainer.port)
    trainer.recv()
    trainer.send(init_reply())
    trainer.recv()
    trainer.send(command(pb.STEP, {BALL: continuous(np.zeros((12, 2)))}))
    assert proc.wait(WAIT) == 2
    assert "STEP before the first RESET" in proc.log.read_text()


def decode_png(obs) -> np.ndarray:
    image = np.asarray(Image.open(io.BytesIO(obs.compressed_data)), np.float32) / 255.0
    return image.transpose(2, 0, 1)  # HWC -> CHW


def discrete(*rows, cont=None):
    return [pb.AgentActionProto(discrete_actions=list(row),
                                continuous_actions=[] if cont is None else [cont[i]])
            for i, row in enumerate(rows)]


def test_zoo_scene_visual_hybrid_and_group_behaviors(trainer, launch):
    proc = launch(trainer.port, "--scene", "zoo")
    _, first = start_session(trainer)
    brains = {b.brain_name: b.action_spec
              for b in first.unity_output.rl_initialization_output.brain_parameters}
    assert set(brains) == {"Visual?team=0", "Hybrid?team=1", "Group?team=0"}
    assert list(brains["Visual?team=0"].discrete_branch_sizes) == [3, 2]
    assert brains["Hybrid?team=1"].num_continuous_actions == 1
    assert list(brains["Hybrid?team=1"].discrete_branch_sizes) == [2]

    visual = infos(first, "Visual?team=0")
    for index, agent in enumerate(visual):
        image, vector = agent.observations
        assert list(image.shape) == [3, 16, 16] and image.compression_type == pb.PNG
        assert list(image.dimension_properties) == [1, 2, 2]
        np.testing.assert_array_equal(decode_png(image),
                                      zoo_image(0, index).transpose(2, 0, 1) / np.float32(255))
        assert list(vector.float_data.data) == [AGENT_ID_BASE["Visual"] + index, 0.0, 1.0]
    assert [list(a.action_mask) for a in visual] == [[True] + [False] * 4, [False] * 4 + [True]]
    group = infos(first, "Group?team=0")
    assert [a.group_id for a in group] == [7, 7, 7]
    assert not any(a.action_mask for a in infos(first, "Hybrid?team=1"))

    for step in range(1, 6):
        trainer.send(command(pb.STEP, {
            "Visual?team=0": discrete((1, 1), (2, 0)),
            "Hybrid?team=1": discrete((1,), (0,), cont=[0.5, -0.25]),
            "Group?team=0": discrete((0,), (1,), (2,)),
        }))
        output = trainer.recv()
        visual = infos(output, "Visual?team=0")
        assert [a.reward for a in visual] == [11.0, 2.0]
        assert [a.observations[1].float_data.data[1] for a in visual] == [step, step]
        np.testing.assert_array_equal(decode_png(visual[1].observations[0]),
                                      zoo_image(step, 1).transpose(2, 0, 1) / np.float32(255))
        assert [a.reward for a in infos(output, "Hybrid?team=1")] == [1.5, -0.25]
        group = infos(output, "Group?team=0")
        if step < 5:
            assert [(a.done, a.reward, a.group_reward) for a in group] == \
                [(False, 0.0, 0.5), (False, 1.0, 0.5), (False, 2.0, 0.5)]
        else:  # the group's episode lasts 5 steps; then it starts again
            assert [(a.done, a.max_step_reached, a.reward, a.group_reward) for a in group] == \
                [(True, False, r, 0.5) for r in (0.0, 1.0, 2.0)] + \
                [(False, False, 0.0, 0.0)] * 3
            assert [a.observations[0].float_data.data[1] for a in group] == [5.0] * 3 + [0.0] * 3
    assert "Fake/Masked Actions" not in stats_of(output)
    trainer.send(command(pb.STEP, {"Visual?team=0": discrete((0, 0), (0, 1)),  # both masked
                                   "Hybrid?team=1": discrete((1,), (0,), cont=[0.0, 0.0]),
                                   "Group?team=0": discrete((0,), (0,), (0,))}))
    assert stats_of(trainer.recv())["Fake/Masked Actions"] == [(2.0, StatsAggregationMethod.SUM)]
    close(trainer, proc)


@pytest.mark.parametrize("refuse_at", ["U1", "U2"])
def test_a_refused_version_closes_the_fake_cleanly(trainer, launch, refuse_at):
    proc = launch(trainer.port, "--api-version", "2.0.0", via_launcher=True)
    hello = trainer.recv()
    assert hello.unity_output.rl_initialization_output.communication_version == "2.0.0"
    if refuse_at == "U2":
        trainer.send(init_reply())
        trainer.recv()
    trainer.send(status(pb.STATUS_CLOSE))
    assert proc.wait(WAIT) == 0
    log = proc.log.read_text()
    assert "exit 0" in log and ("version mismatch" in log) == (refuse_at == "U2")


def test_crash_after_steps_exits_abruptly_and_a_marker_makes_it_once(trainer, launch, tmp_path):
    marker = tmp_path / "crashed"
    for attempt in range(2):
        proc = launch(trainer.port, "--crash-after-steps", "2", "--crash-marker", str(marker))
        start_session(trainer)
        for step in range(2):
            trainer.send(command(pb.STEP, {BALL: continuous(np.zeros((12, 2)))}))
            if attempt == 1 or step == 0:
                trainer.recv()
        if attempt == 0:
            assert proc.wait(WAIT) == 3 and marker.exists()
        else:  # the restarted player does not crash again
            close(trainer, proc)


def test_quit_after_steps_sends_400_like_leaving_play_mode(trainer, launch):
    proc = launch(trainer.port, "--quit-after-steps", "1")
    start_session(trainer)
    trainer.send(command(pb.STEP, {BALL: continuous(np.zeros((12, 2)))}))
    assert trainer.recv().header.status == pb.STATUS_CLOSE
    trainer.send(status(pb.STATUS_OK))  # whatever the trainer answers, the fake is gone
    assert proc.wait(WAIT) == 0


def test_losing_the_trainer_exits_1(trainer, launch):
    proc = launch(trainer.port)
    start_session(trainer)
    trainer.stop()  # the trainer dies while the fake waits for its reply
    assert proc.wait(WAIT) == 1
    assert "connection to the trainer lost" in proc.log.read_text()


def test_sigterm_exits_cleanly_while_waiting_for_the_trainer(trainer, launch):
    proc = launch(trainer.port)
    trainer.recv()  # the fake now blocks in Exchange
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT) == 0
    assert "terminated by SIGTERM" in proc.log.read_text()


def test_never_connect_waits_until_killed(trainer, launch):
    proc = launch(trainer.port, "--never-connect")
    wait_for_log(proc, "never connecting")
    assert trainer.requests.empty()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT) == 0 and trainer.requests.empty()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_editor_mode_connects_to_the_editor_port_once_the_trainer_listens(launch, monkeypatch):
    monkeypatch.delenv(EDITOR_PORT_ENV, raising=False)
    args, unknown = parse_args(["-logFile", "x.log", "--unity-flag"])
    assert (args.mlagents_port, args.editor, unknown) == (EDITOR_PORT, True, ["--unity-flag"])
    assert parse_args(["--mlagents-port", "5006"])[0].editor is False
    port = free_port()  # stands in for 5004, which a parallel test run may hold
    proc = launch(None, env=dict(os.environ, **{EDITOR_PORT_ENV: str(port)}))
    wait_for_log(proc, "(Editor mode)")  # Play was pressed before the trainer started
    late = Trainer(port)
    try:
        start_session(late)
        close(late, proc)
    finally:
        late.stop()
    assert f"connecting to localhost:{port} (Editor mode)" in proc.log.read_text()


def test_no_trainer_exits_1_after_the_connect_timeout(launch):
    proc = launch(free_port(), "--connect-timeout", "0.2")
    assert proc.wait(WAIT) == 1
    assert "no trainer at port" in proc.log.read_text()
