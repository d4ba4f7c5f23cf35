"""The reconstruction's inputs: the object found in each image and cropped the way the encoder
was trained.

`object_crop` is the encoder's input rule, shared with training (`backend.train.data`,
`backend.train.evaluate` import it from here): the object composited over white, centred in a
square crop around its mask with a fixed margin. Training crops the dataset renders with it and
the pipeline crops the user's image with it, so the encoder never meets a framing it was not
trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.pipelines.base import JobContext

CROP_MARGIN = 0.1
"""Margin around the mask's bounding box, as a share of its longer side (each side)."""

CARVE_MASK_SIZE = 128
"""Side of the silhouette crop that carving uses: finer than the refinement targets (48-96 px),
so the cut follows the outline more closely than the renders could be compared with."""


def object_crop(rgba: np.ndarray, mask: np.ndarray, size: int, margin: float = CROP_MARGIN
                ) -> tuple[np.ndarray, np.ndarray]:
    """Square crop of the object over white.

    Args:
        rgba: [H, W, 3 or 4] uint8 image (straight alpha is ignored here; ``mask`` decides).
        mask: [H, W] bool, True on the object.
        size: output side in pixels.
        margin: see `CROP_MARGIN`.

    Returns:
        ``(rgb [size, size, 3] float32 in [0, 1] over white, mask [size, size] float32)``.
    """
    from backend.segmentation import crop_to_object

    if mask.dtype != bool or mask.shape != rgba.shape[:2]:
        raise ValueError(f"mask must be a bool [H, W] array matching the image, got {mask.dtype} {mask.shape}")
    if not mask.any():
        raise ValueError("the mask is empty: no object to crop")
    rgb, soft = crop_to_object(rgba, mask, size, margin)
    rgb = rgb * soft[..., None] + (1.0 - soft[..., None])
    return rgb.astype(np.float32), soft.astype(np.float32)


def find_object(image, ctx: JobContext):
    """`backend.segmentation.segment` of a decoded image (once per image), with a warning each
    time it is asked for when it is unsure."""
    from backend.segmentation import LOW_CONFIDENCE, segment

    if image.segmentation is None:
        image.segmentation = segment(image.rgba, image.has_alpha)
    seg = image.segmentation
    if seg.confidence < LOW_CONFIDENCE:
        ctx.warn(f"low confidence ({seg.confidence:.2f}) in separating the object from the background"
                 + (f": {'; '.join(seg.notes)}" if seg.notes else "")
                 + ". An image with a transparent background gives the best result.")
    return seg


@dataclass
class PreparedView:
    """One input image as the refinement sees it."""

    encoder_image: np.ndarray
    """[3, S, S] float32 encoder input."""
    rgb: np.ndarray
    """[T, T, 3] float32 target colours over white (T = preset.target_size)."""
    mask: np.ndarray
    """[T, T] float32 target coverage."""
    carve_mask: np.ndarray
    """[C, C] float32 coverage of the same crop at ``CARVE_MASK_SIZE``."""
    confidence: float
    method: str
    notes: list[str]


def prepare_view(image, encoder_size: int, target_size: int, ctx: JobContext) -> PreparedView:
    """Find the object in a decoded image and crop it for the encoder, the refinement targets
    and carving."""
    seg = find_object(image, ctx)
    encoder_rgb, _ = object_crop(image.rgba, seg.mask, encoder_size)
    rgb, mask = object_crop(image.rgba, seg.mask, target_size)
    _, carve_mask = object_crop(image.rgba, seg.mask, CARVE_MASK_SIZE)
    ctx.check()
    return PreparedView(encoder_rgb.transpose(2, 0, 1).copy(), rgb, mask, carve_mask, seg.confidence, seg.method,
                        seg.notes)
