"""Protocol meshes → the flat, contiguous arrays Blender's ``foreach_set`` takes, and back.

Blender stores triangles as polygons with a loop (corner) per vertex use; UVs live on loops and
colour attributes on points. Packing is pure numpy so it can be tested, timed and run off the main
thread; the bpy side only copies the arrays in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend_api import protocol
from .placement import VertexTransform

MeshPayload = protocol.MeshPayload


class MeshImportError(ValueError):
    """A mesh that cannot become a Blender object (NaN, indices out of range, wrong shapes)."""


@dataclass
class MeshArrays:
    """A triangle mesh ready for ``foreach_set``; every array is contiguous and flat."""

    co: np.ndarray
    """[N*3] float32 vertex positions (already placed: scaled and offset)."""
    corner_verts: np.ndarray
    """[M*3] int32 vertex index of each loop (three per triangle)."""
    loop_starts: np.ndarray
    """[M] int32 first loop of each polygon (0, 3, 6, ...)."""
    loop_uvs: np.ndarray | None
    """[M*3*2] float32 UV of each loop, origin bottom-left."""
    point_colors: np.ndarray | None
    """[N*4] float32 RGBA in [0, 1], sRGB-encoded (for ``color_srgb`` of a BYTE_COLOR attribute)."""
    smooth: bool
    texture_png: bytes | None
    dropped_degenerate: int = 0
    """Triangles left out because a vertex repeats in them (Blender cannot hold those)."""
    dropped_duplicate: int = 0
    """Triangles left out because the same three vertices already form a triangle."""

    @property
    def n_vertices(self) -> int:
        return self.co.shape[0] // 3

    @property
    def n_faces(self) -> int:
        return self.loop_starts.shape[0]


def validate_payload(mesh: MeshPayload, max_triangles: int | None = None) -> MeshPayload:
    """The protocol's checks (dtypes, shapes, finiteness, index range), as a ``MeshImportError``."""
    try:
        return protocol.mesh_from_blobs(protocol.mesh_blobs(mesh), max_triangles=max_triangles, shading=mesh.shading)
    except protocol.ProtocolError as exc:
        raise MeshImportError(exc.message) from None


def payload_from_message(message: protocol.Message, max_triangles: int | None = None) -> MeshPayload:
    """The validated mesh of a ``result`` or mesh ``preview`` message."""
    try:
        return protocol.result_mesh(message, max_triangles=max_triangles)
    except protocol.ProtocolError as exc:
        raise MeshImportError(exc.message) from None


def pack_mesh(mesh: MeshPayload, transform: VertexTransform | None = None) -> MeshArrays:
    """A validated payload → ``MeshArrays``. ``transform`` places the vertices (scale, then offset)."""
    vertices, faces = mesh.vertices, mesh.faces
    if vertices.dtype != np.float32 or faces.dtype != np.int32 or vertices.ndim != 2 or faces.ndim != 2:
        raise MeshImportError("vertices must be float32 [N,3] and faces int32 [M,3]; validate the payload first")
    if transform is not None:
        vertices = transform.apply(vertices)
    faces, degenerate, duplicate = clean_faces(faces)
    if faces.shape[0] == 0:
        raise MeshImportError("every triangle of the mesh is degenerate or a duplicate")
    corner_verts = np.ascontiguousarray(faces, dtype=np.int32).reshape(-1)
    n_faces = faces.shape[0]
    loop_starts = np.arange(0, 3 * n_faces, 3, dtype=np.int32)
    loop_uvs = None
    if mesh.uvs is not None:
        loop_uvs = np.take(mesh.uvs, corner_verts, axis=0).reshape(-1)
    point_colors = None
    if mesh.colors is not None:
        point_colors = (mesh.colors.reshape(-1).astype(np.float32) * np.float32(1.0 / 255.0))
    return MeshArrays(
        co=np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1),
        corner_verts=corner_verts,
        loop_starts=loop_starts,
        loop_uvs=loop_uvs,
        point_colors=point_colors,
        smooth=mesh.shading == "smooth",
        texture_png=mesh.texture_png,
        dropped_degenerate=degenerate,
        dropped_duplicate=duplicate,
    )


