"""VolSDF volume rendering of a signed distance field, in plain PyTorch.

Density from the SDF ``s`` (negative inside) is ``sigma = (1/beta) * Psi_beta(-s)`` with
``Psi_beta`` the CDF of a zero-mean Laplace distribution of scale ``beta`` (Yariv et al. 2021).
Samples are stratified in each ray's ``[near, far]`` interval; each sample stands for its bin
(``delta = (far - near) / n_samples``), and standard alpha compositing gives colour, soft mask
(accumulated opacity), expected depth and composited normals. The SDF gradients at every sample
are returned for an eikonal term (`eikonal_loss`).

Depth is the distance along the unit ray direction (see `Cameras.ray_depth_to_z` for z-depth),
normalised by the mask: it is the expected termination distance given that the ray stops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.render.fields import (
    Background,
    ColorFn,
    RenderInputError,
    SDFFn,
    background_color,
    check_rays,
    ray_bounds,
    sdf_and_gradient,
)

_EPS = 1e-8


@dataclass
class VolSDFConfig:
    """Options of the VolSDF renderer."""

    n_samples: int = 64
    """Stratified samples per ray."""
    near: float | None = None
    """Fixed near distance; None (with ``far`` None) uses the bounding sphere instead."""
    far: float | None = None
    """Fixed far distance; must be given together with ``near``."""
    bound_radius: float = 1.0
    """Radius of the origin-centred sphere that bounds the object (used when near/far are None)."""
    beta_init: float = 0.1
    """Initial Laplace scale beta of the density (learnable)."""
    beta_min: float = 1e-4
    """Lower bound added to |beta| so the density never becomes a step."""
    chunk_rays: int = 4096
    """Rays per batch entry evaluated at once; bounds peak memory of the forward pass."""
    background: Background = "white"
    """Default background: "white", "black" or an RGB tuple; ``background=`` overrides it per call."""
    compute_normals: bool = True
    """Compute SDF gradients (normals, eikonal material). Off skips the autograd pass."""


@dataclass
class VolSDFOutput:
    """Result of a VolSDF render of ``B`` x ``R`` rays with ``S`` samples each."""

    rgb: torch.Tensor
    """[B, R, 3] composited colour over the background."""
    mask: torch.Tensor
    """[B, R] accumulated opacity in [0, 1] (soft silhouette)."""
    depth: torch.Tensor
    """[B, R] expected ray distance of termination, divided by the mask (0 where mask is 0)."""
    normals: torch.Tensor | None
    """[B, R, 3] unit composited normals (zero vector where nothing was hit); None without normals."""
    sdf_gradients: torch.Tensor | None
    """[B, R, S, 3] SDF gradients at the samples (eikonal material); None without normals."""
    weights: torch.Tensor
    """[B, R, S] compositing weights."""
    t: torch.Tensor
    """[B, R, S] sample distances along each ray."""
    in_bounds: torch.Tensor
    """[B, R] bool, the ray met the bounding sphere (always True with fixed near/far)."""


def laplace_density(sdf: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """VolSDF density ``(1/beta) * Psi_beta(-sdf)``, stable for any sign and magnitude."""
    alpha = 1.0 / beta
    return alpha * (0.5 + 0.5 * torch.sign(sdf) * torch.expm1(-sdf.abs() / beta))


def eikonal_loss(gradients: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``(|grad| - 1)^2`` over samples [..., 3]; ``valid`` [B, R] keeps rays in bounds."""
    err = (gradients.norm(dim=-1) - 1.0) ** 2
    if valid is not None:
        err = err[valid]
    return err.mean()


def _stratified_t(near, far, n_samples: int, perturb: bool):
    b, r = near.shape
    edges = torch.linspace(0.0, 1.0, n_samples + 1, dtype=near.dtype, device=near.device)
    lower, width = edges[:-1], 1.0 / n_samples
    if perturb:
        u = torch.rand(b, r, n_samples, dtype=near.dtype, device=near.device)
    else:
        u = torch.full((b, r, n_samples), 0.5, dtype=near.dtype, device=near.device)
    frac = lower + u * width
    span = (far - near).unsqueeze(-1)
    return near.unsqueeze(-1) + span * frac, (span / n_samples).expand(b, r, n_samples)


