"""The real-object benchmark's manifest and the mesh conversion of ``scripts/fetch_real_meshes.py``
(offline: nothing here downloads)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import trimesh
from script_modules import load_script

fetch = load_script("fetch_real_meshes")
MANIFEST = fetch.load_manifest()
REQUIRED = ("name", "kind", "registry", "package", "version", "path", "licence", "sha256", "up",
            "front", "coloured", "notes")


def test_manifest_fields_are_complete():
    for entry in MANIFEST:
        missing = [key for key in REQUIRED if key not in entry]
        assert not missing, f"{entry.get('name')}: missing {missing}"
        assert re.fullmatch(r"[a-z][a-z0-9_]*", entry["name"]), entry["name"]
        assert entry["registry"] in ("pypi", "debian", "npm")
        assert entry["package"] and entry["version"] and entry["path"] and entry["kind"]
        assert entry["licence"].strip(), entry["name"]
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), entry["name"]
        assert entry["up"] in fetch.AXES and entry["front"] in (None, *fetch.AXES)
        assert entry["coloured"] in ("texture", "vertex", "material", "none")
        assert all(isinstance(p, str) and p for p in entry.get("extra_files", []))


def test_manifest_is_large_and_varied():
    names = [entry["name"] for entry in MANIFEST]
    assert len(names) == len(set(names)), "names must be unique"
    assert len(MANIFEST) >= 20
    assert len({entry["kind"] for entry in MANIFEST}) >= 6


def test_manifest_keeps_the_held_out_sources_out():
    """assimp's test models and Blender's Suzanne are reserved for a separate hidden check."""
    for entry in MANIFEST:
        text = " ".join(str(value) for value in entry.values()).lower()
        assert "assimp" not in text, entry["name"]
        assert "suzanne" not in text and "monkey" not in text, entry["name"]


def tall_box() -> trimesh.Trimesh:
    """A box 1 x 2 x 6 standing along source +X, off the origin: its tall side marks "up"."""
    box = trimesh.creation.box(extents=(6.0, 1.0, 2.0))
    box.apply_translation((10.0, -3.0, 4.0))
    return box


@pytest.mark.parametrize("up", ["+X", "-X", "+Y", "-Y", "+Z", "-Z"])
def test_orientation_matrix_is_a_rotation_taking_up_to_gltf_y(up):
    rotation = fetch.orientation_matrix(up, None)[:3, :3]
    assert np.allclose(rotation @ rotation.T, np.eye(3))
    assert np.isclose(np.linalg.det(rotation), 1.0)
    assert np.allclose(rotation @ np.array(fetch.AXES[up], float), (0, 1, 0))


def test_front_goes_to_gltf_z():
    rotation = fetch.orientation_matrix("+Z", "+X")[:3, :3]
    assert np.allclose(rotation @ (1, 0, 0), (0, 0, 1))
    with pytest.raises(ValueError):
        fetch.orientation_matrix("+Z", "-Z")


def test_glb_round_trip_is_one_centred_unit_mesh_with_up_along_y(tmp_path):
    """Up +X source → glTF +Y (what Blender's importer turns into +Z); longest side 1; centred;
    two parts (one plain, one with face colours) end up as primitives of a single glTF mesh."""
    box = tall_box()
    second = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    second.apply_translation((10.0, -3.0, 4.0))
    second.visual.face_colors = (200, 40, 40, 255)
    meshes = fetch.normalise([box, second], "+X", None)
    path = tmp_path / "mesh.glb"
    fetch.write_single_mesh_glb(meshes, path, "tall")

    gltf, _ = fetch.split_glb(path.read_bytes())
    assert len(gltf["meshes"]) == 1 and len(gltf["meshes"][0]["primitives"]) == 2
    assert gltf["scenes"][gltf["scene"]]["nodes"] == [0] and len(gltf["nodes"]) == 1

    loaded = trimesh.load(path, force="scene")
    lo, hi = loaded.bounds
    extents = hi - lo
    assert np.isclose(extents.max(), 1.0)
    assert np.allclose((lo + hi) / 2, 0.0, atol=1e-9)
    assert np.argmax(extents) == 1, "the tall side must be glTF +Y"
    assert np.allclose(sorted(extents), [1 / 6, 2 / 6, 1.0])


def test_stackgl_and_3ds_readers(tmp_path):
    """The two formats trimesh cannot read: a stack.gl module and a minimal 3DS file."""
    module = "exports.positions=[[0,0,0],[1,0,0],[0,1,0]];\nexports.cells=[[0,1,2]];\n"
    mesh = fetch.read_stackgl_js(module)
    assert mesh.vertices.shape == (3, 3) and mesh.faces.tolist() == [[0, 1, 2]]

    import struct

    vertices = struct.pack("<H9f", 3, 0, 0, 0, 1, 0, 0, 0, 0, 1)
    faces = struct.pack("<H4H", 1, 0, 1, 2, 0)
    chunk = lambda cid, body: struct.pack("<HI", cid, 6 + len(body)) + body  # noqa: E731
    trimesh_chunk = chunk(0x4100, chunk(0x4110, vertices) + chunk(0x4120, faces))
    data = chunk(0x4D4D, chunk(0x3D3D, chunk(0x4000, b"tri\0" + trimesh_chunk)))
    mesh = fetch.read_3ds(data)
    assert mesh.faces.tolist() == [[0, 1, 2]] and np.allclose(mesh.vertices[2], (0, 0, 1))


def test_nested_archive_path_and_sha_check(tmp_path):
    """``outer!inner`` paths reach into an archive inside the package; a wrong sha256 is refused."""
    import hashlib
    import io
    import tarfile

    mesh_bytes = b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tf:
        info = tarfile.TarInfo("data/tri.off")
        info.size = len(mesh_bytes)
        tf.addfile(info, io.BytesIO(mesh_bytes))
    outer = io.BytesIO()
    with tarfile.open(fileobj=outer, mode="w:gz") as tf:
        info = tarfile.TarInfo("pkg/data.tar.gz")
        info.size = len(inner.getvalue())
        tf.addfile(info, io.BytesIO(inner.getvalue()))
    archive = tmp_path / "pkg-1.0.tgz"
    archive.write_bytes(outer.getvalue())

    entry = {"path": "pkg/data.tar.gz!data/tri.off", "sha256": hashlib.sha256(mesh_bytes).hexdigest()}
    mesh_path = fetch.extract_files(entry, archive, tmp_path / "out")
    assert len(fetch.load_source(mesh_path)[0].faces) == 1
    with pytest.raises(fetch.FetchError, match="sha256 mismatch"):
        fetch.extract_files({**entry, "sha256": "0" * 64}, archive, tmp_path / "bad")
