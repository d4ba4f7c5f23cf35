"""A scripted stand-in for the backend process, behind the supervisor's ProcessLauncher interface."""

from __future__ import annotations

import json
from pathlib import Path


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeProcess:
    _next_pid = 4000

    def __init__(self, argv: list[str]):
        FakeProcess._next_pid += 1
        self.pid = FakeProcess._next_pid
        self.argv = argv
        self.code: int | None = None
        self.pending: list[str] = []
        self.tail = ""
        self.terminated = False
        self.killed = False

    # test controls
    def say_ready(self, port: int = 6000) -> None:
        self.pending.append(f"STEPSTONE READY tcp://127.0.0.1:{port}")

    def exit(self, code: int, tail: str = "") -> None:
        self.code, self.tail = code, tail

    # ProcessHandle
    def poll(self):
        return self.code

    def read_lines(self):
        lines, self.pending = self.pending, []
        return lines

    def output_tail(self):
        return self.tail

    def terminate(self):
        self.terminated = True

    def kill(self):
        self.killed = True
        if self.code is None:
            self.code = -9


PREFLIGHT_OK = {"ok": True, "python": "3.11.7", "python_ok": True, "missing": [], "other_versions": []}


class FakeLauncher:
    """Backend processes the test drives by hand. The pre-flight check answers at once with
    ``preflight_report`` (None: it prints nothing and exits with ``preflight_exit``); its processes
    are kept apart in ``preflights`` so ``processes``/``last`` are the backends."""

    def __init__(self):
        self.processes: list[FakeProcess] = []
        self.calls: list[tuple[list[str], Path, dict]] = []
        self.preflights: list[FakeProcess] = []
        self.preflight_report: dict | None = dict(PREFLIGHT_OK)
        self.preflight_exit = 0
        self.preflight_answers = True

    def launch(self, argv, cwd, env, log_file=None):
        if "backend.preflight" in argv:
            check = FakeProcess(argv)
            if self.preflight_answers:
                check.pending = [json.dumps(self.preflight_report)] if self.preflight_report is not None else []
                check.code = self.preflight_exit if self.preflight_report is None else (
                    0 if self.preflight_report["ok"] else 1)
            self.preflights.append(check)
            return check
        self.calls.append((argv, cwd, env))
        process = FakeProcess(argv)
        self.processes.append(process)
        return process

    @property
    def last(self) -> FakeProcess:
        return self.processes[-1]
