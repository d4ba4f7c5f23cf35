"""The add-on's job state machine, driven by real protocol messages (no bpy, no sockets)."""

import numpy as np
import pytest

from addon_support.package import core

jobs = core("jobs")
protocol = core("backend_api").protocol
JobState = jobs.JobState


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def tetra():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
    return protocol.MeshPayload(v, f)


@pytest.fixture
def tracker():
    clock = Clock()
    t = jobs.JobTracker(clock=clock, id_prefix="t")
    t.clock = clock
    return t


def sent_job(tracker, task="generate"):
    job = tracker.add(jobs.JobSpec(task, {"seed": 3}, prompt="a chair"), "a chair", {"scene": "Scene"})
    tracker.mark_sent(job, generation=1)
    return job


def test_full_lifecycle_accepted_progress_preview_result(tracker):
    job = sent_job(tracker)
    assert job.state == JobState.SENT and job.id.startswith("t-gen-")
    tracker.handle(protocol.accepted(job.id, 2, "token", "instance"))
    assert job.state == JobState.QUEUED and job.describe() == "queued (2 ahead)"
    tracker.handle(protocol.progress(job.id, "refine", 0.25, "step 5", eta_s=30.0))
    assert job.state == JobState.RUNNING and job.stage == "refine" and job.fraction == 0.25
    tracker.clock.t += 10
    assert job.eta(tracker.clock()) == pytest.approx(20.0) and job.eta_text(tracker.clock()) == "20 s left"
    tracker.clock.t += 25                  # the estimate was too low: no frozen "0 s left"
    assert job.eta_text(tracker.clock()) == "finishing…"
    tracker.handle(protocol.progress(job.id, "mesh", 0.8, "", eta_s=4.0))
    assert job.eta_text(tracker.clock()) == "4 s left"
    events = tracker.handle(protocol.preview_mesh(job.id, tetra(), step=1))
    assert [e.kind for e in events] == ["preview"]
    events = tracker.handle(protocol.result(job.id, tetra(), {"seed": 3, "backend_version": "0.1.0"}))
    assert [e.kind for e in events] == ["result"] and job.state == JobState.IMPORTING
    assert job.metadata["backend_version"] == "0.1.0"
    tracker.finish_import(job)
    assert job.state == JobState.DONE and job.final


def test_duplicate_and_late_messages_are_dropped(tracker):
    job = sent_job(tracker)
    tracker.handle(protocol.result(job.id, tetra(), {}))
    tracker.finish_import(job)
    version = tracker.version
    assert tracker.handle(protocol.result(job.id, tetra(), {})) == []
    assert tracker.handle(protocol.progress(job.id, "late", 0.5)) == []
    assert tracker.handle(protocol.error(protocol.ErrorCode.TIMED_OUT, "late", job.id, "timed_out")) == []
    assert job.state == JobState.DONE and tracker.version == version
    # messages for jobs this session never made are ignored
    assert tracker.handle(protocol.progress("someone-else", "x", 0.1)) == []


def test_out_of_order_preview_is_ignored(tracker):
    job = sent_job(tracker)
    assert len(tracker.handle(protocol.preview_mesh(job.id, tetra(), step=3))) == 1
    assert tracker.handle(protocol.preview_mesh(job.id, tetra(), step=2)) == []


def test_progress_never_goes_backwards(tracker):
    job = sent_job(tracker)
    tracker.handle(protocol.progress(job.id, "a", 0.6))
    tracker.handle(protocol.progress(job.id, "b", 0.4))
    assert job.fraction == 0.6 and job.stage == "b"


@pytest.mark.parametrize("state,expected", [("failed", JobState.FAILED), ("cancelled", JobState.CANCELLED),
                                            ("timed_out", JobState.TIMED_OUT), ("rejected", JobState.FAILED)])
def test_final_errors_end_the_job_with_a_report(tracker, state, expected):
    job = sent_job(tracker)
    events = tracker.handle(protocol.error(protocol.ErrorCode.PIPELINE_UNAVAILABLE,
                                           "no text-to-shape model: train it with scripts/train", job.id, state))
    assert job.state == expected and job.error_code == "PIPELINE_UNAVAILABLE"
    report = [e for e in events if e.kind == "report"][0]
    assert "no text-to-shape model" in report.text and report.text.startswith("a chair")
    assert report.level == ("INFO" if state == "cancelled" else "ERROR")


@pytest.mark.parametrize("code", ["UNKNOWN_JOB", "NOT_OWNER", "BAD_MESSAGE", "DUPLICATE_JOB"])
def test_error_without_state_is_a_warning_and_the_job_goes_on(tracker, code):
    job = sent_job(tracker)
    tracker.handle(protocol.progress(job.id, "refine", 0.5))
    events = tracker.handle(protocol.error(protocol.ErrorCode(code), "about a status or cancel", job.id))
    assert job.state == JobState.RUNNING and not job.final and [e.level for e in events] == ["WARNING"]
    assert [e.kind for e in tracker.handle(protocol.result(job.id, tetra(), {}))] == ["result"]


