"""Operators: thin — gather inputs, build job specs and targets, hand them to the session.

Every expected failure (missing file, no prompt, nothing selected, backend not configured) is an
``ERROR`` report and ``{'CANCELLED'}``, never a traceback. The operators only submit; the result
arrives later through the timer and becomes its own undo step.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy
from bpy_extras.io_utils import ImportHelper

from ..core import mining, placement
from ..core.batch import BatchInputError, list_image_folder, object_name_for, read_prompt_file, parse_prompt_lines
from ..core.images import ImageSourceError, read_image_file
from ..core.jobs import JobError, JobSpec, JobState
from ..core.link import LinkError
from ..core.mesh_arrays import MeshImportError
from ..core.supervisor import SupervisorError
from . import image_sources, mesh_export, preferences, results
from .image_sources import SourceImage
from .properties import remember_prompt
from .session import get_session, start_check

SINGLE_COLLECTION = "Stepstone"


# ------------------------------------------------------------------------------------ targets
def _target(context, *, name: str, props: dict, mode: str = "cursor", location=None,
            placeholder: str | None = None, collection: str = SINGLE_COLLECTION) -> dict:
    scene = context.scene
    prefs = preferences.get_preferences(context)
    target = {
        "scene": scene.name, "scene_uid": scene.session_uid, "collection": collection, "mode": mode,
        "location": list(location if location is not None else scene.cursor.location),
        "target_size": prefs.target_size, "name": name, "props": props,
    }
    if placeholder is not None:
        target["placeholder"] = placeholder
        obj = bpy.data.objects[placeholder]
        target["matrix"] = [list(row) for row in obj.matrix_world]
    return target


def _placeholders(context) -> list[bpy.types.Object]:
    """Selected objects that can stand in for a result (anything but image references), by name."""
    return sorted((o for o in context.selected_objects if not image_sources.is_image_empty(o)
                   and o.type in ("MESH", "EMPTY", "CURVE", "SURFACE", "META", "FONT")), key=lambda o: o.name)


def _single_placement(op, context) -> dict | None:
    """Placement kwargs for one result from the panel's choice; None after reporting a problem."""
    if context.scene.stepstone.placement == "PLACEHOLDER":
        active = context.active_object
        if active is None or image_sources.is_image_empty(active) or active not in _placeholders(context):
            op.report({"ERROR"}, "Select a placeholder object (a mesh or an empty) and make it active, "
                                 "or place results at the 3D cursor")
            return None
        return {"mode": "placeholder", "placeholder": active.name}
    return {"mode": "cursor"}


def _spots(context, count: int) -> list[tuple[float, float, float]]:
    size = preferences.get_preferences(context).target_size
    return placement.grid_positions(count, placement.grid_spacing(size), tuple(context.scene.cursor.location))


def _submit(op, spec: JobSpec, label: str, target: dict, batch: str | None = None) -> bool:
    job = get_session().submit(spec, label, target, batch)
    if job.state == JobState.FAILED:
        op.report({"ERROR"}, f"{label}: {job.error_message}")
        return False
    return True


# ------------------------------------------------------------------------------------ reconstruct
def submit_reconstruct(op, context, sources: list[SourceImage]) -> set[str]:
    settings = context.scene.stepstone
    prefs = preferences.get_preferences(context)
    where = _single_placement(op, context)
    if where is None:
        return {"CANCELLED"}
    params = preferences.job_params(prefs, settings.seed)
    params["method"] = settings.reconstruct_method
    if settings.reconstruct_output == "POINTS":
        params["output"] = "points"  # left out for a mesh, which a backend without the option also makes
    if settings.multiview and len(sources) > 1:
        groups = [sources]
        params["multiview"] = True
    else:
        groups = [[source] for source in sources]
    spots = _spots(context, len(groups)) if len(groups) > 1 and where["mode"] == "cursor" else [None] * len(groups)
    submitted = 0
    for group, spot in zip(groups, spots):
        first = group[0]
        name = Path(first.name).stem or "Reconstruction"
        props = {"source_image": ", ".join(s.path or s.name for s in group)}
        target = _target(context, name=name, props=props, location=spot, **where)
        submitted += _submit(op, JobSpec("reconstruct", dict(params), images=[s.data for s in group]), first.name,
                             target)
    if not submitted:
        return {"CANCELLED"}
    op.report({"INFO"}, f"Stepstone: {submitted} reconstruct job(s) queued")
    return {"FINISHED"}


