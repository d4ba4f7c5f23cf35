"""Reconstruct's *Output: Points* (issue 21, item 1): a point-cloud result becomes a vertices-only object.

The packing is tested without bpy; the import, the preview it replaces, the operator's params and
the panels run in headless Blender, with results handed to the session as if the backend had sent
them (no pipeline makes point clouds in the test doubles).
"""

import numpy as np
import pytest

from addon_support.package import core

try:
    import bpy
except ImportError:  # the packing tests still run
    bpy = None

mesh_arrays = core("mesh_arrays")
placement = core("placement")
protocol = core("backend_api").protocol

needs_blender = pytest.mark.skipif(bpy is None, reason="needs the bpy module")

N = 40


def cloud(n=N, seed=0):
    """Points of a 2 × 1 × 0.5 box floating off the origin, RGBA colours (alpha varies), normals."""
    rng = np.random.default_rng(seed)
    points = (rng.random((n, 3), dtype=np.float32) * np.float32([2.0, 1.0, 0.5]) + np.float32([5, -3, 1]))
    colors = rng.integers(0, 256, (n, 4), dtype=np.uint8)
    normals = np.tile(np.float32([0, 0, 1]), (n, 1))
    return points, colors, normals


# ------------------------------------------------------------------------------------ packing (no bpy)
def test_pack_points_turns_rgba_and_rgb_bytes_into_flat_float_colours():
    points, colors, _ = cloud(5)
    arrays = mesh_arrays.pack_points(points, colors=colors)
    assert arrays.n_vertices == 5 and arrays.n_faces == 0 and arrays.corner_verts.size == 0
    assert arrays.point_colors.dtype == np.float32 and arrays.point_colors.shape == (20,)
    assert np.allclose(arrays.point_colors.reshape(-1, 4), colors / 255.0, atol=1e-7)
    rgb = mesh_arrays.pack_points(points, colors=colors[:, :3]).point_colors.reshape(-1, 4)
    assert np.allclose(rgb[:, :3], colors[:, :3] / 255.0, atol=1e-7) and np.all(rgb[:, 3] == 1.0)  # opaque
    assert mesh_arrays.pack_points(points).point_colors is None
    for bad in (colors.astype(np.float32), colors[:4], colors[:, :2]):
        with pytest.raises(mesh_arrays.MeshImportError, match="colours"):
            mesh_arrays.pack_points(points, colors=bad)


def test_a_point_result_is_packed_as_loose_vertices_never_as_triangles():
    points, colors, normals = cloud(6)
    payload = protocol.MeshPayload(points, np.zeros((0, 3), np.int32), normals, None, colors)
    transform = placement.VertexTransform(scale=2.0, offset=(1.0, 0.0, -1.0))
    arrays = mesh_arrays.pack_payload(payload, transform)
    assert arrays.n_faces == 0 and arrays.loop_uvs is None and arrays.texture_png is None
    assert np.allclose(arrays.co.reshape(-1, 3), points * 2 + [1, 0, -1], atol=1e-6)
    assert np.allclose(arrays.point_colors.reshape(-1, 4), colors / 255.0, atol=1e-7)
    with pytest.raises(mesh_arrays.MeshImportError, match="degenerate"):
        mesh_arrays.pack_mesh(payload)  # why import_result must not take this path
    box = protocol.MeshPayload(points[:3], np.array([[0, 1, 2]], np.int32))
    assert mesh_arrays.pack_payload(box).n_faces == 1


# ------------------------------------------------------------------------------------ Blender
@pytest.fixture
def addon():
    from addon_support import blender_env as env

    env.enable_extension()
    env.use_backend(env.shared_fake_backend_python(), "full")
    env.reset_scene()
    env.prefs().target_size = 1.0
    return env


def fake_job(env, target):
    """A reconstruct job the session believes it sent (the messages are then fed to it by hand)."""
    session = env.session()
    jobs_mod = env.addon_module("core.jobs")
    job = session.tracker.add(jobs_mod.JobSpec("reconstruct", {"output": "points", "seed": 3}), "cloud.png", target)
    session.tracker.mark_sent(job, generation=-1)
    return job


def feed(env, message):
    session = env.session()
    session.pending.extend(session.tracker.handle(message))
    session.tick()


