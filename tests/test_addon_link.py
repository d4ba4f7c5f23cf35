"""The add-on's backend link against a real server (in-process) and real ZeroMQ clients, no bpy."""

import time

import pytest
import zmq.auth

from addon_support.fakes import FakeLauncher
from addon_support.package import ROOT, core
from backend.auth import generate_keys
from conftest import png_bytes
from doubles import EchoGeneratePipeline, SlowPipeline, StepPipeline, registry_with
from fake_backend import FakeServer, finishes_within

link_mod = core("link")
jobs = core("jobs")
protocol = core("backend_api").protocol
client_mod = core("backend_api").client
JobState = jobs.JobState


def pump(link, until, timeout=15.0):
    events = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        events += link.tick()
        if until(events):
            return events
        time.sleep(0.01)
    raise AssertionError(f"timed out; events so far: {[(e.kind, e.text) for e in events]}")


def remote_link(address, **settings):
    tracker = jobs.JobTracker()
    link = link_mod.BackendLink(link_mod.LinkSettings(mode="remote", address=address, **settings), tracker)
    return link, tracker


def fake_client_link(port, **options):
    """A remote link whose clients are `FakeClient`s (the list fills as the link makes them)."""
    made = []
    tracker = jobs.JobTracker()
    link = link_mod.BackendLink(link_mod.LinkSettings(mode="remote", address=f"tcp://127.0.0.1:{port}"), tracker,
                                client_factory=lambda a, **k: made.append(FakeClient(a)) or made[-1], **options)
    return link, tracker, made


def test_remote_generate_job_runs_to_a_result(run_server):
    server = run_server(registry_with(generate=EchoGeneratePipeline))
    link, tracker = remote_link(server.address)
    assert link.status().state == "stopped"
    job = tracker.add(jobs.JobSpec("generate", {"seed": 5}, prompt="a small stool"), "a small stool")
    assert link.submit(job) == []
    events = pump(link, lambda ev: any(e.kind == "result" for e in ev))
    result = next(e for e in events if e.kind == "result")
    assert result.job is job and job.state == JobState.IMPORTING
    assert result.message.get("metadata")["prompt"] == "a small stool" and job.metadata["seed"] == 5
    assert any(e.kind == "preview" for e in events)
    assert link.status().state in ("connected", "busy") and "v0.1.0" in link.status().text
    link.shutdown()


def test_unavailable_pipeline_is_reported_with_the_servers_reason(run_server):
    server = run_server(registry_with(reconstruct=StepPipeline))
    link, tracker = remote_link(server.address)
    job = tracker.add(jobs.JobSpec("generate", prompt="a chair"), "a chair")
    link.submit(job)
    events = pump(link, lambda ev: any(e.kind == "ended" for e in ev))
    assert job.state == JobState.FAILED and job.error_code == "PIPELINE_UNAVAILABLE"
    assert "generate" in job.error_message
    assert any(e.kind == "report" and e.level == "ERROR" for e in events)
    link.shutdown()


def test_cancel_reaches_the_backend(run_server):
    server = run_server(registry_with(reconstruct=SlowPipeline))
    link, tracker = remote_link(server.address)
    job = tracker.add(jobs.JobSpec("reconstruct", images=[png_bytes()]), "disc.png")
    link.submit(job)
    pump(link, lambda ev: job.state == JobState.RUNNING)
    link.cancel(job.id)
    pump(link, lambda ev: job.final, timeout=5)
    assert job.state == JobState.CANCELLED
    link.shutdown()


def test_remote_address_needs_online_access():
    link, tracker = remote_link("tcp://192.0.2.10:5555")
    job = tracker.add(jobs.JobSpec("generate", prompt="x"), "x")
    link.submit(job)
    assert job.state == JobState.FAILED and "Allow Online Access" in job.error_message
    link2, tracker2 = remote_link("192.0.2.10")
    job2 = tracker2.add(jobs.JobSpec("generate", prompt="x"), "x")
    link2.submit(job2)
    assert "tcp://host:port" in job2.error_message


