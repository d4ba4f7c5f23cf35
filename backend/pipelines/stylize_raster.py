"""A deferred triangle rasteriser in numpy + torch, for optimising fields on a mesh's surface.

Visibility (which triangle a pixel sees, and where inside it) is found without gradients; the
surface point and normal of every covered pixel are then interpolated in torch from the vertex
positions, so losses on renders reach a colour field evaluated at those points and, through the
points and normals, the vertices themselves. Silhouettes get no gradient (no soft rasterisation):
that suits stylization, where the outline is meant to stay where it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from backend.geometry.raster import covered_pixels

if TYPE_CHECKING:
    from backend.render.cameras import Cameras

_NEAR = 1e-4


@dataclass
class Fragments:
    """What each pixel of B views of H×W sees."""

    face: torch.Tensor
    """[B, H, W] long: index of the visible triangle, −1 for background."""
    bary: torch.Tensor
    """[B, H, W, 3] perspective-correct barycentric weights of the visible point (0 on background)."""

    @property
    def mask(self) -> torch.Tensor:
        """[B, H, W] bool: the pixel sees the mesh."""
        return self.face >= 0


def rasterize(vertices: torch.Tensor, faces: np.ndarray, cameras: Cameras) -> Fragments:
    """Nearest triangle and barycentrics at every pixel centre of every camera.

    ``vertices [N, 3]`` in world coordinates, ``faces [F, 3]`` int. Both sides of a triangle are
    visible (meshes from artists are not always consistently oriented).
    """
    faces = np.asarray(faces, dtype=np.int64)
    b, h, w = len(cameras), cameras.height, cameras.width
    with torch.no_grad():
        uv, z = cameras.project(vertices.detach().to(cameras.dtype).unsqueeze(0).expand(b, -1, -1))
    uv_np, z_np = uv.cpu().double().numpy(), z.cpu().double().numpy()
    face_out = np.full((b, h * w), -1, dtype=np.int64)
    bary_out = np.zeros((b, h * w, 3), dtype=np.float64)
    for view in range(b):
        found = _rasterize_view(uv_np[view], z_np[view], faces, h, w)
        if found is not None:
            pixels, tri, weights = found
            face_out[view, pixels] = tri
            bary_out[view, pixels] = weights
    device = vertices.device
    return Fragments(
        face=torch.from_numpy(face_out.reshape(b, h, w)).to(device),
        bary=torch.from_numpy(bary_out.reshape(b, h, w, 3)).to(device=device, dtype=vertices.dtype),
    )


def _rasterize_view(uv: np.ndarray, z: np.ndarray, faces: np.ndarray, h: int, w: int):
    tri_z = z[faces]
    keep = (tri_z > _NEAR).all(axis=1)
    face_ids = np.nonzero(keep)[0]
    tri_uv = uv[faces[face_ids]] - 0.5  # pixel centres at integer coordinates
    tri_z = tri_z[face_ids]
    which, px, py, screen = covered_pixels(tri_uv, w, h)
    if len(which) == 0:
        return None
    # Perspective-correct weights and depth: 1/z interpolates linearly in screen space.
    inv_z = screen / tri_z[which]
    depth = 1.0 / inv_z.sum(axis=1)
    weights = inv_z * depth[:, None]
    pixel = py * w + px
    order = np.lexsort((depth, pixel))
    pixel, first = np.unique(pixel[order], return_index=True)
    chosen = order[first]
    return pixel, face_ids[which[chosen]], weights[chosen]


def interpolate(attributes: torch.Tensor, faces: torch.Tensor, fragments: Fragments) -> torch.Tensor:
    """Per-vertex ``attributes [N, C]`` at every pixel → ``[B, H, W, C]`` (0 on background).

    Differentiable in ``attributes``; ``faces [F, 3]`` long on the same device.
    """
    index = fragments.face.clamp_min(0)
    corners = attributes[faces[index]]  # [B, H, W, 3, C]
    values = (fragments.bary.unsqueeze(-1) * corners).sum(dim=-2)
    return values * fragments.mask.unsqueeze(-1).to(values.dtype)


def vertex_normals_torch(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals ``[N, 3]``, differentiable in ``vertices``."""
    tri = vertices[faces]
    face_normals = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals = normals.index_add(0, faces[:, corner], face_normals)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)
