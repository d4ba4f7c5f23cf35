"""Panels: the "Stepstone" tab of the 3D Viewport sidebar, and a smaller one in the Image Editor.

Every message (status, notices, job details, batch failures) is drawn wrapped to the sidebar's
width: a single label that does not fit is cut in its middle by Blender, where the reason usually is.
"""

from __future__ import annotations

import collections

import bpy

from ..core.text_layout import DEFAULT_REGION_WIDTH_PX, wrap_lines
from . import image_sources, preferences
from .session import get_session

STATUS_ICONS = {"connected": "CHECKMARK", "busy": "SORTTIME", "starting": "TIME", "stopped": "RADIOBUT_OFF",
                "unreachable": "ERROR", "failed": "CANCEL"}
STATE_ICONS = {"waiting": "TIME", "sent": "EXPORT", "queued": "SORTTIME", "running": "PLAY",
               "importing": "IMPORT", "held": "PINNED", "done": "CHECKMARK", "failed": "ERROR",
               "cancelled": "X", "timed_out": "TIME"}
NOTICE_ICONS = {"ERROR": "ERROR", "WARNING": "INFO"}
SHOWN_NOTICES = 3
NOTICE_MAX_LINES = 8
"""A traceback would fill the sidebar; the whole text is in the system console (``notify`` prints it)."""
DISMISS_PX = 24
"""The ✕ beside a notice takes this much of its line."""
SUMMARY_GROUPS = {"waiting": "queued", "sent": "queued", "queued": "queued", "running": "running",
                  "importing": "running", "held": "kept", "failed": "failed", "timed_out": "failed"}


def region_width(context) -> tuple[float, float]:
    """The drawn region's width and the UI scale (a default sidebar when there is no region)."""
    region = getattr(context, "region", None)
    width = getattr(region, "width", 0) or DEFAULT_REGION_WIDTH_PX
    prefs = getattr(context, "preferences", None)
    return width, (prefs.view.ui_scale if prefs is not None else 1.0)


def draw_wrapped(layout, context, text: str, icon: str = "NONE", alert: bool = False, *,
                 reserved_px: float = 0.0, max_lines: int | None = None) -> int:
    """``text`` as labels that fit the region: the first with ``icon``, the rest indented under it.
    Returns the number of labels drawn."""
    lines = wrap_lines(text, *region_width(context), reserved_px=reserved_px)
    if max_lines is not None and len(lines) > max_lines:
        hidden = len(lines) - max_lines + 1
        lines = lines[:max_lines - 1] + [f"… {hidden} more lines in the console"]
    col = layout.column(align=True)
    col.alert = alert
    for index, line in enumerate(lines):
        col.label(text=line, icon=icon if index == 0 or icon == "NONE" else "BLANK1")
    return len(lines)


def draw_status(layout, context, compact: bool = False) -> None:
    session = get_session()
    status = session.status()
    box = layout.box()
    draw_wrapped(box, context, f"Backend: {status.text}", STATUS_ICONS.get(status.state, "QUESTION"),
                 alert=status.state in ("unreachable", "failed"))
    if compact:
        return
    row = box.row(align=True)
    if status.state in ("stopped", "failed", "unreachable"):
        row.operator("stepstone.start_backend", icon="PLAY")
    else:
        row.operator("stepstone.start_backend", text="Restart", icon="FILE_REFRESH")
        row.operator("stepstone.stop_backend", text="Stop", icon="PAUSE")
    draw_notices(box, context, list(session.notices))


