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
