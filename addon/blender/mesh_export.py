"""A Blender object → the protocol's ``MeshPayload`` (for stylize): evaluated, triangulated, object space."""

from __future__ import annotations

import bpy
import numpy as np

from ..core.backend_api import protocol
from ..core.mesh_arrays import MeshImportError, unweld_by_uv, validate_payload


def object_payload(obj: bpy.types.Object, depsgraph, max_triangles: int | None = None) -> protocol.MeshPayload:
    """The object's evaluated mesh (modifiers applied) as triangles, with its active UV map.

    Vertices are split along UV seams because the protocol carries UVs per vertex."""
    if obj.type != "MESH":
        raise MeshImportError(f"{obj.name!r} is a {obj.type.lower()}, not a mesh")
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        n_tris = len(mesh.loop_triangles)
        if n_tris == 0:
            raise MeshImportError(f"{obj.name!r} has no faces to stylize")
        tri_loops = np.empty(n_tris * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("loops", tri_loops)
        corner_verts = np.empty(len(mesh.loops), dtype=np.int32)
        mesh.loops.foreach_get("vertex_index", corner_verts)
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        loop_uvs = None
        if mesh.uv_layers.active is not None:
            uv = np.empty(len(mesh.loops) * 2, dtype=np.float32)
            mesh.uv_layers.active.uv.foreach_get("vector", uv)
            loop_uvs = uv.reshape(-1, 2)[tri_loops]
        smooth = bool(len(mesh.polygons)) and mesh.polygons[0].use_smooth
    finally:
        evaluated.to_mesh_clear()
    vertices, faces, uvs = unweld_by_uv(co.reshape(-1, 3), corner_verts[tri_loops], loop_uvs)
    payload = protocol.MeshPayload(vertices, faces, uvs=uvs, shading="smooth" if smooth else "flat")
    return validate_payload(payload, max_triangles)
