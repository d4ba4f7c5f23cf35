"""The one mesh-finishing path (`backend.geometry.finish.finish_mesh`) every pipeline ends in."""

import numpy as np
import pytest
import trimesh

from backend.geometry.finish import finish_mesh


def sphere():
    tm = trimesh.creation.icosphere(subdivisions=2)
    return tm.vertices.astype(np.float32), tm.faces.astype(np.int32)


def position_colour(points, normals):
    assert points.dtype == np.float64 and normals.dtype == np.float64
    return np.clip(points * 0.5 + 0.5, 0, 1)


def test_uv_mode_unwraps_bakes_and_keeps_the_output_frame_in_step():
    vertices, faces = sphere()
    steps = []
    mesh = finish_mesh(vertices, faces, position_colour, texture="uv", texture_size=32,
                       out_vertices=vertices * 3 + 1, on_step=steps.append)
    assert steps == ["unwrap", "bake"]
    assert mesh.texture_png.startswith(b"\x89PNG") and mesh.colors is None
    assert len(mesh.uvs) == len(mesh.vertices) == len(mesh.normals) > len(vertices)  # seams duplicate vertices
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    # every returned position is an output-frame copy of a colour-frame vertex
    assert np.allclose(np.linalg.norm((mesh.vertices - 1) / 3, axis=1), 1.0, atol=1e-5)


def test_given_uvs_and_normals_are_kept():
    vertices, faces = sphere()
    uvs = np.clip(vertices[:, :2] * 0.5 + 0.5, 0, 1).astype(np.float32)
    normals = -vertices
    steps = []
    mesh = finish_mesh(vertices, faces, position_colour, texture="uv", texture_size=16, uvs=uvs, normals=normals,
                       on_step=steps.append)
    assert steps == ["bake"]
    assert np.array_equal(mesh.uvs, uvs) and np.array_equal(mesh.normals, normals)


def test_vertex_mode_gives_rgba_bytes_and_none_gives_geometry_only():
    vertices, faces = sphere()
    coloured = finish_mesh(vertices, faces, position_colour, texture="vertex", texture_size=16)
    assert coloured.colors.shape == (len(vertices), 4) and (coloured.colors[:, 3] == 255).all()
    top = vertices[:, 2].argmax()
    assert coloured.colors[top, 2] == 255 and coloured.uvs is None and coloured.texture_png is None
    for texture, colour in (("none", position_colour), ("uv", None), ("vertex", None)):
        bare = finish_mesh(vertices, faces, colour, texture=texture, texture_size=16)
        assert bare.uvs is None and bare.colors is None and bare.texture_png is None
        assert np.allclose(np.linalg.norm(bare.normals, axis=1), 1.0, atol=1e-5)


def test_an_unknown_texture_mode_is_refused():
    vertices, faces = sphere()
    with pytest.raises(ValueError, match="texture"):
        finish_mesh(vertices, faces, position_colour, texture="png", texture_size=16)


def test_points_are_area_uniform_on_the_surface_with_unit_normals_and_colours_and_no_unwrap():
    vertices, faces = sphere()
    steps = []
    cloud = finish_mesh(vertices, faces, position_colour, texture="uv", texture_size=32, out_vertices=vertices * 2,
                        on_step=steps.append, points=3000, seed=4)
    assert steps == [] and cloud.is_points and cloud.faces.shape == (0, 3)
    assert cloud.vertices.shape == (3000, 3) and cloud.uvs is None and cloud.texture_png is None
    radius = np.linalg.norm(cloud.vertices, axis=1)
    assert radius.min() > 1.9 and radius.max() < 2.001  # on the (output-frame) surface, not inside it
    assert np.allclose(np.linalg.norm(cloud.normals, axis=1), 1.0, atol=1e-5)
    assert (np.einsum("ij,ij->i", cloud.normals, cloud.vertices) > 0).all()  # outward
    # coloured where the colour function is defined: at the colour-frame point (half the output one)
    expected = np.clip(cloud.vertices / 2 * 0.5 + 0.5, 0, 1)
    assert np.abs(cloud.colors[:, :3] / 255.0 - expected).max() < 0.03 and (cloud.colors[:, 3] == 255).all()
    # area-uniform: each octant of the sphere gets about an eighth of the points
    octants = np.bincount((cloud.vertices > 0) @ np.array([1, 2, 4]), minlength=8)
    assert octants.min() > 3000 / 8 * 0.8
    again = finish_mesh(vertices, faces, position_colour, texture="uv", texture_size=32, out_vertices=vertices * 2,
                        points=3000, seed=4)
    assert np.array_equal(again.vertices, cloud.vertices)  # repeatable
    plain = finish_mesh(vertices, faces, position_colour, texture="none", texture_size=32, points=100)
    assert plain.colors is None and len(plain.vertices) == 100


def test_the_texture_error_is_small_for_a_smooth_colour_and_grows_when_the_texture_is_coarse():
    from backend.geometry.finish import baked_texture_error

    vertices, faces = sphere()
    fine = finish_mesh(vertices, faces, position_colour, texture="uv", texture_size=256)
    coarse = finish_mesh(vertices, faces, position_colour, texture="uv", texture_size=16)
    fine_error, coarse_error = baked_texture_error(fine, position_colour), baked_texture_error(coarse, position_colour)
    assert fine_error < 3.0 and coarse_error > 2 * fine_error
    # a texture that says something else is far off
    assert baked_texture_error(fine, lambda p, n: 1.0 - position_colour(p, n)) > 40
    vertex = finish_mesh(vertices, faces, position_colour, texture="vertex", texture_size=16)
    assert baked_texture_error(vertex, position_colour) is None
