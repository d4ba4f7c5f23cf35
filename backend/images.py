"""Decoding untrusted image bytes into RGBA arrays, with limits checked before pixels are decoded.

Pillow's own safety nets are process-wide switches (``Image.MAX_IMAGE_PIXELS``,
``ImageFile.LOAD_TRUNCATED_IMAGES``) that any library in the process may change, and flipping them
around one call races with other threads. So nothing here relies on them: the container is checked
first (PNG chunk CRCs, JPEG end marker, WebP RIFF size), the file is opened through its format's
class, which skips Pillow's fixed pixel cap (ours is the configured one), and a decoder that runs
out of data is an error whatever the switches say.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from addon.core.images import format_hint, sniff_format
from backend.errors import InputError
from backend.protocol import ErrorCode

if TYPE_CHECKING:
    from PIL import Image, ImageFile

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
"""Markers without a length field."""
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7})
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
_STRIP_PIXELS = 1 << 18
"""Pixels converted at a time: converting a whole image at once holds several full-size copies.
Strips also stay far below Pillow's MAX_IMAGE_PIXELS, which ``Image.crop`` checks."""


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
    segmentation: Any = field(default=None, repr=False, compare=False)
    """The object found in it (`backend.segmentation.Segmentation`), once looked for: ``auto``
    reconstruction may build two solids from one photo and should segment it once."""

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgba.shape[1]), int(self.rgba.shape[0])


