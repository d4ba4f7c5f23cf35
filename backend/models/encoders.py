"""Image encoders of the shape model: a backbone, then small residual heads that predict a shape
code, a colour code and (optionally) the viewpoint.

Expected input (`ImageEncoder.forward`): float RGB images [B, 3, H, W] in [0, 1], square, the
object composited over a plain background (white by default) and roughly centred, at
`EncoderConfig.image_size` pixels. `prepare_images` turns RGBA or non-square images into that form.
The encoder itself applies the ImageNet mean/std normalisation, so callers never do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

BACKBONES = ("small_cnn", "resnet18", "resnet34")
"""Names accepted by `EncoderConfig.backbone`."""

POOLS = ("mean", "flatten")
"""Values accepted by `EncoderConfig.pool`."""


def spread_azimuths(start: torch.Tensor, count: int) -> torch.Tensor:
    """[B, count] azimuths: ``start`` [B] and ``count - 1`` more spread evenly round the circle."""
    steps = torch.arange(count, dtype=start.dtype, device=start.device)
    return start.unsqueeze(-1) + steps * (2.0 * math.pi / count)


def azimuth_sector(azimuth: torch.Tensor, bins: int) -> torch.Tensor:
    """Index (long) of the one of ``bins`` equal sectors, sector k centred on 2 pi k / bins, that
    holds each azimuth (radians): the azimuth classifier's target (`Viewpoint.azimuth_logits`)."""
    return torch.remainder(torch.round(azimuth / (2.0 * math.pi / bins)), bins).long()


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class EncoderInputError(ValueError):
    """Images handed to the encoder have the wrong shape, dtype or value range."""


@dataclass
class EncoderConfig:
    """Image encoder options."""

    backbone: str = "small_cnn"
    """One of `BACKBONES`; ResNets come from torchvision, built without pretrained weights."""
    small_channels: tuple[int, ...] = (32, 64, 128, 256)
    """Channels of the stride-2 stages of the small CNN (ignored by ResNets)."""
    head_hidden: int = 256
    """Width of the residual heads."""
    viewpoint_head: bool = True
    """Predict azimuth/elevation/roll from the image features."""
    image_size: int = 64
    """Side in pixels of the square images the encoder is trained on (see `prepare_images`)."""
    pool: str = "mean"
    """How the small CNN turns its last feature map into a vector: "mean" (global average) or
    "flatten" (every cell kept, so the heads know *where* parts are: legs under a seat, a handle
    on the right). ResNets always average."""
    azimuth_bins: int = 0
    """When > 0 (needs ``viewpoint_head``), a classifier over this many equal azimuth sectors
    besides the (sin, cos) regression. Azimuth is often ambiguous from one picture (front or
    back of a table, left or right side of a car): regression then averages the modes into a
    wrong in-between angle, while the classifier keeps each of them as a candidate
    (`Viewpoint.azimuth_candidates`)."""


@dataclass
class Viewpoint:
    """Predicted camera angles in radians, conventions of `backend.render.cameras.orbit_cameras`."""

    azimuth: torch.Tensor
    """[B] azimuth, 0 = camera on -Y in front of the object."""
    elevation: torch.Tensor
    """[B] elevation above the XY plane."""
    roll: torch.Tensor
    """[B] rotation about the optical axis."""
    sincos: torch.Tensor
    """[B, 3, 2] unit (sin, cos) pairs of (azimuth, elevation, roll): the raw, continuous output."""
    azimuth_logits: torch.Tensor | None = None
    """[B, K] scores of K equal azimuth sectors (sector k centred on 2 pi k / K), when the
    encoder has an azimuth classifier (`EncoderConfig.azimuth_bins`)."""

    def azimuth_candidates(self, count: int) -> torch.Tensor:
        """[B, count] azimuths (radians) to try, most likely first: the centres of the
        classifier's best sectors, or without a classifier the regressed azimuth and
        ``count - 1`` more spread evenly round the circle from it."""
        if self.azimuth_logits is not None:
            bins = self.azimuth_logits.shape[-1]
            top = self.azimuth_logits.topk(min(count, bins), dim=-1).indices
            return top.to(self.azimuth.dtype) * (2.0 * math.pi / bins)
        return spread_azimuths(self.azimuth, count)


@dataclass
class ShapeCodes:
    """Everything the encoder predicts for a batch of images."""

    shape: torch.Tensor
    """[B, shape_dim] shape code conditioning the SDF."""
    color: torch.Tensor
    """[B, color_dim] colour code conditioning the colour network."""
    viewpoint: Viewpoint | None
    """Predicted viewpoint, None when the viewpoint head is disabled."""


