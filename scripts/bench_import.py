"""Benchmark: result message → finished Blender object, and the longest timer tick during a job.

    .venv/bin/python scripts/bench_import.py [--sizes 100000 1000000] [--repeats 5] [--out bench_results/import.json]

1. Import: for each size, a mesh with that many triangles, per-vertex UVs and a 1024² PNG texture
   is encoded as a protocol ``result`` message and decoded again (as if it had just arrived). The
   clock starts when the decoded message is handed to the add-on and stops when the object, its
   material and its packed image exist — the same path the add-on's timer runs (protocol checks,
   face cleaning, packing, foreach_set, material, properties). Median of ``--repeats``. Afterwards
   (untimed) ``Mesh.validate()`` must find nothing to repair.
2. Ticks: the add-on's supervisor starts the real CPU backend, which reconstructs the example
   images while the timer runs every 10 ms like Blender's event loop; every tick is timed. The
   longest tick while a job runs (excluding the tick that builds the result object, reported
   separately) is the figure for "the UI never freezes".

Targets (issue 3): ≤ 100 ms for 100k triangles; no tick over 10 ms.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from blender_checkout import ROOT, addon_module, disable_extension, enable_checkout_extension


def sphere_mesh(protocol, triangles: int, texture_png: bytes):
    """A UV sphere with about ``triangles`` triangles (a grid on the sphere, per-vertex UVs)."""
    cols = max(8, int(round(np.sqrt(triangles))))
    rows = max(4, int(round(triangles / (2 * cols))) + 1)
    u, v = np.meshgrid(np.linspace(0, 1, cols + 1, dtype=np.float32), np.linspace(0, 1, rows, dtype=np.float32))
    theta, phi = u * 2 * np.pi, v * np.pi
    vertices = np.stack([np.sin(phi) * np.cos(theta), np.sin(phi) * np.sin(theta), np.cos(phi)], -1).reshape(-1, 3)
    index = np.arange(rows * (cols + 1), dtype=np.int32).reshape(rows, cols + 1)
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]
    faces = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    uvs = np.stack([u, 1 - v], -1).reshape(-1, 2).astype(np.float32)
    return protocol.MeshPayload(vertices.astype(np.float32), faces.astype(np.int32), None, uvs, None, texture_png,
                                "smooth")


def texture(size: int = 1024) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    rgb = np.stack([xx % 256, yy % 256, (xx ^ yy) % 256], -1).astype(np.uint8)
    rgb = (rgb * 0.8 + rng.integers(0, 50, rgb.shape)).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def bench_import(package: str, triangles: int, repeats: int, png: bytes) -> dict:
    import bpy

    protocol = addon_module(package, "core.backend_api").protocol
    jobs = addon_module(package, "core.jobs")
    session = addon_module(package, "blender.session").get_session()
    mesh = sphere_mesh(protocol, triangles, png)
    frames = [bytes(f) for f in protocol.encode(protocol.result("bench", mesh, {"seed": 0, "timings": {}}))]
    totals, decodes, stages = [], [], []
    for repeat in range(repeats):
        scene = bpy.context.scene
        job = session.tracker.add(jobs.JobSpec("reconstruct"), f"bench {triangles}",
                                  {"scene": scene.name, "scene_uid": scene.session_uid, "name": f"bench{repeat}",
                                   "target_size": 1.0, "location": [0, 0, 0]})
        session.tracker.mark_sent(job, generation=0)
        started = time.perf_counter()
        message = protocol.decode(frames)
        message.job = job.id
        decoded = time.perf_counter()
        session.pending.extend(session.tracker.handle(message))
        session.tick()
        done = time.perf_counter()
        if job.state.value != "done":
            raise SystemExit(f"import failed: {job.error_message}")
        obj = bpy.data.objects[job.target["object"]]
        assert len(obj.data.polygons) == mesh.n_triangles
        if obj.data.validate(verbose=False, clean_customdata=False):
            raise SystemExit("Blender's Mesh.validate() had to repair an imported mesh")
        decodes.append(decoded - started)
        totals.append(done - decoded)
        stages.append(_stage_times(package, mesh))
        bpy.data.objects.remove(obj)
        for block in (bpy.data.meshes, bpy.data.materials, bpy.data.images):
            for item in [b for b in block if b.users == 0]:
                block.remove(item)
    median_stages = {k: round(statistics.median(s[k] for s in stages) * 1000, 2) for k in stages[0]}
    return {"triangles": mesh.n_triangles, "vertices": int(len(mesh.vertices)), "texture": "1024x1024 PNG",
            "message_mb": round(sum(len(f) for f in frames) / 1e6, 2), "repeats": repeats,
            "import_ms_median": round(statistics.median(totals) * 1000, 1),
            "import_ms_min": round(min(totals) * 1000, 1),
            "decode_ms_median": round(statistics.median(decodes) * 1000, 2),
            "stages_ms_median": median_stages}


def _stage_times(package: str, mesh) -> dict:
    """Where the import time goes (measured on a separate build that is thrown away)."""
    import bpy

    mesh_arrays = addon_module(package, "core.mesh_arrays")
    placement = addon_module(package, "core.placement")
    mesh_import = addon_module(package, "blender.mesh_import")
    t0 = time.perf_counter()
    payload = mesh_arrays.validate_payload(mesh)
    t1 = time.perf_counter()
    arrays = mesh_arrays.pack_mesh(payload, placement.normalize_to_size(placement.Bounds.of_points(payload.vertices), 1.0))
    t2 = time.perf_counter()
    data = bpy.data.meshes.new("stage")
    mesh_import.fill_mesh(data, arrays)
    t3 = time.perf_counter()
    material = mesh_import.result_material("stage", arrays)
    t4 = time.perf_counter()
    mesh_import.remove_material(material)
    bpy.data.meshes.remove(data)
    return {"validate_payload": t1 - t0, "clean_and_pack": t2 - t1, "foreach_set": t3 - t2,
            "material_and_image": t4 - t3}


def bench_ticks(package: str, images: list[Path], quality: str) -> dict:
    import bpy

    session_module = addon_module(package, "blender.session")
    session = session_module.get_session()
    prefs = bpy.context.preferences.addons[package].preferences
    prefs.backend_mode, prefs.device, prefs.quality = "LOCAL", "cpu", quality
    bpy.ops.stepstone.start_backend()
    end = time.monotonic() + 120
    while session.status().state != "connected" and time.monotonic() < end:
        session_module.timer()
        time.sleep(0.01)
    session.ticks.clear()
    before = set(session.tracker.jobs)
    for path in images:
        bpy.ops.stepstone.reconstruct_files(filepath=str(path))
    jobs = [j for j in session.tracker.jobs.values() if j.id not in before]
    end = time.monotonic() + 600
    while not all(j.final for j in jobs) and time.monotonic() < end:
        session_module.timer()
        time.sleep(0.01)
    running_ticks = [t for t in session.ticks if t.active and not t.imported]
    running = [t.duration_s for t in running_ticks]
    slowest = sorted(running_ticks, key=lambda t: t.duration_s)[-5:]
    imports = [t.duration_s for t in session.ticks if t.imported]
    return {"jobs": [{"label": j.label, "state": j.state.value, "error": j.error_message} for j in jobs],
            "quality": quality, "ticks_while_running": len(running),
            "max_tick_ms": round(max(running) * 1000, 2) if running else None,
            "p99_tick_ms": round(float(np.percentile(running, 99)) * 1000, 2) if running else None,
            "median_tick_ms": round(statistics.median(running) * 1000, 3) if running else None,
            "max_tick_cpu_ms": round(max(t.cpu_s for t in running_ticks) * 1000, 2) if running_ticks else None,
            "slowest_ticks": [{"ms": round(t.duration_s * 1000, 2), "cpu_ms": round(t.cpu_s * 1000, 2),
                               "handled": t.handled} for t in reversed(slowest)],
            "result_import_ticks_ms": [round(t * 1000, 1) for t in imports]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quality", default="default", choices=["preview", "default", "high"])
    parser.add_argument("--images", nargs="+", default=[str(ROOT / "examples" / "mug.png"),
                                                         str(ROOT / "examples" / "vase_on_grey.jpg")])
    parser.add_argument("--out", default=str(ROOT / "bench_results" / "import.json"))
    args = parser.parse_args(argv)

    import bpy

    package = enable_checkout_extension("stepstone_bench")
    bpy.ops.wm.read_homefile(use_empty=True)
    png = texture()
    report = {"machine": {"python": platform.python_version(), "blender": bpy.app.version_string,
                          "cpu": platform.processor() or platform.machine()},
              "import": [], "ticks": None}
    try:
        for size in args.sizes:
            entry = bench_import(package, size, args.repeats, png)
            report["import"].append(entry)
            print(f"import {entry['triangles']:>9,} triangles: {entry['import_ms_median']:7.1f} ms median "
                  f"(decode {entry['decode_ms_median']} ms; stages {entry['stages_ms_median']})", flush=True)
        report["ticks"] = bench_ticks(package, [Path(p) for p in args.images], args.quality)
        ticks = report["ticks"]
        print(f"ticks while jobs ran: {ticks['ticks_while_running']}, longest {ticks['max_tick_ms']} ms "
              f"(most CPU in one tick {ticks['max_tick_cpu_ms']} ms), p99 {ticks['p99_tick_ms']} ms; "
              f"result-import ticks {ticks['result_import_ticks_ms']} ms; "
              f"jobs {[(j['label'], j['state']) for j in ticks['jobs']]}", flush=True)
    finally:
        disable_extension(package)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
