"""Shared helpers for the tests/test_data_* files (not a test module)."""
from __future__ import annotations

import numpy as np


def inside_by_ray_parity(mesh, points: np.ndarray) -> np.ndarray:
    """Containment by counting crossings of a +z ray with the mesh (independent of any SDF)."""
    tri = mesh.triangles
    lo, hi = tri[:, :, :2].min(axis=1), tri[:, :, :2].max(axis=1)
    out = np.zeros(len(points), dtype=bool)
    for n, p in enumerate(points):
        cand = np.flatnonzero((lo[:, 0] <= p[0]) & (hi[:, 0] >= p[0]) & (lo[:, 1] <= p[1]) & (hi[:, 1] >= p[1]))
        if not len(cand):
            continue
        a, b, c = tri[cand, 0], tri[cand, 1], tri[cand, 2]
        # barycentric coordinates of p's xy in each triangle's xy projection
        v0, v1, v2 = (b - a)[:, :2], (c - a)[:, :2], p[:2] - a[:, :2]
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        ok = np.abs(den) > 1e-15
        den = np.where(ok, den, 1.0)
        v = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        w = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        hit = ok & (v >= 0) & (w >= 0) & (v + w <= 1)
        z = a[:, 2] + v * (b - a)[:, 2] + w * (c - a)[:, 2]
        out[n] = np.count_nonzero(hit & (z > p[2])) % 2 == 1
    return out
