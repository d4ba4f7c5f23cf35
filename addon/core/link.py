"""The add-on's connection to one backend: supervisor (local mode) + client + job tracker.

``tick()`` is what the Blender timer calls: it advances the supervisor, drains the client with
``poll(0)``, feeds every message to the tracker, sends jobs that were waiting for the backend, and
returns the tracker's events for the bpy layer. Nothing here blocks or touches bpy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .backend_api import BACKEND_VERSION, client, protocol
from .jobs import JobEvent, JobRecord, JobTracker
from .supervisor import BackendState, BackendSupervisor, LocalBackendConfig, ProcessLauncher, SupervisorError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
MAX_SENT_JOBS = 16
"""Jobs handed to the backend and not yet ended; the rest of a batch waits here. The backend lets
one client queue 24 (``ServiceLimits.max_queued_per_client``); 16 keep any GPU busy."""
TICK_GAP_S = 2.0
"""A pause between ticks longer than this means Blender's main thread was busy, not the backend."""


class LinkError(RuntimeError):
    """The backend cannot be reached as configured (bad address, no online access, missing keys)."""


@dataclass(frozen=True)
class LinkSettings:
    """What the add-on preferences say about the backend."""

    mode: str = "local"
    """``local``: the add-on runs the backend itself; ``remote``: connect to ``address``."""
    address: str = "tcp://127.0.0.1:5555"
    """Remote backend address (``tcp://host:port``)."""
    python: str = ""
    """Interpreter of the backend environment (local mode)."""
    backend_root: Path = Path(".")
    """Folder holding the ``backend`` package (the extension root)."""
    device: str = "auto"
    client_secret_file: str = ""
    """CURVE client secret key file (remote backends with authentication)."""
    server_public_file: str = ""
    """CURVE server public key file."""
    online_access: bool = False
    """Blender's "Allow Online Access"; required for any non-loopback address."""
    log_file: str = ""
    """Where the local backend's output is appended ("" = not kept)."""
    clip_checkpoint: str = ""
    """CLIP weights file handed to the local backend ("" = its download cache)."""
    ray_address: str = ""
    """Ray cluster the local backend runs its jobs on ("" = none, ``local``, or an address)."""
    ray_workers: int = 2
    """Jobs the local backend runs at once on Ray."""
    ray_gpus_per_worker: float = 0.0
    """GPUs each Ray worker gets (0 = CPU only)."""
    unresponsive_s: float = 30.0
    """A local backend whose process runs but that has not answered for this long is restarted."""
    supervisor: dict[str, Any] = field(default_factory=dict, compare=True, hash=False)
    """Overrides for ``LocalBackendConfig`` (timeouts, restart limits)."""


@dataclass
class LinkStatus:
    state: str
    """``stopped`` | ``starting`` | ``connected`` | ``busy`` | ``unreachable`` | ``failed``."""
    text: str
    """One line for the status bar of the panel."""
    server: dict[str, Any] | None = None


def host_of(address: str) -> str:
    rest = address.split("://", 1)[-1]
    if rest.startswith("["):
        return rest[: rest.index("]") + 1]
    return rest.rsplit(":", 1)[0]


def check_remote_address(address: str, online_access: bool) -> None:
    if not address.startswith("tcp://") or ":" not in address[len("tcp://"):]:
        raise LinkError(f"backend address {address!r} must look like tcp://host:port")
    if host_of(address) not in LOOPBACK_HOSTS and not online_access:
        raise LinkError(f"connecting to {host_of(address)} needs online access: enable "
                        "Preferences → System → Network → Allow Online Access")


