"""``RayPipelineProcess``: the job engine's handle on one Ray actor, interchangeable with
``backend.pipeline_process.PipelineProcess`` (send, receive, request_cancel, kill, stop, alive).

A reader thread drains the actor's streaming generator into a local queue, so the engine polls it
like a pipe. When the actor dies (its process killed, its node lost), the reader records why and
``alive()`` turns false: the engine fails or retries the job and asks for a fresh actor.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from typing import Any

from backend.pipelines.base import PipelineRegistry
from backend.scale.actor import PipelineActor
from backend.scale.cluster import RayOptions, import_ray

log = logging.getLogger("stepstone.scale")

PING_TIMEOUT_S = 30.0
"""An idle actor that does not answer a ping within this long is taken for dead (a lost node)."""


class RayPipelineProcess:
    def __init__(self, registry: PipelineRegistry, device: str, warm_tasks: tuple[str, ...] = (), *,
                 options: RayOptions):
        ray = import_ray()
        self._ray = ray
        self.device = device
        """The engine's name for this worker (``ray:N``); the actor itself runs on ``options.device``."""
        self.built: set[str] = set(warm_tasks)
        remote = ray.remote(num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker,
                            max_concurrency=2, max_restarts=0)(PipelineActor)
        threads = max(1, int(options.cpus_per_worker))
        self.actor = remote.remote(registry, options.device, threads, tuple(warm_tasks),
                                         logging.getLogger().level)
        self._inbox: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._dead = threading.Event()
        self._streaming = threading.Event()
        """A job's or probe's messages are being read: the actor answers through them."""
        self._death = ""
        self._job: str | None = None

    def alive(self) -> bool:
        """False once the actor is known dead. An idle actor is asked (a ping), since its death
        is otherwise only seen when the next job's stream fails, and that job would fail with it."""
        if self._dead.is_set():
            return False
        if self._streaming.is_set():
            return True
        try:
            self._ray.get(self.actor.ping.remote(), timeout=PING_TIMEOUT_S)
        except (self._ray.exceptions.RayError, TimeoutError) as exc:
            self._record_death(exc)
        return not self._dead.is_set()

    def _record_death(self, exc: BaseException) -> None:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self._death = f"Ray worker running it died ({type(exc).__name__}: {first_line})"
        log.warning("%s: %s", self.device, self._death)
        self._dead.set()

    def send(self, message: tuple) -> None:
        if message[0] == "probe":
            self.built.add(message[1])
            stream = self.actor.probe.remote(message[1])
        else:
            _, job_id, task, request, seconds_left = message
            self.built.add(task)
            self._job = job_id
            stream = self.actor.run.remote(job_id, task, request, seconds_left)
        self._streaming.set()
        threading.Thread(target=self._drain, args=(stream,), name=f"stepstone-ray-{self.device}", daemon=True).start()

    def _drain(self, stream: Any) -> None:
        try:
            for ref in stream:
                self._inbox.put(self._ray.get(ref))
        except self._ray.exceptions.RayError as exc:
            if not self._dead.is_set():  # (when killed on purpose there is nothing to report)
                self._record_death(exc)
        finally:
            self._streaming.clear()

    def receive(self, timeout_s: float) -> tuple | None:
        try:
            return self._inbox.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def request_cancel(self) -> None:
        if self._job is not None and self.alive():
            self.actor.cancel.remote(self._job)

    def death_reason(self) -> str:
        return self._death or "Ray worker running it ended"

    def kill(self) -> None:
        """End the actor at once (a stuck job, a stop); its reservation returns to the cluster."""
        self._death = self._death or "Ray worker was stopped"
        self._dead.set()
        try:
            self._ray.kill(self.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone, or the cluster is: nothing left to free
            log.debug("could not kill %s's actor", self.device, exc_info=True)

    def stop(self, timeout_s: float = 2.0) -> None:
        self.kill()


def ray_process_factory(options: RayOptions):
    """What ``JobEngine(process_factory=...)`` takes to run each worker on a Ray actor."""
    return functools.partial(RayPipelineProcess, options=options)
