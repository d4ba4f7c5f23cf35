"""Job state on the Blender side: one record per job, driven by the backend's protocol messages.

The tracker is a state machine fed with decoded messages (``handle``). It never touches bpy: it
returns ``JobEvent``s (a preview or a result to import, a job that ended, a line to report) and the
bpy layer acts on them. Messages are deduplicated by job id: anything for a job that already ended,
or for a job this Blender session never created, is dropped.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .backend_api import protocol

Message = protocol.Message
MeshPayload = protocol.MeshPayload


class JobState(str, Enum):
    WAITING = "waiting"
    """Created in Blender; not sent yet (the backend is starting or unreachable)."""
    SENT = "sent"
    """Submitted; the backend has not acknowledged it yet."""
    QUEUED = "queued"
    RUNNING = "running"
    IMPORTING = "importing"
    """The result arrived; the bpy layer is building the object."""
    HELD = "held"
    """The result arrived but could not be placed (its scene is gone); kept for a retry."""
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT})
IN_FLIGHT_STATES = frozenset({JobState.SENT, JobState.QUEUED, JobState.RUNNING})
_SERVER_FINAL = {"cancelled": JobState.CANCELLED, "timed_out": JobState.TIMED_OUT}


class JobError(ValueError):
    """A job operation that does not apply (unknown id, retry of a job that did not fail, ...)."""


@dataclass
class JobSpec:
    """Everything needed to (re)submit a job; kept so a failed job can be retried as it was."""

    task: str
    """``reconstruct``, ``generate``, ``stylize`` or ``mine``."""
    params: dict[str, Any] = field(default_factory=dict)
    """Protocol params (quality, seed, texture, ...); see backend/requests.py."""
    images: list[bytes] = field(default_factory=list)
    """Encoded image files (reconstruct: several = several views of one object; mine: a folder's photos)."""
    names: list[str] = field(default_factory=list)
    """The photos' file names, one per image (mine: the result's clusters list photos by them)."""
    prompt: str = ""
    """Text prompt (generate, stylize)."""
    mesh: MeshPayload | None = None
    """The mesh to stylize (stylize)."""

    def message(self, job_id: str) -> Message:
        if self.task == "reconstruct":
            return protocol.submit_reconstruct(job_id, self.images, self.params)
        if self.task == "mine":
            return protocol.submit_mine(job_id, self.images, self.names or None, self.params)
        if self.task == "generate":
            return protocol.submit_generate(job_id, self.prompt, self.params)
        if self.task == "stylize":
            if self.mesh is None:
                raise JobError("a stylize job needs a mesh")
            return protocol.submit_stylize(job_id, self.mesh, self.prompt, self.params)
        raise JobError(f"unknown task {self.task!r}")


@dataclass
class JobRecord:
    id: str
    spec: JobSpec
    label: str
    """What the user sees in the job list (prompt or image name)."""
    target: dict[str, Any] = field(default_factory=dict)
    """Where the result goes (scene, placement, source); opaque to the core, read by the bpy layer."""
    batch: str | None = None
    state: JobState = JobState.WAITING
    stage: str = ""
    fraction: float = 0.0
    message: str = ""
    queue_position: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    created: float = 0.0
    sent_at: float | None = None
    ended_at: float | None = None
    generation: int | None = None
    """Which backend instance runs it (local backends get a new generation on every restart)."""
    eta_s: float | None = None
    eta_at: float | None = None
    preview_step: int = -1
    cancel_requested: bool = False
    retried_as: str | None = None
    held_result: Message | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    """What a finished job made, when its result says more than "done" (a mine job's objects)."""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT_STATES

    @property
    def retryable(self) -> bool:
        return self.state in (JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED) and self.retried_as is None

    def eta(self, now: float) -> float | None:
        """Seconds left, counted down from the backend's latest estimate."""
        if self.eta_s is None or self.eta_at is None or self.state != JobState.RUNNING:
            return None
        return max(0.0, self.eta_s - (now - self.eta_at))

    def eta_text(self, now: float) -> str:
        """For the job list: the seconds left; "finishing…" once the backend's estimate has run out
        (it was too low, and a "0 s left" that stays for seconds reads as a hang); "" without one."""
        eta = self.eta(now)
        if eta is None:
            return ""
        return f"{eta:.0f} s left" if eta >= 0.5 else "finishing…"

    def describe(self) -> str:
        """One line for the job list and reports."""
        if self.state in (JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED) and self.error_message:
            return f"{self.state.value}: {self.error_message}"
        if self.state == JobState.QUEUED and self.queue_position:
            return f"queued ({self.queue_position} ahead)"
        if self.state == JobState.RUNNING:
            return f"{self.stage or 'running'} {self.fraction:.0%}" + (f" · {self.message}" if self.message else "")
        if self.state == JobState.WAITING:
            return "waiting for the backend"
        if self.state == JobState.DONE and self.summary:
            return f"done: {self.summary}"
        return self.state.value


@dataclass
class Batch:
    id: str
    name: str
    """What the UI calls it (the name of the batch's collection)."""
    job_ids: list[str] = field(default_factory=list)


@dataclass
class JobEvent:
    kind: str
    """``preview`` | ``result`` | ``ended`` | ``report``."""
    job: JobRecord | None = None
    message: Message | None = None
    level: str = "INFO"
    """For reports: ``INFO``, ``WARNING`` or ``ERROR`` (Blender's report levels)."""
    text: str = ""


class JobTracker:
    """All jobs of this Blender session, keyed by client-chosen id."""

    def __init__(self, clock=time.monotonic, id_prefix: str | None = None):
        self._clock = clock
        self._prefix = id_prefix or f"bl{uuid.uuid4().hex[:8]}"
        self._counter = itertools.count(1)
        self.jobs: dict[str, JobRecord] = {}
        self.batches: dict[str, Batch] = {}
        self.version = 0
        """Bumped on every change, so the UI mirror knows when to refresh."""

    # ------------------------------------------------------------------------------ creating
    def new_id(self, kind: str) -> str:
        return f"{self._prefix}-{kind[:3]}-{next(self._counter)}"

    def add(self, spec: JobSpec, label: str, target: dict[str, Any] | None = None,
            batch: str | None = None) -> JobRecord:
        job = JobRecord(self.new_id(spec.task), spec, label, dict(target or {}), batch, created=self._clock())
        self.jobs[job.id] = job
        if batch is not None:
            self.batches[batch].job_ids.append(job.id)
        self._touch()
        return job

    def add_batch(self, name: str) -> Batch:
        batch = Batch(self.new_id("batch"), name)
        self.batches[batch.id] = batch
        self._touch()
        return batch

    def get(self, job_id: str) -> JobRecord:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise JobError(f"no job {job_id!r} in this Blender session") from None

    def waiting(self) -> list[JobRecord]:
        return [j for j in self.jobs.values() if j.state == JobState.WAITING]

    def in_flight(self) -> list[JobRecord]:
        return [j for j in self.jobs.values() if j.in_flight]

    def active(self) -> list[JobRecord]:
        """Jobs not yet ended (including waiting ones and ones being imported)."""
        return [j for j in self.jobs.values() if not j.final and j.state != JobState.HELD]

    def mark_sent(self, job: JobRecord, generation: int) -> None:
        job.state = JobState.SENT
        job.sent_at = self._clock()
        job.generation = generation
        self._touch()

    # ------------------------------------------------------------------------------ messages
    def handle(self, message: Message) -> list[JobEvent]:
        """Apply one message from the backend; returns what the bpy layer must do about it."""
        if message.job is None:
            if message.type == "error":
                return [JobEvent("report", level="ERROR", text=f"backend: {message.get('message')}")]
            return []
        job = self.jobs.get(message.job)
        if job is None or job.final or job.state in (JobState.IMPORTING, JobState.HELD):
            return []  # not ours, or a late/duplicate message for a job that already ended
        handler = getattr(self, f"_on_{message.type}", None)
        if handler is None:
            return []
        events = handler(job, message)
        self._touch()
        return events

    def _on_accepted(self, job: JobRecord, message: Message) -> list[JobEvent]:
        if job.state in (JobState.WAITING, JobState.SENT):
            job.queue_position = message.get("queue_position")
            job.state = JobState.QUEUED
        return []

    def _on_progress(self, job: JobRecord, message: Message) -> list[JobEvent]:
        job.state = JobState.RUNNING
        job.queue_position = None
        job.stage = message.get("stage")
        job.fraction = max(job.fraction, float(message.get("fraction")))
        job.message = message.get("message") or ""
        eta = message.get("eta_s")
        job.eta_s, job.eta_at = (float(eta), self._clock()) if eta is not None else (None, None)
        return []

    def _on_preview(self, job: JobRecord, message: Message) -> list[JobEvent]:
        step = message.get("step", 0)
        if step <= job.preview_step:
            return []  # out of order: an older preview must not overwrite a newer one
        job.preview_step = step
        job.state = JobState.RUNNING
        return [JobEvent("preview", job, message)]

    def _on_result(self, job: JobRecord, message: Message) -> list[JobEvent]:
        job.state = JobState.IMPORTING
        job.fraction = 1.0
        job.metadata = dict(message.get("metadata") or {})
        return [JobEvent("result", job, message)]

    def _on_error(self, job: JobRecord, message: Message) -> list[JobEvent]:
        code, text, state = message.get("code"), message.get("message"), message.get("state")
        if state is None:
            # An answer to a request about the job (a cancel that came too late, a duplicate
            # submit after a reconnect, a status the backend refused: NOT_OWNER); the job goes on.
            return [JobEvent("report", job, level="WARNING", text=f"{job.label}: {text}")]
        return self._end(job, _SERVER_FINAL.get(state, JobState.FAILED), code, text)

    def _on_job_status(self, job: JobRecord, message: Message) -> list[JobEvent]:
        state = message.get("state")
        if state == "unknown":
            # The client reports jobs the backend had accepted as JOB_LOST itself; this is one
            # whose submit the backend never acknowledged, asked about after a reconnect.
            return self._end(job, JobState.FAILED, protocol.ErrorCode.JOB_LOST.value,
                             "the backend no longer knows this job (it was restarted); retry it")
        if state == "queued":
            job.state = JobState.QUEUED
            job.queue_position = message.get("queue_position")
        elif state == "running":
            job.state = JobState.RUNNING
            job.stage = message.get("stage") or job.stage
            job.fraction = message.get("fraction") or job.fraction
        # Final states are followed by the result or error itself when asked with resend.
        return []

    # ------------------------------------------------------------------------------ local transitions
    def _end(self, job: JobRecord, state: JobState, code: str | None, text: str | None) -> list[JobEvent]:
        job.state = state
        job.error_code = code
        job.error_message = text
        job.ended_at = self._clock()
        job.eta_s = None
        self._touch()
        level = "INFO" if state == JobState.CANCELLED else "ERROR"
        what = {JobState.CANCELLED: "cancelled", JobState.TIMED_OUT: "timed out"}.get(state, "failed")
        return [JobEvent("ended", job),
                JobEvent("report", job, level=level, text=f"{job.label}: {what}" + (f" — {text}" if text else ""))]

    def finish_import(self, job: JobRecord, summary: str = "") -> None:
        job.state = JobState.DONE
        job.summary = summary
        job.ended_at = self._clock()
        job.held_result = None
        self._touch()

    def fail_import(self, job: JobRecord, code: str, text: str) -> list[JobEvent]:
        return self._end(job, JobState.FAILED, code, text)

    def hold(self, job: JobRecord, result: Message, reason: str) -> list[JobEvent]:
        """Keep a result that could not be placed, so ``place held`` can try again later."""
        job.state = JobState.HELD
        job.held_result = result
        job.error_message = reason
        self._touch()
        return [JobEvent("report", job, level="WARNING", text=f"{job.label}: result kept for later — {reason}")]

    def fail(self, job: JobRecord, code: str, text: str) -> list[JobEvent]:
        if job.final:
            return []
        return self._end(job, JobState.FAILED, code, text)

    def fail_generation(self, generation: int, code: str, text: str) -> list[JobEvent]:
        """A backend instance died: every job it was running or holding in its queue is lost."""
        events: list[JobEvent] = []
        for job in list(self.jobs.values()):
            if job.in_flight and job.generation == generation:
                events += self._end(job, JobState.FAILED, code, text)
        return events

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop. Returns True when the backend must be told (the job was sent)."""
        job = self.get(job_id)
        if job.final or job.state in (JobState.IMPORTING, JobState.HELD):
            return False
        if job.state == JobState.WAITING:
            self._end(job, JobState.CANCELLED, "CANCELLED", "cancelled before it was sent")
            return False
        job.cancel_requested = True
        self._touch()
        return True

    def cancel_batch(self, batch_id: str) -> list[str]:
        """Cancel every unfinished job of a batch; returns the ids the backend must be told about."""
        if batch_id not in self.batches:
            raise JobError(f"no batch {batch_id!r} in this Blender session")
        return [job_id for job_id in self.batches[batch_id].job_ids if self.cancel(job_id)]

    def retry(self, job_id: str) -> JobRecord:
        """A new job with the same spec and target; the old record points at it."""
        old = self.get(job_id)
        if not old.retryable:
            raise JobError(f"{old.label} cannot be retried while it is {old.state.value}")
        new = self.add(old.spec, old.label, old.target, old.batch)
        old.retried_as = new.id
        return new

    def discard(self, job_id: str) -> None:
        job = self.get(job_id)
        if not (job.final or job.state == JobState.HELD):
            raise JobError(f"{job.label} is still {job.state.value}; cancel it first")
        del self.jobs[job_id]
        if job.batch and job.batch in self.batches:
            self.batches[job.batch].job_ids.remove(job_id)
        self._touch()

    def batch_counts(self, batch_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job_id in self.batches[batch_id].job_ids:
            job = self.jobs[job_id]
            if job.retried_as is None:
                counts[job.state.value] = counts.get(job.state.value, 0) + 1
        return counts

    def _touch(self) -> None:
        self.version += 1
