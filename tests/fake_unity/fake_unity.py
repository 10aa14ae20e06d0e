"""A fake Unity build for palaestra's tests: the client side of ML-Agents' gRPC protocol.

It behaves like a Unity player (or the Editor after Play is pressed) with com.unity.ml-agents:
it connects to the trainer's server at ``localhost:PORT``, does the two-message handshake, then
answers every trainer message with the output of one Academy step. The simulation of the
"ball" scene is palaestra's own 3DBall core, so a policy trained through this fake learns;
the "zoo" scene exists to cover what the decoder must read (PNG observations, masks, hybrid
actions, groups). Only grpc, numpy, Pillow and palaestra's protocol modules are used.

Exit codes: 0 the trainer closed the connection (a reply with status != 200, QUIT, SIGTERM,
or ``--quit-after-steps``); 1 the connection was lost or never made; 2 the trainer broke the
protocol (the reason is in the log); 3 ``--crash-after-steps`` (an abrupt ``os._exit``).
See README.md in this folder for the options.
"""
from __future__ import annotations

import argparse
import io
import os
import signal
import struct
import sys
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, TextIO, Tuple

import grpc
import numpy as np
from PIL import Image

from palaestra.envs.base import ActionTuple
from palaestra.envs.builtin.ball3d import Ball3DCore
from palaestra.unity import protocol as pb
from palaestra.unity.side_channels import (
    ENGINE_CONFIGURATION_CHANNEL_ID, ENVIRONMENT_PARAMETERS_CHANNEL_ID, STATS_CHANNEL_ID,
    TRAINING_ANALYTICS_CHANNEL_ID, IncomingMessage, OutgoingMessage, SideChannelError,
    split_frames)

#: The port the Editor connects to (MLAgents settings "EditorPort"); the environment variable
#: lets the fake's own tests use a free port instead.
EDITOR_PORT = 5004
EDITOR_PORT_ENV = "FAKE_UNITY_EDITOR_PORT"
UNITY_PACKAGE_VERSION = "3.0.0-fake"
MAX_MESSAGE_BYTES = 64 << 20
EXIT_CLOSED, EXIT_LOST, EXIT_VIOLATION, EXIT_CRASH = 0, 1, 2, 3
AGENT_ID_BASE = {"ball": 1000, "Visual": 2000, "Hybrid": 3000, "Group": 4000, "Late": 5000}
ZOO_IMAGE_SIZE = 16
GROUP_ID, GROUP_REWARD, GROUP_EPISODE = 7, 0.5, 5
# aggregation codes of the Stats side channel (0 is AVERAGE)
MOST_RECENT, SUM = 1, 2


class ProtocolViolation(Exception):
    """The trainer sent something a real Unity would choke on."""


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived."""


class Log:
    """Unity's player log: one line per event, flushed at once (a test may read it live)."""

    def __init__(self, path: Optional[str]) -> None:
        self._start = time.monotonic()
        self._own = path is not None and path != "-"
        self._file: TextIO = sys.stderr
        if path is not None and path != "-":
            self._file = open(path, "w", encoding="utf-8")

    def __call__(self, message: str) -> None:
        self._file.write(f"[fake-unity {time.monotonic() - self._start:8.3f}s] {message}\n")
        self._file.flush()

    def close(self) -> None:
        if self._own:
            self._file.close()


# --------------------------------------------------------------------------- messages


def vector_observation(values: Sequence[float]) -> Any:
    return pb.ObservationProto(shape=[len(values)], compression_type=pb.NONE,
                               float_data=pb.FloatDataProto(data=list(values)),
                               dimension_properties=[1], name="VectorSensor")


def png_observation(image: np.ndarray) -> Any:
    """An RGB camera: `image` HWC uint8, sent as one PNG with CHW shape (Unity's layout)."""
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="PNG")
    height, width, channels = image.shape
    return pb.ObservationProto(shape=[channels, height, width], compression_type=pb.PNG,
                               compressed_data=buffer.getvalue(), dimension_properties=[1, 2, 2],
                               name="CameraSensor")


