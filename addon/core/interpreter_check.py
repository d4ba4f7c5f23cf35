"""The preferences' "Check" button, without blocking Blender.

First the pre-flight check the supervisor runs before every start (``python -m backend.preflight``:
is this the backend's environment?), then ``python -m backend info --json`` (versions, CUDA,
pipelines). Both run as child processes; ``poll()`` is called from the timer until there is an answer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import preflight
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
        self._config = LocalBackendConfig(python=python, backend_root=Path(backend_root))
        self._launcher = launcher or SubprocessLauncher()
        self._clock = clock
        self._started = clock()
        self._timeout_s = timeout_s
        self._lines: list[str] = []
        self._stage = "preflight"
        self.result: CheckResult | None = None
        self._handle = None
        try:
            self._config.check()
            self._launch(preflight.argv(python))
        except SupervisorError as exc:
            self.result = CheckResult(False, str(exc))

    def _launch(self, argv: list[str]) -> None:
        self._lines = []
        self._handle = self._launcher.launch(argv, self._config.backend_root, self._config.env())

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
        python = self._config.python
        if self._stage == "preflight":
            report, problem = preflight.verdict(self._lines, python, code, self._handle.output_tail())
            if problem:
                self.result = CheckResult(False, problem, report)
            else:
                self._stage = "info"
                self._launch([python, "-m", "backend", "info", "--json"])
            return self.result
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
