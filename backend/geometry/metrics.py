"""Shape-reconstruction metrics: Chamfer-L2 and F-score on points sampled from the surfaces.

Definitions (used by scripts/bench_reconstruct.py and the training evaluation):
- both meshes are sampled uniformly by area with ``n_points`` points each;
- Chamfer-L2 = mean over predicted points of the squared distance to the nearest reference point
  + the same from reference to prediction (no ½ factor); reported ×10³ for unit-size shapes;
- F-score@τ = 2PR/(P+R), with precision P = share of predicted points within τ of the reference
  surface and recall R = share of reference points within τ of the prediction; τ is given as a
  fraction of the **reference bounding-box diagonal** (1 %, 2 %, 5 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ShapeScores:
    chamfer_l2: float
    fscore: dict[float, float]
    """τ as a fraction of the reference bounding-box diagonal → F-score."""


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n_points: int, seed: int = 0) -> np.ndarray:
    """Uniform area-weighted samples on a triangle mesh → [n_points,3] float64."""
    rng = np.random.default_rng(seed)
    tri = vertices[faces].astype(np.float64)
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if areas.sum() <= 0:
        raise ValueError("the mesh has no area to sample")
    chosen = rng.choice(len(faces), size=n_points, p=areas / areas.sum())
    r1, r2 = rng.random((2, n_points))
    s = np.sqrt(r1)
    a, b, c = tri[chosen, 0], tri[chosen, 1], tri[chosen, 2]
    return (1 - s)[:, None] * a + (s * (1 - r2))[:, None] * b + (s * r2)[:, None] * c


def compare_points(predicted: np.ndarray, reference: np.ndarray,
                   thresholds: tuple[float, ...] = (0.01, 0.02, 0.05)) -> ShapeScores:
    from scipy.spatial import cKDTree

    d_pred, _ = cKDTree(reference).query(predicted, workers=-1)
    d_ref, _ = cKDTree(predicted).query(reference, workers=-1)
    diagonal = float(np.linalg.norm(reference.max(0) - reference.min(0)))
    fscore = {}
    for t in thresholds:
        tau = t * diagonal
        precision, recall = float((d_pred < tau).mean()), float((d_ref < tau).mean())
        fscore[t] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return ShapeScores(float((d_pred ** 2).mean() + (d_ref ** 2).mean()), fscore)


def compare_meshes(pred_vertices: np.ndarray, pred_faces: np.ndarray, ref_vertices: np.ndarray,
                   ref_faces: np.ndarray, n_points: int = 100_000, seed: int = 0,
                   thresholds: tuple[float, ...] = (0.01, 0.02, 0.05)) -> ShapeScores:
    return compare_points(sample_surface(pred_vertices, pred_faces, n_points, seed),
                          sample_surface(ref_vertices, ref_faces, n_points, seed + 1), thresholds)
