"""Transport benchmark: a finished job's result, server → client over localhost.

Measures what a result costs on the wire, end to end: the server encodes the ``result`` message
(mesh with UVs + a 1024² PNG texture), ZeroMQ carries it ROUTER → DEALER over tcp://127.0.0.1,
the client decodes and validates it (``protocol.result_mesh``: dtypes, index range, finiteness).
The server side is the real ``Server`` re-sending a retained result (``status`` with resend), so
the socket options and code path are those a reconnecting Blender uses.

    .venv/bin/python scripts/bench_transport.py [--repeats 20]

Writes bench_results/transport.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend import protocol  # noqa: E402
from backend.client import BackendClient  # noqa: E402
from backend.config import ServerConfig, ServiceLimits  # noqa: E402
from backend.images import encode_png  # noqa: E402
from backend.jobs import Job  # noqa: E402
from backend.pipelines.base import PipelineRegistry  # noqa: E402
from backend.requests import CommonParams  # noqa: E402
from backend.server import Server  # noqa: E402


def grid_mesh(triangles: int, texture_size: int, seed: int = 0) -> protocol.MeshPayload:
    """A wavy height-field sheet with ~``triangles`` triangles, per-vertex UVs and normals, and a noisy texture."""
    side = int(np.ceil(np.sqrt(triangles / 2))) + 1
    u, v = np.meshgrid(np.linspace(0, 1, side, dtype=np.float32), np.linspace(0, 1, side, dtype=np.float32))
    z = 0.05 * np.sin(12 * u) * np.cos(9 * v)
    vertices = np.stack([u - 0.5, v - 0.5, z], axis=-1).reshape(-1, 3).astype(np.float32)
    idx = np.arange(side * side, dtype=np.int32).reshape(side, side)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])[:triangles].astype(np.int32)
    normals = np.tile(np.array([0, 0, 1], np.float32), (len(vertices), 1))
    uvs = np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float32)
    rng = np.random.default_rng(seed)
    # A photo-like texture: smooth gradients plus noise (pure noise would not compress, flat colour too well).
    gy, gx = np.mgrid[0:texture_size, 0:texture_size] / texture_size
    base = np.stack([gx, gy, 0.5 + 0.5 * np.sin(8 * gx)], -1) * 200
    texture = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    return protocol.MeshPayload(vertices, faces, normals, uvs, None, encode_png(texture), "smooth")


def bench(triangles: int, repeats: int, texture_size: int) -> dict:
    mesh = grid_mesh(triangles, texture_size)
    config = ServerConfig(port=0, limits=ServiceLimits(max_mesh_triangles=4_000_000))
    server = Server(config, PipelineRegistry(), ["cpu"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # A finished job as the engine retains it; the benchmark then asks for it again and again.
    job = Job("bench", "generate", None, CommonParams(), owner=None, deadline_s=60, state="done")
    job.result = protocol.result("bench", mesh, {"task": "bench"})
    server.engine._jobs[job.id] = job
    payload = protocol.message_size(protocol.encode(job.result))
    client = BackendClient(server.address, max_message_bytes=1 << 30)
    times = []
    try:
        client.request_pong(10)
        for i in range(repeats + 2):
            client.forget("bench")
            start = time.perf_counter()
            client.send(protocol.status("bench", resend=True, token=job.token))
            message = client.wait_for(lambda m: m.type == "result", 30)
            received = protocol.result_mesh(message, max_triangles=4_000_000)
            elapsed = time.perf_counter() - start
            assert received.n_triangles == mesh.n_triangles and received.texture_png == mesh.texture_png
            if i >= 2:  # the first two warm up connections and allocators
                times.append(elapsed)
    finally:
        client.close()
        server.stop()
        thread.join(10)
    median = statistics.median(times)
    return {
        "triangles": int(mesh.n_triangles),
        "vertices": int(len(mesh.vertices)),
        "texture": f"{texture_size}x{texture_size} PNG",
        "payload_mb": round(payload / 1e6, 2),
        "median_ms": round(median * 1000, 1),
        "min_ms": round(min(times) * 1000, 1),
        "max_ms": round(max(times) * 1000, 1),
        "throughput_mb_s": round(payload / 1e6 / median, 1),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "bench_results" / "transport.json"))
    args = parser.parse_args()
    rows = [bench(100_000, args.repeats, 1024), bench(1_000_000, max(3, args.repeats // 4), 1024)]
    result = {
        "benchmark": "transport: result message server -> client over tcp://127.0.0.1, decode + validate",
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {__import__('os').cpu_count()} cores",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "target": "<= 50 ms for 100k triangles",
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{'triangles':>10} {'payload MB':>10} {'median ms':>10} {'min ms':>8} {'MB/s':>8}")
    for row in rows:
        print(f"{row['triangles']:>10} {row['payload_mb']:>10} {row['median_ms']:>10} {row['min_ms']:>8} "
              f"{row['throughput_mb_s']:>8}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
