"""``MeshArrays`` → Blender mesh data, material and packed texture (main thread only).

Meshes are filled with ``foreach_set`` from contiguous arrays. Validation happens before, in
numpy: the protocol rejects NaN and out-of-range indices with a clear error, and
``mesh_arrays.clean_faces`` drops (and counts, for the report) the degenerate and duplicate
triangles ``Mesh.validate`` would remove — so the finished mesh needs no repair, which the tests
check with ``Mesh.validate``. That keeps a 100k-triangle import under 100 ms.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..core.mesh_arrays import MeshArrays

UV_NAME = "UVMap"
COLOR_NAME = "Color"


def fill_mesh(mesh: bpy.types.Mesh, arrays: MeshArrays) -> None:
    """Replace the geometry of ``mesh`` with ``arrays`` (new meshes and in-place previews)."""
    if len(mesh.vertices):
        mesh.clear_geometry()
    n_faces = arrays.n_faces
    mesh.vertices.add(arrays.n_vertices)
    # Generic attributes take whole arrays in one copy; the older per-element collections
    # (vertices.co, loops.vertex_index) are 10-100x slower for the same data.
    _set_attribute(mesh, "position", "vector", arrays.co, mesh.vertices, "co")
    if n_faces:
        mesh.loops.add(arrays.corner_verts.shape[0])
        mesh.polygons.add(n_faces)
        _set_attribute(mesh, ".corner_vert", "value", arrays.corner_verts, mesh.loops, "vertex_index")
        mesh.polygons.foreach_set("loop_start", arrays.loop_starts)
        if not arrays.smooth:
            mesh.polygons.foreach_set("use_smooth", np.zeros(n_faces, dtype=bool))
    if arrays.loop_uvs is not None:
        mesh.uv_layers.new(name=UV_NAME, do_init=False)
        mesh.attributes[UV_NAME].data.foreach_set("vector", arrays.loop_uvs)
    if arrays.point_colors is not None:
        colors = mesh.color_attributes.new(COLOR_NAME, "BYTE_COLOR", "POINT")
        colors.data.foreach_set("color_srgb", arrays.point_colors)
        mesh.color_attributes.active_color = colors
        mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index
    mesh.update(calc_edges=True)


def _set_attribute(mesh, name: str, field: str, values: np.ndarray, collection, legacy_field: str) -> None:
    attribute = mesh.attributes.get(name)
    if attribute is not None:
        attribute.data.foreach_set(field, values)
    else:  # a Blender without this built-in attribute: the slower element-wise path
        collection.foreach_set(legacy_field, values)


def new_mesh(name: str, arrays: MeshArrays) -> bpy.types.Mesh:
    """A new mesh datablock from ``arrays``; if filling fails, nothing is left behind."""
    mesh = bpy.data.meshes.new(name)
    try:
        fill_mesh(mesh, arrays)
    except Exception:
        bpy.data.meshes.remove(mesh)
        raise
    return mesh


def texture_image(name: str, png: bytes) -> bpy.types.Image:
    """An image datablock holding ``png``, packed into the .blend (no file is written)."""
    image = bpy.data.images.new(name, 8, 8)
    image.pack(data=png, data_len=len(png))
    image.source = "FILE"
    image.filepath_raw = f"//{bpy.path.clean_name(name)}.png"
    return image


def result_material(name: str, arrays: MeshArrays, image: bpy.types.Image | None = None) -> bpy.types.Material:
    """Principled BSDF with the texture (UV) or the colour attribute (vertex colours) as base colour.

    ``image``: the texture to use instead of a new image of ``arrays.texture_png`` (the objects of a
    mine result share one atlas: one image in memory, not one copy per object)."""
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True  # Blender 5 materials always have a node tree (and deprecate the flag)
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Roughness"].default_value = 0.6
    if arrays.texture_png is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = image if image is not None else texture_image(name, arrays.texture_png)
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
