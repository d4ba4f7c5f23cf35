"""Install Backend, Repair and Remove in the add-on preferences (see core/backend_install.py).

The operators only decide and start; the work runs as child processes polled by the session's
timer, and the preferences draw its progress.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import bpy

from ..core import backend_install
from . import preferences
from .panels import draw_wrapped
from .session import get_session

REQUIREMENTS = preferences.EXTENSION_ROOT / "backend" / "requirements.txt"
DOWNLOADS_FOLDER = "backend-downloads"
DOWNLOAD_SIZE = "about 1 GB with the CPU build of PyTorch, 4 GB or more with the CUDA build"


def env_dir() -> Path | None:
    return preferences.user_folder(preferences.BACKEND_ENV_FOLDER, create=False)  # looking must not make it


def base_pythons() -> tuple[str, ...]:
    """Blender's own Python first (the right version, with venv, on every platform), then any
    python3.11 on the PATH. Blender may report its own binary as sys.executable when it has no
    separate Python executable: only files named python* are candidates."""
    found = [sys.executable, shutil.which("python3.11"), shutil.which("python3"), shutil.which("python")]
    return tuple(p for p in found if p and Path(p).name.lower().startswith("python"))


def make_plan(prefs, repair: bool = False) -> backend_install.InstallPlan:
    folder = env_dir()
    downloads, logs = preferences.user_folder(DOWNLOADS_FOLDER, create=False), preferences.user_folder("logs")
    if folder is None or downloads is None:
        raise backend_install.InstallError("Install Backend needs Stepstone installed as an extension "
                                           "(Edit → Preferences → Get Extensions → Install from Disk)")
    source = bpy.path.abspath(prefs.install_source) if prefs.install_source else ""
    if source and not Path(source).is_dir():
        raise backend_install.InstallError(f"Install From {source!r} is not a folder")
    return backend_install.InstallPlan(
        env_dir=folder, wheel_dir=downloads, requirements=REQUIREMENTS, backend_root=preferences.EXTENSION_ROOT,
        base_pythons=base_pythons(), log_file=logs / "install.log" if logs else None, torch=prefs.install_torch,
        wheel_source=Path(source) if source else None, repair=repair)


def online_refusal(plan: backend_install.InstallPlan) -> str | None:
    if plan.needs_network and not bpy.app.online_access:
        return ("Install Backend downloads PyTorch and the backend's packages from the internet "
                f"({DOWNLOAD_SIZE}), and Blender's online access is off: enable Preferences → System → "
                "Network → Allow Online Access, or set Install From to a folder of wheels")
    return None


def install_state(prefs) -> tuple[str, str]:
    """(``none`` | ``installed`` | ``outdated``, one line) about the environment in the user folder."""
    folder = env_dir()
    record = backend_install.install_record(folder)
    if not backend_install.installed_python(folder) or record is None:
        return "none", "Not installed: Install Backend makes it here, with no terminal"
    if record.get("requirements_sha256") != backend_install.requirements_digest(REQUIREMENTS):
        return "outdated", "Installed for an older Stepstone: press Install Backend to update it"
    return "installed", f"Installed {record.get('installed_at', '')} · PyTorch {record.get('torch', '?')} build"


def _stop_backend_using(python: Path) -> None:
    """The environment is about to change under the local backend: stop it first."""
    link = get_session().link
    if link is not None and Path(link.settings.python or "") == python:
        get_session().stop_backend()


class STEPSTONE_OT_install_backend(bpy.types.Operator):
    """Make the backend's Python environment (PyTorch and the pinned packages) in the extension's user folder"""

    bl_idname = "stepstone.install_backend"
    bl_label = "Install Backend"

    repair: bpy.props.BoolProperty(name="Repair", default=False, options={"SKIP_SAVE"},
                                   description="Delete the environment and make it again (downloads are kept)")

    @classmethod
    def description(cls, context, properties):
        if properties.repair:
            return "Delete the backend environment and make it again from the kept downloads"
        return cls.__doc__

    def execute(self, context):
        session = get_session()
        if session.installer is not None and not session.installer.final:
            self.report({"WARNING"}, "An install is already running")
            return {"CANCELLED"}
        prefs = preferences.get_preferences(context)
        try:
            plan = make_plan(prefs, repair=self.repair)
        except backend_install.InstallError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        refusal = online_refusal(plan)
        if refusal:
            session.notify("ERROR", refusal)
            self.report({"ERROR"}, refusal)
            return {"CANCELLED"}
        _stop_backend_using(plan.python)
        session.start_install(backend_install.BackendInstaller(plan))
        return {"FINISHED"}


class STEPSTONE_OT_cancel_install(bpy.types.Operator):
    """Stop the install; what was downloaded is kept and the next Install Backend resumes"""

    bl_idname = "stepstone.cancel_install"
    bl_label = "Cancel Install"

    def execute(self, context):
        installer = get_session().installer
        if installer is None or installer.final:
            return {"CANCELLED"}
        installer.cancel()
        return {"FINISHED"}


class STEPSTONE_OT_remove_backend(bpy.types.Operator):
    """Delete the backend environment and its downloads from the extension's user folder"""

    bl_idname = "stepstone.remove_backend"
    bl_label = "Remove Backend"

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        session = get_session()
        if session.installer is not None and not session.installer.final:
            self.report({"WARNING"}, "Cancel the running install first")
            return {"CANCELLED"}
        try:
            plan = make_plan(preferences.get_preferences(context))
        except backend_install.InstallError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _stop_backend_using(plan.python)
        session.start_install(backend_install.BackendRemoval(plan))
        return {"FINISHED"}


def draw(layout, context, prefs) -> None:
    """The Backend Environment box of the preferences."""
    box = layout.box()
    box.label(text="Backend Environment", icon="PACKAGE")
    installer = get_session().installer
    if installer is not None and not installer.final:
        p = installer.progress
        step = f"Step {p.step_index} of {p.steps} · " if p.steps else ""
        box.progress(factor=p.fraction, type="BAR", text=f"{step}{p.text}")
        if isinstance(installer, backend_install.BackendInstaller):
            box.operator("stepstone.cancel_install", icon="CANCEL")
        return
    state, line = install_state(prefs)
    draw_wrapped(box, context, line, icon="CHECKMARK" if state == "installed" else "INFO")
    row = box.row(align=True)
    row.operator("stepstone.install_backend", icon="IMPORT",
                 text="Install Backend" if state != "installed" else "Reinstall / Update")
    folder = env_dir()
    sub = row.row(align=True)
    sub.enabled = folder is not None and backend_install.env_python(folder).is_file()
    sub.operator("stepstone.install_backend", text="Repair", icon="TOOL_SETTINGS").repair = True
    row.operator("stepstone.remove_backend", text="Remove", icon="TRASH")
    if installer is not None:
        failed = installer.progress.state == "failed"
        draw_wrapped(box, context, installer.progress.text, icon="ERROR" if failed else "INFO", alert=failed)
    col = box.column()
    col.prop(prefs, "install_torch")
    col.prop(prefs, "install_source")
    if not prefs.install_source and not bpy.app.online_access:
        draw_wrapped(col, context, "Downloading needs Allow Online Access (Preferences → System → Network)",
                     icon="ERROR")
    if folder is not None:
        draw_wrapped(col, context, f"Folder: {folder}", icon="FILE_FOLDER")


CLASSES = (STEPSTONE_OT_install_backend, STEPSTONE_OT_cancel_install, STEPSTONE_OT_remove_backend)
