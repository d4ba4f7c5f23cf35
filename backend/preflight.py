"""Is this interpreter the backend's environment? Answered in a fraction of a second.

``python -m backend.preflight --json`` reads the pinned list in ``backend/requirements.txt`` and
compares it with the distributions installed for the running interpreter, without importing any
of them: importing torch alone takes seconds, and the add-on runs this before every backend start
and from its Check button. Standard library only, because the point is to run in an environment
that may have nothing else.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("requirements.txt")
PYTHON = (3, 11)
"""The pins are for CPython 3.11 (Blender 4.2-5.0's Python; see pyproject.toml)."""

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def pins(requirements: Path = REQUIREMENTS) -> list[tuple[str, str]]:
    """``(distribution, version)`` for every ``name==version`` line."""
    found = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def _release(version: str) -> str:
    """``2.15.0+cpu`` → ``2.15.0``: a local build tag is the same release for this check."""
    return version.split("+", 1)[0]


def check(requirements: Path = REQUIREMENTS) -> dict:
    missing, other_versions = [], []
    for name, wanted in pins(requirements):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        if _release(have) != _release(wanted):
            other_versions.append([name, wanted, have])
    python_ok = sys.version_info[:2] == PYTHON
    return {"python": platform.python_version(), "executable": sys.executable, "python_ok": python_ok,
            "python_wanted": ".".join(map(str, PYTHON)), "missing": missing, "other_versions": other_versions,
            "ok": python_ok and not missing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.preflight", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line (for the add-on)")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    report = check(args.requirements)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"Python {report['python']} ({report['executable']})"
              + ("" if report["python_ok"] else f": the backend needs Python {report['python_wanted']}"))
        print("missing: " + (", ".join(report["missing"]) or "nothing"))
        for name, wanted, have in report["other_versions"]:
            print(f"{name}: {have} installed, {wanted} pinned (may work)")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
