"""Choosing the torch device a worker runs on."""

from __future__ import annotations

import re

_CUDA_NAME = re.compile(r"cuda(?::(\d+))?\Z")


class DeviceUnavailable(RuntimeError):
    pass


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when a CUDA device is usable, else ``cpu``; ``cuda[:N]`` is checked."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    match = _CUDA_NAME.match(name)
    if match is None:
        raise DeviceUnavailable(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise DeviceUnavailable("no CUDA device is available; use cpu")
    count, index = torch.cuda.device_count(), int(match.group(1) or 0)
    if index >= count:
        raise DeviceUnavailable(f"{name} does not exist: there are {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return name
