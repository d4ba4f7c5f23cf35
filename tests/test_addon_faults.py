"""What artists see when things go wrong: unavailable pipelines, cancel, a backend that dies mid-job,
a backend that cannot start, and disabling the add-on with a backend running."""

import os
import signal
import time
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from addon_support import blender_env as env  # noqa: E402
from conftest import png_bytes  # noqa: E402


@pytest.fixture(scope="module")
def fake_python():
    env.enable_extension()
    yield env.shared_fake_backend_python()


@pytest.fixture(autouse=True)
def clean_scene(fake_python):
    env.reset_scene()
    env.prefs().target_size, env.prefs().texture = 1.0, "uv"


def submit_text(prompt):
    before = set(env.session().tracker.jobs)
    bpy.context.scene.stepstone.prompt = prompt
    assert bpy.ops.stepstone.text_to_shape() == {"FINISHED"}
    [job] = [j for j in env.session().tracker.jobs.values() if j.id not in before]
    return job


def submit_image(tmp_path, name="photo.png"):
    path = tmp_path / name
    path.write_bytes(png_bytes())
    before = set(env.session().tracker.jobs)
    assert bpy.ops.stepstone.reconstruct_files(filepath=str(path)) == {"FINISHED"}
    [job] = [j for j in env.session().tracker.jobs.values() if j.id not in before]
    return job


def test_unavailable_pipeline_says_what_is_missing(fake_python):
    env.use_backend(fake_python, "no-generate")
    job = submit_text("a chair")
    env.pump(lambda: job.final)
    assert job.state.value == "failed" and job.error_code == "PIPELINE_UNAVAILABLE"
    assert "no text-to-shape weights: run scripts/train_text" in job.error_message
    assert any("no text-to-shape weights" in n.text and n.level == "ERROR" for n in env.session().notices)
    assert not [o for o in bpy.data.objects if o.get("stepstone_job") == job.id]
    # the panel can say so before the next try: the server lists the pipeline as unavailable
    env.pump(lambda: "weights" in env.session().server_info()["pipelines"]["generate"], timeout=5)
    pipelines = env.session().server_info()["pipelines"]
    assert "no text-to-shape weights" in pipelines["generate"] and pipelines["reconstruct"] == "available"


def test_cancel_reaches_the_backend_and_removes_the_preview(fake_python, tmp_path):
    env.use_backend(fake_python, "slow")
    job = submit_image(tmp_path)
    env.pump(lambda: job.preview_step >= 2 and any(o.get("stepstone_job") == job.id for o in bpy.data.objects))
    assert job.state.value == "running" and job.eta(time.monotonic()) is not None
    started = time.monotonic()
    assert bpy.ops.stepstone.cancel_job(job_id=job.id) == {"FINISHED"}
    env.pump(lambda: job.final, timeout=5)
    assert job.state.value == "cancelled" and time.monotonic() - started < 2.0
    assert not any(o.get("stepstone_job") == job.id for o in bpy.data.objects)


def test_cancel_batch_stops_running_and_queued_items(fake_python, tmp_path):
    env.use_backend(fake_python, "slow")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).write_bytes(png_bytes())
    settings = bpy.context.scene.stepstone
    settings.batch_source, settings.batch_folder, settings.batch_placement = "FOLDER", str(folder), "GRID"
    assert bpy.ops.stepstone.batch() == {"FINISHED"}
    tracker = env.session().tracker
    batch_id = list(tracker.batches)[-1]
    jobs = [tracker.jobs[i] for i in tracker.batches[batch_id].job_ids]
    env.pump(lambda: jobs[0].state.value == "running" and jobs[2].state.value == "queued")
    assert bpy.ops.stepstone.cancel_batch(batch_id=batch_id) == {"FINISHED"}
    env.pump(lambda: all(j.final for j in jobs), timeout=5)
    assert [j.state.value for j in jobs] == ["cancelled"] * 3
    assert tracker.batch_counts(batch_id) == {"cancelled": 3}


