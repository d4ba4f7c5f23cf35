"""The CLIP path's first use: its mapper trained in the background with no dataset (issue 19,
item 2; backend/pipelines/clip_mapper_prep.py, backend/train/first_use_mapper.py)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from backend.models.clip import ClipConfig
from backend.models.clip_testing import load_tiny_clip, tiny_clip_config
from backend.pipelines import clip_mapper_prep
from backend.pipelines.base import JobContext
from backend.pipelines.clip_mapper_prep import latest_preparation, read_status, write_status
from backend.pipelines.generate import GeneratePipeline
from backend.pipelines.generate_assets import TextAssetsConfig, first_use, load_iss_assets
from backend.requests import CommonParams, GenerateRequest


def _context() -> JobContext:
    return JobContext("job", "cpu", emit_progress=lambda *a: None, emit_preview_mesh=lambda *a: None,
                      emit_preview_points=lambda *a: None, is_cancelled=lambda: False,
                      deadline=time.monotonic() + 600)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(clip_mapper_prep.CACHE_ENV_VAR, str(root))
    monkeypatch.delenv("STEPSTONE_CLIP_CHECKPOINT", raising=False)
    monkeypatch.delenv("STEPSTONE_ISS_DIR", raising=False)
    return root


@pytest.fixture
def clip_file(tmp_path) -> Path:
    """The tiny test CLIP saved as a weights file, as a user's CLIP Checkpoint would be."""
    from safetensors.torch import save_file

    clip = load_tiny_clip(seed=0)
    path = tmp_path / "tiny_clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip._model.state_dict().items()}, str(path))
    return path


def _config(tmp_path, clip_file, **changes) -> TextAssetsConfig:
    clip = replace(tiny_clip_config(0), pretrained=None, allow_random_weights=False, checkpoint_path=str(clip_file))
    return TextAssetsConfig(clip=clip, iss_dir=str(tmp_path / "no-iss"), first_use_max_shapes=2, **changes)


