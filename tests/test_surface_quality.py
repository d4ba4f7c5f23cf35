"""The figures that tell a clean surface from a shredded one (backend/geometry/surface_quality.py)."""

import numpy as np
import trimesh

from backend.geometry.mesh_ops import extract_surface
from backend.geometry.surface_quality import surface_quality


def test_a_smooth_marching_cubes_sphere_is_clean():
    g = np.linspace(-0.5, 0.5, 48)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    v, f = extract_surface(0.4 - np.sqrt(x ** 2 + y ** 2 + z ** 2), np.full(3, -0.5), np.full(3, 0.5))
    q = surface_quality(v, f)
    assert q.pieces == 1 and q.smallest_piece_share == 1.0
    assert q.sharp_edge_share < 0.01


def test_a_jagged_surface_is_sharp_and_slabs_are_pieces():
    g = np.linspace(-0.5, 0.5, 48)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    r = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    # a field that is noisy at the grid's own scale folds the surface sharply everywhere
    noise = np.random.default_rng(0).normal(0.0, 0.03, r.shape)
    v, f = extract_surface(0.4 - r + noise, np.full(3, -0.5), np.full(3, 0.5))
    assert surface_quality(v, f).sharp_edge_share > 0.05
    # a block cut into thin vertical slabs, as a field striated along x decodes
    slabs = np.minimum(0.35 - np.abs(x), 0.35 - np.maximum(np.abs(y), np.abs(z)))
    fins = np.minimum(slabs, 0.012 - np.abs(((x + 0.5) % 0.08) - 0.04))
    v, f = extract_surface(fins, np.full(3, -0.5), np.full(3, 0.5))
    assert surface_quality(v, f).pieces >= 8

    big = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    crumb = trimesh.creation.icosphere(subdivisions=1, radius=0.01)
    crumb.apply_translation([1.0, 0.0, 0.0])
    both = trimesh.util.concatenate([big, crumb])  # a scrap
    q = surface_quality(both.vertices, both.faces)
    assert q.pieces == 2 and q.smallest_piece_share < 0.001


def _grid_surface(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from backend.geometry.mesh_ops import clean_mesh, decimate

    v, f = extract_surface(field, np.full(3, -0.5), np.full(3, 0.5))
    return decimate(*clean_mesh(v, f), 20_000)


def test_ripples_are_told_from_a_smooth_surface_and_from_thin_parts():
    g = np.linspace(-0.5, 0.5, 96)  # the shape model's default grid
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    ellipsoid = 0.42 - np.sqrt(x ** 2 + (y / 0.6) ** 2 + (z / 0.8) ** 2)
    smooth = surface_quality(*_grid_surface(ellipsoid))
    assert smooth.ripple_share < 0.01
    # rounded ridges 8 % of the size apart, as the committed model leaves them: one piece, no sharp edge
    ribbed = surface_quality(*_grid_surface(ellipsoid + 0.02 * np.sin(2 * np.pi * x / 0.08)))
    assert ribbed.pieces == 1 and ribbed.sharp_edge_share < 0.05
    assert ribbed.ripple_share > 0.3
    # a table: a thin top on four legs 4 % of its size across keeps its normals when smoothed
    top = np.minimum(np.minimum(0.4 - np.abs(x), 0.3 - np.abs(y)), 0.03 - np.abs(z - 0.3))
    legs = [np.minimum(0.02 - np.hypot(x - sx * 0.35, y - sy * 0.25), 0.3 - np.abs(z))
            for sx in (-1, 1) for sy in (-1, 1)]
    table = surface_quality(*_grid_surface(np.maximum.reduce([top, *legs])))
    assert table.pieces == 1 and table.ripple_share < 0.08