def colour_values(mesh):
    attribute = mesh.color_attributes.active_color
    values = np.empty(len(mesh.vertices) * 4, np.float32)
    attribute.data.foreach_get("color_srgb", values)
    return values.reshape(-1, 4)


def world_vertices(obj):
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    matrix = np.array(obj.matrix_world)
    return co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]


@needs_blender
def test_a_point_result_replaces_its_preview_as_a_coloured_vertices_only_object(addon):
    env = addon
    scene = bpy.context.scene
    target = {"scene": scene.name, "scene_uid": scene.session_uid, "collection": "Stepstone", "mode": "cursor",
              "location": [1.0, 2.0, 0.5], "target_size": 0.5, "name": "cloud",
              "props": {"source_image": "/tmp/cloud.png"}}
    job = fake_job(env, target)
    points, colors, normals = cloud()
    # two point previews (RGB colours) refill one object; the colour attribute is replaced, not added to
    feed(env, protocol.preview_points(job.id, points[:10], colors[:10, :3], step=1))
    feed(env, protocol.preview_points(job.id, points[:20], colors[20:40, :3], step=2))
    preview = env.addon_module("blender.results").job_object(job)
    assert preview is not None and len(preview.data.vertices) == 20 and preview.show_wire
    assert [a.name for a in preview.data.color_attributes] == ["Color"]
    assert np.allclose(colour_values(preview.data), np.c_[colors[20:40, :3] / 255.0, np.ones(20)], atol=0.5 / 255)
    preview_pointer, meshes_before = preview.as_pointer(), len(bpy.data.meshes)

    feed(env, protocol.result(job.id, protocol.MeshPayload(points, np.zeros((0, 3), np.int32), normals, None, colors),
                              {"method": "outline", "backend_version": "9.9.9", "seed": 3}))
    assert job.state.value == "done", job.error_message
    objects = [o for o in bpy.data.objects if o.get("stepstone_job") == job.id]
    assert len(objects) == 1 and objects[0].as_pointer() == preview_pointer  # the preview, not a second object
    obj = objects[0]
    mesh = obj.data
    assert len(bpy.data.meshes) == meshes_before  # the preview's mesh went when the result's came
    assert (len(mesh.vertices), len(mesh.edges), len(mesh.polygons)) == (N, 0, 0)
    assert not mesh.validate(verbose=False, clean_customdata=False)
    # colours: a point-domain attribute, active and rendered, holding the RGBA bytes that were sent
    attribute = mesh.color_attributes.active_color
    assert (attribute.name, attribute.domain) == ("Color", "POINT")
    assert mesh.color_attributes.render_color_index == mesh.color_attributes.active_color_index
    assert np.allclose(colour_values(mesh), colors / 255.0, atol=0.5 / 255)
    # placed as a mesh would be: longest side 0.5, standing on the cursor, vertex order kept
    transform = placement.normalize_to_size(placement.Bounds.of_points(points), 0.5)
    expected = transform.apply(points) + np.float32([1.0, 2.0, 0.5])
    assert np.allclose(world_vertices(obj), expected, atol=1e-5)
    lo, hi = expected.min(0), expected.max(0)
    assert max(hi - lo) == pytest.approx(0.5, abs=1e-5) and lo[2] == pytest.approx(0.5, abs=1e-5)
    # named, recorded and collected like a mesh result; nothing to shade
    assert obj.name == "cloud" and not obj.show_wire and len(mesh.materials) == 0
    assert obj["stepstone_output"] == "points" and obj["stepstone_task"] == "reconstruct"
    assert obj["stepstone_method"] == "outline" and obj["stepstone_backend_version"] == "9.9.9"
    assert obj["stepstone_seed"] == 3 and obj["stepstone_source_image"] == "/tmp/cloud.png"
    assert obj["stepstone_import_s"] > 0 and "stepstone_warnings" not in obj
    assert [c.name for c in obj.users_collection] == ["Stepstone"]


