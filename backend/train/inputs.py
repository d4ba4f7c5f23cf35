"""The encoder's input crop, shared by training and the reconstruction pipeline.

Both sides must see the same kind of picture: the object composited over white, centred in a
square crop around its mask with a fixed margin, at the encoder's resolution. Training crops the
dataset renders with this function and the pipeline crops the user's image with it, so the
encoder never meets a framing it was not trained on.
"""

from __future__ import annotations

import numpy as np

CROP_MARGIN = 0.1
"""Margin around the mask's bounding box, as a share of its longer side (each side)."""


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
