"""The extension inside headless Blender (bpy 5.0) against a real backend process.

The backend is started by the add-on's own supervisor. Its "Python" is a stand-in that runs a real
server whose pipelines are test doubles (tests/addon_support/pipelines.py): textured boxes, echoed
prompts, painted copies of a stylized mesh — so every workflow, including the ones whose real
pipelines do not exist yet, is driven end to end through operators, the protocol and the timer.
"""

import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from mathutils import Matrix, Vector  # noqa: E402

from addon_support import blender_env as env  # noqa: E402
from conftest import png_bytes  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def addon():
    env.enable_extension()
    env.use_backend(env.shared_fake_backend_python(), "full")
    yield  # the backend keeps running for the next module; the add-on stops it when Python exits


@pytest.fixture(autouse=True)
def clean_scene():
    env.reset_scene()
    prefs = env.prefs()
    prefs.target_size, prefs.texture, prefs.quality = 1.0, "uv", "preview"
    yield


def wait_done(jobs, timeout=40.0):
    env.pump(lambda: all(j.final or j.state.value == "held" for j in jobs), timeout)
    return jobs


def new_jobs(before):
    return [j for j in env.session().tracker.jobs.values() if j.id not in before]


def run(operator, **kwargs):
    before = set(env.session().tracker.jobs)
    assert operator(**kwargs) == {"FINISHED"}
    jobs = new_jobs(before)
    assert jobs, "the operator made no job"
    return wait_done(jobs)


def image_empty(path: Path, name="ref"):
    image = bpy.data.images.load(str(path))
    obj = bpy.data.objects.new(name, None)
    obj.empty_display_type = "IMAGE"
    obj.data = image
    bpy.context.scene.collection.objects.link(obj)
    obj.select_set(True)
    return obj


def world_bounds(obj):
    corners = np.array([tuple(obj.matrix_world @ Vector(c)) for c in obj.bound_box])
    return corners.min(0), corners.max(0)


def result_object(job):
    obj = bpy.data.objects.get(job.target["object"])
    assert obj is not None and obj["stepstone_job"] == job.id
    return obj


def test_registration_ui_timer_and_status():
    assert bpy.app.timers.is_registered(env.addon_module("blender.session").timer)
    for name in ("reconstruct_selected", "reconstruct_files", "reconstruct_image_editor", "text_to_shape",
                 "stylize_selected", "batch", "cancel_job", "cancel_batch", "retry_failed", "check_backend",
                 "start_backend", "stop_backend"):
        assert hasattr(bpy.ops.stepstone, name), name
    assert "STEPSTONE_PT_main" in dir(bpy.types) and "STEPSTONE_PT_image_editor" in dir(bpy.types)
    assert hasattr(bpy.types.Scene, "stepstone") and hasattr(bpy.types.WindowManager, "stepstone_jobs")


