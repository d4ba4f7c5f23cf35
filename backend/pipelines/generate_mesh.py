"""Turning a trained colour field and a triangle mesh into the payload the client gets:
UVs + baked texture, vertex colours, or geometry only. Shared by text → shape and stylization."""

from __future__ import annotations

import numpy as np
import torch

from backend.geometry.mesh_ops import vertex_normals
from backend.geometry.texture import bake
from backend.images import encode_png
from backend.pipelines.stylize_fields import numpy_color_fn
from backend.protocol import MeshPayload


def unwrap_with_mapping(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas charts → ``(mapping [N'], faces [M, 3], uvs [N', 2])``; new vertex ``i`` is old
    vertex ``mapping[i]`` (seams duplicate vertices), face order is kept."""
    import xatlas

    mapping, new_faces, uvs = xatlas.parametrize(vertices.astype(np.float32), faces.astype(np.uint32))
    return mapping.astype(np.int64), new_faces.astype(np.int32), uvs.astype(np.float32)


def finish_mesh(
    out_vertices: np.ndarray,
    faces: np.ndarray,
    color_vertices: np.ndarray,
    color_field: torch.nn.Module | None,
    *,
    texture: str,
    texture_size: int,
    uvs: np.ndarray | None = None,
    normals: np.ndarray | None = None,
) -> MeshPayload:
    """The client's mesh.

    ``out_vertices [N, 3]``: positions to return; ``color_vertices [N, 3]``: the same vertices
    where ``color_field`` is defined (its working frame, possibly before a displacement). With
    ``texture == "uv"``, ``uvs`` are kept when given, otherwise made with xatlas; the texture is
    baked on ``color_vertices``. ``normals`` (matching ``out_vertices``) are kept when given.
    """
    faces = np.asarray(faces, dtype=np.int32)
    out_vertices = np.asarray(out_vertices, dtype=np.float32)
    colors = texture_png = None
    if texture == "uv" and color_field is not None:
        if uvs is None:
            mapping, faces, uvs = unwrap_with_mapping(color_vertices, faces)
            out_vertices, color_vertices = out_vertices[mapping], color_vertices[mapping]
            normals = None if normals is None else normals[mapping]
        bake_normals = vertex_normals(np.asarray(color_vertices, np.float32), faces)
        image = bake(color_vertices, faces, uvs, bake_normals, numpy_color_fn(color_field), texture_size)
        texture_png = encode_png(image)
    elif texture == "vertex" and color_field is not None:
        rgb = numpy_color_fn(color_field)(np.asarray(color_vertices, np.float64), None)
        colors = np.concatenate(
            [(np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), np.full((len(rgb), 1), 255, np.uint8)], axis=1
        )
        uvs = None
    else:
        uvs = None
    if normals is None:
        normals = vertex_normals(out_vertices, faces)
    return MeshPayload(
        out_vertices, faces, np.asarray(normals, np.float32), uvs, colors, texture_png, "smooth"
    )
