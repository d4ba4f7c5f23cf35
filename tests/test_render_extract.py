"""Marching-cubes extraction: geometry, winding, coarse-to-fine equivalence, empty fields."""

import math

import numpy as np
import pytest
import torch

from backend.render.extract import NoSurfaceError, evaluate_grid, extract_mesh


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    v = vertices.astype(np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _box(p):
    q = (p - torch.tensor([0.05, 0.0, -0.1])).abs() - torch.tensor([0.3, 0.2, 0.25])
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)


def test_sphere_mesh_is_on_the_sphere_and_wound_outward():
    mesh = extract_mesh(lambda p: (p - torch.tensor([0.1, 0.0, 0.0])).norm(dim=-1) - 0.4, resolution=40)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    radii = np.linalg.norm(mesh.vertices - np.array([0.1, 0.0, 0.0]), axis=1)
    assert np.abs(radii - 0.4).max() < 2e-3
    volume = _signed_volume(mesh.vertices, mesh.faces)
    assert volume == pytest.approx(4.0 / 3.0 * math.pi * 0.4**3, rel=0.02)  # positive: outward CCW


def test_box_mesh_bounds_are_in_model_coordinates():
    mesh = extract_mesh(_box, resolution=49)
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    assert np.allclose(lo, [-0.25, -0.2, -0.35], atol=0.03)
    assert np.allclose(hi, [0.35, 0.2, 0.15], atol=0.03)
    assert _signed_volume(mesh.vertices, mesh.faces) == pytest.approx(0.6 * 0.4 * 0.5, rel=0.03)


@pytest.mark.parametrize("field", [_box, lambda p: p.norm(dim=-1) - 0.45])
def test_coarse_to_fine_matches_dense(field):
    dense = extract_mesh(field, resolution=41)
    fast = extract_mesh(field, resolution=41, coarse_to_fine=True, coarse_stride=4)
    assert dense.faces.shape == fast.faces.shape
    assert np.abs(dense.vertices - fast.vertices).max() < 1e-5


def test_coarse_to_fine_evaluates_fewer_points():
    calls = []

    def counting(p):
        calls.append(p.shape[0])
        return p.norm(dim=-1) - 0.3

    extract_mesh(counting, resolution=65, coarse_to_fine=True)
    assert sum(calls) < 0.45 * 65**3


def test_grid_indexing_is_xyz():
    grid = evaluate_grid(lambda p: p[:, 0] + 10 * p[:, 1] + 100 * p[:, 2], resolution=5, bound=1.0)
    assert grid[4, 0, 0] == pytest.approx(1 - 10 - 100)
    assert grid[0, 4, 0] == pytest.approx(-1 + 10 - 100)
    assert grid[0, 0, 4] == pytest.approx(-1 - 10 + 100)


def test_empty_and_full_fields_raise():
    with pytest.raises(NoSurfaceError, match="no surface"):
        extract_mesh(lambda p: p.norm(dim=-1) + 1.0, resolution=16)
    with pytest.raises(NoSurfaceError):
        extract_mesh(lambda p: p.norm(dim=-1) - 5.0, resolution=16)
    with pytest.raises(ValueError, match="non-finite"):
        extract_mesh(lambda p: p.norm(dim=-1) / 0.0 - 0.5, resolution=16)