def test_reconstruct_selected_image_lands_at_cursor_with_texture_and_properties(tmp_path):
    path = tmp_path / "teapot.png"
    path.write_bytes(png_bytes(80, 60))
    image_empty(path)
    bpy.context.scene.cursor.location = (3.0, -2.0, 0.5)
    env.prefs().target_size = 0.5
    [job] = run(bpy.ops.stepstone.reconstruct_selected)
    assert job.state.value == "done", job.error_message
    assert job.preview_step >= 2  # a point preview and a mesh preview streamed in before the result
    obj = result_object(job)
    mesh = obj.data
    assert (len(mesh.vertices), len(mesh.polygons)) == (24, 12)
    assert mesh.uv_layers.active is not None and not obj.show_wire
    assert not mesh.validate(verbose=False, clean_customdata=False)  # nothing for Blender to repair
    assert not any(p.use_smooth for p in mesh.polygons)  # the result asked for flat shading
    # placement: longest side = target size, standing on the cursor
    lo, hi = world_bounds(obj)
    assert max(hi - lo) == pytest.approx(0.5, abs=1e-5)
    assert lo[2] == pytest.approx(0.5, abs=1e-5)
    assert ((lo + hi) / 2)[:2] == pytest.approx([3.0, -2.0], abs=1e-5)
    # material: Principled BSDF fed by a packed image texture
    material = mesh.materials[0]
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    tex = bsdf.inputs["Base Color"].links[0].from_node
    assert tex.type == "TEX_IMAGE" and tex.image.packed_file is not None and tuple(tex.image.size) == (32, 32)
    # custom properties and collection
    assert obj["stepstone_source_image"].endswith("teapot.png")
    assert obj["stepstone_task"] == "reconstruct" and obj["stepstone_seed"] == 0
    assert obj["stepstone_backend_version"] == "0.1.0" and obj["stepstone_method"] == "test-double textured box"
    assert obj["stepstone_timings"]["run_s"] > 0 and obj["stepstone_import_s"] > 0
    assert [c.name for c in obj.users_collection] == ["Stepstone"]
    assert "Stepstone" in [c.name for c in bpy.context.scene.collection.children]
    assert env.session().status().state in ("connected", "busy")


def test_several_images_as_one_multiview_job_or_separate_jobs(tmp_path):
    for i in range(2):
        (tmp_path / f"view{i}.png").write_bytes(png_bytes())
        image_empty(tmp_path / f"view{i}.png", f"view{i}")
    settings = bpy.context.scene.stepstone
    settings.multiview = True
    [job] = run(bpy.ops.stepstone.reconstruct_selected)
    assert len(job.spec.images) == 2 and job.spec.params["multiview"] is True and job.state.value == "done"
    settings.multiview = False
    settings.reconstruct_method = "silhouette"
    jobs = run(bpy.ops.stepstone.reconstruct_selected)
    assert len(jobs) == 2 and all(j.state.value == "done" for j in jobs)
    assert all(j.spec.params["method"] == "silhouette" for j in jobs)
    settings.reconstruct_method = "auto"
    centres = [tuple(np.round(sum(world_bounds(result_object(j))) / 2, 4)) for j in jobs]
    assert centres[0] != centres[1]  # laid out side by side, not on top of each other


def test_text_to_shape_records_prompt_seed_and_history():
    settings = bpy.context.scene.stepstone
    settings.prompt, settings.negative_prompt, settings.seed = "a red chair", "blurry", 42
    [job] = run(bpy.ops.stepstone.text_to_shape)
    assert job.state.value == "done", job.error_message
    obj = result_object(job)
    assert obj.name == "a red chair" and obj["stepstone_prompt"] == "a red chair"
    assert obj["stepstone_negative_prompt"] == "blurry" and obj["stepstone_seed"] == 42
    assert job.metadata["prompt"] == "a red chair"
    assert settings.history[0].prompt == "a red chair" and settings.history[0].seed == 42
    settings.prompt = ""
    bpy.ops.stepstone.use_prompt(index=0)
    assert settings.prompt == "a red chair"
    settings.prompt = "   "
    with pytest.raises(RuntimeError, match="Type a prompt first"):
        bpy.ops.stepstone.text_to_shape()


def test_the_panel_is_redrawn_when_only_the_backend_status_changes():
    """Issue 20, finding 7: after the last job ended the status line kept "busy" for seconds."""
    bpy.context.scene.stepstone.prompt = "a box"
    run(bpy.ops.stepstone.text_to_shape)
    session = env.session()
    session.tick()
    assert not session.ui_is_stale(time.monotonic())
    shown = session.status()
    # a later pong changes the status line (busy → idle, as a rule) and nothing else; the job may
    # have ended already on a loaded machine, so the new line is whichever differs from the shown one
    idle, busy = "connected · cpu · v0.1.0", "busy: 1 running, 0 queued · cpu · v0.1.0"
    text = busy if shown.text == idle else idle
    session.status = lambda: type(shown)("connected", text, shown.server)
    try:
        assert session.ui_is_stale(time.monotonic())
        session.tick()
        assert not session.ui_is_stale(time.monotonic())
    finally:
        del session.status


