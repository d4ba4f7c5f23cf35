"""Headless Blender (the ``bpy`` module) with the extension enabled exactly as Blender enables one.

The repository is exposed as an extension repository ``stepstone_test`` (see
scripts/blender_checkout.py) and enabled with ``addon_utils.enable``, so the add-on runs as
``bl_ext.stepstone_test.stepstone`` with its relative imports, preferences and
``extension_path_user`` working as in a real install.

There is no event loop in the bpy module, so tests drive the add-on's one timer by hand (``pump``).
"""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPO_MODULE = "stepstone_test"
PACKAGE = f"bl_ext.{REPO_MODULE}.stepstone"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

_repo_dir: Path | None = None


def _checkout():
    """scripts/blender_checkout.py: the one place that lays the checkout out as an extension."""
    spec = importlib.util.spec_from_file_location("blender_checkout", ROOT / "scripts" / "blender_checkout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def enable_extension():
    """Register the extension once per test process; returns its root module."""
    global _repo_dir
    import addon_utils
    import bpy

    if PACKAGE in sys.modules and PACKAGE in bpy.context.preferences.addons:
        return sys.modules[PACKAGE]
    if _repo_dir is None:
        _repo_dir = Path(tempfile.mkdtemp(prefix="stepstone-ext-"))
        _checkout().checkout_repository(_repo_dir)
        bpy.context.preferences.extensions.repos.new(name=REPO_MODULE, module=REPO_MODULE,
                                                     custom_directory=str(_repo_dir), source="USER")
    errors = []
    module = addon_utils.enable(PACKAGE, default_set=True, handle_error=errors.append)
    if errors or module is None:
        raise RuntimeError(f"enabling {PACKAGE} failed: {errors}")
    return module


def disable_extension() -> None:
    import addon_utils

    addon_utils.disable(PACKAGE, default_set=True)


def addon_module(name: str):
    """``bl_ext.stepstone_test.stepstone.addon.<name>`` (e.g. ``blender.session``)."""
    import importlib

    return importlib.import_module(f"{PACKAGE}.addon.{name}")


def session():
    return addon_module("blender.session").get_session()


def prefs():
    import bpy

    return bpy.context.preferences.addons[PACKAGE].preferences


def pump(until, timeout: float = 30.0, interval: float = 0.01):
    """Call the add-on's timer until ``until()`` is true; returns the session."""
    timer = addon_module("blender.session").timer
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        timer()
        if until():
            return session()
        time.sleep(interval)
    s = session()
    jobs = [(j.label, j.state.value, j.error_message) for j in s.tracker.jobs.values()]
    raise AssertionError(f"timed out after {timeout} s; backend: {s.status().text}; jobs: {jobs}; "
                         f"notices: {[n.text for n in s.notices][-5:]}")


_fake_python: Path | None = None


def shared_fake_backend_python() -> Path:
    """One stand-in interpreter per test process, so test modules can share its running backend."""
    global _fake_python
    if _fake_python is None:
        _fake_python = fake_backend_python(Path(tempfile.mkdtemp(prefix="stepstone-python-")))
    return _fake_python


def fake_backend_python(folder: Path) -> Path:
    """A stand-in "backend Python": runs the test-double server for ``-m backend serve …`` and
    the real venv interpreter for anything else (``-m backend info`` for the check button)."""
    script = folder / "python"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-m" ] && [ "$2" = "backend" ] && [ "$3" = "serve" ]; then\n'
        "  shift 3\n"
        f'  exec "{VENV_PYTHON}" "{ROOT / "tests" / "addon_support" / "serve_doubles.py"}" "$@"\n'
        "fi\n"
        f'exec "{VENV_PYTHON}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def use_backend(python: Path | str, pipelines: str = "full") -> None:
    """Point the preferences at a local backend interpreter and restart the session's backend
    (unless exactly that backend is already running: starting one costs seconds)."""
    s = session()
    running = s.link is not None and s.link.supervisor is not None and s.link.supervisor.state.value == "ready"
    if running and prefs().python_path == str(python) and os.environ.get("STEPSTONE_TEST_PIPELINES") == pipelines:
        return
    os.environ["STEPSTONE_TEST_PIPELINES"] = pipelines
    p = prefs()
    p.backend_mode = "LOCAL"
    p.python_path = str(python)
    p.device = "cpu"
    s.stop_backend()
    if s.link is not None:
        s.link.shutdown()
        s.link = None


def reset_scene() -> None:
    """An empty scene named "Scene" with the 3D cursor at the origin."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)
