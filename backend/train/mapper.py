"""ISS stage 1: train the CLIP2Shape mapper (and fine-tune the shape decoder) on cached features.

Per batch of (CLIP image feature ``f``, encoder codes ``c``) from ``mapper_data``:

- mapper loss ``w_map · mean |M(mix(f)) − c|`` where ``mix`` is ISS's noise mixing
  (``normalise(0.25 f̂ + 0.75 ε̂)``) and ``c = [shape code | colour code]``;
- with ``decoder_finetune``, the shape model's SDF and colour networks render ``M(mix(f))`` from
  the view's camera (VolSDF, a random subset of rays of the small cached image) and learn from
  ``w_render · (|rgb − image| + w_bg · opacity on background pixels)``: the decoder adapts to the
  mapper's slightly-off codes and learns to leave the background empty, as in ISS.

Loss scale. ISS weights its L1 by 2000 against its DVR decoder loss (sum-reduced terms of a
different model). Here both terms are means over elements: the mapper loss has weight 1 and the
render term 0.1, so the mapper is driven by the regression (as ISS's 2000 intends) while the
decoder, which only sees the render term, still gets a usable gradient. The encoder is not
trained (its codes are the cached targets).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from backend.models.mapper import Clip2ShapeMapper, MapperConfig, mix_clip_noise
from backend.train.mapper_data import FeatureCache, to_tensors

if TYPE_CHECKING:
    from backend.models.shape_model import ShapeModel


class MapperTrainingError(RuntimeError):
    """Stage-1 training cannot start or diverged."""


@dataclass
class MapperTrainConfig:
    """Stage-1 settings; ``preset("smoke")`` for CI on a CPU, ``preset("full")`` for a GPU."""

    epochs: int = 200
    """Passes over the cached samples."""
    batch_size: int = 256
    """Samples per step."""
    lr: float = 3e-4
    """Adam learning rate of the mapper."""
    hidden_dim: int = 512
    """Mapper width."""
    num_blocks: int = 3
    """Mapper residual blocks."""
    noise_weight: float = 0.75
    """ISS noise mixing weight."""
    mapper_weight: float = 1.0
    """Weight of the mean-L1 code regression."""
    color_weight: float = 0.5
    """Weight of the colour-code part of the L1 relative to the shape part."""
    decoder_finetune: bool = True
    """Fine-tune the SDF and colour networks with the render + background loss."""
    decoder_lr: float = 5e-5
    """Adam learning rate of the decoder."""
    render_weight: float = 0.1
    """Weight of the render term (RGB L1 + background)."""
    background_weight: float = 1.0
    """Weight of the opacity-on-background term inside the render term."""
    render_every: int = 1
    """Render term every N steps (rendering is most of the cost)."""
    render_images: int = 8
    """Images of the batch rendered for the decoder term."""
    render_rays: int = 256
    """Random rays per rendered image."""
    render_samples: int = 32
    """VolSDF samples per ray."""
    beta: float = 0.02
    """VolSDF Laplace scale of the decoder term."""
    seed: int = 0
    """Seeds batches, noise and ray choice."""

    @classmethod
    def preset(cls, name: str) -> MapperTrainConfig:
        """``smoke``: seconds on a CPU (CI); ``full``: the real run (GPU)."""
        if name == "smoke":
            return cls(epochs=30, batch_size=16, lr=3e-3, hidden_dim=32, num_blocks=1, render_images=2,
                       render_rays=64, render_samples=16, render_every=3, decoder_lr=1e-4)
        if name == "full":
            return cls()
        raise ValueError(f"unknown stage-1 preset {name!r}; use 'smoke' or 'full'")


@dataclass
class EpochStats:
    """Mean losses of one epoch."""

    epoch: int
    mapper: float
    render: float | None
    seconds: float


@dataclass
class MapperTrainResult:
    """The trained mapper, the (fine-tuned copy of the) shape model, and the loss history."""

    mapper: Clip2ShapeMapper
    shape_model: ShapeModel
    history: list[EpochStats] = field(default_factory=list)


def train_mapper(
    cache: FeatureCache,
    shape_model: ShapeModel,
    config: MapperTrainConfig,
    *,
    device: str = "cpu",
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> MapperTrainResult:
    """Train a mapper from ``cache`` into ``shape_model``'s codes; the given model is not changed
    (the decoder is fine-tuned on a copy)."""
    shape_dim, color_dim = shape_model.config.shape_dim, shape_model.config.color_dim
    if cache.codes.shape[1] != shape_dim + color_dim:
        raise MapperTrainingError(
            f"the cached codes are {cache.codes.shape[1]}-d; this shape model has {shape_dim} + {color_dim}: "
            "the cache was made with another shape model"
        )
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    data = to_tensors(cache, device)
    n = len(cache)
    mapper = Clip2ShapeMapper(MapperConfig(
        clip_dim=int(cache.clip_features.shape[1]), code_dim=shape_dim + color_dim,
        hidden_dim=config.hidden_dim, num_blocks=config.num_blocks, noise_weight=config.noise_weight,
    )).to(device)
    model = copy.deepcopy(shape_model).to(device)
    model.requires_grad_(False)
    groups: list[dict[str, Any]] = [{"params": list(mapper.parameters()), "lr": config.lr}]
    if config.decoder_finetune:
        decoder = list(model.sdf_net.parameters()) + list(model.color_net.parameters())
        for p in decoder:
            p.requires_grad_(True)
        groups.append({"params": decoder, "lr": config.decoder_lr})
    optimizer = torch.optim.Adam(groups)
    code_weights = torch.cat([torch.ones(shape_dim), torch.full((color_dim,), config.color_weight)]).to(device)

    history = []
    step = 0
    for epoch in range(config.epochs):
        started = time.monotonic()
        order = torch.randperm(n, generator=generator).to(device)
        mapper_sum, render_sum, render_count, batches = 0.0, 0.0, 0, 0
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            features = mix_clip_noise(data["clip_features"][idx], config.noise_weight, generator)
            predicted = mapper(features)
            mapper_loss = ((predicted - data["codes"][idx]).abs() * code_weights).mean()
            loss = config.mapper_weight * mapper_loss
            if config.decoder_finetune and step % config.render_every == 0:
                render_loss = _render_loss(model, predicted, data, idx, config, generator)
                loss = loss + config.render_weight * render_loss
                render_sum += float(render_loss.detach())
                render_count += 1
            if not torch.isfinite(loss):
                raise MapperTrainingError(f"the stage-1 loss became {float(loss)} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            mapper_sum += float(mapper_loss.detach())
            batches += 1
            step += 1
        stats = EpochStats(
            epoch, mapper_sum / batches, render_sum / render_count if render_count else None,
            time.monotonic() - started,
        )
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    mapper.eval()
    model.requires_grad_(False).eval()
    return MapperTrainResult(mapper=mapper, shape_model=model, history=history)


def _render_loss(model, predicted, data, idx, config: MapperTrainConfig, generator) -> torch.Tensor:
    """RGB L1 + background opacity of the mapped codes rendered from their own views."""
    from backend.models.encoders import ShapeCodes
    from backend.render.cameras import from_opencv
    from backend.render.volsdf import VolSDFConfig, volsdf_render

    pick = idx[: config.render_images]
    codes_all = predicted[: len(pick)]
    shape_dim = model.config.shape_dim
    codes = ShapeCodes(shape=codes_all[:, :shape_dim], color=codes_all[:, shape_dim:], viewpoint=None)
    images, masks = data["images"][pick], data["masks"][pick]
    b, _, size, _ = images.shape
    cameras = from_opencv(data["intrinsics"][pick], data["world_to_cam"][pick], height=size, width=size)
    rays = min(config.render_rays, size * size)
    flat = torch.stack([torch.randperm(size * size, generator=generator)[:rays] for _ in range(b)]).to(images.device)
    pixels = torch.stack([flat % size, flat // size], dim=-1).to(images.dtype) + 0.5
    origins, directions = cameras.generate_rays(pixels)
    sdf_fn, color_fn = model.fields(codes)
    out = volsdf_render(
        origins, directions, sdf_fn, color_fn, torch.tensor(config.beta, device=images.device),
        VolSDFConfig(n_samples=config.render_samples, compute_normals=False), background="white",
    )
    target = images.flatten(2).transpose(1, 2).gather(1, flat.unsqueeze(-1).expand(-1, -1, 3))
    mask = masks.flatten(1).gather(1, flat)
    rgb_term = (out.rgb - target).abs().mean()
    background = (mask < 0.5).to(out.mask.dtype)
    background_term = (out.mask * background).sum() / background.sum().clamp_min(1.0)
    return rgb_term + config.background_weight * background_term


def save_iss(
    out_dir: str | Path, result: MapperTrainResult, *, clip_model_id: str, metadata: dict[str, Any] | None = None
) -> dict[str, str]:
    """Write the ISS folder the generate pipeline reads: ``shape_model.*`` (the decoder the mapper
    maps into) and ``mapper.*`` tied to its checkpoint id and to the CLIP."""
    from backend.models.checkpoint import checkpoint_id, save_shape_model
    from backend.models.mapper import save_mapper
    from backend.pipelines.generate_assets import MAPPER_NAME, SHAPE_MODEL_NAME

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shape_files = save_shape_model(out_dir / SHAPE_MODEL_NAME, result.shape_model.cpu(), metadata or {})
    shape_id = checkpoint_id(out_dir / SHAPE_MODEL_NAME)
    weights, meta = save_mapper(result.mapper.cpu(), out_dir / MAPPER_NAME, clip_model_id=clip_model_id, shape_model_id=shape_id)
    return {"shape_model": str(shape_files.weights), "mapper": str(weights), "mapper_json": str(meta), "shape_model_id": shape_id}


def smoke_config(**changes: Any) -> MapperTrainConfig:
    """The smoke preset with fields changed (tests)."""
    return replace(MapperTrainConfig.preset("smoke"), **changes)


def code_error(mapper: Clip2ShapeMapper, cache: FeatureCache, device: str = "cpu") -> float:
    """Mean |M(f) − c| over the cache without noise (how well the mapper fits image features)."""
    with torch.no_grad():
        data = to_tensors(cache, device)
        return float((mapper.to(device)(data["clip_features"]) - data["codes"]).abs().mean())


def fit_and_save(records, names: list[str], data: dict[str, Any], clip, shape_model: ShapeModel, shape_model_id: str,
                 out_dir: str | Path, config: MapperTrainConfig, *, device: str, cache_dir: str | Path,
                 on_record: Callable[[int], None] | None = None,
                 on_epoch: Callable[[EpochStats], None] | None = None) -> dict[str, Any]:
    """Stage 1 end to end: CLIP features and codes of ``records`` (a function yielding them, only
    called when ``cache_dir`` does not hold them yet), the mapper trained on them, and the ISS
    folder written to ``out_dir``. ``data`` describes where the records came from (metadata).
    Returns what was written, the clean-feature code error and whether the features were cached."""
    from dataclasses import asdict

    from backend.train.mapper_data import cached_features

    cache, path, was_cached = cached_features(records, names, clip, shape_model, shape_model_id, cache_dir,
                                              on_record=on_record)
    result = train_mapper(cache, shape_model, config, device=device, on_epoch=on_epoch)
    fit = code_error(result.mapper, cache, device)
    metadata = {
        "stage": "ISS stage 1", "base_shape_model": shape_model_id, "clip": clip.model_id,
        "data": {**data, "shapes": len(names), "views": len(cache)}, "config": asdict(config),
        "final": {"mapper_l1": result.history[-1].mapper, "render": result.history[-1].render,
                  "clean_feature_code_l1": fit},
    }
    written = save_iss(out_dir, result, clip_model_id=clip.model_id, metadata=metadata)
    return {"written": written, "clean_feature_code_l1": fit, "features": str(path), "features_cached": was_cached}
