"""For testing clients: a backend played by the test on a plain ZeroMQ ROUTER socket, and a guard
against clients that block.

The fake server answers what a client needs to see (pongs naming the server's instance, ``accepted``
with a token) and sends whatever the test queues, so clients can be tested against server states
that a real server only reaches by dying (a restart on the same port) or by a bug.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable

import zmq

from backend import protocol
from backend.protocol import Message


class FakeServer:
    def __init__(self, instance: str, port: int = 0, curve: tuple[bytes, bytes] | None = None):
        """``curve``: the server's (public, secret) key pair; clients are then checked by whatever
        authenticator the test starts on ``context``."""
        self.instance = instance
        self.answer_pings = True
        self.received: list[Message] = []
        self.context = zmq.Context()
        self._socket = self.context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            self._socket.curve_server = True
            self._socket.curve_publickey, self._socket.curve_secretkey = curve
        if port:
            self._socket.bind(f"tcp://127.0.0.1:{port}")
        else:
            port = self._socket.bind_to_random_port("tcp://127.0.0.1")
        self.port = port
        self.address = f"tcp://127.0.0.1:{port}"
        self._outbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @staticmethod
    def token(job: str) -> str:
        return f"token-{job}"

    def push(self, message: Message) -> None:
        """Send ``message`` to the client that spoke last."""
        self._outbox.put(message)

    def wait_for(self, predicate: Callable[[Message], bool], timeout_s: float = 5.0) -> Message:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            found = [m for m in list(self.received) if predicate(m)]
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"the fake server got no such message; it got {[m.type for m in self.received]}")

    def close(self) -> None:
        if self.context.closed:
            return
        self._stop.set()
        self._thread.join(5)
        self._socket.close(linger=0)
        self.context.term()

    def _serve(self) -> None:
        peer: bytes | None = None
        while not self._stop.is_set():
            if self._socket.poll(10):
                while True:
                    try:
                        identity, *frames = self._socket.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    peer = identity
                    message = protocol.decode(frames)
                    self.received.append(message)
                    self._answer(identity, message)
            while peer is not None and not self._outbox.empty():
                self._send(peer, self._outbox.get())

    def _answer(self, identity: bytes, message: Message) -> None:
        if message.type == "ping" and self.answer_pings:
            server = {"instance": self.instance, "protocol": protocol.PROTOCOL_VERSION, "version": "0.1.0",
                      "devices": ["cpu"], "running": 0, "queued": 0, "busy": False}
            self._send(identity, protocol.pong(server, message.get("t")))
        elif message.type == "submit":
            self._send(identity, protocol.accepted(message.job, 0, self.token(message.job), self.instance))

    def _send(self, identity: bytes, message: Message) -> None:
        self._socket.send_multipart([identity, *protocol.encode(message)])


def finishes_within(seconds: float, work: Callable[[], Any]) -> Any:
    """``work()`` on a thread, so that a client that blocks fails the test instead of hanging it
    (the blocked client is left unclosed: closing it would block as well)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the client was still blocked after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
