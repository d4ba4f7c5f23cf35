"""Mesh cleanup (backend/geometry/mesh_ops.py)."""

import numpy as np
import pytest
import trimesh

from backend.errors import PipelineError
from backend.geometry.mesh_ops import clean_mesh


def _spheres(*parts: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """One mesh of separate spheres, each given as (radius, x offset)."""
    meshes = [trimesh.creation.icosphere(subdivisions=2, radius=r).apply_translation([x, 0.0, 0.0]) for r, x in parts]
    mesh = trimesh.util.concatenate(meshes)
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32)


def _count_parts(vertices, faces) -> int:
    return len(trimesh.Trimesh(vertices, faces, process=False).split(only_watertight=False))


def test_small_real_parts_stay_and_crumbs_go():
    # areas relative to the body: a leg-sized piece 1 %, a crumb 0.01 %
    vertices, faces = _spheres((0.5, 0.0), (0.05, 1.0), (0.005, -1.0))
    cleaned_v, cleaned_f = clean_mesh(vertices, faces)
    assert _count_parts(cleaned_v, cleaned_f) == 2
    assert cleaned_v[:, 0].max() > 0.9 and cleaned_v[:, 0].min() > -0.6  # the piece at +1 stays, the crumb at -1 goes
    assert cleaned_v.dtype == np.float32 and cleaned_f.dtype == np.int32
    assert _count_parts(*clean_mesh(vertices, faces, keep_fraction=0.05)) == 1


def test_an_empty_surface_is_a_named_error():
    with pytest.raises(PipelineError, match="empty"):
        clean_mesh(np.zeros((3, 3), np.float32), np.array([[0, 0, 0]], np.int32))


def test_taubin_smoothing_removes_ripples_and_keeps_the_volume():
    from backend.geometry.mesh_ops import smooth_taubin

    sphere = trimesh.creation.icosphere(subdivisions=4)
    rng = np.random.default_rng(0)
    bumpy = sphere.vertices * (1 + 0.05 * rng.standard_normal((len(sphere.vertices), 1)))
    smoothed = smooth_taubin(bumpy.astype(np.float32), sphere.faces.astype(np.int32), iterations=20)
    spread = lambda v: np.linalg.norm(v, axis=1).std()  # noqa: E731 - the ripples' size
    assert spread(smoothed) < 0.3 * spread(bumpy)
    volume = trimesh.Trimesh(smoothed, sphere.faces).volume
    assert volume == pytest.approx(trimesh.Trimesh(bumpy, sphere.faces).volume, rel=0.1)


def test_smoothing_over_a_distance_takes_as_many_steps_as_the_mesh_is_fine():
    from backend.geometry.mesh_ops import smooth_over_distance

    coarse, fine = (trimesh.creation.icosphere(subdivisions=k) for k in (3, 5))  # 1,280 and 20,480 faces
    moved = []
    for sphere in (coarse, fine):
        # ripples of one angular period whatever the tessellation
        longitude = np.arctan2(sphere.vertices[:, 1], sphere.vertices[:, 0])
        bumpy = sphere.vertices * (1 + 0.03 * np.sin(12 * longitude))[:, None]
        smoothed = smooth_over_distance(bumpy.astype(np.float32), sphere.faces.astype(np.int32), 20)
        spread = lambda v: np.linalg.norm(v, axis=1).std()  # noqa: E731
        moved.append(spread(smoothed) / spread(bumpy))
    # the same ripples are flattened about as much on both: 1 step on the coarse one, 20 on the fine one
    assert moved[0] < 0.9 and moved[1] < 0.9 and abs(moved[0] - moved[1]) < 0.15  # 20 steps on both: 0.21
    assert np.array_equal(smooth_over_distance(coarse.vertices, coarse.faces, 0), coarse.vertices.astype(np.float32))


def test_cleaning_merges_repeated_vertices_and_drops_broken_faces():
    # two triangles of a square given as a triangle soup (corners repeated), plus a repeated
    # face, a face with a corner twice, a zero-area face and a face on a non-finite vertex
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0],
                         [0, 0, 0], [1, 1, 0], [0, 1, 0],
                         [2, 2, 0], [np.nan, 0, 0]], np.float32)
    faces = np.array([[0, 1, 2], [3, 4, 5], [0, 1, 2], [0, 0, 1], [0, 1, 6], [0, 1, 7]], np.int32)
    faces[4] = [0, 2, 6]  # (0,0), (1,1), (2,2): on one line
    cleaned_v, cleaned_f = clean_mesh(vertices, faces)
    assert len(cleaned_v) == 4 and len(cleaned_f) == 2
    assert np.isfinite(cleaned_v).all()
    mesh = trimesh.Trimesh(cleaned_v, cleaned_f, process=False)
    assert mesh.area == pytest.approx(1.0)
    assert len(mesh.split(only_watertight=False)) == 1  # the soup's two halves are joined
    np.testing.assert_allclose(mesh.face_normals[:, 2], 1.0)  # winding kept
