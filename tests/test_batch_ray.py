"""Batches and the server on a real local Ray cluster (2 CPU workers): a worker killed with
kill -9 mid-item, a worker that always dies, an interrupted driver, bad items, no duplicates, and
the server running two jobs at once on Ray workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from backend.batch.items import expand_inputs  # noqa: E402
from backend.batch.runner import BatchSettings, run_batch  # noqa: E402
from backend.config import ServerConfig  # noqa: E402
from backend.jobs import JobEngine  # noqa: E402
from backend.scale.cluster import RayOptions, connect, describe, shutdown  # noqa: E402
from backend.scale.process import ray_process_factory  # noqa: E402
from conftest import png_bytes  # noqa: E402
from doubles import BatchGeneratePipeline, StepPipeline, registry_with  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().parent / "batch_driver.py"
OPTIONS = RayOptions("local", workers=2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local cluster for the in-process tests; the run log's path is in the environment the
    cluster's workers inherit."""
    log = tmp_path_factory.mktemp("ray") / "runs.log"
    log.touch()
    os.environ["STEPSTONE_TEST_RUN_LOG"] = str(log)
    connect(OPTIONS)
    yield log
    shutdown()
    os.environ.pop("STEPSTONE_TEST_RUN_LOG", None)


def ray_engine(sink):
    registry = registry_with(reconstruct=StepPipeline, generate=BatchGeneratePipeline)
    return JobEngine(registry, ServerConfig(), OPTIONS.worker_names(), sink, ray_process_factory(OPTIONS))


def runs_of(log: Path, prompt: str) -> list[int]:
    """Process ids of each run of ``prompt``."""
    return [int(line.split("\t")[1]) for line in log.read_text().splitlines() if line.split("\t")[0] == prompt]


def wait_for_file(path: Path, timeout_s: float = 60.0) -> str:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if path.exists():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout_s} s")


def manifest_records(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((out / "manifest.json").read_text())["items"].values()}