def test_vertex_colour_results_get_a_colour_attribute_material():
    env.prefs().texture = "vertex"
    bpy.context.scene.stepstone.prompt = "a painted box"
    [job] = run(bpy.ops.stepstone.text_to_shape)
    mesh = result_object(job).data
    assert mesh.color_attributes.active_color.name == "Color" and mesh.color_attributes.active_color.domain == "POINT"
    colors = np.empty(len(mesh.vertices) * 4, np.float32)
    mesh.color_attributes.active_color.data.foreach_get("color_srgb", colors)
    assert colors.reshape(-1, 4)[:, 3].min() == pytest.approx(1.0) and np.ptp(colors.reshape(-1, 4)[:, 0]) > 0.5
    bsdf = next(n for n in mesh.materials[0].node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert bsdf.inputs["Base Color"].links[0].from_node.type == "VERTEX_COLOR"
    assert all(p.use_smooth for p in mesh.polygons)


def test_result_replaces_a_placeholder_keeping_its_transform():
    holder = bpy.data.objects.new("Holder", bpy.data.meshes.new("holder"))
    bpy.context.scene.collection.objects.link(holder)
    holder.data.from_pydata([(-1, -0.5, 0), (1, -0.5, 0), (1, 0.5, 0), (-1, 0.5, 0),
                             (-1, -0.5, 2), (1, -0.5, 2), (1, 0.5, 2), (-1, 0.5, 2)], [], [(0, 1, 2, 3)])
    holder.matrix_world = Matrix.LocRotScale(Vector((5, 1, 0)), Matrix.Rotation(0.5, 4, "Z").to_quaternion(),
                                             Vector((2, 2, 2)))
    holder.select_set(True)
    bpy.context.view_layer.objects.active = holder
    settings = bpy.context.scene.stepstone
    settings.placement, settings.prompt = "PLACEHOLDER", "a box"
    [job] = run(bpy.ops.stepstone.text_to_shape)
    obj = result_object(job)
    assert np.allclose(np.array(obj.matrix_world), np.array(holder.matrix_world), atol=1e-5)
    local = np.array([tuple(c) for c in obj.bound_box])
    lo, hi = local.min(0), local.max(0)
    assert lo[2] == pytest.approx(0.0, abs=1e-5)  # on the placeholder's floor
    assert np.all(lo >= [-1 - 1e-5, -0.5 - 1e-5, -1e-5]) and np.all(hi <= [1 + 1e-5, 0.5 + 1e-5, 2 + 1e-5])
    assert max(hi - lo) == pytest.approx(2.0, abs=1e-4)  # the box (2 × 1 × 0.5) fills the 2 m width
    assert holder.hide_viewport and holder.hide_render
    settings.placement = "PLACEHOLDER"
    bpy.context.view_layer.objects.active = None
    with pytest.raises(RuntimeError, match="placeholder"):
        bpy.ops.stepstone.text_to_shape()


def test_a_non_uniformly_scaled_placeholder_keeps_the_results_proportions():
    """Issue 20, finding 6: a cube scaled (0.2, 0.4, 0.5) used to stretch the result with it."""
    bpy.ops.mesh.primitive_cube_add(location=(0, 3, 0))
    holder = bpy.context.active_object
    holder.scale = (0.2, 0.4, 0.5)
    bpy.context.view_layer.update()
    settings = bpy.context.scene.stepstone
    settings.placement, settings.prompt = "PLACEHOLDER", "a box"
    [job] = run(bpy.ops.stepstone.text_to_shape)
    obj = result_object(job)
    size = np.array(obj.dimensions)
    assert np.allclose(size / size.max(), np.array([2.0, 1.0, 0.5]) / 2.0, atol=1e-4)  # the box's own 2 : 1 : 0.5
    assert np.all(size <= np.array(holder.dimensions) + 1e-5)                          # inside the placeholder
    assert size[0] == pytest.approx(holder.dimensions[0], abs=1e-4)                    # and as large as fits
    assert np.allclose(np.array(obj.matrix_world.to_translation()), (0, 3, 0), atol=1e-5)


def test_stylize_selected_mesh_round_trips_geometry_in_place():
    bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8, location=(1, 2, 3))
    sphere = bpy.context.active_object
    sphere.rotation_euler = (0.3, 0, 0.2)
    bpy.context.view_layer.update()
    settings = bpy.context.scene.stepstone
    settings.stylize_prompt, settings.stylize_mode = "weathered bronze", "texture_shape"
    [job] = run(bpy.ops.stepstone.stylize_selected)
    assert job.state.value == "done", job.error_message
    obj = result_object(job)
    sphere.data.calc_loop_triangles()
    assert len(obj.data.polygons) == len(sphere.data.loop_triangles)
    assert job.metadata["mode"] == "texture_shape" and obj["stepstone_source_object"] == sphere.name
    assert np.allclose(np.array(obj.matrix_world), np.array(sphere.matrix_world), atol=1e-5)
    lo, hi = world_bounds(obj)
    slo, shi = world_bounds(sphere)
    assert np.allclose(lo, slo, atol=1e-4) and np.allclose(hi, shi, atol=1e-4)
    assert obj.data.color_attributes.active_color is not None and obj.data.uv_layers.active is not None
    assert sphere.hide_viewport