def draw_notices(layout, context, notices: list) -> None:
    """The newest messages, each with a ✕; older ones are counted, and Clear drops them all."""
    for notice in notices[-SHOWN_NOTICES:]:
        row = layout.row()
        draw_wrapped(row, context, notice.text, NOTICE_ICONS.get(notice.level, "DOT"), alert=notice.level == "ERROR",
                     reserved_px=DISMISS_PX, max_lines=NOTICE_MAX_LINES)
        row.operator("stepstone.dismiss_notice", text="", icon="X", emboss=False).notice_id = notice.id
    if notices:
        row = layout.row()
        older = len(notices) - SHOWN_NOTICES
        if older > 0:
            row.label(text=f"{older} older")
        row.operator("stepstone.clear_notices", text="Clear Messages", icon="TRASH")


def pipeline_note(layout, context, task: str) -> None:
    """Say up front when the connected backend cannot run ``task`` (and why)."""
    info = get_session().server_info() or {}
    state = (info.get("pipelines") or {}).get(task)
    if info and state is None:
        draw_wrapped(layout, context, f"This backend has no {task} pipeline", "ERROR")
    elif state not in (None, "available"):
        draw_wrapped(layout, context, f"Unavailable: {state}", "ERROR")


def progress_text(eta: str, detail: str) -> str:
    """The ETA first: Blender cuts a bar's text that does not fit in its middle, keeping the start."""
    return " · ".join(part for part in (eta, detail) if part)


def jobs_summary(items) -> str:
    """One line for the main panel, so running and failed jobs show without scrolling to the list."""
    counts = collections.Counter(SUMMARY_GROUPS[item.state] for item in items if item.state in SUMMARY_GROUPS)
    if not counts:
        return ""
    eta = next((item.eta for item in items if item.state == "running" and item.eta), "")
    parts = [f"{counts[group]} {group}" + (f" ({eta})" if group == "running" and eta else "")
             for group in ("running", "queued", "kept", "failed") if counts[group]]
    return "Jobs: " + " · ".join(parts)


def ray_summary(info: dict | None) -> str:
    """One line on where a batch runs, when the connected backend runs its jobs on Ray ("" when not)."""
    ray = (info or {}).get("ray")
    if not isinstance(ray, dict):
        return ""
    workers = ray.get("workers", "?")
    text = f"Runs on Ray: {workers} worker{'' if workers == 1 else 's'}"
    gpus = ray.get("gpus_per_worker")
    if isinstance(gpus, (int, float)) and gpus > 0:
        text += f", {gpus:g} GPU{'' if gpus == 1 else 's'} each"
    where = [str(ray.get("address") or "?")]
    nodes = ray.get("nodes")
    if isinstance(nodes, int) and nodes > 1:
        where.append(f"{nodes} nodes")
    return f"{text} ({', '.join(where)})"


def text_path_line(info: dict | None) -> tuple[str, bool] | None:
    """The backend's line on preparing its CLIP text path, and whether it is a failure; None when
    there is nothing to say (never started, or ready: the panel then just works)."""
    status = (info or {}).get("text_path")
    if not isinstance(status, dict) or status.get("state") not in ("running", "failed"):
        return None
    line = str(status.get("describe") or "")
    return (line[:1].upper() + line[1:], status["state"] == "failed") if line else None


def draw_reconstruct_options(layout, context) -> None:
    """Method and Output: both panels that reconstruct (sidebar and Image Editor) send them."""
    settings = context.scene.stepstone
    layout.prop(settings, "reconstruct_method")
    layout.prop(settings, "reconstruct_output")


def draw_placement(layout, context) -> None:
    settings = context.scene.stepstone
    layout.prop(settings, "placement", text="Place")
    if settings.placement == "CURSOR":
        layout.prop(preferences.get_preferences(context), "target_size")


