"""The one mesh-finishing path: a triangle mesh and a colour function → the `MeshPayload` the
client gets, with UVs + a baked texture (``texture="uv"``), vertex colours (``"vertex"``) or
geometry only (``"none"``), or a coloured point cloud sampled on the surface (``points=N``).
Every pipeline ends here (reconstruct, generate, stylize)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from backend.geometry.mesh_ops import sample_surface, vertex_normals
from backend.geometry.charts import unwrap
from backend.geometry.texture import ColorFn, bake, texture_error
from backend.images import encode_png
from backend.protocol import TEXTURE_MODES, MeshPayload

FinishStep = Callable[[str], None]
"""Told each step as it starts: ``"unwrap"`` (`charts.unwrap`) or ``"bake"``; a pipeline reports
progress (and so checks for cancellation) from it."""


def finish_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    colour: ColorFn | None,
    *,
    texture: str,
    texture_size: int,
    out_vertices: np.ndarray | None = None,
    uvs: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    on_step: FinishStep | None = None,
    points: int | None = None,
    seed: int = 0,
) -> MeshPayload:
    """The client's mesh.

    Args:
        vertices: [N, 3] positions where ``colour`` is defined (the UV atlas is made and the
            texture baked on them).
        faces: [M, 3] vertex indices.
        colour: (points [K, 3] float64, normals [K, 3] float64) -> RGB [K, 3] in 0..1; None
            gives geometry only whatever ``texture`` asks.
        texture: ``"uv"``, ``"vertex"`` or ``"none"``.
        texture_size: side of the baked texture.
        out_vertices: [N, 3] positions to return, when they differ from ``vertices`` (another
            frame, or displaced); default ``vertices``.
        uvs: [N, 2] texture coordinates to keep (``texture="uv"``); made by `charts.unwrap` when None
            (seams duplicate vertices, face order is kept).
        normals: [N, 3] normals of ``out_vertices`` to keep; computed when None.
        on_step: see `FinishStep`.
        points: instead of the mesh, this many points sampled uniformly over its area (at
            ``out_vertices``), with normals and, unless ``texture="none"``, colours: no UV
            unwrap or bake. ``seed`` makes the sampling repeatable.

    Returns:
        `MeshPayload` with float32 positions and normals, int32 faces, smooth shading.
    """
    if texture not in TEXTURE_MODES:
        raise ValueError(f"texture must be one of {TEXTURE_MODES}, got {texture!r}")
    faces = np.asarray(faces, dtype=np.int32)
    vertices = np.asarray(vertices, dtype=np.float32)
    out = vertices if out_vertices is None else np.asarray(out_vertices, dtype=np.float32)
    if points is not None:
        return _surface_points(vertices, faces, out, None if texture == "none" else colour, points, seed)
    colors = texture_png = None
    if colour is None or texture != "uv":
        uvs = None
    if colour is not None and texture == "uv":
        if uvs is None:
            if on_step is not None:
                on_step("unwrap")
            mapping, faces, uvs = unwrap(vertices, faces)
            vertices, out = vertices[mapping], out[mapping]
            normals = None if normals is None else np.asarray(normals)[mapping]
        if on_step is not None:
            on_step("bake")
        texture_png = encode_png(bake(vertices, faces, uvs, vertex_normals(vertices, faces), colour, texture_size))
    elif colour is not None and texture == "vertex":
        rgb = colour(vertices.astype(np.float64), vertex_normals(vertices, faces).astype(np.float64))
        colors = np.concatenate(
            [(np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8), np.full((len(rgb), 1), 255, np.uint8)], axis=1
        )
    if normals is None:
        normals = vertex_normals(out, faces)
    return MeshPayload(out, faces, np.asarray(normals, np.float32), uvs, colors, texture_png, "smooth")



def _surface_points(vertices: np.ndarray, faces: np.ndarray, out: np.ndarray, colour: ColorFn | None, count: int,
                    seed: int) -> MeshPayload:
    """``count`` area-uniform points: sampled where ``colour`` is defined (``vertices``), returned at
    the same barycentric places of ``out``."""
    picked, weights = sample_surface(vertices, faces, count, seed)
    corners = faces[picked]
    normals = vertex_normals(out, faces).astype(np.float64)
    point_normals = np.einsum("kc,kcd->kd", weights, normals[corners])
    point_normals /= np.maximum(np.linalg.norm(point_normals, axis=1, keepdims=True), 1e-12)
    positions = np.einsum("kc,kcd->kd", weights, out[corners].astype(np.float64))
    colors = None
    if colour is not None:
        at = np.einsum("kc,kcd->kd", weights, vertices[corners].astype(np.float64))
        rgb = colour(at, np.einsum("kc,kcd->kd", weights, vertex_normals(vertices, faces)[corners].astype(np.float64)))
        colors = np.concatenate([(np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8),
                                 np.full((count, 1), 255, np.uint8)], axis=1)
    return MeshPayload(positions.astype(np.float32), np.zeros((0, 3), np.int32), point_normals.astype(np.float32),
                       None, colors, None, "smooth")


def baked_texture_error(mesh: MeshPayload, colour: ColorFn | None) -> float | None:
    """`texture_error` of a `finish_mesh` result whose vertices are still where ``colour`` is
    defined (before any normalising); None without a baked texture. Reported in the metadata, so
    benchmarks can show that a faster finishing path did not cost texture quality."""
    if colour is None or mesh.texture_png is None or mesh.uvs is None:
        return None
    return texture_error(mesh.vertices, mesh.faces, mesh.uvs, mesh.texture_png, colour)
