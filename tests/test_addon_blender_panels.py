"""Panels are never drawn in background mode, so draw them into a recording layout.

The recorder checks what Blender would check when drawing: every ``prop`` names a real property
of its data, every ``operator`` a registered operator and its arguments real operator properties.
"""

import pytest

bpy = pytest.importorskip("bpy")

from addon_support import blender_env as env  # noqa: E402
from addon_support import layout_dump  # noqa: E402
from conftest import png_bytes  # noqa: E402


def draw(panel_name):
    """What the panel draws, by kind: label texts (buttons' too), props, operators, progress texts."""
    layout = layout_dump.load().draw_panel(panel_name, bpy.context)
    items = list(layout.items())
    return {"labels": [i.text for i in items if i.kind in ("label", "operator")],
            "props": [i.name for i in items if i.kind == "prop"],
            "operators": [i.name for i in items if i.kind == "operator"],
            "progress": [i.text for i in items if i.kind == "progress"]}


@pytest.fixture(scope="module", autouse=True)
def addon():
    env.enable_extension()
    env.use_backend(env.shared_fake_backend_python(), "full")
    yield  # the backend keeps running for the next module; the add-on stops it when Python exits


def test_every_panel_draws_with_no_jobs():
    env.reset_scene()
    bpy.ops.stepstone.clear_finished()
    env.pump(lambda: True)
    for name in ("STEPSTONE_PT_main", "STEPSTONE_PT_reconstruct", "STEPSTONE_PT_text", "STEPSTONE_PT_stylize",
                 "STEPSTONE_PT_batch", "STEPSTONE_PT_jobs", "STEPSTONE_PT_image_editor"):
        draw(name)
    record = draw("STEPSTONE_PT_main")
    assert any(text.startswith("Backend: ") for text in record["labels"])
    assert "stepstone.start_backend" in record["operators"]  # labelled Start or Restart
    assert "No jobs yet" in draw("STEPSTONE_PT_jobs")["labels"]
    assert {"prompt", "negative_prompt", "seed", "quality", "stylize_texture"} <= set(draw("STEPSTONE_PT_text")["props"])


def test_panels_show_running_jobs_failures_history_and_batches(tmp_path):
    env.reset_scene()
    settings = bpy.context.scene.stepstone
    settings.prompt = "a drawn chair"
    bpy.ops.stepstone.text_to_shape()
    text = bpy.data.texts.new("list")
    text.write("one\ntwo\n")
    settings.batch_source, settings.batch_text = "TEXT", text
    bpy.ops.stepstone.batch()
    path = tmp_path / "slowish.png"
    path.write_bytes(png_bytes())
    bpy.ops.stepstone.reconstruct_files(filepath=str(path))
    session = env.session()
    seen_progress = []

    def running_drawn():
        record = draw("STEPSTONE_PT_jobs")
        seen_progress.extend(record["progress"])
        return bool(record["progress"]) and any("refine" in p for p in record["progress"])

    env.pump(running_drawn)
    assert any("%" in p for p in seen_progress)
    env.pump(lambda: all(j.final for j in session.tracker.jobs.values()))
    record = draw("STEPSTONE_PT_main")
    assert any(text.startswith(("Backend: connected", "Backend: busy")) for text in record["labels"]), record["labels"]
    assert "stepstone.stop_backend" in record["operators"]
    history = draw("STEPSTONE_PT_text")
    assert "stepstone.use_prompt" in history["operators"] and "a drawn chair" in history["labels"]
    batch = draw("STEPSTONE_PT_batch")
    assert "stepstone.cancel_batch" in batch["operators"] and any("2 done" in t for t in batch["labels"])
    # a failed job offers retry in the list
    job = next(iter(session.tracker.jobs.values()))
    session.tracker.jobs[job.id].state = type(job.state)("failed")
    session.tracker.jobs[job.id].error_message = "drawn failure"
    session.tracker.version += 1
    env.pump(lambda: True)
    jobs = draw("STEPSTONE_PT_jobs")
    assert "stepstone.retry_job" in jobs["operators"] and any("drawn failure" in t for t in jobs["labels"])
