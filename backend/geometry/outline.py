"""Surfaces of revolution from one photo's outline.

Vessels, bottles, cans, lamps and many turned or moulded objects are solids of revolution about
a vertical axis. Seen from the side their outline is mirror-symmetric and every row of it is one
span, and then the outline alone determines the whole solid (Colombo et al., PAMI 2005, do this
with the exact contour geometry; this is the near-orthographic version): the radius at each
height is half the outline's width there. Parts outside the symmetric body, such as a mug's
handle or a jug's spout, are returned apart so they can be inflated on their own.

Masks are square crops [S,S], rows running down the image; fields are inside-positive over
[-0.5,0.5]^3 with axes (x = image right, y = depth away from the camera, z = image up), the
frame of `backend.pipelines.reconstruct.silhouette`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RevolutionFit:
    axis: float
    """Column of the vertical symmetry axis, in pixels (pixel centres at 0, 1, ...)."""
    radius: np.ndarray
    """[S] radius of the body per image row, in pixels (0 where the row has no body)."""
    attached: np.ndarray
    """bool [S,S]: the outline's parts outside the symmetric body (handles, spouts)."""
    symmetry_iou: float
    """IoU of the outline with its mirror image about the axis."""


def mirror_axis(mask: np.ndarray) -> tuple[float, float]:
    """The vertical axis about which the binary ``mask`` is most nearly mirror-symmetric
    -> (axis column, IoU of the mask with its mirror image)."""
    columns = np.nonzero(mask.any(0))[0]
    if len(columns) == 0:
        return 0.0, 0.0
    width = mask.shape[1]
    area = int(mask.sum())
    best_iou, best_axis = 0.0, 0.0
    # the axis lies between the outline's extreme columns; half-pixel steps
    for twice in range(2 * columns.min(), 2 * columns.max() + 1):
        source = twice - np.arange(width)
        valid = (source >= 0) & (source < width)
        mirrored = np.zeros_like(mask)
        mirrored[:, valid] = mask[:, source[valid]]
        overlap = np.logical_and(mirrored, mask).sum()
        iou = overlap / (area + int(mirrored.sum()) - overlap)
        if iou > best_iou:
            best_iou, best_axis = float(iou), twice / 2.0
    return best_axis, best_iou


def fit_revolution(mask: np.ndarray, min_iou: float = 0.75, min_single_rows: float = 0.97,
                   min_body: float = 0.8, smoothing: float = 4.0) -> RevolutionFit | None:
    """The outline as a surface of revolution, or None when it is not one.

    ``mask`` is the soft object mask [S,S] (0..1). It is one when the binary outline's mirror
    image about its best vertical axis overlaps it by ``min_iou``, the symmetric body (outline
    AND mirror) covers ``min_body`` of it, and at least ``min_single_rows`` of the body's rows are
    one span (a chair's legs or a figure's arms make two). The radius per row is the smaller of the
    two half-widths about the axis, measured on the soft mask (sub-pixel: no terraces), so an
    attached part on one side does not widen the body; it is smoothed along the rows
    (``smoothing`` pixels) inside the body only, so the rims stay crisp.
    """
    from scipy import ndimage

    binary = mask >= 0.5
    axis, iou = mirror_axis(binary)
    if iou < min_iou:
        return None
    width = binary.shape[1]
    source = np.round(2 * axis - np.arange(width)).astype(int)
    valid = (source >= 0) & (source < width)
    mirrored = np.zeros_like(binary)
    mirrored[:, valid] = binary[:, source[valid]]
    body = binary & mirrored
    if body.sum() < min_body * binary.sum():
        return None
    rows = np.nonzero(body.any(1))[0]
    spans = np.array([np.count_nonzero(np.diff(np.r_[0, body[r].astype(np.int8), 0]) == 1) for r in rows])
    if len(rows) == 0 or (spans == 1).mean() < min_single_rows:
        return None

    columns = np.arange(width)[None, :]
    first = np.argmax(body, axis=1)[:, None]
    last = (width - 1 - np.argmax(body[:, ::-1], axis=1))[:, None]
    # the soft edge reaches a pixel or two past the binary body
    left = np.where((columns >= first - 2) & (columns <= axis), mask, 0.0).sum(1)
    right = np.where((columns > axis) & (columns <= last + 2), mask, 0.0).sum(1)
    radius = np.minimum(left, right)
    top, bottom = rows.min(), rows.max() + 1
    radius[top:bottom] = ndimage.gaussian_filter1d(radius[top:bottom], smoothing, mode="nearest")
    radius[:top] = radius[bottom:] = 0.0
    attached = binary & ~ndimage.binary_dilation(body, iterations=2)
    return RevolutionFit(axis=axis, radius=radius, attached=attached, symmetry_iou=iou)


def revolution_field(fit: RevolutionFit, size: int, grid: int) -> np.ndarray:
    """Inside-positive field [G,G,G] of the body: radius at the height minus the distance to the
    axis (object units: the crop's side is 1)."""
    g = np.linspace(-0.5, 0.5, grid)
    rows = np.clip((0.5 - g) * size - 0.5, 0, size - 1)  # z -> image row
    radius = np.interp(rows, np.arange(size), fit.radius) / size  # [G] along z
    axis_x = (fit.axis + 0.5) / size - 0.5
    x, y = np.meshgrid(g, g, indexing="ij")
    distance = np.sqrt((x - axis_x) ** 2 + y ** 2)
    field = radius[None, None, :] - distance[:, :, None]
    # rows without body are outside everywhere (a zero radius would leave a seam on the axis)
    return np.where(radius[None, None, :] > 0, field, -1.0)