class STEPSTONE_OT_reconstruct_selected(bpy.types.Operator):
    """Reconstruct 3D objects from the selected reference images (image empties)"""

    bl_idname = "stepstone.reconstruct_selected"
    bl_label = "Reconstruct Selected Images"

    @classmethod
    def poll(cls, context):
        if not image_sources.selected_image_empties(context):
            cls.poll_message_set("Select one or more reference images (image empties)")
            return False
        return True

    def execute(self, context):
        try:
            sources = [image_sources.image_source(e.data) for e in image_sources.selected_image_empties(context)]
        except ImageSourceError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return submit_reconstruct(self, context, sources)


class STEPSTONE_OT_reconstruct_image_editor(bpy.types.Operator):
    """Reconstruct a 3D object from the image shown in the Image Editor"""

    bl_idname = "stepstone.reconstruct_image_editor"
    bl_label = "Reconstruct This Image"

    image_name: bpy.props.StringProperty(name="Image", description="Image datablock; empty = the Image Editor's",
                                         options={"SKIP_SAVE"})

    def execute(self, context):
        image = bpy.data.images.get(self.image_name) if self.image_name else image_sources.image_editor_image(context)
        if image is None:
            self.report({"ERROR"}, "No image: open one in the Image Editor first")
            return {"CANCELLED"}
        try:
            source = image_sources.image_source(image)
        except ImageSourceError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return submit_reconstruct(self, context, [source])


class STEPSTONE_OT_reconstruct_files(bpy.types.Operator, ImportHelper):
    """Reconstruct 3D objects from image files"""

    bl_idname = "stepstone.reconstruct_files"
    bl_label = "Reconstruct from Files"

    filter_glob: bpy.props.StringProperty(default="*.png;*.jpg;*.jpeg;*.webp", options={"HIDDEN"})
    files: bpy.props.CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: bpy.props.StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})

    def execute(self, context):
        if self.files and self.directory:
            paths = [os.path.join(self.directory, f.name) for f in self.files if f.name]
        else:
            paths = [self.filepath]
        try:
            sources = [SourceImage(read_image_file(bpy.path.abspath(p)), os.path.basename(p), p) for p in paths]
        except ImageSourceError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return submit_reconstruct(self, context, sources)


# ------------------------------------------------------------------------------------ text, stylize
class STEPSTONE_OT_text_to_shape(bpy.types.Operator):
    """Make a 3D object from the prompt"""

    bl_idname = "stepstone.text_to_shape"
    bl_label = "Generate"

    def execute(self, context):
        settings = context.scene.stepstone
        prompt = settings.prompt.strip()
        if not prompt:
            self.report({"ERROR"}, "Type a prompt first")
            return {"CANCELLED"}
        where = _single_placement(self, context)
        if where is None:
            return {"CANCELLED"}
        params = preferences.job_params(preferences.get_preferences(context), settings.seed)
        if settings.negative_prompt.strip():
            params["negative_prompt"] = settings.negative_prompt.strip()
        if settings.stylize_texture:
            params["stylize"] = True
        if settings.candidates > 1:
            params["candidates"] = settings.candidates
        remember_prompt(settings)
        target = _target(context, name=object_name_for(prompt), props={"prompt": prompt}, **where)
        if params.get("negative_prompt"):
            target["props"]["negative_prompt"] = params["negative_prompt"]
        if not _submit(self, JobSpec("generate", params, prompt=prompt), object_name_for(prompt), target):
            return {"CANCELLED"}
        return {"FINISHED"}


class STEPSTONE_OT_use_prompt(bpy.types.Operator):
    """Use this prompt from the history again"""

    bl_idname = "stepstone.use_prompt"
    bl_label = "Use Prompt"
    bl_options = {"INTERNAL", "UNDO"}

    index: bpy.props.IntProperty()

    def execute(self, context):
        settings = context.scene.stepstone
        if not 0 <= self.index < len(settings.history):
            return {"CANCELLED"}
        item = settings.history[self.index]
        settings.prompt, settings.negative_prompt, settings.seed = item.prompt, item.negative_prompt, item.seed
        return {"FINISHED"}