def test_a_worker_killed_mid_item_is_replaced_and_the_item_runs_again_once(cluster, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("k1 slow one\nk1 die-once victim\nk1 slow two\nk1 three\nk1 four\n")
    out = tmp_path / "out"
    lines: list[str] = []
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", run_batch(
        expand_inputs([str(prompts)]), out, BatchSettings({"quality": "preview"}), ray_engine,
        report=lines.append)))
    thread.start()
    victim = int(wait_for_file(cluster.parent / "k1_die_once_victim.pid"))
    os.kill(victim, signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive()
    summary = result["summary"]
    assert (summary.done, summary.failed) == (5, 0), lines
    victim_runs = runs_of(cluster, "k1 die-once victim")
    assert len(victim_runs) == 2 and victim_runs[0] == victim and victim_runs[1] != victim
    for prompt in ("k1 slow one", "k1 slow two", "k1 three", "k1 four"):
        assert len(runs_of(cluster, prompt)) == 1, prompt
    records = manifest_records(out)
    assert records["k1_die_once_victim"]["attempts"] == 2 and records["k1_die_once_victim"]["state"] == "done"
    assert any("retrying k1_die_once_victim: the Ray worker running it died" in line for line in lines), lines
    meta = json.loads((out / "k1_die_once_victim.json").read_text())
    assert meta["batch"]["attempts"] == 2 and meta["device"].startswith("ray:")
    assert sorted(p.name for p in out.glob("*.glb")) == sorted(f"{r}.glb" for r in records)
    # both workers did work: the batch really ran two at a time
    assert {json.loads((out / f"{name}.json").read_text())["device"] for name in records} == {"ray:0", "ray:1"}


def test_an_item_whose_worker_always_dies_fails_after_bounded_attempts_and_bad_items_fail_alone(cluster, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("k2 die-always\nk2 fine\nk2 bad \x01 prompt\n")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "good.png").write_bytes(png_bytes(40, 40))
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    summary = run_batch(expand_inputs([str(prompts), str(photos)]), out,
                        BatchSettings({"quality": "preview"}, max_attempts=3), ray_engine, report=lambda line: None)
    assert (summary.done, summary.failed) == (2, 3)
    records = manifest_records(out)
    dead = records["k2_die_always"]
    assert dead["state"] == "failed" and dead["attempts"] == 3
    assert dead["error"]["code"] == "PIPELINE_FAILED"
    assert "Ray worker running it died" in dead["error"]["message"] and "gave up after 3 attempts" in dead["error"]["message"]
    assert len(runs_of(cluster, "k2 die-always")) == 3
    assert records["broken"]["error"]["code"] == "INVALID_IMAGE"
    assert records["k2_bad_prompt"]["error"]["code"] == "INVALID_PROMPT"
    assert records["k2_fine"]["state"] == records["good"]["state"] == "done"
    assert sorted(p.name for p in out.glob("*.glb")) == ["good.glb", "k2_fine.glb"]


def test_the_server_runs_jobs_on_ray_workers_at_once_says_so_and_cancels_on_them(cluster, client_for):
    from backend import protocol
    from backend.server import Server

    registry = registry_with(reconstruct=StepPipeline, generate=BatchGeneratePipeline)
    server = Server(ServerConfig(port=0), registry, OPTIONS.worker_names(), ray_process_factory(OPTIONS),
                    describe(OPTIONS))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = client_for(server.address)
        info = client.request_pong(timeout_s=10).get("server")
        assert info["ray"]["workers"] == 2 and info["devices"] == ["ray:0", "ray:1"]
        started, ended = {}, {}
        for job in ("k3-a", "k3-b"):
            client.send(protocol.submit_generate(job, f"k3 slow {job}", {"quality": "preview"}))
        end = time.monotonic() + 60
        while len(ended) < 2 and time.monotonic() < end:
            for message in client.poll(200):
                if message.type == "progress":
                    started.setdefault(message.job, time.monotonic())
                elif message.type in ("result", "error"):
                    assert message.type == "result", message.fields
                    ended[message.job] = (time.monotonic(), message.get("metadata")["device"])
        assert len(ended) == 2
        # each job started before the other ended: two at once, on two workers
        assert max(started.values()) < min(t for t, _ in ended.values())
        assert {device for _, device in ended.values()} == {"ray:0", "ray:1"}

        client.send(protocol.submit_generate("k3-stop", "k3 die-once stop me", {"quality": "preview"}))
        wait_for_file(cluster.parent / "k3_die_once_stop_me.pid")
        sent = time.monotonic()
        client.send(protocol.cancel("k3-stop"))
        final = client.wait_for(lambda m: m.job == "k3-stop" and m.type in ("error", "result"), 10)
        assert final.type == "error" and final.get("code") == "CANCELLED"
        assert time.monotonic() - sent < 3.0
    finally:
        server.stop()
        thread.join(20)


def test_an_interrupted_driver_resumes_without_redoing_or_duplicating_anything(tmp_path):
    log = tmp_path / "runs.log"
    log.touch()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"k4 slow {n}\n" for n in range(8)))
    out = tmp_path / "out"
    env = {**os.environ, "STEPSTONE_TEST_RUN_LOG": str(log)}
    command = [sys.executable, str(DRIVER), str(prompts), "--out", str(out), "--ray", "local", "--workers", "2"]
    # a suite started in the background (`scripts/test &`) hands its children SIGINT ignored, and
    # Python then never raises KeyboardInterrupt: the driver must get Ctrl+C as a terminal gives it
    driver = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    end = time.monotonic() + 90
    while time.monotonic() < end:
        if (out / "manifest.json").exists() and sum(
                r["state"] == "done" for r in manifest_records(out).values()) >= 3:
            break
        time.sleep(0.1)
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    first = manifest_records(out)
    done_first = {name for name, r in first.items() if r["state"] == "done"}
    assert 3 <= len(done_first) < 8
    assert {r["state"] for r in first.values()} <= {"done", "pending"}

    again = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"{len(done_first)} already done, of 8" in again.stdout
    records = manifest_records(out)
    assert {r["state"] for r in records.values()} == {"done"}
    for n in range(8):
        prompt = f"k4 slow {n}"
        expected = 1 if f"k4_slow_{n}" in done_first else (1, 2)  # an interrupted item may have started once
        assert len(runs_of(log, prompt)) in ((expected,) if isinstance(expected, int) else expected), prompt
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".glb") == sorted(f"k4_slow_{n}.glb" for n in range(8))
    assert not list(out.glob(".*partial"))


def test_a_worker_that_died_while_idle_is_replaced_before_the_next_job_not_blamed_on_it(cluster, client_for):
    from backend import protocol
    from backend.server import Server

    one = RayOptions("local", workers=1)
    registry = registry_with(reconstruct=StepPipeline, generate=BatchGeneratePipeline)
    server = Server(ServerConfig(port=0), registry, one.worker_names(), ray_process_factory(one), describe(one))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = client_for(server.address)
        first = client.run_job(protocol.submit_generate("k5-a", "k5 first", {"quality": "preview"}), 60)
        assert first.type == "result", first.fields
        idle = first.get("metadata")["pid"]
        os.kill(idle, signal.SIGKILL)
        time.sleep(0.5)
        second = client.run_job(protocol.submit_generate("k5-b", "k5 second", {"quality": "preview"}), 60)
        assert second.type == "result", second.fields
        assert second.get("metadata")["pid"] != idle
    finally:
        server.stop()
        thread.join(20)
