"""Text-guided stylization of a mesh (ISS's stylization, on an explicit surface).

The mesh is rasterised from a few random views per step (camera distance jitter, a random
background colour per view); the colour field is evaluated at the visible surface points and
shaded with a head-light so CLIP sees the form; the loss is ``w_clip·(1 − cos(CLIP(view),
CLIP(prompt)))`` on augmented views.

- ``texture``: only the colour field trains; the geometry is never touched.
- ``texture_shape``: a displacement field also trains and moves each vertex along its original
  normal by ``d``; the surface penalty ``w_surface·mean |d| / max_offset`` keeps it near the input —
  ``|d|`` is the moved vertex's distance to the original surface (``|sdf₀|``) to first order, and
  ``|d| ≤ max_offset`` always.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from backend.models.losses_clip import (
    ClipAugmentConfig,
    augment_for_clip,
    clip_consistency_loss,
    random_background_colors,
)
from backend.pipelines.generate_align import ViewSampling, orbit_views
from backend.pipelines.stylize_fields import DisplacementField
from backend.pipelines.stylize_raster import (
    interpolate,
    rasterize,
    vertex_normals_torch,
)

if TYPE_CHECKING:
    from backend.models.clip import ClipModel

STYLIZE_MODES = ("texture", "texture_shape")


class StylizeInputError(ValueError):
    """The mesh or mode given to the stylizer cannot be used."""


@dataclass
class StylizeConfig:
    """Stylization settings (presets in ``backend.pipelines.stylize``)."""

    steps: int = 25
    """Optimisation steps."""
    views: int = 3
    """Random views per step (ISS: 3)."""
    resolution: int = 64
    """Side of each view in pixels (ISS: about 100)."""
    color_lr: float = 5e-3
    """Adam learning rate of the colour field."""
    shape_lr: float = 1e-3
    """Adam learning rate of the displacement field (``texture_shape``)."""
    clip_weight: float = 4.0
    """Weight of ``1 − cos`` (as in ISS stage 2)."""
    surface_weight: float = 1.0
    """Weight of the surface penalty ``mean |d| / max_offset`` (``texture_shape``)."""
    max_offset: float = 0.04
    """Largest displacement along the normal, in units of the mesh's longest side."""
    ambient: float = 0.5
    """Share of unshaded light; the rest is a head-light ``|n · view|``."""
    sampling: ViewSampling = field(
        default_factory=lambda: ViewSampling(elevation_deg=(-10.0, 45.0), distance=2.0, distance_jitter=0.15)
    )
    """Random views (distance jitter as in ISS)."""
    augment: ClipAugmentConfig | None = field(default_factory=ClipAugmentConfig)
    """Random crop/perspective before CLIP; None turns it off."""


@dataclass
class StylizeStep:
    """Loss terms of one step (floats)."""

    total: float
    clip: float
    surface: float


