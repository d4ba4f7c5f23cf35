"""Choosing the torch device a worker runs on."""

from __future__ import annotations


class DeviceUnavailable(RuntimeError):
    pass


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when a CUDA device is usable, else ``cpu``; ``cuda[:N]`` is checked."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {name!r} was asked for, but torch sees no CUDA device on this machine")
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {name!r} does not exist; {torch.cuda.device_count()} CUDA device(s) found")
        return name
    raise DeviceUnavailable(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")