class SmallCNN(nn.Module):
    """Stride-2 conv stages with GroupNorm (stable at batch size 1), then global average pooling
    (``pool="mean"``) or the whole last feature map as one vector (``pool="flatten"``, which
    fixes the input size to ``image_size``)."""

    def __init__(self, channels: tuple[int, ...], pool: str = "mean", image_size: int = 64) -> None:
        super().__init__()
        if not channels or any(c < 8 or c % 8 for c in channels):
            raise ValueError(f"small_channels must be multiples of 8 (>= 8), got {channels}")
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; choose one of {POOLS}")
        cells = image_size // 2 ** len(channels)
        if pool == "flatten" and (cells < 1 or image_size % 2 ** len(channels)):
            raise ValueError(f"pool='flatten' needs image_size divisible by 2^{len(channels)}, got {image_size}")
        stages, previous = [], 3
        for c in channels:
            stages += [
                nn.Conv2d(previous, c, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(8, c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1, bias=False),
                nn.GroupNorm(8, c),
                nn.ReLU(inplace=True),
            ]
            previous = c
        self.body = nn.Sequential(*stages)
        self.pool = pool
        self.image_size = image_size
        self.feature_dim = previous * (cells * cells if pool == "flatten" else 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, feature_dim]."""
        features = self.body(images)
        if self.pool == "flatten":
            if images.shape[-2:] != (self.image_size, self.image_size):
                raise EncoderInputError(
                    f"this encoder takes {self.image_size}x{self.image_size} images, got {list(images.shape[-2:])}")
            return features.flatten(1)
        return features.mean(dim=(2, 3))


def build_backbone(config: EncoderConfig) -> tuple[nn.Module, int]:
    """The feature extractor named by ``config.backbone`` and its output width."""
    if config.backbone == "small_cnn":
        net = SmallCNN(tuple(config.small_channels), config.pool, config.image_size)
        return net, net.feature_dim
    if config.backbone in ("resnet18", "resnet34"):
        import torchvision

        # weights=None: never download; trained weights come from our own checkpoints.
        net = getattr(torchvision.models, config.backbone)(weights=None)
        dim = net.fc.in_features
        net.fc = nn.Identity()
        return net, dim
    raise ValueError(f"unknown encoder backbone {config.backbone!r}; choose one of {BACKBONES}")


class ResidualHead(nn.Module):
    """Linear -> (ReLU, Linear, ReLU, Linear) residual block -> Linear."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.block = nn.Sequential(
            nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        return self.out(h + self.block(h))


class ImageEncoder(nn.Module):
    """Backbone + heads: images [B, 3, H, W] in [0, 1] -> `ShapeCodes`."""

    def __init__(self, config: EncoderConfig, shape_dim: int, color_dim: int) -> None:
        super().__init__()
        self.config = config
        self.backbone, feature_dim = build_backbone(config)
        self.shape_head = ResidualHead(feature_dim, shape_dim, config.head_hidden)
        self.color_head = ResidualHead(feature_dim, color_dim, config.head_hidden)
        self.view_head = ResidualHead(feature_dim, 6, config.head_hidden) if config.viewpoint_head else None
        if config.azimuth_bins and not config.viewpoint_head:
            raise ValueError("azimuth_bins needs viewpoint_head=True")
        self.azimuth_head = (ResidualHead(feature_dim, config.azimuth_bins, config.head_hidden)
                             if config.azimuth_bins else None)
        self.feature_dropout = nn.Dropout(0.0)
        """Dropout on the backbone features; a trainer sets its rate (no parameters, no config:
        it acts only while training)."""
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, feature_dim] backbone features the heads read (photo similarity uses them too)."""
        check_images(images)
        return self.backbone((images - self.mean) / self.std)

    def forward(self, images: torch.Tensor) -> ShapeCodes:
        features = self.feature_dropout(self.features(images))
        viewpoint = None
        if self.view_head is not None:
            sincos = nn.functional.normalize(self.view_head(features).view(-1, 3, 2), dim=-1)
            angles = torch.atan2(sincos[..., 0], sincos[..., 1])
            logits = self.azimuth_head(features) if self.azimuth_head is not None else None
            viewpoint = Viewpoint(angles[:, 0], angles[:, 1], angles[:, 2], sincos, logits)
        return ShapeCodes(self.shape_head(features), self.color_head(features), viewpoint)


def check_images(images: torch.Tensor) -> None:
    """Raise `EncoderInputError` unless ``images`` is a float [B, 3, H, W] batch in [0, 1]."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise EncoderInputError(f"images must be [B, 3, H, W] RGB, got {list(images.shape)}")
    if not images.is_floating_point():
        raise EncoderInputError(f"images must be floating point in [0, 1], got {images.dtype}")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3 or math.isnan(lo) or math.isnan(hi):
        raise EncoderInputError(
            f"images must hold values in [0, 1] (not ImageNet-normalised, not 0-255), got range [{lo:.3g}, {hi:.3g}]"
        )


def prepare_images(
    images: torch.Tensor,
    size: int,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Bring images to the encoder's input form.

    Args:
        images: [B, 3 or 4, H, W] floats in [0, 1]; a 4th channel is straight (non-premultiplied)
            alpha and the image is composited over ``background``.
        size: output side in pixels.
        background: RGB used for compositing and for padding non-square images to a square
            (centred, so the aspect ratio is kept).

    Returns:
        [B, 3, size, size] in [0, 1].
    """
    if images.dim() != 4 or images.shape[1] not in (3, 4):
        raise EncoderInputError(f"images must be [B, 3|4, H, W], got {list(images.shape)}")
    if size < 8:
        raise EncoderInputError(f"size must be >= 8 pixels, got {size}")
    bg = torch.tensor(background, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    if images.shape[1] == 4:
        alpha = images[:, 3:4]
        images = images[:, :3] * alpha + bg * (1.0 - alpha)
    b, _, h, w = images.shape
    side = max(h, w)
    if h != w:
        canvas = bg.expand(b, 3, side, side).clone()
        top, left = (side - h) // 2, (side - w) // 2
        canvas[:, :, top : top + h, left : left + w] = images
        images = canvas
    if side != size:
        images = nn.functional.interpolate(
            images, size=(size, size), mode="bilinear", antialias=side > size, align_corners=False
        )
    return images.clamp(0.0, 1.0)
