"""CLIP guidance for text → shape (ISS stage 2) and stylisation: the losses and the image
augmentations that keep CLIP from being fooled by pixel-level noise.

Everything is plain torch and differentiable with respect to the rendered images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from backend.models.clip import ClipModel


@dataclass
class ClipGuidanceWeights:
    """Weights of the stage-2 loss terms (ISS: 4·CLIP + 3·background)."""

    clip: float = 4.0
    """Weight of ``1 − cos(CLIP(render), CLIP(text))``, averaged over views."""

    background: float = 3.0
    """Weight of the background L1 term."""


@dataclass
class ClipAugmentConfig:
    """Random crop and perspective jitter applied to renders before CLIP sees them."""

    min_crop_scale: float = 0.8
    """Smallest side of the random square crop, as a fraction of the image side (1 = no crop)."""

    perspective: float = 0.08
    """Largest shift of each crop corner, as a fraction of the crop side (0 = no perspective jitter)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise ValueError(f"min_crop_scale must lie in (0, 1]; got {self.min_crop_scale!r}")
        if not 0.0 <= self.perspective < 0.5:
            raise ValueError(f"perspective must lie in [0, 0.5); got {self.perspective!r}")


@dataclass
class ClipGuidanceTerms:
    """The stage-2 loss and its parts (scalar tensors; ``total`` carries the gradient)."""

    total: torch.Tensor
    clip: torch.Tensor
    """Unweighted ``1 − cos`` averaged over views."""
    background: torch.Tensor
    """Unweighted background L1."""


