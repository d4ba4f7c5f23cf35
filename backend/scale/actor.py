"""The Ray actor that runs pipelines: the Ray counterpart of ``backend.pipeline_process``'s child.

One actor serves one engine worker, one job at a time, and keeps the pipelines it has built. Its
``run`` is a streaming generator that yields the same message tuples as the child process writes
on its pipe, ending with the outcome. The actor is threaded (two concurrent calls) so that
``cancel`` reaches the event the running job's check points read.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any, Iterator

from backend.pipeline_process import availability, run_job
from backend.pipelines.base import Pipeline, PipelineRegistry
from backend.protocol import ErrorCode

_END = "__end__"


class _QueueSender:
    """The ``conn`` that ``run_job`` writes progress to: a queue the generator drains."""

    def __init__(self, messages: queue.SimpleQueue):
        self.messages = messages

    def send(self, message: tuple) -> None:
        self.messages.put(message)


class PipelineActor:
    """Wrapped with ``ray.remote`` by ``backend.scale.process``; plain here so it can be tested
    without a cluster."""

    def __init__(self, registry: PipelineRegistry, device: str, threads: int, warm_tasks: tuple[str, ...] = (),
                 log_level: int = logging.WARNING):
        logging.basicConfig(level=log_level or logging.WARNING,
                            format="%(asctime)s %(levelname)s %(name)s [ray worker]: %(message)s")
        # Ray reserves CPUs per actor; torch must not spread over the whole node's cores
        os.environ["OMP_NUM_THREADS"] = str(threads)
        self._threads = threads
        self.registry = registry
        self.device = device
        self._built: dict[str, Pipeline] = {}
        self._cancel = threading.Event()
        self._job: str | None = None
        for task in warm_tasks:
            availability(self._pipeline, task)

    def _pipeline(self, task: str) -> Pipeline:
        if task not in self._built:
            self._built[task] = self.registry.create(task, self.device)
            self._limit_torch_threads()
        return self._built[task]

    def _limit_torch_threads(self) -> None:
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)

    def ping(self) -> int:
        """Answers while the actor lives (its process id)."""
        return os.getpid()

    def probe(self, task: str) -> Iterator[tuple]:
        yield ("availability", task, availability(self._pipeline, task))

    def run(self, job_id: str, task: str, request: Any, seconds_left: float) -> Iterator[tuple]:
        self._job = job_id
        self._cancel.clear()
        self._limit_torch_threads()
        messages: queue.SimpleQueue = queue.SimpleQueue()

        def work(request: Any) -> None:
            outcome: tuple = ("failed", ErrorCode.PIPELINE_FAILED, "the Ray worker's job thread stopped")
            try:
                outcome = run_job(_QueueSender(messages), self._cancel, self._pipeline, self.device, job_id, task,
                                  request, seconds_left)
            finally:
                messages.put((_END, outcome))  # the generator must end, whatever happened

        # the thread holds the only reference to the request (its images), dropped when the job ends
        threading.Thread(target=work, args=(request,), name=f"stepstone-job-{job_id}", daemon=True).start()
        del request
        while True:
            message = messages.get()
            if message[0] == _END:
                self._job = None
                yield message[1]
                return
            yield message

    def cancel(self, job_id: str) -> None:
        """Stop ``job_id`` at its next check point; a late cancel for an ended job is ignored."""
        if self._job == job_id:
            self._cancel.set()
