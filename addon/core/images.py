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


_HEIF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"hevx": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
                b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}
_OTHER_SIGNATURES = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"8BPS", "Photoshop"))


def format_hint(data: bytes) -> str:
    """For bytes that are no PNG, JPEG or WebP: what they are and how to get a file that works,
    as the end of a sentence (empty when unrecognised)."""
    kind = _HEIF_BRANDS.get(data[8:12]) if data[4:8] == b"ftyp" else None
    kind = kind or next((name for signature, name in _OTHER_SIGNATURES if data.startswith(signature)), None)
    if kind in ("HEIC", "HEIF"):
        return f": it is a {kind} photo {_IPHONE_WAY_OUT.format(it='it')}"
    article = "an" if kind == "AVIF" else "a"
    return f": it is {article} {kind} file; save it as PNG or JPEG" if kind else ""


HEIF_SUFFIXES = (".heic", ".heif")
_IPHONE_WAY_OUT = ("(an iPhone's default format): export {it} as JPEG, or set the iPhone to Settings > Camera > "
                   "Formats > Most Compatible")


def folder_hint(files: list[Path]) -> str:
    """For a folder with no usable photo among ``files``: the iPhone photos it holds instead, and
    what to do with them, as the end of a sentence (empty when there are none)."""
    heif = [p for p in files if p.suffix.lower() in HEIF_SUFFIXES]
    if not heif:
        return ""
    return f"; it holds {len(heif)} HEIC/HEIF photo(s) {_IPHONE_WAY_OUT.format(it='them')}"


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
        raise ImageSourceError(f"image {name!r} is not a PNG, JPEG or WebP file{format_hint(data)}")
    return data
