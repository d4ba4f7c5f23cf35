"""A category classifier of shapes' occupancy: the independent judge of text → shape results.

Text → shape is scored by what its meshes look like, so the judge must not share anything with the
model being optimised: it is trained here, on procedural shapes of its own seed range
(`CLASSIFIER_SEED_OFFSET`), from their geometry alone. Every shape reaches the network the same way,
whether it is a procedural ground truth or a generated mesh: a mesh normalised to the unit box
(centred, longest side 1, the project's frame: Z up, front −Y), voxelised on a ``FINE``³ grid over
[-0.55, 0.55]³ (surface voxels, then the enclosed interior), then averaged down to ``GRID``³
occupancy fractions. Ground truth is the marching-cubes mesh of the shape's 64³ bake, the same
extraction the shape model's decoder goes through.

The shape model's decoded meshes are lumpy and striated versions of the shapes, so training
distorts the clean occupancy: small anisotropic scale and shift (normalisation thrown off by
lumps), a blur thresholded at a random level with low-frequency noise added (lumps, rounded
corners, thickened or lost thin parts; several blur passes bloat and merge parts), and a random
dilation (one to three voxels: the decoder merges legs and slats) or a one-voxel erosion. No rotation: all shapes share the frame.

Weights and the cached training grids live under ``data_cache/shape_classifier/`` (not committed).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from backend.data.procedural import CATEGORIES, ShapeError

CLASSIFIER_SEED_OFFSET = 4_000_000
"""The classifier's training shapes use seeds from here on: apart from the shape model's
(1_000_000+), the text model's (2_000_000+) and the text evaluation's (3_000_000+)."""
CACHE_DIR = Path(__file__).resolve().parents[2] / "data_cache" / "shape_classifier"
WEIGHTS = CACHE_DIR / "classifier.pt"
FINE = 64
"""Side of the voxelisation grid (the baked grids' 64³ over the same box)."""
GRID = 32
"""Side of the classifier's input: ``FINE``³ occupancy averaged over 2³ blocks."""
LIMIT = 0.55
"""The grids span [-LIMIT, LIMIT]³: the unit box and the generator's padding (`shape_bank.GRID_LIMIT`)."""


@dataclass(frozen=True)
class ClassifierConfig:
    channels: tuple[int, ...] = (12, 24, 48, 96)
    """Conv3d widths; every stage but the last halves the grid (32 → 16 → 8 → 4)."""
    pooled: int = 2
    """Side of the final adaptive average pool: keeps where things are (a lamp's shade on top), not just what."""
    dropout: float = 0.3
    categories: tuple[str, ...] = tuple(CATEGORIES)


@dataclass(frozen=True)
class AugmentConfig:
    scale: tuple[float, float] = (0.88, 1.06)
    """Per-axis scale range of the shape inside the grid."""
    shift: float = 0.03
    """Largest shift per axis (normalised units; a voxel of the input is 0.035)."""
    clean_share: float = 0.2
    """Share of samples left undistorted apart from scale and shift."""
    blur_passes: int = 4
    """Most 3³ box-blur passes before re-thresholding (each sample draws 1..this): several passes
    round and merge parts the way the decoder bloats them (legs into a body, slats into a block)."""
    noise: tuple[float, float] = (0.0, 0.2)
    """Amplitude range of the low-frequency noise added to the blurred occupancy (1 = full)."""
    level: tuple[float, float] = (0.2, 0.45)
    """Range of the threshold re-binarising the blurred (times its passes), noisy occupancy; low,
    because the decoder thickens thin parts far more often than it loses them."""
    dilate_share: float = 0.3
    """Share of samples dilated by one to three fine voxels (thick legs, merged slats)."""
    erode_share: float = 0.05
    """Share of samples eroded by one fine voxel."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)


# ---------------------------------------------------------------------------------------- voxels
def voxelise_mesh(vertices: np.ndarray, faces: np.ndarray, seed: int = 0) -> np.ndarray:
    """Occupancy [FINE]³ (bool, axes x, y, z) of a mesh normalised to the unit box, on the nodes of a
    grid over [-LIMIT, LIMIT]³: the nodes nearest to dense surface samples, then every node they
    enclose. Robust to open meshes: a one-node closing seals cracks before the interior is filled."""
    from scipy import ndimage

    from backend.geometry.mesh_ops import normalise_unit

    unit, _, _ = normalise_unit(np.asarray(vertices, np.float64))
    tri = unit[np.asarray(faces)].astype(np.float64)
    h = 2 * LIMIT / (FINE - 1)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    # about nine samples per node-spacing square: gaps wider than a node are then rare, and the closing seals them
    count = int(min(max(area.sum() * 9.0 / h**2, 1000), 2_000_000))
    rng = np.random.default_rng(seed)
    which = rng.choice(len(tri), size=count, p=area / area.sum()) if area.sum() > 0 else np.zeros(0, int)
    u, v = rng.random((2, count))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[which]
    points = np.concatenate([t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0]), unit])
    idx = np.clip(np.rint((points + LIMIT) / h).astype(np.int64), 0, FINE - 1)
    shell = np.zeros((FINE,) * 3, bool)
    shell[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    solid = ndimage.binary_erosion(ndimage.binary_fill_holes(ndimage.binary_dilation(shell)))
    return solid | shell


def pool_occupancy(occupancy: torch.Tensor) -> torch.Tensor:
    """[B, 1, FINE³] occupancy (0/1) → [B, 1, GRID³] fractions: the classifier's input."""
    return F.avg_pool3d(occupancy.float(), FINE // GRID)


def shape_occupancy(category: str, seed: int) -> np.ndarray:
    """Occupancy [FINE]³ of a procedural shape: the marching-cubes mesh of its 64³ bake, voxelised."""
    from skimage.measure import marching_cubes

    from backend.data.procedural.torch_sdf import make_torch_shape

    shape = make_torch_shape(category, seed, measure_res=64)
    vol, _ = shape.bake(FINE, padding=LIMIT - 0.5)
    vol = vol.numpy()
    if vol.min() >= 0 or vol.max() <= 0:
        raise ShapeError(f"{category}/{seed}: no surface on the {FINE}³ grid")
    h = 2 * LIMIT / (FINE - 1)
    vertices, faces, _, _ = marching_cubes(vol, 0.0, spacing=(h, h, h))
    return voxelise_mesh(vertices - LIMIT, faces, seed=seed)


def decoded_occupancy(shape_model, category: str, seed: int, resolution: int = 64) -> np.ndarray:
    """Occupancy [FINE]³ of what the shape model makes of a procedural shape: its mean code over
    four rendered views (`text_codes.encode_shape`, the text model's target) decoded as the
    generate pipeline does (coarse-to-fine marching cubes, then its cleanup)."""
    from backend.geometry.mesh_ops import clean_mesh
    from backend.render.extract import NoSurfaceError
    from backend.train.text_codes import encode_shape

    _, shape_codes, _ = encode_shape(shape_model, category, seed)
    try:
        mesh = shape_model.extract_mesh(torch.from_numpy(shape_codes.mean(0)), resolution=resolution,
                                        coarse_to_fine=True)
    except NoSurfaceError as exc:
        raise ShapeError(f"{category}/{seed}: the decoded code has no surface ({exc})") from exc
    return voxelise_mesh(*clean_mesh(mesh.vertices, mesh.faces), seed=seed)


@dataclass
class OccupancySet:
    occupancy: np.ndarray
    """[N, FINE³ / 8] uint8: `np.packbits` of each shape's occupancy."""
    labels: np.ndarray
    """[N] int64 index into the categories."""
    seeds: np.ndarray
    """[N] int64"""

    def __len__(self) -> int:
        return len(self.labels)

    def grids(self, rows: np.ndarray | slice) -> torch.Tensor:
        """[B, 1, FINE, FINE, FINE] float occupancy of ``rows``."""
        bits = np.unpackbits(self.occupancy[rows], axis=1)[:, : FINE**3]
        return torch.from_numpy(bits.reshape(-1, 1, FINE, FINE, FINE)).float()


def build_occupancy_set(path: Path, per_category: int, offset: int = CLASSIFIER_SEED_OFFSET,
                        categories: Sequence[str] = CATEGORIES, log: Callable[[str], None] = print,
                        save_every: int = 100,
                        make: Callable[[str, int], np.ndarray] = shape_occupancy) -> OccupancySet:
    """``make(category, seed)`` of ``per_category`` shapes of every category from seed ``offset`` on
    (seeds that fail to build are skipped), cached in ``path`` and resumed from it."""
    done = load_occupancy_set(path) if path.is_file() else None
    rows = ([(done.occupancy[i], int(done.labels[i]), int(done.seeds[i])) for i in range(len(done))]
            if done else [])
    have = {(label, seed) for _, label, seed in rows}
    todo = [(label, offset + n) for n in range(per_category) for label in range(len(categories))
            if (label, offset + n) not in have]
    started = time.monotonic()
    for i, (label, seed) in enumerate(todo):
        try:
            occupancy = make(categories[label], seed)
            rows.append((np.packbits(occupancy.reshape(-1)), label, seed))
        except ShapeError as exc:
            log(f"skipped {categories[label]}/{seed}: {exc}")
        if (i + 1) % save_every == 0 or i + 1 == len(todo):
            _save_set(rows, path)
            rate = (i + 1) / (time.monotonic() - started)
            log(f"{len(rows)} shapes voxelised ({rate:.1f}/s, {(len(todo) - i - 1) / rate / 60:.0f} min left)")
    return load_occupancy_set(path) if path.is_file() else OccupancySet(
        np.zeros((0, FINE**3 // 8), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64))


def _save_set(rows: list[tuple], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, occupancy=np.stack([r[0] for r in rows]), labels=np.array([r[1] for r in rows], np.int64),
             seeds=np.array([r[2] for r in rows], np.int64))
    tmp.replace(path)


def load_occupancy_set(path: Path) -> OccupancySet:
    with np.load(path) as data:
        return OccupancySet(data["occupancy"], data["labels"], data["seeds"])


# ---------------------------------------------------------------------------------------- model
class ShapeClassifier(nn.Module):
    """A small 3D CNN: [B, 1, GRID³] occupancy fractions → [B, categories] logits."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = 1
        for i, out in enumerate(config.channels):
            layers += [nn.Conv3d(width, out, 3, padding=1, bias=False), nn.BatchNorm3d(out), nn.ReLU(inplace=True)]
            if i < len(config.channels) - 1:
                layers.append(nn.MaxPool3d(2))
            width = out
        layers.append(nn.AdaptiveAvgPool3d(config.pooled))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(config.dropout),
                                  nn.Linear(width * config.pooled**3, len(config.categories)))

    def forward(self, grids: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(grids))


def augment(occupancy: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Distorted copies [B, 1, FINE³] (0/1) of clean occupancy [B, 1, FINE³] (see the module doc).
    Each distortion runs on the samples drawn for it only: at 64³ they cost more than the network."""
    b, size = occupancy.shape[0], occupancy.shape[-1]

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=generator)

    # sampling the input at output coordinates / scale grows the shape by the scale
    inverse = 1.0 / uniform(*config.scale, b, 3)
    shift = uniform(-config.shift, config.shift, b, 3) / LIMIT
    grid = _identity_grid(size) * inverse.view(b, 1, 1, 1, 3) + shift.view(b, 1, 1, 1, 3)
    out = F.grid_sample(occupancy, grid, mode="nearest", padding_mode="zeros", align_corners=True)

    lumpy = (torch.rand(b, generator=generator) >= config.clean_share).nonzero()[:, 0]
    if len(lumpy):
        n = len(lumpy)
        noise = F.interpolate(torch.randn(n, 1, 8, 8, 8, generator=generator), size=size, mode="trilinear",
                              align_corners=True)
        blurred = out[lumpy]
        passes = torch.randint(1, config.blur_passes + 1, (n,), generator=generator)
        for k in range(1, config.blur_passes + 1):
            rows = (passes >= k).nonzero()[:, 0]
            blurred[rows] = _blur(blurred[rows])
        # noise only within a few voxels of the surface: it moves the surface, never makes blobs in empty space
        band = _dilate(blurred, 2) > 0
        # a wider blur spreads a thin part thinner: scaled by the passes, it bloats rather than vanishes
        field = blurred * passes.view(n, 1, 1, 1, 1) + uniform(*config.noise, n).view(n, 1, 1, 1, 1) * noise * band
        out[lumpy] = (field > uniform(*config.level, n).view(n, 1, 1, 1, 1)).float()

    pick = torch.rand(b, generator=generator)
    radius = torch.randint(1, 4, (b,), generator=generator)
    for r in (1, 2, 3):
        rows = ((pick < config.dilate_share) & (radius == r)).nonzero()[:, 0]
        if len(rows):
            out[rows] = _dilate(out[rows], r)
    erode = ((pick >= config.dilate_share) & (pick < config.dilate_share + config.erode_share)).nonzero()[:, 0]
    if len(erode):
        eroded = 1.0 - _dilate(1.0 - out[erode], 1)
        # an erosion that wipes a thin shape out teaches nothing: those stay as they are
        kept = eroded.flatten(1).sum(1) > 0
        out[erode[kept]] = eroded[kept]
    return out


def _dilate(grids: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over a (2 radius + 1)³ cube of [B, 1, D, H, W] grids (zero outside), one axis at a time
    with shifted slices: CPU 3D pooling costs several times more."""
    return _along_axes(grids, radius, torch.maximum)


def _blur(grids: torch.Tensor) -> torch.Tensor:
    """Mean over a 3³ cube (zero outside), one axis at a time."""
    return _along_axes(grids, 1, torch.add) / 27.0


def _along_axes(grids: torch.Tensor, radius: int, combine) -> torch.Tensor:
    for axis in (2, 3, 4):
        size = grids.shape[axis]
        pad = [0, 0] * (4 - axis) + [radius, radius]
        padded = F.pad(grids, pad)
        out = padded.narrow(axis, 0, size)
        for offset in range(1, 2 * radius + 1):
            out = combine(out, padded.narrow(axis, offset, size))
        grids = out
    return grids


@functools.cache
def _identity_grid(size: int) -> torch.Tensor:
    """[1, size, size, size, 3] `grid_sample` coordinates of a grid's own nodes (x→W, y→H, z→D)."""
    return F.affine_grid(torch.eye(3, 4)[None], [1, 1, size, size, size], align_corners=True)


@dataclass
class TrainReport:
    losses: list[float]
    """Mean training loss per epoch."""
    seconds: float


def train_classifier(data: OccupancySet, config: TrainConfig = TrainConfig(),
                     model_config: ClassifierConfig = ClassifierConfig(),
                     log: Callable[[str], None] = print) -> tuple[ShapeClassifier, TrainReport]:
    """Train a fresh classifier on ``data`` with augmentation (AdamW, one-cycle learning rate)."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = ShapeClassifier(model_config)
    steps_per_epoch = max(1, math.ceil(len(data) / config.batch))
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.lr, total_steps=config.epochs * steps_per_epoch)
    labels = torch.from_numpy(data.labels)
    started, losses = time.monotonic(), []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(data), generator=generator).numpy()
        total = 0.0
        for step in range(steps_per_epoch):
            rows = np.sort(order[step * config.batch: (step + 1) * config.batch])
            grids = pool_occupancy(augment(data.grids(rows), config.augment, generator))
            loss = F.cross_entropy(model(grids), labels[rows], label_smoothing=0.05)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        losses.append(total / steps_per_epoch)
        log(f"epoch {epoch + 1}/{config.epochs}: loss {losses[-1]:.3f} ({time.monotonic() - started:.0f} s)")
    return model.eval(), TrainReport(losses, time.monotonic() - started)


# ---------------------------------------------------------------------------------------- use
@torch.no_grad()
def predict(model: ShapeClassifier, occupancy: torch.Tensor, batch: int = 64) -> np.ndarray:
    """Category probabilities [B, categories] of occupancy [B, 1, FINE³]."""
    model.eval()
    out = [F.softmax(model(pool_occupancy(occupancy[i: i + batch])), dim=1) for i in range(0, len(occupancy), batch)]
    return torch.cat(out).numpy()


def classify_mesh(model: ShapeClassifier, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Category probabilities [categories] (order: ``model.config.categories``) of any mesh: it is
    normalised to the unit box first, so its scale and position do not matter; its frame does."""
    occupancy = torch.from_numpy(voxelise_mesh(vertices, faces))[None, None]
    return predict(model, occupancy)[0]


def save_classifier(model: ShapeClassifier, path: Path = WEIGHTS, metadata: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    config = asdict(model.config)
    torch.save({"config": config, "state_dict": model.state_dict(), "metadata": metadata or {}}, path)


def load_classifier(path: Path = WEIGHTS) -> tuple[ShapeClassifier, dict]:
    """(model in eval mode, metadata) saved by `save_classifier`."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = {key: tuple(value) if isinstance(value, list) else value for key, value in saved["config"].items()}
    model = ShapeClassifier(ClassifierConfig(**config))
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved["metadata"]


def accuracy_report(model: ShapeClassifier, data: OccupancySet) -> dict:
    """Top-1 and top-3 accuracy over ``data``, per category, and its most common confusions."""
    categories = model.config.categories
    probs = predict(model, data.grids(slice(None)))
    top = np.argsort(-probs, axis=1)
    right = top[:, 0] == data.labels
    per_category = {categories[c]: round(float(right[data.labels == c].mean()), 3)
                    for c in range(len(categories)) if (data.labels == c).any()}
    confusions: dict[str, int] = {}
    for truth, guess in zip(data.labels[~right], top[~right, 0]):
        key = f"{categories[truth]} -> {categories[guess]}"
        confusions[key] = confusions.get(key, 0) + 1
    return {"shapes": len(data), "top1": round(float(right.mean()), 4),
            "top3": round(float((top[:, :3] == data.labels[:, None]).any(1).mean()), 4),
            "per_category": per_category,
            "confusions": dict(sorted(confusions.items(), key=lambda kv: -kv[1])[:12])}


def main(argv: Sequence[str] | None = None) -> None:
    """Build the training grids, train (unless weights exist), and measure the classifier on
    held-out procedural shapes (a) as they are and (b) through the shape model's encoder and decoder."""
    import argparse
    import datetime
    import json

    from backend.train.text_codes import TEXT_EVAL_SEED_OFFSET

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--per-category", type=int, default=200, help="training shapes per category")
    parser.add_argument("--eval-per-category", type=int, default=20, help="held-out shapes per category")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--retrain", action="store_true", help="train even when the weights exist")
    parser.add_argument("--shape-model", default=None, help="shape model weights (default: the shipped CPU model)")
    parser.add_argument("--out", default=str(CACHE_DIR.parents[1] / "bench_results" / "shape_classifier.json"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.retrain or not WEIGHTS.is_file():
        data = build_occupancy_set(CACHE_DIR / f"train_{CLASSIFIER_SEED_OFFSET}.npz", args.per_category)
        data = _first_per_category(data, args.per_category)
        model, report = train_classifier(data, TrainConfig(epochs=args.epochs))
        save_classifier(model, metadata={"shapes": len(data), "seed_offset": CLASSIFIER_SEED_OFFSET,
                                         "epochs": args.epochs, "losses": report.losses,
                                         "train_seconds": round(report.seconds)})
    model, metadata = load_classifier()

    from backend.pipelines.generate_offline import TEXT_ENCODING_BLUR
    from backend.pipelines.reconstruct.weights import DEFAULT_WEIGHTS, check_weights, load_model

    weights = Path(args.shape_model) if args.shape_model else DEFAULT_WEIGHTS
    shape_model, _, _ = load_model(weights, "cpu", TEXT_ENCODING_BLUR)  # the text path's decoder
    n, offset = args.eval_per_category, TEXT_EVAL_SEED_OFFSET
    started = time.monotonic()
    truth = _first_per_category(build_occupancy_set(CACHE_DIR / f"eval_{offset}.npz", n, offset), n)
    truth_seconds = time.monotonic() - started
    decoded_path = CACHE_DIR / f"decoded_{offset}_{check_weights(weights).replace(':', '_')}.npz"
    started = time.monotonic()
    decoded = _first_per_category(build_occupancy_set(
        decoded_path, n, offset, make=lambda category, seed: decoded_occupancy(shape_model, category, seed)), n)
    result = {
        "date": datetime.date.today().isoformat(),
        "classifier": {"parameters": sum(p.numel() for p in model.parameters()), **metadata},
        "shape_model": check_weights(weights),
        "ground_truth": {**accuracy_report(model, truth), "seed_offset": offset,
                         "build_seconds": round(truth_seconds)},
        "decoded": {**accuracy_report(model, decoded), "seed_offset": offset,
                    "build_seconds": round(time.monotonic() - started)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for name in ("ground_truth", "decoded"):
        print(f"{name}: top-1 {result[name]['top1']:.3f}, top-3 {result[name]['top3']:.3f} "
              f"on {result[name]['shapes']} shapes; confusions {result[name]['confusions']}")


def _first_per_category(data: OccupancySet, per_category: int) -> OccupancySet:
    """The rows of the first ``per_category`` seeds of each category (a cache may hold more)."""
    keep = np.zeros(len(data), bool)
    for label in np.unique(data.labels):
        rows = np.flatnonzero(data.labels == label)
        keep[rows[np.argsort(data.seeds[rows])[:per_category]]] = True
    return OccupancySet(data.occupancy[keep], data.labels[keep], data.seeds[keep])


if __name__ == "__main__":
    main()
