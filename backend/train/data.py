"""Training data for the shape model: shapes held in memory, batches of input crops, rays and 3D samples.

`ShapeViewDataset` is a ``torch.utils.data.Dataset`` over shape records from any reader that
yields `backend.data.records.ShapeRecord` (`ProceduralDataset`, `DVRDataset`). Each shape is read
once and kept compactly (uint8 views, float16 normals, a fixed subset of the 3D samples), because
per-step disk reads would cost more than the step itself on a small CPU. A batch holds, per shape:
the encoder crop of one random input view, rays from that view and from other views of the same
shape with their true colour / alpha / normals, 3D SDF (or occupancy) samples, and coloured
surface samples. Randomness comes from the caller's generator, so step ``s`` of a run is
reproducible from ``(seed, s)`` alone (which makes resuming exact without saving RNG state).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from backend.data.records import DatasetError, ShapeRecord
from backend.pipelines.reconstruct.inputs import object_crop


@dataclass
class CachedShape:
    """One shape as kept in memory for training."""

    name: str
    category: str
    crops: np.ndarray
    """[V, 3, S, S] float32 encoder inputs (object over white)."""
    rgba: np.ndarray
    """[V, H, W, 4] uint8 views (straight alpha)."""
    normals: np.ndarray | None
    """[V, H, W, 3] float16 world normals, 0 on background."""
    foreground: list[np.ndarray]
    """Per view: flat pixel indices with alpha >= 0.5."""
    intrinsics: np.ndarray
    """[V, 3, 3] float32 pixel intrinsics."""
    world_to_cam: np.ndarray
    """[V, 4, 4] float32 OpenCV extrinsics."""
    viewpoint: np.ndarray
    """[V, 3] float32 (azimuth, elevation, roll) radians in orbit-camera conventions."""
    sdf_points: np.ndarray | None
    """[P, 3] float32, half near-surface and half uniform samples when both exist."""
    sdf: np.ndarray | None
    """[P] float32 signed distances (None for occupancy-only data)."""
    occupancy: np.ndarray | None
    """[P] bool inside flags."""
    surface_points: np.ndarray | None
    """[Q, 3] float32 surface samples."""
    surface_colors: np.ndarray | None
    """[Q, 3] float32 base colours at surface_points (procedural data only)."""


@dataclass
class Batch:
    """Tensors of one training step (B shapes, N rays each, P / Q 3D samples each)."""

    images: torch.Tensor
    """[B, 3, S, S] encoder inputs."""
    viewpoint: torch.Tensor
    """[B, 3] true (azimuth, elevation, roll) of the input view, radians."""
    origins: torch.Tensor
    """[B, N, 3] ray origins (world)."""
    directions: torch.Tensor
    """[B, N, 3] unit ray directions."""
    rgb: torch.Tensor
    """[B, N, 3] true colour over white."""
    alpha: torch.Tensor
    """[B, N] true coverage."""
    normals: torch.Tensor
    """[B, N, 3] true world normals (0 where unknown or background)."""
    has_normals: torch.Tensor
    """[B] bool, the shape has normal maps."""
    sdf_points: torch.Tensor
    """[B, P, 3] 3D sample points."""
    sdf: torch.Tensor
    """[B, P] true SDF (0 where ``has_sdf`` is False)."""
    occupancy: torch.Tensor
    """[B, P] float 0/1 inside flags."""
    has_sdf: torch.Tensor
    """[B] bool, SDF values known (else occupancy only)."""
    has_points: torch.Tensor
    """[B] bool, any 3D samples at all."""
    surface_points: torch.Tensor
    """[B, Q, 3] surface samples."""
    surface_colors: torch.Tensor
    """[B, Q, 3] their base colours."""
    has_colors: torch.Tensor
    """[B] bool, surface colours known."""

    def to(self, device) -> Batch:
        return Batch(**{k: v.to(device) for k, v in self.__dict__.items()})


def viewpoint_from_extrinsics(world_to_cam: np.ndarray) -> np.ndarray:
    """(azimuth, elevation, roll) [3] radians of an OpenCV camera looking at the origin.

    Conventions of `backend.render.cameras.orbit_cameras`: azimuth 0 = camera on -Y, +pi/2 on +X;
    roll measured between the camera x axis and the horizontal (cos az, sin az, 0).
    """
    rotation, translation = world_to_cam[:3, :3].astype(np.float64), world_to_cam[:3, 3].astype(np.float64)
    centre = -rotation.T @ translation
    distance = float(np.linalg.norm(centre))
    if distance < 1e-9:
        raise ValueError("camera sits at the origin; its viewpoint is undefined")
    azimuth = math.atan2(centre[0], -centre[1])
    elevation = math.asin(float(np.clip(centre[2] / distance, -1.0, 1.0)))
    x_axis, z_axis = rotation[0], rotation[2]
    x0 = np.array([math.cos(azimuth), math.sin(azimuth), 0.0])
    y0 = np.cross(z_axis, x0)
    roll = math.atan2(float(x_axis @ y0), float(x_axis @ x0))
    return np.array([azimuth, elevation, roll], dtype=np.float32)


def cache_shape(record: ShapeRecord, image_size: int, sdf_points: int, surface_points: int,
                seed: int = 0) -> CachedShape:
    """Turn a `ShapeRecord` into the compact in-memory form (fixed subsets drawn with ``seed``)."""
    if record.num_views == 0:
        raise ValueError(f"{record.shape_id}: no views to train on")
    rng = np.random.default_rng(seed)
    rgba = np.concatenate([record.images, record.masks[..., None]], axis=-1)
    rgba = (np.clip(rgba, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    crops, foreground = [], []
    for view in rgba:
        mask = view[..., 3] >= 128
        if not mask.any():
            raise ValueError(f"{record.shape_id}: a view shows no object")
        rgb, _ = object_crop(view, mask, image_size)
        crops.append(rgb.transpose(2, 0, 1))
        foreground.append(np.flatnonzero(mask.reshape(-1)).astype(np.int32))
    pts = sdf = occ = None
    if record.sdf_points is not None and len(record.sdf_points):
        take = _subset(len(record.sdf_points), sdf_points, rng)
        pts = record.sdf_points[take].astype(np.float32)
        sdf = None if record.sdf is None else record.sdf[take].astype(np.float32)
        occ = None if record.occupancy is None else record.occupancy[take].astype(bool)
    surf = cols = None
    if record.surface_points is not None and len(record.surface_points):
        take = _subset(len(record.surface_points), surface_points, rng)
        surf = record.surface_points[take].astype(np.float32)
        cols = None if record.surface_colors is None else record.surface_colors[take].astype(np.float32)
    return CachedShape(
        name=record.shape_id, category=record.category, crops=np.stack(crops).astype(np.float32),
        rgba=rgba, normals=None if record.normals is None else record.normals.astype(np.float16),
        foreground=foreground, intrinsics=record.intrinsics.astype(np.float32),
        world_to_cam=record.world_to_cam.astype(np.float32),
        viewpoint=np.stack([viewpoint_from_extrinsics(m) for m in record.world_to_cam]),
        sdf_points=pts, sdf=sdf, occupancy=occ, surface_points=surf, surface_colors=cols,
    )


AUGMENT_SHIFT = 2
"""Largest shift (pixels, each axis) of an augmented encoder input."""
AUGMENT_CONTRAST = (0.85, 1.15)
"""Range of the factor scaling an augmented input's distance from white."""


