"""Held-in evaluation during training: encode one fixed view per test shape, extract a mesh,
compare with the true mesh (Chamfer-L2 x 10^3, F-score at 1/2/5 % of the reference bounding-box
diagonal, `backend.geometry.metrics`), and measure the viewpoint error.

Prediction and reference are compared in the object frame (the model predicts object-centred
shapes; no alignment is searched).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class EvalItem:
    name: str
    category: str
    image: np.ndarray
    """[3, S, S] encoder input of the chosen view."""
    viewpoint: np.ndarray
    """[3] true (azimuth, elevation, roll) radians of that view."""
    vertices: np.ndarray
    """[V, 3] reference mesh vertices (object frame)."""
    faces: np.ndarray
    """[F, 3] reference mesh faces."""
    pose_free: bool = False
    """Score after the pose-free alignment (`compare_meshes_pose_free`: real objects, whose frame
    the model cannot know) instead of in the object frame; thresholds are then shares of the
    reference's longest side, not of its diagonal."""


def procedural_eval_items(root: str | Path, split: str, image_size: int, limit: int) -> list[EvalItem]:
    """Up to ``limit`` shapes of ``split`` spread round-robin over categories, one fixed view each
    (chosen from the shape name, so every evaluation sees the same views)."""
    import trimesh

    from backend.data.dataset import ProceduralDataset
    from backend.pipelines.reconstruct.inputs import object_crop
    from backend.train.data import viewpoint_from_extrinsics

    dataset = ProceduralDataset(root, split, load=("views",))
    by_category: dict[str, list[str]] = {}
    for name in dataset.names:
        by_category.setdefault(name.split("/", 1)[0], []).append(name)
    chosen: list[str] = []
    while len(chosen) < limit and any(by_category.values()):
        for names in by_category.values():
            if names and len(chosen) < limit:
                chosen.append(names.pop(0))
    items = []
    for name in chosen:
        view = zlib.crc32(name.encode()) % dataset.info["views"]
        record = dataset.read(name, view_indices=[view])
        rgba = (np.concatenate([record.images[0], record.masks[0][..., None]], -1) * 255 + 0.5).astype(np.uint8)
        crop, _ = object_crop(rgba, rgba[..., 3] >= 128, image_size)
        mesh = trimesh.load(Path(root) / name / "mesh.ply", process=False, force="mesh")
        items.append(EvalItem(name, record.category, crop.transpose(2, 0, 1),
                              viewpoint_from_extrinsics(record.world_to_cam[0]),
                              np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32)))
    return items


def real_split_items(root: str | Path, image_size: int, limit: int | None = None) -> list[EvalItem]:
    """The real-object split of the reconstruct benchmark (scripts/render_real_split.py): each
    photo cropped with its true mask (so the score is the shape prior's, not the segmentation's),
    scored pose-free against the object's mesh. ``limit`` keeps the first views of each object
    first (one photo per object, then the second ...)."""
    import json

    from PIL import Image

    from backend.pipelines.reconstruct.inputs import object_crop

    per_object = []
    for record_path in sorted(Path(root).glob("*/views.json")):
        record = json.loads(record_path.read_text())
        with np.load(record_path.parent / "reference.npz") as ref:
            vertices, faces = ref["vertices"].astype(np.float32), ref["faces"].astype(np.int32)
        rows = []
        for view in record["views"]:
            rgba = np.asarray(Image.open(record_path.parent / view["image"]).convert("RGBA"))
            mask = np.asarray(Image.open(record_path.parent / view["mask"]).convert("L")) >= 128
            crop, _ = object_crop(rgba, mask, image_size)
            rows.append(EvalItem(f"{record['name']}/{view['index']}", record["kind"], crop.transpose(2, 0, 1),
                                 np.full(3, np.nan, np.float32), vertices, faces, pose_free=True))
        per_object.append(rows)
    items = [rows[i] for i in range(max((len(r) for r in per_object), default=0)) for rows in per_object if i < len(rows)]
    return items[:limit] if limit else items


