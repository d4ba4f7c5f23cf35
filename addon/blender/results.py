"""Putting previews and results into the scene that asked for them (main thread only).

A job's ``target`` (filled by the operator that made it) says where the result goes:

    scene, scene_uid   the scene that asked (results land there even if the user switched scenes)
    collection         collection in that scene (the batch's own, or "Stepstone")
    mode               "cursor" (at ``location``), "placeholder" (fit into an object's bounds and
                       take its transform), "replace" (stylize: the source object's transform)
    location           [x, y, z] for "cursor" (and the fallback when a placeholder is gone)
    placeholder        object name for "placeholder"; source object name for "replace"
    target_size        metres on the longest side for "cursor"
    name               object name
    props              custom properties recorded on the object (prompt, source image, ...)
    mine               a mine job's folder (name), photos (how many it held) and skipped (photos
                       the add-on could not read): its result becomes one object per cluster in
                       a new collection, on a grid around ``location`` (``import_mined``)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import bpy
import numpy as np
from mathutils import Matrix, Vector

from ..core import mining, placement
from ..core.backend_api import protocol
from ..core.jobs import JobRecord
from ..core.mesh_arrays import MeshImportError, pack_mesh, pack_payload, pack_points, payload_from_message
from . import mesh_import

JOB_PROP = "stepstone_job"


class SceneGoneError(RuntimeError):
    """The scene that asked for a result no longer exists; the result is held for a retry."""


@dataclass
class ImportOutcome:
    object: bpy.types.Object
    """The result's object (a mine result's first one)."""
    import_s: float
    objects: list[bpy.types.Object] = field(default_factory=list)
    """Every object made (a mine result makes one per cluster)."""
    summary: str = ""
    """What the job made, where "done → <object>" would not say it (a mine result)."""
    warning: str = ""
    """With ``summary``: what the user should look at (photos left out, the backend's warnings)."""


def find_scene(target: dict) -> bpy.types.Scene | None:
    """The scene that asked, by ``session_uid`` (stable across renames and undo). After it was
    deleted or another file was opened there is none, even if a scene of the same name exists."""
    uid = target.get("scene_uid")
    if uid is None:
        return bpy.data.scenes.get(target.get("scene", ""))
    return next((scene for scene in bpy.data.scenes if scene.session_uid == uid), None)


def ensure_collection(scene: bpy.types.Scene, key: str) -> bpy.types.Collection:
    """The scene's collection for ``key`` (created when missing).

    Collections are looked up inside ``scene`` only, so results never leak into another scene
    through a same-named collection; Blender may suffix the name, the key stays on the collection."""
    for collection in scene.collection.children_recursive:
        if collection.get("stepstone_key") == key or (collection.name == key and collection.library is None):
            return collection
    collection = bpy.data.collections.new(key)
    collection["stepstone_key"] = key
    scene.collection.children.link(collection)
    return collection


def job_object(job: JobRecord) -> bpy.types.Object | None:
    """The object made for this job (the preview, later the result), if it still exists."""
    obj = bpy.data.objects.get(job.target.get("object", ""))
    if obj is not None and obj.get(JOB_PROP) == job.id:
        return obj
    return next((o for o in bpy.data.objects if o.get(JOB_PROP) == job.id), None)


def _placement(target: dict, vertices: np.ndarray) -> tuple[placement.VertexTransform, Matrix]:
    """Vertex transform and object matrix for the target's placement mode."""
    mode = target.get("mode", "cursor")
    reference = bpy.data.objects.get(target.get("placeholder", "")) if target.get("placeholder") else None
    if mode == "replace":
        matrix = reference.matrix_world.copy() if reference else Matrix(target.get("matrix") or Matrix.Identity(4))
        return placement.VertexTransform(), matrix
    shape = placement.Bounds.of_points(vertices)
    if mode == "placeholder" and reference is not None:
        if reference.type == "EMPTY":
            box = placement.empty_bounds(reference.empty_display_size)
        else:
            box = placement.Bounds.of_points(np.array([tuple(c) for c in reference.bound_box], dtype=np.float32))
        location, rotation, scale = reference.matrix_world.decompose()
        uniform, rest = placement.split_scale(tuple(scale))
        matrix = Matrix.LocRotScale(location, rotation, Vector((uniform, uniform, uniform)))
        return placement.fit_into_box(shape, box.scaled(rest)), matrix
    transform = placement.normalize_to_size(shape, float(target.get("target_size", 1.0)))
    return transform, Matrix.Translation(target.get("location", (0.0, 0.0, 0.0)))


def _new_object(job: JobRecord, scene: bpy.types.Scene, mesh: bpy.types.Mesh, matrix: Matrix) -> bpy.types.Object:
    obj = bpy.data.objects.new(job.target.get("name") or job.label, mesh)
    obj[JOB_PROP] = job.id
    obj.matrix_world = matrix
    ensure_collection(scene, job.target.get("collection", "Stepstone")).objects.link(obj)
    job.target["object"] = obj.name
    return obj


def show_preview(job: JobRecord, message: protocol.Message) -> None:
    """Create the job's placeholder object or update its mesh in place."""
    scene = find_scene(job.target)
    if scene is None:
        return  # previews are disposable; the result decides what happens
    if message.get("kind") == "points":
        points = message.blobs.get("points")
        if not isinstance(points, np.ndarray) or points.ndim != 2 or len(points) == 0:
            raise MeshImportError("a point preview needs a non-empty [N,3] 'points' frame")
        transform, matrix = _placement(job.target, points)
        arrays = pack_points(points, transform, message.blobs.get("colors"))
    else:
        payload = payload_from_message(message)
        transform, matrix = _placement(job.target, payload.vertices)
        arrays = pack_mesh(payload, transform)
    obj = job_object(job)
    if obj is None:
        mesh = bpy.data.meshes.new(f"{job.target.get('name') or job.label} (preview)")
        mesh_import.fill_mesh(mesh, arrays)
        obj = _new_object(job, scene, mesh, matrix)
        obj.show_wire = True
    else:
        mesh_import.fill_mesh(obj.data, arrays)


def import_result(job: JobRecord, message: protocol.Message, max_triangles: int | None = None) -> ImportOutcome:
    """Build the final object (replacing the preview's mesh in place) with material and properties.

    A point cloud (``output="points"``: no faces) becomes a vertices-only mesh with its colours as
    the active colour attribute and no material; it is placed and recorded like a mesh.
    Raises ``MeshImportError`` (nothing is created, the preview is removed) or ``SceneGoneError``.
    A mine job's result is several objects: ``import_mined``."""
    if job.spec.task == "mine":
        return import_mined(job, message, max_triangles)
    started = time.perf_counter()
    scene = find_scene(job.target)
    if scene is None:
        raise SceneGoneError(f"the scene {job.target.get('scene')!r} that asked for it no longer exists")
    try:
        payload = payload_from_message(message, max_triangles)
        transform, matrix = _placement(job.target, payload.vertices)
        arrays = pack_payload(payload, transform)
    except MeshImportError:
        remove_job_object(job)
        raise
    name = job.target.get("name") or job.label
    mesh = mesh_import.new_mesh(name, arrays)
    if not payload.is_points:  # loose vertices draw no surface for a material to shade
        mesh_import.assign_material(mesh, mesh_import.result_material(name, arrays))
    obj = job_object(job)
    if obj is None:
        obj = _new_object(job, scene, mesh, matrix)
    else:
        if obj.name not in scene.objects:  # a preview left behind in a scene that is gone
            ensure_collection(scene, job.target.get("collection", "Stepstone")).objects.link(obj)
        old = obj.data
        obj.data = mesh
        obj.show_wire = False
        obj.name = name
        job.target["object"] = obj.name
        if old.users == 0:
            bpy.data.meshes.remove(old)
    if job.target.get("mode") in ("placeholder", "replace"):
        _hide_reference(job.target.get("placeholder"))
    _record_properties(obj, job, message, arrays)
    obj["stepstone_output"] = "points" if payload.is_points else "mesh"
    elapsed = time.perf_counter() - started
    obj["stepstone_import_s"] = round(elapsed, 4)
    return ImportOutcome(obj, elapsed)


def import_mined(job: JobRecord, message: protocol.Message, max_triangles: int | None = None) -> ImportOutcome:
    """A mine result → a new collection ``Mined: <folder>`` holding one object per cluster, side by
    side on a grid around the cursor, each with the cluster's provenance as custom properties.

    A textured result's clusters share one atlas: one packed image that every object's material
    uses. All or nothing: the collection joins the scene once every object is built, and whatever
    was built is removed again when something fails. Raises ``MeshImportError`` or ``SceneGoneError``."""
    started = time.perf_counter()
    scene = find_scene(job.target)
    if scene is None:
        raise SceneGoneError(f"the scene {job.target.get('scene')!r} that asked for it no longer exists")
    mine = job.target.get("mine") or {}
    folder = str(mine.get("folder") or job.target.get("name") or job.label)
    plan = mining.plan_mined(payload_from_message(message, max_triangles), message.get("metadata") or {},
                             folder=folder, target_size=float(job.target.get("target_size", 1.0)),
                             origin=tuple(job.target.get("location", (0.0, 0.0, 0.0))), photos=mine.get("photos"),
                             skipped=mine.get("skipped") or ())
    made: list[bpy.types.ID] = []
    try:
        collection, objects = _build_mined(job, message, plan, made)
        scene.collection.children.link(collection)
    except Exception:
        _remove_all(made)
        raise
    job.target["collection"] = collection.name
    elapsed = time.perf_counter() - started
    for obj in objects:
        obj["stepstone_import_s"] = round(elapsed, 4)
    return ImportOutcome(objects[0], elapsed, objects, plan.summary(), plan.details())


def _build_mined(job: JobRecord, message: protocol.Message, plan: mining.MinedResult, made: list
                 ) -> tuple[bpy.types.Collection, list[bpy.types.Object]]:
    """The collection (not yet in a scene) and its objects; every datablock made goes into ``made``."""
    collection = bpy.data.collections.new(mining.collection_name(plan.folder))
    made.append(collection)
    collection[JOB_PROP] = job.id
    collection[mining.MINED_PREFIX + "summary"] = plan.summary()
    collection[mining.MINED_PREFIX + "outliers"] = json.dumps(plan.outliers)
    collection[mining.MINED_PREFIX + "rejected"] = json.dumps(plan.rejected)
    if plan.warnings:
        collection["stepstone_warnings"] = "; ".join(plan.warnings)
    atlases: dict[bytes, bpy.types.Image] = {}  # the clusters' texture is the same atlas
    objects = []
    for spec in plan.objects:
        png = spec.arrays.texture_png
        if png is not None and png not in atlases:
            atlases[png] = mesh_import.texture_image(f"{plan.folder} atlas", png)
            made.append(atlases[png])
        mesh = mesh_import.new_mesh(spec.name, spec.arrays)
        made.append(mesh)
        material = mesh_import.result_material(spec.name, spec.arrays, atlases.get(png))
        made.append(material)
        mesh_import.assign_material(mesh, material)
        obj = bpy.data.objects.new(spec.name, mesh)
        made.append(obj)
        obj.location = spec.location
        obj[JOB_PROP] = job.id
        collection.objects.link(obj)
        _record_properties(obj, job, message, spec.arrays)
        obj["stepstone_output"] = "mesh"
        for key, value in spec.properties.items():
            obj[key] = value
        objects.append(obj)
    return collection, objects


def _remove_all(made: list) -> None:
    """Remove what a failed import built, newest first (objects before their meshes and materials)."""
    kinds = ((bpy.types.Object, bpy.data.objects), (bpy.types.Collection, bpy.data.collections),
             (bpy.types.Mesh, bpy.data.meshes), (bpy.types.Material, bpy.data.materials),
             (bpy.types.Image, bpy.data.images))
    for block in reversed(made):
        for kind, datablocks in kinds:
            if isinstance(block, kind):
                datablocks.remove(block)
                break


def _hide_reference(name: str | None) -> None:
    """The placeholder (or the stylized original) steps aside without being deleted."""
    reference = bpy.data.objects.get(name or "")
    if reference is None:
        return
    reference.hide_viewport = True
    reference.hide_render = True


def _record_properties(obj: bpy.types.Object, job: JobRecord, message: protocol.Message, arrays) -> None:
    meta = message.get("metadata") or {}
    obj["stepstone_task"] = job.spec.task
    for key, value in job.target.get("props", {}).items():
        obj[f"stepstone_{key}"] = value
    obj["stepstone_seed"] = int(meta.get("seed", job.spec.params.get("seed", 0)))
    obj["stepstone_backend_version"] = str(meta.get("backend_version", "?"))
    obj["stepstone_method"] = str(meta.get("method", "?"))
    obj["stepstone_quality"] = str(meta.get("quality", job.spec.params.get("quality", "")))
    timings = {k: float(v) for k, v in (meta.get("timings") or {}).items() if isinstance(v, (int, float))}
    if timings:
        obj["stepstone_timings"] = timings
    warnings = [str(w) for w in meta.get("warnings") or []]
    if arrays.dropped_degenerate:
        warnings.append(f"{arrays.dropped_degenerate} degenerate triangles (a repeated vertex) were left out")
    if arrays.dropped_duplicate:
        warnings.append(f"{arrays.dropped_duplicate} duplicate triangles were left out")
    if warnings:
        obj["stepstone_warnings"] = "; ".join(warnings)


def remove_job_object(job: JobRecord) -> None:
    obj = job_object(job)
    if obj is None:
        return
    mesh = obj.data
    bpy.data.objects.remove(obj)
    if mesh is not None and mesh.users == 0:
        bpy.data.meshes.remove(mesh)
