"""Procedural shapes: determinism, variety, watertight normalised meshes, SDF sign vs mesh."""

from __future__ import annotations

import numpy as np
import pytest

from backend.data.procedural import CATEGORIES, GRID_PADDING, UnknownCategoryError, make_shape

EVERYDAY = {
    "chair",
    "table",
    "stool",
    "bench",
    "sofa",
    "bed",
    "bookshelf",
    "cabinet",
    "lamp",
    "vase",
    "bottle",
    "mug",
    "bowl",
    "car",
    "airplane",
    "boat",
    "plant_pot",
}
ORGANIC = {"rock", "fruit", "tree", "mushroom", "quadruped", "humanoid"}

_MESHES: dict = {}


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


def _shape_and_mesh(category: str, seed: int = 0, res: int = 64):
    key = (category, seed, res)
    if key not in _MESHES:
        shape = make_shape(category, seed)
        _MESHES[key] = (shape, shape.mesh(res))
    return _MESHES[key]


def test_category_coverage():
    assert EVERYDAY <= set(CATEGORIES)
    assert ORGANIC <= set(CATEGORIES)
    assert len(CATEGORIES) == len(set(CATEGORIES))


def test_unknown_category_and_bad_seed_raise():
    with pytest.raises(UnknownCategoryError, match="unknown category 'spaceship'"):
        make_shape("spaceship", 0)
    with pytest.raises(ValueError, match="non-negative"):
        make_shape("chair", -1)


def test_same_seed_same_shape():
    pts = np.random.default_rng(1).uniform(-0.55, 0.55, (4000, 3))
    a, b = make_shape("chair", 7), make_shape("chair", 7)
    np.testing.assert_array_equal(a.sdf(pts), b.sdf(pts))
    assert a.metadata() == b.metadata()
    ma, mb = a.mesh(40), b.mesh(40)
    np.testing.assert_array_equal(ma.vertices, mb.vertices)
    np.testing.assert_array_equal(ma.faces, mb.faces)


@pytest.mark.parametrize("category", ["chair", "vase", "car", "quadruped", "humanoid"])
def test_different_seeds_differ(category):
    pts = np.random.default_rng(2).uniform(-0.55, 0.55, (4000, 3))
    occ = [make_shape(category, s).sdf(pts) < 0 for s in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            inter = np.count_nonzero(occ[i] & occ[j])
            union = np.count_nonzero(occ[i] | occ[j])
            assert union > 0 and inter / union < 0.9, (
                f"{category} seeds {i},{j} nearly identical (IoU {inter / union:.2f})"
            )


@pytest.mark.slow
@pytest.mark.parametrize("category", CATEGORIES)
def test_mesh_watertight_normalised_and_sdf_agrees(category):
    shape, mesh = _shape_and_mesh(category)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert len(mesh.faces) > 500 and mesh.volume > 1e-4
    lo, hi = mesh.bounds
    ext = hi - lo
    voxel = (1.0 + 2 * GRID_PADDING) / (64 - 1)  # a 64^3 mesh can miss up to ~1.5 voxels of thin tips
    assert abs(ext.max() - 1.0) < 1.5 * voxel, f"longest side {ext.max():.3f}"
    assert np.abs(0.5 * (lo + hi)).max() < voxel, "bounding box not centred"
    assert lo.min() > -0.5 - voxel and hi.max() < 0.5 + voxel
    # the SDF's sign agrees with the mesh's containment (independent ray-parity test)
    pts = np.random.default_rng(3).uniform(-0.55, 0.55, (600, 3))
    agree = np.mean((shape.sdf(pts) < 0) == inside_by_ray_parity(mesh, pts))
    assert agree >= 0.97, f"{category}: SDF sign agrees with the mesh on only {agree:.1%}"
    # every part's material has a colour; colours are valid sRGB
    cols = shape.color(mesh.vertices[:200])
    assert cols.shape == (min(200, len(mesh.vertices)), 3) and cols.min() >= 0 and cols.max() <= 1


def test_orientation_front_is_minus_y():
    # a chair's back rests on +Y (its front, where one sits down, faces -Y); a car is longest along Y
    shape, mesh = _shape_and_mesh("chair", 0)
    top = mesh.vertices[mesh.vertices[:, 2] > 0.3]
    assert top[:, 1].mean() > 0.05
    _, car = _shape_and_mesh("car", 0)
    ext = car.bounds[1] - car.bounds[0]
    assert ext[1] == pytest.approx(1.0, abs=0.02) and ext[2] < ext[1]


def test_sdf_rejects_bad_points():
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        make_shape("mug", 0).sdf(np.zeros((5, 2)))