@needs_blender
def test_a_point_result_fills_a_placeholder_like_a_mesh(addon):
    env = addon
    bpy.ops.mesh.primitive_cube_add(location=(0, 3, 0))
    holder = bpy.context.active_object
    holder.scale = (2.0, 2.0, 2.0)
    bpy.context.view_layer.update()
    scene = bpy.context.scene
    job = fake_job(env, {"scene": scene.name, "scene_uid": scene.session_uid, "collection": "Stepstone",
                         "mode": "placeholder", "placeholder": holder.name, "name": "filled", "props": {}})
    points, colors, _ = cloud()
    feed(env, protocol.result(job.id, protocol.MeshPayload(points, np.zeros((0, 3), np.int32), None, None, colors),
                              {}))
    assert job.state.value == "done", job.error_message
    obj = bpy.data.objects["filled"]
    assert np.allclose(np.array(obj.matrix_world), np.array(holder.matrix_world), atol=1e-5)
    assert np.array(obj.dimensions).max() == pytest.approx(4.0, abs=1e-4)  # the 2 m box fills the 4 m cube
    assert holder.hide_viewport and len(obj.data.polygons) == 0


@needs_blender
def test_reconstruct_sends_output_points_only_when_points_is_chosen(addon):
    env = addon
    settings = bpy.context.scene.stepstone
    assert settings.reconstruct_output == "MESH"  # the default: what an older backend also makes
    image = bpy.data.images.new("painted", 16, 16)
    sent = {}
    for output in ("POINTS", "MESH"):
        settings.reconstruct_output = output
        before = set(env.session().tracker.jobs)
        assert bpy.ops.stepstone.reconstruct_image_editor(image_name=image.name) == {"FINISHED"}
        [job] = [j for j in env.session().tracker.jobs.values() if j.id not in before]
        sent[output] = dict(job.spec.params)
        env.session().cancel(job.id)  # only what is sent matters here
    assert sent["POINTS"]["output"] == "points" and "output" not in sent["MESH"]
    assert sent["POINTS"]["method"] == sent["MESH"]["method"] == "auto"
    settings.reconstruct_output = "MESH"


@needs_blender
def test_output_is_drawn_next_to_method_in_both_reconstruct_panels(addon):
    from addon_support import layout_dump

    for panel in ("STEPSTONE_PT_reconstruct", "STEPSTONE_PT_image_editor"):
        props = [i.name for i in layout_dump.load().draw_panel(panel, bpy.context).items() if i.kind == "prop"]
        assert "reconstruct_output" in props, (panel, props)
        assert props.index("reconstruct_output") == props.index("reconstruct_method") + 1, (panel, props)


@needs_blender
def test_a_folder_batch_sends_output_points_for_every_image_only_when_points_is_chosen(addon, tmp_path):
    from conftest import png_bytes

    env = addon
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).write_bytes(png_bytes())
    settings = bpy.context.scene.stepstone
    assert settings.batch_output == "MESH"  # the default, as Reconstruct's
    settings.batch_source, settings.batch_folder, settings.batch_placement = "FOLDER", str(folder), "GRID"
    settings.reconstruct_output = "MESH"  # the batch's own Output counts, not the panel's
    sent = {}
    for output in ("POINTS", "MESH"):
        settings.batch_output = output
        before = set(env.session().tracker.jobs)
        assert bpy.ops.stepstone.batch() == {"FINISHED"}
        jobs = [j for j in env.session().tracker.jobs.values() if j.id not in before]
        sent[output] = [dict(j.spec.params) for j in jobs]
        for job in jobs:
            env.session().cancel(job.id)  # only what is sent matters here
    assert len(sent["POINTS"]) == len(sent["MESH"]) == 3
    assert all(p["output"] == "points" for p in sent["POINTS"]) and not any("output" in p for p in sent["MESH"])
    assert all(p["method"] == settings.batch_method for p in sent["POINTS"] + sent["MESH"])
    settings.batch_output, settings.batch_source = "MESH", "TEXT"


@needs_blender
def test_the_batch_panel_draws_output_under_method_only_for_an_image_folder(addon):
    from addon_support import layout_dump

    settings = bpy.context.scene.stepstone
    try:
        for source in ("TEXT", "FILE", "FOLDER"):
            settings.batch_source = source
            props = [i.name for i in layout_dump.load().draw_panel("STEPSTONE_PT_batch", bpy.context).items()
                     if i.kind == "prop"]
            if source == "FOLDER":
                assert props.index("batch_output") == props.index("batch_method") + 1, (source, props)
            else:
                assert "batch_output" not in props and "batch_method" not in props, (source, props)
    finally:
        settings.batch_source = "TEXT"
