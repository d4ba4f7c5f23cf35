"""Training the layered-depth network (`backend.models.layered_depth`) on procedural shapes.

Each step draws shapes from a `ShapeBank` (the shape model's on-the-fly pool) and photographs them
with the training renderer (`backend.train.views`: random camera, light, background, degradations
and segmentation errors, cropped over white as the pipelines crop). The targets come from the same
SDF grids: the front depth is the photo's own ray distance, the back depth is found by tracing
each ray again from the far side of the shape's box towards the camera. Both are turned into
camera z-depth and resampled through the very crop the network sees, in units of the crop's side.

Loss, over the pixels whose ray hits the shape: L1 of the front depth up to a shift (one photo
cannot tell how far away the object is) plus L1 of the thickness.

Evaluation: on the real-object split (27 third-party meshes, 3 Blender photos each, never
trained on): the true front and back depth are rasterised from the reference mesh through the
photo's crop, and the network's errors are set beside those of the silhouette inflation's
thickness (the baseline the outline solid uses for non-vessels).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.geometry.layers import inflation_profile
from backend.models.layered_depth import LAYERED_DEPTH_KIND, LayeredDepthConfig, LayeredDepthNet
from backend.train.generated import GeneratedConfig, step_generator
from backend.train.shape_bank import GRID_LIMIT, ShapeBank
from backend.train.views import _box_interval, crop_grid, photograph, render_views, trace


@dataclass
class LayeredTrainConfig:
    model: LayeredDepthConfig = field(default_factory=LayeredDepthConfig)
    views_per_step: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 8_000_000
    """Bank seed: apart from the other trainers' shapes."""
    data_preset: str = "cpu"
    """Shape pool and views (`GeneratedConfig.for_training`): ``cpu`` (the gpu pool on CUDA), or
    ``tiny`` for tests."""
    meshes: str | None = None
    """A folder of baked third-party meshes to draw ``mesh_share`` of the shapes from
    (`BankConfig.meshes`)."""
    mesh_share: float = 0.0


@dataclass
class LayerBatch:
    """Network inputs and targets of a batch of photos (crop frame, ``S`` = network input size)."""

    crops: torch.Tensor
    """[B, 3, S, S] photos cropped over white."""
    masks: torch.Tensor
    """[B, 1, S, S] the simulated segmentation, cropped alike."""
    front: torch.Tensor
    """[B, S, S] front z-depth in crop sides, mean 0 over ``valid``."""
    back: torch.Tensor
    """[B, S, S] back z-depth, same units and shift."""
    valid: torch.Tensor
    """[B, S, S] bool: pixels whose ray meets the shape (all four neighbours, after resampling)."""


def layer_batch(shapes: dict[str, torch.Tensor], generated: GeneratedConfig, gen: torch.Generator,
                size: int) -> LayerBatch:
    """Photograph ``shapes`` (one view each) and make the network's inputs and targets."""
    vc = generated.views
    views = render_views(shapes, vc, gen)
    cams = views.cameras
    b, h = views.alpha.shape[:2]
    origins, dirs = cams.generate_rays()
    origins, dirs = origins.reshape(b, -1, 3).float(), dirs.reshape(b, -1, 3).float()
    front_t = views.depth.reshape(b, -1)
    _, far = _box_interval(origins, dirs, GRID_LIMIT - 1e-4)
    back_from_far, back_hit, _ = trace(shapes["sdf"], origins + far[..., None] * dirs, -dirs, vc.trace_steps,
                                       1.0 / cams.focal[:, 0].float())
    to_z = cams.ray_depth_to_z(dirs).float()
    z_front, z_back = front_t * to_z, (far - back_from_far) * to_z
    hit = (front_t > 0) & back_hit & (z_back >= z_front)
    views = photograph(views, vc, gen, size)

    grid, side = crop_grid(views.seg_mask, size)
    stack = torch.stack([hit.float(), z_front * hit, z_back * hit], dim=1).reshape(b, 3, h, h)
    sampled = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    coverage = sampled[:, 0]
    valid = coverage > 0.999
    z_front = sampled[:, 1] / coverage.clamp_min(1e-6)
    z_back = sampled[:, 2] / coverage.clamp_min(1e-6)
    count = valid.sum((1, 2)).clamp_min(1)
    reference = torch.where(valid, z_front, 0).sum((1, 2)) / count
    unit = (side * reference / cams.focal[:, 0].float()).clamp_min(1e-6)
    front = torch.where(valid, (z_front - reference[:, None, None]) / unit[:, None, None], 0)
    back = torch.where(valid, (z_back - reference[:, None, None]) / unit[:, None, None], 0)
    masks = F.grid_sample(views.seg_mask[:, None], grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)
    return LayerBatch(views.crops, masks, front, back, valid)


