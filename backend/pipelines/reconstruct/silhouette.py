"""Single-view reconstruction by silhouette inflation — the classical baseline.

The object's silhouette is inflated into a solid whose half-thickness at a pixel follows a
circular profile of that pixel's distance to the outline (as in sketch-based modelling: a disc
becomes a sphere, a bar a cylinder). It knows nothing about object categories, so it cannot
recover concavities (the inside of a mug) or parts hidden from view; it is the "visual hull of
the input view" baseline in the reconstruction benchmark, and what the backend runs when no
trained shape model is installed (the result's metadata says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.geometry.finish import finish_mesh
from backend.geometry.mesh_ops import clean_mesh, decimate, extract_surface, normalise_unit
from backend.geometry.texture import ColorFn
from backend.pipelines.base import JobContext, Pipeline, PipelineOutput
from backend.pipelines.reconstruct.colour import sample_bilinear
from backend.pipelines.reconstruct.inputs import find_object
from backend.protocol import MeshPayload
from backend.requests import ReconstructRequest
from backend.segmentation import crop_to_object


@dataclass(frozen=True)
class SilhouettePreset:
    image_size: int
    """Side of the square crop the silhouette is measured on."""
    grid: int
    """Marching-cubes grid resolution per axis."""
    max_faces: int
    """Faces kept after decimation (before UV unwrapping)."""
    texture_size: int
    thickness: float = 1.0
    """Depth of the inflation relative to a circular cross-section."""


PRESETS = {
    "preview": SilhouettePreset(image_size=96, grid=48, max_faces=4_000, texture_size=256),
    "default": SilhouettePreset(image_size=192, grid=96, max_faces=20_000, texture_size=512),
    "high": SilhouettePreset(image_size=320, grid=160, max_faces=60_000, texture_size=1024),
}

TEXTURE_STEPS = {"unwrap": (0.7, "unwrapping UVs"), "bake": (0.85, "baking the texture")}
"""Progress reported at each step of `finish_mesh`."""


def inflate_field(mask: np.ndarray, grid: int, thickness: float = 1.0) -> tuple[np.ndarray, float]:
    """Silhouette mask [S,S] (float 0..1) → inside-positive field [G,G,G] over [-0.5,0.5]³ (x, y=depth, z).

    Returns the field and the largest half-thickness.
    """
    from scipy import ndimage
    from skimage.transform import resize

    size = mask.shape[0]
    smooth = ndimage.gaussian_filter(mask.astype(np.float64), sigma=max(0.5, size / 160.0)) >= 0.5
    inside = ndimage.distance_transform_edt(smooth) / size
    outside = ndimage.distance_transform_edt(~smooth) / size
    radius = float(inside.max())
    profile = np.sqrt(np.clip(2.0 * radius * inside - inside ** 2, 0.0, None)) * thickness
    height = np.where(smooth, profile, -outside)  # [row (down), col (right)]
    # image rows run top→bottom, world z bottom→top; columns are world x.
    height_xz = resize(height, (grid, grid), order=1)[::-1].T  # [x, z]
    depth = np.linspace(-0.5, 0.5, grid)
    field = height_xz[:, None, :] - np.abs(depth)[None, :, None]
    return field, radius * thickness


class SilhouetteReconstructPipeline(Pipeline):
    task = "reconstruct"
    method = "silhouette inflation (baseline)"

    def run(self, request: ReconstructRequest, ctx: JobContext) -> PipelineOutput:
        preset = PRESETS[request.common.quality]
        if len(request.images) > 1:
            ctx.warn(f"the silhouette baseline uses the first of {len(request.images)} views only")
        image = request.images[0]
        ctx.progress("segment", 0.05, "finding the object")
        seg = find_object(image, ctx)
        rgb, mask = crop_to_object(image.rgba, seg.mask, preset.image_size)
        ctx.progress("inflate", 0.2, "inflating the silhouette")

        coarse, _ = inflate_field(mask, grid=max(24, preset.grid // 3), thickness=preset.thickness)
        vertices, faces = extract_surface(coarse, np.full(3, -0.5), np.full(3, 0.5))
        ctx.preview_mesh(MeshPayload(vertices, faces))

        field, half_depth = inflate_field(mask, preset.grid, preset.thickness)
        ctx.progress("mesh", 0.4, "extracting the surface")
        vertices, faces = extract_surface(field, np.full(3, -0.5), np.full(3, 0.5))
        vertices, faces = clean_mesh(vertices, faces)
        ctx.check()
        vertices, faces = decimate(vertices, faces, request.face_budget or preset.max_faces)
        ctx.progress("mesh", 0.6, f"{len(faces)} triangles")

        mesh = finish_mesh(vertices, faces, front_view_colour(rgb, mask), texture=request.texture,
                           texture_size=preset.texture_size,
                           on_step=lambda step: ctx.progress("texture", *TEXTURE_STEPS[step]))
        mesh.vertices, _, _ = normalise_unit(mesh.vertices)
        metadata = {
            "method": self.method,
            "segmentation": {"method": seg.method, "confidence": seg.confidence, "notes": seg.notes},
            "input": {"width": image.size[0], "height": image.size[1], "format": image.source_format,
                      "notes": image.warnings},
            "grid": preset.grid,
            "half_depth": round(half_depth, 4),
        }
        return PipelineOutput(mesh, metadata)


def front_view_colour(rgb: np.ndarray, mask: np.ndarray) -> ColorFn:
    """Colour function that projects surface points onto the (front) input view.

    Pixels just outside the silhouette take the colour of the nearest object pixel, so the
    background never bleeds onto the rim of the shape.
    """
    from scipy import ndimage

    size = rgb.shape[0]
    _, (iy, ix) = ndimage.distance_transform_edt(mask < 0.5, return_indices=True)
    filled = rgb[iy, ix]

    def colour(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        # x runs along the image's columns, z up its rows (top row = z 0.5)
        uv = np.stack([(points[:, 0] + 0.5) * size, (0.5 - points[:, 2]) * size], axis=1)
        return sample_bilinear(filled, uv)

    return colour