def zoo_image(step: int, index: int) -> np.ndarray:
    """The Visual agents' camera image, HWC uint8: red = 16 x column, green = 16 x row, blue =
    (40 step + 100 index) mod 256, for agent `index` (0, 1) at episode step `step`."""
    size = ZOO_IMAGE_SIZE
    image = np.empty((size, size, 3), np.uint8)
    image[:, :, 0] = 16 * np.arange(size)[None, :]
    image[:, :, 1] = 16 * np.arange(size)[:, None]
    image[:, :, 2] = (40 * step + 100 * index) % 256
    return image


def brain_parameters(name: str, continuous: int, branches: Sequence[int]) -> Any:
    spec = pb.ActionSpecProto(num_continuous_actions=continuous,
                              num_discrete_actions=len(branches),
                              discrete_branch_sizes=list(branches))
    return pb.BrainParametersProto(brain_name=name, is_training=True, action_spec=spec)


def stat_frame(key: str, value: float, aggregation: int) -> bytes:
    """One Stats side-channel frame (framed here, not with palaestra's code under test)."""
    msg = OutgoingMessage()
    msg.write_string(key)
    msg.write_float32(value)
    msg.write_int32(aggregation)
    return struct.pack("<16si", STATS_CHANNEL_ID.bytes_le, len(msg.buffer)) + msg.buffer


# -------------------------------------------------------------------------- behaviors


class Behavior:
    """One behavior's agents. Every agent requests a decision every Academy step, so the
    actions of a STEP pair one-to-one, in order, with ``ids``."""

    def __init__(self, name: str, ids: Sequence[int], continuous: int,
                 branches: Sequence[int]) -> None:
        self.name, self.ids = name, list(ids)
        self.continuous, self.branches = continuous, tuple(branches)
        self.masked_actions = 0  # masked discrete actions received (zoo only)

    def brain(self) -> Any:
        return brain_parameters(self.name, self.continuous, self.branches)

    def check(self, actions: Sequence[Any]) -> None:
        if len(actions) != len(self.ids):
            raise ProtocolViolation(
                f"{len(actions)} actions for {self.name!r}, which has {len(self.ids)} agents "
                "awaiting a decision (one AgentActionProto per deciding agent, in order)")
        for agent_id, action in zip(self.ids, actions):
            discrete = list(action.discrete_actions)
            if len(action.continuous_actions) != self.continuous or \
                    len(discrete) != len(self.branches):
                raise ProtocolViolation(
                    f"agent {agent_id} of {self.name!r} got {len(action.continuous_actions)} "
                    f"continuous and {len(discrete)} discrete actions; the action spec has "
                    f"{self.continuous} continuous and branches {self.branches}")
            if any(not 0 <= d < size for d, size in zip(discrete, self.branches)):
                raise ProtocolViolation(f"agent {agent_id} of {self.name!r}: discrete actions "
                                        f"{discrete} out of branches {self.branches}")

    def reset(self) -> List[Any]:
        raise NotImplementedError

    def step(self, actions: Sequence[Any]) -> List[Any]:
        raise NotImplementedError


class BallBehavior(Behavior):
    """3DBall?team=0: palaestra's 3DBall physics, 8 floats observed, 2 continuous actions."""

    def __init__(self, agents: int, seed: int, max_step: int) -> None:
        super().__init__("3DBall?team=0", range(AGENT_ID_BASE["ball"],
                                                AGENT_ID_BASE["ball"] + agents), 2, ())
        self.core = Ball3DCore(agents, max_steps=max_step)
        self.core.seed(seed)

    def _infos(self, obs: np.ndarray, rows: np.ndarray, reward: np.ndarray,
               done: bool = False, interrupted: Optional[np.ndarray] = None) -> List[Any]:
        return [pb.AgentInfoProto(
            id=self.ids[i], reward=float(reward[i]), done=done,
            max_step_reached=bool(interrupted is not None and interrupted[i]),
            observations=[vector_observation(obs[i].tolist())]) for i in rows]

    def reset(self) -> List[Any]:
        n = len(self.ids)
        self.core.reset_agents(np.ones(n, bool))
        return self._infos(self.core.observe()[0], np.arange(n), np.zeros(n))

    def step(self, actions: Sequence[Any]) -> List[Any]:
        n = len(self.ids)
        continuous = np.array([list(a.continuous_actions) for a in actions], np.float32)
        reward, terminated, truncated = self.core.step(
            ActionTuple(continuous.reshape(n, 2), np.zeros((n, 0), np.int64)))
        done = terminated | truncated
        # Like Unity: the done infos come first (sent when the episode ends), then every
        # agent's decision request, the reset ones with their new observation and no reward.
        infos = self._infos(self.core.observe()[0], np.flatnonzero(done), reward, True,
                            truncated & ~terminated)
        self.core.reset_agents(done)
        return infos + self._infos(self.core.observe()[0], np.arange(n),
                                   np.where(done, 0.0, reward))


