#!/usr/bin/env python
"""Reconstruction benchmark on a procedural dataset's test splits (one view per shape, or several).

    .venv/bin/python scripts/bench_reconstruct.py --data /work/data_cache/procedural_train

For every shape of the held-in test split (shapes of training categories that training never
saw) and, separately, of the held-out categories (``test_unseen``), one view (chosen from the
shape name, as in training evaluation) is reconstructed by each method from its RGBA render
(the alpha channel gives the object, as in the product). Methods:

* ``model:<preset>`` -- the learned pipeline (`backend.pipelines.reconstruct_model`) with the
  given weights; its output is object-centred (Z up, front -Y), compared as it is.
* ``silhouette`` -- silhouette inflation (the visual hull of the input view), default preset. It
  reconstructs in the *view* frame, so it is rotated into the object frame with the known camera
  (its x axis -> camera right, z -> camera up, depth -> the viewing direction) and re-normalised.
* ``sphere`` -- a sphere of diameter 1 at the origin.

``--views N`` gives the model N views of every shape at once (the chosen view and the ones spread
evenly round the shape's cameras from it), as a user with several pictures would; the
silhouette baseline takes one view only.

Every prediction and the reference mesh are normalised the same way (bounding box centred, longest
side 1). Metrics (`backend.geometry.metrics`): Chamfer-L2 x 10^3 (mean squared nearest-neighbour
distance both ways, summed) and F-score at 1 %, 2 %, 5 % of the reference bounding-box diagonal,
on 20k area-uniform surface samples each. Seconds per image are the wall time of the pipeline
call (segmentation to textured mesh) after one untimed warm-up run; peak memory is the maximum resident set size of the worker
process that ran the method. Writes JSON (``--out``) and a markdown summary (``--markdown``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METRIC_KEYS = ("chamfer_x1e3", "f@0.01", "f@0.02", "f@0.05")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="procedural dataset root (scripts/gen_data.py)")
    parser.add_argument("--weights", default=str(ROOT / "backend" / "weights" / "shape_model_cpu"))
    parser.add_argument("--presets", nargs="+", default=["preview", "default"], help="model presets to run")
    parser.add_argument("--methods", nargs="+", default=["model", "silhouette", "sphere"])
    parser.add_argument("--splits", nargs="+", default=["test", "test_unseen"])
    parser.add_argument("--per-category", type=int, default=0, help="shapes per category and split (0 = all)")
    parser.add_argument("--points", type=int, default=20_000, help="surface samples per mesh for the metrics")
    parser.add_argument("--views", type=int, default=1,
                        help="input views per shape for the model (the chosen one and more spread round it)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--jobs", type=int, default=1,
                        help="workers run at once (each method x split is one worker; timings then share the CPU)")
    parser.add_argument("--out", default=str(ROOT / "bench_results" / "reconstruct.json"))
    parser.add_argument("--markdown", default=None, help="markdown summary (default: --out with .md)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.views < 1:
        parser.error("--views must be at least 1")
    if args.views > 1 and "silhouette" in args.methods:
        parser.error("the silhouette baseline reconstructs from one view; leave it out with --views > 1")

    tasks = []
    for split in args.splits:
        if not select_shapes(args.data, split, args.per_category):
            print(f"split {split}: no shapes, skipped")
            continue
        tasks += [(split, method) for method in expand_methods(args.methods, args.presets)]
    with tempfile.TemporaryDirectory() as tmp:
        runs = run_workers(args, tasks, Path(tmp))
    report = {
        "dataset": str(args.data), "weights": args.weights, "threads": args.threads, "jobs": args.jobs,
        "views_per_shape": args.views,
        "cpu_count": os.cpu_count(), "load_average_at_end": list(os.getloadavg()),
        "definitions": {
            "chamfer_x1e3": "1000 x (mean squared distance prediction->reference + reference->prediction), "
                            f"{args.points} area-uniform samples each, both meshes normalised to a centred "
                            "bounding box with longest side 1",
            "f@t": "F-score of precision/recall at threshold t x reference bounding-box diagonal",
            "seconds_per_image": "wall time of one pipeline run (segmentation to textured mesh)",
            "peak_rss_mb": "maximum resident set size of the worker process running the method",
        },
        "alignment": {
            "model": "object-centred prediction (Z up, front -Y) compared as predicted; no pose search",
            "silhouette": "view-frame prediction rotated into the object frame with the known camera "
                          "azimuth/elevation, then re-normalised",
            "sphere": "sphere of diameter 1 at the origin",
        },
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    markdown = Path(args.markdown) if args.markdown else out.with_suffix(".md")
    markdown.write_text(summary_markdown(report))
    print(f"wrote {out} and {markdown}")
    return 0


def run_workers(args, tasks: list[tuple[str, str]], tmp: Path) -> list[dict]:
    """Run one worker process per (split, method), ``args.jobs`` at a time; results in task order."""
    pending = list(enumerate(tasks))
    running: dict[int, tuple[subprocess.Popen, Path, float]] = {}
    results: dict[int, dict] = {}
    while pending or running:
        while pending and len(running) < max(1, args.jobs):
            index, (split, method) = pending.pop(0)
            rows_file = tmp / f"rows_{index}.json"
            cmd = [sys.executable, __file__, "--worker", method, "--data", args.data, "--weights", args.weights,
                   "--splits", split, "--per-category", str(args.per_category), "--points", str(args.points),
                   "--views", str(args.views),
                   "--threads", str(args.threads), "--rows", str(rows_file)]
            log = (tmp / f"log_{index}.txt").open("w")
            running[index] = (subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True),
                              rows_file, time.perf_counter())
        time.sleep(0.2)
        for index, (proc, rows_file, t0) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[index]
            split, method = tasks[index]
            if proc.returncode != 0:
                for other, *_ in running.values():
                    other.kill()
                print((tmp / f"log_{index}.txt").read_text()[-4000:], file=sys.stderr)
                raise SystemExit(f"worker {method} on {split} failed (exit {proc.returncode})")
            result = json.loads(rows_file.read_text())
            result.update(split=split, method=method, wall_s=round(time.perf_counter() - t0, 1))
            results[index] = result
            s = result["summary"]
            print(f"{split:12s} {method:16s} CD {s['chamfer_x1e3']:.2f}  F@1% {s['f@0.01']:.3f}  "
                  f"F@2% {s['f@0.02']:.3f}  F@5% {s['f@0.05']:.3f}  {s['seconds_per_image']:.2f} s/img  "
                  f"peak {result['peak_rss_mb']:.0f} MB", flush=True)
    return [results[i] for i in range(len(tasks))]


def expand_methods(methods: list[str], presets: list[str]) -> list[str]:
    out = []
    for m in methods:
        out += [f"model:{p}" for p in presets] if m == "model" else [m]
    return out


def select_shapes(root: str, split: str, per_category: int) -> list[str]:
    from backend.data.dataset import ProceduralDataset
    from backend.data.records import DatasetError

    try:
        names = ProceduralDataset(root, split, load=()).names
    except DatasetError:  # a split file that does not exist is just an empty split here
        return []
    if per_category <= 0:
        return names
    kept, count = [], {}
    for name in names:
        cat = name.split("/", 1)[0]
        if count.get(cat, 0) < per_category:
            kept.append(name)
            count[cat] = count.get(cat, 0) + 1
    return kept


# ---------------------------------------------------------------------- worker side


def worker(args) -> int:
    import resource

    import torch
    import trimesh

    from backend.config import ServiceLimits
    from backend.geometry.metrics import compare_meshes
    from backend.images import decode_image
    from backend.requests import CommonParams, ReconstructRequest

    torch.set_num_threads(args.threads)
    split = args.splits[0]
    names = select_shapes(args.data, split, args.per_category)
    method, _, preset = args.worker.partition(":")
    pipeline = build_method(method, args.weights)
    rows = []
    warm = pipeline is not None and bool(names)
    for name in ([names[0]] if warm else []) + names:
        shape_dir = Path(args.data) / name
        cameras = json.loads((shape_dir / "cameras.json").read_text())["views"]
        picked = input_views(cameras, zlib.crc32(name.encode()) % len(cameras), args.views)
        view = picked[0]
        reference = trimesh.load(shape_dir / "mesh.ply", process=False, force="mesh")
        ref_v, ref_f = normalise(np.asarray(reference.vertices)), np.asarray(reference.faces)
        t0 = time.perf_counter()
        if method == "sphere":
            sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
            vertices, faces = np.asarray(sphere.vertices), np.asarray(sphere.faces)
        else:
            images = [decode_image((shape_dir / v["rgba"]).read_bytes(), max_pixels=ServiceLimits().max_image_pixels)
                      for v in picked]
            request = ReconstructRequest(images, CommonParams(quality=preset or "default"), texture="uv")
            output = pipeline.run(request, _context())
            vertices, faces = output.mesh.vertices.astype(np.float64), output.mesh.faces
            if method == "silhouette":
                vertices = view_to_object(vertices, np.array(view["world_to_cam"]))
        seconds = time.perf_counter() - t0
        if warm:  # the first run pays one-off imports and allocations; it is not timed or scored
            warm = False
            continue
        scores = compare_meshes(normalise(vertices), faces, ref_v, ref_f, n_points=args.points)
        rows.append({"name": name, "category": dataset_category(name), "view": view["index"],
                     "views": [v["index"] for v in picked],
                     "seconds": round(seconds, 3), "chamfer_x1e3": scores.chamfer_l2 * 1e3,
                     **{f"f@{t:g}": v for t, v in scores.fscore.items()}})
        print(f"{name}: F@5% {rows[-1]['f@0.05']:.3f} ({seconds:.1f} s)", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result = {"summary": summarise(rows), "per_category": per_category(rows), "shapes": rows,
              "peak_rss_mb": round(peak_mb, 1)}
    if hasattr(pipeline, "weights_id"):
        result["weights_id"] = pipeline.weights_id
    Path(args.rows).write_text(json.dumps(result))
    return 0


def input_views(cameras: list[dict], first: int, count: int) -> list[dict]:
    """``count`` of a shape's cameras: ``first`` and the others spread evenly round the list from
    it (the cameras are stratified in azimuth, so these look from all round the object)."""
    if not 1 <= count <= len(cameras):
        raise SystemExit(f"--views {count}: the shapes have {len(cameras)} views")
    return [cameras[(first + k * len(cameras) // count) % len(cameras)] for k in range(count)]


def dataset_category(name: str) -> str:
    return name.split("/", 1)[0]


def build_method(method: str, weights: str):
    if method == "model":
        from backend.pipelines.reconstruct_model import ModelReconstructPipeline

        return ModelReconstructPipeline("cpu", weights)
    if method == "silhouette":
        from backend.pipelines.reconstruct_silhouette import SilhouetteReconstructPipeline

        return SilhouetteReconstructPipeline("cpu")
    if method == "sphere":
        return None
    raise SystemExit(f"unknown method {method!r}; use model:<preset>, silhouette or sphere")


def view_to_object(vertices: np.ndarray, world_to_cam: np.ndarray) -> np.ndarray:
    """Silhouette output (x = image right, z = image up, y = depth) -> object frame."""
    rotation = world_to_cam[:3, :3]
    right, down, forward = rotation[0], rotation[1], rotation[2]
    return vertices[:, :1] * right + vertices[:, 1:2] * forward + vertices[:, 2:3] * (-down)


def normalise(vertices: np.ndarray) -> np.ndarray:
    lo, hi = vertices.min(0), vertices.max(0)
    return (vertices - (lo + hi) / 2) / float((hi - lo).max())


def summarise(rows: list[dict]) -> dict:
    out = {k: float(np.mean([r[k] for r in rows])) for k in METRIC_KEYS}
    out["seconds_per_image"] = float(np.mean([r["seconds"] for r in rows]))
    out["shapes"] = len(rows)
    return out


def per_category(rows: list[dict]) -> dict:
    cats = sorted({r["category"] for r in rows})
    return {c: summarise([r for r in rows if r["category"] == c]) for c in cats}


def _context():
    from backend.pipelines.base import JobContext

    return JobContext("bench", "cpu", emit_progress=lambda *a: None, emit_preview_mesh=lambda *a: None,
                      emit_preview_points=lambda *a: None, is_cancelled=lambda: False,
                      deadline=time.monotonic() + 3600)


# ---------------------------------------------------------------------- report


def summary_markdown(report: dict) -> str:
    lines = [] if report.get("views_per_shape", 1) == 1 else [f"{report['views_per_shape']} input views per shape.", ""]
    lines += ["| split | method | shapes | Chamfer-L2 x10^3 | F@1% | F@2% | F@5% | s / image | peak MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in report["runs"]:
        s = run["summary"]
        lines.append(f"| {run['split']} | {run['method']} | {s['shapes']} | {s['chamfer_x1e3']:.2f} | "
                     f"{s['f@0.01']:.3f} | {s['f@0.02']:.3f} | {s['f@0.05']:.3f} | {s['seconds_per_image']:.2f} | "
                     f"{run['peak_rss_mb']:.0f} |")
    lines += ["", "F@5% by category:", ""]
    methods = [r["method"] for r in report["runs"]]
    methods = list(dict.fromkeys(methods))
    lines.append("| split | category | " + " | ".join(methods) + " |")
    lines.append("|---|---|" + "---|" * len(methods))
    for split in dict.fromkeys(r["split"] for r in report["runs"]):
        runs = {r["method"]: r for r in report["runs"] if r["split"] == split}
        cats = sorted({c for r in runs.values() for c in r["per_category"]})
        for c in cats:
            cells = [f"{runs[m]['per_category'][c]['f@0.05']:.3f}" if m in runs and c in runs[m]["per_category"]
                     else "" for m in methods]
            lines.append(f"| {split} | {c} | " + " | ".join(cells) + " |")
    lines += ["", "Alignment: " + "; ".join(f"{k}: {v}" for k, v in report["alignment"].items()) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
