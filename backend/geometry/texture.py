"""Texture baking from a colour function defined on the surface (the UVs: `charts`)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from backend.geometry.mesh_ops import sample_surface
from backend.geometry.raster import covered_pixels

ColorFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(points [K,3], normals [K,3]) → RGB [K,3] float in 0..1."""


def bake(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, normals: np.ndarray,
         color_fn: ColorFn, size: int, padding: int = 4) -> np.ndarray:
    """Rasterise every triangle in UV space, evaluate ``color_fn`` at the covered surface points.

    Returns an [size,size,3] uint8 image whose row 0 is the *top* (as PNG stores it), i.e. UV v=1.
    Texels outside all charts are filled from their neighbours (``padding`` dilation steps) so
    that bilinear filtering and mip-maps do not bleed background into the seams.
    """
    texel_uv = uvs.astype(np.float64) * size - 0.5  # texel centres sit at integer coordinates
    tri_index, px, py, weights = covered_pixels(texel_uv[faces], size, size, eps=1e-6)
    # A texel may fall inside two triangles along a shared edge: keep one.
    flat = py * size + px
    flat, first = np.unique(flat, return_index=True)
    tri_index, weights = tri_index[first], weights[first]

    corners = faces[tri_index]
    points = np.einsum("kc,kcd->kd", weights, vertices[corners].astype(np.float64))
    point_normals = np.einsum("kc,kcd->kd", weights, normals[corners].astype(np.float64))
    point_normals /= np.maximum(np.linalg.norm(point_normals, axis=1, keepdims=True), 1e-12)
    colors = np.clip(color_fn(points, point_normals), 0.0, 1.0)

    image = np.zeros((size * size, 3), dtype=np.float64)
    filled = np.zeros(size * size, dtype=bool)
    image[flat] = colors
    filled[flat] = True
    image, filled = image.reshape(size, size, 3), filled.reshape(size, size)
    image = _dilate(image, filled, padding)
    # Row 0 of the array is v = 0 (bottom); images are stored top row first.
    return (np.flipud(image) * 255.0 + 0.5).astype(np.uint8)


def _dilate(image: np.ndarray, filled: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        if filled.all():
            break
        total = np.zeros_like(image)
        count = np.zeros(filled.shape, dtype=np.float64)
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            shifted = np.roll(np.roll(filled, dy, axis=0), dx, axis=1)
            total += np.roll(np.roll(image * filled[..., None], dy, axis=0), dx, axis=1)
            count += shifted
        grow = ~filled & (count > 0)
        image[grow] = total[grow] / count[grow, None]
        filled = filled | grow
    return image


def texture_error(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture_png: bytes,
                  color_fn: ColorFn, samples: int = 2000, seed: int = 0) -> float:
    """How faithfully a baked texture carries the colours it was baked from: the mean absolute
    difference (0-255, over RGB) between the texture, read bilinearly at random surface points
    (area-uniform), and ``color_fn`` there. Texel size, chart seams and padding show up here; a
    perfect texture scores 0."""
    import io

    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(texture_png)).convert("RGB"), dtype=np.float64)[::-1]  # row 0 = v 0
    tri = vertices[faces].astype(np.float64)
    picked, weights = sample_surface(vertices, faces, samples, seed)
    corners = faces[picked]
    points = np.einsum("kc,kcd->kd", weights, vertices[corners].astype(np.float64))
    normals = np.cross(tri[picked, 1] - tri[picked, 0], tri[picked, 2] - tri[picked, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    texel = np.einsum("kc,kcd->kd", weights, uvs[corners].astype(np.float64)) * image.shape[0] - 0.5
    x0 = np.clip(np.floor(texel[:, 0]).astype(int), 0, image.shape[1] - 2)
    y0 = np.clip(np.floor(texel[:, 1]).astype(int), 0, image.shape[0] - 2)
    fx = np.clip(texel[:, 0] - x0, 0, 1)[:, None]
    fy = np.clip(texel[:, 1] - y0, 0, 1)[:, None]
    read = ((1 - fx) * (1 - fy) * image[y0, x0] + fx * (1 - fy) * image[y0, x0 + 1]
            + (1 - fx) * fy * image[y0 + 1, x0] + fx * fy * image[y0 + 1, x0 + 1])
    truth = np.clip(color_fn(points, normals), 0.0, 1.0) * 255.0
    return float(np.abs(read - truth).mean())