HELDIN_SEEDS = (64, 65)
"""Seeds of the generated held-in set: those of data_cache/procedural_heldin (docs/reconstruction.md),
far below `backend.train.shape_bank.TRAIN_SEED_OFFSET`, so on-the-fly training never sees them."""


def generated_heldin_items(image_size: int, categories=None, seeds=HELDIN_SEEDS, device="cpu",
                           limit: int | None = None) -> list[EvalItem]:
    """A held-in set that needs no files: each (category, seed) built by the torch generator,
    photographed once by the training renderer over white from a fixed camera (azimuth from the
    name, elevation 20 deg, 35 deg field of view), its reference mesh from the 128^3 bake. For
    machines without the Blender-rendered held-in dataset (the GPU machine). ``limit`` keeps the
    first shapes, one per category before the second seed."""
    import zlib

    from skimage.measure import marching_cubes

    from backend.data.procedural import CATEGORIES
    from backend.data.procedural.torch_sdf import make_torch_shape
    from backend.render.cameras import orbit_cameras
    from backend.train.shape_bank import GRID_LIMIT, bake_shape, voxel
    from backend.train.views import FRAMED_RADIUS, ViewConfig, crop_over_white, render_views

    items = []
    size = 2 * image_size
    config = ViewConfig(render_size=size, texture_amplitude=0.0)
    fov = math.radians(35.0)
    pairs = [(category, seed) for seed in seeds for category in (categories or CATEGORIES)]
    for category, seed in pairs[:limit]:
        name = f"{category}/{category}_{seed:06d}"
        shape = make_torch_shape(category, seed, device=device, measure_res=128)
        baked = bake_shape(shape, 128, 1024, seed)
        shapes = {"sdf": baked.sdf.float()[None, None], "materials": baked.materials.float()[None, None],
                  "palette": baked.palette[None]}
        azimuth = math.radians(zlib.crc32(name.encode()) % 360)
        angles = torch.tensor([azimuth, math.radians(20.0), 0.0], device=device)
        cams = orbit_cameras(angles[:1], angles[1:2], FRAMED_RADIUS / math.sin(0.4 * fov),
                             focal=0.5 * size / math.tan(0.5 * fov), height=size, width=size)
        gen = torch.Generator(device=device).manual_seed(zlib.crc32(name.encode()))
        views = render_views(shapes, config, gen, cameras=(cams, angles[None]))
        crop = crop_over_white(views.clean, views.alpha, image_size)[0]
        verts, faces, _, _ = marching_cubes(baked.sdf.float().cpu().numpy(), 0.0, spacing=(voxel(128),) * 3)
        items.append(EvalItem(name, category, crop.cpu().numpy().astype(np.float32), angles.cpu().numpy(),
                              (verts - GRID_LIMIT).astype(np.float32), faces.astype(np.int32)))
    return items


class GrowingEvalSet:
    """`procedural_eval_items` re-read whenever the split has gained shapes (data being generated)."""

    def __init__(self, root: str | Path, split: str, image_size: int, limit: int) -> None:
        self.args = (root, split, image_size, limit)
        self._names: list[str] | None = None
        self._items: list[EvalItem] = []

    def __call__(self) -> list[EvalItem]:
        from backend.data.dataset import ProceduralDataset

        root, split, _, _ = self.args
        names = ProceduralDataset(root, split, load=()).names
        if names != self._names:
            self._items = procedural_eval_items(*self.args)
            self._names = names
        return self._items


def angle_error_deg(a: float, b: float) -> float:
    return abs(math.degrees(math.atan2(math.sin(a - b), math.cos(a - b))))


