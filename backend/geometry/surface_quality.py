"""Is a surface clean? Figures that tell a usable mesh from a shredded one.

A learned field decoded far from its training data comes out as fins, terraces and scraps: many
pieces, and a surface that folds sharply everywhere. Two figures catch both:

- ``sharp_edge_share``: the share of the surface's edge length (edges between two faces) where the
  surface turns by more than ``SHARP_ANGLE`` degrees. A smooth marching-cubes surface has next to
  none; a box has its twelve edges; a stack of fins is sharp along every fin's edge.
- ``smallest_piece_share``: the area of the smallest connected piece over the whole area.
  Pieces under 0.2 % of the largest one are dropped when a mesh is cleaned, so a clean result has
  none below that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SHARP_ANGLE = 60.0
"""Degrees between two faces' normals above which their shared edge counts as sharp."""


@dataclass(frozen=True)
class SurfaceQuality:
    pieces: int
    smallest_piece_share: float
    """Area of the smallest connected piece / total area."""
    sharp_edge_share: float
    """Length of edges where the surface turns by more than SHARP_ANGLE / length of all shared edges."""

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
                          sharp_edge_share=sharp / shared if shared > 0 else 0.0)
