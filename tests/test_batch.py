"""``python -m backend batch`` without Ray: inputs to items, the manifest, resume, bad items.
(tests/test_batch_ray.py runs the same on a real local Ray cluster, with workers killed.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backend.batch.items import expand_inputs
from backend.batch.runner import BatchSettings, run_batch
from backend.config import ServerConfig
from backend.errors import UsageError
from backend.jobs import JobEngine
from conftest import png_bytes
from doubles import BatchGeneratePipeline, StepPipeline, registry_with

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().parent / "batch_driver.py"


@pytest.fixture
def run_log(tmp_path, monkeypatch):
    log = tmp_path / "runs.log"
    log.touch()
    monkeypatch.setenv("STEPSTONE_TEST_RUN_LOG", str(log))
    return log


def runs(log: Path) -> list[str]:
    return [line.split("\t")[0] for line in log.read_text().splitlines()]


def local_engine(sink):
    return JobEngine(registry_with(reconstruct=StepPipeline, generate=BatchGeneratePipeline), ServerConfig(),
                     ["cpu"], sink)


def inputs(tmp_path: Path, prompts: str = "a chair\na lamp\n") -> list[str]:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "b.png").write_bytes(png_bytes(40, 40))
    (folder / "a.png").write_bytes(png_bytes(48, 40))
    (folder / "notes.md").write_text("not an image")
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text(prompts)
    return [str(folder), str(prompt_file)]


# ------------------------------------------------------------------------------------ items
def test_inputs_become_items_in_order_with_unique_names_and_stable_keys(tmp_path):
    paths = inputs(tmp_path, "a chair\n# a comment\n\na chair\nA Chair!\n")
    csv = tmp_path / "more.csv"
    csv.write_text("prompt,seed,name\na chair,7,chair seven\n")
    single = tmp_path / "single.jpg"
    single.write_bytes((tmp_path / "photos" / "a.png").read_bytes())
    items = expand_inputs([*paths, str(csv), str(single)])
    assert [(i.task, i.name) for i in items] == [
        ("reconstruct", "a"), ("reconstruct", "b"), ("generate", "a_chair"), ("generate", "a_chair-2"),
        ("generate", "a_chair-3"), ("generate", "chair_seven"), ("reconstruct", "single")]
    keys = [i.key for i in items]
    assert len(set(keys)) == len(keys)
    assert keys[3] == keys[2] + "#2"  # the same prompt twice is two items
    assert keys[5] != keys[2]  # another seed is another item
    assert keys[6] == keys[0] + "#2"  # the same image bytes under another name
    assert items[5].prompt.seed == 7
    assert [i.key for i in expand_inputs([*paths, str(csv), str(single)])] == keys


@pytest.mark.parametrize("make, message", [
    (lambda d: str(d / "missing.png"), "does not exist"),
    (lambda d: (d / "mesh.stl").write_text("solid") and str(d / "mesh.stl"), "neither an image"),
    (lambda d: (d / "empty").mkdir() or str(d / "empty"), "holds no PNG, JPEG or WebP"),
    (lambda d: (d / "blank.txt").write_text("# only a comment\n") and str(d / "blank.txt"), "holds no prompts"),
    (lambda d: (d / "bad.csv").write_text("prompt,seed\nchair,x\n") and str(d / "bad.csv"), "row 2: seed"),
])
def test_unusable_inputs_are_refused_before_anything_runs(tmp_path, make, message):
    with pytest.raises(UsageError, match=message):
        expand_inputs([make(tmp_path)])


# ------------------------------------------------------------------------------------ running
def test_batch_writes_each_result_and_a_manifest_then_resumes_without_running_anything_again(tmp_path, run_log):
    items = expand_inputs(inputs(tmp_path))
    out = tmp_path / "out"
    settings = BatchSettings({"quality": "preview", "seed": 0, "texture": "uv"})
    lines: list[str] = []
    summary = run_batch(items, out, settings, local_engine, report=lines.append)
    assert (summary.total, summary.done, summary.failed, summary.skipped) == (4, 4, 0, 0)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", "a.glb", "a.json", "b.glb", "b.json", "a_chair.glb", "a_chair.json", "a_lamp.glb",
         "a_lamp.json"])
    meta = json.loads((out / "a_chair.json").read_text())
    assert meta["task"] == "generate" and meta["quality"] == "preview" and meta["batch"]["attempts"] == 1
    assert meta["batch"]["key"] == items[2].key
    manifest = json.loads((out / "manifest.json").read_text())
    assert {r["state"] for r in manifest["items"].values()} == {"done"}
    assert runs(run_log) == ["a chair", "a lamp"]
    assert sum("done" in line for line in lines) == 4

    again = run_batch(items, out, settings, local_engine, report=lines.append)
    assert (again.done, again.skipped) == (0, 4)
    assert runs(run_log) == ["a chair", "a lamp"]  # nothing ran twice

    (out / "a_lamp.glb").unlink()  # a result lost from disk is made again, alone
    third = run_batch(items, out, settings, local_engine, report=lines.append)
    assert (third.done, third.skipped) == (1, 3)
    assert runs(run_log) == ["a chair", "a lamp", "a lamp"]


def test_bad_items_fail_alone_with_their_error_and_run_again_on_resume(tmp_path, run_log):
    paths = inputs(tmp_path, "a chair\nbad \x01 prompt\n")
    (tmp_path / "photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    items = expand_inputs(paths)
    out = tmp_path / "out"
    settings = BatchSettings({"quality": "preview"})
    summary = run_batch(items, out, settings, local_engine, report=lambda line: None)
    assert (summary.done, summary.failed) == (3, 2)
    records = {r["name"]: r for r in json.loads((out / "manifest.json").read_text())["items"].values()}
    assert records["broken"]["state"] == "failed" and records["broken"]["error"]["code"] == "INVALID_IMAGE"
    assert records["bad_prompt"]["error"]["code"] == "INVALID_PROMPT"
    assert not (out / "broken.glb").exists() and not (out / "bad_prompt.json").exists()
    assert {records[n]["state"] for n in ("a", "b", "a_chair")} == {"done"}

    (tmp_path / "photos" / "broken.png").write_bytes(png_bytes(40, 40))  # the user fixes the file
    again = run_batch(expand_inputs(paths), out, settings, local_engine, report=lambda line: None)
    assert (again.skipped, again.done, again.failed) == (3, 1, 1)
    assert runs(run_log) == ["a chair"]


def test_a_folder_made_with_other_settings_is_refused_with_what_changed(tmp_path, run_log):
    items = expand_inputs(inputs(tmp_path))
    run_batch(items, tmp_path / "out", BatchSettings({"quality": "preview"}), local_engine, report=lambda line: None)
    with pytest.raises(UsageError, match=r"params.quality: 'preview' then, 'high' now"):
        run_batch(items, tmp_path / "out", BatchSettings({"quality": "high"}), local_engine)


def test_the_command_line_runs_resumes_and_refuses_ray_options_without_ray(tmp_path, run_log):
    paths = inputs(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, str(DRIVER), *paths, "--out", str(out), "--quality", "preview", "--format", "obj"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    assert "4 done, 0 failed, 0 already done, of 4" in first.stdout
    assert (out / "a_lamp.obj").exists() and (out / "a_lamp.json").exists()
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "0 done, 0 failed, 4 already done, of 4" in second.stdout
    assert runs(run_log) == ["a chair", "a lamp"]
    refused = subprocess.run([*command, "--workers", "3"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert refused.returncode == 2 and "--workers and --gpus-per-worker need --ray" in refused.stderr


def test_a_result_that_cannot_be_written_fails_its_item_alone(tmp_path, run_log, monkeypatch):
    import backend.batch.runner as runner

    real_write = runner.write_result_files

    def full_disk(final, output, extra=None):
        if output.stem == "a_lamp":
            raise OSError(28, "No space left on device")
        return real_write(final, output, extra)

    monkeypatch.setattr(runner, "write_result_files", full_disk)
    out = tmp_path / "out"
    summary = run_batch(expand_inputs(inputs(tmp_path)), out, BatchSettings({"quality": "preview"}), local_engine,
                        report=lambda line: None)
    assert (summary.done, summary.failed) == (3, 1)
    records = {r["name"]: r for r in json.loads((out / "manifest.json").read_text())["items"].values()}
    assert records["a_lamp"]["error"]["code"] == "WRITE_FAILED"
    assert "No space left on device" in records["a_lamp"]["error"]["message"]
