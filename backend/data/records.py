"""The per-shape record both dataset readers yield (torch-free; the trainer wraps it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


class DatasetError(RuntimeError):
    """A dataset directory is missing files or holds malformed data."""


@dataclass
class ShapeRecord:
    """One shape with its views and 3D supervision, in the project's conventions.

    World frame: Z up, front -Y, the shape's bounding box centred at the origin with longest
    side 1 (real data: the dataset's own normalisation, rotated into Z-up). Cameras: OpenCV
    world->camera extrinsics and pixel intrinsics with pixel centres at (j + 0.5, i + 0.5).
    """

    shape_id: str
    """'<category>/<name>' (procedural) or '<synset>/<model>' (real)."""
    category: str
    images: np.ndarray
    """float32[V,H,W,3] straight (un-premultiplied) sRGB colours in [0, 1]."""
    masks: np.ndarray
    """float32[V,H,W] object coverage in [0, 1] (alpha); threshold at 0.5 for a binary mask."""
    intrinsics: np.ndarray
    """float32[V,3,3] pixel intrinsics K."""
    world_to_cam: np.ndarray
    """float32[V,4,4] OpenCV extrinsics (x right, y down, z forward)."""
    normals: Optional[np.ndarray] = None
    """float32[V,H,W,3] world-space unit normals, 0 on background (None if unavailable)."""
    depth: Optional[np.ndarray] = None
    """float32[V,H,W] z-depth along the camera axis, 0 on background (None if unavailable)."""
    surface_points: Optional[np.ndarray] = None
    """float32[N,3] points on the surface."""
    surface_normals: Optional[np.ndarray] = None
    """float32[N,3] unit normals at surface_points."""
    surface_colors: Optional[np.ndarray] = None
    """float32[N,3] sRGB base colours at surface_points (procedural only)."""
    sdf_points: Optional[np.ndarray] = None
    """float32[M,3] query points for sdf/occupancy."""
    sdf: Optional[np.ndarray] = None
    """float32[M] signed distance, negative inside (procedural only)."""
    occupancy: Optional[np.ndarray] = None
    """bool[M] inside/outside at sdf_points."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Source-specific metadata (parameters, view angles, lights, ...)."""

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])