class STEPSTONE_OT_stylize_selected(bpy.types.Operator):
    """Restyle the active mesh from a prompt; the result takes its place, the original is hidden"""

    bl_idname = "stepstone.stylize_selected"
    bl_label = "Stylize Active Mesh"

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            cls.poll_message_set("Make a mesh object active")
            return False
        return True

    def execute(self, context):
        settings = context.scene.stepstone
        prompt = settings.stylize_prompt.strip()
        if not prompt:
            self.report({"ERROR"}, "Type a style prompt first")
            return {"CANCELLED"}
        obj = context.active_object
        limits = (get_session().server_info() or {}).get("limits", {})
        try:
            payload = mesh_export.object_payload(obj, context.evaluated_depsgraph_get(),
                                                 limits.get("max_mesh_triangles"))
        except MeshImportError as exc:
            self.report({"ERROR"}, f"{obj.name}: {exc}")
            return {"CANCELLED"}
        params = preferences.job_params(preferences.get_preferences(context), settings.seed)
        params["mode"] = settings.stylize_mode
        name = f"{obj.name} ({object_name_for(prompt, 24)})"
        target = _target(context, name=name, props={"prompt": prompt, "source_object": obj.name},
                         mode="replace", placeholder=obj.name)
        if not _submit(self, JobSpec("stylize", params, prompt=prompt, mesh=payload), name, target):
            return {"CANCELLED"}
        return {"FINISHED"}


