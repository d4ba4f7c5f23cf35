"""A non-blocking client for the Stepstone backend (zmq + numpy + protocol only).

The Blender add-on drives it from a timer with ``poll(0)``; the CLI and the tests use the blocking
helpers on top. It sends heartbeats (pings) by itself while polled, tracks whether the server is
alive, and drops messages for jobs that already ended (late or duplicate results).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import zmq

from . import protocol
from .protocol import ErrorCode, Limits, Message, ProtocolError


@dataclass
class ServerHealth:
    alive: bool
    """A message arrived from the server within ``server_timeout_s``."""
    info: dict[str, Any] | None
    """The latest pong's server description (version, devices, busy, pipelines, ...)."""
    round_trip_s: float | None
    """Latest ping → pong time."""
    problem: str | None
    """Why the server is not usable (silent, other protocol version), for the UI."""


class BackendClient:
    def __init__(self, address: str, *, client_secret_file: Path | None = None,
                 server_public_file: Path | None = None, heartbeat_s: float = 1.0,
                 server_timeout_s: float = 5.0, max_message_bytes: int = 1024 * 1024 * 1024,
                 context: zmq.Context | None = None):
        self.address = address
        self.heartbeat_s = heartbeat_s
        self.server_timeout_s = server_timeout_s
        self._limits = Limits(max_message_bytes=max_message_bytes)
        self._keys = (client_secret_file, server_public_file)
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket: zmq.Socket | None = None
        self._ended: dict[str, str] = {}
        self._last_received: float | None = None
        self._last_ping_sent = 0.0
        self._connected_at = 0.0
        self._pong: dict[str, Any] | None = None
        self._rtt: float | None = None
        self._version_problem: str | None = None
        self.connect()

    # ------------------------------------------------------------------------------ socket
    def connect(self) -> None:
        """(Re)open the socket with a fresh identity; pending replies to the old one are lost,
        which is why results are fetched again with ``status(job, resend=True)``."""
        if self._socket is not None:
            self._socket.close(linger=0)
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.IDENTITY, uuid.uuid4().bytes)
        socket.setsockopt(zmq.MAXMSGSIZE, self._limits.max_message_bytes)
        if self._keys[0] is not None or self._keys[1] is not None:
            from .auth import configure_client_socket

            if self._keys[0] is None or self._keys[1] is None:
                raise ValueError("CURVE needs both the client secret key file and the server public key file")
            configure_client_socket(socket, Path(self._keys[0]), Path(self._keys[1]))
        socket.connect(self.address)
        self._socket = socket
        self._connected_at = time.monotonic()
        self._last_received = None
        self._last_ping_sent = 0.0

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._own_context:
            self._context.term()

    def __enter__(self) -> "BackendClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ sending
    def send(self, message: Message) -> None:
        """Queue a message for the server; never blocks (ZeroMQ buffers it until connected)."""
        assert self._socket is not None, "client is closed"
        frames = protocol.encode(message)
        size = protocol.message_size(frames)
        limit = (self._pong or {}).get("server", {}).get("limits", {}).get("max_message_bytes")
        if limit is not None and size > limit:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"message of {size} bytes exceeds the server's limit of {limit}")
        try:
            self._socket.send_multipart(frames, copy=False)
        except Exception:
            # A multipart send that fails half-way leaves its first frames queued, and the next
            # message would be glued onto them: start over on a fresh socket.
            self.connect()
            raise

    def ping(self) -> None:
        self._last_ping_sent = time.monotonic()
        self.send(protocol.ping(time.time()))

    # ------------------------------------------------------------------------------ receiving
    def poll(self, timeout_ms: int = 0, max_messages: int = 256) -> list[Message]:
        """Everything that has arrived (waiting at most ``timeout_ms`` for the first message).

        Also sends a heartbeat ping when one is due. Messages for jobs that already ended are dropped.
        """
        assert self._socket is not None, "client is closed"
        now = time.monotonic()
        if now - self._last_ping_sent >= self.heartbeat_s:
            self.ping()
        out: list[Message] = []
        if timeout_ms and not self._socket.poll(timeout_ms, zmq.POLLIN):
            return out
        while len(out) < max_messages:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self._last_received = time.monotonic()
            try:
                message = protocol.decode(frames, self._limits)
            except ProtocolError as exc:
                if exc.code == ErrorCode.VERSION_MISMATCH:
                    self._version_problem = exc.message
                out.append(protocol.error(exc.code, f"unreadable message from the server: {exc.message}"))
                continue
            if message.type == "error" and message.get("code") == ErrorCode.VERSION_MISMATCH.value:
                self._version_problem = message.get("message")
            if message.type == "pong":
                self._pong = message.fields
                self._version_problem = None
                sent = message.get("t")
                if isinstance(sent, (int, float)):
                    self._rtt = max(0.0, time.time() - sent)
            if message.job is not None:
                if message.job in self._ended and (message.type in ("accepted", "progress", "preview")
                                                   or is_final(message)):
                    continue  # late or duplicate message for a job that already ended
                if is_final(message):
                    self._ended[message.job] = message.type
            out.append(message)
        return out

    def forget(self, job: str) -> None:
        """Accept messages for ``job`` again (used before asking for a result to be re-sent)."""
        self._ended.pop(job, None)

    def health(self) -> ServerHealth:
        now = time.monotonic()
        if self._version_problem:
            return ServerHealth(False, None, self._rtt, self._version_problem)
        if self._last_received is None:
            waited = now - self._connected_at
            alive = False
            problem = None if waited < self.server_timeout_s else f"no answer from {self.address} for {waited:.0f} s"
        else:
            silent = now - self._last_received
            alive = silent < self.server_timeout_s
            problem = None if alive else f"the backend at {self.address} has been silent for {silent:.0f} s"
        server = (self._pong or {}).get("server")
        return ServerHealth(alive, server, self._rtt, problem)

    # ------------------------------------------------------------------------------ blocking helpers
    def wait_for(self, predicate: Callable[[Message], bool], timeout_s: float,
                 on_message: Callable[[Message], None] | None = None) -> Message:
        """Poll until a message satisfies ``predicate``; every message goes to ``on_message`` first."""
        end = time.monotonic() + timeout_s
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message from {self.address} within {timeout_s} s")
            for message in self.poll(timeout_ms=int(min(remaining, self.heartbeat_s) * 1000) or 1):
                if on_message is not None:
                    on_message(message)
                if predicate(message):
                    return message

    def request_pong(self, timeout_s: float = 5.0) -> Message:
        self.ping()
        return self.wait_for(lambda m: m.type == "pong" or (m.type == "error" and m.job is None), timeout_s)

    def run_job(self, message: Message, timeout_s: float,
                on_message: Callable[[Message], None] | None = None) -> Message:
        """Submit and wait for the job's final message (result or error)."""
        self.send(message)
        return self.wait_for(lambda m: m.job == message.job and is_final(m), timeout_s, on_message)


def is_final(message: Message) -> bool:
    """True for the message that ends a job: its result, or an error carrying the job's final state."""
    return message.type == "result" or (message.type == "error" and message.get("state") is not None)
