"""A mined shape's colour: every photo of its cluster that sees a point, weighted by how squarely
it sees it and how sure its outline is; a point no photo sees takes the colour of the photo that
faces it best, through the object (its hidden side continues the seen one)."""

from __future__ import annotations

import numpy as np

from backend.geometry.texture import ColorFn
from backend.pipelines.mine.pooled import ClusterPhoto
from backend.pipelines.mine.views import DistantView
from backend.pipelines.reconstruct.colour import sample_bilinear, zbuffer

ZBUFFER_SAMPLES = 60_000
"""Surface samples splatted into each photo's depth buffer."""

ZBUFFER_SIZE = 128
"""Side of the depth buffers (coarser than the colour crops: a depth test needs no more)."""


def cluster_colour(vertices: np.ndarray, faces: np.ndarray, views: list[DistantView], photos: list[ClusterPhoto],
                   weights: np.ndarray) -> ColorFn:
    """(points, normals) -> RGB in 0..1 from the ``photos`` seen by ``views``; ``weights`` [K]
    (0 leaves a photo out)."""
    from backend.geometry.metrics import sample_surface

    dense = sample_surface(vertices, faces, ZBUFFER_SAMPLES)
    extent = float(np.linalg.norm(vertices.max(0) - vertices.min(0)))
    chosen = [k for k in range(len(photos)) if weights[k] > 0]
    buffers = {}
    for k in chosen:
        uv, depth = views[k].project(dense, ZBUFFER_SIZE)
        # the depth buffer wants positive depths: measure from a plane well in front of the object
        buffers[k] = zbuffer(uv, depth + 2.0 * extent + 1.0, ZBUFFER_SIZE)

    def colour(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        total = np.zeros_like(points)
        weight = np.zeros(len(points))
        fallback = np.zeros_like(points)
        best_facing = np.full(len(points), -np.inf)
        for k in chosen:
            photo = photos[k]
            size = photo.rgb.shape[0]
            forward = views[k].axes()[2]
            towards = -(normals @ forward)
            facing = np.clip(towards, 0.0, 1.0)
            uv, depth = views[k].project(points, size)
            seen = sample_bilinear(photo.rgb, uv)
            zuv = uv * (ZBUFFER_SIZE / size)  # the same crop at the depth buffer's size
            col = np.clip(np.floor(zuv[:, 0]).astype(int), 0, ZBUFFER_SIZE - 1)
            row = np.clip(np.floor(zuv[:, 1]).astype(int), 0, ZBUFFER_SIZE - 1)
            visible = depth + 2.0 * extent + 1.0 <= buffers[k][row, col] + 0.03 * extent
            w = np.where(visible, facing, 0.0) ** 2 * weights[k]
            total += w[:, None] * seen
            weight += w
            # unclipped, so that on the hidden side the photo it turns least away from wins
            better = towards + weights[k] > best_facing
            fallback[better] = seen[better]
            best_facing = np.where(better, towards + weights[k], best_facing)
        blend = np.clip(weight * 4.0, 0.0, 1.0)[:, None]
        return blend * total / np.maximum(weight, 1e-9)[:, None] + (1.0 - blend) * fallback

    return colour
