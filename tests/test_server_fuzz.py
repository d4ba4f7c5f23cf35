"""The server against structure-aware hostile messages (reliability finding 1 and its siblings):
every message gets an answer, the server lives, and its memory stays flat. The registry has no
pipelines, so every message has exactly one reply (a valid submit is refused as unavailable)."""

import resource

import pytest
import zmq

from backend import protocol
from backend.pipelines.base import PipelineRegistry
from message_fuzz import hostile_messages


def each_gets_one_reply(address: str, count: int, seed: int) -> dict[str, int]:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    replies: dict[str, int] = {}
    try:
        for index, frames in enumerate(hostile_messages(count, seed)):
            socket.send_multipart(frames)
            assert socket.poll(10_000), f"message {index} got no reply: {frames[0][:200]!r}"
            reply = protocol.decode(socket.recv_multipart())
            key = reply.get("code") if reply.type == "error" else reply.type
            replies[key] = replies.get(key, 0) + 1
            assert not socket.poll(0), f"message {index} got two replies"
    finally:
        socket.close()
    return replies


def test_hostile_messages_each_get_an_answer(run_server, client_for):
    server = run_server(PipelineRegistry())
    replies = each_gets_one_reply(server.address, 600, seed=1)
    assert replies.get("BAD_MESSAGE", 0) > 100 and replies.get("INVALID_FIELD", 0) > 50
    assert client_for(server.address).request_pong().type == "pong"


@pytest.mark.slow
def test_ten_thousand_hostile_messages_leave_the_server_alive_and_its_memory_flat(run_server, client_for):
    server = run_server(PipelineRegistry())
    each_gets_one_reply(server.address, 1000, seed=2)                # warm: caches, pools, allocator
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    replies = each_gets_one_reply(server.address, 10_000, seed=3)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert sum(replies.values()) == 10_000
    assert grown_mb < 64, f"peak memory grew by {grown_mb:.0f} MB"
    assert client_for(server.address).request_pong().type == "pong"
