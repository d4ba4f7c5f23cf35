"""Add-on preferences: how to reach the backend, and defaults for every job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from ..core.backend_install import installed_python
from ..core.link import LinkSettings
from ..core.supervisor import default_backend_python

# The extension's root package (``bl_ext.<repo>.stepstone`` when installed); preferences are keyed by it.
ROOT_PACKAGE = __package__.rsplit(".addon.", 1)[0]
EXTENSION_ROOT = Path(__file__).resolve().parents[2]
"""Folder holding ``addon/`` and the bundled ``backend/`` source."""
BACKEND_ENV_FOLDER = "backend-env"
"""Install Backend's environment, in the extension's user folder."""


def _settings_changed(self, context) -> None:
    from .session import get_session

    get_session().settings_changed()


QUALITIES = [("preview", "Preview", "Fast and coarse"), ("default", "Default", "Balanced"),
             ("high", "High", "Slow, best detail")]


class StepstonePreferences(bpy.types.AddonPreferences):
    bl_idname = ROOT_PACKAGE

    backend_mode: bpy.props.EnumProperty(
        name="Backend",
        items=[("LOCAL", "Start Locally", "The add-on runs the backend on this computer when it is first needed"),
               ("REMOTE", "Connect to Address", "Use a backend already running here or on another machine")],
        default="LOCAL", update=_settings_changed)
    python_path: bpy.props.StringProperty(
        name="Backend Python", subtype="FILE_PATH", update=_settings_changed,
        description="Python interpreter of the backend environment (with torch installed); empty = the "
                    "environment Install Backend made, else the project's .venv next to the add-on")
    clip_checkpoint: bpy.props.StringProperty(
        name="CLIP Checkpoint", subtype="FILE_PATH", update=_settings_changed,
        description="open_clip_model.safetensors of ViT-B-32 (laion2b_s34b_b79k) for open-vocabulary text to "
                    "shape and CLIP stylization; empty = the offline text model (its own vocabulary)")
    device: bpy.props.EnumProperty(
        name="Device", default="auto", update=_settings_changed,
        items=[("auto", "Auto", "CUDA when available, otherwise CPU"), ("cpu", "CPU", "Always the CPU"),
               ("cuda", "CUDA", "The first NVIDIA GPU")])
    ray_address: bpy.props.StringProperty(
        name="Ray Cluster", update=_settings_changed,
        description="Run several jobs at once (a batch) on a Ray cluster: empty = off, local = a cluster on "
                    "this computer, else its address (ray://head:10001, head:6379, auto). Needs Ray in the "
                    "backend environment: pip install .[scale]")
    ray_workers: bpy.props.IntProperty(
        name="Ray Workers", default=2, min=1, max=64, update=_settings_changed,
        description="Jobs that run at once on the Ray cluster, each in its own worker (needs the backend's "
                    "scale extra: pip install .[scale])")
    ray_gpus_per_worker: bpy.props.FloatProperty(
        name="GPUs per Worker", default=0.0, min=0.0, max=8.0, step=25, precision=2, update=_settings_changed,
        description="GPUs Ray gives each worker; fractions share one GPU, 0 = the CPU only (needs the "
                    "backend's scale extra: pip install .[scale])")
    address: bpy.props.StringProperty(
        name="Address", default="tcp://127.0.0.1:5555", update=_settings_changed,
        description="tcp://host:port of a running backend (python -m backend serve)")
    client_secret_file: bpy.props.StringProperty(
        name="Client Key", subtype="FILE_PATH", update=_settings_changed,
        description="This machine's *.key_secret file for a backend with authentication (remote only)")
    server_public_file: bpy.props.StringProperty(
        name="Server Key", subtype="FILE_PATH", update=_settings_changed,
        description="The backend's server.key public key file (remote only)")
    quality: bpy.props.EnumProperty(name="Quality", default="default", items=QUALITIES)
    texture: bpy.props.EnumProperty(
        name="Texture", default="uv",
        items=[("uv", "UV Texture", "A baked image texture"), ("vertex", "Vertex Colours", "Colours per vertex"),
               ("none", "None", "Geometry only")])
    target_size: bpy.props.FloatProperty(
        name="Target Size", default=1.0, min=0.001, soft_max=100.0, subtype="DISTANCE", unit="LENGTH",
        description="Results are scaled so their longest side has this length")
    job_timeout: bpy.props.FloatProperty(
        name="Job Timeout", default=900.0, min=10.0, max=3600.0, subtype="TIME_ABSOLUTE",
        description="The backend gives up on a job after this long")
    check_result: bpy.props.StringProperty(name="Check Result", default="", options={"SKIP_SAVE"})
    install_torch: bpy.props.EnumProperty(
        name="PyTorch Build", default="auto",
        items=[("auto", "Auto", "The CUDA build when an NVIDIA GPU is found (nvidia-smi), else the CPU build"),
               ("cpu", "CPU", "The smaller CPU build, also on a machine with an NVIDIA GPU"),
               ("cuda", "CUDA", "The NVIDIA build (Linux, Windows)")])
    install_source: bpy.props.StringProperty(
        name="Install From", subtype="DIR_PATH",
        description="A folder of wheel files to install from instead of the internet (offline machines); "
                    "empty = download from PyPI and PyTorch's index")

    def draw(self, context) -> None:
        from . import backend_setup
        from .panels import draw_wrapped

        layout = self.layout
        layout.prop(self, "backend_mode", expand=True)
        box = layout.box()
        if self.backend_mode == "LOCAL":
            row = box.row(align=True)
            row.prop(self, "python_path")
            row.operator("stepstone.check_backend", text="Check", icon="CHECKMARK")
            if not self.python_path:
                found = backend_python(self)
                draw_wrapped(box, context, f"Using {found}" if found else "No backend environment yet: press Install "
                             "Backend below", icon="INFO" if found else "ERROR")
            if self.check_result:
                draw_wrapped(box, context, self.check_result, icon="INFO")
            device = box.column()
            device.active = not self.ray_address.strip()  # on Ray, GPUs per Worker decides the device
            device.prop(self, "device")
            box.prop(self, "clip_checkpoint")
            draw_ray(box, context, self)
            backend_setup.draw(layout, context, self)
        else:
            box.prop(self, "address")
            box.prop(self, "client_secret_file")
            box.prop(self, "server_public_file")
            if not bpy.app.online_access:
                draw_wrapped(box, context, "Addresses other than this computer need Allow Online Access "
                                           "(Preferences → System → Network)", icon="ERROR")
        col = layout.column()
        col.prop(self, "quality")
        col.prop(self, "texture")
        col.prop(self, "target_size")
        col.prop(self, "job_timeout")


def draw_ray(layout, context, prefs: StepstonePreferences) -> None:
    """Ray Cluster, and the workers' settings only while it is set (they mean nothing without it)."""
    from .panels import draw_wrapped

    layout.prop(prefs, "ray_address")
    if not prefs.ray_address.strip():
        return
    row = layout.row(align=True)
    row.prop(prefs, "ray_workers")
    row.prop(prefs, "ray_gpus_per_worker")
    draw_wrapped(layout, context, "Ray must be installed in the backend environment: pip install .[scale]",
                 icon="INFO")


