"""Feeding a batch's items to a job engine and writing each result as it finishes.

The engine is the one the server uses (deadlines, cancel, result checks, metadata), with one
local pipeline process or a pool of Ray workers behind it. Each worker has its next item queued,
so none waits for the driver. A job whose worker died (``Job.worker_lost``: a kill -9, a lost
node) is run again, up to ``max_attempts`` times in all; any other failure is the item's own and
is recorded with its error code. Results are written by this driver, so workers on other machines
need no shared disk.
"""

from __future__ import annotations

import collections
import queue
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from backend import protocol
from backend.batch.items import BatchItem
from backend.batch.manifest import Manifest
from backend.config import ServerConfig
from backend.errors import InputError
from backend.geometry.mesh_files import MeshFileError
from backend.jobs import EngineError, Job, JobEngine
from backend.protocol import ErrorCode, Message, ProtocolError
from backend.requests import parse_local_submit
from backend.result_files import write_result_files

EngineFactory = Callable[[Callable[[Job, Message], None]], JobEngine]


@dataclass(frozen=True)
class BatchSettings:
    """What every item's job is asked for; a resumed batch must be run with the same."""

    params: dict[str, Any]
    """Common job parameters (quality, seed, texture, face_budget, timeout_s)."""
    method: str = "auto"
    """Reconstruction method for image items."""
    stylize: bool = False
    """Texture generated shapes from their prompt."""
    format: str = ".glb"
    max_attempts: int = 3
    """Runs of one item when its worker dies under it; a failure of the item itself is final."""
    points: bool = False
    """Image items as coloured point clouds (``output="points"``) instead of meshes."""

    def record(self) -> dict[str, Any]:
        """The part that decides the results (not the attempts), kept in the manifest."""
        return {"params": self.params, "method": self.method, "stylize": self.stylize, "format": self.format,
                **({"points": True} if self.points else {})}

    def message(self, item: BatchItem, job_id: str) -> Message:
        params = dict(self.params)
        if item.task == "reconstruct":
            if self.method != "auto":
                params["method"] = self.method
            if self.points:
                params["output"] = "points"
            return protocol.submit_reconstruct(job_id, [item.image.read_bytes()], params)
        prompt = item.prompt
        if prompt.negative_prompt:
            params["negative_prompt"] = prompt.negative_prompt
        if prompt.seed is not None:
            params["seed"] = prompt.seed
        if self.stylize:
            params["stylize"] = True
        return protocol.submit_generate(job_id, prompt.prompt, params)


@dataclass
class BatchSummary:
    total: int
    skipped: int
    """Done by an earlier run of the same command."""
    done: int
    failed: int
    seconds: float

    @property
    def items_per_minute(self) -> float:
        return 60.0 * self.done / self.seconds if self.seconds > 0 else 0.0


def run_batch(items: list[BatchItem], folder: Path, settings: BatchSettings, make_engine: EngineFactory,
              config: ServerConfig | None = None, report: Callable[[str], None] = print) -> BatchSummary:
    """Run every item not already done in ``folder``; returns the counts. Ctrl+C cancels the
    running jobs, records them as pending and re-raises: running the same batch again resumes."""
    config = config or ServerConfig()
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.open(folder, settings.record())
    for item in items:
        manifest.add(item.key, item.name, item.task, item.source)
    todo = collections.deque(item for item in items if not manifest.is_done(item.key))
    skipped = len(items) - len(todo)
    if skipped:
        report(f"{skipped} of {len(items)} item(s) already done in {folder}; running the other {len(todo)}")
    manifest.save()
    started = time.monotonic()
    finals: queue.SimpleQueue[tuple[Job, Message]] = queue.SimpleQueue()

    def sink(job: Job, message: Message) -> None:
        if message.type == "result" or (message.type == "error" and message.get("state")):
            finals.put((job, message))

    run = _Run(items, folder, settings, manifest, config, report, skipped)
    engine = make_engine(sink) if todo else None
    try:
        if engine is not None:
            engine.start()
            window = min(len(engine.devices) + 1, config.limits.max_queued_per_client)
            in_flight: dict[str, BatchItem] = {}
            while todo or in_flight:
                while todo and len(in_flight) < window:
                    item = todo.popleft()
                    job_id = run.submit(engine, item)
                    if job_id is not None:
                        in_flight[job_id] = item
                try:
                    job, message = finals.get(timeout=0.5)
                except queue.Empty:
                    continue
                item = in_flight.pop(job.id, None)
                if item is not None and run.conclude(item, job, message):
                    todo.appendleft(item)  # its worker died: run it again on the next free one
    except KeyboardInterrupt:
        for record in manifest.items.values():
            if record.state == "running":
                record.state = "pending"
        manifest.save()
        raise
    finally:
        if engine is not None:
            engine.stop()
    states = [manifest.items[item.key].state for item in items]
    return BatchSummary(len(items), skipped, states.count("done") - skipped, states.count("failed"),
                        time.monotonic() - started)


