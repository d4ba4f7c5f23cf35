"""Install Backend: the backend's Python environment made from inside Blender, without a terminal.

The environment is a venv in the extension's user folder, made from a Python 3.11 found on the
machine (Blender's own first), with the pinned packages of ``backend/requirements.txt``. Downloads
go to a wheel folder next to it and are kept, so an interrupted install resumes where it stopped
and Repair rebuilds the environment without downloading again. Every step is a child process (or,
for deleting folders, a thread) polled from the add-on's timer: nothing here blocks or touches bpy.

Steps: find a Python → detect an NVIDIA GPU → make the venv → download → install (offline, from the
wheel folder) → verify with the same pre-flight check the supervisor runs before every start.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import preflight
from .supervisor import LocalBackendConfig, ProcessHandle, ProcessLauncher, SubprocessLauncher, SupervisorError

MARKER = "stepstone-backend.json"
"""Written into the environment when an install has been verified; its absence means unfinished."""
PYTORCH_INDEX = "https://download.pytorch.org/whl"
PYPI = "https://pypi.org/simple"
PYTHON_PROBE = "import sys, venv, ensurepip; print('STEPSTONE PYTHON %d.%d' % sys.version_info[:2])"
WANTED_PYTHON = "3.11"
RAW_PROGRESS_PIP = "24.1"


class InstallError(RuntimeError):
    """The install cannot start as configured (no Python 3.11 found, no folder to install into)."""


def env_python(env_dir: Path, platform: str = sys.platform) -> Path:
    return env_dir / ("Scripts/python.exe" if platform == "win32" else "bin/python")


def installed_python(env_dir: Path | None, platform: str = sys.platform) -> str:
    """The installed environment's interpreter, once an install has been verified; "" otherwise."""
    if env_dir is None or not (env_dir / MARKER).is_file():
        return ""
    python = env_python(env_dir, platform)
    return str(python) if python.is_file() else ""


def install_record(env_dir: Path | None) -> dict | None:
    try:
        return json.loads((env_dir / MARKER).read_text(encoding="utf-8")) if env_dir else None
    except (OSError, ValueError):
        return None


def requirements_digest(requirements: Path) -> str:
    """What an install record keeps of the pins it installed (a newer Stepstone's differ)."""
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def torch_index_args(platform: str, variant: str) -> list[str]:
    """Where PyTorch comes from. PyPI's Linux wheels are CUDA builds (several GB of NVIDIA
    libraries), so a Linux machine without an NVIDIA GPU takes the much smaller CPU build from
    PyTorch's own index; PyPI's Windows wheels are CPU builds, so an NVIDIA GPU on Windows needs
    PyTorch's CUDA index. Everything else comes from PyPI either way."""
    if platform.startswith("linux") and variant == "cpu":
        return ["--index-url", f"{PYTORCH_INDEX}/cpu", "--extra-index-url", PYPI]
    if platform == "win32" and variant == "cuda":
        return ["--index-url", f"{PYTORCH_INDEX}/cu130", "--extra-index-url", PYPI]
    return []


@dataclass(frozen=True)
class InstallPlan:
    env_dir: Path
    """The venv made here (the extension's user folder ``backend-env``)."""
    wheel_dir: Path
    """Downloads, kept between attempts (resume) and for Repair."""
    requirements: Path
    """The pins: ``backend/requirements.txt`` of the installed extension."""
    backend_root: Path
    """Folder holding the bundled ``backend`` package (for the verifying pre-flight check)."""
    base_pythons: tuple[str, ...]
    """Interpreters to make the venv from, best first; the first Python 3.11 with venv wins."""
    log_file: Path | None = None
    torch: str = "auto"
    """``auto`` (CUDA build when an NVIDIA GPU is found), ``cpu`` or ``cuda``."""
    wheel_source: Path | None = None
    """A folder of wheels to install from instead of the internet (offline machines, tests)."""
    gpu_probe: tuple[str, ...] | None = ("nvidia-smi", "--query-gpu=name", "--format=csv,noheader")
    platform: str = sys.platform
    repair: bool = False
    """Delete the environment first and make it again (downloads are kept)."""

    @property
    def python(self) -> Path:
        return env_python(self.env_dir, self.platform)

    @property
    def needs_network(self) -> bool:
        return self.wheel_source is None