@pytest.mark.slow
def test_backend_killed_mid_job_is_reported_restarted_and_retry_works(fake_python, tmp_path):
    env.use_backend(fake_python, "slow")
    job = submit_image(tmp_path)
    env.pump(lambda: job.state.value == "running")
    session = env.session()
    pid = session.link.supervisor.pid
    os.kill(pid, signal.SIGKILL)
    env.pump(lambda: job.final, timeout=10)
    assert job.state.value == "failed" and job.error_code == "BACKEND_DIED"
    assert "killed by signal 9" in job.error_message and "retry" in job.error_message
    assert any("Backend stopped" in n.text and "Restarting" in n.text for n in session.notices)
    log = Path(session.link.settings.log_file)
    assert log.is_relative_to(bpy.utils.extension_path_user(env.PACKAGE)) and "STEPSTONE READY" in log.read_text()
    assert any(f"full log: {log}" in n.text for n in session.notices)
    assert not any(o.get("stepstone_job") == job.id for o in bpy.data.objects)
    env.pump(lambda: session.status().state == "connected", timeout=30)
    assert session.link.supervisor.pid != pid
    after = submit_text("after the restart")
    env.pump(lambda: after.final)
    assert after.state.value == "done"
    assert bpy.ops.stepstone.retry_failed() == {"FINISHED"}
    retried = session.tracker.jobs[job.retried_as]
    env.pump(lambda: retried.state.value == "running")
    bpy.ops.stepstone.cancel_job(job_id=retried.id)
    env.pump(lambda: retried.final, timeout=5)


def test_backend_that_cannot_start_is_reported_with_its_reason(tmp_path):
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 3\n")
    broken.chmod(0o755)
    env.use_backend(broken)
    job = submit_text("a chair")
    env.pump(lambda: job.final, timeout=20)
    # It fails the pre-flight check already: no backend is started, the job is never sent.
    assert job.state.value == "failed" and "No module named torch" in job.error_message
    assert f"the backend Python {broken} could not run the pre-flight check (exit code 3" in job.error_message
    status = env.session().status()
    assert status.state == "failed" and "No module named torch" in status.text
    # A traceback is not shown: one sentence naming the interpreter, its last line and the fix
    broken.write_text("#!/bin/sh\necho 'Traceback (most recent call last):' >&2\n"
                      "echo \"ModuleNotFoundError: No module named 'zmq'\" >&2\nexit 1\n")
    env.use_backend(broken)
    job = submit_text("a chair")
    env.pump(lambda: job.final, timeout=20)
    status = env.session().status()
    assert f"{broken} could not run the pre-flight check" in status.text and "Install Backend" in status.text
    assert "No module named 'zmq'" in status.text and "Traceback" not in status.text
    missing = tmp_path / "nothing-here"
    env.use_backend(missing)
    with pytest.raises(RuntimeError, match="backend Python .* does not exist"):
        submit_text("a chair")
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.stepstone.start_backend()
    text = bpy.data.texts.new("batch")
    text.write("a\nb\n")
    settings = bpy.context.scene.stepstone
    settings.batch_source, settings.batch_text = "TEXT", text
    batches = len(env.session().tracker.batches)
    with pytest.raises(RuntimeError, match="batch not started: .*does not exist"):
        bpy.ops.stepstone.batch()
    assert len(env.session().tracker.batches) == batches


def test_disabling_the_addon_stops_the_backend(fake_python):
    env.use_backend(fake_python, "full")
    bpy.ops.stepstone.start_backend()
    session = env.session()
    env.pump(lambda: session.status().state == "connected", timeout=30)
    pid = session.link.supervisor.pid
    env.disable_extension()
    try:
        assert not bpy.app.timers.is_registered(env.addon_module("blender.session").timer)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break  # it had exited and was only waiting to be reaped
            except ChildProcessError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the backend process outlived the add-on")
    finally:
        env.enable_extension()
