"""A backend killed with SIGKILL and started again (reliability finding 8): its pipeline process
dies with it, and a client learns at once that its job was lost instead of waiting it out."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend import protocol
from conftest import png_bytes, process_running

SERVE = Path(__file__).resolve().parent / "addon_support" / "serve_doubles.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_backend(port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, str(SERVE), "--port", str(port), "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "STEPSTONE_TEST_PIPELINES": "slow"})
    line = process.stdout.readline()
    assert re.match(r"STEPSTONE READY tcp://", line), line
    return process


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_takes_the_pipeline_process_along_and_the_client_reports_the_job_lost(client_for):
    port = free_port()
    first = start_backend(port)
    second = None
    try:
        client = client_for(f"tcp://127.0.0.1:{port}")
        client.send(protocol.submit_reconstruct("doomed", [png_bytes()]))
        client.wait_for(lambda m: m.job == "doomed" and m.type == "progress" and m.get("stage") != "load", 30)
        pipelines = children_of(first.pid)
        assert pipelines, "the pipeline process runs beside the server"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        deadline = time.monotonic() + 5
        while any(process_running(pid) for pid in pipelines) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(process_running(pid) for pid in pipelines), "the pipeline process outlived its server"
        second = start_backend(port)
        restarted = time.monotonic()
        final = client.wait_for(lambda m: m.job == "doomed" and m.type in ("error", "result"), 30)
        assert final.get("code") == "JOB_LOST" and final.get("state") == "failed"
        assert time.monotonic() - restarted < 10     # not the job's 900 s deadline, nor the CLI's hour
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
