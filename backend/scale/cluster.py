"""Connecting to a Ray cluster, or starting one on this machine, for the engine's workers."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from backend.errors import UsageError

log = logging.getLogger("stepstone.scale")

LOCAL = "local"
INSTALL_HINT = "Ray is not installed in this environment: install the scale extra (pip install '.[scale]')"


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: ``address`` is ``local`` (a cluster on this machine, started and
    stopped with the command) or an existing cluster's address (``auto``, ``HOST:6379``,
    ``ray://HOST:10001``)."""

    address: str = LOCAL
    workers: int = 1
    """Actors, i.e. jobs that run at once; each keeps its own pipelines warm."""
    cpus_per_worker: float = 1.0
    """CPUs Ray reserves per actor; also the actor's torch thread count (at least 1)."""
    gpus_per_worker: float = 0.0
    """GPUs per actor (fractions share one GPU); above 0 the actor's pipelines run on CUDA."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, not {self.workers}")
        if self.cpus_per_worker <= 0:
            raise UsageError(f"--cpus-per-worker must be above 0, not {self.cpus_per_worker:g}")
        if self.gpus_per_worker < 0:
            raise UsageError(f"--gpus-per-worker cannot be negative ({self.gpus_per_worker:g})")

    @property
    def device(self) -> str:
        """The device an actor's pipelines use: Ray makes the GPUs it grants the only visible ones."""
        return "cuda" if self.gpus_per_worker > 0 else "cpu"

    def worker_names(self) -> list[str]:
        return [f"ray:{index}" for index in range(self.workers)]


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


def connect(options: RayOptions) -> dict:
    """Join (or start) the cluster once per process; returns what ``describe`` says of it.
    Refuses a local cluster too small for the workers asked for, which would wait forever."""
    ray = import_ray()
    if not ray.is_initialized():
        if options.address == LOCAL:
            needed_cpus = options.workers * options.cpus_per_worker
            ray.init(num_cpus=max(os.cpu_count() or 1, int(-(-needed_cpus // 1))), include_dashboard=False,
                     log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": _import_path()}})
        else:
            # Nodes run the backend shipped with this command, so every worker runs the same code;
            # its dependencies must be installed on each node (docs/scale.md).
            try:
                ray.init(address=options.address, log_to_driver=False,
                         runtime_env={"py_modules": [str(Path(__file__).resolve().parents[1])]})
            except ConnectionError as exc:
                raise UsageError(
                    f"cannot reach the Ray cluster at {options.address}: {str(exc).strip().splitlines()[0]}. "
                    "Is it running (`ray status` on the head)? A cluster started with `ray start` uses token "
                    "authentication: set RAY_AUTH_MODE=token here, with the cluster's token in ~/.ray/auth_token "
                    "or RAY_AUTH_TOKEN (docs/scale.md)") from None
    info = describe(options)
    short = []
    if options.gpus_per_worker and info["gpus"] < options.workers * options.gpus_per_worker:
        short.append(f"{options.workers} x {options.gpus_per_worker:g} GPUs (the cluster has {info['gpus']:g})")
    if info["cpus"] < options.workers * options.cpus_per_worker:
        short.append(f"{options.workers} x {options.cpus_per_worker:g} CPUs (the cluster has {info['cpus']:g})")
    if short:
        text = "the Ray cluster is too small for " + " and ".join(short)
        if options.address == LOCAL:
            shutdown()
            raise UsageError(text + "; ask for fewer workers or resources")
        log.warning("%s: workers wait until the cluster grows", text)
    return info


def describe(options: RayOptions) -> dict:
    ray = import_ray()
    resources = ray.cluster_resources()
    return {"address": options.address, "workers": options.workers, "gpus_per_worker": options.gpus_per_worker,
            "cpus": resources.get("CPU", 0.0), "gpus": resources.get("GPU", 0.0),
            "nodes": sum(1 for node in ray.nodes() if node.get("Alive"))}


def shutdown() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def _import_path() -> str:
    """This process's import path, for the local cluster's workers: they run the driver's own
    code (a checkout, a test's doubles) without it being installed."""
    return os.pathsep.join(entry for entry in sys.path if entry and Path(entry).is_dir())