def augment_crop(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A jittered copy of an encoder input [3, S, S] (object over white): shifted by up to
    `AUGMENT_SHIFT` pixels (white fills in) and with the object's distance from white scaled
    (lighter / darker; the background stays white). The pipeline's crops are exact, so this only
    fights over-fitting to the few renders of each training shape; the colour targets stay
    the renders' own, so the scale range is kept small."""
    dy, dx = rng.integers(-AUGMENT_SHIFT, AUGMENT_SHIFT + 1, size=2)
    contrast = rng.uniform(*AUGMENT_CONTRAST)
    _, h, w = crop.shape
    out = np.ones_like(crop)
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        crop[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return np.clip(1.0 - (1.0 - out) * contrast, 0.0, 1.0).astype(np.float32)


def rescale_crops(crops: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """[B, 3, S, S] encoder inputs (object over white) zoomed about their centre by ``scales``
    [B] (> 1 enlarges the object; white fills in where a shrunk picture leaves room)."""
    images = torch.from_numpy(np.ascontiguousarray(crops))
    theta = torch.zeros(len(crops), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = torch.from_numpy(1.0 / np.asarray(scales, np.float32))
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    # zero padding of the distance from white is white padding of the picture
    return (1.0 - torch.nn.functional.grid_sample(1.0 - images, grid, align_corners=False)).numpy()


def permute_channels(crops: np.ndarray, rng: np.random.Generator, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Swap the colour channels of about ``share`` of [B, 3, S, S] inputs in a random order each;
    returns the images and which ones changed. The procedural renders give every training shape
    one colour in all its views, so without this the encoder can tell shapes apart by colour and
    learn codes by heart instead of from the shape (measured in docs/training.md)."""
    out = crops.copy()
    changed = rng.random(len(crops)) < share
    for i in np.nonzero(changed)[0]:
        out[i] = crops[i][rng.permutation(3)]
    return out, changed


MIRROR_VIEWPOINT = np.array([-1.0, 1.0, -1.0], np.float32)
"""Factors that turn a viewpoint (azimuth, elevation, roll) into the one that sees the left-right
flipped picture (`mirror_sample`)."""


def mirror_sample(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The batch entry of the mirror world x -> -x: the input picture flipped left-right is what
    a camera at azimuth -az (roll -roll) sees of the mirrored object, so every 3D quantity gets
    its x negated and the targets stay consistent, symmetric object or not (a mug's handle
    moves to the other side). Doubles the distinct inputs of every shape at no rendering cost."""
    out = dict(sample)
    out["images"] = np.ascontiguousarray(sample["images"][:, :, ::-1])
    out["viewpoint"] = sample["viewpoint"] * MIRROR_VIEWPOINT
    flip = np.array([-1.0, 1.0, 1.0], np.float32)
    for key in ("origins", "directions", "normals", "sdf_points", "surface_points"):
        out[key] = sample[key] * flip
    return out


def _subset(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=min(n, k), replace=False))


class ShapeViewDataset(torch.utils.data.Dataset):
    """Shapes of one or more readers, cached in memory; item ``i`` is shape ``i``.

    Args:
        sources: callables returning the current list of shape names and a reader for one name
            (see `procedural_source`); calling `refresh` again picks up shapes that appeared.
        image_size: encoder input side (the model's ``encoder.image_size``).
        sdf_points / surface_points: 3D samples kept per shape.
    """

    def __init__(self, sources: Sequence[ShapeSource], image_size: int, sdf_points: int = 16_384,
                 surface_points: int = 4096, seed: int = 0, log: Callable[[str], None] | None = None) -> None:
        self.sources = list(sources)
        self.image_size = image_size
        self.sdf_points = sdf_points
        self.surface_points = surface_points
        self.seed = seed
        self.log = log or (lambda _msg: None)
        self.shapes: list[CachedShape] = []
        self._known: set[str] = set()
        self.refresh()

    def refresh(self) -> int:
        """Load shapes not yet cached; returns how many were added."""
        added = 0
        for source in self.sources:
            for name in source.names():
                key = f"{source.tag}:{name}"
                if key in self._known:
                    continue
                try:
                    record = source.read(name)
                    shape = cache_shape(record, self.image_size, self.sdf_points, self.surface_points, self.seed)
                except (DatasetError, ValueError, KeyError, OSError) as exc:  # one broken shape must not stop training
                    self.log(f"skipping {name}: {type(exc).__name__}: {exc}")
                    self._known.add(key)
                    continue
                self._known.add(key)
                self.shapes.append(shape)
                added += 1
        return added

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> CachedShape:
        return self.shapes[index]

    def batch(self, indices: Iterable[int], rng: np.random.Generator, *, rays_per_view: int,
              supervise_views: int, sdf_points: int, surface_points: int | None = None,
              augment: bool = False) -> Batch:
        """Assemble a `Batch` for shapes ``indices``; all sampling uses ``rng``. ``augment``
        mirrors half of the entries (`mirror_sample`) and jitters the encoder inputs (`augment_crop`)."""
        items = [self.sample(self.shapes[i], rng, rays_per_view, supervise_views, sdf_points,
                             surface_points or sdf_points, augment) for i in indices]
        return Batch(**{k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]})

    @staticmethod
    def sample(shape: CachedShape, rng: np.random.Generator, rays_per_view: int, supervise_views: int,
               sdf_points: int, surface_points: int, augment: bool = False) -> dict[str, np.ndarray]:
        """Arrays of one batch entry (see `Batch` for the keys)."""
        n_views = len(shape.crops)
        view = int(rng.integers(n_views))
        others = [v for v in rng.permutation(n_views) if v != view]
        views = [view] + others[: max(0, supervise_views - 1)]
        origins, dirs, rgb, alpha, normals = [], [], [], [], []
        _, h, w, _ = shape.rgba.shape
        for v in views:
            fg = shape.foreground[v]
            n_fg = rays_per_view // 2 if len(fg) else 0
            flat = np.concatenate([fg[rng.integers(len(fg), size=n_fg)] if n_fg else np.zeros(0, np.int64),
                                   rng.integers(h * w, size=rays_per_view - n_fg)])
            rows, cols = flat // w, flat % w
            o, d = _rays(shape.intrinsics[v], shape.world_to_cam[v], cols + 0.5, rows + 0.5)
            px = shape.rgba[v, rows, cols].astype(np.float32) / 255.0
            a = px[:, 3]
            origins.append(o)
            dirs.append(d)
            rgb.append(px[:, :3] * a[:, None] + (1.0 - a[:, None]))
            alpha.append(a)
            normals.append(np.zeros((len(flat), 3), np.float32) if shape.normals is None
                           else shape.normals[v, rows, cols].astype(np.float32))
        out = {
            "images": shape.crops[view], "viewpoint": shape.viewpoint[view],
            "origins": np.concatenate(origins).astype(np.float32),
            "directions": np.concatenate(dirs).astype(np.float32),
            "rgb": np.concatenate(rgb).astype(np.float32), "alpha": np.concatenate(alpha).astype(np.float32),
            "normals": np.concatenate(normals), "has_normals": np.array(shape.normals is not None),
        }
        if shape.sdf_points is not None:
            take = rng.integers(len(shape.sdf_points), size=sdf_points)
            out["sdf_points"] = shape.sdf_points[take]
            out["sdf"] = shape.sdf[take] if shape.sdf is not None else np.zeros(sdf_points, np.float32)
            out["occupancy"] = (shape.occupancy[take] if shape.occupancy is not None
                                else shape.sdf[take] < 0).astype(np.float32)
        else:
            out["sdf_points"] = np.zeros((sdf_points, 3), np.float32)
            out["sdf"] = np.zeros(sdf_points, np.float32)
            out["occupancy"] = np.zeros(sdf_points, np.float32)
        out["has_sdf"] = np.array(shape.sdf is not None)
        out["has_points"] = np.array(shape.sdf_points is not None)
        if shape.surface_points is not None and shape.surface_colors is not None:
            take = rng.integers(len(shape.surface_points), size=surface_points)
            out["surface_points"], out["surface_colors"] = shape.surface_points[take], shape.surface_colors[take]
        else:
            out["surface_points"] = np.zeros((surface_points, 3), np.float32)
            out["surface_colors"] = np.zeros((surface_points, 3), np.float32)
        out["has_colors"] = np.array(shape.surface_colors is not None)
        if augment:
            if rng.random() < 0.5:
                out = mirror_sample(out)
            out["images"] = augment_crop(out["images"], rng)
        return out


def _rays(K: np.ndarray, world_to_cam: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World rays through pixel positions (u, v) of an OpenCV camera -> (origins [N,3], unit dirs [N,3])."""
    rotation, translation = world_to_cam[:3, :3].astype(np.float64), world_to_cam[:3, 3].astype(np.float64)
    cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, dtype=np.float64)], axis=-1)
    dirs = cam @ rotation  # R^T d for row vectors
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    centre = -rotation.T @ translation
    return np.broadcast_to(centre, dirs.shape).astype(np.float32), dirs.astype(np.float32)


@dataclass
class ShapeSource:
    """A reader of shape records by name, plus how to list the names currently available."""

    tag: str
    """Distinguishes sources that share shape names."""
    names: Callable[[], list[str]]
    read: Callable[[str], ShapeRecord]


def procedural_source(root: str, split: str = "train", categories: Sequence[str] | None = None) -> ShapeSource:
    """Shapes of a `ProceduralDataset` split; re-listing sees shapes generated since."""
    from backend.data.dataset import ProceduralDataset

    def names() -> list[str]:
        return ProceduralDataset(root, split, categories, load=()).names

    reader = ProceduralDataset(root, split, categories, load=("views", "geometry", "points", "sdf"))
    return ShapeSource(tag=f"procedural:{root}", names=names, read=reader.read)


def dvr_source(root: str, split: str = "train", categories: Sequence[str] | None = None) -> ShapeSource:
    """Shapes of a DVR/ShapeNet-layout dataset (`backend.data.dvr.DVRDataset`)."""
    from backend.data.dvr import DVRDataset

    dataset = DVRDataset(root, split=split, categories=categories)
    return ShapeSource(tag=f"dvr:{root}", names=lambda: list(dataset.names), read=dataset.read)
