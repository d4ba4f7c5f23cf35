"""BackendClient against real servers and a fake one: it never blocks, names a refused CURVE
handshake, shows each job's token when asking about the job, reports each job lost to a server
restart once, and lets no error without a final state end a job.

A real backend killed with SIGKILL and restarted on its port: tests/test_server_restart.py."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import zmq.auth

from backend import protocol
from backend.auth import generate_keys, load_server_keys, start_authenticator
from backend.client import BACKLOG_LIMIT, BackendClient, BackendUnavailable, is_final
from backend.protocol import ErrorCode
from conftest import png_bytes
from doubles import SlowPipeline, StepPipeline, registry_with
from fake_backend import FakeServer, finishes_within

TIMEOUT_S = 1.5
"""The clients' ``server_timeout_s`` here: short, so that waiting it out keeps the tests quick."""
FAST_S = 0.05
"""What "returns at once" means for one ``send`` or ``poll(0)``."""


@pytest.fixture
def fake_server():
    made: list[FakeServer] = []

    def make(instance: str = "first", **options: Any) -> FakeServer:
        made.append(FakeServer(instance, **options))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture
def keys(tmp_path):
    made = generate_keys(tmp_path / "keys", "artist")
    stranger_public, stranger_secret = zmq.auth.create_certificates(str(tmp_path), "stranger")
    other_server_public, _ = zmq.auth.create_certificates(str(tmp_path), "other-server")
    return {"dir": tmp_path / "keys", **made, "stranger_public": Path(stranger_public),
            "stranger_secret": Path(stranger_secret), "other_server_public": Path(other_server_public)}


REFUSED_KEYS = {
    "no keys": lambda k: {},
    "an unknown client key": lambda k: {"client_secret_file": k["stranger_secret"],
                                        "server_public_file": k["server_public"]},
    "the wrong server key": lambda k: {"client_secret_file": k["client_secret"],
                                       "server_public_file": k["other_server_public"]},
}


def not_authorised(address: str) -> str:
    return f"not authorised by the server at {address} (CURVE handshake failed: check the client and server key files)"


def timed(call: Callable[..., Any], *args: Any) -> float:
    start = time.monotonic()
    call(*args)
    return time.monotonic() - start


def drain(client: BackendClient, until: Callable[[list[protocol.Message]], bool],
          timeout_s: float = 5.0) -> list[protocol.Message]:
    """``poll(0)`` as the add-on's timer does, until ``until(everything so far)``."""
    seen: list[protocol.Message] = []
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        seen += client.poll(0)
        if until(seen):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"timed out; the client got {[(m.type, m.job) for m in seen]}")


def accepted_job(client: BackendClient, job: str = "j1") -> None:
    client.send(protocol.submit_generate(job, "a chair"))
    drain(client, lambda seen: any(m.type == "accepted" and m.job == job for m in seen))


# ---------------------------------------------------------------------------------- never blocking
@pytest.mark.parametrize("case", list(REFUSED_KEYS))
def test_a_refused_curve_handshake_never_blocks_and_is_named_within_the_timeout(run_server, keys, case):
    server = run_server(registry_with(reconstruct=StepPipeline), auth_dir=keys["dir"])
    client = BackendClient(server.address, server_timeout_s=TIMEOUT_S, **REFUSED_KEYS[case](keys))

    def send_and_poll() -> tuple[float, float | None, str | None]:
        start, slowest, named_after = time.monotonic(), 0.0, None
        for i in range(5):
            slowest = max(slowest, timed(client.send, protocol.status(f"job{i}")))
        # past the timeout, when a refused client opens a fresh socket to try again
        for i in range(int((TIMEOUT_S + 0.8) / 0.01)):
            slowest = max(slowest, timed(client.poll, 0))
            if i % 10 == 0:
                slowest = max(slowest, timed(client.send, protocol.status("again")))
            if named_after is None and client.health().problem is not None:
                named_after = time.monotonic() - start
            time.sleep(0.01)
        return slowest, named_after, client.health().problem

    slowest, named_after, problem = finishes_within(TIMEOUT_S + 10, send_and_poll)
    client.close()
    assert slowest < FAST_S
    assert named_after is not None and named_after <= TIMEOUT_S + 0.3
    assert problem == not_authorised(server.address) and not client.health().alive


