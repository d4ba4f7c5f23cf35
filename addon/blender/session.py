"""The add-on's runtime: one job tracker, one backend link, and the one timer that drives them.

The timer (``bpy.app.timers``, persistent) calls ``Session.tick``: it drains the backend with
``poll(0)``, then works through the resulting events within a few milliseconds (a result import
may take longer; one result per tick at most) and mirrors the job list into the window manager
for the UI. Nothing here runs on another thread.
"""

from __future__ import annotations

import collections
import itertools
import time
import traceback
from dataclasses import dataclass

import bpy

from ..core.backend_install import BackendInstaller, BackendRemoval
from ..core.interpreter_check import InterpreterCheck
from ..core.jobs import JobEvent, JobRecord, JobSpec, JobState, JobTracker
from ..core.link import BackendLink, LinkStatus
from ..core.mesh_arrays import MeshImportError
from . import preferences, results

ACTIVE_INTERVAL_S = 0.05
IDLE_INTERVAL_S = 0.5
EVENT_BUDGET_S = 0.006
"""Events after this much work in one tick wait for the next tick (a result import is never split)."""
MAX_PREVIEW_TRIANGLES = 20_000
"""Bigger previews would cost more than a frame (~6 ms per 20k triangles) and are skipped; the
final result is imported whatever its size."""


BACKEND_TOPIC = "backend"
HEALTHY_STATES = ("connected", "busy")


@dataclass
class Notice:
    level: str
    text: str
    at: float
    topic: str = ""
    """``backend`` for a problem of the backend itself (it would not start, died, gave up, its
    interpreter check failed): moot, and removed, once the backend is connected again."""
    id: int = 0
    """Names the notice for its dismiss button (positions shift as notices come and go)."""


@dataclass
class TickRecord:
    duration_s: float
    """Wall-clock time of the tick."""
    cpu_s: float
    """CPU time this thread spent in it; much less than ``duration_s`` means the OS ran something else."""
    active: bool
    """A job was waiting, queued or running during this tick."""
    imported: bool
    """This tick built a result object (its cost is the import time, measured separately)."""
    handled: str = ""
    """The kinds of events it handled, e.g. ``progress×3 preview`` (for finding slow ticks)."""


