"""``MeshArrays`` → Blender mesh data, material and packed texture (main thread only).

Meshes are filled with ``foreach_set`` from contiguous arrays, then validated by Blender. NaN and
out-of-range indices never get here (the protocol layer rejects them); what Blender's validation
still repairs (degenerate or duplicate triangles) is counted and reported to the user.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..core.mesh_arrays import MeshArrays, MeshImportError

UV_NAME = "UVMap"
COLOR_NAME = "Color"


def fill_mesh(mesh: bpy.types.Mesh, arrays: MeshArrays, validate: bool = True) -> int:
    """Replace the geometry of ``mesh`` with ``arrays`` (new meshes and in-place previews).

    Returns how many faces Blender's validation removed (0 for a clean mesh)."""
    if len(mesh.vertices):
        mesh.clear_geometry()
    n_verts, n_faces = arrays.n_vertices, arrays.n_faces
    mesh.vertices.add(n_verts)
    mesh.vertices.foreach_set("co", arrays.co)
    if n_faces:
        mesh.loops.add(arrays.corner_verts.shape[0])
        mesh.polygons.add(n_faces)
        mesh.loops.foreach_set("vertex_index", arrays.corner_verts)
        mesh.polygons.foreach_set("loop_start", arrays.loop_starts)
        if not arrays.smooth:
            mesh.polygons.foreach_set("use_smooth", np.zeros(n_faces, dtype=bool))
    if arrays.loop_uvs is not None:
        layer = mesh.uv_layers.new(name=UV_NAME, do_init=False)
        layer.uv.foreach_set("vector", arrays.loop_uvs)
    if arrays.point_colors is not None:
        colors = mesh.color_attributes.new(COLOR_NAME, "BYTE_COLOR", "POINT")
        colors.data.foreach_set("color_srgb", arrays.point_colors)
        mesh.color_attributes.active_color = colors
        mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index
    mesh.update(calc_edges=True)
    if validate and mesh.validate(verbose=False, clean_customdata=False):
        return n_faces - len(mesh.polygons)
    return 0


def new_mesh(name: str, arrays: MeshArrays) -> tuple[bpy.types.Mesh, int]:
    """A new mesh datablock from ``arrays`` and the number of faces validation removed.

    If filling fails, the half-built datablock is removed before the error propagates."""
    mesh = bpy.data.meshes.new(name)
    try:
        removed = fill_mesh(mesh, arrays)
    except Exception:
        bpy.data.meshes.remove(mesh)
        raise
    if removed and not len(mesh.polygons):
        bpy.data.meshes.remove(mesh)
        raise MeshImportError(f"every face of the mesh '{name}' was degenerate")
    return mesh, removed


def texture_image(name: str, png: bytes) -> bpy.types.Image:
    """An image datablock holding ``png``, packed into the .blend (no file is written)."""
    image = bpy.data.images.new(name, 8, 8)
    image.pack(data=png, data_len=len(png))
    image.source = "FILE"
    image.filepath_raw = f"//{bpy.path.clean_name(name)}.png"
    return image


def result_material(name: str, arrays: MeshArrays) -> bpy.types.Material:
    """Principled BSDF with the texture (UV) or the colour attribute (vertex colours) as base colour."""
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True  # Blender 5 materials always have a node tree (and deprecate the flag)
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Roughness"].default_value = 0.6
    if arrays.texture_png is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = texture_image(name, arrays.texture_png)
        tex.location = (bsdf.location.x - 320, bsdf.location.y)
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    elif arrays.point_colors is not None:
        attr = nodes.new("ShaderNodeVertexColor")
        attr.layer_name = COLOR_NAME
        attr.location = (bsdf.location.x - 320, bsdf.location.y)
        links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def assign_material(mesh: bpy.types.Mesh, material: bpy.types.Material) -> None:
    mesh.materials.clear()
    mesh.materials.append(material)


def remove_material(material: bpy.types.Material) -> None:
    """Drop a material and the images only it used (after a failed or replaced import)."""
    images = [n.image for n in material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image] if material.node_tree else []
    bpy.data.materials.remove(material)
    for image in images:
        if image.users == 0:
            bpy.data.images.remove(image)
