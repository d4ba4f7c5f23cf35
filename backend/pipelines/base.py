"""What a pipeline is, what it gets while it runs, and the registry that finds one by task name."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from backend.errors import JobCancelled, JobTimedOut
from backend.protocol import MeshPayload


@dataclass
class PipelineOutput:
    mesh: MeshPayload
    metadata: dict[str, Any] = field(default_factory=dict)
    """JSON-safe facts about the run (method, steps, warnings...); timings and seed are added by the engine."""


class JobContext:
    """The pipeline's window on its job: report progress, stream previews, and stop when asked.

    ``check()`` must be called between steps (at least every ~0.5 s of work): it raises
    ``JobCancelled`` or ``JobTimedOut``, which the engine turns into the job's final state.
    """

    def __init__(self, job_id: str, device: str, *,
                 emit_progress: Callable[[str, float, str, float | None], None],
                 emit_preview_mesh: Callable[[MeshPayload, int], None],
                 emit_preview_points: Callable[[np.ndarray, np.ndarray | None, int], None],
                 is_cancelled: Callable[[], bool],
                 deadline: float):
        self.job_id = job_id
        self.device = device
        self._emit_progress = emit_progress
        self._emit_preview_mesh = emit_preview_mesh
        self._emit_preview_points = emit_preview_points
        self._is_cancelled = is_cancelled
        self.deadline = deadline
        self.warnings: list[str] = []
        self._preview_step = 0
        self._stage: str | None = None
        self._stage_started = time.perf_counter()
        self._stage_seconds: dict[str, float] = {}

    def check(self) -> None:
        if self._is_cancelled():
            raise JobCancelled()
        if time.monotonic() > self.deadline:
            raise JobTimedOut()

    def progress(self, stage: str, fraction: float, message: str = "", eta_s: float | None = None) -> None:
        self.check()
        if stage != self._stage:
            self._close_stage()
            self._stage = stage
        self._emit_progress(stage, fraction, message, eta_s)

    def _close_stage(self) -> None:
        now = time.perf_counter()
        if self._stage is not None:
            key = f"{self._stage}_s"
            self._stage_seconds[key] = self._stage_seconds.get(key, 0.0) + now - self._stage_started
        self._stage_started = now

    def stage_times(self) -> dict[str, float]:
        """Seconds per progress stage so far (a stage runs until the next one starts; one that
        comes back adds up) and ``total_s``: the ``timings_s`` of a pipeline that keeps none of
        its own."""
        self._close_stage()
        self._stage = None
        times = {key: round(value, 3) for key, value in self._stage_seconds.items()}
        times["total_s"] = round(sum(self._stage_seconds.values()), 3)
        return times

    def preview_mesh(self, mesh: MeshPayload) -> None:
        self._preview_step += 1
        self._emit_preview_mesh(mesh, self._preview_step)

    def preview_points(self, points: np.ndarray, colors: np.ndarray | None = None) -> None:
        self._preview_step += 1
        self._emit_preview_points(points, colors, self._preview_step)

    def warn(self, text: str) -> None:
        """A note for the user that does not stop the job (returned in the result's metadata)."""
        self.warnings.append(text)


class Pipeline(abc.ABC):
    """One kind of job (reconstruct, generate, stylize). Built once per device and reused."""

    task: str

    def __init__(self, device: str):
        self.device = device

    def unavailable_reason(self) -> str | None:
        """None when the pipeline can run; otherwise what is missing and how the user gets it."""
        return None

    def warm_up(self) -> None:
        """Load what the first job would otherwise wait for (a model's weights). Called in the
        pipeline's process once it is available, at start-up; must be safe to call again."""

    @abc.abstractmethod
    def run(self, request: Any, ctx: JobContext) -> PipelineOutput:
        """Do the work, calling ``ctx.check()`` between steps."""


PipelineFactory = Callable[[str], Pipeline]


def preset_for(presets: dict[tuple[str, str], Any], device: str, quality: str) -> Any:
    """The preset for a device (``cpu`` / ``cuda…``) and a quality, from a table keyed by
    (``cpu``|``gpu``, quality)."""
    kind = "cpu" if device == "cpu" else "gpu"
    if (kind, quality) not in presets:
        raise ValueError(f"unknown quality {quality!r}; use preview, default or high")
    return presets[(kind, quality)]


class PipelineRegistry:
    """Task name → factory(device) → Pipeline. The server and the CLI share one."""

    def __init__(self) -> None:
        self._factories: dict[str, PipelineFactory] = {}

    def register(self, task: str, factory: PipelineFactory) -> None:
        self._factories[task] = factory

    def tasks(self) -> list[str]:
        return sorted(self._factories)

    def has(self, task: str) -> bool:
        return task in self._factories

    def create(self, task: str, device: str) -> Pipeline:
        return self._factories[task](device)

    def only(self, tasks: set[str]) -> "PipelineRegistry":
        """The same factories for ``tasks`` alone: workers then build (and probe) just what a
        batch needs."""
        subset = PipelineRegistry()
        for task in sorted(tasks & set(self._factories)):
            subset.register(task, self._factories[task])
        return subset