class STEPSTONE_UL_jobs(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        col = layout.column(align=True)
        row = col.row(align=True)
        row.label(text=item.label, icon=STATE_ICONS.get(item.state, "DOT"))
        if item.can_cancel:
            row.operator("stepstone.cancel_job", text="", icon="X").job_id = item.job_id
        if item.can_retry:
            row.operator("stepstone.retry_job", text="", icon="FILE_REFRESH").job_id = item.job_id
        if item.held:
            row.operator("stepstone.place_held", text="", icon="IMPORT").job_id = item.job_id
        if item.state in ("running", "queued", "sent", "importing"):
            col.progress(factor=item.progress, type="BAR", text=progress_text(item.eta, item.detail))
        else:
            # One line here (the list is narrow); the active job's full text is drawn under the list.
            line = col.row()
            line.alert = item.state in ("failed", "timed_out")
            line.label(text=(f"[{item.batch}] " if item.batch else "") + item.detail)


class _StepstonePanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Stepstone"


class STEPSTONE_PT_main(_StepstonePanel, bpy.types.Panel):
    bl_label = "Stepstone"

    def draw(self, context):
        draw_status(self.layout, context)
        summary = jobs_summary(context.window_manager.stepstone_jobs)
        if summary:
            draw_wrapped(self.layout, context, summary, "SORTTIME")


class STEPSTONE_PT_reconstruct(_StepstonePanel, bpy.types.Panel):
    bl_label = "Reconstruct from Image"
    bl_parent_id = "STEPSTONE_PT_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.stepstone
        pipeline_note(layout, context, "reconstruct")
        count = len(image_sources.selected_image_empties(context))
        col = layout.column(align=True)
        col.operator("stepstone.reconstruct_selected", icon="IMAGE_REFERENCE",
                     text=f"Reconstruct {count} Selected Image{'s' if count != 1 else ''}")
        col.operator("stepstone.reconstruct_files", icon="FILEBROWSER", text="From Files…")
        draw_reconstruct_options(layout, context)
        layout.prop(settings, "multiview")
        draw_placement(layout, context)


class STEPSTONE_PT_text(_StepstonePanel, bpy.types.Panel):
    bl_label = "Text to Shape"
    bl_parent_id = "STEPSTONE_PT_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.stepstone
        pipeline_note(layout, context, "generate")
        preparing = text_path_line(get_session().server_info())  # the last pong's: drawing never waits
        if preparing:
            draw_wrapped(layout, context, preparing[0], "ERROR" if preparing[1] else "TIME", alert=preparing[1])
        layout.prop(settings, "prompt", text="")
        layout.prop(settings, "negative_prompt")
        row = layout.row(align=True)
        row.prop(settings, "seed")
        row.prop(settings, "candidates")
        layout.prop(preferences.get_preferences(context), "quality")
        layout.prop(settings, "stylize_texture")
        draw_placement(layout, context)
        layout.operator("stepstone.text_to_shape", icon="OUTLINER_OB_MESH")
        if len(settings.history):
            box = layout.box()
            box.label(text="Recent Prompts", icon="RECOVER_LAST")
            for index, item in enumerate(settings.history[:5]):
                box.operator("stepstone.use_prompt", text=item.prompt, emboss=False).index = index


class STEPSTONE_PT_stylize(_StepstonePanel, bpy.types.Panel):
    bl_label = "Stylize Mesh"
    bl_parent_id = "STEPSTONE_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        settings = context.scene.stepstone
        pipeline_note(layout, context, "stylize")
        layout.prop(settings, "stylize_prompt", text="")
        layout.prop(settings, "stylize_mode", expand=True)
        layout.operator("stepstone.stylize_selected", icon="BRUSH_DATA")


class STEPSTONE_PT_batch(_StepstonePanel, bpy.types.Panel):
    bl_label = "Batch"
    bl_parent_id = "STEPSTONE_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        settings = context.scene.stepstone
        layout.prop(settings, "batch_source", expand=True)
        prop = {"TEXT": "batch_text", "FILE": "batch_file", "FOLDER": "batch_folder"}[settings.batch_source]
        layout.prop(settings, prop, text="")
        if settings.batch_source == "FOLDER":
            layout.prop(settings, "batch_method")
            layout.prop(settings, "batch_output")
        layout.prop(settings, "batch_quality")
        layout.prop(settings, "batch_placement")
        if settings.batch_placement == "GRID":
            layout.prop(preferences.get_preferences(context), "target_size")
        layout.operator("stepstone.batch", icon="GRID")
        session = get_session()
        ray = ray_summary(session.server_info())  # the last pong's info: drawing never waits for the backend
        if ray:
            draw_wrapped(layout, context, ray, "NETWORK_DRIVE")
        draw_mine(layout, context)
        tracker = session.tracker
        for batch_id, batch in tracker.batches.items():
            counts = tracker.batch_counts(batch_id)
            box = layout.box()
            row = box.row(align=True)
            draw_wrapped(row, context, batch.name, "OUTLINER_COLLECTION", reserved_px=2 * DISMISS_PX)
            row.operator("stepstone.cancel_batch", text="", icon="X").batch_id = batch_id
            failed = counts.get("failed", 0) + counts.get("timed_out", 0)
            if failed:
                row.operator("stepstone.retry_failed", text="", icon="FILE_REFRESH").batch_id = batch_id
            box.label(text=" · ".join(f"{n} {state}" for state, n in sorted(counts.items())))
            for job_id in batch.job_ids:
                job = tracker.jobs[job_id]
                if job.state.value in ("failed", "timed_out") and job.retried_as is None:
                    draw_wrapped(box, context, f"{job.label}: {job.error_message}", alert=True)


def draw_mine(layout, context) -> None:
    """Mine Shapes from Folder, a folder tool like the image-folder batch (and with its Quality)."""
    settings = context.scene.stepstone
    box = layout.box()
    pipeline_note(box, context, "mine")
    box.prop(settings, "mine_min_photos")
    box.operator("stepstone.mine_folder", icon="FILE_FOLDER", text="Mine shapes from folder")


class STEPSTONE_PT_jobs(_StepstonePanel, bpy.types.Panel):
    bl_label = "Jobs"
    bl_parent_id = "STEPSTONE_PT_main"

    def draw(self, context):
        draw_jobs(self.layout, context)


def draw_jobs(layout, context) -> None:
    wm = context.window_manager
    if not len(wm.stepstone_jobs):
        layout.label(text="No jobs yet")
        return
    layout.template_list("STEPSTONE_UL_jobs", "", wm, "stepstone_jobs", wm, "stepstone_jobs_index", rows=3)
    items = wm.stepstone_jobs
    if 0 <= wm.stepstone_jobs_index < len(items):
        item = items[wm.stepstone_jobs_index]
        text = f"{item.label}: " + progress_text(item.eta, item.detail) + (f" ({item.batch})" if item.batch else "")
        draw_wrapped(layout, context, text, STATE_ICONS.get(item.state, "DOT"),
                     alert=item.state in ("failed", "timed_out"))
    row = layout.row(align=True)
    row.operator("stepstone.retry_failed", icon="FILE_REFRESH")
    row.operator("stepstone.clear_finished", icon="TRASH")


class STEPSTONE_PT_image_editor(bpy.types.Panel):
    bl_space_type = "IMAGE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Stepstone"
    bl_label = "Stepstone"

    def draw(self, context):
        layout = self.layout
        draw_status(layout, context, compact=True)
        pipeline_note(layout, context, "reconstruct")
        image = image_sources.image_editor_image(context)
        col = layout.column()
        col.enabled = image is not None
        col.operator("stepstone.reconstruct_image_editor", icon="MESH_MONKEY")
        draw_reconstruct_options(layout, context)
        draw_placement(layout, context)
        draw_jobs(layout, context)


CLASSES = (STEPSTONE_UL_jobs, STEPSTONE_PT_main, STEPSTONE_PT_reconstruct, STEPSTONE_PT_text, STEPSTONE_PT_stylize,
           STEPSTONE_PT_batch, STEPSTONE_PT_jobs, STEPSTONE_PT_image_editor)
