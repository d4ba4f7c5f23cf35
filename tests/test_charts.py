"""UV charts by projection (backend/geometry/charts.py)."""

import numpy as np
import pytest
import trimesh

from backend.geometry.charts import unwrap
from backend.geometry.raster import covered_pixels


def _signed_uv_areas(uvs, faces):
    t = uvs[faces].astype(np.float64)
    return 0.5 * ((t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1])
                  - (t[:, 2, 0] - t[:, 0, 0]) * (t[:, 1, 1] - t[:, 0, 1]))


def _overlapping_texel_share(uvs, faces, size=1024):
    """Texels claimed by more than one triangle / texels covered (shared edges count once)."""
    tri, px, py, _ = covered_pixels(uvs.astype(np.float64)[faces] * size - 0.5, size, size, eps=1e-6)
    covered = len(np.unique(py * size + px))
    return 1.0 - covered / len(px)


def _bumpy_sphere(seed=0, amount=0.02):
    """A sphere with ripples of 2 % of its radius at every vertex: rougher than the shape model's
    surfaces after cleaning."""
    sphere = trimesh.creation.icosphere(subdivisions=4)
    rng = np.random.default_rng(seed)
    vertices = sphere.vertices * (1 + amount * rng.standard_normal((len(sphere.vertices), 1)))
    return vertices.astype(np.float32), sphere.faces.astype(np.int32)


MESHES = {
    "sphere": lambda: (trimesh.creation.icosphere(subdivisions=3).vertices.astype(np.float32),
                       trimesh.creation.icosphere(subdivisions=3).faces.astype(np.int32)),
    "bumpy sphere": _bumpy_sphere,
    "torus": lambda: (trimesh.creation.torus(0.6, 0.2).vertices.astype(np.float32),
                      trimesh.creation.torus(0.6, 0.2).faces.astype(np.int32)),
    "box": lambda: (trimesh.creation.box([1.0, 0.5, 2.0]).vertices.astype(np.float32),
                    trimesh.creation.box([1.0, 0.5, 2.0]).faces.astype(np.int32)),
}


@pytest.mark.parametrize("name", MESHES)
def test_the_atlas_keeps_the_surface_and_lays_it_flat_without_overlap(name):
    vertices, faces = MESHES[name]()
    mapping, new_faces, uvs = unwrap(vertices, faces)
    # same triangles, same order, corner for corner
    np.testing.assert_array_equal(vertices[mapping][new_faces], vertices[faces])
    assert uvs.dtype == np.float32 and new_faces.dtype == np.int32
    assert uvs.min() >= 0.0 and uvs.max() <= 1.0
    areas = _signed_uv_areas(uvs, new_faces)
    assert (areas > 0).all(), "a face seen from outside keeps its counter-clockwise winding in UV"
    assert _overlapping_texel_share(uvs, new_faces) < 1e-3
    # charts fill a fair part of the square (xatlas filled 0.56-0.71 on real-split results)
    assert areas.sum() > 0.4


def test_ripples_do_not_cut_the_surface_into_crumbs():
    vertices, faces = _bumpy_sphere()
    mapping, _, _ = unwrap(vertices, faces)
    # every chart border duplicates its vertices: few charts, few duplicates
    assert len(mapping) < 1.25 * len(vertices)


def test_the_front_chart_shows_the_photo_side_upright():
    # a box whose front (-Y) face is split in two: left half and right half, top and bottom
    box = trimesh.creation.box([2.0, 1.0, 1.0])
    vertices, faces = box.vertices.astype(np.float32), box.faces.astype(np.int32)
    mapping, new_faces, uvs = unwrap(vertices, faces)
    normals = box.face_normals
    front = normals[:, 1] < -0.9
    corners = new_faces[front].reshape(-1)
    xyz, uv = vertices[mapping][corners], uvs[corners]
    # u grows with x (left to right as the camera sees it) and v with z (up)
    assert np.corrcoef(xyz[:, 0], uv[:, 0])[0, 1] > 0.99
    assert np.corrcoef(xyz[:, 2], uv[:, 1])[0, 1] > 0.99


def test_no_faces_is_refused():
    with pytest.raises(ValueError, match="no faces"):
        unwrap(np.zeros((3, 3), np.float32), np.zeros((0, 3), np.int32))


def test_a_surface_too_rough_for_padding_still_fits_the_square():
    # 80k faces whose vertices jump by 5 % of the radius: about 14,000 charts, more than fit with
    # two texels of padding each
    sphere = trimesh.creation.icosphere(subdivisions=6)
    rng = np.random.default_rng(0)
    vertices = (sphere.vertices * (1 + 0.05 * rng.standard_normal((len(sphere.vertices), 1)))).astype(np.float32)
    mapping, faces, uvs = unwrap(vertices, sphere.faces.astype(np.int32))
    assert uvs.min() >= 0.0 and uvs.max() <= 1.0
    np.testing.assert_array_equal(vertices[mapping][faces], vertices[sphere.faces])