@torch.no_grad()
def evaluate(model, items: list[EvalItem], resolution: int = 64, n_points: int = 10_000) -> dict:
    """Metrics per shape and their means; a shape whose field has no surface scores F = 0 and
    is counted in ``empty``."""
    from backend.geometry.metrics import compare_meshes, compare_meshes_pose_free
    from backend.render.extract import NoSurfaceError

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for item in items:
        codes = model.encode(torch.from_numpy(item.image)[None].to(device))
        row = {"name": item.name, "category": item.category}
        try:
            mesh = model.extract_mesh(codes.shape[0], resolution=resolution, coarse_to_fine=True)
            compare = compare_meshes_pose_free if item.pose_free else compare_meshes
            scores = compare(mesh.vertices, mesh.faces, item.vertices, item.faces, n_points=n_points)
            row.update(chamfer_x1e3=scores.chamfer_l2 * 1e3, **{f"f@{t:g}": v for t, v in scores.fscore.items()})
        except NoSurfaceError:
            row.update(chamfer_x1e3=float("nan"), **{"f@0.01": 0.0, "f@0.02": 0.0, "f@0.05": 0.0}, empty=True)
        if codes.viewpoint is not None and not np.isnan(item.viewpoint).any():
            row["azimuth_err_deg"] = angle_error_deg(float(codes.viewpoint.azimuth[0]), float(item.viewpoint[0]))
            row["elevation_err_deg"] = angle_error_deg(float(codes.viewpoint.elevation[0]), float(item.viewpoint[1]))
        rows.append(row)
    model.train(was_training)
    summary = {"shapes": len(rows), "empty": sum(1 for r in rows if r.get("empty"))}
    for key in ("chamfer_x1e3", "f@0.01", "f@0.02", "f@0.05", "azimuth_err_deg", "elevation_err_deg"):
        values = [r[key] for r in rows if key in r and not math.isnan(r[key])]
        if values:
            summary[key] = float(np.mean(values))
    if "azimuth_err_deg" in summary:
        summary["azimuth_median_err_deg"] = float(np.median([r["azimuth_err_deg"] for r in rows]))
    return {"summary": summary, "shapes": rows}


EvalSet = list[EvalItem] | Callable[[], list[EvalItem]]
"""Evaluation items, or a callable asked for them at each evaluation (data still being made)."""


def evaluate_sets(model, sets: dict[str, EvalSet], resolution: int = 64, n_points: int = 10_000) -> dict:
    """`evaluate` over named sets: ``{"summary": {"name/metric": value}, "shapes": [rows with "set"]}``
    (the unnamed set ``""`` keeps its metrics' plain names); sets without items are skipped."""
    result: dict = {"summary": {}, "shapes": []}
    for name, items in sets.items():
        items = items() if callable(items) else items
        if not items:
            continue
        scored = evaluate(model, items, resolution, n_points)
        prefix = f"{name}/" if name else ""
        result["summary"].update({prefix + k: v for k, v in scored["summary"].items()})
        result["shapes"] += [{**row, "set": name} if name else row for row in scored["shapes"]]
    return result


def export_report(model, roots: list[str | Path], log=print) -> dict:
    """Metadata for exported weights: each procedural root's generation settings and split sizes,
    and the model's scores on every shape of its held-in test split (``{}`` without roots)."""
    import json

    datasets, heldin = [], []
    for root in roots:
        info = json.loads((Path(root) / "dataset.json").read_text())
        datasets.append({"root": str(root), "generator_version": info.get("generator_version"),
                         "config": info.get("config"),
                         "splits": {s: len((Path(root) / "splits" / f"{s}.txt").read_text().split())
                                    for s in ("train", "val", "test", "test_unseen")}})
        items = procedural_eval_items(root, "test", model.config.encoder.image_size, limit=10_000)
        result = evaluate(model, items, resolution=64, n_points=10_000)
        heldin.append({"root": str(root), **result["summary"]})
        log(f"held-in test ({root}): {result['summary']}")
    return {"datasets": datasets, "heldin_test": heldin} if roots else {}