def test_batch_from_text_block_fills_its_own_collection_on_a_grid():
    text = bpy.data.texts.new("props")
    text.write("a chair\n# skipped comment\n\na table\na lamp\n")
    settings = bpy.context.scene.stepstone
    settings.batch_source, settings.batch_text, settings.batch_placement = "TEXT", text, "GRID"
    jobs = run(bpy.ops.stepstone.batch)
    assert [j.label for j in jobs] == ["a chair", "a table", "a lamp"]
    assert all(j.state.value == "done" for j in jobs)
    batch = env.session().tracker.batches[jobs[0].batch]
    assert env.session().tracker.batch_counts(batch.id) == {"done": 3}
    objects = [result_object(j) for j in jobs]
    collection = objects[0].users_collection[0]
    assert collection.name.startswith("Stepstone Batch") and collection.name.endswith("props")
    assert all(o.users_collection[0] == collection for o in objects)
    centres = {tuple(np.round(((lambda b: (b[0] + b[1]) / 2)(world_bounds(o)))[:2], 3)) for o in objects}
    assert len(centres) == 3


def test_batch_from_csv_file_and_image_folder_with_placeholders(tmp_path):
    (tmp_path / "list.csv").write_text("prompt,seed,name\na stool,7,Stool\na crate,,\n", encoding="utf-8")
    settings = bpy.context.scene.stepstone
    settings.batch_source, settings.batch_file = "FILE", str(tmp_path / "list.csv")
    jobs = run(bpy.ops.stepstone.batch)
    assert [result_object(j).name for j in jobs] == ["Stool", "a crate"]
    assert result_object(jobs[0])["stepstone_seed"] == 7
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).write_bytes(png_bytes())
    holders = []
    for i in range(2):
        empty = bpy.data.objects.new(f"Spot{i}", None)
        empty.location = (10 * (i + 1), 0, 0)
        empty.empty_display_size = 0.25
        bpy.context.scene.collection.objects.link(empty)
        empty.select_set(True)
        holders.append(empty)
    settings.batch_source, settings.batch_folder, settings.batch_placement = "FOLDER", str(folder), "PLACEHOLDERS"
    settings.batch_method, settings.batch_quality = "silhouette", "preview"   # the batch's own, not the panel's
    jobs = run(bpy.ops.stepstone.batch)
    assert [j.label for j in jobs] == ["a", "b", "c"] and all(j.state.value == "done" for j in jobs)
    assert all(j.spec.params["method"] == "silhouette" and j.metadata["quality"] == "preview" for j in jobs)
    for job, holder in zip(jobs, holders):
        lo, hi = world_bounds(result_object(job))
        assert lo[2] == pytest.approx(-0.25, abs=1e-5) and max(hi - lo) <= 0.5 + 1e-5
        assert ((lo + hi) / 2)[0] == pytest.approx(holder.location.x, abs=1e-4)
    lo, hi = world_bounds(result_object(jobs[2]))
    assert max(hi - lo) == pytest.approx(1.0, abs=1e-5)  # no third placeholder: grid at target size


