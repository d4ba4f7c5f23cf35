from __future__ import annotations

import io
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def encoded_png(pixels: np.ndarray, **save) -> bytes:
    """``pixels`` ([H, W, 3 or 4] uint8) as a PNG file's bytes; ``save``: PIL's save options (exif...)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    """A small real image: a coloured disc on a transparent background."""
    yy, xx = np.mgrid[0:height, 0:width]
    inside = (xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (min(width, height) / 3) ** 2
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[inside] = (200, 60, 40, 255)
    return encoded_png(rgba)


def process_running(pid: int) -> bool:
    """True while ``pid`` runs (Linux /proc). A killed child stays a zombie until its parent reaps
    it: that is not a running process."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def torch_one_thread():
    """One torch thread for the test: on two shared, busy cores a second OpenMP thread only adds
    contention (small ops ran ~20x slower). Restores the previous count afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_server():
    """Start an in-process server on a free loopback port; returns its address. Stopped at teardown."""
    from backend.config import ServerConfig
    from backend.server import Server

    started = []

    def start(registry, **overrides):
        config = ServerConfig(port=0, **overrides)
        server = Server(config, registry, devices=["cpu"])
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.stop()
        thread.join(10)


@pytest.fixture
def client_for():
    from backend.client import BackendClient

    clients = []

    def make(address: str, **kwargs):
        client = BackendClient(address, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
