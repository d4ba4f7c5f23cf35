"""Test doubles for pipelines: they exercise the engine and server, and live in tests only."""

from __future__ import annotations

import os
import time

import numpy as np

from backend.pipelines.base import JobContext, Pipeline, PipelineOutput, PipelineRegistry
from backend.protocol import MeshPayload


def tetrahedron(scale: float = 1.0) -> MeshPayload:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32) * scale
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int32)
    return MeshPayload(vertices, faces)


class StepPipeline(Pipeline):
    """Ten short steps, a preview at step 3; checks for cancel between steps."""

    task = "reconstruct"
    steps = 10
    step_s = 0.05

    def run(self, request, ctx: JobContext) -> PipelineOutput:
        for step in range(self.steps):
            ctx.check()
            time.sleep(self.step_s)
            ctx.progress("refine", (step + 1) / self.steps, f"step {step + 1}")
            if step == 2:
                ctx.preview_mesh(tetrahedron(0.5))
        return PipelineOutput(tetrahedron(), {"method": "test-double"})


class SlowPipeline(StepPipeline):
    """Checks for cancel every 50 ms for up to 60 s."""

    steps = 1200


class StuckPipeline(Pipeline):
    """Never reaches a check point for a long time (a pipeline bug or a hung kernel)."""

    task = "reconstruct"
    hang_s = 4.0

    def run(self, request, ctx: JobContext) -> PipelineOutput:
        time.sleep(self.hang_s)
        return PipelineOutput(tetrahedron(), {})


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which the engine recognises by name."""


class OOMPipeline(Pipeline):
    task = "reconstruct"

    def run(self, request, ctx: JobContext) -> PipelineOutput:
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


class NaNPipeline(Pipeline):
    task = "reconstruct"

    def run(self, request, ctx: JobContext) -> PipelineOutput:
        mesh = tetrahedron()
        mesh.vertices[1, 0] = np.nan
        return PipelineOutput(mesh, {})


class EchoGeneratePipeline(StepPipeline):
    """Stands in for text-to-shape; returns the prompt in its metadata."""

    task = "generate"
    steps = 3

    def run(self, request, ctx: JobContext) -> PipelineOutput:
        output = super().run(request, ctx)
        output.metadata["prompt"] = request.prompt
        return output


def registry_with(**pipelines: type[Pipeline]) -> PipelineRegistry:
    registry = PipelineRegistry()
    for task, cls in pipelines.items():
        registry.register(task, cls)
    return registry


class MissingWeightsPipeline(StepPipeline):
    """A pipeline whose model files are absent until the file named by ``STEPSTONE_TEST_WEIGHTS``
    exists (as after a download). An environment variable, because pipelines run in a child process."""

    def unavailable_reason(self):
        path = os.environ.get("STEPSTONE_TEST_WEIGHTS", "")
        return None if path and os.path.exists(path) else "weights file model.safetensors is missing; run fetch"


def recording_context(cancel_after: int | None = None, events: list | None = None) -> JobContext:
    """A JobContext for calling a pipeline directly: records what it emits into ``events`` and
    reports "cancelled" from the ``cancel_after``-th check on."""
    events = events if events is not None else []
    calls = {"n": 0}

    def is_cancelled():
        calls["n"] += 1
        return cancel_after is not None and calls["n"] > cancel_after

    return JobContext(
        "t", "cpu",
        emit_progress=lambda *a: events.append(("progress", a)),
        emit_preview_mesh=lambda mesh, step: events.append(("preview", mesh)),
        emit_preview_points=lambda *a: events.append(("points", a)),
        is_cancelled=is_cancelled, deadline=time.monotonic() + 120)


def hold_the_gil(seconds: float) -> None:
    """Busy in C code that never releases the GIL (as decimation or a long numpy call does), in chunks
    of ~0.4 s so that the time stays near ``seconds`` on any machine."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(30_000_000))


class GilHoldingPipeline(Pipeline):
    """Reports one stage (its process id as the text), then spends ``hold_s`` inside GIL-holding C
    code with no check point."""

    task = "reconstruct"
    hold_s = 3.0

    def run(self, request, ctx: JobContext) -> PipelineOutput:
        ctx.progress("texture", 0.5, str(os.getpid()))
        hold_the_gil(self.hold_s)
        return PipelineOutput(tetrahedron(), {"pid": os.getpid()})


class PidReportingPipeline(SlowPipeline):
    """A slow pipeline that says which process runs it (in its first progress message)."""

    def run(self, request, ctx: JobContext) -> PipelineOutput:
        ctx.progress("start", 0.0, str(os.getpid()))
        return super().run(request, ctx)


class BatchGeneratePipeline(Pipeline):
    """Generate double for batch tests. Appends each run (prompt, pid) to the file named by
    ``STEPSTONE_TEST_RUN_LOG`` (an environment variable: it runs in pipeline processes and Ray
    workers). Words in the prompt steer it: ``slow`` takes ~1 s; ``die-once`` on its first run
    writes its pid to ``<prompt>.pid`` beside the log and waits to be killed; ``die-always``
    kills its own process (kill -9) every time."""

    task = "generate"

    def run(self, request, ctx: JobContext) -> PipelineOutput:
        import re
        import signal
        from pathlib import Path

        log = Path(os.environ["STEPSTONE_TEST_RUN_LOG"])
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{request.prompt}\t{os.getpid()}\n")
        ctx.progress("generate", 0.1, "started")
        words = request.prompt.split()
        if "die-always" in words:
            os.kill(os.getpid(), signal.SIGKILL)
        marker = log.parent / (re.sub(r"\W+", "_", request.prompt) + ".pid")
        if "die-once" in words and not marker.exists():
            partial = marker.with_suffix(".partial")
            partial.write_text(str(os.getpid()))
            partial.replace(marker)
            end = time.monotonic() + 60
            while time.monotonic() < end:
                ctx.check()
                time.sleep(0.05)
        if "slow" in words:
            for _ in range(20):
                ctx.check()
                time.sleep(0.05)
        return PipelineOutput(tetrahedron(), {"method": "test-double", "pid": os.getpid()})


class SlowWarmUpPipeline(StepPipeline):
    """Takes 1.5 s to warm up the first time, as loading a model does."""

    warm = False

    def warm_up(self) -> None:
        if not self.warm:
            time.sleep(1.5)
            self.warm = True
