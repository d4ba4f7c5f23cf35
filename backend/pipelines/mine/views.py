"""Distant (orthographic) cameras round a shape, the shape's silhouettes from them, and finding
the camera that best explains a photo's outline.

A photo in a collection is taken as a distant camera at azimuth a and elevation e (the metadata
convention of `backend.geometry.fidelity`: azimuth 0 looks from -Y, +90 from +X, positive
elevation from above) with no roll, that frames the object the way the photo's square crop does
(`backend.pipelines.reconstruct.inputs.object_crop`: the outline's bounding box plus a margin).
The shape is an occupancy volume over [-0.5, 0.5]^3; its silhouette from any set of directions is
its maximum along each ray, sampled with ``grid_sample``, then cropped by the same rule, so a
silhouette and a photo's mask can be compared pixel for pixel whatever the object's size in
either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from backend.pipelines.reconstruct.inputs import CROP_MARGIN

VOLUME_BOUND = 0.5
"""The occupancy volume spans [-VOLUME_BOUND, VOLUME_BOUND] on each axis."""

SILHOUETTE_SIZE = 32
"""Side of the rendered silhouettes and of the masks they are compared with (a coarse outline
decides the viewpoint; finer pixels add time, not information)."""


@dataclass(frozen=True)
class DistantView:
    """A distant camera framing a square crop: world points -> crop pixels."""

    azimuth: float
    """Degrees."""
    elevation: float
    """Degrees."""
    centre: tuple[float, float]
    """Crop centre in the image plane (along `axes` right and down), world units."""
    side: float
    """Crop side in world units."""

    def axes(self) -> np.ndarray:
        """[3, 3] rows: right, down, forward (the viewing direction), world frame."""
        return view_axes(np.array([self.azimuth]), np.array([self.elevation]))[0]

    def project(self, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Points [N, 3] -> (crop pixel coordinates [N, 2] as (column, row), pixel centres at
        +0.5 like `backend.render.cameras`; depth along the viewing direction [N])."""
        right, down, forward = self.axes()
        u = ((points @ right - self.centre[0]) / self.side + 0.5) * size
        v = ((points @ down - self.centre[1]) / self.side + 0.5) * size
        return np.stack([u, v], axis=1), points @ forward

    def metadata(self, scale: float = 1.0, centre: np.ndarray | None = None) -> dict:
        """The camera in the result metadata's convention (`backend.geometry.fidelity`), for the
        shape moved by -``centre`` and scaled by ``scale``: a long lens aimed so that the crop's
        centre is the image centre."""
        from backend.pipelines.reconstruct.silhouette import CAMERA_FOV

        right, down, _ = self.axes()
        aim = self.centre[0] * right + self.centre[1] * down
        if centre is not None:
            aim = aim - np.asarray(centre)
        side = self.side * scale
        return {"azimuth": round(self.azimuth, 2), "elevation": round(self.elevation, 2), "fov": CAMERA_FOV,
                "distance": round(float(side / 2 / math.tan(math.radians(CAMERA_FOV) / 2)), 4),
                "target": [round(float(t), 5) for t in aim * scale]}


def view_axes(azimuth_deg: np.ndarray, elevation_deg: np.ndarray) -> np.ndarray:
    """[P, 3, 3] right, down, forward of cameras at the given angles (degrees), no roll."""
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    forward = np.stack([-np.cos(e) * np.sin(a), np.cos(e) * np.cos(a), -np.sin(e)], -1)
    right = np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], -1)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], 1)


def silhouettes(volume: torch.Tensor, axes: np.ndarray, size: int = SILHOUETTE_SIZE, depth: int = 40
                ) -> torch.Tensor:
    """[P, size, size] silhouette (maximum occupancy along each ray) of ``volume`` [X, Y, Z]
    (occupancy in [0, 1] over the volume's box) seen along each of ``axes`` [P, 3, 3], on an
    image plane of side 2 * 0.87 * `VOLUME_BOUND` round the volume's centre (the box's
    diagonal, so no view cuts it)."""
    half = VOLUME_BOUND * math.sqrt(3)
    axes_t = torch.as_tensor(axes, dtype=volume.dtype, device=volume.device)
    plane = (torch.arange(size, dtype=volume.dtype, device=volume.device) + 0.5) / size * 2 * half - half
    ray = torch.linspace(-half, half, depth, dtype=volume.dtype, device=volume.device)
    # world point of (depth t, row v, column u): u right + v down + t forward
    points = (plane[None, None, None, :, None] * axes_t[:, None, None, None, 0]
              + plane[None, None, :, None, None] * axes_t[:, None, None, None, 1]
              + ray[None, :, None, None, None] * axes_t[:, None, None, None, 2])  # [P, D, S, S, 3]
    # grid_sample's last coordinate indexes the volume's first axis
    grid = (points.flip(-1) / VOLUME_BOUND).reshape(1, -1, size, size, 3)
    sampled = torch.nn.functional.grid_sample(volume[None, None], grid, mode="bilinear", padding_mode="zeros",
                                              align_corners=True)
    return sampled.reshape(len(axes), depth, size, size).amax(1)