class MeshStylizer:
    """Optimises a colour field (and for ``texture_shape`` a displacement field) on one mesh.

    The mesh is in the working frame: centred, longest side 1, Z up. ``color_field`` maps
    ``points [K, 3] → rgb [K, 3]``; it is trained in place.
    """

    def __init__(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        clip: ClipModel,
        text_features: torch.Tensor,
        color_field: torch.nn.Module,
        config: StylizeConfig,
        *,
        mode: str = "texture",
        seed: int = 0,
    ):
        if mode not in STYLIZE_MODES:
            raise StylizeInputError(f"unknown stylize mode {mode!r}; use one of {STYLIZE_MODES}")
        if len(faces) == 0 or len(vertices) == 0:
            raise StylizeInputError("the mesh has no triangles")
        self.device = text_features.device
        self.vertices = torch.as_tensor(np.asarray(vertices), dtype=torch.float32, device=self.device)
        self.faces_np = np.asarray(faces, dtype=np.int64)
        self.faces = torch.as_tensor(self.faces_np, device=self.device)
        self.normals0 = vertex_normals_torch(self.vertices, self.faces)
        self.clip = clip
        self.text = text_features
        self.config = config
        self.mode = mode
        self.generator = torch.Generator().manual_seed(seed)
        self.color_field = color_field.to(self.device)
        groups = [{"params": list(self.color_field.parameters()), "lr": config.color_lr}]
        self.displacement: DisplacementField | None = None
        if mode == "texture_shape":
            self.displacement = DisplacementField(config.max_offset).to(self.device)
            groups.append({"params": list(self.displacement.parameters()), "lr": config.shape_lr})
        self.optimizer = torch.optim.Adam(groups)

    def displaced_vertices(self, vertices: torch.Tensor | None = None, normals: torch.Tensor | None = None):
        """Vertices moved by the displacement field (unchanged in ``texture`` mode) and the offsets."""
        vertices = self.vertices if vertices is None else vertices
        normals = self.normals0 if normals is None else normals
        if self.displacement is None:
            return vertices, torch.zeros(len(vertices), device=vertices.device)
        offset = self.displacement(vertices)
        return vertices + normals * offset.unsqueeze(-1), offset

    def render(self, cameras, backgrounds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shaded views ``[V, 3, H, W]`` over ``backgrounds [V, 3]``, coverage ``[V, 1, H, W]``, offsets."""
        verts, offset = self.displaced_vertices()
        fragments = rasterize(verts, self.faces_np, cameras)
        mask = fragments.mask
        points = interpolate(verts, self.faces, fragments)
        # Colours belong to the original surface point, so a texture stays put while the shape moves.
        base_points = interpolate(self.vertices, self.faces, fragments)
        normals = torch.nn.functional.normalize(
            interpolate(vertex_normals_torch(verts, self.faces), self.faces, fragments), dim=-1, eps=1e-12
        )
        view_dirs = torch.nn.functional.normalize(points - cameras.centers[:, None, None, :], dim=-1)
        shade = self.config.ambient + (1.0 - self.config.ambient) * (normals * view_dirs).sum(-1).abs()
        albedo = torch.zeros_like(points)
        albedo[mask] = self.color_field(base_points[mask])
        covered = mask.unsqueeze(-1).to(points.dtype)
        rgb = albedo * shade.unsqueeze(-1) * covered + (1.0 - covered) * backgrounds[:, None, None, :]
        return rgb.permute(0, 3, 1, 2), covered.permute(0, 3, 1, 2), offset

    def step(self) -> StylizeStep:
        """One Adam step on fresh random views and backgrounds."""
        cameras = orbit_views(self.config.views, self.config.resolution, self.config.sampling, self.generator, self.device)
        backgrounds = random_background_colors(self.config.views, generator=self.generator, device=self.device)
        self.optimizer.zero_grad(set_to_none=True)
        rgb, _, offset = self.render(cameras, backgrounds)
        clip_input = augment_for_clip(rgb, self.config.augment, self.generator) if self.config.augment else rgb
        clip_term = clip_consistency_loss(self.clip.encode_image(clip_input), self.text)
        surface = (offset.abs().mean() / self.config.max_offset) if self.displacement is not None else None
        total = self.config.clip_weight * clip_term
        if surface is not None:
            total = total + self.config.surface_weight * surface
        total.backward()
        self.optimizer.step()
        return StylizeStep(float(total.detach()), float(clip_term.detach()), float(surface.detach()) if surface is not None else 0.0)

    def run(self, on_step: Callable[[int, StylizeStep], None] | None = None) -> list[StylizeStep]:
        """All configured steps; ``on_step(i, terms)`` after each (where the caller checks for cancel)."""
        history = []
        for i in range(self.config.steps):
            terms = self.step()
            history.append(terms)
            if on_step is not None:
                on_step(i, terms)
        return history

    @torch.no_grad()
    def apply_displacement(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Move the vertices of a mesh of the same surface (e.g. the full mesh of a decimated proxy)
        along their own area-weighted normals by the learned field; unchanged in ``texture`` mode."""
        if self.displacement is None:
            return np.asarray(vertices, dtype=np.float32)
        v = torch.as_tensor(np.asarray(vertices), dtype=torch.float32, device=self.device)
        f = torch.as_tensor(np.asarray(faces, dtype=np.int64), device=self.device)
        moved = v + vertex_normals_torch(v, f) * self.displacement(v).unsqueeze(-1)
        return moved.cpu().numpy().astype(np.float32)
