"""Panels: the "Stepstone" tab of the 3D Viewport sidebar, and a smaller one in the Image Editor."""

from __future__ import annotations

import bpy

from . import image_sources, preferences
from .session import get_session

STATUS_ICONS = {"connected": "CHECKMARK", "busy": "SORTTIME", "starting": "TIME", "stopped": "RADIOBUT_OFF",
                "unreachable": "ERROR", "failed": "CANCEL"}
STATE_ICONS = {"waiting": "TIME", "sent": "EXPORT", "queued": "SORTTIME", "running": "PLAY",
               "importing": "IMPORT", "held": "PINNED", "done": "CHECKMARK", "failed": "ERROR",
               "cancelled": "X", "timed_out": "TIME"}


def draw_status(layout, compact: bool = False) -> None:
    session = get_session()
    status = session.status()
    box = layout.box()
    row = box.row()
    row.alert = status.state in ("unreachable", "failed")
    row.label(text=f"Backend: {status.text}", icon=STATUS_ICONS.get(status.state, "QUESTION"))
    if compact:
        return
    row = box.row(align=True)
    if status.state in ("stopped", "failed", "unreachable"):
        row.operator("stepstone.start_backend", icon="PLAY")
    else:
        row.operator("stepstone.start_backend", text="Restart", icon="FILE_REFRESH")
        row.operator("stepstone.stop_backend", text="Stop", icon="PAUSE")
    for notice in list(session.notices)[-3:]:
        line = box.row()
        line.alert = notice.level == "ERROR"
        line.label(text=notice.text.splitlines()[0], icon={"ERROR": "ERROR", "WARNING": "INFO"}.get(notice.level, "DOT"))


def pipeline_note(layout, task: str) -> None:
    """Say up front when the connected backend cannot run ``task`` (and why)."""
    info = get_session().server_info() or {}
    state = (info.get("pipelines") or {}).get(task)
    if info and state is None:
        layout.label(text=f"This backend has no {task} pipeline", icon="ERROR")
    elif state not in (None, "available"):
        layout.label(text=f"Unavailable: {state}", icon="ERROR")


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
            text = item.detail + (f" · {item.eta}" if item.eta else "")
            col.progress(factor=item.progress, type="BAR", text=text)
        else:
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
        draw_status(self.layout)


class STEPSTONE_PT_reconstruct(_StepstonePanel, bpy.types.Panel):
    bl_label = "Reconstruct from Image"
    bl_parent_id = "STEPSTONE_PT_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.stepstone
        pipeline_note(layout, "reconstruct")
        count = len(image_sources.selected_image_empties(context))
        col = layout.column(align=True)
        col.operator("stepstone.reconstruct_selected", icon="IMAGE_REFERENCE",
                     text=f"Reconstruct {count} Selected Image{'s' if count != 1 else ''}")
        col.operator("stepstone.reconstruct_files", icon="FILEBROWSER", text="From Files…")
        layout.prop(settings, "reconstruct_method")
        layout.prop(settings, "multiview")
        draw_placement(layout, context)


class STEPSTONE_PT_text(_StepstonePanel, bpy.types.Panel):
    bl_label = "Text to Shape"
    bl_parent_id = "STEPSTONE_PT_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.stepstone
        pipeline_note(layout, "generate")
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
        pipeline_note(layout, "stylize")
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
        layout.prop(settings, "batch_quality")
        layout.prop(settings, "batch_placement")
        if settings.batch_placement == "GRID":
            layout.prop(preferences.get_preferences(context), "target_size")
        layout.operator("stepstone.batch", icon="GRID")
        tracker = get_session().tracker
        for batch_id, batch in tracker.batches.items():
            counts = tracker.batch_counts(batch_id)
            box = layout.box()
            row = box.row(align=True)
            row.label(text=batch.name, icon="OUTLINER_COLLECTION")
            row.operator("stepstone.cancel_batch", text="", icon="X").batch_id = batch_id
            failed = counts.get("failed", 0) + counts.get("timed_out", 0)
            if failed:
                row.operator("stepstone.retry_failed", text="", icon="FILE_REFRESH").batch_id = batch_id
            box.label(text=" · ".join(f"{n} {state}" for state, n in sorted(counts.items())))
            for job_id in batch.job_ids:
                job = tracker.jobs[job_id]
                if job.state.value in ("failed", "timed_out") and job.retried_as is None:
                    line = box.row()
                    line.alert = True
                    line.label(text=f"{job.label}: {job.error_message}")


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
        draw_status(layout, compact=True)
        pipeline_note(layout, "reconstruct")
        image = image_sources.image_editor_image(context)
        col = layout.column()
        col.enabled = image is not None
        col.operator("stepstone.reconstruct_image_editor", icon="MESH_MONKEY")
        draw_placement(layout, context)
        draw_jobs(layout, context)


CLASSES = (STEPSTONE_UL_jobs, STEPSTONE_PT_main, STEPSTONE_PT_reconstruct, STEPSTONE_PT_text, STEPSTONE_PT_stylize,
           STEPSTONE_PT_batch, STEPSTONE_PT_jobs, STEPSTONE_PT_image_editor)
