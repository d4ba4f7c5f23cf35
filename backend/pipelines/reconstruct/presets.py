"""How hard the learned reconstruction works at each quality level."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPreset:
    """Effort of one quality level (times measured on the 2-core CPU: docs/reconstruction.md)."""

    refine_steps: int
    """Test-time refinement iterations (0 = the encoder's prediction as it is)."""
    refine_rays: int
    """Rays per view per refinement step."""
    refine_samples: int
    """VolSDF samples per ray while refining."""
    target_size: int
    """Side of the mask/colour crop the renders are compared with."""
    preview_every: int
    """Stream a preview mesh every this many refinement steps."""
    preview_resolution: int
    """Marching-cubes grid of preview meshes."""
    mesh_resolution: int
    """Marching-cubes grid of the result (coarse-to-fine)."""
    max_faces: int
    """Faces kept after decimation when the request sets no budget."""
    texture_size: int
    """Side of the baked texture: 1.25 times the powers of two xatlas's atlas used, because the
    projection charts (`backend.geometry.charts`) cover less of it and stretch tilted faces
    (at 1.25 the texture error is level with xatlas's at the old size: docs/reconstruction.md)."""
    lr_shape: float = 0.005
    """Adam step of the shape code (0 keeps the encoder's shape; the camera is still fitted).
    Small: one silhouette, seen by a camera that is itself being fitted, says little about the
    depth: with the seventh session's encoder, 10 steps of 0.02 lost 0.044 F@5% where 0.005
    gained 0.007-0.009 (docs/training.md)."""
    lr_color: float = 0.02
    """Adam step of the colour code."""
    lr_camera: float = 0.02
    """Adam step of the camera angles (radians) and log focal length."""
    code_prior: float = 0.01
    """Weight of the squared distance of the codes from the encoder's prediction (keeps them
    on the learned shape space while the mask pulls)."""
    symmetry: float = 1.0
    """Weight of mean |SDF(x, y, z) - SDF(-x, y, z)| at random points, for a model whose SDF is
    not mirror-symmetric by construction: fitting one silhouette, possibly from a wrong camera,
    otherwise bends the shape out of the symmetry training taught it (measured with the 6x128
    model: docs/training.md). A model that is symmetric by construction skips it."""
    azimuth_hypotheses: int = 4
    """Azimuths tried before refining (`Viewpoint.azimuth_candidates`: the azimuth classifier's
    best sectors, or without one the predicted azimuth and more spread round the circle); the
    one whose silhouette best matches the mask wins. Refinement is local, and a wrong front/back or
    side guess of the viewpoint head is the commonest failure it cannot undo."""
    smoothing_steps: int = 10
    """Taubin steps the surface is smoothed by before texturing (`mesh_ops.smooth_over_distance`):
    it takes away the faint stripes the committed weights leave on the results `auto` keeps (a
    lemon, a loaf) at no cost in F-score, but 0.01-0.03 of silhouette IoU, since the stripes'
    crests had been fitted to the outline (docs/reconstruction.md, "Ripples"). 0 keeps the
    surface as extracted."""
    carve_margin: float | None = None
    """Cut the final surface by the input masks as the refined cameras see them (the visual-hull
    intersection, `backend.render.hull`), each mask widened by this share of the crop's side so a
    slightly-off camera does not shave the object; None keeps the model's surface as it is."""


PRESETS = {
    "preview": ModelPreset(refine_steps=4, refine_rays=192, refine_samples=24, target_size=48, preview_every=4,
                           preview_resolution=32, mesh_resolution=48, max_faces=4_000, texture_size=320,
                           azimuth_hypotheses=2, carve_margin=0.02),
    "default": ModelPreset(refine_steps=10, refine_rays=384, refine_samples=32, target_size=64, preview_every=5,
                           preview_resolution=40, mesh_resolution=96, max_faces=20_000, texture_size=640,
                           azimuth_hypotheses=2, carve_margin=0.02),
    # high refines as default does: 100 steps of 768 rays scored F@5% 0.786 against default's
    # 0.813 on 21 held-in shapes (the shape drifts to fit one mask); it adds mesh and texture detail
    "high": ModelPreset(refine_steps=10, refine_rays=384, refine_samples=32, target_size=64, preview_every=5,
                        preview_resolution=48, mesh_resolution=128, max_faces=60_000, texture_size=1280,
                        azimuth_hypotheses=2, carve_margin=0.02),
}


POINTS_PER_FACE = 2
"""A point cloud result has this many points per face the mesh would have had (a 10k-face
default mesh -> 20k points): about as dense as the mesh's own vertices, twice over."""


def point_count(request, max_faces: int) -> int | None:
    """Points of a ``output="points"`` result; None for a mesh."""
    if getattr(request, "output", "mesh") != "points":
        return None
    return POINTS_PER_FACE * (request.face_budget or max_faces)