@dataclass
class InstallProgress:
    state: str = "idle"
    """``running`` | ``done`` | ``failed`` | ``cancelled``."""
    step: str = ""
    step_index: int = 0
    steps: int = 0
    fraction: float = 0.0
    """Of the current download while downloading, of the whole install otherwise."""
    text: str = ""
    """One line: what is happening now (package, sizes), or the outcome with its fix."""
    package: str = ""
    file_done: int = 0
    file_total: int = 0
    files: int = 0
    bytes_saved: int = 0
    torch: str = ""
    started: float = 0.0


_COLLECTING = re.compile(r"^\s*Collecting (\S+)")
_DOWNLOADING = re.compile(r"^\s*Downloading (\S+) \(([\d.]+) (kB|MB|GB|bytes)\)")
_RAW = re.compile(r"^Progress (\d+) of (\d+)")
_SAVED = re.compile(r"^\s*(?:Saved|File was already downloaded) (\S+)")
_INSTALLING = re.compile(r"^\s*Installing collected packages: (.+)")
_UNITS = {"bytes": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
STEP_WEIGHTS = {"python": 0.01, "clear": 0.03, "gpu": 0.01, "venv": 0.04, "pip": 0.01, "download": 0.7, "install": 0.18,
                "verify": 0.02}
STEP_LABELS = {"python": "Finding Python 3.11", "clear": "Removing the old environment", "gpu": "Looking for an NVIDIA GPU",
               "venv": "Making the environment", "pip": "Updating pip", "download": "Downloading", "install": "Installing",
               "verify": "Checking the environment"}


def megabytes(count: float) -> str:
    return f"{count / 1e6:,.0f} MB" if count >= 1e6 else f"{count / 1e3:,.0f} kB"


class _ThreadTask:
    """A folder deletion off Blender's thread; ``poll`` like a process handle."""

    def __init__(self, target, *args):
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, args=(target, *args), daemon=True,
                                        name="stepstone-install")
        self._thread.start()

    def _run(self, target, *args) -> None:
        try:
            target(*args)
        except OSError as exc:
            self.error = f"{exc.strerror or exc}: {exc.filename or ''}".strip(": ")

    def poll(self) -> int | None:
        return None if self._thread.is_alive() else (1 if self.error else 0)


