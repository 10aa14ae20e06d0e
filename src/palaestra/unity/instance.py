"""One Unity instance (a build or the Editor) and what a run tells Unity.

`UnityInstance` owns the instance's server, its process and its side channels, does the
handshake, and sends and receives one message at a time; `UnityEnvironment` steps several of
them. `UnitySettings` gathers what the run's config says to Unity (env_settings,
engine_settings, the constants of environment_parameters).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from palaestra.exception import EnvironmentSetupError
from palaestra.unity import decode, protocol
from palaestra.unity.connection import (UnityConnection, UnityStopped, close_message,
                                        input_message)
from palaestra.unity.launcher import UnityProcess, launch_arguments
from palaestra.unity.side_channels import (EngineConfig, EngineConfigurationChannel,
                                           EnvironmentParametersChannel, SideChannel,
                                           SideChannelManager, StatsSideChannel)

logger = logging.getLogger("palaestra")

EDITOR_PORT = 5004


@dataclass
class UnitySettings:
    """What a run tells Unity: `env_settings`, `engine_settings` and the constants of
    `environment_parameters`, as ML-Agents reads them."""

    executable: Optional[str] = None  # None: the Editor
    num_envs: int = 1
    base_port: int = 5005
    seed: int = 0
    num_areas: int = 1
    timeout_wait: float = 60.0
    no_graphics: bool = False
    no_graphics_monitor: bool = False
    env_args: List[str] = field(default_factory=list)
    log_folder: Optional[str] = None
    engine: EngineConfig = field(default_factory=EngineConfig.training)
    environment_parameters: Dict[str, float] = field(default_factory=dict)
    max_lifetime_restarts: int = 10
    restarts_rate_limit_n: int = 1
    restarts_rate_limit_period_s: float = 60.0
    #: plugins' channels (entry-point group palaestra.side_channel), on the first instance
    side_channels: Sequence[SideChannel] = ()


class UnityInstance:
    """One build or the Editor: its server, process, side channels and latest output."""

    def __init__(self, settings: UnitySettings, worker: int,
                 arrived: Optional[Callable[[], None]] = None) -> None:
        self.settings = settings
        self.worker = worker
        self.port = settings.base_port + worker if settings.executable else EDITOR_PORT
        self.stats = StatsSideChannel()
        engine = EngineConfigurationChannel()
        engine.set_configuration(settings.engine)
        params = EnvironmentParametersChannel()
        for key, value in settings.environment_parameters.items():
            params.set_float_parameter(key, float(value))
        extra = list(settings.side_channels) if worker == 0 else []
        self.channels = SideChannelManager([engine, params, self.stats, *extra])
        self.brains: Dict[str, Any] = {}
        self.infos: Dict[str, List[Any]] = {}
        self.process: Optional[UnityProcess] = None
        self.connection = UnityConnection(self.port, arrived=arrived)
        try:
            if settings.executable is not None:
                log = None
                if settings.log_folder is not None:
                    log = os.path.join(settings.log_folder, f"Player-{worker}.log")
                no_graphics = settings.no_graphics or (settings.no_graphics_monitor and worker)
                self.process = UnityProcess(
                    settings.executable,
                    launch_arguments(self.port, bool(no_graphics), log, settings.env_args), log)
            else:
                logger.info("Listening on port %d. Start training by pressing the Play button in "
                            "the Unity Editor (waiting %g s, --timeout-wait).", self.port,
                            settings.timeout_wait)
        except BaseException:
            self.connection.close()
            raise

    # -- the exchange ---------------------------------------------------------------------
    def has_output(self) -> bool:
        return self.connection.has_message()

    def check_alive(self) -> None:
        self._alive()

    def _alive(self) -> None:
        if self.process is not None:
            ended = self.process.exit_message()
            if ended is not None:
                raise UnityStopped(ended)

    def handshake(self) -> None:
        """Unity's first message announces its versions; palaestra answers with its own, the
        seed and the number of areas; Unity's second message is answered by the first reset."""
        s = self.settings
        try:
            first = self.connection.receive(s.timeout_wait, self._alive)
        except UnityStopped as exc:
            raise EnvironmentSetupError(self._never_connected(str(exc))) from None
        init = first.unity_output.rl_initialization_output
        if first.header.status != protocol.STATUS_OK or not init.communication_version:
            raise EnvironmentSetupError(f"Unity on port {self.port} opened with status "
                                        f"{first.header.status} and no initialisation; it is "
                                        "not an ML-Agents environment, or it failed at start.")
        problem = protocol.check_communication_version(init.communication_version)
        if problem is not None:
            self.connection.send(close_message())
            raise EnvironmentSetupError(f"Unity on port {self.port} (package "
                                        f"{init.package_version or '?'}): {problem}")
        reply = protocol.UnityInputProto()
        ri = reply.rl_initialization_input
        ri.seed = int(s.seed) + self.worker
        ri.communication_version = protocol.COMMUNICATION_VERSION
        ri.package_version = protocol.PACKAGE_VERSION
        ri.capabilities.CopyFrom(protocol.palaestra_capabilities())
        ri.num_areas = int(s.num_areas)
        self.connection.send(input_message(reply))
        try:
            self.connection.receive(s.timeout_wait, self._alive)  # answered by the first reset
        except UnityStopped as exc:
            raise EnvironmentSetupError(f"Unity on port {self.port} stopped during the "
                                        f"handshake: {exc}") from None
        logger.info("Connected to Unity on port %d (%s, communication %s, package %s)",
                    self.port, init.name or "Academy", init.communication_version,
                    init.package_version or "?")

    def _never_connected(self, why: str) -> str:
        s = self.settings
        if self.process is not None and self.process.exit_message() is not None:
            return f"Unity did not connect: {why}."
        where = f"the build {s.executable}" if s.executable else "the Unity Editor"
        return (f"Unity did not connect on port {self.port} within {s.timeout_wait:g} s "
                f"(--timeout-wait): check that {where} has an Academy with agents whose "
                "Behavior Type is Default, that its ML-Agents package speaks communication "
                f"version {protocol.COMMUNICATION_VERSION.split('.')[0]}.x, that it needs no "
                "click at start-up, and on a machine without a display use --no-graphics."
                + ("" if s.executable else " In the Editor: press Play. To train a built-in or "
                   "Gymnasium environment instead, give --env (env_settings.env_path)."))

    def send(self, command: int, actions: Mapping[str, List[Any]]) -> None:
        message = protocol.UnityInputProto()
        rl = message.rl_input
        rl.command = command
        rl.side_channel = self.channels.generate_side_channel_messages()
        for name, protos in actions.items():
            rl.agent_actions[name].value.extend(protos)
        self.connection.send(input_message(message))

    def receive(self) -> None:
        message = self.connection.receive(self.settings.timeout_wait, self._alive)
        if message.header.status != protocol.STATUS_OK:
            raise UnityStopped(f"Unity on port {self.port} closed the connection (status "
                               f"{message.header.status}: it quit or left Play mode)")
        out = message.unity_output
        self.channels.process_side_channel_message(bytes(out.rl_output.side_channel))
        for brain in out.rl_initialization_output.brain_parameters:
            self.brains[brain.brain_name] = brain
        self.infos = decode.infos_by_behavior(out.rl_output)

    def close(self) -> None:
        try:
            self.connection.close()
        finally:
            if self.process is not None:
                self.process.stop(timeout=self.settings.timeout_wait)