class BackendLink:
    def __init__(self, settings: LinkSettings, tracker: JobTracker, *, launcher: ProcessLauncher | None = None,
                 client_factory: Callable[..., Any] = client.BackendClient, clock=time.monotonic):
        self.tracker = tracker
        self._launcher = launcher
        self._client_factory = client_factory
        self._clock = clock
        self.settings = settings
        self.supervisor: BackendSupervisor | None = None
        self.client: Any = None
        self.generation = 0
        """Of the current client/backend pairing; jobs remember the one they were sent to."""
        self._was_alive = False
        self._problem: str | None = None
        self._silent_since: float | None = None
        self._last_tick: float | None = None
        self._grace_until = 0.0
        """After Blender's main thread was blocked (a render, a big save), nobody pinged the backend;
        its silence until a fresh ping could be answered says nothing about the backend."""

    # ------------------------------------------------------------------------------ configuration
    def configure(self, settings: LinkSettings) -> None:
        """New preferences: drop the old connection (and local backend) if what matters changed."""
        if settings == self.settings:
            return
        self.shutdown()
        self.settings = settings
        self._problem = None

    def _local_config(self) -> LocalBackendConfig:
        s = self.settings
        return LocalBackendConfig(python=s.python, backend_root=Path(s.backend_root), device=s.device,
                                  log_file=Path(s.log_file) if s.log_file else None,
                                  clip_checkpoint=s.clip_checkpoint, ray_address=s.ray_address,
                                  ray_workers=s.ray_workers, ray_gpus_per_worker=s.ray_gpus_per_worker,
                                  **s.supervisor)

    # ------------------------------------------------------------------------------ control
    def ensure_running(self) -> None:
        """Start the local backend or open the remote connection if not done yet.

        Raises ``LinkError``/``SupervisorError`` with a readable reason."""
        self._problem = None
        if self.settings.mode == "local":
            if self.supervisor is None:
                self.supervisor = BackendSupervisor(self._local_config(), self._launcher, self._clock)
            if self.supervisor.state in (BackendState.STOPPED, BackendState.GAVE_UP, BackendState.STOPPING):
                self.supervisor.start()
        elif self.client is None:
            check_remote_address(self.settings.address, self.settings.online_access)
            self._open_client(self.settings.address)

    def _open_client(self, address: str) -> None:
        keys: dict[str, Any] = {}
        s = self.settings
        if s.mode == "remote" and (s.client_secret_file or s.server_public_file):
            for label, path in (("client secret key", s.client_secret_file), ("server public key", s.server_public_file)):
                if not path or not Path(path).is_file():
                    raise LinkError(f"the {label} file {path!r} does not exist; set both key files in the preferences")
            keys = {"client_secret_file": Path(s.client_secret_file), "server_public_file": Path(s.server_public_file)}
        self._close_client()
        try:
            self.client = self._client_factory(address, **keys)
        except ValueError as exc:  # bad key files are reported by the client as ValueError
            raise LinkError(f"cannot connect to {address}: {exc}") from None
        self.generation += 1
        self._was_alive = False
        self._silent_since = None

    def _close_client(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def submit(self, job: JobRecord) -> list[JobEvent]:
        """Start the backend if needed; the job is sent by ``tick`` once the backend answers."""
        try:
            self.ensure_running()
        except (LinkError, SupervisorError) as exc:
            self._problem = str(exc)
            return self.tracker.fail(job, "BACKEND_UNAVAILABLE", str(exc))
        return []

    def cancel(self, job_id: str) -> None:
        if self.tracker.cancel(job_id) and self.client is not None:
            self.client.cancel(job_id)

    def cancel_batch(self, batch_id: str) -> None:
        for job_id in self.tracker.cancel_batch(batch_id):
            if self.client is not None:
                self.client.cancel(job_id)

    def restart(self) -> list[JobEvent]:
        """User asked to (re)start: a local backend starts over with a fresh restart budget.

        Raises ``LinkError``/``SupervisorError``; returns the events of jobs the old backend ran."""
        events: list[JobEvent] = []
        if self.settings.mode == "local" and self.supervisor is not None and self.supervisor.state not in (
                BackendState.STOPPED, BackendState.GAVE_UP):
            events = self.stop(fail_waiting=False)
        self.ensure_running()
        return events

    def stop(self, fail_waiting: bool = True) -> list[JobEvent]:
        """Stop the local backend (or close the remote connection); its jobs end as failed."""
        what = "the backend was stopped" if self.settings.mode == "local" else "disconnected from the backend"
        events = self.tracker.fail_generation(self.generation, "BACKEND_STOPPED", what)
        if fail_waiting:
            for job in self.tracker.waiting():
                events += self.tracker.fail(job, "BACKEND_STOPPED", f"{what} before the job was sent")
        if self.supervisor is not None and self.supervisor.state != BackendState.STOPPED:
            self.supervisor.stop()
        self._close_client()
        return events

    def shutdown(self) -> None:
        """Blender quits or the add-on is disabled: stop the local backend and wait for it."""
        self._close_client()
        if self.supervisor is not None:
            self.supervisor.stop(wait_s=self.supervisor.config.stop_timeout_s)
            self.supervisor = None

    # ------------------------------------------------------------------------------ ticking
    def tick(self) -> list[JobEvent]:
        events: list[JobEvent] = []
        now = self._clock()
        if self._last_tick is not None and now - self._last_tick > TICK_GAP_S and self.client is not None:
            self._grace_until = now + self.client.server_timeout_s
            self._silent_since = None
        self._last_tick = now
        if self.supervisor is not None:
            events += self._tick_supervisor()
        if self.client is None:
            return events
        for message in self.client.poll(0):
            events += self.tracker.handle(message)
        events += self._check_health()
        if self._was_alive:
            events += self._send_waiting()
        return _coalesce_previews(events)

    def _tick_supervisor(self) -> list[JobEvent]:
        events: list[JobEvent] = []
        for event in self.supervisor.tick():
            if event.kind == "ready":
                self._open_client(event.address)
            elif event.kind == "died":
                self._close_client()
                events += self.tracker.fail_generation(
                    self.generation, "BACKEND_DIED", f"{event.text.splitlines()[0]} (retry the job)")
                delay = max(0.0, (self.supervisor.next_start or self._clock()) - self._clock())
                if self.supervisor.state == BackendState.BACKOFF:
                    events.append(JobEvent("report", level="ERROR",
                                           text=f"Backend stopped: {event.text}. Restarting in {delay:.0f} s"))
            elif event.kind == "gave_up":
                events.append(JobEvent("report", level="ERROR", text=f"Backend: {event.text}"))
                for job in self.tracker.waiting():
                    events += self.tracker.fail(job, "BACKEND_UNAVAILABLE", event.text)
        return events

    def _check_health(self) -> list[JobEvent]:
        events: list[JobEvent] = []
        health = self.client.health()
        now = self._clock()
        if health.alive:
            server = health.info or {}
            if server.get("protocol") not in (None, protocol.PROTOCOL_VERSION):
                self._problem = (f"the backend speaks protocol {server.get('protocol')}, this add-on "
                                 f"{protocol.PROTOCOL_VERSION}: install matching versions")
            if not self._was_alive and self.generation_has_jobs():
                # Back after a silence: anything sent while we were cut off may have been lost, so ask
                # for each job's state and for its final message again.
                for job in self.tracker.in_flight():
                    self.client.status(job.id, resend=True)
            self._was_alive = True
            self._silent_since = None
            return events
        if now < self._grace_until:
            return events
        if self._was_alive or health.problem:
            self._silent_since = self._silent_since or now
            self._was_alive = False
        local_ready = self.supervisor is not None and self.supervisor.state == BackendState.READY
        if local_ready and self._silent_since is not None and now - self._silent_since > self.settings.unresponsive_s:
            self._silent_since = None
            for event in self.supervisor.restart_unresponsive(
                    f"the backend stopped answering for {self.settings.unresponsive_s:g} s"):
                if event.kind == "died":
                    self._close_client()
                    events += self.tracker.fail_generation(self.generation, "BACKEND_DIED", event.text)
        return events

    def generation_has_jobs(self) -> bool:
        return any(job.generation == self.generation for job in self.tracker.in_flight())

    def _send_waiting(self) -> list[JobEvent]:
        events: list[JobEvent] = []
        room = self._sent_limit() - len(self.tracker.in_flight())
        for job in self.tracker.waiting()[:max(0, room)]:
            try:
                self.client.send(job.spec.message(job.id))
            except protocol.ProtocolError as exc:
                events += self.tracker.fail(job, exc.code.value, exc.message)
                continue
            except client.BackendUnavailable:
                break  # the connection takes no more for now: the rest stay waiting for the next tick
            self.tracker.mark_sent(job, self.generation)
        return events

    def _sent_limit(self) -> int:
        """Jobs that may be at the backend at once: MAX_SENT_JOBS, plus one running on each further
        Ray worker (16 would leave most of 64 workers idle; the backend's limit per client counts
        only waiting jobs)."""
        ray = (self.client.health().info or {}).get("ray")
        workers = ray.get("workers") if isinstance(ray, dict) else None
        return MAX_SENT_JOBS + (workers - 1 if isinstance(workers, int) and workers > 1 else 0)

    # ------------------------------------------------------------------------------ status
    def server_info(self) -> dict[str, Any] | None:
        if self.client is None:
            return None
        return self.client.health().info

    def status(self) -> LinkStatus:
        sup = self.supervisor
        if self.settings.mode == "local":
            if sup is None or sup.state == BackendState.STOPPED:
                return LinkStatus("stopped", self._problem or "not running (starts with the first job)")
            if sup.state == BackendState.STOPPING:
                return LinkStatus("stopped", "stopping…")
            if sup.state == BackendState.CHECKING:
                return LinkStatus("starting", "checking the backend Python…")
            if sup.state == BackendState.STARTING:
                return LinkStatus("starting", "starting the local backend…")
            if sup.state == BackendState.BACKOFF:
                wait = max(0.0, (sup.next_start or 0) - self._clock())
                return LinkStatus("starting", f"restarting in {wait:.0f} s — {(sup.problem or '').splitlines()[0]}")
            if sup.state == BackendState.GAVE_UP:
                return LinkStatus("failed", f"not running — {sup.problem}")
        elif self.client is None:
            return LinkStatus("stopped", self._problem or f"not connected (connects to {self.settings.address} "
                                                          "with the first job)")
        if self.client is None:
            return LinkStatus("starting", "connecting…")
        health = self.client.health()
        if self._problem:
            return LinkStatus("failed", self._problem, health.info)
        if not health.alive and self._clock() < self._grace_until:
            return LinkStatus("starting", "checking the connection…", health.info)
        if not health.alive:
            return LinkStatus("unreachable" if health.problem else "starting",
                              f"not reachable ({health.problem})" if health.problem else "connecting…", health.info)
        info = health.info or {}
        where = ", ".join(info.get("devices", [])) or "?"
        version = info.get("version", "?")
        note = "" if version == BACKEND_VERSION else f" (add-on {BACKEND_VERSION})"
        if info.get("busy"):
            running, queued = _count(info.get("running", 0)), info.get("queued", 0)
            return LinkStatus("busy", f"busy: {running} running, {queued} queued · {where} · v{version}{note}", info)
        return LinkStatus("connected", f"connected · {where} · v{version}{note}", info)


def _count(running: Any) -> int:
    """A remote backend of an older release lists the running jobs' ids; newer ones send their number."""
    return running if isinstance(running, int) else len(running)


def _coalesce_previews(events: list[JobEvent]) -> list[JobEvent]:
    """Several previews of one job in one tick: only the newest is worth building."""
    last = {id(e.job): i for i, e in enumerate(events) if e.kind == "preview"}
    return [e for i, e in enumerate(events) if e.kind != "preview" or last[id(e.job)] == i]
