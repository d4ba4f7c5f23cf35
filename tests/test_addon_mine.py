"""Mine shapes from folder: a folder of photos → the backend's ``mine`` task → one object per cluster.

The bpy-free part (addon/core/mining.py: listing and reading the folder, the job's params, splitting
the combined result into import plans, the report) runs with plain pytest on a combined mesh built
here the way the backend builds it. In headless Blender: the import of such a result fed to the
session (collection, objects, properties, the one shared atlas, layout, all-or-nothing), the
operator's input errors and panel, and the operator end to end through a real backend process
whose mine pipeline is a test double (tests/addon_support/serve_mine_doubles.py) — and, when the
photo embedding is trained, through the real pipeline.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest

from addon_support.package import core
from conftest import png_bytes

try:
    import bpy
except ImportError:  # the core tests still run
    bpy = None

mining = core("mining")
jobs_mod = core("jobs")
placement = core("placement")
MeshImportError = core("mesh_arrays").MeshImportError
protocol = core("backend_api").protocol

ROOT = Path(__file__).resolve().parents[1]
needs_blender = pytest.mark.skipif(bpy is None, reason="needs the bpy module")

FOLDER_NAME = "photos"
CLUSTER_IMAGES = (["mug_1.jpg", "mug_2.jpg", "mug_3.jpg"], ["chair_1.jpg", "chair_2.jpg"])
WARNING = "the object was found with low confidence in 1 photo(s) (mug_3.jpg)"


# ------------------------------------------------------------------------------------ a fake result
def atlas_png(width: int = 64, height: int = 32) -> bytes:
    from PIL import Image

    left = np.zeros((height, width // 2, 3), np.uint8) + np.uint8([220, 40, 40])
    right = np.zeros((height, width // 2, 3), np.uint8) + np.uint8([40, 40, 220])
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate([left, right], 1), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def unit_box() -> protocol.MeshPayload:
    """A 1 × 0.5 × 0.8 box (24 vertices, 12 triangles), centred: a cluster's own frame."""
    corners = [[(-1, -1, -1), (-1, 1, -1), (1, 1, -1), (1, -1, -1)], [(-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)],
               [(-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1)], [(1, 1, -1), (-1, 1, -1), (-1, 1, 1), (1, 1, 1)],
               [(-1, 1, -1), (-1, -1, -1), (-1, -1, 1), (-1, 1, 1)], [(1, -1, -1), (1, 1, -1), (1, 1, 1), (1, -1, 1)]]
    vertices, faces, uvs = [], [], []
    for quad in corners:
        base = len(vertices)
        vertices += [(x * 0.5, y * 0.25, z * 0.4) for x, y, z in quad]
        uvs += [(0, 0), (1, 0), (1, 1), (0, 1)]
        faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    v = np.array(vertices, np.float32)
    return protocol.MeshPayload(v, np.array(faces, np.int32), v / np.linalg.norm(v, axis=1, keepdims=True),
                                np.array(uvs, np.float32), np.full((24, 4), 200, np.uint8))


def unit_octahedron() -> protocol.MeshPayload:
    """6 vertices, 8 triangles, longest side 1, centred."""
    v = np.array([(0.5, 0, 0), (-0.5, 0, 0), (0, 0.5, 0), (0, -0.5, 0), (0, 0, 0.5), (0, 0, -0.5)], np.float32)
    faces = np.array([(0, 2, 4), (2, 1, 4), (1, 3, 4), (3, 0, 4), (2, 0, 5), (1, 2, 5), (3, 1, 5), (0, 3, 5)], np.int32)
    uvs = (v[:, :2] + 0.5).astype(np.float32)
    return protocol.MeshPayload(v, faces, v * 2, uvs, np.full((6, 4), 90, np.uint8))


