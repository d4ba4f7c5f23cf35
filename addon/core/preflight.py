"""Reading ``python -m backend.preflight --json`` (see backend/preflight.py) on the add-on's side.

The supervisor runs it before every start of the local backend and the preferences' Check button
runs it first, so a Python that is not the backend's environment is refused in one sentence that
names the interpreter, what it lacks and the button that fixes it — before any job is sent.
"""

from __future__ import annotations

import json
from typing import Any

FIX = ("press Install Backend in Preferences → Add-ons → Stepstone, or set Backend Python there "
       "to an environment that has them")


def argv(python: str) -> list[str]:
    return [python, "-m", "backend.preflight", "--json"]


def parse(lines: list[str]) -> dict[str, Any] | None:
    """The report among the process's stdout lines (the last JSON object), or None."""
    for line in reversed(lines):
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if isinstance(report, dict) and "ok" in report:
            return report
    return None


def _names(names: list[str], shown: int = 3) -> str:
    if len(names) <= shown:
        return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def explain(report: dict[str, Any], python: str) -> str | None:
    """One sentence with the fix when the interpreter cannot run the backend; None when it can."""
    if report.get("ok"):
        return None
    if not report.get("python_ok", True):
        return (f"the backend Python {python} is Python {report.get('python', '?')}, and the backend needs "
                f"Python {report.get('python_wanted', '3.11')}: {FIX}")
    missing = list(report.get("missing") or [])
    return f"the backend Python {python} lacks {_names(missing)}: {FIX}"


def verdict(lines: list[str], python: str, code: int, tail: str) -> tuple[dict[str, Any] | None, str | None]:
    """(report, problem) of a finished pre-flight process: its stdout ``lines``, exit ``code`` and
    output ``tail``; the problem is None when the interpreter can run the backend."""
    report = parse(lines)
    return report, explain(report, python) if report is not None else failed_to_run(python, code, tail)


def failed_to_run(python: str, code: int, tail: str) -> str:
    """The interpreter did not even produce a report (not a Python, a broken install)."""
    last = [line.strip() for line in tail.splitlines() if line.strip()][-1:]
    return (f"the backend Python {python} could not run the pre-flight check (exit code {code}"
            + (f": {last[0]}" if last else "") + f"): {FIX}")
