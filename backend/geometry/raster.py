"""Which integer pixel centres each 2D triangle covers, with barycentric weights (numpy, vectorised).

Shared by texture baking (triangles in UV space) and the stylizer's screen-space rasteriser.
"""

from __future__ import annotations

import numpy as np


def covered_pixels(tri_xy: np.ndarray, width: int, height: int, eps: float = 1e-7
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``tri_xy [M,3,2]`` in pixel units with pixel centres at integer coordinates →
    ``(triangle index [K], x [K], y [K], barycentric weights [K,3])`` for every (triangle, pixel)
    pair whose centre lies inside the triangle (edges included within ``eps``). Degenerate
    triangles cover nothing. A pixel on a shared edge is reported for each triangle.
    """
    lo = np.maximum(np.ceil(tri_xy.min(axis=1)), 0).astype(np.int64)
    hi = np.minimum(np.floor(tri_xy.max(axis=1)), [width - 1, height - 1]).astype(np.int64)
    widths = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    heights = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    counts = widths * heights
    tri_index = np.repeat(np.arange(len(tri_xy)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    px = lo[tri_index, 0] + offsets % widths[tri_index]
    py = lo[tri_index, 1] + offsets // widths[tri_index]

    a, b, c = tri_xy[tri_index, 0], tri_xy[tri_index, 1], tri_xy[tri_index, 2]
    e0, e1 = b - a, c - a
    p = np.stack([px, py], axis=1).astype(np.float64) - a
    denom = e0[:, 0] * e1[:, 1] - e1[:, 0] * e0[:, 1]
    ok = np.abs(denom) > 1e-12
    denom = np.where(ok, denom, 1.0)
    w1 = (p[:, 0] * e1[:, 1] - e1[:, 0] * p[:, 1]) / denom
    w2 = (e0[:, 0] * p[:, 1] - p[:, 0] * e0[:, 1]) / denom
    w0 = 1.0 - w1 - w2
    inside = ok & (w0 >= -eps) & (w1 >= -eps) & (w2 >= -eps)
    weights = np.stack([w0[inside], w1[inside], w2[inside]], axis=1)
    return tri_index[inside], px[inside], py[inside], weights