def test_waiting_on_a_refused_client_raises_at_once_instead_of_waiting_out_its_timeout(run_server, keys):
    server = run_server(registry_with(reconstruct=StepPipeline), auth_dir=keys["dir"])
    client = BackendClient(server.address, server_timeout_s=TIMEOUT_S, **REFUSED_KEYS["an unknown client key"](keys))
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="not authorised by the server"):
        finishes_within(TIMEOUT_S + 10, lambda: client.run_job(protocol.submit_reconstruct("j", [png_bytes()]), 3600))
    assert time.monotonic() - start < TIMEOUT_S + 1
    client.close()


def test_messages_a_refused_connection_cannot_take_wait_in_a_bounded_backlog(run_server, keys):
    server = run_server(registry_with(reconstruct=StepPipeline), auth_dir=keys["dir"])
    client = BackendClient(server.address, server_timeout_s=60, **REFUSED_KEYS["an unknown client key"](keys))

    def fill() -> None:
        drain(client, lambda _: client.health().problem is not None)
        # ZeroMQ's own queue (1000 messages) may still take some while it lets the connection go
        for i in range(1000 + BACKLOG_LIMIT + 1):
            client.send(protocol.status(f"job{i}"))

    with pytest.raises(BackendUnavailable, match="not authorised by the server.*messages are waiting"):
        finishes_within(10, fill)
    client.close()


def test_a_refused_client_gets_in_once_the_server_authorises_its_key(fake_server, keys):
    fake = fake_server(curve=load_server_keys(keys["dir"]))
    authenticator = start_authenticator(fake.context, keys["dir"])
    client = BackendClient(fake.address, server_timeout_s=TIMEOUT_S, **REFUSED_KEYS["an unknown client key"](keys))

    def refused_then_admitted() -> None:
        drain(client, lambda _: client.health().problem is not None)
        assert client.health().problem == not_authorised(fake.address)
        shutil.copy(keys["stranger_public"], keys["dir"] / "authorized_clients")
        authenticator.configure_curve(domain="*", location=str(keys["dir"] / "authorized_clients"))
        drain(client, lambda _: client.health().alive, timeout_s=2 * TIMEOUT_S + 3)
        assert client.health().problem is None

    try:
        finishes_within(3 * TIMEOUT_S + 10, refused_then_admitted)
        client.close()
    finally:
        authenticator.stop()


# ---------------------------------------------------------------------------------- tokens
def test_every_status_and_cancel_about_a_job_shows_its_token(fake_server, client_for):
    fake = fake_server()
    client = client_for(fake.address)
    accepted_job(client, "j1")
    client.cancel("j1")
    client.status("j1")
    client.status("j1", resend=True)
    client.cancel("never-accepted")
    fake.wait_for(lambda m: m.job == "never-accepted")
    asked = [(m.type, m.job, m.get("token"), m.get("resend")) for m in fake.received if m.type in ("cancel", "status")]
    assert asked == [("cancel", "j1", "token-j1", None), ("status", "j1", "token-j1", False),
                     ("status", "j1", "token-j1", True), ("cancel", "never-accepted", None, None)]


def test_a_client_with_a_fresh_identity_takes_its_job_back_with_the_token(run_server, client_for):
    server = run_server(registry_with(reconstruct=SlowPipeline))
    client = client_for(server.address)
    client.send(protocol.submit_reconstruct("slow", [png_bytes()]))
    client.wait_for(lambda m: m.job == "slow" and m.type == "progress" and m.get("stage") != "load", 20)
    client.connect()  # a new ZeroMQ identity, as after a failed send: only the token proves ownership
    client.cancel("slow")
    reply = client.wait_for(lambda m: m.job == "slow" and m.type in ("job_status", "error"), 5)
    assert reply.type == "job_status", reply.fields
    client.status("slow", resend=True)
    final = client.wait_for(lambda m: m.job == "slow" and is_final(m), 10)
    assert final.get("code") == "CANCELLED" and final.get("state") == "cancelled"