def volsdf_render(
    origins: torch.Tensor,
    directions: torch.Tensor,
    sdf_fn: SDFFn,
    color_fn: ColorFn,
    beta: torch.Tensor,
    config: VolSDFConfig | None = None,
    *,
    background: Background = None,
    perturb: bool = False,
) -> VolSDFOutput:
    """Render rays [B, R, 3] (unit directions) through an SDF; ``beta`` is a scalar tensor.

    Functional core of `VolSDFRenderer` (use that to learn beta). ``perturb`` jitters samples
    inside their bins (training); without it samples sit at bin centres (deterministic).
    Gradients reach everything ``sdf_fn``/``color_fn`` close over, ``beta`` and the rays (the
    sample distances along each ray are treated as constants).
    """
    config = config or VolSDFConfig()
    check_rays(origins, directions)
    if config.n_samples < 1 or config.chunk_rays < 1:
        raise RenderInputError(f"n_samples and chunk_rays must be >= 1, got {config.n_samples}, {config.chunk_rays}")
    b, r, _ = origins.shape
    bg = background_color(config.background if background is None else background, b, r, origins)
    near, far, valid = ray_bounds(origins, directions, config.near, config.far, config.bound_radius)
    chunks = [
        _render_chunk(
            origins[:, s : s + config.chunk_rays],
            directions[:, s : s + config.chunk_rays],
            near[:, s : s + config.chunk_rays],
            far[:, s : s + config.chunk_rays],
            bg[:, s : s + config.chunk_rays],
            sdf_fn, color_fn, beta, config, perturb,
        )
        for s in range(0, r, config.chunk_rays)
    ]
    fields = {}
    for name in ("rgb", "mask", "depth", "normals", "sdf_gradients", "weights", "t"):
        parts = [c[name] for c in chunks]
        fields[name] = None if parts[0] is None else torch.cat(parts, dim=1)
    return VolSDFOutput(in_bounds=valid, **fields)


def _render_chunk(o, d, near, far, bg, sdf_fn, color_fn, beta, config: VolSDFConfig, perturb: bool):
    t, delta = _stratified_t(near, far, config.n_samples, perturb)
    points = o.unsqueeze(2) + t.unsqueeze(-1) * d.unsqueeze(2)  # [B, r, S, 3]
    viewdirs = d.unsqueeze(2).expand_as(points)
    if config.compute_normals:
        sdf, grad = sdf_and_gradient(sdf_fn, points, create_graph=torch.is_grad_enabled())
        normals = torch.nn.functional.normalize(grad, dim=-1, eps=_EPS)
    else:
        sdf, grad, normals = sdf_fn(points), None, None
        if sdf.shape != points.shape[:-1]:
            raise RenderInputError(
                f"sdf_fn returned shape {list(sdf.shape)} for points {list(points.shape)}"
            )
    sigma = laplace_density(sdf, beta)
    tau = sigma * delta
    # Transmittance before each sample: exp(-sum of optical depth of the samples in front).
    before = torch.cumsum(tau, dim=-1) - tau
    weights = torch.exp(-before) * (1.0 - torch.exp(-tau))
    rgb_samples = color_fn(points, normals, viewdirs)
    if rgb_samples.shape != points.shape:
        raise RenderInputError(
            f"color_fn returned shape {list(rgb_samples.shape)} for points {list(points.shape)}"
        )
    mask = weights.sum(-1)
    rgb = (weights.unsqueeze(-1) * rgb_samples).sum(-2) + (1.0 - mask).unsqueeze(-1) * bg
    depth = (weights * t).sum(-1) / mask.clamp_min(_EPS)
    composited_normals = None
    if normals is not None:
        composited_normals = torch.nn.functional.normalize(
            (weights.unsqueeze(-1) * normals).sum(-2), dim=-1, eps=_EPS
        )
    return {
        "rgb": rgb, "mask": mask, "depth": depth, "normals": composited_normals,
        "sdf_gradients": grad, "weights": weights, "t": t,
    }


class VolSDFRenderer(torch.nn.Module):
    """VolSDF renderer with a learnable Laplace scale beta.

    ``beta = beta_min + |raw|`` with ``raw`` initialised so that beta starts at ``beta_init``.
    Samples are jittered in training mode and at bin centres in eval mode.
    """

    def __init__(self, config: VolSDFConfig | None = None) -> None:
        super().__init__()
        self.config = config or VolSDFConfig()
        if self.config.beta_init <= self.config.beta_min:
            raise RenderInputError(
                f"beta_init ({self.config.beta_init}) must exceed beta_min ({self.config.beta_min})"
            )
        self.beta_raw = torch.nn.Parameter(torch.tensor(self.config.beta_init - self.config.beta_min))

    @property
    def beta(self) -> torch.Tensor:
        """Current Laplace scale (scalar tensor)."""
        return self.config.beta_min + self.beta_raw.abs()

    def forward(
        self,
        origins: torch.Tensor,
        directions: torch.Tensor,
        sdf_fn: SDFFn,
        color_fn: ColorFn,
        background: Background = None,
    ) -> VolSDFOutput:
        """Render rays [B, R, 3]; see `volsdf_render`."""
        beta = self.beta.to(dtype=origins.dtype)
        return volsdf_render(
            origins, directions, sdf_fn, color_fn, beta, self.config,
            background=background, perturb=self.training,
        )