def test_a_job_lost_to_a_backend_restart_fails_and_can_be_retried(tracker):
    job = sent_job(tracker)
    tracker.handle(protocol.accepted(job.id, 0, "token", "instance"))
    events = tracker.handle(protocol.error(protocol.ErrorCode.JOB_LOST, "the backend restarted (instance a is gone, "
                                           "b answers now); job x was lost: submit it again", job.id, "failed"))
    assert job.state == JobState.FAILED and job.error_code == "JOB_LOST" and job.retryable
    assert [e.kind for e in events] == ["ended", "report"] and "submit it again" in events[1].text
    assert tracker.retry(job.id).state == JobState.WAITING


def test_cancel_waiting_job_is_local_and_sent_job_goes_to_backend(tracker):
    waiting = tracker.add(jobs.JobSpec("generate", prompt="x"), "x")
    assert tracker.cancel(waiting.id) is False and waiting.state == JobState.CANCELLED
    job = sent_job(tracker)
    assert tracker.cancel(job.id) is True and job.cancel_requested
    tracker.handle(protocol.error(protocol.ErrorCode.CANCELLED, "cancelled", job.id, "cancelled"))
    assert job.state == JobState.CANCELLED
    assert tracker.cancel(job.id) is False
    with pytest.raises(jobs.JobError, match="no job"):
        tracker.cancel("nope")


def test_backend_death_fails_only_that_generations_jobs(tracker):
    old = sent_job(tracker)
    new = tracker.add(jobs.JobSpec("generate", prompt="y"), "y")
    tracker.mark_sent(new, generation=2)
    waiting = tracker.add(jobs.JobSpec("generate", prompt="z"), "z")
    events = tracker.fail_generation(1, "BACKEND_DIED", "the backend exited with code -9")
    assert old.state == JobState.FAILED and "code -9" in old.error_message
    assert new.state == JobState.SENT and waiting.state == JobState.WAITING
    assert any(e.kind == "ended" and e.job is old for e in events)


def test_retry_makes_a_new_job_with_the_same_spec_and_target(tracker):
    job = sent_job(tracker)
    with pytest.raises(jobs.JobError, match="cannot be retried"):
        tracker.retry(job.id)
    tracker.fail(job, "BACKEND_DIED", "gone")
    again = tracker.retry(job.id)
    assert again.id != job.id and again.spec is job.spec and again.target == job.target
    assert again.state == JobState.WAITING and job.retried_as == again.id and not job.retryable


def test_unknown_job_status_after_reconnect_fails_the_job(tracker):
    job = sent_job(tracker)
    tracker.handle(protocol.job_status(job.id, "unknown"))
    assert job.state == JobState.FAILED and job.error_code == "JOB_LOST" and "restarted" in job.error_message


def test_batch_cancel_and_counts(tracker):
    batch = tracker.add_batch("Chairs")
    a = tracker.add(jobs.JobSpec("generate", prompt="a"), "a", batch=batch.id)
    b = tracker.add(jobs.JobSpec("generate", prompt="b"), "b", batch=batch.id)
    c = tracker.add(jobs.JobSpec("generate", prompt="c"), "c", batch=batch.id)
    tracker.mark_sent(b, 1)
    tracker.mark_sent(c, 1)
    tracker.handle(protocol.result(c.id, tetra(), {}))
    tracker.finish_import(c)
    to_send = tracker.cancel_batch(batch.id)
    assert to_send == [b.id]
    assert a.state == JobState.CANCELLED and c.state == JobState.DONE
    assert tracker.batch_counts(batch.id) == {"cancelled": 1, "sent": 1, "done": 1}


def test_held_result_is_kept_and_ignores_later_messages(tracker):
    job = sent_job(tracker)
    result = protocol.result(job.id, tetra(), {})
    tracker.handle(result)
    tracker.hold(job, result, "its scene was deleted")
    assert job.state == JobState.HELD and job.held_result is result
    assert tracker.handle(protocol.result(job.id, tetra(), {})) == []
    tracker.finish_import(job)
    assert job.state == JobState.DONE and job.held_result is None


def test_spec_builds_valid_submit_messages():
    spec = jobs.JobSpec("reconstruct", {"quality": "preview"}, images=[b"\x89PNG\r\n\x1a\nxx"])
    message = spec.message("job-1")
    frames = protocol.encode(message)
    decoded = protocol.decode([bytes(f) for f in frames])
    assert decoded.get("task") == "reconstruct" and list(decoded.blobs) == ["image0"]
    stylize = jobs.JobSpec("stylize", {"mode": "texture"}, prompt="wood", mesh=tetra()).message("job-2")
    assert stylize.get("params") == {"prompt": "wood", "mode": "texture"} and "faces" in stylize.blobs
    with pytest.raises(jobs.JobError):
        jobs.JobSpec("stylize", prompt="x").message("job-3")
