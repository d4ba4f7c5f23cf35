"""Minimal OpenEXR reader for the files our Blender renderer writes (no extra dependency).

Supports single-part scanline images with NONE, ZIPS or ZIP compression and HALF/FLOAT/UINT
channels: exactly what Blender writes for a multilayer EXR with ``exr_codec`` NONE or ZIP.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

_MAGIC = 20000630
_TYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}
_LINES_PER_BLOCK = {0: 1, 2: 1, 3: 16}  # NONE, ZIPS, ZIP


class ExrError(ValueError):
    """The file is not an EXR this reader understands."""


def _cstr(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode("latin-1"), end + 1


def _unzip(data: bytes, expected: int) -> bytes:
    raw = np.frombuffer(zlib.decompress(data), dtype=np.uint8)
    if raw.size != expected:
        raise ExrError(f"ZIP block decoded to {raw.size} bytes, expected {expected}")
    # undo the byte predictor, then re-interleave the two halves
    t = (np.concatenate([[raw[0]], raw[0] + np.cumsum(raw[1:].astype(np.int64) - 128)]) & 0xFF).astype(np.uint8)
    half = (t.size + 1) // 2
    out = np.empty_like(t)
    out[0::2] = t[:half]
    out[1::2] = t[half:]
    return out.tobytes()


def _read_header(buf: bytes, pos: int) -> tuple[dict[str, bytes], int]:
    header: dict[str, bytes] = {}
    while buf[pos] != 0:
        name, pos = _cstr(buf, pos)
        _typ, pos = _cstr(buf, pos)
        size = struct.unpack_from("<i", buf, pos)[0]
        pos += 4
        header[name] = buf[pos : pos + size]
        pos += size
    return header, pos + 1


def _channels(raw: bytes) -> list[tuple[str, np.dtype]]:
    chans, p = [], 0
    while raw[p] != 0:
        cname, p = _cstr(raw, p)
        chans.append((cname, _TYPES[struct.unpack_from("<i", raw, p)[0]]))
        p += 16  # pixel type, pLinear + reserved, x/y sampling
    return chans


def read_exr(path: str | Path) -> dict[str, np.ndarray]:
    """Read every channel of an EXR file: {channel name: float32[H, W]} (row 0 = top).

    Single-part and multi-part scanline files (Blender writes multilayer renders as one part
    per pass); channel names are the part's channel names, e.g. ``ViewLayer.Depth.Z``.
    """
    buf = Path(path).read_bytes()
    if len(buf) < 8 or struct.unpack_from("<i", buf, 0)[0] != _MAGIC:
        raise ExrError(f"{path}: not an OpenEXR file")
    version = struct.unpack_from("<i", buf, 4)[0]
    multipart = bool(version & 0x1000)
    if version & 0x200 or version & 0x800:
        raise ExrError(f"{path}: tiled or deep EXR files are not supported")
    pos = 8
    headers = []
    while True:
        header, pos = _read_header(buf, pos)
        headers.append(header)
        if not multipart or buf[pos] == 0:
            break
    if multipart:
        pos += 1
    parts = []
    for hd in headers:
        comp = hd["compression"][0]
        if comp not in _LINES_PER_BLOCK:
            raise ExrError(f"{path}: EXR compression {comp} is not supported (use NONE, ZIPS or ZIP)")
        if b"tiledimage" in hd.get("type", b"scanlineimage"):
            raise ExrError(f"{path}: tiled EXR parts are not supported")
        xmin, ymin, xmax, ymax = struct.unpack("<4i", hd["dataWindow"])
        h = ymax - ymin + 1
        n = struct.unpack("<i", hd["chunkCount"])[0] if "chunkCount" in hd else -(-h // _LINES_PER_BLOCK[comp])
        offsets = struct.unpack_from(f"<{n}Q", buf, pos)
        pos += 8 * n
        parts.append((hd, comp, (xmin, ymin, xmax, ymax), offsets))
    out: dict[str, np.ndarray] = {}
    for hd, comp, (xmin, ymin, xmax, ymax), offsets in parts:
        chans = _channels(hd["channels"])
        w, h = xmax - xmin + 1, ymax - ymin + 1
        planes = {c: np.empty((h, w), dtype=np.float32) for c, _ in chans}
        lpb = _LINES_PER_BLOCK[comp]
        for off in offsets:
            off += 4 if multipart else 0  # part number
            y, size = struct.unpack_from("<2i", buf, off)
            data = buf[off + 8 : off + 8 + size]
            rows = min(lpb, ymax + 1 - y)
            expected = rows * w * sum(dt.itemsize for _, dt in chans)
            if size < expected:
                data = _unzip(data, expected)
            q = 0
            for r in range(rows):
                for cname, dt in chans:
                    planes[cname][y - ymin + r] = np.frombuffer(data, dtype=dt, count=w, offset=q)
                    q += w * dt.itemsize
        out.update(planes)
    return out