def test_missing_key_files_are_reported(tmp_path):
    link, tracker = remote_link("tcp://127.0.0.1:5999", client_secret_file=str(tmp_path / "c.key_secret"))
    job = tracker.add(jobs.JobSpec("generate", prompt="x"), "x")
    link.submit(job)
    assert job.state == JobState.FAILED and "key" in job.error_message


def test_local_backend_death_fails_its_jobs_and_the_restart_serves_the_next(run_server):
    """The supervised process is a fake whose 'ready' line points at a real in-process server."""
    server = run_server(registry_with(reconstruct=SlowPipeline))
    launcher = FakeLauncher()
    tracker = jobs.JobTracker()
    settings = link_mod.LinkSettings(mode="local", python=str(ROOT / ".venv/bin/python"), backend_root=ROOT,
                                     supervisor={"backoff_s": 0.05})
    link = link_mod.BackendLink(settings, tracker, launcher=launcher)
    job = tracker.add(jobs.JobSpec("reconstruct", images=[png_bytes()]), "disc.png")
    link.submit(job)
    assert link.status().state == "starting"
    port = int(server.address.rsplit(":", 1)[1])
    launcher.last.say_ready(port)
    pump(link, lambda ev: job.state == JobState.RUNNING)
    launcher.last.exit(-9, "Killed")
    events = pump(link, lambda ev: job.final)
    assert job.state == JobState.FAILED and job.error_code == "BACKEND_DIED" and "signal 9" in job.error_message
    assert any(e.kind == "report" and "Restarting" in e.text for e in events)
    pump(link, lambda ev: len(launcher.processes) == 2)
    server.engine.cancel(job.id)  # the real server outlived the fake process; free its worker
    launcher.last.say_ready(port)
    retry = tracker.retry(job.id)
    link.submit(retry)
    pump(link, lambda ev: retry.state == JobState.RUNNING)
    assert retry.generation == job.generation + 1
    link.cancel(retry.id)
    pump(link, lambda ev: retry.final)
    link.shutdown()
    assert launcher.processes[-1].terminated


class FakeClient:
    """Controls health by hand to exercise reconnect handling."""

    server_timeout_s = 5.0

    def __init__(self, address, **keys):
        self.address = address
        self.sent = []
        self.inbox = []
        self.alive = True

    def poll(self, timeout_ms=0):
        out, self.inbox = self.inbox, []
        return out

    def send(self, message):
        self.sent.append(message)

    def health(self):
        return client_mod.ServerHealth(self.alive, {"protocol": protocol.PROTOCOL_VERSION, "version": "0.1.0",
                                                    "devices": ["cpu"]}, 0.001,
                                       None if self.alive else "the backend has been silent for 6 s")

    def cancel(self, job):
        self.sent.append(protocol.cancel(job))

    def status(self, job, resend=False):
        self.sent.append(protocol.status(job, resend))

    def close(self):
        pass


def test_reconnect_asks_for_in_flight_jobs_again_and_unknown_jobs_fail():
    link, tracker, made = fake_client_link(5998)
    job = tracker.add(jobs.JobSpec("generate", prompt="x"), "x")
    link.submit(job)
    link.tick()
    fake = made[0]
    assert [m.type for m in fake.sent] == ["submit"] and job.state == JobState.SENT
    fake.alive = False
    link.tick()
    assert link.status().state == "unreachable" and "silent" in link.status().text
    fake.alive = True
    link.tick()
    assert fake.sent[-1].type == "status" and fake.sent[-1].get("resend") is True and fake.sent[-1].job == job.id
    fake.inbox.append(protocol.job_status(job.id, "unknown"))
    link.tick()
    assert job.state == JobState.FAILED and "restarted" in job.error_message


def test_protocol_mismatch_is_shown_in_the_status():
    class OldServer(FakeClient):
        def health(self):
            return client_mod.ServerHealth(True, {"protocol": 99, "version": "9.0"}, 0.0, None)

    link = link_mod.BackendLink(link_mod.LinkSettings(mode="remote", address="tcp://127.0.0.1:5997"),
                                jobs.JobTracker(), client_factory=OldServer)
    link.ensure_running()
    link.tick()
    assert link.status().state == "failed" and "protocol 99" in link.status().text


