"""The process that runs pipelines for one device, apart from the server's I/O loop.

A pipeline spends seconds inside C extensions (decimation, marching cubes, segmentation) that hold the
GIL and never reach a check point; in the server's own process that froze pings and made cancel
wait for the step to end. Here each device has a child process, kept warm with its built
pipelines. The engine talks to it over a pipe: it sends a job, reads progress, previews and the
outcome, and stops it in two steps — a cooperative cancel (an event the pipeline's ``ctx.check()``
reads), then, after a short grace, a kill and a fresh process that rebuilds the pipelines it had.

Wire format on the pipe (tuples, pickled by ``multiprocessing``):
parent → child: ``("probe", task)``, ``("run", job_id, task, request, seconds_left)``
child → parent: ``("availability", task, reason | None)``, ``("progress", stage, fraction, text, eta)``,
``("preview_mesh", mesh, step)``, ``("preview_points", points, colors, step)``, and one outcome per
run: ``("done", PipelineOutput, warnings)``, ``("cancelled",)``, ``("timed_out",)`` or
``("failed", ErrorCode, text)``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from backend.errors import InputError, JobCancelled, JobTimedOut, PipelineError
from backend.pipelines.base import JobContext, Pipeline, PipelineRegistry
from backend.protocol import ErrorCode

log = logging.getLogger("stepstone.pipelines")

OUTCOMES = ("done", "cancelled", "timed_out", "failed")
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>

# "spawn" everywhere: forking a server that already runs ZeroMQ and worker threads would copy
# their locks in whatever state they are in, and CUDA cannot be used in a forked child at all.
_CONTEXT = multiprocessing.get_context("spawn")


class PipelineProcess:
    """Parent-side handle of one child process (not thread-safe: one engine worker owns it)."""

    def __init__(self, registry: PipelineRegistry, device: str, warm_tasks: tuple[str, ...] = ()):
        self.device = device
        self._conn, child_end = _CONTEXT.Pipe()
        self._cancel = _CONTEXT.Event()
        self.process = _CONTEXT.Process(
            target=_child_main, name=f"stepstone-pipelines-{device}", daemon=True,
            args=(child_end, self._cancel, registry, device, warm_tasks, logging.getLogger().level, os.getpid()))
        self.process.start()
        child_end.close()
        self.built: set[str] = set(warm_tasks)
        """Tasks this process has built (or is building): a replacement warms the same ones."""

    def alive(self) -> bool:
        return self.process.is_alive()

    def send(self, message: tuple) -> None:
        self._cancel.clear()
        if message[0] == "run" or message[0] == "probe":
            self.built.add(message[2] if message[0] == "run" else message[1])
        self._conn.send(message)

    def receive(self, timeout_s: float) -> tuple | None:
        """The child's next message, or None after ``timeout_s`` (or when the child has died)."""
        try:
            if self._conn.poll(timeout_s):
                return self._conn.recv()
        except (EOFError, OSError):
            time.sleep(timeout_s)  # the child died; the caller sees that through alive()
        return None

    def request_cancel(self) -> None:
        self._cancel.set()

    def death_reason(self) -> str:
        """How the child ended, for a job or probe it took down with it."""
        code = self.process.exitcode
        return (f"pipeline process ended unexpectedly (exit code {code}"
                f"{'; killed, perhaps for lack of memory' if code == -9 else ''})")

    def kill(self) -> None:
        """Stop at once, whatever the child is doing; frees its CPU, memory and device."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self._conn.close()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Let the child finish its current step (it is asked to cancel), then kill it if need be."""
        self._cancel.set()
        try:
            self._conn.close()  # the child's next read sees EOF and returns
        except OSError:
            pass
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


# ---------------------------------------------------------------------------------------- child side
def _child_main(conn: Connection, cancel, registry: PipelineRegistry, device: str,
                warm_tasks: tuple[str, ...], log_level: int, parent_pid: int) -> None:
    # Ctrl+C in a terminal reaches the whole process group; the parent decides how a job ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    logging.basicConfig(level=log_level or logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s [pipelines]: %(message)s")
    built: dict[str, Pipeline] = {}

    def pipeline(task: str) -> Pipeline:
        if task not in built:
            built[task] = registry.create(task, device)
        return built[task]

    for task in warm_tasks:
        try:
            pipeline(task)
        except Exception:  # noqa: BLE001 - reported with its reason when a job or probe asks for it
            log.exception("could not build the %s pipeline", task)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server closed the pipe or died
        if message[0] == "probe":
            reply = ("availability", message[1], availability(pipeline, message[1]))
        else:
            _, job_id, task, request, seconds_left = message
            reply = run_job(conn, cancel, pipeline, device, job_id, task, request, seconds_left)
            del request
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return  # the server stopped while this job was ending


def _die_with_parent(parent_pid: int) -> None:
    """A server killed with SIGKILL cannot stop its pipeline process, which would go on using a
    core (or the GPU) for a job no one will receive. On Linux the kernel kills it with its parent;
    elsewhere a thread looks every second (it cannot run while a step holds the GIL, but each
    step ends)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before the request took effect
            os._exit(1)
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="stepstone-parent-watch", daemon=True).start()


def availability(pipeline, task: str) -> str | None:
    """Why ``task`` cannot run (None: it can); ``pipeline(task)`` builds or returns the pipeline.
    An available pipeline is warmed up (its model loaded) here, so the first job does not wait."""
    try:
        built = pipeline(task)
        reason = built.unavailable_reason()
        if reason is None:
            built.warm_up()
        return reason
    except Exception as exc:  # noqa: BLE001 - a broken pipeline is reported, not fatal
        log.exception("pipeline %s could not be built", task)
        return f"the {task} pipeline could not be loaded: {type(exc).__name__}: {exc}"


def run_job(conn, cancel, pipeline, device: str, job_id: str, task: str, request: Any,
            seconds_left: float) -> tuple:
    """Run one job; ``conn.send`` takes its progress and previews, ``cancel.is_set`` is read at each
    check point. Returns the outcome tuple. Shared by this child process and the Ray actor."""
    ctx = JobContext(
        job_id, device,
        emit_progress=lambda stage, fraction, text, eta: conn.send(("progress", stage, fraction, text, eta)),
        emit_preview_mesh=lambda mesh, step: conn.send(("preview_mesh", mesh, step)),
        emit_preview_points=lambda points, colors, step: conn.send(("preview_points", points, colors, step)),
        is_cancelled=cancel.is_set, deadline=time.monotonic() + seconds_left)
    try:
        reason = availability(pipeline, task)
        conn.send(("availability", task, reason))
        if reason is not None:
            raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE, reason)
        ctx.check()
        request.decode_inputs()
        output = pipeline(task).run(request, ctx)
        ctx.check()
        output.metadata.setdefault("timings_s", ctx.stage_times())
        return ("done", output, ctx.warnings)
    except JobCancelled:
        return ("cancelled",)
    except JobTimedOut:
        return ("timed_out",)
    except (PipelineError, InputError) as exc:
        return ("failed", exc.code, exc.message)
    except MemoryError:
        return ("failed", ErrorCode.OUT_OF_MEMORY, "the job ran out of memory; try a lower quality")
    except Exception as exc:  # noqa: BLE001 - a pipeline bug must fail the job, not the process
        if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
            _release_cuda_cache()
            return ("failed", ErrorCode.OUT_OF_MEMORY,
                    f"the device ran out of memory ({exc}); try a lower quality or the CPU")
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        return ("failed", ErrorCode.PIPELINE_FAILED, f"{type(exc).__name__}: {exc}")


def _release_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
