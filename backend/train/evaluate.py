"""Held-in evaluation during training: encode one fixed view per test shape, extract a mesh,
compare with the true mesh (Chamfer-L2 x 10^3, F-score at 1/2/5 % of the reference bounding-box
diagonal, `backend.geometry.metrics`), and measure the viewpoint error.

Prediction and reference are compared in the object frame (the model predicts object-centred
shapes; no alignment is searched).
"""

from __future__ import annotations

import math
import zlib
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
    from backend.geometry.metrics import compare_meshes
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
            scores = compare_meshes(mesh.vertices, mesh.faces, item.vertices, item.faces, n_points=n_points)
            row.update(chamfer_x1e3=scores.chamfer_l2 * 1e3, **{f"f@{t:g}": v for t, v in scores.fscore.items()})
        except NoSurfaceError:
            row.update(chamfer_x1e3=float("nan"), **{"f@0.01": 0.0, "f@0.02": 0.0, "f@0.05": 0.0}, empty=True)
        if codes.viewpoint is not None:
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
