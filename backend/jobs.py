"""The job engine: a bounded queue, one pipeline process per device, deadlines, cancel, ownership.

Every job ends in exactly one recorded final state (done, failed, cancelled, timed_out); whatever a
pipeline emits after that is dropped. Pipelines run in a child process per device
(``backend.pipeline_process``), so a step that never reaches a check point is killed after a short
grace instead of being waited for. The engine knows nothing about sockets: it hands each outgoing
message to ``on_message`` together with its job, and the server (or the CLI) decides where it goes.
"""

from __future__ import annotations

import collections
import hmac
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import backend
from backend import protocol
from backend.config import ServerConfig
from backend.pipeline_process import OUTCOMES, PipelineProcess
from backend.pipelines.base import PipelineRegistry
from backend.protocol import ErrorCode, MeshPayload, Message, ProtocolError
from backend.requests import CommonParams, JobRequest

log = logging.getLogger("stepstone.jobs")

FINAL_STATES = ("done", "failed", "cancelled", "timed_out")


class EngineError(Exception):
    """A submit/cancel the engine refuses; ``code`` goes back to the client."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False)  # a job is itself: field-wise comparison would walk its images and meshes
class Job:
    id: str
    task: str
    request: JobRequest | None
    """The decoded inputs, until the job is handed to a pipeline process or ends (then None)."""
    common: CommonParams
    owner: Any
    """Opaque address of the client to send this job's messages to (the server's ZeroMQ identity)."""
    deadline_s: float
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    """Proof of ownership, sent once in ``accepted``: a reconnected client shows it to take the job back."""
    state: str = "queued"
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    ended: float | None = None
    stage: str | None = None
    fraction: float = 0.0
    error: dict[str, str] | None = None
    result: Message | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    points: bool = False
    """The client asked for a point cloud (``output="points"``), not a mesh."""
    worker_lost: bool = False
    """It failed because the process (or Ray worker) running it died: running it again may succeed."""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def is_owned_by(self, owner: Any, token: Any) -> bool:
        return owner == self.owner or (isinstance(token, str) and hmac.compare_digest(token, self.token))


class _Worker:
    """A thread that feeds one device's pipeline process, one job at a time."""

    def __init__(self, engine: "JobEngine", device: str):
        self.engine = engine
        self.device = device
        self.current: Job | None = None
        self.warming = True
        """Building and loading its pipelines (at start-up): a job sent now waits for that."""
        self.process = engine.process_factory(engine.registry, device)
        self.thread = threading.Thread(target=self._loop, name=f"stepstone-worker-{device}", daemon=True)

    def replace_process(self) -> None:
        """Kill the child (it did not stop when asked, or it died) and start a fresh one that
        rebuilds the same pipelines in the background."""
        warm = tuple(sorted(self.process.built))
        self.process.kill()
        self.process = self.engine.process_factory(self.engine.registry, self.device, warm)

    def _loop(self) -> None:
        engine = self.engine
        engine._probe(self, engine.registry.tasks())
        self.warming = False
        while not engine._stopping:
            job = engine._next_job(self, wait_s=1.0)
            if job is None:
                # weights may have been installed since: look again while idle, never while a job waits
                engine._probe(self, engine.unavailable_tasks())
                continue
            try:
                engine._run(job, self)
            finally:
                with engine._lock:
                    self.current = None
                    engine._changed.notify_all()
        self.process.stop()


