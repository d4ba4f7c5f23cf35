"""Where a result goes and how big it is: pure math, Z-up, metres, front facing −Y.

Results are normalised by transforming their vertices (the object keeps scale 1), so the object
origin sits at the bottom centre of the shape — a result "stands" where it is put.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Vec3 = tuple[float, float, float]
MIN_EXTENT = 1e-9
"""Sides shorter than a nanometre count as flat: scaling them up would only amplify float noise."""


class PlacementError(ValueError):
    """Placement asked for something impossible (non-positive size, empty shape, ...)."""


@dataclass(frozen=True)
class Bounds:
    """An axis-aligned box."""

    lo: Vec3
    hi: Vec3

    @staticmethod
    def of_points(points: np.ndarray) -> "Bounds":
        """Bounds of [N,3] points; N must be at least 1."""
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
            raise PlacementError("bounds need at least one 3D point")
        lo, hi = points.min(axis=0), points.max(axis=0)
        return Bounds(tuple(float(x) for x in lo), tuple(float(x) for x in hi))

    @property
    def size(self) -> Vec3:
        return (self.hi[0] - self.lo[0], self.hi[1] - self.lo[1], self.hi[2] - self.lo[2])

    @property
    def longest_side(self) -> float:
        return max(self.size)

    @property
    def bottom_center(self) -> Vec3:
        return ((self.lo[0] + self.hi[0]) / 2, (self.lo[1] + self.hi[1]) / 2, self.lo[2])

    def scaled(self, factors: Vec3) -> "Bounds":
        """This box with each axis multiplied by a positive factor."""
        return Bounds(tuple(self.lo[i] * factors[i] for i in range(3)), tuple(self.hi[i] * factors[i] for i in range(3)))


def split_scale(scale: Vec3) -> tuple[float, Vec3]:
    """A placeholder's scale as (the uniform part the result object takes, the per-axis rest that
    goes into the box the result is fitted in). The object's own non-uniform scale would stretch
    the result; in the box it only limits the size."""
    magnitudes = tuple(abs(float(s)) for s in scale)
    uniform = max(magnitudes)
    if uniform <= MIN_EXTENT:
        raise PlacementError("the placeholder is scaled to nothing")
    return uniform, tuple(m / uniform for m in magnitudes)


@dataclass(frozen=True)
class VertexTransform:
    """v' = v · scale + offset (uniform scale, so shapes are never distorted)."""

    scale: float = 1.0
    offset: Vec3 = (0.0, 0.0, 0.0)

    def apply(self, vertices: np.ndarray) -> np.ndarray:
        """[N,3] float32 → [N,3] float32, computed in float64: scaling a tiny mesh far from the
        origin up to size, float32 rounding of the large intermediate values moved it off its
        place (by 0.25 for a 1e-7 mesh at z = 27 sized to 0.01)."""
        out = np.asarray(vertices, dtype=np.float64) * self.scale
        out += np.asarray(self.offset, dtype=np.float64)
        return out.astype(np.float32)

    def apply_bounds(self, bounds: Bounds) -> Bounds:
        lo = tuple(bounds.lo[i] * self.scale + self.offset[i] for i in range(3))
        hi = tuple(bounds.hi[i] * self.scale + self.offset[i] for i in range(3))
        return Bounds(lo, hi)


def normalize_to_size(bounds: Bounds, target_size: float) -> VertexTransform:
    """Scale so the longest side is ``target_size`` and put the bottom centre at the origin."""
    if not target_size > 0:
        raise PlacementError(f"target size must be positive, got {target_size}")
    longest = bounds.longest_side
    scale = target_size / longest if longest > MIN_EXTENT else 1.0
    cx, cy, bz = bounds.bottom_center
    return VertexTransform(scale, (-cx * scale, -cy * scale, -bz * scale))


def fit_into_box(bounds: Bounds, box: Bounds) -> VertexTransform:
    """Uniformly scale into ``box`` (the placeholder's local bounds), centred in X/Y, on its floor."""
    sizes = bounds.size
    ratios = [box.size[i] / sizes[i] for i in range(3) if sizes[i] > MIN_EXTENT and box.size[i] > 0]
    if not ratios:
        raise PlacementError("the placeholder's bounding box is empty")
    scale = min(ratios)
    cx, cy, bz = bounds.bottom_center
    tx, ty, tz = box.bottom_center
    return VertexTransform(scale, (tx - cx * scale, ty - cy * scale, tz - bz * scale))


def empty_bounds(display_size: float) -> Bounds:
    """Local bounds of an empty used as placeholder: the cube its display size spans (±size)."""
    s = abs(display_size) or 1.0
    return Bounds((-s, -s, -s), (s, s, s))


def grid_positions(count: int, spacing: float, origin: Vec3 = (0.0, 0.0, 0.0),
                   columns: int | None = None) -> list[Vec3]:
    """``count`` spots on a grid in the XY plane centred on ``origin``; rows run away from the
    viewer (+Y), items within a row left to right (+X), so reading order matches the list."""
    if count < 0:
        raise PlacementError("count must not be negative")
    if not spacing > 0:
        raise PlacementError(f"grid spacing must be positive, got {spacing}")
    if count == 0:
        return []
    cols = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    x0 = origin[0] - (cols - 1) * spacing / 2
    y0 = origin[1] - (rows - 1) * spacing / 2
    return [(x0 + (i % cols) * spacing, y0 + (i // cols) * spacing, origin[2]) for i in range(count)]


def grid_spacing(target_size: float, gap: float = 0.5) -> float:
    """Distance between grid spots: one object plus ``gap`` of its size."""
    return target_size * (1.0 + gap)