def test_batch_input_errors_are_reports(tmp_path):
    settings = bpy.context.scene.stepstone
    settings.batch_source, settings.batch_text = "TEXT", None
    with pytest.raises(RuntimeError, match="choose a text block"):
        bpy.ops.stepstone.batch()
    (tmp_path / "bad.csv").write_text("prompt,seed\nchair,x\n")
    settings.batch_source, settings.batch_file = "FILE", str(tmp_path / "bad.csv")
    with pytest.raises(RuntimeError, match="row 2: seed 'x'"):
        bpy.ops.stepstone.batch()


def test_result_lands_in_the_scene_that_asked():
    main = bpy.context.scene
    other = bpy.data.scenes.new("Other")
    other.stepstone.prompt = "a lamp"
    before = set(env.session().tracker.jobs)
    with bpy.context.temp_override(scene=other):
        assert bpy.ops.stepstone.text_to_shape() == {"FINISHED"}
    [job] = wait_done(new_jobs(before))
    obj = result_object(job)
    assert obj.name in other.objects and obj.name not in main.objects


def test_preview_left_in_a_deleted_scene_is_linked_where_the_held_result_is_placed(tmp_path):
    other = bpy.data.scenes.new("Doomed")
    path = tmp_path / "p.png"
    path.write_bytes(png_bytes())
    before = set(env.session().tracker.jobs)
    with bpy.context.temp_override(scene=other):
        bpy.ops.stepstone.reconstruct_files(filepath=str(path))
    [job] = new_jobs(before)
    env.pump(lambda: job.preview_step >= 2)  # the mesh preview exists, in scene "Doomed"
    bpy.data.scenes.remove(other)
    wait_done([job])
    assert job.state.value == "held"
    bpy.ops.stepstone.place_held(job_id=job.id)
    assert result_object(job).name in bpy.context.scene.objects


def test_result_for_a_deleted_scene_is_held_and_placed_on_request():
    other = bpy.data.scenes.new("Gone")
    other.stepstone.prompt = "a vase"
    before = set(env.session().tracker.jobs)
    with bpy.context.temp_override(scene=other):
        bpy.ops.stepstone.text_to_shape()
    [job] = new_jobs(before)
    bpy.data.scenes.remove(other)
    wait_done([job])
    assert job.state.value == "held" and "no longer exists" in job.error_message
    assert bpy.ops.stepstone.place_held(job_id=job.id) == {"FINISHED"}
    assert job.state.value == "done" and result_object(job).name in bpy.context.scene.objects


def test_image_editor_operator_and_bad_inputs_report_instead_of_raising_tracebacks(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes())
    image = bpy.data.images.load(str(path))
    [job] = run(bpy.ops.stepstone.reconstruct_image_editor, image_name=image.name)
    assert job.state.value == "done"
    before = set(env.session().tracker.jobs)
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.stepstone.reconstruct_files(filepath=str(tmp_path / "missing.png"))
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(RuntimeError, match="not a PNG, JPEG or WebP"):
        bpy.ops.stepstone.reconstruct_files(filepath=str(tmp_path / "notes.png"))
    with pytest.raises(RuntimeError, match="No image"):
        bpy.ops.stepstone.reconstruct_image_editor()
    assert set(env.session().tracker.jobs) == before


