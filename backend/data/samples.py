"""Point samples of a shape: surface points with normals/colours, and SDF/occupancy samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SampleConfig:
    """How many samples of each kind to draw."""

    surface_points: int = 100_000
    """Points on the mesh surface (with normals and colours)."""
    uniform_points: int = 50_000
    """SDF samples uniform in the cube [-box_half, box_half]^3."""
    near_points: int = 50_000
    """SDF samples near the surface: surface points plus Gaussian noise (split over near_sigmas)."""
    near_sigmas: tuple[float, ...] = (0.005, 0.03)
    """Standard deviations of the near-surface perturbations (normalised units)."""
    box_half: float = 0.55
    """Half side of the uniform sampling cube (the shape fills [-0.5, 0.5]^3)."""


def _closest_on_triangles(p, a, b, c):
    """Closest points on triangles (a, b, c) to p; all arrays [N,3] (Ericson's region tests)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        v_in = np.where(denom != 0, vb / denom, 0.0)
        w_in = np.where(denom != 0, vc / denom, 0.0)
        out = a + ab * v_in[:, None] + ac * w_in[:, None]
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        out = np.where(((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0))[:, None], b + (c - b) * t_bc[:, None], out)
        t_ac = d2 / (d2 - d6)
        out = np.where(((vb <= 0) & (d2 >= 0) & (d6 <= 0))[:, None], a + ac * t_ac[:, None], out)
        out = np.where(((d6 >= 0) & (d5 <= d6))[:, None], c, out)
        t_ab = d1 / (d1 - d3)
        out = np.where(((vc <= 0) & (d1 >= 0) & (d3 <= 0))[:, None], a + ab * t_ab[:, None], out)
        out = np.where(((d3 >= 0) & (d4 <= d3))[:, None], b, out)
        out = np.where(((d1 <= 0) & (d2 <= 0))[:, None], a, out)
    return out


def mesh_distance(mesh, points: np.ndarray, k: int = 12) -> np.ndarray:
    """Unsigned distance [N] from points [N,3] to a (finely, evenly triangulated) mesh.

    Exact point-triangle distances to the k triangles with the nearest centroids. For
    marching-cubes meshes (triangles smaller than a voxel) that is the true distance except
    near rare slivers whose centroid is not among the k, where it overestimates by a small
    fraction of a voxel.
    """
    from scipy.spatial import cKDTree

    tri = mesh.triangles
    tree = cKDTree(tri.mean(axis=1))
    k = min(k, len(tri))
    _, idx = tree.query(points, k=k)
    idx = idx.reshape(len(points), k)
    best = np.full(len(points), np.inf)
    for j in range(k):
        t = tri[idx[:, j]]
        q = _closest_on_triangles(points, t[:, 0], t[:, 1], t[:, 2])
        best = np.minimum(best, np.linalg.norm(points - q, axis=-1))
    return best


def sdf_normals(shape, points: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """Unit normals [N,3] from central differences of the shape's analytic SDF."""
    offs = np.eye(3) * eps
    g = np.stack([shape.sdf(points + o) - shape.sdf(points - o) for o in offs], axis=-1)
    n = np.linalg.norm(g, axis=-1, keepdims=True)
    return g / np.maximum(n, 1e-12)


def surface_samples(shape, mesh, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Area-uniform points on the mesh with normals and base colours.

    Returns points float32[n,3], normals float32[n,3] (the analytic SDF gradient, or the face
    normal where the gradient is degenerate or disagrees), colors float32[n,3] (sRGB).
    """
    areas = mesh.area_faces
    face = rng.choice(len(areas), size=n, p=areas / areas.sum())
    u, v = rng.uniform(size=(2, n))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    tri = mesh.triangles[face]
    pts = tri[:, 0] + (tri[:, 1] - tri[:, 0]) * u[:, None] + (tri[:, 2] - tri[:, 0]) * v[:, None]
    fn = mesh.face_normals[face]
    nrm = sdf_normals(shape, pts)
    bad = (np.einsum("ij,ij->i", nrm, fn) < 0.3) | ~np.isfinite(nrm).all(-1)
    nrm[bad] = fn[bad]
    return {
        "points": pts.astype(np.float32),
        "normals": nrm.astype(np.float32),
        "colors": shape.color(pts).astype(np.float32),
    }


def sdf_samples(
    shape, mesh, cfg: SampleConfig, rng: np.random.Generator, surface_points: np.ndarray
) -> dict[str, np.ndarray]:
    """SDF and occupancy samples: uniform in a cube plus near-surface perturbations.

    ``sdf`` = (sign of the analytic SDF) * (exact distance to the mesh): a true distance that is
    consistent with mesh.ply. ``occupancy`` = analytic SDF < 0 (exact containment).
    Returns points float32[M,3], sdf float32[M], occupancy bool[M].
    """
    uni = rng.uniform(-cfg.box_half, cfg.box_half, size=(cfg.uniform_points, 3))
    per = np.array_split(np.arange(cfg.near_points), len(cfg.near_sigmas))
    near = []
    for sigma, idx in zip(cfg.near_sigmas, per):
        base = surface_points[rng.integers(0, len(surface_points), len(idx))]
        near.append(base + rng.normal(0.0, sigma, size=base.shape))
    pts = np.concatenate([uni, *near]).astype(np.float64)
    analytic = shape.sdf(pts)
    dist = mesh_distance(mesh, pts)
    inside = analytic < 0
    return {
        "points": pts.astype(np.float32),
        "sdf": np.where(inside, -dist, dist).astype(np.float32),
        "occupancy": inside,
    }