class ZooBehavior(Behavior):
    """A scripted behavior for decoding tests. Observations: [id, episode step, 1.0] (after a
    camera image from `zoo_image` if ``visual``). Reward per step: the sum of the continuous
    actions plus sum_i 10**i * discrete[i]. Episodes last ``episode`` steps (done, not
    interrupted), or else ``max_step`` (done, interrupted). Agents of a group (``groups``, one
    id per agent, 0 = none) get a group reward of GROUP_REWARD every step."""

    def __init__(self, name: str, ids: Sequence[int], continuous: int, branches: Sequence[int],
                 max_step: int, visual: bool = False, episode: Optional[int] = None,
                 groups: Optional[Sequence[int]] = None,
                 masks: Optional[Callable[[int], List[bool]]] = None) -> None:
        super().__init__(name, ids, continuous, branches)
        self.max_step, self.visual, self.episode = max_step, visual, episode
        self.groups = list(groups) if groups is not None else [0] * len(self.ids)
        self.masks = masks
        self.steps = [0] * len(self.ids)

    def _info(self, index: int, reward: float = 0.0, done: bool = False,
              interrupted: bool = False, group_reward: float = 0.0) -> Any:
        agent_id, step = self.ids[index], self.steps[index]
        observations = [vector_observation([agent_id, step, 1.0])]
        if self.visual:
            observations.insert(0, png_observation(zoo_image(step, index % 2)))
        mask = self.masks(index) if self.masks is not None and not done else []
        return pb.AgentInfoProto(id=agent_id, reward=reward, done=done,
                                 max_step_reached=interrupted, action_mask=mask,
                                 observations=observations, group_id=self.groups[index],
                                 group_reward=group_reward)

    def reset(self) -> List[Any]:
        self.steps = [0] * len(self.ids)
        return [self._info(i) for i in range(len(self.ids))]

    def _reward(self, index: int, action: Any) -> float:
        discrete = list(action.discrete_actions)
        if self.masks is not None:
            mask = self.masks(index)
            offsets = np.cumsum((0,) + self.branches[:-1])
            self.masked_actions += sum(mask[o + d] for o, d in zip(offsets, discrete))
        return float(sum(action.continuous_actions)) + sum(10 ** i * d
                                                           for i, d in enumerate(discrete))

    def step(self, actions: Sequence[Any]) -> List[Any]:
        done_infos, rewards = [], []
        for index, action in enumerate(actions):
            group_reward = GROUP_REWARD if self.groups[index] else 0.0
            self.steps[index] += 1
            reward = self._reward(index, action)
            ended = self.episode is not None and self.steps[index] >= self.episode
            interrupted = not ended and self.steps[index] >= self.max_step
            if ended or interrupted:
                done_infos.append(self._info(index, reward, True, interrupted, group_reward))
                self.steps[index], reward = 0, 0.0
            rewards.append(reward)
        # an agent that just started its episode has earned no group reward yet
        return done_infos + [self._info(i, r, group_reward=GROUP_REWARD if self.steps[i] and
                                        self.groups[i] else 0.0) for i, r in enumerate(rewards)]