def test_generated_image_without_a_file_is_sent_as_png():
    image = bpy.data.images.new("painted", 40, 30)
    image.generated_color = (0.2, 0.5, 0.8, 1.0)
    [job] = run(bpy.ops.stepstone.reconstruct_image_editor, image_name=image.name)
    assert job.spec.images[0].startswith(b"\x89PNG") and job.state.value == "done"


def feed_result(mesh, name):
    """Hand the session a result message as if the backend had just sent it (no backend involved)."""
    session = env.session()
    protocol = env.addon_module("core.backend_api").protocol
    jobs_mod = env.addon_module("core.jobs")
    scene = bpy.context.scene
    job = session.tracker.add(jobs_mod.JobSpec("generate", prompt="x"), name,
                              {"scene": scene.name, "scene_uid": scene.session_uid, "name": name})
    session.tracker.mark_sent(job, generation=-1)
    session.pending.extend(session.tracker.handle(protocol.result(job.id, mesh, {})))
    session.tick()
    return job


def test_degenerate_and_duplicate_triangles_are_left_out_and_reported():
    protocol = env.addon_module("core.backend_api").protocol
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3], [2, 1, 0], [4, 4, 1], [0, 1, 4]], np.int32)
    job = feed_result(protocol.MeshPayload(vertices, faces), "dirty")
    obj = result_object(job)
    assert job.state.value == "done" and len(obj.data.polygons) == 3
    assert "1 degenerate" in obj["stepstone_warnings"] and "1 duplicate" in obj["stepstone_warnings"]
    assert not obj.data.validate(verbose=False, clean_customdata=False)
    assert any("1 duplicate" in n.text and n.level == "WARNING" for n in env.session().notices)


def test_invalid_result_creates_nothing():
    """A result with NaN vertices (sent by a broken or hostile backend) is refused, nothing is built."""
    session = env.session()
    protocol = env.addon_module("core.backend_api").protocol
    jobs_mod = env.addon_module("core.jobs")
    scene = bpy.context.scene
    job = session.tracker.add(jobs_mod.JobSpec("generate", prompt="x"), "broken",
                              {"scene": scene.name, "scene_uid": scene.session_uid, "name": "broken"})
    session.tracker.mark_sent(job, generation=-1)
    vertices = np.zeros((4, 3), np.float32)
    vertices[2, 1] = np.nan
    message = protocol.result(job.id, protocol.MeshPayload(vertices, np.array([[0, 1, 2], [0, 2, 3]], np.int32)), {})
    objects_before, meshes_before = len(bpy.data.objects), len(bpy.data.meshes)
    session.pending.extend(session.tracker.handle(message))
    session.tick()
    assert job.state.value == "failed" and "NaN" in job.error_message
    assert (len(bpy.data.objects), len(bpy.data.meshes)) == (objects_before, meshes_before)


def test_job_list_mirror_shows_state_and_actions():
    bpy.context.scene.stepstone.prompt = "a mirror test"
    [job] = run(bpy.ops.stepstone.text_to_shape)
    env.pump(lambda: True)
    items = {i.job_id: i for i in bpy.context.window_manager.stepstone_jobs}
    item = items[job.id]
    assert item.state == "done" and item.progress == pytest.approx(1.0) and not item.can_cancel
    assert bpy.ops.stepstone.clear_finished() == {"FINISHED"}
    env.pump(lambda: True)
    assert job.id not in {i.job_id for i in bpy.context.window_manager.stepstone_jobs}


def test_check_backend_button_reports_versions():
    env.prefs().check_result = ""
    assert bpy.ops.stepstone.check_backend() == {"FINISHED"}
    env.pump(lambda: env.prefs().check_result not in ("", "checking…"), timeout=60)
    assert "torch" in env.prefs().check_result and "backend 0.1.0" in env.prefs().check_result
