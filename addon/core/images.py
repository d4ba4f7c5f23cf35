"""Reading reference images from disk for a reconstruct job, with readable failures.

The backend decodes and checks the pixels; here only what can go wrong before sending: a missing
or unreadable file, an empty one, or a format the backend does not take (PNG, JPEG, WebP).
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class ImageSourceError(ValueError):
    """A reference image that cannot be sent (missing, unreadable, empty, unsupported format)."""


def sniff_format(data: bytes) -> str | None:
    """``PNG``, ``JPEG`` or ``WEBP`` from the file signature; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def read_image_file(path: str | Path) -> bytes:
    """The bytes of a PNG/JPEG/WebP file, or ``ImageSourceError`` saying what is wrong with it."""
    if not str(path).strip():
        raise ImageSourceError("no image file was given")
    path = Path(path)
    if path.is_dir():
        raise ImageSourceError(f"{str(path)!r} is a folder, not an image file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageSourceError(f"image file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ImageSourceError(f"image file {str(path)!r} could not be read ({exc.strerror})") from None
    return check_image_bytes(data, path.name)


def check_image_bytes(data: bytes, name: str) -> bytes:
    if not data:
        raise ImageSourceError(f"image {name!r} is empty (0 bytes)")
    if sniff_format(data) is None:
        raise ImageSourceError(f"image {name!r} is not a PNG, JPEG or WebP file")
    return data
