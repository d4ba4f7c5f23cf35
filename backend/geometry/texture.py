"""UV unwrapping (xatlas) and texture baking from a colour function defined on the surface."""

from __future__ import annotations

from typing import Callable

import numpy as np

from backend.geometry.raster import covered_pixels

ColorFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(points [K,3], normals [K,3]) → RGB [K,3] float in 0..1."""


def unwrap(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas charts → ``(mapping [N'], faces [M, 3], uvs [N', 2])``: new vertex ``i`` is old
    vertex ``mapping[i]`` (seams duplicate vertices), face order is kept.

    UV origin is bottom-left (Blender's and glTF-after-flip convention used on the wire).
    """
    import xatlas

    mapping, new_faces, uvs = xatlas.parametrize(vertices.astype(np.float32), faces.astype(np.uint32))
    return mapping.astype(np.int64), new_faces.astype(np.int32), uvs.astype(np.float32)


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
