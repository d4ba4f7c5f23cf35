"""DVR-style surface rendering of an implicit field with an exact implicit depth gradient.

The surface is the level set ``f(p) = level`` of a field ``f`` (an SDF, negative inside, or an
occupancy logit, positive inside: set `SurfaceConfig.inside`). Each ray is marched at
``n_steps`` evenly spaced distances; the first crossing from outside to inside is refined by
secant steps. Root finding runs without autograd. The returned depth is then

    d_hat = d* - (f(o + d* v) - level) / stopgrad(grad f(p*) . v)

whose value equals the root ``d*`` (plus one Newton correction) and whose gradient is the
implicit-function derivative (Niemeyer et al., DVR 2020): it reaches the field's parameters and
the ray origins/directions, so cameras can be optimised too.
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
class SurfaceConfig:
    """Options of the surface renderer."""

    n_steps: int = 128
    """Evenly spaced field evaluations per ray while searching the first crossing."""
    n_secant: int = 8
    """Secant refinement steps on the bracketing interval."""
    level: float = 0.0
    """Iso-level ``tau`` of the surface (0 for an SDF and for occupancy logits)."""
    inside: str = "negative"
    """Where the object is: "negative" (SDF) or "positive" (occupancy logits) relative to level."""
    near: float | None = None
    """Fixed near distance; None (with ``far`` None) uses the bounding sphere instead."""
    far: float | None = None
    """Fixed far distance; must be given together with ``near``."""
    bound_radius: float = 1.0
    """Radius of the origin-centred sphere that bounds the object (used when near/far are None)."""
    chunk_rays: int = 8192
    """Rays per batch entry marched at once; bounds peak memory."""
    background: Background = "white"
    """Default background where rays miss: "white", "black", RGB tuple or tensor."""


@dataclass
class SurfaceOutput:
    """Result of a surface render of ``B`` x ``R`` rays."""

    depth: torch.Tensor
    """[B, R] ray distance to the surface, differentiable (0 where ``hit`` is False)."""
    hit: torch.Tensor
    """[B, R] bool, the ray crosses from outside to inside within its bounds."""
    points: torch.Tensor
    """[B, R, 3] surface points ``o + d_hat v`` (ray origin where there is no hit)."""
    normals: torch.Tensor
    """[B, R, 3] unit outward normals at ``points``, differentiable (zero where there is no hit)."""
    rgb: torch.Tensor | None
    """[B, R, 3] colour at the hit over the background; None when no ``color_fn`` was given."""
    starts_inside: torch.Tensor
    """[B, R] bool, the first sample was already inside (camera inside the object); no hit."""


def _signed(values: torch.Tensor, config: SurfaceConfig) -> torch.Tensor:
    """Map field values so that outside is > 0 and inside <= 0."""
    shifted = values - config.level
    return shifted if config.inside == "negative" else -shifted


@torch.no_grad()
def find_surface(
    origins: torch.Tensor,
    directions: torch.Tensor,
    field_fn: SDFFn,
    config: SurfaceConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Root finding only: ``(depth [B, R], hit [B, R], starts_inside [B, R])``, no gradients."""
    config = config or SurfaceConfig()
    check_rays(origins, directions)
    near, far, valid = ray_bounds(origins, directions, config.near, config.far, config.bound_radius)
    depths, hits, insides = [], [], []
    for s in range(0, origins.shape[1], config.chunk_rays):
        sl = slice(s, s + config.chunk_rays)
        d, h, i = _march_chunk(origins[:, sl], directions[:, sl], near[:, sl], far[:, sl], field_fn, config)
        depths.append(d)
        hits.append(h & valid[:, sl])
        insides.append(i & valid[:, sl])
    return torch.cat(depths, 1), torch.cat(hits, 1), torch.cat(insides, 1)


