import numpy as np
import pytest
import trimesh

from backend.geometry.metrics import compare_meshes, compare_points, sample_surface


def test_identical_shapes_score_perfectly():
    sphere = trimesh.creation.icosphere(4, radius=0.5)
    scores = compare_meshes(sphere.vertices, sphere.faces, sphere.vertices, sphere.faces, n_points=20_000)
    assert scores.chamfer_l2 < 1e-4
    assert all(f > 0.95 for f in scores.fscore.values())


def test_scaled_sphere_has_the_expected_chamfer():
    # concentric spheres of radius 0.5 and 0.55: every nearest distance is 0.05 → Chamfer = 2·0.05²
    a = trimesh.creation.icosphere(5, radius=0.5)
    b = trimesh.creation.icosphere(5, radius=0.55)
    scores = compare_meshes(b.vertices, b.faces, a.vertices, a.faces, n_points=20_000)
    assert scores.chamfer_l2 == pytest.approx(2 * 0.05 ** 2, rel=0.05)
    # τ = 5 % of the reference diagonal (√3) ≈ 0.087 > 0.05 → perfect; τ = 2 % ≈ 0.035 < 0.05 → zero
    assert scores.fscore[0.05] > 0.99 and scores.fscore[0.02] < 0.01


def test_fscore_penalises_a_missing_half():
    points = sample_surface(*(lambda m: (m.vertices, m.faces))(trimesh.creation.icosphere(4, radius=0.5)), 10_000)
    half = points[points[:, 2] > 0]
    scores = compare_points(half, points)
    # precision 1; recall = upper half + the band of height τ below the equator (area share τ/2r)
    tau = 0.05 * np.sqrt(3)
    recall = 0.5 + tau / (2 * 0.5)
    assert scores.fscore[0.05] == pytest.approx(2 * recall / (1 + recall), abs=0.03)


def test_sampling_is_uniform_by_area():
    box = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    points = sample_surface(box.vertices, box.faces, 50_000)
    on_big_faces = np.isclose(np.abs(points[:, 1]), 0.5) | np.isclose(np.abs(points[:, 2]), 0.5)
    assert on_big_faces.mean() == pytest.approx(8 / 10, abs=0.01)  # areas 4×2 of total 10