def layered_loss(prediction: torch.Tensor, front: torch.Tensor, back: torch.Tensor, valid: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(front error up to a shift, thickness error), mean L1 over the valid pixels of each photo,
    averaged over photos."""
    weight = valid.float()
    count = weight.sum((1, 2)).clamp_min(1)
    predicted_front, thickness = prediction[:, 0], prediction[:, 1]
    shift = ((predicted_front - front) * weight).sum((1, 2)) / count
    front_error = ((predicted_front - shift[:, None, None] - front).abs() * weight).sum((1, 2)) / count
    thickness_error = ((thickness - (back - front)).abs() * weight).sum((1, 2)) / count
    return front_error.mean(), thickness_error.mean()


# --------------------------------------------------------------------------- real-split check
@dataclass
class RealLayers:
    """One real-split photo in the crop frame, with the reference mesh's depth layers."""

    name: str
    rgb: np.ndarray
    mask: np.ndarray
    front: np.ndarray
    back: np.ndarray
    valid: np.ndarray


def real_split_layers(root: Path, size: int) -> list[RealLayers]:
    """Every real-split photo cropped by its true mask (``size`` px) with the true front and back
    z-depth of its mesh there, in crop sides, front mean 0 (empty without the split)."""
    from backend.images import decode_image
    from backend.segmentation import crop_to_object

    out = []
    for record_path in sorted(root.glob("*/views.json")):
        record = json.loads(record_path.read_text())
        with np.load(record_path.parent / "reference.npz") as reference:
            vertices, faces = reference["vertices"].astype(np.float64), reference["faces"].astype(np.int64)
        for view in record["views"]:
            image = decode_image((record_path.parent / view["image"]).read_bytes(), max_pixels=64_000_000)
            mask = decode_image((record_path.parent / view["mask"]).read_bytes(), max_pixels=64_000_000)
            true_mask = mask.rgba[..., 0] > 127
            rgb, crop_mask = crop_to_object(image.rgba, true_mask.astype(np.float32), size)
            front, back, valid = _mesh_layers(vertices, faces, view, true_mask, size)
            out.append(RealLayers(f"{record['name']}/{view['index']}", rgb, crop_mask, front, back, valid))
    return out


def _mesh_layers(vertices: np.ndarray, faces: np.ndarray, view: dict, mask: np.ndarray, size: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from backend.geometry.raster import covered_pixels
    from backend.segmentation import crop_square

    width = mask.shape[1]
    world_to_cam = np.asarray(view["world_to_cam"], dtype=np.float64)
    points = vertices @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]  # OpenCV camera frame
    focal = (width / 2) / math.tan(math.radians(view["fov"]) / 2)
    columns = focal * points[:, 0] / points[:, 2] + width / 2 - 0.5
    rows = focal * points[:, 1] / points[:, 2] + mask.shape[0] / 2 - 0.5
    top, left, side = crop_square(mask)
    crop_xy = np.stack([(columns - left + 0.5) * size / side - 0.5, (rows - top + 0.5) * size / side - 0.5], 1)
    tri, x, y, weights = covered_pixels(crop_xy[faces], size, size)
    z = (points[faces[tri], 2] * weights).sum(1)
    front = np.full((size, size), np.inf)
    back = np.full((size, size), -np.inf)
    np.minimum.at(front, (y, x), z)
    np.maximum.at(back, (y, x), z)
    valid = np.isfinite(front)
    reference = front[valid].mean()
    unit = side * reference / focal
    front = np.where(valid, (front - reference) / unit, 0.0)
    back = np.where(valid, (back - reference) / unit, 0.0)
    return front, back, valid


def inflation_layers(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The silhouette inflation's front and back depth (`inflate_field`'s profile), crop sides."""
    half = inflation_profile(mask >= 0.5)
    return -half, half


def real_split_errors(model: LayeredDepthNet | None, layers: list[RealLayers]) -> dict:
    """Mean front (shift-free) and thickness L1 errors in crop sides, of the network (or of the
    inflation when ``model`` is None), and the mean true thickness for scale."""
    front_errors, thickness_errors, truth = [], [], []
    for item in layers:
        if model is None:
            front, back = inflation_layers(item.mask)
        else:
            front, back = model.predict(item.rgb, item.mask)
        use = item.valid & (item.mask >= 0.5)
        if not use.any():
            continue
        offset = (front[use] - item.front[use]).mean()
        front_errors.append(float(np.abs(front[use] - offset - item.front[use]).mean()))
        thickness_errors.append(float(np.abs((back - front)[use] - (item.back - item.front)[use]).mean()))
        truth.append(float((item.back - item.front)[use].mean()))
    return {"front_l1": round(float(np.mean(front_errors)), 4), "thickness_l1": round(float(np.mean(thickness_errors)), 4),
            "true_thickness": round(float(np.mean(truth)), 4), "photos": len(truth)}


# --------------------------------------------------------------------------------- training
def train(config: LayeredTrainConfig, minutes: float, out: Path, real_split: Path | None = None,
          device: str = "cpu", log=print, init_from: Path | None = None) -> dict:
    """Train for ``minutes`` of wall clock (from checkpoint ``init_from`` when given); save the
    checkpoint ``out`` (``out.safetensors`` + ``out.json``); returns the run's record."""
    from backend.models.checkpoint import save_checkpoint

    torch.manual_seed(config.seed)
    generated = GeneratedConfig.for_training(config.data_preset, device, config.model.image_size)
    generated = replace(generated, bank=replace(generated.bank, meshes=config.meshes, mesh_share=config.mesh_share))
    bank = ShapeBank(generated.bank, config.seed, torch.device(device), log)
    model = LayeredDepthNet(config.model).to(device)
    earlier = None
    if init_from is not None:
        from backend.models.layered_depth import load_layered_depth
        from backend.train.checkpoints import carry_on_from

        earlier = carry_on_from(model, init_from, load_layered_depth, device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    real = real_split_layers(real_split, config.model.image_size) if real_split else []
    baseline = real_split_errors(None, real) if real else None
    if baseline:
        log(f"real split, silhouette inflation: {baseline}")
    start = time.monotonic()
    budget = minutes * 60
    losses: list[tuple[float, float]] = []
    step = 0
    while (elapsed := time.monotonic() - start) < budget:
        for group in optimiser.param_groups:  # cosine decay over the wall-clock budget
            group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget)))
        bank.sync(step)
        gen = step_generator(config.seed, step, device)
        idx = torch.randint(len(bank), (config.views_per_step,), generator=gen, device=gen.device).to(device)
        with torch.no_grad():
            batch = layer_batch(bank.select(idx), generated, gen, config.model.image_size)
        front_error, thickness_error = layered_loss(model(batch.crops, batch.masks), batch.front, batch.back,
                                                    batch.valid)
        loss = front_error + thickness_error
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append((float(front_error.detach()), float(thickness_error.detach())))
        step += 1
        if step % 50 == 0:
            recent = np.mean(losses[-50:], axis=0)
            log(f"step {step}: front {recent[0]:.4f} thickness {recent[1]:.4f} ({time.monotonic() - start:.0f} s)")
    model.eval()
    after = real_split_errors(model, real) if real else None
    if after:
        log(f"real split, network after {step} steps: {after}")
    record = {"steps": step, "views": step * config.views_per_step, "seconds": round(time.monotonic() - start),
              "device": device,
              "loss_first": [round(float(v), 4) for v in np.mean(losses[:50], axis=0)] if losses else None,
              "loss_last": [round(float(v), 4) for v in np.mean(losses[-50:], axis=0)] if losses else None,
              "real_split": {"inflation": baseline, "network": after},
              "train": {k: v for k, v in asdict(config).items() if k != "model"},
              **({"earlier": earlier} if earlier else {})}
    save_checkpoint(out, model, config.model, kind=LAYERED_DEPTH_KIND, metadata=record, dtype=torch.float16)
    return record
