
import numpy as np
import pytest
import trimesh

from backend.geometry.mesh_files import MeshFileError, export_mesh, load_mesh
from backend.geometry.mesh_ops import vertex_normals
from backend.geometry.charts import unwrap
from backend.geometry.texture import bake
from backend.images import encode_png
from backend.protocol import MeshPayload


def box_mesh():
    tm = trimesh.creation.box(extents=(1.0, 0.5, 0.25))  # x wide, y medium, z thin
    return MeshPayload(tm.vertices.astype(np.float32), tm.faces.astype(np.int32))


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_roundtrip_keeps_z_up(tmp_path, suffix):
    mesh = box_mesh()
    path = export_mesh(mesh, tmp_path / f"box{suffix}")
    back = load_mesh(path, max_triangles=1000)
    extents = back.vertices.max(0) - back.vertices.min(0)
    np.testing.assert_allclose(extents, [1.0, 0.5, 0.25], atol=1e-5)


def test_glb_is_y_up_on_disk(tmp_path):
    path = export_mesh(box_mesh(), tmp_path / "box.glb")
    raw = trimesh.load(path, force="mesh")
    np.testing.assert_allclose(raw.extents, [1.0, 0.25, 0.5], atol=1e-5)


@pytest.mark.parametrize("shading", ["smooth", "flat"])
def test_a_flat_shaded_mesh_is_written_without_normals_so_viewers_shade_its_faces_flat(tmp_path, shading):
    import json
    import struct

    tm = trimesh.creation.box()
    mesh = MeshPayload(tm.vertices.astype(np.float32), tm.faces.astype(np.int32),
                       vertex_normals(tm.vertices, tm.faces).astype(np.float32), shading=shading)
    data = export_mesh(mesh, tmp_path / "box.glb").read_bytes()
    header = json.loads(data[20:20 + struct.unpack("<I", data[12:16])[0]])
    attributes = header["meshes"][0]["primitives"][0]["attributes"]
    assert ("NORMAL" in attributes) == (shading == "smooth")


def test_textured_obj_writes_mtl_and_png(tmp_path):
    mesh = box_mesh()
    mapping, faces, uvs = unwrap(mesh.vertices, mesh.faces)
    vertices = mesh.vertices[mapping]
    texture = encode_png(np.full((16, 16, 3), 200, np.uint8))
    export_mesh(MeshPayload(vertices, faces, uvs=uvs, texture_png=texture), tmp_path / "t.obj")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["t.mtl", "t.obj", "t_material_0.png"]
    assert "map_Kd t_material_0.png" in (tmp_path / "t.mtl").read_text()


def test_unsupported_and_broken_files(tmp_path):
    with pytest.raises(MeshFileError, match="unsupported output format"):
        export_mesh(box_mesh(), tmp_path / "x.fbx")
    (tmp_path / "bad.ply").write_bytes(b"ply\nthis is not a ply file")
    with pytest.raises(MeshFileError):
        load_mesh(tmp_path / "bad.ply", max_triangles=10)
    with pytest.raises(MeshFileError, match="does not exist"):
        load_mesh(tmp_path / "missing.obj", max_triangles=10)
    export_mesh(box_mesh(), tmp_path / "big.ply")
    with pytest.raises(MeshFileError, match="limit"):
        load_mesh(tmp_path / "big.ply", max_triangles=5)


def test_baked_texture_reproduces_the_colour_function():
    tm = trimesh.creation.icosphere(3)
    mapping, faces, uvs = unwrap(tm.vertices.astype(np.float32), tm.faces.astype(np.int32))
    vertices = tm.vertices[mapping].astype(np.float32)
    normals = vertex_normals(vertices, faces)

    def colour(points, normals):
        return np.clip(points * 0.5 + 0.5, 0, 1)   # position → RGB

    size = 256
    image = bake(vertices, faces, uvs, normals, colour, size)
    # sample the texture at each vertex's UV (row 0 of the image is v = 1)
    cols = np.clip(np.round(uvs[:, 0] * size - 0.5), 0, size - 1).astype(int)
    rows = np.clip(np.round((1 - uvs[:, 1]) * size - 0.5), 0, size - 1).astype(int)
    sampled = image[rows, cols] / 255.0
    error = np.abs(sampled - colour(vertices, normals)).mean()
    assert error < 0.03