# ------------------------------------------------------------------------------------ batch
class STEPSTONE_OT_batch(bpy.types.Operator):
    """One job per prompt (text block or file) or per image (folder); results go into a new collection"""

    bl_idname = "stepstone.batch"
    bl_label = "Run Batch"

    def execute(self, context):
        settings = context.scene.stepstone
        try:
            items, source_name, skipped = self._items(settings)
        except (BatchInputError, ImageSourceError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        session = get_session()
        try:
            session.get_link().ensure_running()  # a backend that cannot start fails the batch, not n jobs
        except (LinkError, SupervisorError) as exc:
            self.report({"ERROR"}, f"batch not started: {exc}")
            return {"CANCELLED"}
        key = _new_batch_key(source_name)
        batch = session.tracker.add_batch(key)
        results.ensure_collection(context.scene, key)
        holders = _placeholders(context) if settings.batch_placement == "PLACEHOLDERS" else []
        spots = iter(_spots(context, max(0, len(items) - len(holders))))
        for index, (spec, label, props) in enumerate(items):
            where = ({"mode": "placeholder", "placeholder": holders[index].name} if index < len(holders)
                     else {"mode": "cursor", "location": next(spots)})
            target = _target(context, name=label, props=props, collection=key, **where)
            session.submit(spec, label, target, batch.id)
        for problem in skipped:
            self.report({"WARNING"}, f"skipped: {problem}")
        self.report({"INFO"}, f"Stepstone: batch of {len(items)} job(s) queued in collection '{key}'")
        return {"FINISHED"}

    def _items(self, settings):
        prefs = preferences.get_preferences()
        skipped: list[str] = []
        if settings.batch_source == "FOLDER":
            folder = bpy.path.abspath(settings.batch_folder) if settings.batch_folder else ""
            if not folder:
                raise BatchInputError("choose an image folder")
            items = []
            for path in list_image_folder(folder):
                try:
                    data = read_image_file(path)
                except ImageSourceError as exc:
                    skipped.append(str(exc))
                    continue
                params = {**preferences.job_params(prefs, settings.seed), "quality": settings.batch_quality,
                          "method": settings.batch_method}
                if settings.batch_output == "POINTS":
                    params["output"] = "points"  # as submit_reconstruct: a mesh sends no output
                spec = JobSpec("reconstruct", params, images=[data])
                items.append((spec, path.stem, {"source_image": str(path)}))
            if not items:
                raise BatchInputError(f"no readable image in {folder}: " + "; ".join(skipped))
            return items, Path(folder.rstrip("/\\")).name, skipped
        if settings.batch_source == "TEXT":
            if settings.batch_text is None:
                raise BatchInputError("choose a text block with one prompt per line")
            prompts, source_name = parse_prompt_lines(settings.batch_text.as_string(), settings.batch_text.name), \
                settings.batch_text.name
        else:
            if not settings.batch_file:
                raise BatchInputError("choose a .txt or .csv prompt file")
            path = Path(bpy.path.abspath(settings.batch_file))
            prompts, source_name = read_prompt_file(path), path.name
        items = []
        for item in prompts:
            params = preferences.job_params(prefs, item.seed if item.seed is not None else settings.seed)
            params["quality"] = settings.batch_quality
            if item.negative_prompt:
                params["negative_prompt"] = item.negative_prompt
            props = {"prompt": item.prompt}
            items.append((JobSpec("generate", params, prompt=item.prompt), item.name or object_name_for(item.prompt),
                          props))
        return items, source_name, skipped


def _new_batch_key(source_name: str) -> str:
    """A collection name no earlier batch used, so every batch gets its own collection."""
    used = {c.get("stepstone_key", c.name) for c in bpy.data.collections}
    number = 1
    while f"Stepstone Batch {number} · {source_name}" in used:
        number += 1
    return f"Stepstone Batch {number} · {source_name}"


# ------------------------------------------------------------------------------------ mine
class STEPSTONE_OT_mine_folder(bpy.types.Operator):
    """Group a folder's photos by the object they show and make one 3D object per group, in a new collection \
(at the Batch panel's Quality)"""

    bl_idname = "stepstone.mine_folder"
    bl_label = "Mine shapes from folder"

    directory: bpy.props.StringProperty(name="Folder", subtype="DIR_PATH", options={"SKIP_SAVE"})
    filter_folder: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_image: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    def invoke(self, context, event):
        if not self.directory:
            self.directory = context.scene.stepstone.mine_folder
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        settings = context.scene.stepstone
        folder = bpy.path.abspath(self.directory) if self.directory else ""
        limits = (get_session().server_info() or {}).get("limits") or {}
        try:
            photos = mining.read_photos(folder, limits.get("max_message_bytes"))
            params = mining.mine_params(preferences.job_params(preferences.get_preferences(context), settings.seed),
                                        settings.batch_quality, settings.mine_min_photos)
        except mining.MineInputError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings.mine_folder = self.directory
        for skipped in photos.skipped:
            self.report({"WARNING"}, f"skipped: {skipped['reason']}")
        target = _target(context, name=photos.folder, props={"source_folder": folder},
                         collection=mining.collection_name(photos.folder))
        target["mine"] = {"folder": photos.folder, "photos": photos.listed, "skipped": photos.skipped}
        label = f"Mine · {photos.folder}"
        if not _submit(self, JobSpec("mine", params, images=photos.images, names=photos.names), label, target):
            return {"CANCELLED"}
        self.report({"INFO"}, f"Stepstone: mining {len(photos.names)} photo(s) from '{photos.folder}'")
        return {"FINISHED"}


# ------------------------------------------------------------------------------------ job control
class _JobOperator:
    job_id: bpy.props.StringProperty(options={"SKIP_SAVE"})

    def job(self):
        try:
            return get_session().tracker.get(self.job_id)
        except JobError as exc:
            self.report({"ERROR"}, str(exc))
            return None


class STEPSTONE_OT_cancel_job(_JobOperator, bpy.types.Operator):
    """Stop this job (the backend is told at once)"""

    bl_idname = "stepstone.cancel_job"
    bl_label = "Cancel Job"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        if self.job() is None:
            return {"CANCELLED"}
        get_session().cancel(self.job_id)
        return {"FINISHED"}


class STEPSTONE_OT_retry_job(_JobOperator, bpy.types.Operator):
    """Send this job again as it was"""

    bl_idname = "stepstone.retry_job"
    bl_label = "Retry Job"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        if self.job() is None:
            return {"CANCELLED"}
        try:
            get_session().retry(self.job_id)
        except JobError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class STEPSTONE_OT_place_held(_JobOperator, bpy.types.Operator):
    """Put this kept result into the current scene"""

    bl_idname = "stepstone.place_held"
    bl_label = "Place Here"
    bl_options = {"INTERNAL", "UNDO"}

    def execute(self, context):
        job = self.job()
        if job is None or job.state != JobState.HELD:
            self.report({"ERROR"}, "this job has no kept result")
            return {"CANCELLED"}
        try:
            outcome = get_session().place_held(job, context.scene)
        except (MeshImportError, results.SceneGoneError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, outcome.summary or f"placed {outcome.object.name}")
        return {"FINISHED"}


class STEPSTONE_OT_cancel_batch(bpy.types.Operator):
    """Cancel every unfinished job of this batch"""

    bl_idname = "stepstone.cancel_batch"
    bl_label = "Cancel Batch"
    bl_options = {"INTERNAL"}

    batch_id: bpy.props.StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        try:
            get_session().cancel_batch(self.batch_id)
        except JobError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class STEPSTONE_OT_retry_failed(bpy.types.Operator):
    """Send every failed job again (of one batch, or all)"""

    bl_idname = "stepstone.retry_failed"
    bl_label = "Retry Failed"
    bl_options = {"INTERNAL"}

    batch_id: bpy.props.StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        session = get_session()
        failed = [j for j in list(session.tracker.jobs.values()) if j.retryable and j.state != JobState.CANCELLED
                  and (not self.batch_id or j.batch == self.batch_id)]
        for job in failed:
            session.retry(job.id)
        self.report({"INFO"}, f"retrying {len(failed)} job(s)")
        return {"FINISHED"} if failed else {"CANCELLED"}


class STEPSTONE_OT_clear_finished(bpy.types.Operator):
    """Remove finished jobs from the list"""

    bl_idname = "stepstone.clear_finished"
    bl_label = "Clear Finished"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        tracker = get_session().tracker
        for job in [j for j in tracker.jobs.values() if j.final]:
            tracker.discard(job.id)
        for batch_id in [b for b, batch in tracker.batches.items() if not batch.job_ids]:
            del tracker.batches[batch_id]
        return {"FINISHED"}


# ------------------------------------------------------------------------------------ backend
class STEPSTONE_OT_start_backend(bpy.types.Operator):
    """Start (or restart) the backend, or connect to it"""

    bl_idname = "stepstone.start_backend"
    bl_label = "Start Backend"

    def execute(self, context):
        try:
            get_session().start_backend()
        except (LinkError, SupervisorError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class STEPSTONE_OT_stop_backend(bpy.types.Operator):
    """Stop the local backend (or disconnect); running jobs are cancelled"""

    bl_idname = "stepstone.stop_backend"
    bl_label = "Stop Backend"

    def execute(self, context):
        get_session().stop_backend()
        return {"FINISHED"}


class STEPSTONE_OT_check_backend(bpy.types.Operator):
    """Check the backend interpreter: imports, torch version and device, pipelines"""

    bl_idname = "stepstone.check_backend"
    bl_label = "Check Backend Python"

    def execute(self, context):
        settings = preferences.link_settings(preferences.get_preferences(context))
        preferences.get_preferences(context).check_result = "checking…"
        start_check(settings.python)
        return {"FINISHED"}


# ------------------------------------------------------------------------------------ messages
class STEPSTONE_OT_dismiss_notice(bpy.types.Operator):
    """Remove this message from the sidebar (it stays in the system console)"""

    bl_idname = "stepstone.dismiss_notice"
    bl_label = "Dismiss Message"
    bl_options = {"INTERNAL"}

    notice_id: bpy.props.IntProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        # A message can be gone already (the backend came back and cleared it): nothing to do then.
        return {"FINISHED"} if get_session().dismiss_notice(self.notice_id) else {"CANCELLED"}


class STEPSTONE_OT_clear_notices(bpy.types.Operator):
    """Remove every message from the sidebar (they stay in the system console)"""

    bl_idname = "stepstone.clear_notices"
    bl_label = "Clear Messages"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        get_session().clear_notices()
        return {"FINISHED"}


CLASSES = (
    STEPSTONE_OT_reconstruct_selected, STEPSTONE_OT_reconstruct_image_editor, STEPSTONE_OT_reconstruct_files,
    STEPSTONE_OT_text_to_shape, STEPSTONE_OT_use_prompt, STEPSTONE_OT_stylize_selected, STEPSTONE_OT_batch,
    STEPSTONE_OT_mine_folder,
    STEPSTONE_OT_cancel_job, STEPSTONE_OT_retry_job, STEPSTONE_OT_place_held, STEPSTONE_OT_cancel_batch,
    STEPSTONE_OT_retry_failed, STEPSTONE_OT_clear_finished, STEPSTONE_OT_start_backend, STEPSTONE_OT_stop_backend,
    STEPSTONE_OT_check_backend, STEPSTONE_OT_dismiss_notice, STEPSTONE_OT_clear_notices,
)