def _march_chunk(o, v, near, far, field_fn, config: SurfaceConfig):
    steps = torch.linspace(0.0, 1.0, config.n_steps, dtype=o.dtype, device=o.device)
    t = near.unsqueeze(-1) + (far - near).unsqueeze(-1) * steps  # [B, r, n]
    g = _signed(field_fn(o.unsqueeze(2) + t.unsqueeze(-1) * v.unsqueeze(2)), config)
    outside = g > 0
    crossing = outside[..., :-1] & ~outside[..., 1:]
    hit = crossing.any(-1)
    # argmax of an int tensor returns the first maximal index: the first crossing.
    first = crossing.to(torch.int8).argmax(-1, keepdim=True)
    t_lo, t_hi = t.gather(-1, first).squeeze(-1), t.gather(-1, first + 1).squeeze(-1)
    g_lo, g_hi = g.gather(-1, first).squeeze(-1), g.gather(-1, first + 1).squeeze(-1)
    t_root = _secant(o, v, t_lo, t_hi, g_lo, g_hi, field_fn, config)
    depth = torch.where(hit, t_root, torch.zeros_like(t_root))
    return depth, hit, ~outside[..., 0]


def _secant(o, v, t_lo, t_hi, g_lo, g_hi, field_fn, config: SurfaceConfig):
    """Secant (regula falsi) on brackets with g_lo > 0 >= g_hi; rays without a hit are harmless."""
    t_mid = t_lo
    for _ in range(config.n_secant):
        denom = g_lo - g_hi
        denom = torch.where(denom > 0, denom, torch.ones_like(denom))
        t_mid = t_lo + (t_hi - t_lo) * (g_lo / denom).clamp(0.0, 1.0)
        g_mid = _signed(field_fn(o + t_mid.unsqueeze(-1) * v), config)
        outside = g_mid > 0
        t_lo, g_lo = torch.where(outside, t_mid, t_lo), torch.where(outside, g_mid, g_lo)
        t_hi, g_hi = torch.where(outside, t_hi, t_mid), torch.where(outside, g_hi, g_mid)
    return t_mid


def surface_render(
    origins: torch.Tensor,
    directions: torch.Tensor,
    field_fn: SDFFn,
    color_fn: ColorFn | None = None,
    config: SurfaceConfig | None = None,
    *,
    background: Background = None,
) -> SurfaceOutput:
    """Render rays [B, R, 3] (unit directions) by finding the first surface crossing.

    ``field_fn(points [B, ..., 3]) -> [B, ...]``; ``color_fn(points, normals, viewdirs)`` is
    evaluated at the differentiable hit points.
    """
    config = config or SurfaceConfig()
    check_rays(origins, directions)
    if config.inside not in ("negative", "positive"):
        raise RenderInputError(f"SurfaceConfig.inside must be 'negative' or 'positive', got {config.inside!r}")
    if config.n_steps < 2 or config.n_secant < 0 or config.chunk_rays < 1:
        raise RenderInputError(
            f"need n_steps >= 2, n_secant >= 0, chunk_rays >= 1; got {config.n_steps}, "
            f"{config.n_secant}, {config.chunk_rays}"
        )
    b, r, _ = origins.shape
    bg = background_color(config.background if background is None else background, b, r, origins)
    d_star, hit, starts_inside = find_surface(origins, directions, field_fn, config)

    p_star = origins + d_star.unsqueeze(-1) * directions  # differentiable in the rays
    values, grad = sdf_and_gradient(field_fn, p_star, create_graph=False)
    slope = (grad * directions).sum(-1).detach()
    # On a hit the ray enters the object, so the slope has the inside sign; guard zeros anyway.
    safe_slope = torch.where(slope.abs() > _EPS, slope, torch.full_like(slope, _EPS))
    correction = (values - config.level) / safe_slope
    depth = torch.where(hit, d_star - correction, torch.zeros_like(d_star))
    points = origins + depth.unsqueeze(-1) * directions
    # Normals at the differentiable points, so they follow the surface as parameters move.
    _, grad = sdf_and_gradient(field_fn, points, create_graph=torch.is_grad_enabled())
    outward = grad if config.inside == "negative" else -grad
    normals = torch.where(
        hit.unsqueeze(-1),
        torch.nn.functional.normalize(outward, dim=-1, eps=_EPS),
        torch.zeros_like(outward),
    )
    rgb = None
    if color_fn is not None:
        colors = color_fn(points, normals, directions)
        if colors.shape != points.shape:
            raise RenderInputError(f"color_fn returned {list(colors.shape)} for points {list(points.shape)}")
        rgb = torch.where(hit.unsqueeze(-1), colors, bg)
    return SurfaceOutput(depth, hit, points, normals, rgb, starts_inside)