def crop_silhouettes(images: torch.Tensor, size: int = SILHOUETTE_SIZE, margin: float = CROP_MARGIN
                     ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Square crops of silhouettes [P, S, S] round their outline's bounding box (the photo crop
    rule) -> (crops [P, size, size], centres [P, 2] and sides [P] in the image plane's world
    units). An empty silhouette gets the whole image."""
    count, full = images.shape[0], images.shape[-1]
    half = VOLUME_BOUND * math.sqrt(3)
    on = images > 0.5
    centres = np.zeros((count, 2))
    sides = np.full(count, 2 * half)
    cols, rows = on.any(1).cpu().numpy(), on.any(2).cpu().numpy()
    pixel = 2 * half / full
    for p in range(count):
        if not cols[p].any():
            continue
        c = np.nonzero(cols[p])[0]
        r = np.nonzero(rows[p])[0]
        x0, x1 = c[0] * pixel - half, (c[-1] + 1) * pixel - half
        y0, y1 = r[0] * pixel - half, (r[-1] + 1) * pixel - half
        centres[p] = ((x0 + x1) / 2, (y0 + y1) / 2)
        sides[p] = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    # an affine grid per crop: output [-1, 1] -> the crop's square in the silhouette image
    theta = torch.zeros(count, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = theta[:, 1, 1] = torch.as_tensor(sides / (2 * half), dtype=images.dtype)
    theta[:, 0, 2] = torch.as_tensor(centres[:, 0] / half, dtype=images.dtype)
    theta[:, 1, 2] = torch.as_tensor(centres[:, 1] / half, dtype=images.dtype)
    grid = torch.nn.functional.affine_grid(theta, [count, 1, size, size], align_corners=False)
    crops = torch.nn.functional.grid_sample(images[:, None], grid, mode="bilinear", padding_mode="zeros",
                                            align_corners=False)[:, 0]
    return crops, centres, sides


def soft_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[P, K] soft IoU (sum of minima over sum of maxima) of crops a [P, S, S] and b [K, S, S]."""
    a, b = a.reshape(len(a), 1, -1), b.reshape(1, len(b), -1)
    return torch.minimum(a, b).sum(-1) / torch.maximum(a, b).sum(-1).clamp_min(1e-6)


@dataclass(frozen=True)
class PoseGrid:
    """The viewpoints tried for a photo."""

    azimuth_step: float = 10.0
    elevations: tuple[float, ...] = (-10.0, 5.0, 20.0, 35.0, 50.0, 65.0)

    def angles(self) -> tuple[np.ndarray, np.ndarray]:
        azimuths = np.arange(0.0, 360.0, self.azimuth_step)
        a, e = np.meshgrid(azimuths, np.asarray(self.elevations), indexing="ij")
        return a.reshape(-1), e.reshape(-1)


def best_views(volume: torch.Tensor, masks: torch.Tensor, azimuths: np.ndarray, elevations: np.ndarray
               ) -> tuple[list[DistantView], np.ndarray]:
    """For each cropped mask [K, S, S], the candidate viewpoint (azimuths/elevations [P],
    degrees) whose cropped silhouette of ``volume`` matches it best -> (views, their IoU [K])."""
    crops, centres, sides = crop_silhouettes(silhouettes(volume, view_axes(azimuths, elevations)), masks.shape[-1])
    scores = soft_iou(crops, masks)  # [P, K]
    best = scores.argmax(0).cpu().numpy()
    views = [DistantView(float(azimuths[p]), float(elevations[p]), (float(centres[p, 0]), float(centres[p, 1])),
                         float(sides[p])) for p in best]
    return views, scores.max(0).values.cpu().numpy()


def refine_views(volume: torch.Tensor, masks: torch.Tensor, views: list[DistantView], spread: float = 8.0,
                 steps: int = 5) -> tuple[list[DistantView], np.ndarray]:
    """Each view's best viewpoint on a finer grid of ``steps`` x ``steps`` angles within
    +-``spread`` degrees of its current one."""
    offsets = np.linspace(-spread, spread, steps)
    da, de = np.meshgrid(offsets, offsets, indexing="ij")
    refined, ious = [], []
    for k, view in enumerate(views):
        a = view.azimuth + da.reshape(-1)
        e = np.clip(view.elevation + de.reshape(-1), -89.0, 89.0)
        (best,), iou = best_views(volume, masks[k:k + 1], a, e)
        refined.append(DistantView(best.azimuth % 360.0, best.elevation, best.centre, best.side))
        ious.append(float(iou[0]))
    return refined, np.asarray(ious)
