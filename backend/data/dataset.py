"""Torch-free reader for datasets written by backend.data.generate (see docs/dataset.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .records import DatasetError, ShapeRecord

SPLIT_NAMES = ("train", "val", "test", "test_unseen", "all")


class ProceduralDataset:
    """Shapes of one split of a generated dataset, loaded lazily one record at a time.

    ``load`` picks the parts to read: any of "views", "geometry" (normals + depth maps),
    "points" (surface samples), "sdf". Views can be limited with ``view_indices``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        categories: Sequence[str] | None = None,
        load: Sequence[str] = ("views", "geometry", "points", "sdf"),
    ):
        self.root = Path(root)
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}; use one of {SPLIT_NAMES}")
        index = self.root / "dataset.json"
        if not index.is_file():
            raise DatasetError(f"{self.root} is not a generated dataset: {index} is missing")
        self.info = json.loads(index.read_text())
        unknown = set(load) - {"views", "geometry", "points", "sdf"}
        if unknown:
            raise ValueError(f"unknown load parts {sorted(unknown)}")
        self.load = tuple(load)
        if split == "all":
            names = [f"{c}/{p.name}" for c in self.info["categories"] for p in sorted((self.root / c).glob(f"{c}_*"))]
        else:
            path = self.root / "splits" / f"{split}.txt"
            if not path.is_file():
                raise DatasetError(f"split file {path} is missing")
            names = path.read_text().split()
        if categories is not None:
            names = [n for n in names if n.split("/", 1)[0] in set(categories)]
        # only shapes whose directory is complete (generation may still be running)
        self.names = [n for n in names if (self.root / n / "meta.json").is_file()]
        self.split = split

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[ShapeRecord]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> ShapeRecord:
        return self.read(self.names[i])

    def read(self, name: str, view_indices: Sequence[int] | None = None) -> ShapeRecord:
        """Load shape ``'<category>/<category>_<seed>'``."""
        d = self.root / name
        meta = _json(d / "meta.json")
        cams = _json(d / "cameras.json")
        views = cams["views"]
        idx = list(range(len(views))) if view_indices is None else list(view_indices)
        res = int(cams["resolution"])
        rec = ShapeRecord(
            shape_id=name,
            category=meta["category"],
            images=np.zeros((0, res, res, 3), np.float32),
            masks=np.zeros((0, res, res), np.float32),
            intrinsics=np.array([views[k]["K"] for k in idx], dtype=np.float32).reshape(-1, 3, 3),
            world_to_cam=np.array([views[k]["world_to_cam"] for k in idx], dtype=np.float32).reshape(-1, 4, 4),
            meta={**meta, "cameras": [views[k] for k in idx]},
        )
        if "views" in self.load and idx:
            rgba = np.stack([_png(d / views[k]["rgba"]) for k in idx])
            rec.images, rec.masks = rgba[..., :3], rgba[..., 3]
        if "geometry" in self.load and idx:
            rec.depth = _npz(d / "views" / "depth.npz", "depth")[idx].astype(np.float32)
            rec.normals = _npz(d / "views" / "normal.npz", "normal")[idx].astype(np.float32)
        if "points" in self.load:
            with _open_npz(d / "points.npz") as z:
                rec.surface_points, rec.surface_normals, rec.surface_colors = (z["points"], z["normals"], z["colors"])
        if "sdf" in self.load:
            with _open_npz(d / "sdf.npz") as z:
                rec.sdf_points, rec.sdf, rec.occupancy = z["points"], z["sdf"], z["occupancy"].astype(bool)
        return rec


def _json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    return json.loads(path.read_text())


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise DatasetError(f"missing image {path}")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0


def _open_npz(path: Path):
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    return np.load(path)


def _npz(path: Path, key: str) -> np.ndarray:
    with _open_npz(path) as z:
        if key not in z:
            raise DatasetError(f"{path} has no array {key!r}")
        return z[key]
