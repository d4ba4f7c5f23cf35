"""The command line and a real backend process driven by a real client."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend import protocol
from backend.cli import EXIT_JOB_LOST, EXIT_USAGE, main
from backend.client import BackendClient
from backend.protocol import ErrorCode

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


def test_reconstruct_as_points_writes_a_coloured_ply_point_cloud(tmp_path):
    out = tmp_path / "mug.ply"
    result = cli("reconstruct", "examples/mug.png", "--points", "--method", "outline", "-o", str(out),
                 "--quality", "preview", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "(8000 points," in result.stdout  # 2 points per face of the preview's 4,000-face budget
    cloud = trimesh.load(out)
    assert isinstance(cloud, trimesh.PointCloud) and cloud.vertices.shape == (8000, 3)
    assert np.abs(cloud.vertices).max() <= 0.5 + 1e-4  # unit size, centred, like a mesh result
    # the mug is blue all round: blue dominates the points' colours
    rgb = np.asarray(cloud.colors)[:, :3].astype(float).mean(0)
    assert rgb[2] > rgb[0] + 20, rgb
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["fidelity"]["silhouette_iou"] > 0.9 and "timings_s" in meta


def test_missing_image_is_a_usage_error():
    result = cli("reconstruct", "no/such.png", "-o", "/tmp/x.glb")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_non_image_file_reports_invalid_image(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not really a png")
    result = cli("reconstruct", str(bad), "-o", str(tmp_path / "x.glb"))
    assert result.returncode == 1 and "INVALID_IMAGE" in result.stderr


def test_generate_works_offline_and_refuses_a_prompt_it_cannot_read(tmp_path):
    """Issue 19: no CLIP here, and `generate` still makes the chair (the offline text model)."""
    result = cli("generate", "a wooden chair", "-o", str(tmp_path / "c.glb"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "c.glb").stat().st_size > 10_000 and "offline text model" in result.stdout + result.stderr
    refused = cli("generate", "a zebra", "-o", str(tmp_path / "z.glb"))
    assert refused.returncode == 1 and "INVALID_PROMPT" in refused.stderr and "'zebra'" in refused.stderr
    assert not (tmp_path / "z.glb").exists()


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
        assert set(pipelines) == {"reconstruct", "generate", "stylize", "mine"}
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
    # no CLIP weights can be had here: the shipped offline text model makes the text pipelines available
    assert server["pipelines"]["reconstruct"] == "available"
    assert server["pipelines"]["generate"] == "available" and server["pipelines"]["stylize"] == "available"


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


# ------------------------------------------------------------------------------------ bad arguments
MUG = str(ROOT / "examples" / "mug.png")


def run_main(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as exit:  # argparse leaves through sys.exit
        return exit.code


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def no_work(monkeypatch):
    """Any model load, job or connection fails the test: bad arguments must be refused before."""
    import backend.client
    import backend.jobs
    import backend.pipelines.registry

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    for module, name in ((backend.jobs, "JobEngine"), (backend.pipelines.registry, "default_registry"),
                         (backend.client, "BackendClient")):
        monkeypatch.setattr(module, name, refuse)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "notes.txt").write_text("a regular file")
    (tmp_path / "empty.key").write_bytes(b"")
    (tmp_path / "garbage.key").write_text("not a key at all\n")
    (tmp_path / "folder").mkdir()
    return tmp_path


@pytest.mark.parametrize("argv, says", [
    (["reconstruct", MUG, "--device", "bogus", "-o", "{t}/a.glb"], "unknown device 'bogus'"),
    (["reconstruct", MUG, "--device", "cuda:x", "-o", "{t}/a.glb"], "unknown device 'cuda:x'"),
    (["reconstruct", MUG, "-o", "{t}/a.xyz"], "cannot write .xyz files"),
    (["reconstruct", MUG, "-o", "{t}/notes.txt/a.glb"], "notes.txt is a file, not a folder"),
    (["reconstruct", "{t}/folder", "-o", "{t}/a.glb"], "is a folder, not a file"),
    (["reconstruct", "/dev/zero", "-o", "{t}/a.glb"], "/dev/zero is not a regular file"),
    (["reconstruct", "{t}/missing.png", "-o", "{t}/a.glb"], "does not exist"),
    (["reconstruct", MUG, "--timeout", "-1"], "--timeout: -1 is not a positive number of seconds"),
    (["reconstruct", MUG, "--device", "cpu", "--face-budget", "0", "-o", "{t}/a.glb"], "'face_budget'"),
    (["reconstruct", MUG, "--seed", "x"], "--seed: invalid int value"),
    (["reconstruct", MUG, "--points", "-o", "{t}/a.glb"], "a point cloud (--points) is written as .ply"),
    (["batch", MUG, "--points", "--format", "obj", "--out", "{t}/b"], "--points writes point clouds as .ply"),
    (["batch", MUG, "--workers", "2", "--out", "{t}/b"], "--workers and --gpus-per-worker need --ray"),
    (["batch", "{t}/empty.key", "--out", "{t}/b"], "is neither an image"),
    (["serve", "--device", "cpu", "--ray", "local", "--port", "0"], "with --ray the device follows --gpus-per-worker"),
    (["stylize", "{t}/folder", "gold"], "mesh {t}/folder is a folder"),
    (["serve", "--device", "bogus", "--port", "0"], "unknown device 'bogus'"),
    (["serve", "--port", "99999"], "99999 is not a port number"),
    (["serve", "--job-timeout", "0"], "--job-timeout: 0 is not a positive number"),
    (["keys", "{t}/notes.txt"], "notes.txt is a file, not a folder"),
    (["keys", "{t}/notes.txt/keys"], "notes.txt is a file, not a folder"),
    (["client", "status", "no such job!"], "is not a job id"),
    (["client", "status", "job1", "-o", "{t}/a.xyz"], "cannot write .xyz files"),
    (["client", "reconstruct", "{t}/folder"], "is a folder, not a file"),
    (["client", "--client-key", "{t}/missing", "--server-key", "{t}/empty.key", "ping"], "missing does not exist"),
    (["client", "--client-key", "{t}/empty.key", "--server-key", "{t}/empty.key", "ping"], "unusable key file"),
    (["client", "--client-key", "{t}/garbage.key", "--server-key", "{t}/garbage.key", "ping"], "unusable key file"),
    (["client", "--client-key", "{t}/folder", "--server-key", "{t}/empty.key", "ping"], "is a folder, not a file"),
    (["client", "--client-key", "{t}/garbage.key", "ping"], "go together"),
    (["client", "--wait", "-5", "ping"], "--wait: -5 is not a positive number"),
    ([], "required: command"),
])
def test_bad_argument_is_one_line_before_any_work(argv, says, files, no_work, capsys):
    argv = [a.replace("{t}", str(files)) for a in argv]
    assert run_main(*argv) == EXIT_USAGE
    assert says.replace("{t}", str(files)) in one_error_line(capsys)


def test_cuda_without_a_gpu_says_so(monkeypatch, no_work, capsys, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run_main("reconstruct", MUG, "--device", "cuda", "-o", str(tmp_path / "a.glb")) == EXIT_USAGE
    assert one_error_line(capsys) == "error: --device cuda: no CUDA device is available; use cpu"


def test_a_cuda_index_beyond_the_gpus_says_how_many_there_are(monkeypatch, no_work, capsys, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert run_main("reconstruct", MUG, "--device", "cuda:7", "-o", str(tmp_path / "a.glb")) == EXIT_USAGE
    assert "cuda:7 does not exist: there are 2 CUDA device(s)" in one_error_line(capsys)


def test_bad_arguments_in_a_real_process_are_one_line_without_traceback(tmp_path):
    for args in (["serve", "--port", "99999"], ["reconstruct", "/dev/zero", "-o", str(tmp_path / "a.glb")]):
        result = cli(*args, timeout=60)
        assert result.returncode == EXIT_USAGE, result.stderr
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_job_lost_to_a_backend_restart_has_its_own_exit_code(monkeypatch, capsys, tmp_path):
    import backend.client

    class RestartedBackend:
        """What BackendClient answers when the server restarted under the job."""

        def __init__(self, address, **keys):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def run_job(self, message, timeout_s, on_message=None):
            return protocol.error(ErrorCode.JOB_LOST, f"the backend restarted; job {message.job} was lost: "
                                  "submit it again", message.job, "failed")

    monkeypatch.setattr(backend.client, "BackendClient", RestartedBackend)
    assert run_main("client", "reconstruct", MUG, "-o", str(tmp_path / "a.glb")) == EXIT_JOB_LOST
    err = capsys.readouterr().err
    assert "JOB_LOST" in err and "submit it again" in err and "Traceback" not in err
    assert not (tmp_path / "a.glb").exists()


def test_status_without_a_server_times_out_in_one_line(capsys):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert run_main("client", "--address", f"tcp://127.0.0.1:{port}", "--wait", "0.5", "status", "job1") == 1
    err = capsys.readouterr().err
    assert err.startswith("failed: no answer") and len(err.strip().splitlines()) == 1


def test_client_status_of_another_clients_job_needs_its_token(run_server, client_for, tmp_path, capsys):
    """A second CLI process is a second client: it fetches a job's result only with the job's token."""
    from conftest import png_bytes
    from doubles import StepPipeline, registry_with

    server = run_server(registry_with(reconstruct=StepPipeline))
    submitter = client_for(server.address)
    submitter.send(protocol.submit_reconstruct("theirs", [png_bytes()]))
    token = submitter.wait_for(lambda m: m.job == "theirs" and m.type == "accepted", 20).get("token")
    submitter.wait_for(lambda m: m.job == "theirs" and m.type == "result", 30)
    out = tmp_path / "theirs.glb"
    assert main(["client", "--address", server.address, "status", "theirs", "-o", str(out)]) == 1
    assert "NOT_OWNER" in capsys.readouterr().out and not out.exists()
    assert main(["client", "--address", server.address, "status", "theirs", "--token", token, "-o", str(out)]) == 0
    assert len(trimesh.load(out, force="mesh").faces) == 4