# ---------------------------------------------------------------------------------- errors without state
def test_errors_without_a_state_never_end_the_job(fake_server, client_for):
    fake = fake_server()
    client = client_for(fake.address)
    accepted_job(client, "j1")
    fake.push(protocol.error(ErrorCode.NOT_OWNER, "job 'j1' belongs to another client", "j1"))
    fake.push(protocol.error(ErrorCode.BAD_MESSAGE, "the server could not handle this status message", "j1"))
    fake.push(protocol.progress("j1", "refine", 0.5))
    seen: list[protocol.Message] = []
    fake.push(protocol.error(ErrorCode.PIPELINE_FAILED, "boom", "j1", "failed"))
    final = client.wait_for(lambda m: m.job == "j1" and is_final(m), 5, seen.append)
    assert final.get("code") == "PIPELINE_FAILED"
    assert [m.get("code") or m.type for m in seen if m.job == "j1"] == ["NOT_OWNER", "BAD_MESSAGE", "progress",
                                                                         "PIPELINE_FAILED"]


# ---------------------------------------------------------------------------------- restarts
def lost_messages(messages: list[protocol.Message]) -> list[protocol.Message]:
    return [m for m in messages if m.type == "error" and m.get("code") == ErrorCode.JOB_LOST.value]


def test_a_pong_from_another_server_instance_loses_the_accepted_job_once(fake_server, client_for):
    fake = fake_server("first")
    client = client_for(fake.address, heartbeat_s=0.05)
    accepted_job(client, "j1")
    fake.instance = "second"  # what a restarted server answers
    seen = drain(client, lambda seen: sum(m.type == "pong" for m in seen) >= 5)
    [lost] = lost_messages(seen)
    assert lost.job == "j1" and lost.get("state") == "failed" and is_final(lost)
    assert lost.get("message") == ("the backend restarted (instance first is gone, second answers now); "
                                   "job j1 was lost: submit it again")
    fake.push(protocol.progress("j1", "late", 0.9))  # the job ended for the client: dropped
    fake.push(protocol.progress("marker", "refine", 0.5))
    seen = drain(client, lambda seen: any(m.job == "marker" for m in seen))
    assert [m.job for m in seen if m.job] == ["marker"]


def test_an_accepted_from_another_instance_loses_the_older_jobs(fake_server, client_for):
    fake = fake_server("first")
    client = client_for(fake.address, heartbeat_s=3600)  # no pongs: only the accepted tells
    accepted_job(client, "j1")
    fake.instance = "second"
    client.send(protocol.submit_generate("j2", "a stool"))
    seen = drain(client, lambda seen: any(m.type == "accepted" and m.job == "j2" for m in seen))
    assert [(m.type, m.job) for m in seen if m.job] == [("accepted", "j2"), ("error", "j1")]
    assert lost_messages(seen)[0].get("state") == "failed"


def test_a_job_the_server_no_longer_knows_is_lost(fake_server, client_for):
    fake = fake_server()
    client = client_for(fake.address)
    accepted_job(client, "j1")
    client.status("j1", resend=True)
    fake.wait_for(lambda m: m.type == "status")
    fake.push(protocol.job_status("j1", "unknown"))
    fake.push(protocol.job_status("someone-elses", "unknown"))  # not waited for: just an answer
    seen = drain(client, lambda seen: any(m.job == "someone-elses" for m in seen))
    about_jobs = [m for m in seen if m.job]
    assert [(m.type, m.job, m.get("code")) for m in about_jobs] == [("error", "j1", "JOB_LOST"),
                                                                     ("job_status", "someone-elses", None)]
    assert "no longer knows it" in about_jobs[0].get("message") and about_jobs[0].get("state") == "failed"


def test_a_restart_on_the_same_port_ends_the_waiting_job_with_job_lost(fake_server, client_for):
    first = fake_server("first")
    client = client_for(first.address)
    accepted_job(client, "j1")
    first.close()
    fake_server("second", port=first.port)
    restarted = time.monotonic()
    final = client.wait_for(lambda m: m.job == "j1" and is_final(m), 30)
    assert final.get("code") == "JOB_LOST" and time.monotonic() - restarted < 5
