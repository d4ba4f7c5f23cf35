"""A minimal PNG encoder (Blender ships no imaging library) for images that exist only in memory."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def encode_png(rgba: np.ndarray, compression: int = 6) -> bytes:
    """[H,W,4] uint8 RGBA, first row at the top → PNG file bytes (8-bit RGBA, no interlace)."""
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4 or 0 in rgba.shape[:2]:
        raise ValueError(f"encode_png needs a non-empty [H,W,4] uint8 array, got {rgba.dtype} {list(rgba.shape)}")
    height, width = rgba.shape[:2]
    rows = np.empty((height, width * 4 + 1), dtype=np.uint8)
    rows[:, 0] = 0  # filter type "none" on every row
    rows[:, 1:] = rgba.reshape(height, width * 4)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), compression)) + chunk(b"IEND", b""))
