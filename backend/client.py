"""A non-blocking client for the Stepstone backend (zmq + numpy + protocol only).

The Blender add-on drives it from a timer with ``poll(0)``; the CLI and the tests use the blocking
helpers on top. ``send`` and ``poll(0)`` never block, whatever the connection's state. The client
sends heartbeats (pings) by itself while polled, tracks whether the server is alive, notices a server
that refuses the CURVE handshake, and drops messages for jobs that already ended (late or duplicate
results). It keeps each job's ownership token (from ``accepted``) and shows it in every ``status`` and
``cancel`` about that job, and it notices when the server restarted under its jobs: each job that a
previous run of the server accepted ends, once, with a synthesized ``JOB_LOST`` error.
"""

from __future__ import annotations

import collections
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from . import protocol
from .protocol import ErrorCode, Limits, Message, ProtocolError

BACKLOG_LIMIT = 64
"""Messages kept here, in order, while ZeroMQ refuses to queue them (see ``BackendClient.send``)."""

_GIVEN_UP = frozenset({zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL})
"""Handshake failures after which ZeroMQ drops the connection for good instead of reconnecting."""
_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                     | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class BackendUnavailable(ConnectionError):
    """The server refused this client's handshake, or too many messages are waiting to be sent."""


@dataclass
class ServerHealth:
    alive: bool
    """A message arrived from the server within ``server_timeout_s``."""
    info: dict[str, Any] | None
    """The latest pong's server description (version, devices, busy, pipelines, ...)."""
    round_trip_s: float | None
    """Latest ping → pong time."""
    problem: str | None
    """Why the server is not usable (silent, not authorised, other protocol version), for the UI."""


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
        self._monitor: zmq.Socket | None = None
        self._backlog: collections.deque[list[Any]] = collections.deque()
        self._ended: dict[str, str] = {}
        self._tokens: dict[str, str] = {}
        """Each job's ownership token from its ``accepted``; kept after the job ends, for a resend."""
        self._unread: list[Message] = []
        """Messages ``wait_for`` read past the one it waited for: the next ``poll`` returns them first."""
        self._instances: dict[str, str] = {}
        """Server instance that accepted each job still running for this client."""
        self._last_received: float | None = None
        self._last_ping_sent = 0.0
        self._connected_at = 0.0
        self._pong: dict[str, Any] | None = None
        self._rtt: float | None = None
        self._version_problem: str | None = None
        self._handshake_failures = 0
        """Failed handshakes since the last one that worked (or the last message received)."""
        self._refused = False
        """A handshake failed in a way ZeroMQ does not retry (the server refused the key or mechanism)."""
        self._given_up_at: float | None = None
        """When ZeroMQ gave the current socket's connection up; it is reopened after ``server_timeout_s``."""
        self.connect()

    # ------------------------------------------------------------------------------ socket
    def connect(self) -> None:
        """(Re)open the socket with a fresh identity; pending replies to the old one are lost,
        which is why results are fetched again with ``status(job, resend=True)``."""
        self._close_socket()
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.IDENTITY, uuid.uuid4().bytes)
        socket.setsockopt(zmq.MAXMSGSIZE, self._limits.max_message_bytes)
        if self._keys[0] is not None or self._keys[1] is not None:
            from .auth import configure_client_socket

            if self._keys[0] is None or self._keys[1] is None:
                raise ValueError("CURVE needs both the client secret key file and the server public key file")
            configure_client_socket(socket, Path(self._keys[0]), Path(self._keys[1]))
        # Handshake failures are only visible as socket events; without them a refused client
        # would just look like a silent server.
        self._monitor = socket.get_monitor_socket(_HANDSHAKE_EVENTS)
        socket.connect(self.address)
        self._socket = socket
        self._connected_at = time.monotonic()
        self._last_received = None
        self._last_ping_sent = 0.0
        self._given_up_at = None

    def _close_socket(self) -> None:
        if self._socket is None:
            return
        self._socket.disable_monitor()
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None
        self._socket.close(linger=0)
        self._socket = None

    def close(self) -> None:
        self._close_socket()
        if self._own_context:
            self._context.term()

    def __enter__(self) -> "BackendClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ sending
    def send(self, message: Message) -> None:
        """Send a message to the server; never blocks.

        ZeroMQ queues messages itself while the server is down or starting. Only when it refuses
        them (its connection was given up after a refused handshake, or its queue is full) do they
        wait here, in order, in a backlog of at most ``BACKLOG_LIMIT`` messages that ``send`` and
        ``poll`` hand on as soon as ZeroMQ takes messages again. A message that finds the backlog
        full raises ``BackendUnavailable`` and is not sent: the caller keeps it (the add-on leaves
        its job waiting) instead of the client growing without bound or blocking.
        """
        assert self._socket is not None, "client is closed"
        frames = protocol.encode(message)
        size = protocol.message_size(frames)
        limit = (self._pong or {}).get("server", {}).get("limits", {}).get("max_message_bytes")
        if limit is not None and size > limit:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"message of {size} bytes exceeds the server's limit of {limit}")
        self._flush()
        if len(self._backlog) >= BACKLOG_LIMIT:
            raise BackendUnavailable(f"cannot send to {self.address}: {self.health().problem or 'it takes no messages'}"
                                     f" ({len(self._backlog)} messages are waiting)")
        self._backlog.append(frames)
        self._flush()

    def _flush(self) -> None:
        """Hand the backlog to ZeroMQ, oldest first, until it refuses one."""
        assert self._socket is not None, "client is closed"
        while self._backlog:
            try:
                self._socket.send_multipart(self._backlog[0], zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return  # ZeroMQ takes a multipart message whole or not at all: nothing half-sent
            except Exception:
                # A multipart send that fails half-way otherwise leaves its first frames queued, and
                # the next message would be glued onto them: drop it and start over on a fresh socket.
                self._backlog.popleft()
                self.connect()
                raise
            self._backlog.popleft()

    def ping(self) -> None:
        """A heartbeat; one that ZeroMQ cannot take now is dropped (the next follows in ``heartbeat_s``)."""
        assert self._socket is not None, "client is closed"
        self._last_ping_sent = time.monotonic()
        try:
            self._socket.send_multipart(protocol.encode(protocol.ping(time.time())), zmq.NOBLOCK)
        except zmq.Again:
            pass

    def cancel(self, job: str) -> None:
        """Ask the server to stop ``job``, showing its token (the server wants it after a reconnect)."""
        self.send(protocol.cancel(job, self._tokens.get(job)))

    def status(self, job: str, resend: bool = False) -> None:
        """Ask for ``job``'s state. ``resend`` also asks for its final message again (so messages
        for it are accepted again) and, with the job's token, makes this client its owner."""
        if resend:
            self.forget(job)
        self.send(protocol.status(job, resend, self._tokens.get(job)))

    # ------------------------------------------------------------------------------ receiving
    def poll(self, timeout_ms: int = 0, max_messages: int = 256) -> list[Message]:
        """Everything that has arrived (waiting at most ``timeout_ms`` for the first message).

        Also sends a heartbeat ping when one is due, and the backlog. Messages for jobs that already
        ended are dropped; jobs lost to a server restart come back as final ``JOB_LOST`` errors.
        """
        assert self._socket is not None, "client is closed"
        self._read_handshake_events()
        now = time.monotonic()
        if self._given_up_at is not None and now - self._given_up_at >= self.server_timeout_s:
            self.connect()  # ZeroMQ does not retry a refused handshake: a key authorised since then works
        self._flush()
        if now - self._last_ping_sent >= self.heartbeat_s:
            self.ping()
        out, self._unread = self._unread, []
        if timeout_ms and not out and not self._socket.poll(timeout_ms, zmq.POLLIN):
            return out
        while len(out) < max_messages:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            out += self._receive(frames)
        return out

    def _read_handshake_events(self) -> None:
        assert self._monitor is not None
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._handshake_worked()
                continue
            self._handshake_failures += 1
            if event in _GIVEN_UP:
                self._refused = True
                self._given_up_at = time.monotonic()

    def _handshake_worked(self) -> None:
        self._handshake_failures = 0
        self._refused = False

    def _receive(self, frames: list[Any]) -> list[Message]:
        """What one arrived message means to the caller: nothing, itself, or itself plus lost jobs."""
        self._last_received = time.monotonic()
        self._handshake_worked()
        try:
            message = protocol.decode(frames, self._limits)
        except ProtocolError as exc:
            if exc.code == ErrorCode.VERSION_MISMATCH:
                self._version_problem = exc.message
            return [protocol.error(exc.code, f"unreadable message from the server: {exc.message}")]
        if message.type == "error" and message.get("code") == ErrorCode.VERSION_MISMATCH.value:
            self._version_problem = message.get("message")
        if message.type == "pong":
            self._pong = message.fields
            self._version_problem = None
            sent = message.get("t")
            if isinstance(sent, (int, float)):
                self._rtt = max(0.0, time.time() - sent)
            return [message, *self._lost_to_restart(message.get("server", {}).get("instance"))]
        if message.job is None:
            return [message]
        return self._job_message(message)

    def _job_message(self, message: Message) -> list[Message]:
        job = message.job
        assert job is not None
        if job in self._ended and (message.type in ("accepted", "progress", "preview") or is_final(message)):
            return []  # late or duplicate message for a job that already ended
        if message.type == "job_status" and message.get("state") == "unknown" and job in self._instances:
            return [self._lose(job, "the backend no longer knows it (it restarted)")]
        if is_final(message):
            self._end(job, message.type)
        elif message.type == "accepted":
            self._tokens[job] = message.get("token")
            self._instances[job] = message.get("instance")
            return [message, *self._lost_to_restart(message.get("instance"))]
        return [message]

    def _lost_to_restart(self, instance: Any) -> list[Message]:
        """Final errors for the jobs another run of the server accepted than the one answering now."""
        if not isinstance(instance, str):
            return []  # a server that does not name its instance
        lost = [(job, seen) for job, seen in self._instances.items() if seen != instance]
        return [self._lose(job, f"the backend restarted (instance {seen[:8]} is gone, {instance[:8]} answers now)")
                for job, seen in lost]

    def _lose(self, job: str, why: str) -> Message:
        self._end(job, "error")
        return protocol.error(ErrorCode.JOB_LOST, f"{why}; job {job} was lost: submit it again", job, "failed")

    def _end(self, job: str, final_type: str) -> None:
        self._ended[job] = final_type
        self._instances.pop(job, None)

    def forget(self, job: str) -> None:
        """Accept messages for ``job`` again (used before asking for a result to be re-sent)."""
        self._ended.pop(job, None)

    # ------------------------------------------------------------------------------ health
    def health(self) -> ServerHealth:
        now = time.monotonic()
        if self._version_problem:
            return ServerHealth(False, None, self._rtt, self._version_problem)
        server = (self._pong or {}).get("server")
        refusal = self._refusal(now)
        if refusal is not None:
            return ServerHealth(False, server, self._rtt, refusal)
        silent = self._silent_for(now)
        alive = self._last_received is not None and silent < self.server_timeout_s
        if silent < self.server_timeout_s:
            problem = None
        elif self._last_received is None:
            problem = f"no answer from {self.address} for {silent:.0f} s"
        else:
            problem = f"the backend at {self.address} has been silent for {silent:.0f} s"
        return ServerHealth(alive, server, self._rtt, problem)

    def _silent_for(self, now: float) -> float:
        return now - (self._connected_at if self._last_received is None else self._last_received)

    def _refusal(self, now: float) -> str | None:
        """Why the server does not let this client in, once that is clear: ZeroMQ gave the
        connection up, or every handshake failed for as long as a silent server is tolerated (a
        wrong server key fails without detail, like a connection lost mid-handshake)."""
        lasting = self._handshake_failures > 0 and self._silent_for(now) >= self.server_timeout_s
        if not (self._refused or lasting):
            return None
        return (f"not authorised by the server at {self.address} "
                "(CURVE handshake failed: check the client and server key files)")

    # ------------------------------------------------------------------------------ blocking helpers
    def wait_for(self, predicate: Callable[[Message], bool], timeout_s: float,
                 on_message: Callable[[Message], None] | None = None) -> Message:
        """Poll until a message satisfies ``predicate``; every message goes to ``on_message`` first.

        Raises ``TimeoutError`` after ``timeout_s``, and ``BackendUnavailable`` as soon as the
        server refuses this client (no message can come then)."""
        end = time.monotonic() + timeout_s
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching message from {self.address} within {timeout_s} s")
            messages = self.poll(timeout_ms=int(min(remaining, self.heartbeat_s) * 1000) or 1)
            for index, message in enumerate(messages):
                if on_message is not None:
                    on_message(message)
                if predicate(message):
                    self._unread = messages[index + 1:] + self._unread
                    return message
            refusal = self._refusal(time.monotonic())
            if refusal is not None:
                raise BackendUnavailable(refusal)

    def request_pong(self, timeout_s: float = 5.0) -> Message:
        self.ping()
        return self.wait_for(lambda m: m.type == "pong" or (m.type == "error" and m.job is None), timeout_s)

    def run_job(self, message: Message, timeout_s: float,
                on_message: Callable[[Message], None] | None = None) -> Message:
        """Submit and wait for the job's final message (result or error, ``JOB_LOST`` included)."""
        self.send(message)
        return self.wait_for(lambda m: m.job == message.job and is_final(m), timeout_s, on_message)


def is_final(message: Message) -> bool:
    """True for the message that ends a job: its result, or an error carrying the job's final state.

    An error without ``state`` (``NOT_OWNER``, ``BAD_MESSAGE`` about a status or cancel, ...) answers
    one request and never ends the job it names."""
    return message.type == "result" or (message.type == "error" and message.get("state") is not None)
