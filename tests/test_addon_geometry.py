"""Mesh packing for foreach_set and placement math (no bpy)."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from addon_support.package import core

mesh_arrays = core("mesh_arrays")
placement = core("placement")
protocol = core("backend_api").protocol


def quad_mesh(uvs=True, colors=True):
    v = np.array([[0, 0, 0], [2, 0, 0], [2, 0, 1], [0, 0, 1]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32) if uvs else None
    col = np.array([[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255], [255, 255, 255, 128]], np.uint8) if colors else None
    return protocol.MeshPayload(v, f, None, uv, col, None, "flat")


def test_pack_mesh_gives_flat_contiguous_arrays_with_loop_uvs_and_colours():
    arrays = mesh_arrays.pack_mesh(quad_mesh())
    assert arrays.n_vertices == 4 and arrays.n_faces == 2 and not arrays.smooth
    for name in ("co", "corner_verts", "loop_starts", "loop_uvs", "point_colors"):
        a = getattr(arrays, name)
        assert a.ndim == 1 and a.flags["C_CONTIGUOUS"], name
    assert arrays.co.dtype == np.float32 and arrays.corner_verts.dtype == np.int32
    assert arrays.loop_starts.tolist() == [0, 3]
    assert arrays.corner_verts.tolist() == [0, 1, 2, 0, 2, 3]
    # loop 4 is corner "2" of the second triangle → vertex 2's UV (1, 1)
    assert arrays.loop_uvs.reshape(-1, 2)[4].tolist() == [1.0, 1.0]
    assert arrays.point_colors.reshape(-1, 4)[3].tolist() == pytest.approx([1, 1, 1, 128 / 255])


def test_pack_mesh_applies_the_placement_transform():
    transform = placement.VertexTransform(0.5, (1.0, 2.0, 3.0))
    arrays = mesh_arrays.pack_mesh(quad_mesh(), transform)
    assert arrays.co.reshape(-1, 3)[1].tolist() == [2.0, 2.0, 3.0]


@pytest.mark.parametrize("breakage,match", [
    (lambda m: m.vertices.__setitem__((1, 0), np.nan), "NaN"),
    (lambda m: m.faces.__setitem__((0, 0), 7), "face indices"),
    (lambda m: setattr(m, "uvs", np.zeros((2, 2), np.float32)), "rows for 4 vertices"),
])
def test_invalid_payloads_raise_a_named_error(breakage, match):
    mesh = quad_mesh()
    breakage(mesh)
    with pytest.raises(mesh_arrays.MeshImportError, match=match):
        mesh_arrays.validate_payload(mesh)


def test_payload_from_message_validates():
    mesh = quad_mesh()
    mesh.vertices[0, 0] = np.inf
    message = protocol.result("j1", mesh, {})
    with pytest.raises(mesh_arrays.MeshImportError, match="NaN or infinity"):
        mesh_arrays.payload_from_message(message)


def test_pack_points_rejects_nan_and_packs_loose_vertices():
    arrays = mesh_arrays.pack_points(np.ones((5, 3), np.float32))
    assert arrays.n_vertices == 5 and arrays.n_faces == 0
    with pytest.raises(mesh_arrays.MeshImportError):
        mesh_arrays.pack_points(np.full((2, 3), np.nan, np.float32))


def test_unweld_by_uv_splits_seams_and_round_trips():
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    corner_verts = np.array([0, 1, 2, 0, 2, 1])
    loop_uvs = np.array([[0, 0], [1, 0], [0, 1], [0.5, 0.5], [0, 1], [1, 0]], np.float32)  # vertex 0 has 2 UVs
    v, f, uv = mesh_arrays.unweld_by_uv(verts, corner_verts, loop_uvs)
    assert len(v) == 4 and f.shape == (2, 3) and uv.shape == (4, 2)
    # every loop keeps its position and UV
    np.testing.assert_array_equal(v[f.reshape(-1)], verts[corner_verts])
    np.testing.assert_array_equal(uv[f.reshape(-1)], loop_uvs)


def test_normalize_to_size_longest_side_and_bottom_centre_at_origin():
    bounds = placement.Bounds((-1.0, 0.0, 2.0), (3.0, 1.0, 4.0))
    t = placement.normalize_to_size(bounds, 2.0)
    placed = t.apply_bounds(bounds)
    assert max(placed.size) == pytest.approx(2.0)
    assert placed.bottom_center == pytest.approx((0.0, 0.0, 0.0))
    with pytest.raises(placement.PlacementError):
        placement.normalize_to_size(bounds, 0)


def test_fit_into_box_is_uniform_centred_and_on_the_floor():
    shape = placement.Bounds((0.0, 0.0, 0.0), (2.0, 1.0, 1.0))
    box = placement.Bounds((-1.0, -1.0, -0.5), (1.0, 1.0, 0.5))
    t = placement.fit_into_box(shape, box)
    placed = t.apply_bounds(shape)
    assert t.scale == pytest.approx(1.0)  # limited by x (2 → 2) and z (1 → 1)
    assert placed.lo[2] == pytest.approx(-0.5)
    assert placed.bottom_center[:2] == pytest.approx((0.0, 0.0))
    for i in range(3):
        assert box.lo[i] - 1e-6 <= placed.lo[i] and placed.hi[i] <= box.hi[i] + 1e-6


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(*[st.floats(-100, 100)] * 3), min_size=2, max_size=20),
       st.floats(0.01, 10))
@example(points=[(0.0, 0.0, 27.0), (0.0, 1.192092896e-07, 27.0)], target=0.01)  # found by hypothesis
@example(points=[(100.0, 0.0, 100.0), (100.0, 0.0, 100.001)], target=10.0)
def test_normalize_property(points, target):
    pts = np.array(points, np.float32)
    bounds = placement.Bounds.of_points(pts)
    placed = placement.Bounds.of_points(placement.normalize_to_size(bounds, target).apply(pts))
    assert np.isfinite(placed.lo).all() and np.isfinite(placed.hi).all()
    if bounds.longest_side > 1e-3:
        assert placed.longest_side == pytest.approx(target, rel=1e-3)
    assert abs(placed.lo[2]) <= 1e-3 * max(1.0, target)


def test_grid_positions_are_centred_distinct_and_in_reading_order():
    spots = placement.grid_positions(5, 1.5, origin=(10.0, 0.0, 1.0))
    assert len(spots) == 5 and len(set(spots)) == 5
    assert spots[0][0] < spots[1][0] < spots[2][0] and spots[3][1] > spots[0][1]
    xs = sorted({s[0] for s in spots})
    assert (xs[0] + xs[-1]) / 2 == pytest.approx(10.0) and all(s[2] == 1.0 for s in spots)
    assert placement.grid_positions(0, 1.0) == []
    with pytest.raises(placement.PlacementError):
        placement.grid_positions(3, 0.0)


def test_empty_bounds_spans_display_size():
    assert placement.empty_bounds(0.5).size == (1.0, 1.0, 1.0)


def test_clean_faces_drops_and_counts_degenerate_and_duplicate_triangles_keeping_order():
    faces = np.array([[0, 1, 2], [2, 2, 3], [3, 1, 0], [2, 0, 1], [1, 2, 3], [0, 3, 1]], np.int32)
    kept, degenerate, duplicate = mesh_arrays.clean_faces(faces)
    # [2,2,3] repeats a vertex; [2,0,1] repeats {0,1,2}; [0,3,1] repeats {0,1,3} (orientation does not matter)
    assert kept.tolist() == [[0, 1, 2], [3, 1, 0], [1, 2, 3]] and (degenerate, duplicate) == (1, 2)
    clean = np.array([[0, 1, 2]], np.int32)
    assert mesh_arrays.clean_faces(clean)[0] is clean


def test_clean_faces_with_indices_beyond_the_packed_key_range():
    big = 1 << 22
    faces = np.array([[0, 1, big], [big, 0, 1], [5, 6, 7]], np.int32)
    kept, degenerate, duplicate = mesh_arrays.clean_faces(faces)
    assert kept.tolist() == [[0, 1, big], [5, 6, 7]] and duplicate == 1


def test_pack_mesh_reports_dropped_triangles_and_refuses_an_all_degenerate_mesh():
    mesh = quad_mesh()
    mesh.faces = np.array([[0, 1, 2], [0, 2, 3], [2, 0, 1], [3, 3, 0]], np.int32)
    arrays = mesh_arrays.pack_mesh(mesh)
    assert arrays.n_faces == 2 and (arrays.dropped_degenerate, arrays.dropped_duplicate) == (1, 1)
    mesh.faces = np.array([[1, 1, 2]], np.int32)
    with pytest.raises(mesh_arrays.MeshImportError, match="degenerate"):
        mesh_arrays.pack_mesh(mesh)
