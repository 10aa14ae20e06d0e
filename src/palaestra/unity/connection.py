"""palaestra's end of one Unity instance: the gRPC server Unity's communicator calls.

In ML-Agents' protocol the trainer is the server and Unity the client: Unity calls the one
method `Exchange` with its output (agent infos) and waits; the answer it gets is the trainer's
next input (actions, a reset, or a close). So each request is answered only when the trainer
has decided: the server's handler hands the request to the trainer's thread through a queue
and blocks until the trainer puts the reply in another. The trainer's thread is free meanwhile:
it can answer several instances in turn and then wait for all of them, which is what steps
them concurrently.
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from palaestra.exception import EnvironmentSetupError
from palaestra.unity import protocol

logger = logging.getLogger("palaestra")

#: gRPC's default receive limit is 4 MiB; a few camera observations of many agents exceed it
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_TICK = 0.25  # s between checks of a launched build while waiting for it


class UnityStopped(Exception):
    """Unity closed the connection (left Play mode, quit) or stopped answering."""


class UnityConnection:
    """The server on `host:port` (localhost: a build or the Editor on this machine; nothing on
    the network can reach the trainer). `receive` returns Unity's next message; `send` answers
    the one received last."""

    def __init__(self, port: int, host: str = "localhost",
                 arrived: Optional[Callable[[], None]] = None) -> None:
        import grpc

        self.port = port
        self._arrived = arrived  # told (from a gRPC thread) each time Unity sends
        self._requests: "queue.Queue[Any]" = queue.Queue()
        self._replies: "queue.Queue[Any]" = queue.Queue()
        self._closed = threading.Event()
        self._owed = False  # a request has been received and not answered yet
        _check_port_free(host, port)
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"palaestra-unity-{port}"),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.so_reuseport", 0)])
        handler = grpc.method_handlers_generic_handler(protocol.SERVICE_NAME, {
            "Exchange": grpc.unary_unary_rpc_method_handler(
                self._exchange, request_deserializer=protocol.UnityMessageProto.FromString,
                response_serializer=lambda message: message.SerializeToString())})
        self._server.add_generic_rpc_handlers((handler,))
        try:
            bound = self._server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:
            bound = 0
        if not bound:
            raise EnvironmentSetupError(
                f"Port {port} is in use: another trainer or Unity instance holds it. Stop it, or "
                "give another --base-port (builds use base_port + instance).")
        self._server.start()

    # -- the server's side (gRPC threads) ---------------------------------------------------
    def _exchange(self, request: Any, context: Any) -> Any:
        self._requests.put(request)
        if self._arrived is not None:
            self._arrived()
        while True:
            try:
                return self._replies.get(timeout=_TICK)
            except queue.Empty:
                if self._closed.is_set():
                    return close_message()
                if not context.is_active():  # Unity went away while the trainer decided
                    return close_message()

    # -- the trainer's side -----------------------------------------------------------------
    def receive(self, timeout: Optional[float], check: Optional[Callable[[], None]] = None
                ) -> Any:
        """Unity's next message. Waits up to `timeout` seconds (None: for ever), calling
        `check` every quarter second (it raises if a launched build has died) and raising
        `UnityStopped` on expiry."""
        deadline = None if timeout is None or timeout <= 0 else time.monotonic() + timeout
        while True:
            wait = _TICK if deadline is None else min(_TICK, deadline - time.monotonic())
            try:
                message = self._requests.get(timeout=max(wait, 0.0))
            except queue.Empty:
                if check is not None:
                    check()
                if deadline is not None and time.monotonic() >= deadline:
                    raise UnityStopped(f"Unity sent nothing on port {self.port} for "
                                       f"{timeout:g} s") from None
                continue
            self._owed = True
            return message

    def has_message(self) -> bool:
        """Whether Unity's next message is here (`receive` would return at once)."""
        return not self._requests.empty()

    def send(self, message: Any) -> None:
        """Answer the message received last."""
        if not self._owed:
            raise RuntimeError("nothing to answer: receive Unity's message first")
        self._owed = False
        self._replies.put(message)

    def close(self) -> None:
        """Tell Unity to stop (a 400 answer, as ML-Agents' trainer does) and stop serving."""
        if self._closed.is_set():
            return
        if self._owed:
            self.send(close_message())
        self._closed.set()
        self._server.stop(grace=1.0).wait(timeout=5.0)


def close_message() -> Any:
    message = protocol.UnityMessageProto()
    message.header.status = protocol.STATUS_CLOSE
    return message


def input_message(unity_input: Any) -> Any:
    message = protocol.UnityMessageProto()
    message.header.status = protocol.STATUS_OK
    message.unity_input.CopyFrom(unity_input)
    return message


def _check_port_free(host: str, port: int) -> None:
    """A plain bind first: gRPC may share a port another process serves on, and then Unity
    would talk to whichever answers."""
    if not 0 < port < 65536:
        raise EnvironmentSetupError(f"Port {port} is not a TCP port (1-65535): check "
                                    "--base-port and --num-envs.")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # a port whose last server has just closed keeps connections in TIME_WAIT: still free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1" if host == "localhost" else host, port))
        except OSError:
            raise EnvironmentSetupError(
                f"Port {port} is in use: another trainer or Unity instance holds it. Stop it, "
                "or give another --base-port (builds use base_port + instance).") from None


def free_base_port(count: int = 1) -> int:
    """A port with `count` free ports from it on (the kernel's pick, then each checked), for
    `--base-port` where several runs share a machine (tests, benchmarks)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count >= 65536:
            continue
        try:
            for port in range(base, base + count):
                _check_port_free("localhost", port)
        except EnvironmentSetupError:
            continue
        return base
    raise EnvironmentSetupError(f"no {count} free consecutive ports found on this machine")