def test_previews_in_one_tick_are_coalesced():
    link, tracker, made = fake_client_link(5996)
    job = tracker.add(jobs.JobSpec("generate", prompt="x"), "x")
    link.submit(job)
    link.tick()
    import numpy as np

    mesh = protocol.MeshPayload(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]], np.int32))
    made[0].inbox += [protocol.preview_mesh(job.id, mesh, 1), protocol.preview_mesh(job.id, mesh, 2)]
    previews = [e for e in link.tick() if e.kind == "preview"]
    assert len(previews) == 1 and previews[0].message.get("step") == 2


@pytest.mark.parametrize("address,host", [("tcp://127.0.0.1:5", "127.0.0.1"), ("tcp://[::1]:5", "[::1]"),
                                          ("tcp://gpu-box.local:5555", "gpu-box.local")])
def test_host_of(address, host):
    assert link_mod.host_of(address) == host


def test_a_blocked_blender_main_thread_is_not_mistaken_for_a_silent_backend():
    """After a long render nobody pinged the backend; its 'silence' must not count against it."""
    from addon_support.fakes import FakeClock

    clock = FakeClock()
    link, _, made = fake_client_link(5995, clock=clock)
    link.ensure_running()
    link.tick()
    assert link.status().state == "connected"
    clock.advance(40)
    made[0].alive = False  # what health() says right after the pause, before a fresh ping is answered
    assert link.tick() == []
    assert link.status().state == "starting" and "checking" in link.status().text
    clock.advance(1)
    made[0].alive = True
    link.tick()
    assert link.status().state == "connected"
    made[0].alive = False
    for _ in range(6):  # ticking normally this time
        clock.advance(1.0)
        link.tick()
    assert link.status().state == "unreachable"  # a real silence still shows


def test_stop_fails_sent_and_waiting_jobs_with_reports():
    link, tracker, made = fake_client_link(5994)
    sent = tracker.add(jobs.JobSpec("generate", prompt="x"), "x")
    link.submit(sent)
    link.tick()
    waiting = tracker.add(jobs.JobSpec("generate", prompt="y"), "y")
    events = link.stop()
    assert sent.state == JobState.FAILED and waiting.state == JobState.FAILED
    assert "disconnected" in sent.error_message and "before the job was sent" in waiting.error_message
    assert {e.job.id for e in events if e.kind == "ended"} == {sent.id, waiting.id}
    assert link.client is None and link.status().state == "stopped"


def test_busy_status_counts_the_running_jobs():
    class BusyServer(FakeClient):
        def health(self):
            return client_mod.ServerHealth(True, {"protocol": protocol.PROTOCOL_VERSION, "version": "0.1.0",
                                                  "devices": ["cpu"], "busy": True, "running": 2, "queued": 3},
                                           0.001, None)

    link = link_mod.BackendLink(link_mod.LinkSettings(mode="remote", address="tcp://127.0.0.1:5993"),
                                jobs.JobTracker(), client_factory=BusyServer)
    link.ensure_running()
    link.tick()
    assert link.status().state == "busy" and link.status().text.startswith("busy: 2 running, 3 queued")


def test_jobs_the_connection_cannot_take_now_stay_waiting_for_the_next_tick():
    class Saturated(FakeClient):
        room = 1

        def send(self, message):
            if self.room == 0:
                raise client_mod.BackendUnavailable("cannot send: 64 messages are waiting")
            self.room -= 1
            super().send(message)

    made = []
    tracker = jobs.JobTracker()
    link = link_mod.BackendLink(link_mod.LinkSettings(mode="remote", address="tcp://127.0.0.1:5992"), tracker,
                                client_factory=lambda a, **k: made.append(Saturated(a)) or made[-1])
    first, second, third = (tracker.add(jobs.JobSpec("generate", prompt=p), p) for p in "abc")
    for job in (first, second, third):
        link.submit(job)
    assert link.tick() == []
    assert [first.state, second.state, third.state] == [JobState.SENT, JobState.WAITING, JobState.WAITING]
    made[0].room = 2
    link.tick()
    assert [m.job for m in made[0].sent] == [first.id, second.id, third.id] and third.state == JobState.SENT