def get_preferences(context=None) -> StepstonePreferences:
    context = context or bpy.context
    return context.preferences.addons[ROOT_PACKAGE].preferences


def link_settings(prefs: StepstonePreferences) -> LinkSettings:
    return LinkSettings(
        mode="local" if prefs.backend_mode == "LOCAL" else "remote",
        address=prefs.address.strip(),
        python=backend_python(prefs),
        backend_root=EXTENSION_ROOT,
        device=prefs.device,
        client_secret_file=bpy.path.abspath(prefs.client_secret_file) if prefs.client_secret_file else "",
        server_public_file=bpy.path.abspath(prefs.server_public_file) if prefs.server_public_file else "",
        online_access=bool(bpy.app.online_access),
        log_file=str(user_folder("logs") / "backend.log") if user_folder("logs") else "",
        clip_checkpoint=bpy.path.abspath(prefs.clip_checkpoint) if prefs.clip_checkpoint else "",
        **ray_settings(prefs),
    )


def ray_settings(prefs: StepstonePreferences) -> dict[str, Any]:
    """The Ray fields of ``LinkSettings``: their defaults (off) while Ray Cluster is empty, so that
    changing Ray Workers then does not restart the backend for nothing."""
    address = prefs.ray_address.strip()
    if not address:
        return {}
    return {"ray_address": address, "ray_workers": int(prefs.ray_workers),
            "ray_gpus_per_worker": float(prefs.ray_gpus_per_worker)}


def backend_python(prefs: StepstonePreferences) -> str:
    """The interpreter the local backend runs with: the one set in the preferences, else the
    environment Install Backend made, else a development checkout's .venv."""
    if prefs.python_path:
        return bpy.path.abspath(prefs.python_path)
    return installed_python(user_folder(BACKEND_ENV_FOLDER, create=False)) or default_backend_python(EXTENSION_ROOT)


def user_folder(name: str, create: bool = True) -> Path | None:
    """A folder for files the add-on writes, under Blender's per-extension user directory
    (None when the add-on was not loaded as an extension, e.g. as a legacy add-on)."""
    try:
        return Path(bpy.utils.extension_path_user(ROOT_PACKAGE, path=name, create=create))
    except ValueError:
        return None


def job_params(prefs: StepstonePreferences, seed: int = 0) -> dict:
    """Protocol params every job shares (see backend/requests.py)."""
    return {"quality": prefs.quality, "seed": int(seed), "texture": prefs.texture,
            "timeout_s": float(prefs.job_timeout)}
