"""Is a surface clean? Figures that tell a usable mesh from a shredded one.

A learned field decoded far from its training data comes out as fins, terraces and scraps: many
pieces, a surface that folds sharply everywhere, or one rippled all over by rounded ridges (the
committed shape model's positional encoding leaves such ridges along its axes, 5-20 % of the
object apart). Three figures catch them:

- ``sharp_edge_share``: the share of the surface's edge length (edges between two faces) where the
  surface turns by more than ``SHARP_ANGLE`` degrees. A smooth marching-cubes surface has next to
  none; a box has its twelve edges; a stack of fins is sharp along every fin's edge.
- ``smallest_piece_share``: the area of the smallest connected piece over the whole area.
  Pieces under 0.2 % of the largest one are dropped when a mesh is cleaned, so a clean result has
  none below that. ``large_pieces`` counts the pieces of at least ``LARGE_PIECE`` of the area: the
  parts a field came apart into, without the crumbs.
- ``ripple_share``: the share of the surface's area whose normal turns by more than
  ``RIPPLE_ANGLE`` degrees when the surface is smoothed (Taubin, ``RIPPLE_SMOOTHING`` steps at
  20,000 faces, as many more or fewer as the mesh has more or fewer faces, so the same distance
  is smoothed over). Rounded ridges turn their flanks by 30-60° and vanish under that
  smoothing; a smooth surface, a thin leg or a handle keeps its normals. It measures the surface
  at the scale of a 96³ grid: detail finer than that (fur, sprinkles) and crisp box edges close
  together (a bookshelf's) count as ripple too (docs/reconstruction.md, "Ripples").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SHARP_ANGLE = 60.0
"""Degrees between two faces' normals above which their shared edge counts as sharp."""

LARGE_PIECE = 0.01
"""Share of the whole area from which a piece counts in ``large_pieces``."""

RIPPLE_ANGLE = 30.0
"""Degrees a face's normal turns under smoothing above which the face is part of a ripple."""
RIPPLE_SMOOTHING = 30
"""Taubin steps the ripple figure smooths by (`mesh_ops.smooth_over_distance`)."""


@dataclass(frozen=True)
class SurfaceQuality:
    pieces: int
    smallest_piece_share: float
    """Area of the smallest connected piece / total area."""
    large_pieces: int
    """Pieces of at least `LARGE_PIECE` of the total area."""
    sharp_edge_share: float
    """Length of edges where the surface turns by more than SHARP_ANGLE / length of all shared edges."""
    ripple_share: float
    """Area whose normal turns by more than RIPPLE_ANGLE under smoothing / the whole area."""

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def surface_quality(vertices: np.ndarray, faces: np.ndarray) -> SurfaceQuality:
    import trimesh

    mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces), process=True)
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    areas = np.bincount(labels, weights=mesh.area_faces)
    total = float(areas.sum())
    angles = np.degrees(mesh.face_adjacency_angles)
    edges = mesh.vertices[mesh.face_adjacency_edges]
    lengths = np.linalg.norm(edges[:, 0] - edges[:, 1], axis=1)
    shared = float(lengths.sum())
    sharp = float(lengths[angles > SHARP_ANGLE].sum())
    return SurfaceQuality(pieces=int(len(areas)),
                          smallest_piece_share=float(areas.min() / total) if total > 0 else 0.0,
                          large_pieces=int((areas >= LARGE_PIECE * total).sum()) if total > 0 else 0,
                          sharp_edge_share=sharp / shared if shared > 0 else 0.0,
                          ripple_share=ripple_share(mesh))


def ripple_share(mesh) -> float:
    """See the module's doc: the area share of a trimesh whose normals smoothing turns."""
    from backend.geometry.mesh_ops import smooth_over_distance

    if len(mesh.faces) == 0 or mesh.area <= 0:
        return 0.0
    smoothed = smooth_over_distance(mesh.vertices, mesh.faces, RIPPLE_SMOOTHING)[mesh.faces].astype(np.float64)
    normals = np.cross(smoothed[:, 1] - smoothed[:, 0], smoothed[:, 2] - smoothed[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    turned = np.sum(normals * mesh.face_normals, axis=1) < np.cos(np.radians(RIPPLE_ANGLE))
    return float(mesh.area_faces[turned].sum() / mesh.area)
