#!/usr/bin/env python
"""Reconstruction benchmark: real objects (pose-free) and a procedural dataset's test splits.

    .venv/bin/python scripts/bench_reconstruct.py --splits real          # the real-object split
    .venv/bin/python scripts/bench_reconstruct.py --data /work/data_cache/procedural_train

**Real split** (``real``, made by scripts/fetch_real_meshes.py and scripts/render_real_split.py
into ``--real-data``): third-party meshes from packages, rendered as photos (3 views each; half
of the objects without alpha, on a plain or textured backdrop). Every view is one case: the
method gets the photo alone. Its frame cannot be known from a photo, so scoring is **pose-free**
(`backend.geometry.metrics.compare_meshes_pose_free`): prediction and reference in a unit box
(centred, longest side 1), the best of the 48 axis rotations and mirrorings, then similarity ICP
(rotation, uniform scale, translation); F-scores at 1, 2 and 5 % of the unit size, Chamfer-L2 in
the same units. Rows are averaged per object first, then over objects. Methods also include
``hull``, the true convex hull of the reference (an oracle of the visible-outline kind).

**Procedural splits:**
for every shape of the held-in test split (shapes of training categories that training never
saw) and, separately, of the held-out categories (``test_unseen``), one view (chosen from the
shape name, as in training evaluation) is reconstructed by each method from its RGBA render
(the alpha channel gives the object, as in the product). Methods:

* ``model:<preset>`` -- the learned pipeline (`backend.pipelines.reconstruct.model`) with the
  given weights; its output is object-centred (Z up, front -Y), compared as it is.
* ``silhouette`` -- silhouette inflation (the visual hull of the input view), default preset. It
  reconstructs in the *view* frame, so it is rotated into the object frame with the known camera
  (its x axis -> camera right, z -> camera up, depth -> the viewing direction) and re-normalised.
* ``auto`` -- what the server runs by default (`backend.pipelines.reconstruct.dispatch`): the
  model's result when its surface is clean, else the outline solid; each case's choice is
  recorded. Compared as the method it chose is.
* ``outline`` -- the outline solid (a surface of revolution when the outline is one, else the
  inflation), default preset; aligned as ``silhouette``.
* ``hull`` -- the reference's own convex hull (real split; an oracle no single photo gives).
* ``sphere`` -- a sphere of diameter 1 at the origin.

``--views N`` gives the model N views of every shape at once (the chosen view and the ones spread
evenly round the shape's cameras from it), as a user with several pictures would; the
outline methods take one view only.

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
    parser.add_argument("--data", help="procedural dataset root (scripts/gen_data.py), for the procedural splits")
    parser.add_argument("--real-data", default=str(ROOT / "data_cache" / "real_split"),
                        help="real-object split (scripts/render_real_split.py)")
    parser.add_argument("--weights", default=str(ROOT / "backend" / "weights" / "shape_model_cpu"))
    parser.add_argument("--layered-weights", default=str(ROOT / "backend" / "weights" / "layered_depth"),
                        help="layered-depth network for the layered method (scripts/train_layered_depth.py)")
    parser.add_argument("--presets", nargs="+", default=["preview", "default"], help="model presets to run")
    parser.add_argument("--methods", nargs="+", default=["model", "silhouette", "sphere"])
    parser.add_argument("--splits", nargs="+", default=["real", "test", "test_unseen"])
    parser.add_argument("--backgrounds", nargs="+", choices=("alpha", "plain", "textured"),
                        help="real split: only photos with these backgrounds (alpha: the photo carries its mask, so "
                             "no segmentation, and no OpenCV, is needed)")
    parser.add_argument("--max-cases", type=int, default=0,
                        help="real split: at most this many photos, spread evenly over the objects (0 = all)")
    parser.add_argument("--per-category", type=int, default=0, help="shapes per category and split (0 = all)")
    parser.add_argument("--points", type=int, default=20_000, help="surface samples per mesh for the metrics")
    parser.add_argument("--views", type=int, default=1,
                        help="input views per shape for the model (the chosen one and more spread round it)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (then peak GPU memory is reported too)")
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
    if args.views > 1 and {"silhouette", "outline", "layered"} & set(args.methods):
        parser.error("the silhouette, outline and layered methods reconstruct from one view; leave them out with --views > 1")

    tasks = []
    for split in args.splits:
        if split != "real" and not args.data:
            print(f"split {split}: no --data given, skipped")
            continue
        if not select_cases(args, split):
            print(f"split {split}: no shapes, skipped")
            continue
        tasks += [(split, method) for method in expand_methods(args.methods, args.presets)]
    with tempfile.TemporaryDirectory() as tmp:
        runs = run_workers(args, tasks, Path(tmp))
    report = {
        "dataset": str(args.data), "real_data": str(args.real_data), "weights": args.weights, "threads": args.threads, "jobs": args.jobs,
        "views_per_shape": args.views, "backgrounds": args.backgrounds or "all",
        "cpu_count": os.cpu_count(), "load_average_at_end": list(os.getloadavg()),
        "definitions": {
            "chamfer_x1e3": "1000 x (mean squared distance prediction->reference + reference->prediction), "
                            f"{args.points} area-uniform samples each, both meshes normalised to a centred "
                            "bounding box with longest side 1",
            "f@t": "F-score of precision/recall at threshold t x reference bounding-box diagonal",
            "seconds_per_image": "wall time of one pipeline run (segmentation to textured mesh)",
            "peak_rss_mb": "maximum resident set size of the worker process running the method",
            "elevation_error_deg": "real split: mean over the photos of |the elevation of the camera the result "
                                   "reports - the photo's true elevation| (degrees); a result turned upright by "
                                   "the wrong elevation leans by the difference",
            "texture_error": "mean absolute RGB difference (0-255) between the baked texture, read bilinearly at "
                             "2000 random surface points, and the colours it was baked from (the result's "
                             "metadata); texel size, seams and padding show up in it",
        },
        "alignment": {
            "model": "object-centred prediction (Z up, front -Y; the result turned back by its metadata's "
                     "turned_deg) compared as predicted; no pose search",
            "silhouette": "prediction turned into the view frame of the camera its metadata reports "
                          "(level, or lifted by a vessel's rim), then into the object frame with the "
                          "known camera azimuth/elevation, then re-normalised",
            "outline": "as silhouette",
            "layered": "as silhouette",
            "sphere": "sphere of diameter 1 at the origin",
            "real split": "pose-free for every method: unit boxes, best of 48 signed axis permutations, "
                          "similarity ICP; thresholds are fractions of the unit size",
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
            cmd = [sys.executable, __file__, "--worker", method, "--data", str(args.data),
                   "--real-data", args.real_data, "--weights", args.weights,
                   "--layered-weights", args.layered_weights,
                   "--splits", split, "--per-category", str(args.per_category), "--points", str(args.points),
                   "--views", str(args.views),
                   "--threads", str(args.threads), "--device", args.device, "--rows", str(rows_file)]
            cmd += ["--backgrounds", *args.backgrounds] if args.backgrounds else []
            cmd += ["--max-cases", str(args.max_cases)]
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
        out += [f"{m}:{p}" for p in presets] if m in ("model", "auto") else [m]
    return out


def select_cases(args, split: str) -> list[dict]:
    """The benchmark's cases of one split: a name, its category, the input image files, the
    reference mesh and, for procedural shapes, the input cameras."""
    if split == "real":
        cases = real_cases(Path(args.real_data))
        cases = [c for c in cases if not args.backgrounds or c["background"] in args.backgrounds]
        if 0 < args.max_cases < len(cases):
            cases = [cases[i] for i in np.linspace(0, len(cases) - 1, args.max_cases).round().astype(int)]
        return cases
    cases = []
    for name in select_shapes(args.data, split, args.per_category):
        shape_dir = Path(args.data) / name
        cameras = json.loads((shape_dir / "cameras.json").read_text())["views"]
        picked = input_views(cameras, zlib.crc32(name.encode()) % len(cameras), args.views)
        cases.append({"name": name, "object": name, "category": dataset_category(name),
                      "images": [str(shape_dir / v["rgba"]) for v in picked], "reference": str(shape_dir / "mesh.ply"),
                      "view": picked[0]["index"], "views": [v["index"] for v in picked],
                      "world_to_cam": picked[0]["world_to_cam"]})
    return cases


def real_cases(root: Path) -> list[dict]:
    """Every view of every rendered real object is a case (one photo in, the object's mesh to match)."""
    cases = []
    for record_path in sorted(root.glob("*/views.json")):
        record = json.loads(record_path.read_text())
        for view in record["views"]:
            cases.append({"name": f"{record['name']}/{view['index']}", "object": record["name"],
                          "category": record["kind"], "images": [str(record_path.parent / view["image"])],
                          "reference": str(record_path.parent / "reference.npz"), "view": view["index"],
                          "views": [view["index"]], "background": view["background"],
                          **({"elevation": view["elevation"]} if "elevation" in view else {})})
    return cases


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

    from backend.config import ServiceLimits
    from backend.errors import PipelineError
    from backend.geometry.metrics import compare_meshes, compare_meshes_pose_free, normalise_unit_box
    from backend.images import decode_image
    from backend.requests import CommonParams, ReconstructRequest

    torch.set_num_threads(args.threads)
    split = args.splits[0]
    cases = select_cases(args, split)
    method, _, preset = args.worker.partition(":")
    pipeline = build_method(method, args.weights, args.device, args.layered_weights)
    rows = []
    stage_times: list[dict[str, float]] = []
    texture_errors: list[float] = []
    warm = pipeline is not None and bool(cases)
    for case in ([cases[0]] if warm else []) + cases:
        ref_v, ref_f = load_reference(case["reference"])
        chose, diagnostics = method, {}
        t0 = time.perf_counter()
        if method == "sphere":
            vertices, faces = sphere_mesh()
        elif method == "hull":
            vertices, faces = convex_hull(ref_v, ref_f)
        else:
            images = [decode_image(Path(p).read_bytes(), max_pixels=ServiceLimits().max_image_pixels)
                      for p in case["images"]]
            request = ReconstructRequest(images, CommonParams(quality=preset or "default"), texture="uv")
            try:
                output = pipeline.run(request, _context(args.device))
            except PipelineError as exc:  # the user gets an error and no object: it scores nothing
                if warm:
                    warm = False
                    continue
                rows.append(refused_row(case, exc, time.perf_counter() - t0))
                print(f"{case['name']}: refused, {exc}", flush=True)
                continue
            vertices, faces = output.mesh.vertices.astype(np.float64), output.mesh.faces
            if not warm:
                stage_times.append(output.metadata.get("timings_s", {}))
                if output.metadata.get("texture_error") is not None:
                    texture_errors.append(output.metadata["texture_error"])
            chose = output.metadata.get("method", method)
            # which outline solid, and how well the result explains the photo: for choosing rules
            diagnostics = {"solid": output.metadata.get("solid"),
                           "silhouette_iou": output.metadata.get("fidelity", {}).get("silhouette_iou")}
            camera = output.metadata.get("camera")
            if "elevation" in case and camera is not None:  # does the result stand upright?
                diagnostics["elevation_error"] = round(abs(camera["elevation"] - case["elevation"]), 2)
            # everything but the model (alone, or as auto's choice) reconstructs in the frame of
            # the camera its metadata reports (level, or lifted by a vessel's rim); the model's
            # result, turned to face the photo, is turned back into its own object frame
            if split != "real":
                if chose.startswith("shape model"):
                    vertices = turned_back(vertices, output.metadata["turned_deg"])
                else:
                    view = output_to_view(vertices, output.metadata.get("camera"))
                    vertices = view_to_object(view, np.array(case["world_to_cam"]))
        seconds = time.perf_counter() - t0
        if warm:  # the first run pays one-off imports and allocations; it is not timed or scored
            warm = False
            continue
        if split == "real":
            scores = compare_meshes_pose_free(vertices, faces, ref_v, ref_f, n_points=args.points)
        else:
            scores = compare_meshes(normalise_unit_box(vertices), faces, normalise_unit_box(ref_v), ref_f,
                                    n_points=args.points)
        rows.append({"name": case["name"], "object": case["object"], "category": case["category"],
                     "view": case["view"], "views": case["views"], "chose": chose, **diagnostics,
                     "seconds": round(seconds, 3), "chamfer_x1e3": scores.chamfer_l2 * 1e3,
                     **{f"f@{t:g}": v for t, v in scores.fscore.items()}})
        print(f"{case['name']}: F@5% {rows[-1]['f@0.05']:.3f} ({seconds:.1f} s)", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result = {"summary": summarise(rows, by_object=split == "real"), "per_category": per_category(rows),
              "per_object": per_object(rows), "shapes": rows, "peak_rss_mb": round(peak_mb, 1),
              "stages_s": mean_stage_times(stage_times),
              "texture_error": round(float(np.mean(texture_errors)), 2) if texture_errors else None}
    if args.device.startswith("cuda"):
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if hasattr(pipeline, "weights_id"):
        result["weights_id"] = pipeline.weights_id
    Path(args.rows).write_text(json.dumps(result))
    return 0


def refused_row(case: dict, error, seconds: float) -> dict:
    """The row of a photo the pipeline refused (no object found...): every F-score 0; Chamfer, which
    has no value without a surface, is left out of the means."""
    return {"name": case["name"], "object": case["object"], "category": case["category"], "view": case["view"],
            "views": case["views"], "chose": f"refused: {error}", "seconds": round(seconds, 3),
            **{key: float("nan") if key == "chamfer_x1e3" else 0.0 for key in METRIC_KEYS}}


def load_reference(path: str) -> tuple[np.ndarray, np.ndarray]:
    if path.endswith(".npz"):
        with np.load(path) as data:
            return data["vertices"].astype(np.float64), data["faces"].astype(np.int64)
    import trimesh

    mesh = trimesh.load(path, process=False, force="mesh")
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces)


def sphere_mesh() -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    return np.asarray(sphere.vertices), np.asarray(sphere.faces)


def convex_hull(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    hull = trimesh.Trimesh(vertices, faces, process=False).convex_hull
    return np.asarray(hull.vertices), np.asarray(hull.faces)


def input_views(cameras: list[dict], first: int, count: int) -> list[dict]:
    """``count`` of a shape's cameras: ``first`` and the others spread evenly round the list from
    it (the cameras are stratified in azimuth, so these look from all round the object)."""
    if not 1 <= count <= len(cameras):
        raise SystemExit(f"--views {count}: the shapes have {len(cameras)} views")
    return [cameras[(first + k * len(cameras) // count) % len(cameras)] for k in range(count)]


def dataset_category(name: str) -> str:
    return name.split("/", 1)[0]


def build_method(method: str, weights: str, device: str = "cpu", layered_weights: str | None = None):
    if method == "model":
        from backend.pipelines.reconstruct.model import ModelReconstructPipeline

        return ModelReconstructPipeline(device, weights)
    if method == "silhouette":
        from backend.pipelines.reconstruct.silhouette import SilhouetteReconstructPipeline

        return SilhouetteReconstructPipeline(device)
    if method == "outline":
        from backend.pipelines.reconstruct.silhouette import OutlineReconstructPipeline

        return OutlineReconstructPipeline(device)
    if method == "layered":
        from backend.pipelines.reconstruct.layered import LayeredReconstructPipeline

        return LayeredReconstructPipeline(device, layered_weights)
    if method == "auto":
        from backend.pipelines.reconstruct.dispatch import ReconstructPipeline

        return ReconstructPipeline(device, weights)
    if method in ("sphere", "hull"):
        return None
    raise SystemExit(f"unknown method {method!r}; use auto, model:<preset>, layered, silhouette, outline, sphere or hull")


def output_to_view(vertices: np.ndarray, camera: dict | None) -> np.ndarray:
    """A result in its output frame -> the view frame of the camera its metadata reports (x image
    right, y depth, z image up); unchanged when it reports none."""
    if camera is None:
        return vertices
    from backend.geometry.fidelity import camera_axes

    right, down, forward = camera_axes(camera)
    return np.stack([vertices @ right, vertices @ forward, -(vertices @ down)], axis=1)


def turned_back(vertices: np.ndarray, turned_deg: float) -> np.ndarray:
    """The model's result (metadata ``turned_deg``: degrees it was turned about Z to face the
    photo) in the model's own object frame again, as the procedural splits compare it."""
    from backend.pipelines.reconstruct.fitting import turn_about_z

    return vertices @ turn_about_z(-turned_deg).T


def view_to_object(vertices: np.ndarray, world_to_cam: np.ndarray) -> np.ndarray:
    """Silhouette output (x = image right, z = image up, y = depth) -> object frame."""
    rotation = world_to_cam[:3, :3]
    right, down, forward = rotation[0], rotation[1], rotation[2]
    return vertices[:, :1] * right + vertices[:, 1:2] * forward + vertices[:, 2:3] * (-down)


def summarise(rows: list[dict], by_object: bool = False) -> dict:
    """Means over the rows, or (``by_object``) over the objects' own means, so an object counts
    once however many views of it were scored."""
    groups = list(per_object(rows).values()) if by_object else rows
    out = {k: mean_or_nan([g[k] for g in groups]) for k in METRIC_KEYS}
    out["seconds_per_image"] = float(np.mean([r["seconds"] for r in rows]))
    out["shapes"] = len(groups)
    errors = [r["elevation_error"] for r in rows if "elevation_error" in r]
    if errors:
        out["elevation_error_deg"] = float(np.mean(errors))
    return out


def per_category(rows: list[dict]) -> dict:
    cats = sorted({r["category"] for r in rows})
    return {c: summarise([r for r in rows if r["category"] == c]) for c in cats}


def per_object(rows: list[dict]) -> dict:
    names = sorted({r["object"] for r in rows})
    out = {}
    for name in names:
        mine = [r for r in rows if r["object"] == name]
        out[name] = {k: mean_or_nan([r[k] for r in mine]) for k in METRIC_KEYS}
        out[name]["seconds"] = float(np.mean([r["seconds"] for r in mine]))
        out[name]["cases"] = len(mine)
    return out


def mean_or_nan(values: list[float]) -> float:
    """The mean of the values that are numbers (a refused photo has no Chamfer), NaN if none are."""
    numbers = [v for v in values if not np.isnan(v)]
    return float(np.mean(numbers)) if numbers else float("nan")


def mean_stage_times(stage_times: list[dict[str, float]]) -> dict[str, float]:
    """Mean seconds per stage over the images (a stage an image skipped counts 0 for it)."""
    names = list(dict.fromkeys(name for times in stage_times for name in times))
    return {name: round(float(np.mean([times.get(name, 0.0) for times in stage_times])), 3) for name in names}


def _context(device: str = "cpu"):
    from backend.pipelines.base import JobContext

    return JobContext("bench", device, emit_progress=lambda *a: None, emit_preview_mesh=lambda *a: None,
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
    leaning = [run for run in report["runs"] if "elevation_error_deg" in run["summary"]]
    if leaning:
        lines += ["", "Camera elevation error (mean degrees; `elevation_error_deg`): "
                  + ", ".join(f"{run['split']} {run['method']} {run['summary']['elevation_error_deg']:.1f}"
                              for run in leaning)]
    lines += ["", "Mean seconds per stage (`timings_s`; `model_*`: auto's model stages, also when it kept "
                  "the outline solid):", ""]
    for run in report["runs"]:
        stages = run.get("stages_s") or {}
        if stages:
            gpu = f", peak GPU {run['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in run else ""
            texture = (f"; texture error {run['texture_error']:.1f} / 255" if run.get("texture_error") is not None
                       else "")
            lines.append(f"- {run['split']} {run['method']}: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
                         + gpu + texture)
    methods = list(dict.fromkeys(r["method"] for r in report["runs"]))
    for split in dict.fromkeys(r["split"] for r in report["runs"]):
        runs = {r["method"]: r for r in report["runs"] if r["split"] == split}
        group = "per_object" if split == "real" else "per_category"
        keys = ("f@0.02", "f@0.05") if split == "real" else ("f@0.05",)
        lines += ["", f"{split}: {' and '.join(k.replace('f@0.0', 'F@') + '%' for k in keys)} "
                      f"by {'object' if split == 'real' else 'category'}:", ""]
        lines.append("| name | " + " | ".join(methods) + " |")
        lines.append("|---|" + "---|" * len(methods))
        for name in sorted({c for r in runs.values() for c in r[group]}):
            cells = [" / ".join(f"{runs[m][group][name][k]:.3f}" for k in keys)
                     if m in runs and name in runs[m][group] else "" for m in methods]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Alignment: " + "; ".join(f"{k}: {v}" for k, v in report["alignment"].items()) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
