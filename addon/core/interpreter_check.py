"""The preferences' "Check" button: run ``python -m backend info --json`` without blocking Blender.

The check runs as a child process; ``poll()`` is called from the timer until it has an answer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .supervisor import LocalBackendConfig, ProcessLauncher, SubprocessLauncher, SupervisorError


@dataclass
class CheckResult:
    ok: bool
    summary: str
    """One line for the preferences: versions, torch device, pipelines — or what is wrong."""
    info: dict[str, Any] | None = None


def summarize(info: dict[str, Any]) -> CheckResult:
    """``backend info --json`` output → one readable line."""
    if info.get("problem") or not info.get("torch"):
        return CheckResult(False, f"Python {info.get('python', '?')}: {info.get('problem') or 'torch is missing'}", info)
    cuda = "CUDA: " + (", ".join(info.get("cuda_devices") or []) or "yes") if info.get("cuda_available") else "CUDA: no (CPU)"
    pipelines = ", ".join(info.get("pipelines") or []) or "none"
    return CheckResult(True, f"Python {info.get('python')} · backend {info.get('backend_version')} · "
                             f"torch {info.get('torch')} · {cuda} · pipelines: {pipelines}", info)


class InterpreterCheck:
    def __init__(self, python: str, backend_root: Path, launcher: ProcessLauncher | None = None,
                 timeout_s: float = 120.0, clock=time.monotonic):
        config = LocalBackendConfig(python=python, backend_root=Path(backend_root))
        self._clock = clock
        self._started = clock()
        self._timeout_s = timeout_s
        self._lines: list[str] = []
        self.result: CheckResult | None = None
        self._handle = None
        try:
            config.check()
            self._handle = (launcher or SubprocessLauncher()).launch(
                [python, "-m", "backend", "info", "--json"], config.backend_root, config.env())
        except SupervisorError as exc:
            self.result = CheckResult(False, str(exc))

    def poll(self) -> CheckResult | None:
        """The result once the check has finished; None while it runs."""
        if self.result is not None or self._handle is None:
            return self.result
        self._lines += self._handle.read_lines()
        code = self._handle.poll()
        if code is None:
            if self._clock() - self._started > self._timeout_s:
                self._handle.kill()
                self.result = CheckResult(False, f"no answer from the interpreter within {self._timeout_s:g} s")
            return self.result
        self._lines += self._handle.read_lines()
        info = None
        for line in reversed(self._lines):
            try:
                info = json.loads(line)
                break
            except ValueError:
                continue
        if isinstance(info, dict):
            self.result = summarize(info)
        else:
            tail = [line for line in self._handle.output_tail().splitlines() if line.strip()][-3:]
            self.result = CheckResult(False, f"the interpreter could not run the backend (exit code {code})"
                                             + (": " + " / ".join(tail) if tail else ""))
        return self.result