def combined(texture: str = "uv", job_id: str = "job-1", rejected=None) -> protocol.Message:
    """A ``mine`` result as the backend sends it: both clusters' meshes side by side along X in one
    mesh, one atlas with a tile per cluster, and the metadata that says which part is whose."""
    parts = [unit_box(), unit_octahedron()]
    offsets, tiles = (-0.75, 0.75), ([0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0])
    vertices, faces, normals, uvs, colors, clusters = [], [], [], [], [], []
    start_v = start_f = 0
    for number, (mesh, offset, tile, images) in enumerate(zip(parts, offsets, tiles, CLUSTER_IMAGES)):
        vertices.append(mesh.vertices + np.float32([offset, 0, 0]))
        faces.append(mesh.faces + start_v)
        normals.append(mesh.normals)
        uvs.append(mesh.uvs * np.float32([0.5, 1.0]) + np.float32(tile[:2]))
        colors.append(mesh.colors)
        cluster = {"name": f"cluster_{number + 1:02d}", "images": images, "reference": images[0],
                   "cameras": {n: {"azimuth": 20.0 * i, "elevation": 15.0, "fov": 30.0, "distance": 2.5,
                                   "target": [0.0, 0.0, 0.01]} for i, n in enumerate(images)},
                   "fidelity": {n: 0.91 for n in images}, "shape_from": "pooled silhouettes",
                   "judged_by": images[:2], "cut_by": images, "self_check_iou": 0.87,
                   "vertices": [start_v, start_v + len(mesh.vertices)], "faces": [start_f, start_f + len(mesh.faces)],
                   "offset": [offset, 0.0, 0.0]}
        if texture == "uv":
            cluster["uv_tile"] = tile
        clusters.append(cluster)
        start_v += len(mesh.vertices)
        start_f += len(mesh.faces)
    payload = protocol.MeshPayload(
        np.concatenate(vertices), np.concatenate(faces), np.concatenate(normals),
        np.concatenate(uvs) if texture == "uv" else None, np.concatenate(colors) if texture == "vertex" else None,
        atlas_png() if texture == "uv" else None, "smooth")
    metadata = {"method": "photo clustering (test)", "photos": 6, "clusters": clusters,
                "outliers": [{"image": "odd.jpg", "reason": "looks like no other photo's object"}],
                "rejected": rejected if rejected is not None else
                [{"image": "blank.png", "reason": "no object was found in the photo"}],
                "warnings": [WARNING], "seed": 5, "quality": "preview", "backend_version": "0.1.0",
                "timings": {"run_s": 1.5}}
    message = protocol.result(job_id, payload, metadata)
    return protocol.decode(protocol.encode(message))  # as it arrives: read-only arrays on the frames


def plan_of(message, **kwargs):
    options = {"folder": FOLDER_NAME, "target_size": 0.5, "origin": (1.0, 2.0, 0.0), "photos": 7}
    return mining.plan_mined(protocol.result_mesh(message), message.get("metadata"), **{**options, **kwargs})


