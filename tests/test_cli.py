"""The command line and a real backend process driven by a real client."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import trimesh

from backend import protocol
from backend.client import BackendClient

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture
def backend_process():
    """`python -m backend serve --port 0` as a separate process; yields its address."""
    process = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--port", "0", "--device", "cpu"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.match(r"STEPSTONE READY (tcp://\S+)", line)
    assert match, f"unexpected first line {line!r}; stderr: {process.stderr.read() if process.poll() else ''}"
    yield process, match.group(1)
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def test_reconstruct_example_to_glb(tmp_path):
    out = tmp_path / "mug.glb"
    result = cli("reconstruct", "examples/mug.png", "-o", str(out), "--quality", "preview", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    mesh = trimesh.load(out, force="mesh")
    assert len(mesh.faces) > 500
    # the metadata lies beside the mesh, with the camera the result is seen from
    meta = json.loads(out.with_suffix(".json").read_text())
    assert {"azimuth", "elevation", "fov", "distance"} <= set(meta["camera"])
    assert meta["method"].startswith("outline")


def test_missing_image_is_a_usage_error():
    result = cli("reconstruct", "no/such.png", "-o", "/tmp/x.glb")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_non_image_file_reports_invalid_image(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not really a png")
    result = cli("reconstruct", str(bad), "-o", str(tmp_path / "x.glb"))
    assert result.returncode == 1 and "INVALID_IMAGE" in result.stderr


def test_generate_reports_the_missing_pipeline_clearly(tmp_path):
    result = cli("generate", "a wooden chair", "-o", str(tmp_path / "c.glb"))
    assert result.returncode == 1 and "PIPELINE_UNAVAILABLE" in result.stderr


def test_info_json():
    result = cli("info", "--json")
    info = json.loads(result.stdout)
    assert info["protocol"] == protocol.PROTOCOL_VERSION and info["torch"]
    assert "reconstruct" in info["pipelines"]


def test_keys_command_creates_a_usable_pair(tmp_path):
    result = cli("keys", str(tmp_path / "k"), "--client", "studio")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "k" / "server.key").exists()
    assert (tmp_path / "k" / "authorized_clients" / "studio.key").exists()
    assert (tmp_path / "k" / "clients" / "studio.key_secret").exists()
    again = cli("keys", str(tmp_path / "k"), "--client", "studio")
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.slow
def test_real_backend_process_serves_a_reconstruction(backend_process, tmp_path):
    process, address = backend_process
    with BackendClient(address) as client:
        pipelines = client.request_pong(10).get("server")["pipelines"]
        assert set(pipelines) == {"reconstruct", "generate", "stylize"}
        seen = []
        image = (ROOT / "examples" / "mug.png").read_bytes()
        final = client.run_job(protocol.submit_reconstruct("proc1", [image], {"quality": "preview"}), 120, seen.append)
        assert final.type == "result", final.fields
        assert any(m.type == "preview" for m in seen) and any(m.type == "progress" for m in seen)
        mesh = protocol.result_mesh(final)
        assert mesh.texture_png and mesh.uvs is not None
    # the CLI client talks to the same process
    out = tmp_path / "via_client.ply"
    result = cli("client", "--address", address, "reconstruct", "examples/vase_on_grey.jpg", "-o", str(out),
                 "--quality", "preview", "--texture", "vertex")
    assert result.returncode == 0, result.stderr
    assert len(trimesh.load(out).faces) > 500
    ping = cli("client", "--address", address, "ping")
    server = json.loads(ping.stdout)["server"]
    assert server["clients"] >= 1
    # no CLIP weights can be had here: the text pipelines say what is missing instead of "available"
    assert server["pipelines"]["reconstruct"] == "available"
    assert "CLIP" in server["pipelines"]["generate"] and "CLIP" in server["pipelines"]["stylize"]


def test_serve_refuses_public_interface_without_keys():
    result = cli("serve", "--host", "0.0.0.0", "--port", "0", timeout=60)
    assert result.returncode == 2 and "without authentication" in result.stderr


def test_serve_stops_when_its_supervisor_goes_away():
    process = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--port", "0", "--device", "cpu",
                                "--exit-on-stdin-eof"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().startswith("STEPSTONE READY")
        process.stdin.close()                    # Blender crashed: the pipe closes
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