class _Run:
    """One command's pass over the items: submits jobs and records how each ends."""

    def __init__(self, items, folder, settings, manifest, config, report, skipped):
        self.total = len(items)
        self.folder = folder
        self.settings = settings
        self.manifest = manifest
        self.config = config
        self.report = report
        self.ended = skipped

    def submit(self, engine: JobEngine, item: BatchItem) -> str | None:
        """Queue ``item``'s job; None when the item fails before it runs (bad input)."""
        record = self.manifest.items[item.key]
        job_id = f"batch-{uuid.uuid4().hex[:12]}"
        try:
            request = parse_local_submit(self.settings.message(item, job_id), self.config.limits)
            engine.submit(job_id, request, owner="batch")
        except (ProtocolError, InputError, EngineError) as exc:
            self._fail(item, exc.code.value, exc.message)
            return None
        except OSError as exc:
            self._fail(item, ErrorCode.INVALID_IMAGE.value, f"cannot read {item.source}: {exc.strerror}")
            return None
        record.state, record.attempts, record.error = "running", record.attempts + 1, None
        self.manifest.save()
        return job_id

    def conclude(self, item: BatchItem, job: Job, final: Message) -> bool:
        """Record how ``item``'s job ended; True when it should run again."""
        record = self.manifest.items[item.key]
        if final.type == "result":
            output = self.folder / f"{item.name}{self.settings.format}"
            meta = final.get("metadata")
            extra = {"batch": {"key": item.key, "source": item.source, "attempts": record.attempts}}
            try:
                mesh, path, meta_path = write_result_files(final, output, extra)
            except (OSError, MeshFileError) as exc:  # a full disk, a folder gone: the item failed, say why
                self._fail(item, "WRITE_FAILED", f"could not write {output.name}: {exc}")
                return False
            record.state, record.outputs = "done", [path.name, meta_path.name]
            record.seconds = meta.get("timings", {}).get("run_s")
            record.worker = meta.get("device")
            self.manifest.save()
            self.ended += 1
            self.report(f"[{self.ended}/{self.total}] done {item.name} ({record.seconds or 0:.1f} s on {record.worker}, "
                        f"{mesh.n_triangles} triangles)")
            return False
        code, text = final.get("code"), final.get("message")
        if job.worker_lost and record.attempts < self.settings.max_attempts:
            record.state = "pending"
            self.manifest.save()
            self.report(f"retrying {item.name}: {text} (attempt {record.attempts} of {self.settings.max_attempts})")
            return True
        if job.worker_lost:
            text = f"{text}; gave up after {record.attempts} attempts"
        self._fail(item, code, text)
        return False

    def _fail(self, item: BatchItem, code: str, text: str) -> None:
        record = self.manifest.items[item.key]
        record.state, record.error = "failed", {"code": code, "message": text}
        self.manifest.save()
        self.ended += 1
        self.report(f"[{self.ended}/{self.total}] failed {item.name} ({item.source}): {code}: {text}")
