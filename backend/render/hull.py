"""Visual-hull field of a set of masks seen by known cameras, to carve an implicit surface.

A point whose projection falls outside a view's mask cannot be on the object; how far outside,
in pixels, times its depth over the focal length is a lower bound (up to the perspective) of its
distance to the viewing cone of the mask. `hull_field` returns that bound per point, maximised
over the views: negative-or-zero inside every cone, positive outside. ``max(sdf, hull)`` is then
the shape cut by every silhouette — the "visual hull" intersection of space carving — and stays
1-Lipschitz where both are, so coarse-to-fine marching cubes still applies.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from backend.render.cameras import Cameras


def mask_outside_distance(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """[H, W] float32 distance in pixels from each pixel centre to the nearest mask pixel (0 on
    the mask). An empty mask gives a distance far beyond the image everywhere (nothing is kept;
    finite, so a carved field stays finite)."""
    inside = np.asarray(mask) > threshold
    if not inside.any():
        return np.full(inside.shape, 10.0 * sum(inside.shape), np.float32)
    return distance_transform_edt(~inside).astype(np.float32)


def hull_field(cameras: Cameras, masks: list[np.ndarray], margin_px: float = 1.0
               ) -> Callable[[torch.Tensor], torch.Tensor]:
    """points [N, 3] -> [N] world-unit distance bound outside the masks' viewing cones.

    ``cameras`` holds one camera per mask (image size = the masks' size). ``margin_px`` widens
    every mask by that many pixels, so a camera that is slightly off does not shave the object.
    Points behind a camera or projecting outside its image count as outside by their distance to
    the image border plus that of the border pixel to the mask.
    """
    if len(masks) != len(cameras):
        raise ValueError(f"{len(masks)} masks for {len(cameras)} cameras")
    if any(min(np.shape(m)) < 2 for m in masks):
        raise ValueError("masks must be at least 2 x 2 pixels")
    distances = [torch.from_numpy(mask_outside_distance(m)).to(cameras.device, cameras.dtype) for m in masks]

    def field(points: torch.Tensor) -> torch.Tensor:
        bound = torch.full(points.shape[:1], -float("inf"), dtype=points.dtype, device=points.device)
        for i, dist in enumerate(distances):
            height, width = dist.shape
            uv, z = cameras[i].project(points.unsqueeze(0))
            uv, z = uv[0], z[0]
            # bilinear between pixel centres (+0.5), so carved walls are smooth rather than
            # stepped; outside the image, add the distance to its border
            col = (uv[:, 0] - 0.5).clamp(0, width - 1)
            row = (uv[:, 1] - 0.5).clamp(0, height - 1)
            beyond = torch.hypot(uv[:, 0] - 0.5 - col, uv[:, 1] - 0.5 - row)
            # align_corners=True: -1 and 1 are the first and last pixel centres
            grid = torch.stack([col / (width - 1), row / (height - 1)], -1) * 2.0 - 1.0
            inside = torch.nn.functional.grid_sample(dist[None, None], grid[None, None].to(dist.dtype),
                                                     mode="bilinear", align_corners=True)[0, 0, 0]
            pixels = inside.to(points.dtype) + beyond - margin_px
            focal = cameras.focal[i].mean()
            world = pixels * z.clamp_min(1e-3) / focal
            # behind the camera: outside by at least the depth (never inside the cone)
            world = torch.where(z > 1e-3, world, z.abs() + 1.0)
            bound = torch.maximum(bound, world)
        return bound

    return field