def decode_image(data: bytes, *, max_pixels: int, min_side: int = 16, name: str = "") -> InputImage:
    """Bytes of a PNG/JPEG/WebP file → ``InputImage``.

    Raises ``InputError`` with INVALID_IMAGE (empty, not an image, corrupt/truncated, too small) or
    IMAGE_TOO_LARGE (more than ``max_pixels``, read from the header before any pixel is decoded).
    A JPEG over ``max_pixels`` is decoded at 1/2, 1/4 or 1/8 of its size when that fits
    (`JPEG_SCALES`): a 48 or 50 MP phone photo is no reason to refuse a job.
    16-bit, palette, greyscale and CMYK inputs are converted to 8-bit RGBA; of an animation only
    the first frame is decoded. The pixels are turned as the file's EXIF orientation says, so the
    image is upright as photo viewers show it (`upright_by_exif`).
    """
    label = f"image {name!r}" if name else "image"
    if not data:
        raise _invalid(f"{label} is empty (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise _invalid(f"{label} is not a PNG, JPEG or WebP file{format_hint(data)}")
    _CONTAINER_CHECKS[fmt](data, label)
    image = _open(data, fmt, label)
    try:
        notes = _frame_notes(image)
        _fit_size(image, fmt, max_pixels, min_side, label, notes)
        _load(image, label)
        rgba = upright_by_exif(_to_rgba8(image, notes), _exif_orientation(image, notes), notes)
        mode = image.mode
    finally:
        # Pillow's file objects sit in reference cycles: without this their decoded pixels (as
        # large as the result) stay alive until the cycle collector happens to run.
        image.close()
    has_alpha = bool(rgba[..., 3].min() < 255)
    return InputImage(rgba, has_alpha, fmt, mode, name, notes)


def _invalid(message: str) -> InputError:
    return InputError(ErrorCode.INVALID_IMAGE, message)


# ------------------------------------------------------------------------------------ containers
def _check_png(data: bytes, label: str) -> None:
    """Every chunk complete and matching its CRC-32, up to IEND. Pillow does not check IDAT CRCs,
    so without this a flipped bit in the pixel data decodes silently into a wrong image."""
    view, pos = memoryview(data), len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(view[pos:pos + 4], "big")
        kind = bytes(view[pos + 4:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            break
        if zlib.crc32(view[pos + 4:end - 4]) != int.from_bytes(view[end - 4:end], "big"):
            raise _invalid(f"{label} is a corrupt PNG: chunk {kind.decode('latin-1')!r} at byte {pos} "
                           "fails its CRC check")
        if kind == b"IEND":
            return  # bytes after IEND are outside the image, as for every PNG reader
        pos = end
    raise _invalid(f"{label} is a truncated or corrupt PNG: its chunks end at byte {pos} without IEND")


def _check_jpeg(data: bytes, label: str) -> None:
    """An end-of-image marker after the first scan, and enough scan data for the frame's size.
    JPEG has no checksum; a cut file lacks its end marker, and one with an end marker pasted on
    after the cut is caught when it is too short to hold the image at all."""
    frame_marker, frame, scan_start = _jpeg_header(data, label)
    scan_end = data.find(b"\xff\xd9", scan_start)
    if scan_end < 0:
        raise _invalid(f"{label} is a truncated JPEG: it has no end-of-image marker")
    if frame_marker in _JPEG_HUFFMAN_FRAMES and scan_end - scan_start < _jpeg_min_scan_bytes(frame):
        raise _invalid(f"{label} is a truncated JPEG: {scan_end - scan_start} bytes of scan data are too "
                       f"few for its {_u16(frame, 3)}×{_u16(frame, 1)} pixels")


def _jpeg_header(data: bytes, label: str) -> tuple[int, bytes, int]:
    """(frame marker, frame segment, offset where the first scan's data starts)."""
    frame_marker, frame, pos = 0, b"", 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF or data[pos + 1] == 0xFF:
            pos += 1  # junk or fill bytes between segments, which decoders skip as well
            continue
        marker = data[pos + 1]
        if marker in _JPEG_STANDALONE_MARKERS:
            pos += 2
            continue
        end = pos + 2 + _u16(data, pos + 2)
        if marker in _JPEG_FRAME_MARKERS:
            frame_marker, frame = marker, data[pos + 4:end]
        if marker == 0xDA and end <= len(data):
            return frame_marker, frame, end
        pos = end
    raise _invalid(f"{label} is a truncated JPEG: it ends before its image data")


def _jpeg_min_scan_bytes(frame: bytes) -> int:
    """Fewest bytes a complete Huffman-coded image of this frame takes: every 8×8 block of every
    component starts with a code of at least one bit. (Arithmetic coding has no such floor.)"""
    height, width, count = _u16(frame, 1), _u16(frame, 3), frame[5] if len(frame) > 5 else 0
    factors = [(b >> 4, b & 15) for b in frame[7:6 + 3 * count:3]]
    h_max, v_max = max((h for h, _ in factors), default=0), max((v for _, v in factors), default=0)
    if h_max == 0 or v_max == 0:
        return 0  # a malformed frame: Pillow refuses it with its own message
    blocks = sum(_ceil_div(_ceil_div(width * h, h_max), 8) * _ceil_div(_ceil_div(height * v, v_max), 8)
                 for h, v in factors)
    return blocks // 8


def _check_webp(data: bytes, label: str) -> None:
    declared = _u32le(data, 4) + 8
    if declared != len(data):
        problem = "truncated" if declared > len(data) else "followed by trailing data"
        raise _invalid(f"{label} is a corrupt WebP: its RIFF header says {declared} bytes, the file has "
                       f"{len(data)} ({problem})")


_CONTAINER_CHECKS: dict[str, Callable[[bytes, str], None]] = {
    "PNG": _check_png, "JPEG": _check_jpeg, "WEBP": _check_webp}


def _u16(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos:pos + 2], "big")


def _u32le(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos:pos + 4], "little")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ------------------------------------------------------------------------------------ decoding
def _open(data: bytes, fmt: str, label: str) -> ImageFile.ImageFile:
    """The format's own class reads the header only and, unlike ``Image.open``, applies no pixel
    cap of its own, so the configured limit is the one that speaks."""
    from PIL import JpegImagePlugin, PngImagePlugin, WebPImagePlugin

    opener = {"PNG": PngImagePlugin.PngImageFile, "JPEG": JpegImagePlugin.JpegImageFile,
              "WEBP": WebPImagePlugin.WebPImageFile}[fmt]
    try:
        return opener(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds on garbage headers
        raise _invalid(f"{label} could not be read ({exc})") from None


JPEG_SCALES = (2, 4, 8)
"""Reductions a JPEG decoder makes while decoding (scaled inverse DCT): the reduced image is
never held at full size, so a photo over the pixel limit costs no more memory than one under it."""


def _fit_size(image: ImageFile.ImageFile, fmt: str, max_pixels: int, min_side: int, label: str,
              notes: list[str]) -> None:
    """Refuse an image over ``max_pixels`` or under ``min_side``, from its header; a JPEG over the
    limit is set to decode at the least reduction of `JPEG_SCALES` that brings it under."""
    width, height = image.size
    if width * height > max_pixels:
        fitting = [s for s in JPEG_SCALES if _ceil_div(width, s) * _ceil_div(height, s) <= max_pixels]
        scale = fitting[0] if fmt == "JPEG" and fitting else None
        if scale is not None:
            image.draft(image.mode, (_ceil_div(width, scale), _ceil_div(height, scale)))
        if image.size[0] * image.size[1] > max_pixels:
            beyond = ", even decoded at 1/8 of its size" if fmt == "JPEG" else ""
            raise InputError(
                ErrorCode.IMAGE_TOO_LARGE,
                f"{label} is {width}×{height} = {width * height} pixels; the limit is {max_pixels}{beyond}",
            )
        notes.append(f"decoded at {image.size[0]}×{image.size[1]}, 1/{scale} of its {width}×{height} pixels (the "
                     f"limit is {max_pixels})")
        width, height = image.size
    if width < min_side or height < min_side:
        raise _invalid(f"{label} is {width}×{height}; at least {min_side}×{min_side} pixels are needed")


def _frame_notes(image: ImageFile.ImageFile) -> list[str]:
    frames = getattr(image, "n_frames", 1)
    return [f"animated {image.format} with {frames} frames: only the first is used"] if frames > 1 else []


def _load(image: ImageFile.ImageFile, label: str) -> None:
    """Decode the pixels (the first frame only), refusing data that ends early."""
    pillow_read = getattr(type(image), "load_read", None)

    def read(size: int) -> bytes:
        chunk = pillow_read(image, size) if pillow_read else image.fp.read(size)
        if not chunk:
            raise _invalid(f"{label} is truncated: its pixel data ends early")
        return chunk

    # Pillow treats a starved decoder as an error only while LOAD_TRUNCATED_IMAGES is off; reading
    # through this hook makes it one regardless.
    image.load_read = read  # type: ignore[attr-defined]
    try:
        image.load()
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt data surfaces here in many kinds
        raise _invalid(f"{label} is corrupt or truncated ({exc})") from None


_EXIF_ORIENTATION_TAG = 0x0112
_ORIENTATIONS: dict[int, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    2: ("mirrored left to right", lambda a: a[:, ::-1]),
    3: ("turned 180°", lambda a: a[::-1, ::-1]),
    4: ("mirrored top to bottom", lambda a: a[::-1]),
    5: ("mirrored across its diagonal", lambda a: a.transpose(1, 0, 2)),
    6: ("turned 90° clockwise", lambda a: np.rot90(a, -1)),
    7: ("mirrored across its other diagonal", lambda a: a[::-1, ::-1].transpose(1, 0, 2)),
    8: ("turned 90° counter-clockwise", lambda a: np.rot90(a, 1)),
}
"""EXIF orientation -> (what was done, how the stored pixels [H,W,C] become the upright image)."""


def _exif_orientation(image: Image.Image, notes: list[str]) -> int:
    """The EXIF orientation tag (1-8) of a JPEG, PNG or WebP file; 1 when there is none. A phone
    held upright stores its photo on its side with orientation 6 or 8."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - malformed EXIF blocks raise many kinds; the pixels are fine
        notes.append("its EXIF metadata could not be read; the image is used as stored")
        return 1
    return value if value in _ORIENTATIONS else 1


def upright_by_exif(rgba: np.ndarray, orientation: int, notes: list[str]) -> np.ndarray:
    """``rgba`` [H,W,C] as stored -> the image upright, as EXIF ``orientation`` (1-8) says it is
    shown. Without this a portrait photo from a phone would be reconstructed lying on its side."""
    if orientation not in _ORIENTATIONS:
        return rgba
    what, turn = _ORIENTATIONS[orientation]
    notes.append(f"{what} to stand upright, as its EXIF orientation ({orientation}) says")
    return np.ascontiguousarray(turn(rgba))


def _to_rgba8(image: Image.Image, notes: list[str]) -> np.ndarray:
    """Converted strip by strip into the result, so the decoded image and the result are the only
    full-size buffers held at once."""
    convert = _strip_converter(image, notes)
    width, height = image.size
    rgba = np.empty((height, width, 4), np.uint8)
    rows = max(1, _STRIP_PIXELS // width)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        rgba[top:bottom] = convert(image.crop((0, top, width, bottom)))
    return rgba


def _strip_converter(image: Image.Image, notes: list[str]) -> Callable[[Image.Image], np.ndarray]:
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow keeps 16-bit greyscale in an integer image; scale to 8 bits explicitly
        # (convert("L") would clip everything above 255 to white).
        top = 65535.0 if image.getextrema()[1] > 255 else 255.0
        notes.append(f"converted {image.mode} (16-bit) to 8-bit")
        return lambda strip: _grey_to_rgba8(np.asarray(strip), top)
    if image.mode == "CMYK":
        notes.append("converted CMYK to RGB")
    # convert("RGBA") turns a tRNS colour key of L/RGB/P images into alpha as well
    return lambda strip: np.asarray(strip.convert("RGBA"))


def _grey_to_rgba8(values: np.ndarray, top: float) -> np.ndarray:
    grey = np.clip(np.round(values.astype(np.float64) / top * 255.0), 0, 255).astype(np.uint8)
    return np.dstack([grey, grey, grey, np.full_like(grey, 255)])


def encode_png(rgba_or_rgb: np.ndarray) -> bytes:
    """uint8 [H,W,3|4] → PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba_or_rgb)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
