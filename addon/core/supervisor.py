"""Starting, watching and restarting the local backend process, without ever blocking Blender.

The supervisor is a state machine advanced by ``tick(now)`` from the add-on's timer. The operating
system process sits behind ``ProcessLauncher``/``ProcessHandle`` so the logic (start timeout,
restart with back-off up to a limit, giving up with a reason) is tested with a fake process.
Reading the child's output happens on small reader threads that only fill queues; they never
touch bpy.
"""

from __future__ import annotations

import collections
import os
import queue
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

from . import preflight

READY_PREFIX = "STEPSTONE READY "


class SupervisorError(RuntimeError):
    """The backend cannot be started as configured (no interpreter, no backend source)."""


class ProcessHandle(Protocol):
    pid: int

    def poll(self) -> int | None:
        """Exit code, or None while running (or while its last output is still being read)."""

    def read_lines(self) -> list[str]:
        """Lines the process printed on stdout since the last call (never blocks)."""

    def output_tail(self) -> str:
        """The last lines of its stderr (and stdout), for error reports."""

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class ProcessLauncher(Protocol):
    def launch(self, argv: list[str], cwd: Path, env: dict[str, str],
               log_file: Path | None = None) -> ProcessHandle: ...


# ------------------------------------------------------------------------------------ real processes
class SubprocessHandle:
    """A child process whose stdout/stderr are drained by two daemon threads (and appended to a log)."""

    def __init__(self, process: subprocess.Popen, tail_lines: int = 40, log=None):
        self._process = process
        self.pid = process.pid
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._log = log
        self._log_lock = threading.Lock()
        self._open_streams = 2
        self._readers = [threading.Thread(target=self._drain, args=(stream, to_queue), daemon=True,
                                          name=f"stepstone-backend-{self.pid}-{'out' if to_queue else 'err'}")
                         for stream, to_queue in ((process.stdout, True), (process.stderr, False))]
        for reader in self._readers:
            reader.start()

    def _drain(self, stream, to_queue: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._tail.append(line)
            if to_queue:
                self._lines.put(line)
            if self._log is not None:
                with self._log_lock:
                    self._log.write(line + "\n")
                    self._log.flush()
        stream.close()
        with self._log_lock:
            self._open_streams -= 1
            if self._open_streams == 0 and self._log is not None:
                self._log.close()

    def poll(self) -> int | None:
        code = self._process.poll()
        if code is not None and any(reader.is_alive() for reader in self._readers):
            return None  # exited, but its last lines are still being read: report it on a later tick
        if code is not None and self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()
        return code

    def read_lines(self) -> list[str]:
        lines = []
        while True:
            try:
                lines.append(self._lines.get_nowait())
            except queue.Empty:
                return lines

    def output_tail(self) -> str:
        return "\n".join(self._tail)

    def terminate(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()

    def wait(self, timeout: float) -> int | None:
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


class SubprocessLauncher:
    def launch(self, argv: list[str], cwd: Path, env: dict[str, str],
               log_file: Path | None = None) -> SubprocessHandle:
        flags = subprocess.CREATE_NO_WINDOW if sys.platform == "win32" else 0
        try:
            # stdin stays open for the child's lifetime: it reads EOF when Blender goes away, even
            # after a crash, so a backend may watch it to exit with its parent.
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, creationflags=flags)
        except OSError as exc:
            raise SupervisorError(f"could not run {argv[0]!r}: {exc.strerror or exc}") from None
        log = None
        if log_file is not None:
            try:
                Path(log_file).parent.mkdir(parents=True, exist_ok=True)
                log = open(log_file, "a", encoding="utf-8")
                log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {process.pid}: {' '.join(argv)}\n")
            except OSError:
                log = None  # a log that cannot be written must not stop the backend
        return SubprocessHandle(process, log=log)


# ------------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class LocalBackendConfig:
    """How the add-on runs the backend on this machine."""

    python: str
    """The backend environment's interpreter (it needs torch etc.; Blender's own Python does not)."""
    backend_root: Path
    """Folder holding the ``backend`` package: the extension root (or the repository)."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda``."""
    start_timeout_s: float = 120.0
    """Importing torch and building pipelines can take a while on a cold disk."""
    max_restarts: int = 3
    """Restarts after unexpected exits before giving up (until the user starts it again)."""
    backoff_s: float = 1.0
    """Wait before the first restart; doubled for each further one."""
    max_backoff_s: float = 30.0
    stable_after_s: float = 120.0
    """A backend that ran this long without dying resets the restart count."""
    stop_timeout_s: float = 3.0
    """How long a stopping backend may take before it is killed."""
    log_file: Path | None = None
    """The backend's output is appended here (under the extension's user folder in Blender)."""
    clip_checkpoint: str = ""
    """CLIP weights file for the open-vocabulary text path (``STEPSTONE_CLIP_CHECKPOINT``); "" = the
    backend looks in its download cache."""
    preflight: bool = True
    """Check the interpreter against backend/requirements.txt before its first start."""
    preflight_timeout_s: float = 30.0
    ray_address: str = ""
    """Run jobs on a Ray cluster (``backend serve --ray``): "" = no (one job at a time, in a child
    process), ``local`` = a cluster started on this machine, else a cluster's address
    (``ray://head:10001``, ``head:6379``, ``auto``). Needs Ray in the backend environment."""
    ray_workers: int = 2
    """Jobs that run at once on the cluster (``--workers``)."""
    ray_gpus_per_worker: float = 0.0
    """GPUs Ray grants each worker (``--gpus-per-worker``); fractions share a GPU, 0 = CPU only.
    On Ray this decides the device (CUDA above 0), not ``device``."""

    def argv(self) -> list[str]:
        ray = self.ray_argv()
        # On Ray the workers' device follows --gpus-per-worker; the backend refuses --device with --ray.
        device = [] if ray else ["--device", self.device]
        return [self.python, "-m", "backend", "serve", "--host", "127.0.0.1", "--port", "0", *device,
                "--exit-on-stdin-eof", *ray]

    def ray_argv(self) -> list[str]:
        """The Ray options of ``backend serve``; none when Ray is off, so such a backend starts as before."""
        address = self.ray_address.strip()
        if not address:
            return []
        return ["--ray", address, "--workers", str(self.ray_workers),
                "--gpus-per-worker", f"{self.ray_gpus_per_worker:g}"]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Blender's own Python settings must not leak into the backend's interpreter.
        for name in ("PYTHONHOME", "PYTHONSTARTUP", "PYTHONNOUSERSITE"):
            env.pop(name, None)
        env["PYTHONPATH"] = str(self.backend_root)
        if self.clip_checkpoint:
            env["STEPSTONE_CLIP_CHECKPOINT"] = self.clip_checkpoint
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def check(self) -> None:
        if not self.python:
            raise SupervisorError("there is no backend environment yet: press Install Backend in "
                                  "Preferences → Add-ons → Stepstone")
        if not Path(self.python).is_file():
            raise SupervisorError(f"the backend Python {self.python!r} does not exist; fix it in the "
                                  "Stepstone add-on preferences")
        if not (self.backend_root / "backend" / "__init__.py").is_file():
            raise SupervisorError(f"no backend package in {self.backend_root}; reinstall the extension")


def default_backend_python(root: Path) -> str:
    """The project's own environment next to the backend source, when there is one."""
    for candidate in (root / ".venv" / "bin" / "python", root / ".venv" / "Scripts" / "python.exe"):
        if candidate.is_file():
            return str(candidate)
    return ""


# ------------------------------------------------------------------------------------ state machine
class BackendState(str, Enum):
    STOPPED = "stopped"
    CHECKING = "checking"
    """The pre-flight check of the interpreter runs (before the first start)."""
    STARTING = "starting"
    READY = "ready"
    BACKOFF = "backoff"
    """Died; waiting before the next restart."""
    GAVE_UP = "gave_up"
    STOPPING = "stopping"


@dataclass
class SupervisorEvent:
    kind: str
    """``ready`` (address known), ``died`` (an instance ended unexpectedly), ``gave_up``, ``stopped``."""
    generation: int
    text: str = ""
    address: str | None = None


@dataclass
class _Instance:
    handle: ProcessHandle
    generation: int
    started: float
    address: str | None = None
    stop_deadline: float | None = None
    expected_exit: bool = False
    log: list[str] = field(default_factory=list)


class BackendSupervisor:
    def __init__(self, config: LocalBackendConfig, launcher: ProcessLauncher | None = None,
                 clock=time.monotonic):
        self.config = config
        self._launcher = launcher or SubprocessLauncher()
        self._clock = clock
        self.state = BackendState.STOPPED
        self.generation = 0
        self.restarts = 0
        self.problem: str | None = None
        """Why the backend is not running (last exit, start failure), for the status line."""
        self.next_start: float | None = None
        self._instance: _Instance | None = None
        self._check: _Instance | None = None
        self._checked_python: str | None = None
        """The interpreter that passed the pre-flight check; restarts after a crash skip it."""
        self._events: list[SupervisorEvent] = []
        """Events that happened outside ``tick`` (a check answered at once), for the next tick."""

    # ------------------------------------------------------------------------------ control
    @property
    def address(self) -> str | None:
        return self._instance.address if self._instance and self.state == BackendState.READY else None

    @property
    def pid(self) -> int | None:
        return self._instance.handle.pid if self._instance else None

    def start(self) -> None:
        """Start now (also after giving up: a user's explicit start resets the restart count)."""
        if self.state in (BackendState.CHECKING, BackendState.STARTING, BackendState.READY):
            return
        if self.state == BackendState.STOPPING and self._instance is not None:
            self._instance.handle.kill()  # a user's start wins over a stop still in progress
            self._instance = None
        if self.state in (BackendState.GAVE_UP, BackendState.STOPPED, BackendState.STOPPING):
            self.restarts = 0
        self._launch()

    def _launch(self) -> None:
        self.config.check()
        self.next_start = None
        if self.config.preflight and self._checked_python != self.config.python:
            handle = self._launcher.launch(preflight.argv(self.config.python), self.config.backend_root,
                                           self.config.env())
            self._check = _Instance(handle, self.generation, self._clock())
            self.state = BackendState.CHECKING
            self._events += self._advance_check()
            return
        self._launch_serve()

    def _launch_serve(self) -> None:
        handle = self._launcher.launch(self.config.argv(), self.config.backend_root, self.config.env(),
                                       log_file=self.config.log_file)
        self.generation += 1
        self._instance = _Instance(handle, self.generation, self._clock())
        self.state = BackendState.STARTING

    def _advance_check(self) -> list[SupervisorEvent]:
        check, python = self._check, self.config.python
        if check is None:
            return []
        check.log += check.handle.read_lines()
        code = check.handle.poll()
        if code is None:
            if self._clock() - check.started <= self.config.preflight_timeout_s:
                return []
            check.handle.kill()
            problem = (f"the backend Python {python} did not answer the pre-flight check within "
                       f"{self.config.preflight_timeout_s:g} s: {preflight.FIX}")
        else:
            check.log += check.handle.read_lines()
            _, problem = preflight.verdict(check.log, python, code, check.handle.output_tail())
        self._check = None
        if problem is None:
            self._checked_python = python
            self._launch_serve()
            return []
        self.state, self.problem = BackendState.GAVE_UP, problem
        return [SupervisorEvent("gave_up", self.generation, problem)]

    def stop(self, wait_s: float = 0.0) -> None:
        """Ask the backend to exit; it is killed if it has not after ``stop_timeout_s``.

        With ``wait_s`` > 0 (unregister, quit) this waits for it, then kills it."""
        instance = self._instance
        self.next_start = None
        if self._check is not None:
            self._check.handle.kill()
            self._check = None
        if instance is None:
            self.state = BackendState.STOPPED
            return
        instance.expected_exit = True
        instance.handle.terminate()
        instance.stop_deadline = self._clock() + self.config.stop_timeout_s
        self.state = BackendState.STOPPING
        if wait_s > 0:
            end = time.monotonic() + wait_s
            while instance.handle.poll() is None and time.monotonic() < end:
                time.sleep(0.02)
            if instance.handle.poll() is None:
                instance.handle.kill()
            self._instance = None
            self.state = BackendState.STOPPED

    def restart_unresponsive(self, why: str) -> list[SupervisorEvent]:
        """The process runs but does not answer: kill it and go through the normal restart path."""
        instance = self._instance
        if instance is None or self.state != BackendState.READY:
            return []
        instance.handle.kill()
        return self._died(instance, why)

    # ------------------------------------------------------------------------------ ticking
    def tick(self) -> list[SupervisorEvent]:
        events, self._events = self._events + self._advance_check(), []
        now = self._clock()
        instance = self._instance
        if self.state == BackendState.BACKOFF and self.next_start is not None and now >= self.next_start:
            try:
                self._launch()
            except SupervisorError as exc:
                self.state, self.problem = BackendState.GAVE_UP, str(exc)
                return events + [SupervisorEvent("gave_up", self.generation, str(exc))]
            events, self._events = events + self._events, []
            return events
        if instance is None:
            return events
        if self.state == BackendState.STOPPING:
            if instance.handle.poll() is not None:
                self._instance = None
                self.state = BackendState.STOPPED
                return events + [SupervisorEvent("stopped", instance.generation, "stopped")]
            if instance.stop_deadline is not None and now > instance.stop_deadline:
                instance.handle.kill()
            return events
        for line in instance.handle.read_lines():
            instance.log.append(line)
            if line.startswith(READY_PREFIX) and instance.address is None:
                instance.address = line[len(READY_PREFIX):].strip()
                self.state = BackendState.READY
                self.problem = None
                events.append(SupervisorEvent("ready", instance.generation, address=instance.address))
        code = instance.handle.poll()
        if code is not None:
            return events + self._died(instance, _exit_text(code, instance.handle.output_tail()))
        if self.state == BackendState.STARTING and now - instance.started > self.config.start_timeout_s:
            instance.handle.kill()
            return events + self._died(instance, f"the backend did not start within {self.config.start_timeout_s:g} s"
                                       + _tail_text(instance.handle.output_tail()))
        if self.state == BackendState.READY and self.restarts and now - instance.started > self.config.stable_after_s:
            self.restarts = 0
        return events

    def _died(self, instance: _Instance, why: str) -> list[SupervisorEvent]:
        if self.config.log_file is not None:
            why += f"\nfull log: {self.config.log_file}"
        self._instance = None
        self.problem = why
        events = [SupervisorEvent("died", instance.generation, why)]
        if instance.address is None:
            # It never got as far as listening: a broken environment (no torch, wrong Python) that a
            # restart would only repeat. Say so at once instead of retrying for half a minute.
            self.state = BackendState.GAVE_UP
            self.next_start = None
            self.problem = (_missing_module_text(self.config.python, instance.handle.output_tail())
                            or f"the backend could not start: {why}") + _ray_hint(self.config)
            return events + [SupervisorEvent("gave_up", instance.generation, self.problem)]
        if self.restarts >= self.config.max_restarts:
            self.state = BackendState.GAVE_UP
            self.next_start = None
            text = (f"the backend stopped {self.restarts + 1} times; not restarting it again "
                    f"(press Start Backend to try again). Last problem: {why}")
            self.problem = text
            return events + [SupervisorEvent("gave_up", instance.generation, text)]
        delay = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** self.restarts)
        self.restarts += 1
        self.state = BackendState.BACKOFF
        self.next_start = self._clock() + delay
        return events


_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")


def _missing_module_text(python: str, tail: str) -> str | None:
    """The usual start failure — a Python that is not the backend's environment — in one sentence
    with its fix, instead of the last lines of a traceback (which the died event still carries)."""
    missing = _MISSING_MODULE.findall(tail)
    if not missing:
        return None
    module = missing[-1].split(".")[0]
    return f"the backend Python {python} has no module '{module}': {preflight.FIX}"


def _ray_hint(config: LocalBackendConfig) -> str:
    """A backend on Ray fails to start for reasons of its own (Ray not installed, no cluster at the
    address, a cluster too small): say which setting brought Ray in, and how to run without it."""
    address = config.ray_address.strip()
    if not address:
        return ""
    return (f"\nRay Cluster is {address!r} in the add-on preferences: the backend environment needs Ray "
            "(its scale extra: pip install '.[scale]'); clear Ray Cluster to run without Ray")


def _tail_text(tail: str, lines: int = 6) -> str:
    kept = [line for line in tail.splitlines() if line.strip()][-lines:]
    return (":\n" + "\n".join(kept)) if kept else ""


def _exit_text(code: int, tail: str) -> str:
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    return f"the backend {how}" + _tail_text(tail)