class Session:
    def __init__(self) -> None:
        self.tracker = JobTracker()
        self.link: BackendLink | None = None
        self.pending: collections.deque[JobEvent] = collections.deque()
        self.notices: collections.deque[Notice] = collections.deque(maxlen=30)
        self._notice_ids = itertools.count(1)
        self._backend_was_healthy = False
        self.ticks: collections.deque[TickRecord] = collections.deque(maxlen=5000)
        self.check: InterpreterCheck | None = None
        self.installer: BackendInstaller | BackendRemoval | None = None
        """Install Backend / Repair / Remove, the current or last run (its outcome stays shown)."""
        self._installer_shown, self._installer_reported = "", False
        self._handled: list[str] = []
        self._last_internal_error = ""
        self._settings_dirty = False
        self._synced_version = -1
        self._synced_at = 0.0
        self._synced_status = ""

    # ------------------------------------------------------------------------------ backend
    def get_link(self) -> BackendLink:
        if self.link is None:
            self.link = BackendLink(preferences.link_settings(preferences.get_preferences()), self.tracker)
        return self.link

    def settings_changed(self) -> None:
        """Preferences changed; applied once no job depends on the current backend."""
        self._settings_dirty = True

    def _apply_settings(self) -> None:
        if self._settings_dirty and self.link is not None and not self.tracker.active():
            self.link.configure(preferences.link_settings(preferences.get_preferences()))
            self._settings_dirty = False

    def start_backend(self) -> None:
        """Explicit start (or restart) by the user; raises LinkError/SupervisorError with the reason."""
        link = self.get_link()
        if not self.tracker.active():
            link.configure(preferences.link_settings(preferences.get_preferences()))
            self._settings_dirty = False
        self._handle_now(link.restart())

    def stop_backend(self) -> None:
        if self.link is not None:
            self._handle_now(self.link.stop())

    def status(self) -> LinkStatus:
        if self.link is None:
            prefs = preferences.get_preferences()
            if prefs.backend_mode == "LOCAL" and not preferences.backend_python(prefs):
                return LinkStatus("stopped", "no backend environment yet: press Install Backend in "
                                             "Preferences → Add-ons → Stepstone")
            where = "starts with the first job" if prefs.backend_mode == "LOCAL" else f"connects to {prefs.address}"
            return LinkStatus("stopped", f"not running ({where})")
        return self.link.status()

    def server_info(self) -> dict | None:
        return self.link.server_info() if self.link is not None else None

    def shutdown(self) -> None:
        if self.installer is not None:
            self.installer.cancel()  # its pip must not outlive Blender
        if self.link is not None:
            self.link.shutdown()
            self.link = None

    # ------------------------------------------------------------------------------ jobs
    def submit(self, spec: JobSpec, label: str, target: dict, batch: str | None = None) -> JobRecord:
        job = self.tracker.add(spec, label, target, batch)
        self._handle_now(self.get_link().submit(job))
        return job

    def cancel(self, job_id: str) -> None:
        if self.link is not None:
            self.link.cancel(job_id)
        else:
            self.tracker.cancel(job_id)
        self._handle_now([])

    def cancel_batch(self, batch_id: str) -> None:
        if self.link is not None:
            self.link.cancel_batch(batch_id)
        else:
            self.tracker.cancel_batch(batch_id)

    def retry(self, job_id: str) -> JobRecord:
        job = self.tracker.retry(job_id)
        results.remove_job_object(self.tracker.get(job_id))
        self._handle_now(self.get_link().submit(job))
        return job

    def place_held(self, job: JobRecord, scene: bpy.types.Scene) -> results.ImportOutcome:
        """Import a held result into ``scene`` (the one the user is looking at now)."""
        job.target.update(scene=scene.name, scene_uid=scene.session_uid)
        outcome = results.import_result(job, job.held_result)
        self.tracker.finish_import(job, outcome.summary)
        return outcome

    def notify(self, level: str, text: str, topic: str = "") -> None:
        self.notices.append(Notice(level, text, time.time(), topic, next(self._notice_ids)))
        print(f"Stepstone {level.lower()}: {text}", flush=True)

    def dismiss_notice(self, notice_id: int) -> bool:
        return self._drop_notices(lambda notice: notice.id == notice_id) > 0

    def clear_notices(self) -> None:
        self.notices.clear()

    def _drop_notices(self, drop) -> int:
        kept = [notice for notice in self.notices if not drop(notice)]
        dropped = len(self.notices) - len(kept)
        if dropped:
            self.notices.clear()
            self.notices.extend(kept)
        return dropped

    def _clear_fixed_problems(self, state: str) -> None:
        """The backend's own problems are fixed once it is connected again: drop them then (on the
        change to healthy only, so a check that fails while an older backend runs stays shown)."""
        healthy = state in HEALTHY_STATES
        if healthy and not self._backend_was_healthy:
            self._drop_notices(lambda notice: notice.topic == BACKEND_TOPIC)
        self._backend_was_healthy = healthy

    # ------------------------------------------------------------------------------ the timer
    def tick(self) -> float:
        started = time.perf_counter()
        cpu_started = time.thread_time()
        imported = False
        self._handled = []
        try:
            self._apply_settings()
            if self.link is not None:
                self.pending.extend(self.link.tick())
            self._poll_check()
            self._poll_installer()
            imported = self._drain(started)
            self._clear_fixed_problems(self.status().state)
            self._sync_ui()
        except Exception:  # noqa: BLE001 - an exception would unregister the timer and freeze every job
            error = traceback.format_exc()
            if error != self._last_internal_error:  # the same failure on every tick is reported once
                self.notify("ERROR", f"internal error in the Stepstone timer:\n{error}")
            self._last_internal_error = error
        active = bool(self.tracker.active()) or bool(self.pending)
        self.ticks.append(TickRecord(time.perf_counter() - started, time.thread_time() - cpu_started, active, imported,
                                     " ".join(self._handled)))
        return ACTIVE_INTERVAL_S if active or self._backend_busy() else IDLE_INTERVAL_S

    def _backend_busy(self) -> bool:
        return self.link is not None and self.link.status().state == "starting"

    def _handle_now(self, events: list[JobEvent]) -> None:
        self.pending.extend(events)
        self._drain(time.perf_counter(), budget_s=float("inf"), allow_import=False)
        self._sync_ui()

    def _drain(self, started: float, budget_s: float = EVENT_BUDGET_S, allow_import: bool = True) -> bool:
        imported = False
        while self.pending:
            event = self.pending[0]
            if event.kind == "result":
                if imported or not allow_import:
                    break
                imported = True
            self.pending.popleft()
            self._handle(event)
            if time.perf_counter() - started > budget_s:
                break
        return imported

    def _handle(self, event: JobEvent) -> None:
        self._handled.append(event.kind)
        if event.kind == "report":
            # link.py reports trouble with the backend itself (start failures, deaths, giving up) as
            # "Backend…" lines that belong to no job; a job's own failure stays until dismissed.
            backend = event.job is None and event.text.startswith("Backend")
            self.notify(event.level, event.text, topic=BACKEND_TOPIC if backend else "")
        elif event.kind == "preview":
            faces = event.message.blobs.get("faces")
            if getattr(faces, "shape", (0,))[0] > MAX_PREVIEW_TRIANGLES:
                return
            try:
                results.show_preview(event.job, event.message)
            except (MeshImportError, ValueError) as exc:
                self.notify("WARNING", f"{event.job.label}: preview skipped ({exc})")
        elif event.kind == "result":
            self._import(event.job, event.message)
        elif event.kind == "ended" and event.job.state != JobState.DONE:
            results.remove_job_object(event.job)

    def _import(self, job: JobRecord, message) -> None:
        try:
            outcome = results.import_result(job, message)
        except results.SceneGoneError as exc:
            self.pending.extend(self.tracker.hold(job, message, str(exc)))
            return
        except MeshImportError as exc:
            self.pending.extend(self.tracker.fail_import(job, "INVALID_RESULT", f"the result could not be imported: {exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - a failed import must end the job, not the timer
            traceback.print_exc()
            results.remove_job_object(job)
            self.pending.extend(self.tracker.fail_import(job, "IMPORT_FAILED", f"{type(exc).__name__}: {exc}"))
            return
        self.tracker.finish_import(job, outcome.summary)
        # a mine result says what it made (several objects) and which photos it left out
        warning = outcome.warning if outcome.summary else outcome.object.get("stepstone_warnings")
        what = outcome.summary or f"done → {outcome.object.name}"
        self.notify("WARNING" if warning else "INFO", f"{job.label}: {what}" + (f" ({warning})" if warning else ""))
        _undo_push(f"Stepstone: {job.label}")

    def start_install(self, installer: BackendInstaller | BackendRemoval) -> None:
        self.installer = installer
        self._installer_shown, self._installer_reported = "", False

    def _poll_installer(self) -> None:
        installer = self.installer
        if installer is None:
            return
        installer.tick()
        progress = installer.progress
        shown = f"{progress.state} {progress.step_index} {progress.fraction:.3f} {progress.text}"
        if shown != self._installer_shown:
            self._installer_shown = shown
            _redraw("PREFERENCES")
        if installer.final and not self._installer_reported:
            self._installer_reported = True  # also a run cancelled between two ticks
            if progress.state == "done":
                self._drop_notices(lambda notice: notice.topic == "install")
            self.notify({"done": "INFO", "cancelled": "WARNING"}.get(progress.state, "ERROR"), progress.text,
                        topic="" if progress.state == "done" else "install")
            self.settings_changed()  # the backend's interpreter may be a new one now
            if progress.state == "done" and isinstance(installer, BackendInstaller):
                start_check(str(installer.plan.python))

    def _poll_check(self) -> None:
        if self.check is None:
            return
        result = self.check.poll()
        if result is None:
            return
        self.check = None
        preferences.get_preferences().check_result = result.summary
        self.notify("INFO" if result.ok else "ERROR", f"backend check: {result.summary}",
                    topic="" if result.ok else BACKEND_TOPIC)

    # ------------------------------------------------------------------------------ UI mirror
    def ui_is_stale(self, now: float) -> bool:
        """The sidebar shows the jobs and the backend's status line: redraw when either changed.
        (After the last job ends only the status changes; the panel kept "busy: 1 running" until
        the mouse moved over it.)"""
        return (self.tracker.version != self._synced_version or self.status().text != self._synced_status
                or (bool(self.tracker.active()) and now - self._synced_at > 1.0))

    def _sync_ui(self) -> None:
        now = time.monotonic()
        if not self.ui_is_stale(now):
            return
        wm = bpy.context.window_manager
        if wm is None:
            return
        items = wm.stepstone_jobs
        shown = [j for j in reversed(self.tracker.jobs.values()) if j.retried_as is None]
        while len(items) > len(shown):
            items.remove(len(items) - 1)
        while len(items) < len(shown):
            items.add()
        batches = self.tracker.batches
        for item, job in zip(items, shown):
            item.job_id, item.label, item.state = job.id, job.label, job.state.value
            item.detail = job.describe()
            item.progress = job.fraction
            item.eta = job.eta_text(now)
            item.batch = batches[job.batch].name if job.batch in batches else ""
            item.can_cancel = not job.final and job.state not in (JobState.IMPORTING, JobState.HELD)
            item.can_retry = job.retryable
            item.held = job.state == JobState.HELD
        self._synced_version, self._synced_at, self._synced_status = self.tracker.version, now, self.status().text
        _redraw("VIEW_3D", "IMAGE_EDITOR")


def _redraw(*area_types: str) -> None:
    wm = bpy.context.window_manager
    for window in (wm.windows if wm is not None else ()):
        for area in window.screen.areas:
            if area.type in area_types:
                area.tag_redraw()


def _undo_push(message: str) -> None:
    """Make the finished import one undo step (the submit operator pushed the state before it)."""
    try:
        if bpy.ops.ed.undo_push.poll():
            bpy.ops.ed.undo_push(message=message)
    except RuntimeError:
        pass  # no undo stack in this context (e.g. some background setups): nothing to record


_session: Session | None = None


def get_session() -> Session:
    global _session
    if _session is None:
        _session = Session()
    return _session


def end_session() -> None:
    global _session
    if _session is not None:
        _session.shutdown()
        _session = None


def timer() -> float:
    """The one persistent timer callback."""
    return get_session().tick()


def start_check(python: str) -> None:
    get_session().check = InterpreterCheck(python, preferences.EXTENSION_ROOT)