class JobEngine:
    def __init__(self, registry: PipelineRegistry, config: ServerConfig, devices: list[str],
                 on_message: Callable[[Job, Message], None],
                 process_factory: Callable[..., PipelineProcess] = PipelineProcess):
        """``process_factory(registry, device, warm_tasks=())`` makes what runs one device's jobs: a
        child process by default, a Ray actor for ``backend.scale`` (same interface)."""
        self.registry = registry
        self.process_factory = process_factory
        self.config = config
        self.devices = devices
        self.on_message = on_message
        self.instance = uuid.uuid4().hex
        """Names this run of the engine: a client that sees another one knows its jobs were lost."""
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._queue: collections.deque[Job] = collections.deque()
        self._jobs: dict[str, Job] = {}
        self._unavailable: dict[str, str] = {}
        self._available: set[str] = set()
        self._workers: list[_Worker] = []
        self._stopping = False

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        for device in self.devices:
            worker = _Worker(self, device)
            self._workers.append(worker)
            worker.thread.start()

    def _probe(self, worker: _Worker, tasks: list[str]) -> None:
        """Ask the worker's process whether each task can run (weights present...); this also
        builds the pipelines, so the first job finds them warm."""
        for task in tasks:
            if self._stopping:
                return
            worker.process.send(("probe", task))
            while not self._stopping:
                message = worker.process.receive(0.2)
                if message is not None and message[0] == "availability":
                    self._record_availability(task, message[2])
                    break
                if message is None and not worker.process.alive():
                    self._record_availability(task, f"the {task} pipeline's {worker.process.death_reason()} "
                                                    "while loading it")
                    worker.process.built.discard(task)
                    worker.replace_process()
                    break

    def unavailable_tasks(self) -> list[str]:
        with self._lock:
            return sorted(self._unavailable)

    def _record_availability(self, task: str, reason: str | None) -> None:
        with self._lock:
            if reason is None:
                self._unavailable.pop(task, None)
                self._available.add(task)
            else:
                self._unavailable[task] = reason
                self._available.discard(task)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel everything; running jobs get the usual grace, then their processes are killed."""
        with self._lock:
            self._stopping = True
            for job in list(self._queue):
                self._finish(job, "cancelled", ErrorCode.SHUTTING_DOWN, "the backend is shutting down")
            self._queue.clear()
            for job in self._jobs.values():
                job.cancel_requested.set()
            self._changed.notify_all()
        end = time.monotonic() + timeout
        for worker in list(self._workers):
            worker.thread.join(max(0.0, end - time.monotonic()))
            if worker.thread.is_alive():
                worker.process.kill()

    # ----------------------------------------------------------------------------- requests
    def submit(self, job_id: str, request: JobRequest, owner: Any) -> int:
        """Queue a job; returns its queue position (0 = starts now). Raises ``EngineError``."""
        with self._lock:
            self._purge_expired()
            if self._stopping:
                raise EngineError(ErrorCode.SHUTTING_DOWN, "the backend is shutting down")
            if job_id in self._jobs:
                raise EngineError(ErrorCode.DUPLICATE_JOB, f"a job with id {job_id!r} already exists")
            if not self.registry.has(request.task):
                raise EngineError(ErrorCode.PIPELINE_UNAVAILABLE, f"this backend has no {request.task!r} pipeline")
            if request.task in self._unavailable:
                raise EngineError(ErrorCode.PIPELINE_UNAVAILABLE, self._unavailable[request.task])
            limits = self.config.limits
            if len(self._queue) >= limits.max_queue:
                raise EngineError(ErrorCode.QUEUE_FULL,
                                  f"{len(self._queue)} jobs are waiting (limit {limits.max_queue}); try later")
            own = sum(1 for queued in self._queue if queued.owner == owner)
            if own >= limits.max_queued_per_client:
                raise EngineError(ErrorCode.QUEUE_FULL,
                                  f"{own} of your jobs are waiting (limit per client {limits.max_queued_per_client}); "
                                  "send more when one has started")
            timeout = request.common.timeout_s or self.config.job_timeout_s
            job = Job(job_id, request.task, request, request.common, owner,
                      deadline_s=min(timeout, limits.max_job_timeout_s),
                      points=getattr(request, "output", "mesh") == "points")
            self._jobs[job_id] = job
            self._queue.append(job)
            busy = sum(1 for w in self._workers if w.current is not None)
            idle = max(0, len(self.devices) - busy)
            position = max(0, len(self._queue) - idle)
            # Emitted under the lock, before a worker can pick the job up, so "accepted" always
            # reaches the client ahead of the job's first progress message.
            self._emit(job, protocol.accepted(job_id, position, job.token, self.instance))
            if self._workers and all(w.warming for w in self._workers):
                self._emit(job, protocol.progress(job_id, "load", 0.0, "the backend is loading its models; "
                                                                       "the job starts when they are ready"))
            self._changed.notify_all()
            return position

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop. A queued job ends at once; a running one at its next check point, or
        when its process is killed after ``config.cancel_grace_s``."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise EngineError(ErrorCode.UNKNOWN_JOB, f"no job {job_id!r}")
            if job.final:
                return job
            job.cancel_requested.set()
            if job.state == "queued":
                self._queue.remove(job)
                self._finish(job, "cancelled", ErrorCode.CANCELLED, "cancelled before it started")
            return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._purge_expired()
            return self._jobs.get(job_id)

    def set_owner(self, job_id: str, owner: Any) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                job.owner = owner

    def queue_position(self, job: Job) -> int | None:
        with self._lock:
            # (deque.index would format the job's repr — images, meshes — into its ValueError)
            return next((i for i, queued in enumerate(self._queue) if queued is job), None)

    def summary(self) -> dict[str, Any]:
        """Counts only: other clients' job ids are theirs."""
        with self._lock:
            running = sum(1 for w in self._workers if w.current is not None)
            return {
                "instance": self.instance,
                "queued": len(self._queue),
                "running": running,
                "busy": bool(running) or bool(self._queue),
                "pipelines": {task: self._unavailable.get(task, "available" if task in self._available else "checking")
                              for task in self.registry.tasks()},
            }

    def jobs_of(self, owner: Any) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.owner == owner and not j.final]

    # ----------------------------------------------------------------------------- worker side
    def _next_job(self, worker: _Worker, wait_s: float) -> Job | None:
        """The next queued job for ``worker``, or None after ``wait_s`` without one (or on stop)."""
        end = time.monotonic() + wait_s
        with self._lock:
            while not self._queue and not self._stopping and time.monotonic() < end:
                self._changed.wait(max(0.0, end - time.monotonic()))
            if self._stopping or not self._queue:
                return None
            job = self._queue.popleft()
            job.state = "running"
            job.started = time.monotonic()
            worker.current = job
            return job

    def _run(self, job: Job, worker: _Worker) -> None:
        """Hand the job to the worker's process and relay what it says until the job ends."""
        deadline = job.started + job.deadline_s
        if not worker.process.alive():
            worker.replace_process()
        with self._lock:
            request, job.request = job.request, None  # the process has its own copy from here on
        worker.process.send(("run", job.id, job.task, request, max(0.0, deadline - time.monotonic())))
        del request
        stop_state: str | None = None
        stop_asked = 0.0
        while True:
            message = worker.process.receive(0.05)
            if message is not None and message[0] in OUTCOMES:
                self._conclude(job, worker, message, stop_state)
                return
            if message is not None:
                self._relay(job, message)
            elif not worker.process.alive():
                job.worker_lost = True
                self._finish(job, "failed", ErrorCode.PIPELINE_FAILED, f"the {worker.process.death_reason()}")
                worker.replace_process()
                return
            now = time.monotonic()
            if stop_state is None:
                if job.cancel_requested.is_set():
                    stop_state = "cancelled"
                elif now > deadline:
                    stop_state = "timed_out"
                if stop_state is not None:
                    worker.process.request_cancel()
                    stop_asked = now
            elif now - stop_asked > self.config.cancel_grace_s:
                log.warning("job %s did not reach a check point within %.1f s of being stopped; "
                            "killing its pipeline process", job.id, self.config.cancel_grace_s)
                worker.replace_process()
                self._end_stopped(job, stop_state)
                return

    def _relay(self, job: Job, message: tuple) -> None:
        kind = message[0]
        if kind == "availability":
            self._record_availability(message[1], message[2])
        elif kind == "progress":
            _, stage, fraction, text, eta_s = message
            with self._lock:
                if job.final:
                    return
                job.stage, job.fraction = stage, fraction
            if eta_s is None and fraction > 0.05:
                elapsed = time.monotonic() - job.started
                eta_s = round(elapsed * (1.0 - fraction) / fraction, 1)
            self._emit(job, protocol.progress(job.id, stage, fraction, text, eta_s))
        elif kind == "preview_mesh":
            _, mesh, step = message
            if _finite_mesh(mesh):
                self._emit(job, protocol.preview_mesh(job.id, mesh, step))
        elif kind == "preview_points":
            _, points, colors, step = message
            if np.isfinite(points).all():
                self._emit(job, protocol.preview_points(job.id, points, colors, step))

    def _conclude(self, job: Job, worker: _Worker, outcome: tuple, stop_state: str | None) -> None:
        kind = outcome[0]
        if kind == "failed":
            self._finish(job, "failed", outcome[1], outcome[2])
        elif kind == "timed_out":
            self._end_stopped(job, "timed_out")
        elif kind == "cancelled" or job.cancel_requested.is_set():
            # (a result that crossed a cancel on the pipe is dropped: the user asked to stop)
            self._end_stopped(job, stop_state or "cancelled")
        else:
            _, output, warnings = outcome
            try:
                _validate_result(output.mesh, self.config.limits.max_mesh_triangles, job.points)
            except ProtocolError as exc:
                self._finish(job, "failed", ErrorCode.INVALID_RESULT, f"the pipeline produced an invalid mesh: {exc.message}")
                return
            metadata = {
                **output.metadata,
                "task": job.task,
                "seed": job.common.seed,
                "quality": job.common.quality,
                "device": worker.device,
                "backend_version": backend.__version__,
                "protocol_version": protocol.PROTOCOL_VERSION,
                "warnings": [*output.metadata.get("warnings", []), *warnings],
                "timings": {
                    **output.metadata.get("timings", {}),
                    "queued_s": round(job.started - job.submitted, 3),
                    "run_s": round(time.monotonic() - job.started, 3),
                },
            }
            self._finish(job, "done", result=protocol.result(job.id, output.mesh, metadata))

    def _end_stopped(self, job: Job, state: str) -> None:
        if state == "timed_out":
            self._finish(job, "timed_out", ErrorCode.TIMED_OUT, f"the job passed its deadline of {job.deadline_s:g} s")
        else:
            self._finish(job, "cancelled", ErrorCode.CANCELLED, "cancelled")

    def _finish(self, job: Job, state: str, code: ErrorCode | None = None, message: str = "",
                result: Message | None = None) -> bool:
        """Record the job's one final state and tell its client; False if it had already ended.
        A finished job keeps its result, never its inputs."""
        with self._lock:
            if job.final:
                log.info("dropping late %s for job %s (already %s)", state, job.id, job.state)
                return False
            job.state = state
            job.ended = time.monotonic()
            job.request = None
            if result is not None:
                job.result = result
                job.fraction = 1.0
            else:
                job.error = {"code": code.value, "message": message}
            self._changed.notify_all()
        if result is not None:
            self._emit(job, result)
        else:
            self._emit(job, protocol.error(code, message, job.id, state))
        return True

    def _emit(self, job: Job, message: Message) -> None:
        try:
            self.on_message(job, message)
        except Exception:  # noqa: BLE001 - a broken sink must not take the worker down
            log.exception("could not deliver %s for job %s", message.type, job.id)

    def _purge_expired(self) -> None:
        now = time.monotonic()
        finished = sorted((j for j in self._jobs.values() if j.final), key=lambda j: j.ended or 0.0)
        excess = len(finished) - self.config.max_retained_jobs
        for index, job in enumerate(finished):
            if index < excess or now - (job.ended or now) > self.config.result_retention_s:
                del self._jobs[job.id]


def _finite_mesh(mesh: MeshPayload) -> bool:
    return bool(np.isfinite(mesh.vertices).all())


def _validate_result(mesh: MeshPayload, max_triangles: int, points: bool) -> None:
    """Never send a broken mesh: NaN/Inf, bad indices, or a point cloud where a mesh was asked for
    (or the other way round) end the job as INVALID_RESULT."""
    protocol.mesh_from_blobs(protocol.mesh_blobs(mesh), max_triangles=max_triangles, shading=mesh.shading,
                             points=points)