def _remove(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


class BackendInstaller:
    """One install (or repair) run; ``tick()`` from the timer until ``progress.state`` is final."""

    def __init__(self, plan: InstallPlan, launcher: ProcessLauncher | None = None, clock=time.monotonic):
        self.plan = plan
        self._launcher = launcher or SubprocessLauncher()
        self._clock = clock
        self.progress = InstallProgress(state="running", started=clock(), torch=plan.torch)
        self._base_python = ""
        self._raw_progress = True
        """pip prints byte progress of downloads (``--progress-bar raw``, pip 24.1 and newer)."""
        self._candidates = [p for p in dict.fromkeys(plan.base_pythons) if p]
        self._steps = self._plan_steps()
        self._planned = tuple(self._steps)
        self.progress.steps = len(self._steps)
        self._handle: ProcessHandle | None = None
        self._task: _ThreadTask | None = None
        self._lines: list[str] = []
        # Until this run is verified the environment is not one the supervisor may use.
        (plan.env_dir / MARKER).unlink(missing_ok=True)
        self._next_step()

    def _plan_steps(self) -> list[str]:
        steps = ["clear"] if self.plan.repair else []
        if self.plan.repair or not self._env_works():
            steps += ["python", "venv"]
        steps.append("pip")
        if self.plan.torch == "auto" and self.plan.gpu_probe and not self.plan.platform == "darwin":
            steps.append("gpu")
        return steps + ["download", "install", "verify"]

    def _env_works(self) -> bool:
        # A venv left by a cancelled or failed attempt is reused when its interpreter exists; a
        # broken one fails at "download" and Repair makes it again.
        return self.plan.python.is_file()

    @property
    def final(self) -> bool:
        return self.progress.state in ("done", "failed", "cancelled")

    # ------------------------------------------------------------------------------ control
    def cancel(self) -> None:
        if self.final:
            return
        if self._handle is not None:
            self._handle.kill()
        self._finish("cancelled", "Install cancelled; press Install Backend to resume "
                                  "(what was downloaded is kept)")

    def tick(self) -> None:
        if self.final:
            return
        if self._task is not None:
            code = self._task.poll()
            if code is None:
                return
            error, self._task = self._task.error, None
            if code:
                return self._fail(f"could not remove {self.plan.env_dir}: {error}")
            return self._next_step()
        if self._handle is None:
            return
        for line in self._handle.read_lines():
            self._lines.append(line)
            self._parse(line)
        code = self._handle.poll()
        if code is None:
            return
        self._lines += self._handle.read_lines()
        self._step_finished(code)

    # ------------------------------------------------------------------------------ steps
    def _next_step(self) -> None:
        if not self._steps:
            return self._succeed()
        step = self._steps.pop(0)
        p = self.progress
        p.step, p.step_index = step, p.step_index + 1
        p.fraction = self._overall(step)
        p.text = f"{STEP_LABELS[step]}…"
        self._lines = []
        plan = self.plan
        if step == "clear":
            self._task = _ThreadTask(_remove, plan.env_dir)
        elif step == "python":
            self._try_next_python()
        elif step == "gpu":
            self._run(list(plan.gpu_probe))
        elif step == "venv":
            self._run([self._base_python, "-m", "venv", "--clear", str(plan.env_dir)])
        elif step == "pip":
            self._run([str(plan.python), "-m", "pip", "install", "--disable-pip-version-check", "--upgrade",
                       f"pip>={RAW_PROGRESS_PIP}", *self._source_args()])
        elif step == "download":
            plan.wheel_dir.mkdir(parents=True, exist_ok=True)
            self._run([str(plan.python), "-m", "pip", "download", "--disable-pip-version-check",
                       "--progress-bar", "raw" if self._raw_progress else "off", "-r", str(plan.requirements),
                       "--dest", str(plan.wheel_dir), *self._source_args()])
        elif step == "install":
            self._run([str(plan.python), "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
                       "--find-links", str(plan.wheel_dir), "-r", str(plan.requirements)])
        elif step == "verify":
            self._run([*preflight.argv(str(plan.python)), "--requirements", str(plan.requirements)])

    def _source_args(self) -> list[str]:
        plan = self.plan
        if plan.wheel_source is not None:
            return ["--no-index", "--find-links", str(plan.wheel_source), "--find-links", str(plan.wheel_dir)]
        variant = self.progress.torch if self.progress.torch in ("cpu", "cuda") else "cpu"
        return ["--find-links", str(plan.wheel_dir), *torch_index_args(plan.platform, variant)]

    def _try_next_python(self) -> None:
        if not self._candidates:
            return self._fail(f"no Python {WANTED_PYTHON} with venv was found (tried Blender's own and "
                              f"python3.11 on the PATH): install Python {WANTED_PYTHON} from python.org, "
                              "then press Install Backend again")
        self._base_python = self._candidates.pop(0)
        self._run([self._base_python, "-c", PYTHON_PROBE])

    def _run(self, argv: list[str]) -> None:
        config = LocalBackendConfig(python=argv[0], backend_root=self.plan.backend_root)
        try:
            self._handle = self._launcher.launch(argv, self.plan.backend_root, config.env(),
                                                 log_file=self.plan.log_file)
        except SupervisorError as exc:
            self._handle = None
            if self.progress.step == "python":
                return self._try_next_python()
            if self.progress.step == "gpu":
                return self._gpu_found(False)
            self._fail(str(exc))

    def _step_finished(self, code: int) -> None:
        step, handle, self._handle = self.progress.step, self._handle, None
        if step == "python":
            if code == 0 and f"STEPSTONE PYTHON {WANTED_PYTHON}" in self._lines:
                return self._next_step()
            return self._try_next_python()
        if step == "gpu":
            return self._gpu_found(code == 0 and any(line.strip() for line in self._lines))
        if step == "pip":
            # The pip a new venv gets (ensurepip) may predate byte progress; installing still works.
            self._raw_progress = code == 0
            return self._next_step()
        if step == "verify":
            # Before the exit-code test below: a failed check exits 1, and its report says why.
            _, problem = preflight.verdict(self._lines, str(self.plan.python), code, handle.output_tail())
            if problem:
                return self._fail(f"the new environment does not pass the pre-flight check: {problem}")
            return self._next_step()
        if code != 0:
            return self._fail(self._pip_error(handle.output_tail()) or f"{STEP_LABELS[step]} failed (exit code {code})")
        self._next_step()

    def _gpu_found(self, found: bool) -> None:
        self.progress.torch = "cuda" if found else "cpu"
        self._next_step()

    def _pip_error(self, tail: str) -> str:
        lines = [line.strip() for line in (self._lines + tail.splitlines()) if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR:")]
        return (errors[-1] if errors else lines[-1] if lines else "").removeprefix("ERROR: ")

    # ------------------------------------------------------------------------------ progress
    def _overall(self, step: str) -> float:
        """Share of the whole install done before ``step`` starts."""
        before = self._planned[:self._planned.index(step)]
        return sum(STEP_WEIGHTS[name] for name in before) / sum(STEP_WEIGHTS[name] for name in self._planned)

    def _parse(self, line: str) -> None:
        p = self.progress
        if p.step == "download":
            if m := _COLLECTING.match(line):
                p.package = m.group(1)
            elif m := _DOWNLOADING.match(line):
                p.package = m.group(1).rsplit("/", 1)[-1]
                p.file_total, p.file_done = int(float(m.group(2)) * _UNITS[m.group(3)]), 0
            elif m := _RAW.match(line):
                p.file_done, total = int(m.group(1)), int(m.group(2))
                p.file_total = total or p.file_total
            elif m := _SAVED.match(line):
                p.files += 1
                try:
                    p.bytes_saved += Path(m.group(1)).stat().st_size
                except OSError:
                    pass
                p.file_done = p.file_total
            p.fraction = p.file_done / p.file_total if p.file_total else 0.0
            size = f": {megabytes(p.file_done)} of {megabytes(p.file_total)}" if p.file_total else ""
            p.text = (f"Downloading {p.package or '…'}{size} · {p.files} files, "
                      f"{megabytes(p.bytes_saved)} ready")
        elif p.step == "install" and (m := _INSTALLING.match(line)):
            names = [name.strip() for name in m.group(1).split(",")]
            p.package = names[-1]
            p.text = f"Installing {len(names)} packages ({', '.join(names[:3])}{'…' if len(names) > 3 else ''})"

    # ------------------------------------------------------------------------------ outcome
    def _succeed(self) -> None:
        plan = self.plan
        record = {"requirements_sha256": requirements_digest(plan.requirements),
                  "torch": self.progress.torch, "python": str(plan.python),
                  "base_python": self._base_python or None, "seconds": round(self._clock() - self.progress.started, 1),
                  "downloaded_bytes": self.progress.bytes_saved, "installed_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        (plan.env_dir / MARKER).write_text(json.dumps(record, indent=1), encoding="utf-8")
        self._finish("done", f"Backend installed in {record['seconds']:.0f} s (PyTorch: {self.progress.torch or 'cpu'}) "
                             f"at {plan.env_dir}")

    def _fail(self, why: str) -> None:
        where = f"; full log: {self.plan.log_file}" if self.plan.log_file else ""
        self._finish("failed", f"Install failed at '{STEP_LABELS.get(self.progress.step, self.progress.step)}': "
                               f"{why}{where}. Press Install Backend to resume")

    def _finish(self, state: str, text: str) -> None:
        self.progress.state, self.progress.text = state, text
        if state == "done":
            self.progress.fraction = 1.0


class BackendRemoval:
    """Remove: the environment and the kept downloads, deleted off Blender's thread."""

    def __init__(self, plan: InstallPlan):
        self.plan = plan
        self._task = _ThreadTask(lambda: (_remove(plan.env_dir), _remove(plan.wheel_dir)))
        self.progress = InstallProgress(state="running", step="remove", text=f"Removing {plan.env_dir}…")

    @property
    def final(self) -> bool:
        return self.progress.state != "running"

    def cancel(self) -> None:
        """A deletion half done is not undone; it runs to its end."""

    def tick(self) -> None:
        if self.final or self._task.poll() is None:
            return
        if self._task.error:
            self.progress.state, self.progress.text = "failed", f"Remove failed: {self._task.error}"
        else:
            self.progress.state, self.progress.text = "done", "Backend environment and downloads removed"
