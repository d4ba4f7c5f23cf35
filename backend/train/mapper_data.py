"""Stage-1 training data for the CLIP2Shape mapper, computed once and cached on disk.

For every view of every training shape: the CLIP image feature of the render composited on
white (input), the shape model's ``[shape code | colour code]`` for the same image (target), and a
small copy of the image, mask and camera for the decoder's background fine-tuning. Epochs then
cost a few MLP passes instead of CLIP and encoder passes.

Cache files are ``.npz`` without pickled objects, named by a digest of everything they depend
on (CLIP ``model_id``, shape model id, the shapes and views, the image size), so a different CLIP
or shape model never reuses them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from backend.data.records import ShapeRecord
    from backend.models.clip import ClipModel
    from backend.models.shape_model import ShapeModel

CACHE_FORMAT_VERSION = 1


class FeatureCacheError(RuntimeError):
    """A feature cache file is unreadable or does not hold what its name promises."""


@dataclass
class FeatureCache:
    """Stage-1 samples, one per (shape, view)."""

    clip_features: np.ndarray
    """float32 [N, clip_dim] unit CLIP image features."""
    codes: np.ndarray
    """float32 [N, shape_dim + color_dim] the encoder's codes for the same images."""
    images: np.ndarray
    """float32 [N, 3, S, S] the images composited on white, resized to ``S`` (decoder fine-tuning)."""
    masks: np.ndarray
    """float32 [N, S, S] object coverage at size ``S``."""
    intrinsics: np.ndarray
    """float32 [N, 3, 3] pixel intrinsics for size ``S``."""
    world_to_cam: np.ndarray
    """float32 [N, 4, 4] OpenCV extrinsics."""
    names: np.ndarray
    """str [N] ``<shape id>#<view>``."""

    def __len__(self) -> int:
        return int(self.clip_features.shape[0])


def cache_key(clip_model_id: str, shape_model_id: str, names: Sequence[str], image_size: int) -> str:
    """Digest of what a cache depends on (first 16 hex digits of sha256)."""
    payload = json.dumps(
        {"v": CACHE_FORMAT_VERSION, "clip": clip_model_id, "shape": shape_model_id, "names": list(names), "size": image_size}
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_feature_cache(
    records: Iterable[ShapeRecord],
    clip: ClipModel,
    shape_model: ShapeModel,
    *,
    image_size: int = 32,
    batch_size: int = 32,
    on_record: Callable[[int], None] | None = None,
) -> FeatureCache:
    """CLIP features and encoder codes of every view of ``records`` (views, masks and cameras needed)."""
    import torch

    from backend.models.encoders import prepare_images

    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("clip", "codes", "images", "masks", "K", "E")}
    names: list[str] = []
    device = next(shape_model.parameters()).device
    for count, record in enumerate(records, start=1):
        if record.num_views == 0:
            continue
        rgb = torch.from_numpy(np.ascontiguousarray(record.images)).permute(0, 3, 1, 2).float()
        alpha = torch.from_numpy(np.ascontiguousarray(record.masks)).float().unsqueeze(1)
        white = rgb * alpha + (1.0 - alpha)
        for start in range(0, record.num_views, batch_size):
            chunk = white[start : start + batch_size]
            with torch.no_grad():
                parts["clip"].append(clip.encode_image(chunk.to(clip.device)).cpu().numpy())
                codes = shape_model.encode(prepare_images(chunk.to(device), shape_model.config.encoder.image_size))
                parts["codes"].append(torch.cat([codes.shape, codes.color], dim=-1).cpu().numpy())
        small = torch.nn.functional.interpolate(white, size=(image_size, image_size), mode="area")
        small_mask = torch.nn.functional.interpolate(alpha, size=(image_size, image_size), mode="area")
        parts["images"].append(small.numpy())
        parts["masks"].append(small_mask[:, 0].numpy())
        scale = image_size / record.images.shape[2]
        intrinsics = record.intrinsics.copy()
        intrinsics[:, :2, :] *= scale
        parts["K"].append(intrinsics)
        parts["E"].append(record.world_to_cam)
        names += [f"{record.shape_id}#{v}" for v in range(record.num_views)]
        if on_record is not None:
            on_record(count)
    if not names:
        raise FeatureCacheError("no views to compute features from (records without images)")
    return FeatureCache(
        clip_features=np.concatenate(parts["clip"]).astype(np.float32),
        codes=np.concatenate(parts["codes"]).astype(np.float32),
        images=np.concatenate(parts["images"]).astype(np.float32),
        masks=np.concatenate(parts["masks"]).astype(np.float32),
        intrinsics=np.concatenate(parts["K"]).astype(np.float32),
        world_to_cam=np.concatenate(parts["E"]).astype(np.float32),
        names=np.asarray(names),
    )


def save_feature_cache(cache: FeatureCache, path: str | Path) -> Path:
    """Write ``cache`` to ``path`` (``.npz``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".partial.npz")
    np.savez(
        scratch, clip_features=cache.clip_features, codes=cache.codes, images=cache.images, masks=cache.masks,
        intrinsics=cache.intrinsics, world_to_cam=cache.world_to_cam, names=cache.names,
    )
    scratch.replace(path)
    return path


def load_feature_cache(path: str | Path) -> FeatureCache:
    """Read a cache written by ``save_feature_cache``; raises ``FeatureCacheError``."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            cache = FeatureCache(**{k: data[k] for k in FeatureCache.__dataclass_fields__})
    except (OSError, KeyError, ValueError) as exc:
        raise FeatureCacheError(f"cannot read the feature cache {path}: {exc}") from exc
    n = len(cache)
    if any(len(getattr(cache, k)) != n for k in FeatureCache.__dataclass_fields__):
        raise FeatureCacheError(f"the feature cache {path} has arrays of different lengths")
    return cache


def cached_features(
    records: Sequence[ShapeRecord] | Callable[[], Iterable[ShapeRecord]],
    names: Sequence[str],
    clip: ClipModel,
    shape_model: ShapeModel,
    shape_model_id: str,
    cache_dir: str | Path,
    *,
    image_size: int = 32,
    on_record: Callable[[int], None] | None = None,
) -> tuple[FeatureCache, Path, bool]:
    """The cache for these shapes from ``cache_dir``, built and saved when absent.

    ``records``: the records, or a function yielding them (only called when the cache is built).
    Returns ``(cache, path, was_cached)``.
    """
    key = cache_key(clip.model_id, shape_model_id, names, image_size)
    path = Path(cache_dir) / f"mapper_features_{key}.npz"
    if path.is_file():
        return load_feature_cache(path), path, True
    source = records() if callable(records) else records
    cache = build_feature_cache(source, clip, shape_model, image_size=image_size, on_record=on_record)
    save_feature_cache(cache, path)
    return cache, path, False


def to_tensors(cache: FeatureCache, device: str | torch.device) -> dict[str, torch.Tensor]:
    """The cache's arrays as tensors on ``device`` (names excluded)."""
    import torch

    return {
        k: torch.from_numpy(getattr(cache, k)).to(device)
        for k in ("clip_features", "codes", "images", "masks", "intrinsics", "world_to_cam")
    }