def make_scene(scene: str, agents: int, areas: int, seed: int, max_step: int) -> List[Behavior]:
    if scene == "ball":
        return [BallBehavior(agents * areas, seed, max_step)]

    def ids(kind: str, per_area: int) -> range:
        return range(AGENT_ID_BASE[kind], AGENT_ID_BASE[kind] + per_area * areas)

    def visual_mask(index: int) -> List[bool]:  # True = masked; branches (3, 2)
        return [index % 2 == 0, False, False, False, index % 2 == 1]

    return [
        ZooBehavior("Visual?team=0", ids("Visual", 2), 0, (3, 2), max_step, visual=True,
                    masks=visual_mask),
        ZooBehavior("Hybrid?team=1", ids("Hybrid", 2), 1, (2,), max_step),
        ZooBehavior("Group?team=0", ids("Group", 3), 0, (3,), max_step, episode=GROUP_EPISODE,
                    groups=[GROUP_ID + i // 3 for i in range(3 * areas)]),  # a group per area
    ]


# ---------------------------------------------------------------------------- academy


class Academy:
    """Applies the trainer's inputs (side channels, then the command) and builds outputs."""

    def __init__(self, behaviors: List[Behavior], log: Log) -> None:
        self.behaviors = {b.name: b for b in behaviors}
        self.log = log
        self.time_scale = 1.0
        self.parameters: Dict[str, float] = {}
        self.announced: Set[str] = set()  # behaviors whose brain parameters were sent
        self.resets = self.steps = 0
        # (step, behavior): a behavior whose agents first appear at that step (a prefab
        # spawned in the middle of a scene)
        self.late: Optional[Tuple[int, Behavior]] = None

    def apply(self, rl_input: Any) -> Any:
        """The output of the Academy step that `rl_input` (a RESET or STEP) causes."""
        self.read_side_channels(rl_input.side_channel)
        if rl_input.command == pb.RESET:
            self.resets += 1
            self.log(f"reset #{self.resets}")
            infos = {name: b.reset() for name, b in self.behaviors.items()}
        elif rl_input.command == pb.STEP:
            if not self.resets:
                raise ProtocolViolation("STEP before the first RESET (the reply to the "
                                        "handshake must be a RESET)")
            self.steps += 1
            infos = self.step(rl_input.agent_actions)
        else:
            raise ProtocolViolation(f"unknown command {rl_input.command}")
        return self.output(infos)

    def step(self, agent_actions: Any) -> Dict[str, List[Any]]:
        unknown = sorted(set(agent_actions) - set(self.behaviors))
        if unknown:
            raise ProtocolViolation(f"actions for behaviors never reported: {unknown}")
        for name, behavior in self.behaviors.items():
            behavior.check(agent_actions[name].value if name in agent_actions else [])
        infos = {name: b.step(agent_actions[name].value) for name, b in self.behaviors.items()}
        if self.late is not None and self.steps >= self.late[0]:
            behavior = self.late[1]
            self.late = None
            self.log(f"behavior {behavior.name} appears at step {self.steps}")
            self.behaviors[behavior.name] = behavior
            infos[behavior.name] = behavior.reset()
        return infos

    def output(self, infos: Dict[str, List[Any]]) -> Any:
        message = pb.UnityMessageProto(header=pb.HeaderProto(status=pb.STATUS_OK))
        rl_output = message.unity_output.rl_output
        for name, agents in infos.items():
            rl_output.agentInfos[name].value.extend(agents)
            if agents and name not in self.announced:
                self.announced.add(name)
                message.unity_output.rl_initialization_output.brain_parameters.append(
                    self.behaviors[name].brain())
        rl_output.side_channel = self.stats()
        return message

    def stats(self) -> bytes:
        frames = [stat_frame("Fake/Time Scale", self.time_scale, MOST_RECENT),
                  stat_frame("Fake/Steps", 1.0, SUM)]
        frames += [stat_frame(f"Fake/Parameter/{key}", value, MOST_RECENT)
                   for key, value in sorted(self.parameters.items())]
        masked = sum(b.masked_actions for b in self.behaviors.values())
        if masked:
            frames.append(stat_frame("Fake/Masked Actions", masked, SUM))
            for b in self.behaviors.values():
                b.masked_actions = 0
        return b"".join(frames)

    def read_side_channels(self, data: bytes) -> None:
        try:
            for channel_id, payload in split_frames(data):
                self.read_frame(channel_id, IncomingMessage(payload, channel_id))
        except SideChannelError as exc:
            raise ProtocolViolation(f"bad side-channel data: {exc}") from None

    def read_frame(self, channel_id: uuid.UUID, msg: IncomingMessage) -> None:
        if channel_id == ENGINE_CONFIGURATION_CHANNEL_ID:
            kind = msg.read_int32()
            names = {0: "screen size", 1: "quality level", 3: "target frame rate",
                     4: "capture frame rate"}
            if kind == 2:
                self.time_scale = msg.read_float32()
                self.log(f"engine configuration: time scale {self.time_scale:g}")
            elif kind in names:
                values = [msg.read_int32() for _ in range(2 if kind == 0 else 1)]
                self.log(f"engine configuration: {names[kind]} {values}")
            else:
                raise ProtocolViolation(f"unknown engine configuration type {kind}")
        elif channel_id == ENVIRONMENT_PARAMETERS_CHANNEL_ID:
            key, kind = msg.read_string(), msg.read_int32()
            if kind == 0:
                self.parameters[key] = msg.read_float32()
                self.log(f"environment parameter {key} = {self.parameters[key]:g}")
            else:
                seed, sampler = msg.read_int32(), msg.read_int32()
                self.log(f"environment parameter {key}: sampler {sampler} (seed {seed})")
        elif channel_id == TRAINING_ANALYTICS_CHANNEL_ID:
            self.log(f"training analytics message ({len(msg.get_raw_bytes())} bytes)")
        else:
            self.log(f"side channel {channel_id} unknown here: ignored")


# ---------------------------------------------------------------------------- running


def parse_args(argv: Sequence[str]) -> Tuple[argparse.Namespace, List[str]]:
    p = argparse.ArgumentParser(prog="fake_unity", allow_abbrev=False)
    p.add_argument("--mlagents-port", type=int, default=None)
    p.add_argument("-logFile", "-logfile", dest="log_file", default=None)
    p.add_argument("-nographics", action="store_true")
    p.add_argument("-batchmode", action="store_true")
    p.add_argument("--agents", type=int, default=12)
    p.add_argument("--step-ms", type=float, default=0.0)
    p.add_argument("--scene", choices=("ball", "zoo"), default="ball")
    p.add_argument("--api-version", default=pb.COMMUNICATION_VERSION)
    p.add_argument("--never-connect", action="store_true")
    p.add_argument("--crash-after-steps", type=int, default=None)
    p.add_argument("--crash-marker", default=None)
    p.add_argument("--quit-after-steps", type=int, default=None)
    p.add_argument("--max-step", type=int, default=1000)
    p.add_argument("--late-behavior-after", type=int, default=None,
                   help="A second behavior (2 agents, 3 discrete actions) appears at this "
                        "Academy step.")
    p.add_argument("--late-behavior-name", default="Late")
    p.add_argument("--connect-timeout", type=float, default=60.0)
    args, unknown = p.parse_known_args(list(argv))  # Unity ignores arguments it doesn't know
    if args.agents < 1 or args.max_step < 1:
        p.error("--agents and --max-step must be >= 1")
    if args.mlagents_port is None:
        args.mlagents_port = int(os.environ.get(EDITOR_PORT_ENV, EDITOR_PORT))
        args.editor = True
    else:
        args.editor = False
    return args, unknown


def _on_signal(signum: int, frame: Any) -> None:
    raise Terminated(signal.Signals(signum).name)


def connect(args: argparse.Namespace, log: Log) -> Tuple[Any, Any]:
    """A channel to the trainer and its Exchange method; waits up to ``--connect-timeout``."""
    options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
               ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
               # retry the connection often: in Editor mode the trainer may start later
               ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
               ("grpc.max_reconnect_backoff_ms", 500)]
    target = f"localhost:{args.mlagents_port}"
    log(f"connecting to {target} ({'Editor' if args.editor else 'build'} mode)")
    channel = grpc.insecure_channel(target, options=options)
    exchange = channel.unary_unary(pb.EXCHANGE_METHOD,
                                   request_serializer=pb.UnityMessageProto.SerializeToString,
                                   response_deserializer=pb.UnityMessageProto.FromString)
    return channel, exchange


def handshake(args: argparse.Namespace, exchange: Any, log: Log
              ) -> Optional[Tuple[Any, Academy]]:
    """U1 -> P1 -> U2; returns (the reply to U2, the Academy), or None if the trainer closed."""
    hello = pb.UnityMessageProto(header=pb.HeaderProto(status=pb.STATUS_OK))
    init = hello.unity_output.rl_initialization_output
    init.name = "AcademySingleton"
    init.communication_version = args.api_version
    init.package_version = UNITY_PACKAGE_VERSION
    init.capabilities.CopyFrom(pb.palaestra_capabilities())
    reply = exchange(hello)
    if reply.header.status != pb.STATUS_OK:
        log(f"the trainer refused the handshake (status {reply.header.status})")
        return None
    if not reply.unity_input.HasField("rl_initialization_input"):
        raise ProtocolViolation("the reply to the first message has no rl_initialization_input")
    given = reply.unity_input.rl_initialization_input
    areas = max(1, given.num_areas)
    log(f"handshake: Unity communication version {args.api_version}, trainer communication "
        f"version {given.communication_version!r}, package version {given.package_version!r}, "
        f"seed {given.seed}, num_areas {given.num_areas}")
    mismatch = pb.check_communication_version(args.api_version, given.communication_version)
    if mismatch:  # like Unity: say so, and leave the refusal (a 400) to the trainer
        log(f"version mismatch: {mismatch}")
    academy = Academy(make_scene(args.scene, args.agents, areas, given.seed, args.max_step), log)
    if args.late_behavior_after is not None:
        late_ids = range(AGENT_ID_BASE["Late"], AGENT_ID_BASE["Late"] + 2)
        academy.late = (args.late_behavior_after,
                        ZooBehavior(args.late_behavior_name, late_ids, 0, (3,),
                                    args.max_step, episode=10))
    return exchange(pb.UnityMessageProto(header=pb.HeaderProto(status=pb.STATUS_OK))), academy


def crash(args: argparse.Namespace, log: Log) -> None:
    if args.crash_marker is not None:
        if os.path.exists(args.crash_marker):
            return
        open(args.crash_marker, "w").close()
    log(f"crashing after {args.crash_after_steps} steps (exit code {EXIT_CRASH})")
    os._exit(EXIT_CRASH)


def serve(args: argparse.Namespace, exchange: Any, log: Log) -> int:
    started = handshake(args, exchange, log)
    if started is None:
        return EXIT_CLOSED
    reply, academy = started
    while reply.header.status == pb.STATUS_OK:
        rl_input = reply.unity_input.rl_input
        if rl_input.command == pb.QUIT:
            log("QUIT command received")
            return EXIT_CLOSED
        output = academy.apply(rl_input)
        if args.step_ms > 0:
            time.sleep(args.step_ms / 1000.0)  # the cost of a real simulation step
        if args.crash_after_steps is not None and academy.steps >= args.crash_after_steps:
            crash(args, log)
        if args.quit_after_steps is not None and academy.steps >= args.quit_after_steps:
            log(f"quitting after {academy.steps} steps: sending status {pb.STATUS_CLOSE}")
            try:  # like leaving Play mode: nothing more is awaited from the trainer
                exchange(pb.UnityMessageProto(header=pb.HeaderProto(status=pb.STATUS_CLOSE)),
                         timeout=10.0)
            except grpc.RpcError:
                pass
            return EXIT_CLOSED
        reply = exchange(output)
    log(f"the trainer closed the connection (status {reply.header.status}) after "
        f"{academy.steps} steps")
    return EXIT_CLOSED


def run(args: argparse.Namespace, log: Log) -> int:
    if args.never_connect:
        log("never connecting (--never-connect): waiting to be killed")
        while True:
            time.sleep(3600)
    channel, exchange = connect(args, log)
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.connect_timeout)
        except grpc.FutureTimeoutError:
            log(f"no trainer at port {args.mlagents_port} after {args.connect_timeout:g} s")
            return EXIT_LOST
        log("connected")
        return serve(args, exchange, log)
    except grpc.RpcError as exc:
        log(f"connection to the trainer lost: {exc.code().name}")  # type: ignore[attr-defined]
        return EXIT_LOST
    except ProtocolViolation as exc:
        log(f"PROTOCOL VIOLATION by the trainer: {exc}")
        return EXIT_VIOLATION
    finally:
        channel.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, unknown = parse_args(sys.argv[1:] if argv is None else argv)
    log = Log(args.log_file)
    code = EXIT_CLOSED
    try:
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        log(f"start: pid {os.getpid()}, scene {args.scene}, arguments {sys.argv[1:]}"
            + (f", ignored {unknown}" if unknown else ""))
        code = run(args, log)
    except Terminated as exc:
        log(f"terminated by {exc}")
    log(f"exit {code}")
    log.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
