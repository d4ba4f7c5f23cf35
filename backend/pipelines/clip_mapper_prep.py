"""The CLIP path's first use: its mapper trained in the background, with no dataset.

When CLIP weights are on the machine but no ISS folder holds a mapper for them, the first text
job starts `backend.train.first_use_mapper` in a process of its own (detached, at low priority,
so it outlives a cancelled job, a restarted backend or a one-shot CLI call) and is served by the
offline text model meanwhile, with a warning that says how far the preparation is. Jobs after it
finished take the CLIP path.

Each preparation lives in a folder of its own under the cache (``STEPSTONE_CACHE_DIR``, else
``$XDG_CACHE_HOME/stepstone`` or ``~/.cache/stepstone``), named by what the mapper depends on: the
CLIP model and weights file (path, size, modification time) and the shape model's checkpoint id.
The mapper itself records the CLIP weights' digest, checked when it is loaded. The folder holds
``status.json`` (written by the trainer as it goes), ``train.log`` and, once done, the ISS
folder's files (``mapper.*``, ``shape_model.*``).

This module only reads files and starts a process: it imports neither torch nor training code.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

CACHE_ENV_VAR = "STEPSTONE_CACHE_DIR"
"""Environment variable naming the folder for things Stepstone makes on this machine."""

TRAINER_MODULE = "backend.train.first_use_mapper"
"""Run with ``python -m``; writes the folder's ``status.json`` and, when done, the ISS files."""

HEARTBEAT_S = 15.0
"""The trainer rewrites its status at least this often while it runs."""

STALE_AFTER_S = 120.0
"""A "running" status not rewritten for this long is a run whose process died (killed, or the
machine slept through it): a heartbeat instead of probing the process, which works the same on
every system."""

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """Where Stepstone keeps what it makes on this machine."""
    env = os.environ.get(CACHE_ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "stepstone"


def preparation_dir(clip_model_name: str, clip_weights: Path, shape_model_id: str) -> Path:
    """The folder of the preparation for this CLIP weights file and shape model."""
    stat = clip_weights.stat()
    key = json.dumps([clip_model_name, str(clip_weights.resolve()), stat.st_size, stat.st_mtime_ns, shape_model_id])
    return cache_root() / "clip_mapper" / hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Preparation:
    """What ``status.json`` says, checked against the process it names."""

    state: str
    """``absent`` (never started), ``running``, ``done`` or ``failed``."""
    folder: str
    stage: str = ""
    progress: float = 0.0
    """0..1 over the whole preparation."""
    message: str = ""
    eta_s: float | None = None
    """Seconds left, estimated from the pace so far (None until there is one)."""
    error: str | None = None
    started_at: float | None = None
    updated_at: float | None = None
    pid: int | None = None

    @property
    def log(self) -> Path:
        return Path(self.folder) / "train.log"

    def describe(self) -> str:
        """One line for a warning, the add-on's panel and the CLI."""
        if self.state == "done":
            return "the CLIP text path is ready"
        if self.state == "failed":
            return f"preparing the CLIP text path failed: {self.error} (log: {self.log})"
        if self.state == "absent":
            return "the CLIP text path has not been prepared yet"
        left = f", about {max(1, round(self.eta_s / 60))} min left" if self.eta_s is not None else ""
        return f"the CLIP text path is being prepared in the background ({self.message}: {self.progress:.0%}{left})"

    def as_dict(self) -> dict:
        return {**asdict(self), "describe": self.describe()}


def read_status(folder: Path) -> Preparation:
    """The preparation in ``folder``; a run whose process died without saying so is ``failed``."""
    path = folder / "status.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Preparation("absent", str(folder))
    except (OSError, ValueError) as exc:
        return Preparation("failed", str(folder), error=f"its status file {path} cannot be read: {exc}")
    fields = {k: data[k] for k in Preparation.__dataclass_fields__ if k in data and k != "folder"}
    status = Preparation(folder=str(folder), **fields)
    if status.state == "running" and time.time() - (status.updated_at or 0) > STALE_AFTER_S:
        status.state, status.error = "failed", "its process stopped without finishing"
    return status


def write_status(folder: Path, **fields) -> None:
    """Merge ``fields`` into ``status.json`` atomically (the trainer reports through this)."""
    path = folder / "status.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data.update(fields, updated_at=time.time())
    if data.get("state") == "running" and data.get("started_at") and 0.02 < data.get("progress", 0) < 1:
        elapsed = data["updated_at"] - data["started_at"]
        data["eta_s"] = round(elapsed * (1 - data["progress"]) / data["progress"], 1)
    scratch = path.with_name(f"status.{os.getpid()}.tmp")
    scratch.write_text(json.dumps(data, indent=2))
    scratch.replace(path)


def start(folder: Path, *, clip_model_name: str, clip_pretrained: str | None, clip_weights: Path,
          shape_model: Path, device: str, max_shapes: int | None = None) -> Preparation:
    """Start the trainer for ``folder`` unless a run is going; returns the status. (A "done" run
    whose files have gone is the caller's to judge: it knows which files make a complete one.)"""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / "start.lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        # another job (or process) is starting it this moment, or one crashed between the two files
        if time.time() - lock.stat().st_mtime < 30:
            return read_status(folder)
        lock.unlink(missing_ok=True)
        return start(folder, clip_model_name=clip_model_name, clip_pretrained=clip_pretrained,
                     clip_weights=clip_weights, shape_model=shape_model, device=device, max_shapes=max_shapes)
    try:
        status = read_status(folder)
        if status.state == "running":
            return status
        command = [sys.executable, "-m", TRAINER_MODULE, "--out", str(folder), "--shape-model", str(shape_model),
                   "--clip-model", clip_model_name, "--clip-pretrained", clip_pretrained or "none",
                   "--clip-checkpoint", str(clip_weights), "--device", device]
        command += ["--max-shapes", str(max_shapes)] if max_shapes else []
        write_status(folder, state="running", stage="starting", progress=0.0, message="starting", error=None,
                     eta_s=None, started_at=time.time(), pid=None)
        # its own session / process group: a job's cancel or the backend's exit does not stop it
        detach = ({"start_new_session": True} if os.name == "posix" else
                  {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW})
        try:
            with (folder / "train.log").open("ab") as log:
                process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, **detach)
        except OSError as exc:
            write_status(folder, state="failed", error=f"the trainer could not be started: {exc}")
            raise
        write_status(folder, pid=process.pid)
        return read_status(folder)
    finally:
        os.close(fd)
        lock.unlink(missing_ok=True)


def latest_preparation() -> Preparation | None:
    """The most recently active preparation on this machine (for the server's info), or None."""
    found = []
    for path in (cache_root() / "clip_mapper").glob("*/status.json"):
        status = read_status(path.parent)
        found.append((status.updated_at or 0.0, status))
    return max(found, key=lambda item: item[0])[1] if found else None

