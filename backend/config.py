"""Typed configuration of the backend service; every default works on a laptop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 5555


@dataclass(frozen=True)
class ServiceLimits:
    """Explicit size limits; each one is checked before work starts and answered with a named error."""

    max_message_bytes: int = 256 * 1024 * 1024
    """Total size of one incoming message. Larger ones get TOO_LARGE."""
    hard_message_factor: int = 4
    """ZMQ_MAXMSGSIZE is ``max_message_bytes * hard_message_factor``: beyond it ZeroMQ drops the peer
    without reading the message, so a polite TOO_LARGE reply covers everything up to that point."""
    max_image_pixels: int = 40_000_000
    """Width × height of one input image, checked from the file header before decoding."""
    min_image_side: int = 16
    """Images smaller than this on either side carry too little to reconstruct from."""
    max_images: int = 8
    """Images per reconstruct job."""
    max_prompt_chars: int = 1000
    """Characters of a prompt; CLIP's 77-token limit is checked separately and reported, never truncated."""
    max_mesh_triangles: int = 2_000_000
    """Triangles of a mesh sent for stylization or returned by a pipeline."""
    max_queue: int = 32
    """Jobs waiting to run. Further submits get QUEUE_FULL."""
    max_queued_per_client: int = 24
    """Jobs one client may have waiting, so that no client can take every slot of the queue."""
    max_job_timeout_s: float = 3600.0
    """Upper bound on the per-job deadline a client may ask for."""

    @property
    def zmq_maxmsgsize(self) -> int:
        return self.max_message_bytes * self.hard_message_factor


@dataclass(frozen=True)
class ServerConfig:
    """How ``python -m backend serve`` runs."""

    host: str = "127.0.0.1"
    """Interface to bind. Anything but loopback requires ``auth_dir`` (CURVE keys)."""
    port: int = DEFAULT_PORT
    device: str = "auto"
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present)."""
    auth_dir: Path | None = None
    """Folder made by ``python -m backend keys``; turns on CURVE encryption and client authentication."""
    job_timeout_s: float = 900.0
    """Default per-job deadline; a submit may ask for less (or more, up to the limit)."""
    result_retention_s: float = 3600.0
    """How long finished jobs (and their results) stay fetchable by job id."""
    max_retained_jobs: int = 64
    """Finished jobs kept at most; the oldest are dropped first."""
    client_timeout_s: float = 10.0
    """A client silent for this long is considered gone (its jobs go on; results are kept)."""
    cancel_grace_s: float = 0.5
    """After a cancel or a deadline, how long a pipeline may take to reach its next check point
    before its process is killed (and replaced by a fresh one that rebuilds its pipelines)."""
    allow_remote_without_auth: bool = False
    """Refuse to bind a non-loopback address without CURVE auth unless this is set."""
    limits: ServiceLimits = field(default_factory=ServiceLimits)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