def _wait_until_finished(folder: Path, seconds: float = 240.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status = read_status(folder)
        if status.state in ("done", "failed"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"the preparation did not finish in {seconds} s: {read_status(folder)}")


def test_first_use_trains_the_mapper_in_the_background_then_the_clip_path_takes_over(cache, clip_file, tmp_path):
    pipeline = GeneratePipeline("cpu", _config(tmp_path, clip_file))
    assert pipeline.unavailable_reason() is None  # the offline model answers meanwhile
    ctx = _context()
    out = pipeline.run(GenerateRequest(prompt="a wooden chair", common=CommonParams(quality="preview")), ctx)
    assert out.metadata["method"].startswith("offline text model")
    assert any("being prepared in the background" in w and "offline text model answers" in w for w in ctx.warnings)

    (folder,) = (cache / "clip_mapper").iterdir()
    status = _wait_until_finished(folder)
    assert status.state == "done", (folder / "train.log").read_text()[-2000:]
    summary = json.loads((folder / "status.json").read_text())["summary"]
    assert summary["shapes"] == 2 and summary["clip"].startswith("open_clip:stepstone-tiny-clip:sha256-")
    assert latest_preparation().as_dict()["describe"] == "the CLIP text path is ready"  # what the server reports

    # the next job takes the CLIP path, with the mapper made for this CLIP and shape model
    assert pipeline._iss_ready() and Path(pipeline.assets_config.iss_dir) == folder
    assets = load_iss_assets(pipeline.assets_config, "cpu")  # checks the mapper against this CLIP's digest
    assert assets.clip.model_id == summary["clip"] and assets.mapper.config.clip_dim == assets.clip.embed_dim
    # a second pipeline (a restarted backend) finds it without starting anything
    again = GeneratePipeline("cpu", _config(tmp_path, clip_file))
    assert again._iss_ready() and len(list((cache / "clip_mapper").iterdir())) == 1


    # a done folder whose mapper was deleted is prepared again, not reported ready
    for part in folder.glob("mapper.*"):
        part.unlink()
    fresh = GeneratePipeline("cpu", _config(tmp_path, clip_file))
    assert not fresh._iss_ready()
    assert "being prepared" in fresh._clip_path_pending(start=True)
    assert _wait_until_finished(folder).state == "done" and fresh._iss_ready()


def test_without_clip_weights_nothing_is_prepared(cache, tmp_path):
    config = TextAssetsConfig(clip=ClipConfig(cache_dir=str(tmp_path / "empty"), allow_download=False),
                              iss_dir=str(tmp_path / "no-iss"))
    assert first_use(config) is None
    ctx = _context()
    GeneratePipeline("cpu", config).run(GenerateRequest(prompt="a red car", common=CommonParams(quality="preview")), ctx)
    assert not cache.exists() and not any("prepared" in w for w in ctx.warnings)


def test_switched_off_or_an_explicit_iss_folder_means_no_preparation(cache, clip_file, tmp_path):
    assert first_use(_config(tmp_path, clip_file, prepare_on_first_use=False)) is None
    assert first_use(_config(tmp_path, clip_file)) is not None


def test_a_preparation_starts_once_and_reports_its_progress(cache, clip_file, tmp_path, monkeypatch):
    started = []

    class FakeProcess:
        pid = 4242

    monkeypatch.setattr(clip_mapper_prep.subprocess, "Popen", lambda command, **kw: started.append(command) or FakeProcess())
    prepared = first_use(_config(tmp_path, clip_file))
    assert prepared.status.state == "absent"
    status = prepared.start("cpu")
    assert status.state == "running" and status.pid == 4242 and len(started) == 1
    command = started[0]
    assert command[1:3] == ["-m", clip_mapper_prep.TRAINER_MODULE] and str(clip_file) in command
    assert first_use(_config(tmp_path, clip_file)).start("cpu").state == "running"
    assert len(started) == 1  # a running preparation is not started twice

    folder = Path(status.folder)
    write_status(folder, state="running", stage="photographing", progress=0.25, message="photographing procedural "
                 "shape 92 of 368", started_at=time.time() - 60)
    status = read_status(folder)
    assert 170 < status.eta_s < 190  # a quarter in a minute: three more
    line = status.describe()
    assert "photographing procedural shape 92 of 368: 25%" in line and "about 3 min left" in line


def test_a_run_that_stopped_beating_is_reported_failed_and_started_again_once(cache, clip_file, tmp_path, monkeypatch):
    started = []

    class FakeProcess:
        pid = 1

    monkeypatch.setattr(clip_mapper_prep.subprocess, "Popen", lambda command, **kw: started.append(command) or FakeProcess())
    pipeline = GeneratePipeline("cpu", _config(tmp_path, clip_file))
    assert "being prepared" in pipeline._clip_path_pending(start=True)
    (folder,) = (cache / "clip_mapper").iterdir()
    data = json.loads((folder / "status.json").read_text())
    data["updated_at"] = time.time() - clip_mapper_prep.STALE_AFTER_S - 5  # killed: no heartbeat since
    (folder / "status.json").write_text(json.dumps(data))
    assert read_status(folder).state == "failed" and "stopped without finishing" in read_status(folder).describe()

    assert "being prepared" in pipeline._clip_path_pending(start=True) and len(started) == 2  # once more
    write_status(folder, state="failed", error="RuntimeError: out of memory")
    line = pipeline._clip_path_pending(start=True)
    assert len(started) == 2 and "failed: RuntimeError: out of memory" in line and "train.log" in line


def test_the_trainer_writes_a_failure_where_the_backend_reads_it(tmp_path):
    from backend.train.first_use_mapper import main

    folder = tmp_path / "prep"
    code = main(["--out", str(folder), "--shape-model", str(tmp_path / "missing_model"), "--clip-model", "ViT-B-32",
                 "--clip-checkpoint", str(tmp_path / "missing.safetensors")])
    status = read_status(folder)
    assert code == 1 and status.state == "failed" and "missing.safetensors" in status.error


def test_a_preparation_that_cannot_start_leaves_the_job_to_the_offline_model(cache, clip_file, tmp_path, monkeypatch):
    def refuse(command, **kw):
        raise PermissionError(13, "Permission denied", command[0])

    monkeypatch.setattr(clip_mapper_prep.subprocess, "Popen", refuse)
    ctx = _context()
    out = GeneratePipeline("cpu", _config(tmp_path, clip_file)).run(
        GenerateRequest(prompt="a red car", common=CommonParams(quality="preview")), ctx)
    assert out.metadata["method"].startswith("offline text model")
    assert any("could not be prepared" in w and "Permission denied" in w for w in ctx.warnings)
    (folder,) = (cache / "clip_mapper").iterdir()
    assert read_status(folder).state == "failed"  # not "running" with no process behind it