def photo_folder(folder: Path, names, data: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(data if data is not None else png_bytes())
    return folder


# ------------------------------------------------------------------------------------ the folder
def test_the_photo_limit_is_the_backends():
    from backend.requests import MAX_MINE_IMAGES

    assert mining.MAX_PHOTOS == MAX_MINE_IMAGES
    assert mining.MIN_PHOTOS_LIMITS == (2, MAX_MINE_IMAGES)


def test_a_folder_lists_its_photos_sorted_without_hidden_files_or_other_files(tmp_path):
    folder = photo_folder(tmp_path / "shoot", ["b.png", "A.JPG", "c.webp", "d.jpeg", ".hidden.png", "._a.jpg"])
    (folder / "notes.txt").write_text("not a photo")
    (folder / "sub.png").mkdir()  # a folder with a photo's name
    assert [p.name for p in mining.list_photos(folder)] == ["A.JPG", "b.png", "c.webp", "d.jpeg"]
    assert [p.name for p in mining.list_photos(str(folder) + os.sep)] == ["A.JPG", "b.png", "c.webp", "d.jpeg"]


def test_folder_problems_are_clear_messages(tmp_path):
    with pytest.raises(mining.MineInputError, match="choose a folder"):
        mining.list_photos("")
    with pytest.raises(mining.MineInputError, match="does not exist"):
        mining.list_photos(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(png_bytes())
    with pytest.raises(mining.MineInputError, match="is a file, not a folder"):
        mining.list_photos(tmp_path / "file.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    (empty / ".hidden.png").write_bytes(png_bytes())
    with pytest.raises(mining.MineInputError, match="'empty' holds no photos"):
        mining.list_photos(empty)
    (empty / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(mining.MineInputError, match=r"holds 1 HEIC/HEIF photo\(s\)"):
        mining.list_photos(empty)


def test_more_photos_than_one_job_takes_say_to_split_the_folder(tmp_path):
    data = png_bytes(8, 8)
    folder = photo_folder(tmp_path / "big", [f"p{i:03d}.png" for i in range(61)], data)
    with pytest.raises(mining.MineInputError) as caught:
        mining.list_photos(folder)
    assert "holds 61 photos" in str(caught.value) and "at most 60" in str(caught.value)
    assert "split the folder" in str(caught.value)
    (folder / "p000.png").unlink()
    assert len(mining.list_photos(folder)) == 60
    single = photo_folder(tmp_path / "one", ["only.png"])
    assert [p.name for p in mining.list_photos(single)] == ["only.png"]  # one photo is mined on its own


def test_unreadable_files_are_skipped_with_the_reason_and_none_readable_is_an_error(tmp_path):
    folder = photo_folder(tmp_path / "mixed", ["a.png", "b.png"])
    (folder / "broken.jpg").write_text("not a jpeg")
    (folder / "empty.webp").write_bytes(b"")
    photos = mining.read_photos(folder)
    assert photos.folder == "mixed" and photos.names == ["a.png", "b.png"] and photos.listed == 4
    assert all(data.startswith(b"\x89PNG") for data in photos.images)
    assert [s["image"] for s in photos.skipped] == ["broken.jpg", "empty.webp"]
    assert "not a PNG, JPEG or WebP" in photos.skipped[0]["reason"] and "empty" in photos.skipped[1]["reason"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_text("text")
    with pytest.raises(mining.MineInputError, match="none of the 1 photos in 'bad' can be read: .*not a PNG"):
        mining.read_photos(bad)


def test_a_file_that_cannot_be_read_is_skipped(tmp_path, monkeypatch):
    folder = photo_folder(tmp_path / "locked", ["a.png", "b.png"])
    real_read_bytes = Path.read_bytes

    def read_bytes(path):
        if path.name == "b.png":  # as without read permission (chmod does not stop root)
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    photos = mining.read_photos(folder)
    assert photos.names == ["a.png"] and photos.listed == 2
    assert photos.skipped == [{"image": "b.png", "reason": f"image file {str(folder / 'b.png')!r} could not be read "
                                                         "(Permission denied)"}]


def test_photos_larger_than_one_message_are_refused_before_reading(tmp_path):
    folder = photo_folder(tmp_path / "huge", ["a.png", "b.png"], png_bytes() + b"\0" * 200_000)
    with pytest.raises(mining.MineInputError, match="add up to 0.4 MB.*split the folder or use smaller photos"):
        mining.read_photos(folder, max_message_bytes=mining.MESSAGE_MARGIN_BYTES + 300_000)
    assert len(mining.read_photos(folder, max_message_bytes=mining.MESSAGE_MARGIN_BYTES + 500_000).images) == 2


def test_the_submit_carries_photos_names_and_params_the_backend_accepts(tmp_path):
    from backend.config import ServiceLimits
    from backend.requests import MineRequest, parse_submit

    photos = mining.read_photos(photo_folder(tmp_path / "set", ["mug_1.png", "mug_2.png", "odd.png"]))
    common = {"quality": "default", "seed": 3, "texture": "uv", "timeout_s": 900.0}
    params = mining.mine_params(common, "preview", 3)
    assert params == {**common, "quality": "preview", "min_photos": 3}
    spec = jobs_mod.JobSpec("mine", params, images=photos.images, names=photos.names)
    message = spec.message("job-7")
    assert message.get("task") == "mine" and list(message.blobs) == ["image0", "image1", "image2"]
    assert message.get("params")["names"] == ["mug_1.png", "mug_2.png", "odd.png"]
    request = parse_submit(protocol.decode(protocol.encode(message)), ServiceLimits())
    assert isinstance(request, MineRequest)
    assert request.names == photos.names and request.min_photos == 3 and request.common.quality == "preview"
    assert jobs_mod.JobTracker().add(spec, "Mine · set").id.split("-")[-2] == "min"
    for bad in (1, 61, True, 2.5):
        with pytest.raises(mining.MineInputError, match="from 2 to 60"):
            mining.mine_params(common, "preview", bad)
    with pytest.raises(mining.MineInputError, match="quality"):
        mining.mine_params(common, "ultra", 2)


def test_names_of_the_collection_and_objects():
    assert mining.folder_label("/shots/kitchen/") == "kitchen" and mining.folder_label("/shots/kitchen") == "kitchen"
    assert mining.collection_name("kitchen") == "Mined: kitchen"
    assert mining.object_name("kitchen", "cluster_02") == "kitchen cluster_02"


# ------------------------------------------------------------------------------------ the result
def test_a_result_becomes_one_placed_object_per_cluster_sharing_the_atlas():
    message = combined()
    plan = plan_of(message)
    first, second = plan.objects
    assert [o.name for o in plan.objects] == ["photos cluster_01", "photos cluster_02"]
    assert (first.arrays.n_vertices, first.arrays.n_faces, second.arrays.n_vertices, second.arrays.n_faces) == \
        (24, 12, 6, 8)
    atlas = message.blobs["texture"]
    assert first.arrays.texture_png is second.arrays.texture_png and first.arrays.texture_png == atlas
    # each object's UVs stay inside its tile of the atlas
    assert first.arrays.loop_uvs.reshape(-1, 2)[:, 0].max() <= 0.5 + 1e-6
    assert second.arrays.loop_uvs.reshape(-1, 2)[:, 0].min() >= 0.5 - 1e-6
    # every object: longest side = target size, standing on its origin (bottom centre)
    bounds = []
    for obj in plan.objects:
        co = obj.arrays.co.reshape(-1, 3)
        size = co.max(0) - co.min(0)
        assert size.max() == pytest.approx(0.5, abs=1e-6) and co[:, 2].min() == pytest.approx(0.0, abs=1e-6)
        assert ((co.max(0) + co.min(0)) / 2)[:2] == pytest.approx([0.0, 0.0], abs=1e-6)
        bounds.append((co.min(0) + obj.location, co.max(0) + obj.location))
    assert [o.location for o in plan.objects] == placement.grid_positions(2, placement.grid_spacing(0.5), (1, 2, 0))
    assert bounds[0][1][0] < bounds[1][0][0]  # side by side, not overlapping
    assert all(lo[2] == pytest.approx(0.0, abs=1e-6) for lo, _ in bounds)


def test_each_object_records_its_clusters_photos_cameras_and_frame():
    message = combined()
    plan = plan_of(message)
    clusters = message.get("metadata")["clusters"]
    for obj, cluster in zip(plan.objects, clusters):
        props = obj.properties
        assert props["stepstone_mined_cluster"] == cluster["name"]
        assert props["stepstone_mined_images"].split("\n") == cluster["images"]
        assert props["stepstone_mined_reference"] == cluster["images"][0]
        assert json.loads(props["stepstone_mined_cameras"]) == cluster["cameras"]
        assert json.loads(props["stepstone_mined_fidelity"]) == cluster["fidelity"]
        assert props["stepstone_mined_judged_by"].split("\n") == cluster["judged_by"]
        assert props["stepstone_mined_cut_by"].split("\n") == cluster["cut_by"]
        assert props["stepstone_mined_self_check_iou"] == pytest.approx(0.87)
        assert props["stepstone_mined_shape_from"] == "pooled silhouettes"
        assert all(isinstance(v, (str, float)) for v in props.values())  # what ID properties hold
    # the frame maps the cluster's own frame (which the cameras are given in) onto the object
    [(cluster, part), _] = protocol.split_mined(protocol.result_mesh(message), message.get("metadata"))
    frame = json.loads(plan.objects[0].properties["stepstone_mined_frame"])
    assert frame["scale"] == pytest.approx(0.5)  # the box's longest side is 1 in its own frame
    local = part.vertices * frame["scale"] + np.float32(frame["offset"])
    assert np.allclose(local, plan.objects[0].arrays.co.reshape(-1, 3), atol=1e-5)


def test_the_report_counts_objects_photos_outliers_and_rejected():
    plan = plan_of(combined())
    assert plan.summary() == "Mined 2 objects from 7 photos; 1 outlier, 1 rejected"
    details = plan.details()
    assert "outliers: odd.jpg" in details and "rejected: blank.png (no object was found in the photo)" in details
    assert details.endswith(WARNING)
    # photos the add-on could not read count as rejected too
    skipped = [{"image": "notes.png", "reason": "image 'notes.png' is not a PNG, JPEG or WebP file"}]
    plan = plan_of(combined(), photos=8, skipped=skipped)
    assert plan.summary() == "Mined 2 objects from 8 photos; 1 outlier, 2 rejected"
    assert [r["image"] for r in plan.rejected] == ["notes.png", "blank.png"]
    # without the add-on's count, every photo the metadata names
    assert plan_of(combined(), photos=None).summary().startswith("Mined 2 objects from 7 photos")
    clean = plan_of(combined(rejected=[]), photos=6)
    clean.outliers, clean.warnings = [], []
    assert clean.summary() == "Mined 2 objects from 6 photos" and clean.details() == ""
    many = mining.MinedResult("f", [], 1, [{"image": f"o{i}.jpg", "reason": ""} for i in range(7)], [], [])
    assert many.details() == "outliers: o0.jpg, o1.jpg, o2.jpg, o3.jpg, o4.jpg and 2 more"
    assert mining.MinedResult("f", [object()], 1, [], [], []).summary() == "Mined 1 object from 1 photo"


def test_a_vertex_colour_result_has_no_atlas():
    plan = plan_of(combined(texture="vertex"))
    assert all(o.arrays.texture_png is None and o.arrays.loop_uvs is None for o in plan.objects)
    assert all(o.arrays.point_colors is not None for o in plan.objects)


def test_a_malformed_result_is_an_import_error():
    message = combined()
    payload, metadata = protocol.result_mesh(message), message.get("metadata")
    with pytest.raises(MeshImportError, match="lists no clusters"):
        mining.plan_mined(payload, {**metadata, "clusters": []}, folder="f", target_size=1.0)
    outside = [dict(metadata["clusters"][0], vertices=[0, 10_000])]
    with pytest.raises(MeshImportError, match="ranges outside the mesh"):
        mining.plan_mined(payload, {**metadata, "clusters": outside}, folder="f", target_size=1.0)
    missing = [{k: v for k, v in metadata["clusters"][0].items() if k != "faces"}]
    with pytest.raises(MeshImportError, match="malformed"):
        mining.plan_mined(payload, {**metadata, "clusters": missing}, folder="f", target_size=1.0)


def test_the_backends_own_combine_is_split_back_into_its_meshes():
    """The add-on's side of the contract against the backend's: ``combine`` (a real mine result's
    assembly) → message → plans whose meshes are the clusters' own, at the target size."""
    try:
        from backend.pipelines.mine.pipeline import combine
    except ImportError as exc:  # the mine pipeline is being built next to this
        pytest.skip(f"backend.pipelines.mine.pipeline cannot be imported: {exc}")
    from PIL import Image

    meshes = []
    for mesh, colour in ((unit_box(), (200, 30, 30)), (unit_octahedron(), (30, 30, 200)), (unit_box(), (30, 200, 30))):
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), colour).save(buffer, format="PNG")
        meshes.append(protocol.MeshPayload(mesh.vertices, mesh.faces, mesh.normals, mesh.uvs, None,
                                           buffer.getvalue()))
    entries = [{"name": f"cluster_{k + 1:02d}", "images": [f"p{k}.jpg"], "reference": f"p{k}.jpg", "cameras": {}}
               for k in range(3)]
    mesh = combine(meshes, entries, "uv")
    message = protocol.decode(protocol.encode(protocol.result("job-c", mesh, {"clusters": entries, "photos": 3})))
    plan = plan_of(message, target_size=2.0, photos=None)
    assert plan.summary() == "Mined 3 objects from 3 photos"
    for obj, source in zip(plan.objects, meshes):
        expected = placement.normalize_to_size(placement.Bounds.of_points(source.vertices), 2.0).apply(source.vertices)
        assert np.allclose(obj.arrays.co.reshape(-1, 3), expected, atol=1e-5)
        assert obj.arrays.texture_png is plan.objects[0].arrays.texture_png
    tiles = [e["uv_tile"] for e in entries]
    for obj, (u0, v0, u1, v1) in zip(plan.objects, tiles):
        uv = obj.arrays.loop_uvs.reshape(-1, 2)
        assert uv[:, 0].min() >= u0 - 1e-6 and uv[:, 0].max() <= u1 + 1e-6
        assert uv[:, 1].min() >= v0 - 1e-6 and uv[:, 1].max() <= v1 + 1e-6


def test_a_done_job_shows_what_it_mined():
    tracker = jobs_mod.JobTracker()
    job = tracker.add(jobs_mod.JobSpec("mine"), "Mine · photos")
    tracker.finish_import(job, "Mined 2 objects from 7 photos")
    assert job.describe() == "done: Mined 2 objects from 7 photos"
    other = tracker.add(jobs_mod.JobSpec("generate", prompt="x"), "x")
    tracker.finish_import(other)
    assert other.describe() == "done"


# ------------------------------------------------------------------------------------ Blender
def mine_backend_python(folder: Path) -> Path:
    """A stand-in "backend Python" serving the mine test double (as ``blender_env.fake_backend_python``)."""
    from addon_support import blender_env as env

    script = folder / "python"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-m" ] && [ "$2" = "backend" ] && [ "$3" = "serve" ]; then\n'
        "  shift 3\n"
        f'  exec "{env.VENV_PYTHON}" "{ROOT / "tests" / "addon_support" / "serve_mine_doubles.py"}" "$@"\n'
        "fi\n"
        f'exec "{env.VENV_PYTHON}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


_mine_python: Path | None = None


@pytest.fixture
def addon():
    """The extension with a backend whose mine pipeline is the test double; an empty scene."""
    global _mine_python
    from addon_support import blender_env as env

    env.enable_extension()
    if _mine_python is None:
        _mine_python = mine_backend_python(Path(tempfile.mkdtemp(prefix="stepstone-mine-python-")))
    env.use_backend(_mine_python, "mine")
    env.reset_scene()
    prefs = env.prefs()
    prefs.target_size, prefs.texture, prefs.quality = 1.0, "uv", "preview"
    settings = bpy.context.scene.stepstone
    settings.batch_quality, settings.mine_min_photos = "preview", 2
    return env


def mine_target(scene, location=(0.0, 0.0, 0.0), target_size=1.0, photos=7, skipped=()):
    """What the operator puts into a mine job's target."""
    return {"scene": scene.name, "scene_uid": scene.session_uid, "collection": f"Mined: {FOLDER_NAME}",
            "mode": "cursor", "location": list(location), "target_size": target_size, "name": FOLDER_NAME,
            "props": {"source_folder": f"/shots/{FOLDER_NAME}/"},
            "mine": {"folder": FOLDER_NAME, "photos": photos, "skipped": list(skipped)}}


def feed_mine_result(env, message_for, target):
    """A mine job the session believes it sent, and its result handed over as the backend would."""
    session = env.session()
    job = session.tracker.add(jobs_mod_of(env).JobSpec("mine", {"seed": 5}), f"Mine · {FOLDER_NAME}", target)
    session.tracker.mark_sent(job, generation=-1)
    session.pending.extend(session.tracker.handle(message_for(job.id)))
    session.tick()
    return job


def jobs_mod_of(env):
    return env.addon_module("core.jobs")  # the extension's own module (its JobSpec, not this file's copy)


def world_bounds(obj):
    from mathutils import Vector

    corners = np.array([tuple(obj.matrix_world @ Vector(c)) for c in obj.bound_box])
    return corners.min(0), corners.max(0)


def texture_images(obj):
    return [n.image for m in obj.data.materials for n in m.node_tree.nodes if n.type == "TEX_IMAGE"]


def datablock_counts():
    return {name: len(getattr(bpy.data, name)) for name in ("objects", "meshes", "materials", "images", "collections")}


@needs_blender
def test_a_mine_result_becomes_a_collection_of_textured_objects_side_by_side(addon):
    env = addon
    scene = bpy.context.scene
    before = datablock_counts()
    job = feed_mine_result(env, lambda job_id: combined(job_id=job_id), mine_target(scene, (2.0, -1.0, 0.5), 0.8))
    assert job.state.value == "done", job.error_message
    collection = scene.collection.children[f"Mined: {FOLDER_NAME}"]
    objects = sorted(collection.objects, key=lambda o: o.name)
    assert [o.name for o in objects] == ["photos cluster_01", "photos cluster_02"]
    assert all(o.type == "MESH" for o in objects) and job.target["collection"] == collection.name
    assert [(len(o.data.vertices), len(o.data.polygons)) for o in objects] == [(24, 12), (6, 8)]
    assert not any(o.data.validate(verbose=False, clean_customdata=False) for o in objects)
    # one atlas image, packed, used by both objects' materials
    images = {image.name for o in objects for image in texture_images(o)}
    assert len(images) == 1
    image = bpy.data.images[images.pop()]
    assert image.packed_file is not None and tuple(image.size) == (64, 32) and image.users == 2
    assert datablock_counts() == {**before, "objects": before["objects"] + 2, "meshes": before["meshes"] + 2,
                                  "materials": before["materials"] + 2, "images": before["images"] + 1,
                                  "collections": before["collections"] + 1}
    # each object's UVs lie in its own tile
    uvs = [np.empty(len(o.data.loops) * 2, np.float32) for o in objects]
    for o, uv in zip(objects, uvs):
        o.data.uv_layers.active.data.foreach_get("uv", uv)
    assert uvs[0].reshape(-1, 2)[:, 0].max() <= 0.5 + 1e-6 and uvs[1].reshape(-1, 2)[:, 0].min() >= 0.5 - 1e-6
    # placed like a multi-image reconstruct: target size, standing on the cursor, side by side
    (lo0, hi0), (lo1, hi1) = (world_bounds(o) for o in objects)
    assert max(hi0 - lo0) == pytest.approx(0.8, abs=1e-5) and max(hi1 - lo1) == pytest.approx(0.8, abs=1e-5)
    assert lo0[2] == pytest.approx(0.5, abs=1e-5) and lo1[2] == pytest.approx(0.5, abs=1e-5)
    assert hi0[0] < lo1[0]  # side by side, not overlapping, around the cursor
    assert np.mean([tuple(o.location) for o in objects], 0) == pytest.approx([2.0, -1.0, 0.5], abs=1e-5)
    # provenance: the cluster's and the job's
    metadata = combined().get("metadata")
    for obj, cluster in zip(objects, metadata["clusters"]):
        assert obj["stepstone_mined_images"].split("\n") == cluster["images"]
        assert obj["stepstone_mined_reference"] == cluster["reference"]
        assert json.loads(obj["stepstone_mined_cameras"]) == cluster["cameras"]
        assert obj["stepstone_job"] == job.id and obj["stepstone_task"] == "mine"
        assert obj["stepstone_source_folder"] == f"/shots/{FOLDER_NAME}/" and obj["stepstone_seed"] == 5
        assert obj["stepstone_method"] == "photo clustering (test)" and obj["stepstone_quality"] == "preview"
        assert obj["stepstone_output"] == "mesh" and obj["stepstone_import_s"] > 0
        assert obj["stepstone_warnings"] == WARNING
    assert json.loads(collection["stepstone_mined_outliers"]) == metadata["outliers"]
    assert json.loads(collection["stepstone_mined_rejected"]) == metadata["rejected"]
    # the report: in the job list and as a message, with the photos left out and the warning
    summary = "Mined 2 objects from 7 photos; 1 outlier, 1 rejected"
    assert job.describe() == f"done: {summary}"
    notice = env.session().notices[-1]
    assert notice.level == "WARNING" and notice.text.startswith(f"Mine · {FOLDER_NAME}: {summary} (outliers: odd.jpg")
    assert WARNING in notice.text
    env.pump(lambda: True)
    item = next(i for i in bpy.context.window_manager.stepstone_jobs if i.job_id == job.id)
    assert item.detail == f"done: {summary}"


@needs_blender
def test_mining_the_same_folder_again_makes_a_new_collection(addon):
    env = addon
    scene = bpy.context.scene
    for _ in range(2):
        job = feed_mine_result(env, lambda job_id: combined(job_id=job_id, texture="vertex"), mine_target(scene))
        assert job.state.value == "done", job.error_message
    mined = [c for c in scene.collection.children if c.name.startswith(f"Mined: {FOLDER_NAME}")]
    assert len(mined) == 2 and all(len(c.objects) == 2 for c in mined)
    obj = mined[1].objects[0]
    assert not texture_images(obj) and obj.data.color_attributes.active_color is not None  # vertex colours


@needs_blender
def test_a_malformed_or_failing_import_leaves_nothing_behind(addon, monkeypatch):
    env = addon
    scene = bpy.context.scene
    before = datablock_counts()

    def bad_ranges(job_id):
        message = combined(job_id=job_id)
        message.fields["metadata"]["clusters"][1]["faces"] = [12, 99]
        return message

    job = feed_mine_result(env, bad_ranges, mine_target(scene))
    assert job.state.value == "failed" and job.error_code == "INVALID_RESULT" and "outside" in job.error_message
    assert datablock_counts() == before
    # the second object's mesh fails: the first object, the atlas and the collection go again
    mesh_import = env.addon_module("blender.mesh_import")
    real_new_mesh, calls = mesh_import.new_mesh, []

    def failing_new_mesh(name, arrays):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("out of memory (staged)")
        return real_new_mesh(name, arrays)

    monkeypatch.setattr(mesh_import, "new_mesh", failing_new_mesh)
    job = feed_mine_result(env, lambda job_id: combined(job_id=job_id), mine_target(scene))
    assert job.state.value == "failed" and "out of memory (staged)" in job.error_message
    assert datablock_counts() == before and len(calls) == 2


@needs_blender
def test_a_result_for_a_deleted_scene_is_held_and_placed_here(addon):
    env = addon
    other = bpy.data.scenes.new("Gone")
    target = mine_target(other)
    bpy.data.scenes.remove(other)
    job = feed_mine_result(env, lambda job_id: combined(job_id=job_id), target)
    assert job.state.value == "held"
    assert bpy.ops.stepstone.place_held(job_id=job.id) == {"FINISHED"}
    assert job.state.value == "done" and job.summary.startswith("Mined 2 objects")
    assert len(bpy.context.scene.collection.children[f"Mined: {FOLDER_NAME}"].objects) == 2


@needs_blender
def test_the_operator_refuses_bad_folders_with_clear_messages(addon, tmp_path):
    env = addon
    before = set(env.session().tracker.jobs)
    with pytest.raises(RuntimeError, match="choose a folder"):
        bpy.ops.stepstone.mine_folder(directory="")
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.stepstone.mine_folder(directory=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="holds no photos"):
        bpy.ops.stepstone.mine_folder(directory=str(tmp_path / "empty"))
    big = photo_folder(tmp_path / "big", [f"p{i:02d}.png" for i in range(61)], png_bytes(8, 8))
    with pytest.raises(RuntimeError, match="61 photos.*split the folder"):
        bpy.ops.stepstone.mine_folder(directory=str(big))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_text("text")
    with pytest.raises(RuntimeError, match="none of the 1 photos .* can be read"):
        bpy.ops.stepstone.mine_folder(directory=str(broken))
    assert set(env.session().tracker.jobs) == before


@needs_blender
def test_the_batch_panel_has_the_mine_button_and_option(addon):
    from addon_support import layout_dump

    dump = layout_dump.load()
    record = dump.draw_panel("STEPSTONE_PT_batch", dump.SizedContext(300))
    items = list(record.items())
    assert "stepstone.mine_folder" in [i.name for i in items if i.kind == "operator"]
    assert "Mine shapes from folder" in [i.text for i in items if i.kind == "operator"]
    assert "mine_min_photos" in [i.name for i in items if i.kind == "prop"]
    limit = dump.addon_core("text_layout").TextWidth(300).chars()
    assert dump.render(record, limit)[1] == 0  # nothing cut at the narrow sidebar width
    assert bpy.types.STEPSTONE_OT_mine_folder.bl_label == "Mine shapes from folder"


def mined_collections():
    return [c for c in bpy.context.scene.collection.children if c.name.startswith("Mined: ")]


@needs_blender
def test_the_operator_mines_a_folder_through_the_backend(addon, tmp_path):
    env = addon
    folder = photo_folder(tmp_path / "kitchen", ["mug_1.png", "mug_2.png", "mug_3.png", "chair_1.png",
                                                 "chair_2.png", "odd.png", "blank_1.png", ".hidden.png"])
    (folder / "notes.png").write_text("not an image")
    (folder / "readme.txt").write_text("not a photo")
    bpy.context.scene.cursor.location = (0.0, 3.0, 0.0)
    before = set(env.session().tracker.jobs)
    assert bpy.ops.stepstone.mine_folder(directory=str(folder) + os.sep) == {"FINISHED"}
    [job] = [j for j in env.session().tracker.jobs.values() if j.id not in before]
    assert job.spec.task == "mine" and job.label == "Mine · kitchen"
    assert job.spec.names == ["blank_1.png", "chair_1.png", "chair_2.png", "mug_1.png", "mug_2.png", "mug_3.png",
                              "odd.png"]
    assert job.spec.params["min_photos"] == 2 and job.spec.params["quality"] == "preview"
    assert bpy.context.scene.stepstone.mine_folder == str(folder) + os.sep  # the file browser opens there next
    env.pump(lambda: job.final or job.state.value == "held", timeout=60)
    assert job.state.value == "done", job.error_message
    assert job.stage == "assemble"  # the backend's stages were streamed
    [collection] = mined_collections()
    assert collection.name == "Mined: kitchen"
    objects = sorted(collection.objects, key=lambda o: o.name)
    assert [o.name for o in objects] == ["kitchen cluster_01", "kitchen cluster_02"]
    assert objects[0]["stepstone_mined_images"] == "chair_1.png\nchair_2.png"
    assert objects[1]["stepstone_mined_reference"] == "mug_1.png"
    assert len({image.name for o in objects for image in texture_images(o)}) == 1  # the shared atlas
    (lo0, hi0), (lo1, hi1) = (world_bounds(o) for o in objects)
    assert hi0[0] < lo1[0] and lo0[1] > 2.0  # side by side at the cursor
    assert job.summary == "Mined 2 objects from 8 photos; 1 outlier, 2 rejected"
    assert [r["image"] for r in json.loads(collection["stepstone_mined_rejected"])] == ["notes.png", "blank_1.png"]


@needs_blender
def test_nothing_mined_is_a_job_error_and_makes_nothing(addon, tmp_path):
    env = addon
    folder = photo_folder(tmp_path / "loose", ["mug_1.png", "mug_2.png", "chair_1.png"])
    bpy.context.scene.stepstone.mine_min_photos = 3
    before = set(env.session().tracker.jobs)
    assert bpy.ops.stepstone.mine_folder(directory=str(folder)) == {"FINISHED"}
    [job] = [j for j in env.session().tracker.jobs.values() if j.id not in before]
    env.pump(lambda: job.final, timeout=60)
    assert job.state.value == "failed" and job.error_code == "NO_OBJECT"
    assert "no shape was mined" in job.error_message and "at least 3" in job.error_message
    assert any(n.level == "ERROR" and "no shape was mined" in n.text for n in env.session().notices)
    assert not mined_collections()


REAL_EMBEDDING = ROOT / "backend" / "weights" / "photo_embedding"


@needs_blender
@pytest.mark.slow  # starts the real backend (torch) and runs the real pipeline on CPU
@pytest.mark.skipif(not (REAL_EMBEDDING.with_suffix(".json").is_file()
                         and REAL_EMBEDDING.with_suffix(".safetensors").is_file()),
                    reason="backend/weights/photo_embedding.{json,safetensors} is not trained yet "
                           "(scripts/train_photo_embedding.py): the real mine pipeline is unavailable")
def test_the_real_backend_mines_a_one_photo_folder(tmp_path):
    from addon_support import blender_env as env

    env.enable_extension()
    env.use_backend(env.VENV_PYTHON, "real")
    try:
        env.reset_scene()
        env.prefs().texture, env.prefs().target_size = "uv", 1.0
        bpy.context.scene.stepstone.batch_quality = "preview"
        folder = tmp_path / "one"
        folder.mkdir()
        (folder / "mug.png").write_bytes((ROOT / "examples" / "mug.png").read_bytes())
        before = set(env.session().tracker.jobs)
        assert bpy.ops.stepstone.mine_folder(directory=str(folder)) == {"FINISHED"}
        [job] = [j for j in env.session().tracker.jobs.values() if j.id not in before]
        env.pump(lambda: job.final, timeout=300)
        assert job.state.value == "done", job.error_message
        [collection] = mined_collections()
        [obj] = collection.objects
        assert obj.name == "one cluster_01" and obj["stepstone_mined_images"] == "mug.png"
        assert len(obj.data.polygons) > 50 and obj["stepstone_warnings"]  # one photo: reconstructed alone, warned
    finally:
        env.use_backend(env.shared_fake_backend_python(), "full")  # the next module's backend