def clean_faces(faces: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Drop triangles Blender's ``Mesh.validate`` would remove, and count them for the report.

    faces [M,3] int32 (indices already range-checked) → (kept faces in their original order,
    number with a repeated vertex, number repeating an earlier triangle's vertex set). After this,
    together with the protocol's checks (finite numbers, indices in range), a mesh built from the
    arrays is valid as it is, so the import does not have to pay for ``validate()``."""
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    proper = (a != b) & (b != c) & (a != c)
    degenerate = int(faces.shape[0] - np.count_nonzero(proper))
    if degenerate:
        faces = faces[proper]
    ordered = np.sort(faces, axis=1).astype(np.int64)
    if int(ordered[:, 2].max(initial=0)) < 1 << 21:
        keys = (ordered[:, 0] << 42) | (ordered[:, 1] << 21) | ordered[:, 2]
        _, first = np.unique(keys, return_index=True)
    else:
        _, first = np.unique(ordered, axis=0, return_index=True)
    duplicate = int(faces.shape[0] - first.shape[0])
    if duplicate:
        faces = faces[np.sort(first)]
    return faces, degenerate, duplicate


def pack_points(points: np.ndarray, transform: VertexTransform | None = None,
                colors: np.ndarray | None = None) -> MeshArrays:
    """A point cloud ([N,3] float32) as a mesh of loose vertices: point previews and ``points`` results.

    ``colors``: uint8 [N,3] (previews) or [N,4] RGBA (results), sRGB; RGB gets an opaque alpha."""
    points = np.asarray(points)
    if points.dtype != np.float32 or points.ndim != 2 or points.shape[1] != 3:
        raise MeshImportError(f"points must be float32 [N,3], got {points.dtype} {list(points.shape)}")
    if not np.isfinite(points).all():
        raise MeshImportError("points contain NaN or infinity")
    point_colors = None if colors is None else _point_colors(colors, points.shape[0])
    if transform is not None:
        points = transform.apply(points)
    empty_i = np.zeros(0, dtype=np.int32)
    return MeshArrays(np.ascontiguousarray(points, dtype=np.float32).reshape(-1), empty_i, empty_i, None,
                      point_colors, False, None)


def _point_colors(colors: np.ndarray, n: int) -> np.ndarray:
    """uint8 [n,3|4] → flat float32 RGBA in [0, 1], the layout ``MeshArrays.point_colors`` holds."""
    colors = np.asarray(colors)
    if colors.dtype != np.uint8 or colors.ndim != 2 or colors.shape[1] not in (3, 4) or colors.shape[0] != n:
        raise MeshImportError(f"point colours must be uint8 [{n},3] or [{n},4], got {colors.dtype} "
                              f"{list(colors.shape)}")
    rgba = np.full((n, 4), 1.0, dtype=np.float32)
    rgba[:, :colors.shape[1]] = colors * np.float32(1.0 / 255.0)
    return rgba.reshape(-1)


def pack_payload(mesh: MeshPayload, transform: VertexTransform | None = None) -> MeshArrays:
    """A validated result payload → ``MeshArrays``: a point cloud (no faces) as loose vertices with
    its colours, anything else as triangles (``pack_mesh`` refuses a mesh without faces)."""
    if mesh.is_points:
        return pack_points(mesh.vertices, transform, mesh.colors)
    return pack_mesh(mesh, transform)


def unweld_by_uv(vertices: np.ndarray, corner_verts: np.ndarray, loop_uvs: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Blender's per-loop UVs → the protocol's per-vertex UVs, splitting vertices along UV seams.

    vertices [N,3] float32, corner_verts [L] int (three per triangle), loop_uvs [L,2] float32 or None.
    Returns (vertices [N',3], faces [L/3,3] int32, uvs [N',2] or None).
    """
    corner_verts = np.asarray(corner_verts, dtype=np.int64)
    if loop_uvs is None:
        return (np.ascontiguousarray(vertices, dtype=np.float32),
                corner_verts.reshape(-1, 3).astype(np.int32), None)
    keys = np.empty(len(corner_verts), dtype=[("v", np.int64), ("u", np.float32), ("w", np.float32)])
    keys["v"], keys["u"], keys["w"] = corner_verts, loop_uvs[:, 0], loop_uvs[:, 1]
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    new_vertices = np.ascontiguousarray(vertices[unique["v"]], dtype=np.float32)
    uvs = np.ascontiguousarray(loop_uvs[first], dtype=np.float32)
    return new_vertices, inverse.reshape(-1, 3).astype(np.int32), uvs