def test_a_large_batch_is_fed_to_the_backend_as_earlier_jobs_end():
    """The backend keeps a share of its queue for other clients: the add-on never sends more
    than MAX_SENT_JOBS at once, so item 25 of a batch waits instead of failing with QUEUE_FULL."""
    link, tracker, made = fake_client_link(5993)
    batch = [tracker.add(jobs.JobSpec("generate", prompt=f"p{i}"), f"p{i}") for i in range(link_mod.MAX_SENT_JOBS + 4)]
    for job in batch:
        link.submit(job)
    link.tick()
    assert [job.state for job in batch].count(JobState.SENT) == link_mod.MAX_SENT_JOBS
    assert all(job.state == JobState.WAITING for job in batch[link_mod.MAX_SENT_JOBS:])
    tracker.fail(batch[0], "PIPELINE_FAILED", "test")
    link.tick()
    assert batch[link_mod.MAX_SENT_JOBS].state == JobState.SENT and batch[-1].state == JobState.WAITING


def test_a_refused_curve_handshake_shows_in_the_status_and_no_tick_blocks(run_server, tmp_path):
    keys = generate_keys(tmp_path / "keys", "artist")
    _, stranger_secret = zmq.auth.create_certificates(str(tmp_path), "stranger")
    server = run_server(registry_with(generate=EchoGeneratePipeline), auth_dir=tmp_path / "keys")
    link, tracker = remote_link(server.address, client_secret_file=stranger_secret,
                                server_public_file=str(keys["server_public"]))
    job = tracker.add(jobs.JobSpec("generate", prompt="a chair"), "a chair")
    link.submit(job)

    def tick_until_unreachable() -> float:
        slowest, end = 0.0, time.monotonic() + link.client.server_timeout_s
        while time.monotonic() < end and link.status().state != "unreachable":
            start = time.monotonic()
            link.tick()
            slowest = max(slowest, time.monotonic() - start)
            time.sleep(0.01)
        return slowest

    assert finishes_within(10, tick_until_unreachable) < 0.05
    assert link.status().text == (f"not reachable (not authorised by the server at {server.address} "
                                  "(CURVE handshake failed: check the client and server key files))")
    assert job.state == JobState.WAITING
    link.shutdown()


def test_after_a_silence_the_link_asks_for_its_jobs_again_with_their_tokens():
    fake = FakeServer("first")
    tracker = jobs.JobTracker()
    link = link_mod.BackendLink(
        link_mod.LinkSettings(mode="remote", address=fake.address), tracker,
        client_factory=lambda address, **keys: client_mod.BackendClient(address, server_timeout_s=0.5, **keys))
    try:
        job = tracker.add(jobs.JobSpec("generate", prompt="a chair"), "a chair")
        link.submit(job)
        pump(link, lambda ev: job.state == JobState.QUEUED)
        fake.answer_pings = False
        pump(link, lambda ev: link.status().state == "unreachable", timeout=5)
        fake.answer_pings = True
        pump(link, lambda ev: link.status().state == "connected", timeout=5)
        link.cancel(job.id)
        asked = fake.wait_for(lambda m: m.type == "status")
        cancel = fake.wait_for(lambda m: m.type == "cancel")
        assert asked.job == job.id and asked.get("resend") is True and asked.get("token") == fake.token(job.id)
        assert cancel.job == job.id and cancel.get("token") == fake.token(job.id)
    finally:
        link.shutdown()
        fake.close()


def test_a_backend_restarted_under_its_jobs_fails_them_as_lost_and_they_can_be_retried():
    first = FakeServer("first")
    link, tracker = remote_link(first.address)
    restarted = None
    try:
        job = tracker.add(jobs.JobSpec("generate", prompt="a chair"), "a chair")
        link.submit(job)
        pump(link, lambda ev: job.state == JobState.QUEUED)
        first.close()
        restarted = FakeServer("second", port=first.port)
        events = pump(link, lambda ev: job.final, timeout=5)
        assert job.state == JobState.FAILED and job.error_code == "JOB_LOST" and job.retryable
        assert any(e.kind == "report" and e.level == "ERROR" and "submit it again" in e.text for e in events)
        retry = tracker.retry(job.id)
        link.submit(retry)
        pump(link, lambda ev: retry.state == JobState.QUEUED)
    finally:
        link.shutdown()
        first.close()
        if restarted is not None:
            restarted.close()