def random_background_colors(
    count: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Uniform random RGB colours ``[count, 3]`` in 0..1 (one background per view, as in ISS's
    stylisation, so CLIP cannot read the object's colour off a fixed backdrop)."""
    return _uniform((count, 3), generator, torch.device(device))


def composite_background(rgb: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Put premultiplied renders ``rgb [B, 3, H, W]`` with coverage ``alpha [B, 1, H, W]`` over
    background colours ``[B, 3]`` or ``[3]`` → ``[B, 3, H, W]``."""
    _check_images(rgb, "rgb")
    if alpha.shape != (rgb.shape[0], 1, *rgb.shape[2:]):
        raise ValueError(f"alpha must be [B, 1, H, W] matching rgb {tuple(rgb.shape)}; got {tuple(alpha.shape)}")
    return rgb + (1.0 - alpha) * _background_map(background, rgb)


def clip_consistency_loss(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """``mean over views of 1 − cos(image_v, text)``.

    ``image_features [V, D]``; ``text_features [D]`` or ``[1, D]`` (one prompt for every view) or
    ``[V, D]`` (one per view). Features need not be unit length.
    """
    if image_features.ndim != 2:
        raise ValueError(f"image_features must be [V, D]; got {tuple(image_features.shape)}")
    text = text_features.reshape(1, -1) if text_features.ndim == 1 else text_features
    if text.ndim != 2 or text.shape[1] != image_features.shape[1] or text.shape[0] not in (1, image_features.shape[0]):
        raise ValueError(
            f"text_features {tuple(text_features.shape)} do not match image_features {tuple(image_features.shape)}"
        )
    return (1.0 - F.cosine_similarity(image_features, text.to(image_features.dtype), dim=-1)).mean()


def background_l1_loss(rgb: torch.Tensor, background_mask: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between rendered pixels and the background colour, over the pixels
    that should show background.

    ``rgb [B, 3, H, W]`` composited renders; ``background_mask [B, 1, H, W]`` in 0..1, 1 where the
    background is expected; ``background [B, 3]`` or ``[3]``. Zero when no pixel is background.
    """
    _check_images(rgb, "rgb")
    if background_mask.shape != (rgb.shape[0], 1, *rgb.shape[2:]):
        raise ValueError(
            f"background_mask must be [B, 1, H, W] matching rgb {tuple(rgb.shape)}; got {tuple(background_mask.shape)}"
        )
    error = (rgb - _background_map(background, rgb)).abs().mean(dim=1, keepdim=True)
    return (error * background_mask).sum() / background_mask.sum().clamp_min(1.0)


def augment_for_clip(
    images: torch.Tensor, config: ClipAugmentConfig | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random square crop, resized back to full size, with each crop corner jittered: a random
    perspective warp per image. ``[B, 3, H, W]`` → ``[B, 3, H, W]``, differentiable in ``images``.

    Samples outside the image repeat the border, which for renders is background.
    """
    _check_images(images, "images")
    config = config or ClipAugmentConfig()
    batch = images.shape[0]

    def rand(*shape: int) -> torch.Tensor:
        return _uniform(shape, generator, images.device)

    # Crop square in normalised coordinates [-1, 1]: side 2·s, centre anywhere that keeps it inside.
    scale = config.min_crop_scale + (1.0 - config.min_crop_scale) * rand(batch, 1, 1)
    centre = (1.0 - scale) * (2.0 * rand(batch, 1, 2) - 1.0)
    unit_corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=images.device)
    jitter = config.perspective * (2.0 * scale) * (2.0 * rand(batch, 4, 2) - 1.0)
    source_corners = centre + scale * unit_corners + jitter
    homography = _homography_from_unit_square(source_corners)

    height, width = images.shape[-2:]
    ys = (torch.arange(height, device=images.device, dtype=torch.float32) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=images.device, dtype=torch.float32) * 2 + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1).reshape(1, -1, 3)
    warped = points @ homography.transpose(1, 2)
    grid = (warped[..., :2] / warped[..., 2:]).reshape(batch, height, width, 2)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def clip_guidance_loss(
    clip: ClipModel,
    rgb: torch.Tensor,
    text_features: torch.Tensor,
    *,
    background_mask: torch.Tensor,
    background: torch.Tensor,
    weights: ClipGuidanceWeights | None = None,
    augment: ClipAugmentConfig | None = None,
    generator: torch.Generator | None = None,
) -> ClipGuidanceTerms:
    """ISS stage-2 loss for V rendered views: ``w_clip·(1 − cos) + w_bg·background L1``.

    ``rgb [V, 3, H, W]`` composited over ``background`` (``[V, 3]`` or ``[3]``);
    ``background_mask [V, 1, H, W]`` where background is expected; ``text_features [D]`` or
    ``[1, D]``. ``augment`` None skips augmentation (the background term always sees the
    unaugmented renders).
    """
    weights = weights or ClipGuidanceWeights()
    clip_input = augment_for_clip(rgb, augment, generator) if augment is not None else rgb
    clip_term = clip_consistency_loss(clip.encode_image(clip_input), text_features.to(clip.device))
    background_term = background_l1_loss(rgb, background_mask, background).to(clip_term.device)
    total = weights.clip * clip_term + weights.background * background_term
    return ClipGuidanceTerms(total=total, clip=clip_term.detach(), background=background_term.detach())


def _homography_from_unit_square(corners: torch.Tensor) -> torch.Tensor:
    """Homographies ``[B, 3, 3]`` taking the square's corners (-1,-1), (1,-1), (1,1), (-1,1) to
    ``corners [B, 4, 2]`` (direct linear transform with h33 = 1)."""
    square = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=corners.device)
    batch = corners.shape[0]
    rows = []
    for i in range(4):
        x, y = square[i]
        u, v = corners[:, i, 0], corners[:, i, 1]
        one, zero = torch.ones_like(u), torch.zeros_like(u)
        rows.append(torch.stack([x * one, y * one, one, zero, zero, zero, -u * x, -u * y], dim=-1))
        rows.append(torch.stack([zero, zero, zero, x * one, y * one, one, -v * x, -v * y], dim=-1))
    system = torch.stack(rows, dim=1)
    rhs = corners.reshape(batch, 8)
    h = torch.linalg.solve(system, rhs)
    return torch.cat([h, torch.ones(batch, 1, device=corners.device)], dim=-1).reshape(batch, 3, 3)


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    # Drawn where the generator lives, so a CPU generator makes the same numbers for CUDA tensors.
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source).to(device)


def _background_map(background: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if background.shape == (3,):
        background = background.expand(like.shape[0], 3)
    if background.shape != (like.shape[0], 3):
        raise ValueError(f"background must be [3] or [B, 3] with B = {like.shape[0]}; got {tuple(background.shape)}")
    return background.to(device=like.device, dtype=like.dtype)[:, :, None, None]


def _check_images(images: torch.Tensor, name: str) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must be [B, 3, H, W]; got {tuple(images.shape)}")
