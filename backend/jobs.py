"""The job engine: a bounded queue, one worker per device, deadlines, cancel and result retention.

Every job ends in exactly one recorded final state (done, failed, cancelled, timed_out); whatever a
pipeline emits after that — a late progress report or a result past its deadline — is dropped.
The engine knows nothing about sockets: it hands each outgoing message to ``on_message`` together
with its job, and the server (or the CLI) decides where it goes.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import backend
from backend import protocol
from backend.config import ServerConfig
from backend.errors import InputError, JobCancelled, JobTimedOut, PipelineError
from backend.pipelines.base import JobContext, Pipeline, PipelineRegistry
from backend.protocol import ErrorCode, MeshPayload, Message, ProtocolError
from backend.requests import JobRequest

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
    request: JobRequest
    owner: Any
    """Opaque address of the client to send this job's messages to (the server's ZeroMQ identity)."""
    deadline_s: float
    state: str = "queued"
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    ended: float | None = None
    stage: str | None = None
    fraction: float = 0.0
    error: dict[str, str] | None = None
    result: Message | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def task(self) -> str:
        return self.request.task

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


class _Worker:
    """A thread that runs queued jobs on one device, one at a time."""

    def __init__(self, engine: "JobEngine", device: str, index: int):
        self.engine = engine
        self.device = device
        self.current: Job | None = None
        self.abandoned = False
        self.thread = threading.Thread(target=self._loop, name=f"stepstone-worker-{device}-{index}", daemon=True)

    def _loop(self) -> None:
        while not self.abandoned:
            job = self.engine._next_job(self)
            if job is None:
                return
            try:
                self.engine._run(job, self)
            finally:
                with self.engine._lock:
                    self.current = None
                    self.engine._changed.notify_all()


class JobEngine:
    def __init__(self, registry: PipelineRegistry, config: ServerConfig, devices: list[str],
                 on_message: Callable[[Job, Message], None]):
        self.registry = registry
        self.config = config
        self.devices = devices
        self.on_message = on_message
        self._lock = threading.RLock()
        self._build_lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: collections.deque[Job] = collections.deque()
        self._jobs: dict[str, Job] = {}
        self._pipelines: dict[tuple[str, str], Pipeline] = {}
        self._unavailable: dict[str, str] = {}
        self._available: set[str] = set()
        self._workers: list[_Worker] = []
        self._stopping = False
        self._watchdog = threading.Thread(target=self._watch, name="stepstone-watchdog", daemon=True)
        self._probe = threading.Thread(target=self._probe_pipelines, name="stepstone-probe", daemon=True)
        self._worker_count = 0

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        for device in self.devices:
            self._spawn_worker(device)
        self._watchdog.start()
        self._probe.start()

    def _probe_pipelines(self) -> None:
        """Ask every pipeline up front whether it can run (weights present...), off the I/O thread:
        building one imports torch, and clients should learn what is missing before they submit."""
        for task in self.registry.tasks():
            try:
                reason = self._pipeline(task, self.devices[0]).unavailable_reason()
            except Exception as exc:  # noqa: BLE001 - a broken pipeline is reported, not fatal
                log.exception("pipeline %s could not be built", task)
                reason = f"the {task} pipeline could not be loaded: {type(exc).__name__}: {exc}"
            self._record_availability(task, reason)

    def _record_availability(self, task: str, reason: str | None) -> str | None:
        with self._lock:
            if reason is None:
                self._unavailable.pop(task, None)
                self._available.add(task)
            else:
                self._unavailable[task] = reason
                self._available.discard(task)
        return reason

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel everything and wait (bounded) for workers to reach a check point."""
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
        if self._probe.is_alive():
            # Exiting while that thread is inside an extension import (torch) aborts the process.
            self._probe.join(max(10.0, end - time.monotonic()))

    def _spawn_worker(self, device: str) -> None:
        self._worker_count += 1
        worker = _Worker(self, device, self._worker_count)
        self._workers.append(worker)
        worker.thread.start()

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
            built = self._pipelines.get((request.task, self.devices[0]))
            if built is not None:  # cheap, fresh check (weights may have been installed meanwhile)
                reason = self._record_availability(request.task, built.unavailable_reason())
                if reason is not None:
                    raise EngineError(ErrorCode.PIPELINE_UNAVAILABLE, reason)
            if len(self._queue) >= self.config.limits.max_queue:
                raise EngineError(ErrorCode.QUEUE_FULL,
                                  f"{len(self._queue)} jobs are waiting (limit {self.config.limits.max_queue}); try later")
            timeout = request.common.timeout_s or self.config.job_timeout_s
            job = Job(job_id, request, owner, deadline_s=min(timeout, self.config.limits.max_job_timeout_s))
            self._jobs[job_id] = job
            self._queue.append(job)
            busy = sum(1 for w in self._workers if w.current is not None and not w.abandoned)
            idle = max(0, len(self.devices) - busy)
            position = max(0, len(self._queue) - idle)
            # Emitted under the lock, before a worker can pick the job up, so "accepted" always
            # reaches the client ahead of the job's first progress message.
            self._emit(job, protocol.accepted(job_id, position))
            self._changed.notify_all()
            return position

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop. A queued job ends at once; a running one at its next check point."""
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
        with self._lock:
            running = [w.current.id for w in self._workers if w.current is not None and not w.abandoned]
            return {
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
    def _next_job(self, worker: _Worker) -> Job | None:
        with self._lock:
            while not self._queue and not self._stopping and not worker.abandoned:
                self._changed.wait(0.5)
            if self._stopping or worker.abandoned:
                return None
            job = self._queue.popleft()
            job.state = "running"
            job.started = time.monotonic()
            worker.current = job
            return job

    def _pipeline(self, task: str, device: str) -> Pipeline:
        key = (task, device)
        with self._build_lock:  # the probe and a worker may ask for the same pipeline at once
            pipeline = self._pipelines.get(key)
            if pipeline is None:
                pipeline = self.registry.create(task, device)
                self._pipelines[key] = pipeline
            return pipeline

    def _run(self, job: Job, worker: _Worker) -> None:
        deadline = job.started + job.deadline_s

        def emit_progress(stage: str, fraction: float, message: str, eta_s: float | None) -> None:
            with self._lock:
                if job.final:
                    return
                job.stage, job.fraction = stage, fraction
            if eta_s is None and fraction > 0.05:
                elapsed = time.monotonic() - job.started
                eta_s = round(elapsed * (1.0 - fraction) / fraction, 1)
            self._emit(job, protocol.progress(job.id, stage, fraction, message, eta_s))

        def emit_preview_mesh(mesh: MeshPayload, step: int) -> None:
            if _finite_mesh(mesh):
                self._emit(job, protocol.preview_mesh(job.id, mesh, step))

        def emit_preview_points(points: np.ndarray, colors: np.ndarray | None, step: int) -> None:
            if np.isfinite(points).all():
                self._emit(job, protocol.preview_points(job.id, points, colors, step))

        ctx = JobContext(job.id, worker.device, emit_progress=emit_progress, emit_preview_mesh=emit_preview_mesh,
                         emit_preview_points=emit_preview_points, is_cancelled=job.cancel_requested.is_set,
                         deadline=deadline)
        try:
            pipeline = self._pipeline(job.task, worker.device)
            reason = self._record_availability(job.task, pipeline.unavailable_reason())
            if reason is not None:
                raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE, reason)
            ctx.check()
            output = pipeline.run(job.request, ctx)
            ctx.check()
            _validate_result(output.mesh, self.config.limits.max_mesh_triangles)
        except JobCancelled:
            self._finish(job, "cancelled", ErrorCode.CANCELLED, "cancelled")
        except JobTimedOut:
            self._finish(job, "timed_out", ErrorCode.TIMED_OUT, _timeout_text(job))
        except (PipelineError, InputError) as exc:
            self._finish(job, "failed", exc.code, exc.message)
        except MemoryError:
            self._finish(job, "failed", ErrorCode.OUT_OF_MEMORY, "the job ran out of memory; try a lower quality")
        except Exception as exc:  # noqa: BLE001 - a pipeline bug must fail the job, not the worker
            if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
                _release_cuda_cache()
                self._finish(job, "failed", ErrorCode.OUT_OF_MEMORY,
                             f"the device ran out of memory ({exc}); try a lower quality or the CPU")
            else:
                log.error("job %s failed:\n%s", job.id, traceback.format_exc())
                self._finish(job, "failed", ErrorCode.PIPELINE_FAILED, f"{type(exc).__name__}: {exc}")
        else:
            metadata = {
                **output.metadata,
                "task": job.task,
                "seed": job.request.common.seed,
                "quality": job.request.common.quality,
                "device": worker.device,
                "backend_version": backend.__version__,
                "protocol_version": protocol.PROTOCOL_VERSION,
                "warnings": [*output.metadata.get("warnings", []), *ctx.warnings],
                "timings": {
                    **output.metadata.get("timings", {}),
                    "queued_s": round(job.started - job.submitted, 3),
                    "run_s": round(time.monotonic() - job.started, 3),
                },
            }
            self._finish(job, "done", result=protocol.result(job.id, output.mesh, metadata))

    def _finish(self, job: Job, state: str, code: ErrorCode | None = None, message: str = "",
                result: Message | None = None) -> bool:
        """Record the job's one final state and tell its client; False if it had already ended."""
        with self._lock:
            if job.final:
                log.info("dropping late %s for job %s (already %s)", state, job.id, job.state)
                return False
            job.state = state
            job.ended = time.monotonic()
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

    # ----------------------------------------------------------------------------- watchdog
    def _watch(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                now = time.monotonic()
                for worker in list(self._workers):
                    job = worker.current
                    if job is None or worker.abandoned or job.started is None:
                        continue
                    overdue = now - (job.started + job.deadline_s)
                    if overdue > 0 and not job.final:
                        job.cancel_requested.set()
                        self._finish(job, "timed_out", ErrorCode.TIMED_OUT, _timeout_text(job))
                    if overdue > self.config.stuck_grace_s:
                        # The pipeline never reached a check point: leave its thread behind (it cannot be
                        # killed) and give the device a fresh worker so the queue keeps moving.
                        log.warning("job %s is stuck in a pipeline step; replacing its worker", job.id)
                        worker.abandoned = True
                        self._workers.remove(worker)
                        self._spawn_worker(worker.device)
                self._changed.wait(0.2)

    def _purge_expired(self) -> None:
        now = time.monotonic()
        finished = sorted((j for j in self._jobs.values() if j.final), key=lambda j: j.ended or 0.0)
        excess = len(finished) - self.config.max_retained_jobs
        for index, job in enumerate(finished):
            if index < excess or now - (job.ended or now) > self.config.result_retention_s:
                del self._jobs[job.id]


def _timeout_text(job: Job) -> str:
    return f"the job passed its deadline of {job.deadline_s:g} s"


def _finite_mesh(mesh: MeshPayload) -> bool:
    return bool(np.isfinite(mesh.vertices).all())


def _validate_result(mesh: MeshPayload, max_triangles: int) -> None:
    """Never send a broken mesh: NaN/Inf or bad indices end the job as INVALID_RESULT."""
    try:
        protocol.mesh_from_blobs(protocol.mesh_blobs(mesh), max_triangles=max_triangles, shading=mesh.shading)
    except ProtocolError as exc:
        raise PipelineError(ErrorCode.INVALID_RESULT, f"the pipeline produced an invalid mesh: {exc.message}") from None


def _release_cuda_cache() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
