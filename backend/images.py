"""Decoding untrusted image bytes into RGBA arrays, with limits checked before pixels are decoded."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np

from backend.errors import InputError
from backend.protocol import ErrorCode

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")


@dataclass
class InputImage:
    """A decoded input image."""

    rgba: np.ndarray
    """[H,W,4] uint8, straight (not premultiplied) alpha, sRGB."""
    has_alpha: bool
    """True when the file carried a real alpha channel (not all 255)."""
    source_format: str
    source_mode: str
    name: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgba.shape[1]), int(self.rgba.shape[0])


def decode_image(data: bytes, *, max_pixels: int, min_side: int = 16, name: str = "") -> InputImage:
    """Bytes of a PNG/JPEG/WebP file → ``InputImage``.

    Raises ``InputError`` with INVALID_IMAGE (empty, not an image, corrupt/truncated, too small) or
    IMAGE_TOO_LARGE (more than ``max_pixels``, read from the header before any pixel is decoded).
    16-bit, palette, greyscale and CMYK inputs are converted to 8-bit RGBA.
    """
    from PIL import Image, UnidentifiedImageError

    label = f"image {name!r}" if name else "image"
    if not data:
        raise InputError(ErrorCode.INVALID_IMAGE, f"{label} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns/raises at its fixed threshold; ours is the configured limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except UnidentifiedImageError:
        raise InputError(
            ErrorCode.INVALID_IMAGE, f"{label} is not a PNG, JPEG or WebP file"
        ) from None
    except Image.DecompressionBombError as exc:
        raise InputError(ErrorCode.IMAGE_TOO_LARGE, f"{label}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds on garbage headers
        raise InputError(ErrorCode.INVALID_IMAGE, f"{label} could not be read ({exc})") from None

    width, height = image.size
    if width * height > max_pixels:
        raise InputError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"{label} is {width}×{height} = {width * height} pixels; the limit is {max_pixels}",
        )
    if width < min_side or height < min_side:
        raise InputError(
            ErrorCode.INVALID_IMAGE, f"{label} is {width}×{height}; at least {min_side}×{min_side} pixels are needed"
        )
    mode, fmt = image.mode, image.format or "?"
    try:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # our limit was applied above
        try:
            image.load()
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt data surfaces here
        raise InputError(ErrorCode.INVALID_IMAGE, f"{label} is corrupt or truncated ({exc})") from None

    notes: list[str] = []
    rgba = _to_rgba8(image, notes)
    has_alpha = bool((rgba[..., 3] < 255).any())
    return InputImage(rgba, has_alpha, fmt, mode, name, notes)


def _to_rgba8(image, notes: list[str]) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: Pillow keeps it in a 32-bit integer image; scale to 8 bits explicitly
        # (convert("L") would clip everything above 255 to white).
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        grey = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
        notes.append(f"converted {mode} (16-bit) to 8-bit")
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    if mode == "CMYK":
        notes.append("converted CMYK to RGB")
        image = image.convert("RGB")
    elif mode == "P" or mode == "PA":
        image = image.convert("RGBA")
    elif mode not in ("RGBA", "RGB"):
        image = image.convert("RGBA" if "A" in mode or "transparency" in image.info else "RGB")
    array = np.asarray(image.convert("RGBA"), dtype=np.uint8)
    return np.ascontiguousarray(array)


def encode_png(rgba_or_rgb: np.ndarray) -> bytes:
    """uint8 [H,W,3|4] → PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba_or_rgb)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
