"""Front and back depth of the object in a photo: what the view shows of its surface, and how far
back the object goes behind each pixel.

One global shape code (the shape model) has to name the whole object and fails on things unlike
its training shapes; the silhouette inflation guesses every object's thickness from its outline
alone. This network predicts, per pixel of the object crop, the depth of the first surface the
ray meets and of the last one it leaves (as Front2Back, Yao et al. 2020, predicts front and back
maps): local evidence (shading, occluding contours, the outline's local shape) that carries over to
objects of kinds it never saw. `backend.pipelines.reconstruct.layered` turns the two maps into a
solid.

Input: the object crop over white every pipeline makes (`inputs.object_crop`) and its mask,
``[B, 3, S, S]`` and ``[B, 1, S, S]`` in [0, 1]. Output ``[B, 2, S, S]``: the front depth (up to a
shift: only differences within a photo are defined) and the thickness behind it (>= 0), both in
units of the crop's side, along the viewing direction.

The network predicts both as corrections to the silhouette inflation (`geometry.layers.
inflation_profile`, also given to it as an input): the inflation is a good first guess that a
small convolutional network cannot compute itself (it depends on the whole outline), so the
network starts from it and learns where real objects differ (flat sides, thin parts, concave
fronts).

Trained on the project's procedural shapes through the on-the-fly training renderer
(`backend.train.layered_depth`); no dataset, no download.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class LayeredDepthConfig:
    image_size: int = 64
    widths: tuple[int, ...] = (16, 32, 64, 128)
    """Channels per resolution level (level k at 1/2^k of the input)."""


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # group norm: no running statistics to go stale on photos unlike the training renders
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.GroupNorm(8, cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(8, cout), nn.ReLU(inplace=True))


class LayeredDepthNet(nn.Module):
    """A small U-Net: photo and mask in, front depth and thickness out (see the module doc)."""

    def __init__(self, config: LayeredDepthConfig = LayeredDepthConfig()) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        self.down = nn.ModuleList([_block(5, widths[0])] +
                                  [_block(widths[i - 1], widths[i], stride=2) for i in range(1, len(widths))])
        self.up = nn.ModuleList([_block(widths[i + 1] + widths[i], widths[i]) for i in range(len(widths) - 1)])
        self.head = nn.Conv2d(widths[0], 2, 1)

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3 or masks.shape != (images.shape[0], 1, *images.shape[2:]):
            raise ValueError(f"need images [B, 3, H, W] and masks [B, 1, H, W], got {list(images.shape)} "
                             f"and {list(masks.shape)}")
        half = inflation_half_thickness(masks)
        x = torch.cat([images * 2.0 - 1.0, masks * 2.0 - 1.0, half * 4.0], dim=1)
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        for level in range(len(self.up) - 1, -1, -1):
            skip = skips[level]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[level](torch.cat([x, skip], dim=1))
        out = self.head(x)
        # a sharp softplus: the inflation's thickness where the correction is 0, never below 0
        thickness = F.softplus(2.0 * half + out[:, 1:], beta=THICKNESS_SHARPNESS)
        return torch.cat([out[:, :1] - half, thickness], dim=1)

    @torch.no_grad()
    def predict(self, rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One crop ``rgb`` [S, S, 3] over white and its ``mask`` [S, S] (any S; resampled to the
        network's size and back) -> (front, back) depth maps [S, S] in units of the crop's side,
        the front's mean over the mask at 0. The mirror image's prediction is averaged in."""
        size = self.config.image_size
        device = next(self.parameters()).device
        crop = np.concatenate([rgb, mask[..., None]], axis=-1)
        crop = torch.as_tensor(crop, dtype=torch.float32, device=device).permute(2, 0, 1)[None]
        small = F.interpolate(crop, size=(size, size), mode="area" if rgb.shape[0] > size else "bilinear")
        small = torch.cat([small, small.flip(-1)])
        both = self(small[:, :3], small[:, 3:])
        maps = (both[:1] + both[1:].flip(-1)) / 2
        maps = F.interpolate(maps, size=rgb.shape[:2], mode="bilinear", align_corners=False)[0].cpu().numpy()
        front, thickness = maps[0], maps[1]
        inside = mask >= 0.5
        if inside.any():
            front = front - front[inside].mean()
        return front, front + thickness


THICKNESS_SHARPNESS = 20.0
"""``beta`` of the softplus that keeps the predicted thickness positive (per crop side)."""


def inflation_half_thickness(masks: torch.Tensor) -> torch.Tensor:
    """`inflation_profile` of each mask [B, 1, S, S] (computed on the CPU: a distance transform)."""
    from backend.geometry.layers import inflation_profile

    inside = (masks[:, 0] >= 0.5).cpu().numpy()
    profiles = np.stack([inflation_profile(m) for m in inside]).astype(np.float32)
    return torch.as_tensor(profiles, device=masks.device)[:, None]


LAYERED_DEPTH_KIND = "layered_depth"


def load_layered_depth(path, device="cpu") -> tuple[LayeredDepthNet, dict]:
    """The network of checkpoint ``path`` in eval mode without gradients, and its metadata."""
    from backend.models.checkpoint import load_network

    return load_network(path, LayeredDepthConfig, LayeredDepthNet, kind=LAYERED_DEPTH_KIND, device=device)
