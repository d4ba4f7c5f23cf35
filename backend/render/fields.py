"""Shared pieces of the renderers: field callables, ray bounds, backgrounds, SDF gradients.

Field interface (both renderers, the shape model and analytic shapes):

* ``sdf_fn(points) -> values``: points [B, ..., 3] -> [B, ...]. The leading dimension is the
  batch of images/shape codes; the renderers never mix batch entries.
* ``color_fn(points, normals, viewdirs) -> rgb``: points [B, ..., 3], unit normals or None,
  unit view directions (camera -> point) [B, ..., 3] -> rgb [B, ..., 3] in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SDFFn = Callable[[torch.Tensor], torch.Tensor]
ColorFn = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor]
Background = str | torch.Tensor | tuple | None


class RenderInputError(ValueError):
    """Rays, fields or options passed to a renderer are malformed."""


def check_rays(origins: torch.Tensor, directions: torch.Tensor) -> None:
    """Rays must be [B, R, 3] of equal shape and floating dtype."""
    if origins.dim() != 3 or origins.shape[-1] != 3:
        raise RenderInputError(f"ray origins must be [B, R, 3], got {list(origins.shape)}")
    if directions.shape != origins.shape:
        raise RenderInputError(
            f"ray directions {list(directions.shape)} must match origins {list(origins.shape)}"
        )
    if not origins.is_floating_point() or origins.dtype != directions.dtype:
        raise RenderInputError(f"rays must share a floating dtype, got {origins.dtype}, {directions.dtype}")


def ray_bounds(
    origins: torch.Tensor,
    directions: torch.Tensor,
    near: float | None,
    far: float | None,
    bound_radius: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-ray ``(near [B, R], far [B, R], valid [B, R] bool)``.

    With explicit ``near``/``far`` every ray is valid. Otherwise the interval is the
    intersection with the origin-centred sphere of ``bound_radius`` (clamped to start at the
    camera); rays that miss it get an empty interval (near == far) and ``valid`` False.
    Directions must be unit length. The bounds carry no gradient: samples are placed, not learned.
    """
    with torch.no_grad():
        if near is not None or far is not None:
            if near is None or far is None or not 0.0 <= near < far:
                raise RenderInputError(f"need 0 <= near < far, got near={near}, far={far}")
            shape = origins.shape[:-1]
            return (
                torch.full(shape, float(near), dtype=origins.dtype, device=origins.device),
                torch.full(shape, float(far), dtype=origins.dtype, device=origins.device),
                torch.ones(shape, dtype=torch.bool, device=origins.device),
            )
        if bound_radius <= 0:
            raise RenderInputError(f"bound_radius must be positive, got {bound_radius}")
        o, d = origins.detach(), directions.detach()
        b = (o * d).sum(-1)
        c = (o * o).sum(-1) - bound_radius**2
        disc = b * b - c
        valid = disc > 0
        root = disc.clamp_min(0).sqrt()
        t0 = (-b - root).clamp_min(0.0)
        t1 = (-b + root).clamp_min(0.0)
        valid = valid & (t1 > t0)
        t1 = torch.where(valid, t1, t0)
        return t0, t1, valid


def background_color(
    background: Background, batch: int, rays: int, like: torch.Tensor
) -> torch.Tensor:
    """Resolve a background spec to [B, R, 3]: "white", "black", an RGB tuple, or a tensor
    [3], [B, 3] or [B, R, 3]."""
    if isinstance(background, str):
        named = {"white": 1.0, "black": 0.0}
        if background not in named:
            raise RenderInputError(f"background must be 'white', 'black', RGB or a tensor, got {background!r}")
        return torch.full((batch, rays, 3), named[background], dtype=like.dtype, device=like.device)
    value = torch.as_tensor(background, dtype=like.dtype, device=like.device)
    if value.shape == (3,):
        return value.expand(batch, rays, 3)
    if value.shape == (batch, 3):
        return value.unsqueeze(1).expand(batch, rays, 3)
    if value.shape == (batch, rays, 3):
        return value
    raise RenderInputError(
        f"background tensor must be [3], [B, 3] or [B, R, 3] (B={batch}, R={rays}), got {list(value.shape)}"
    )


def sdf_and_gradient(
    sdf_fn: SDFFn, points: torch.Tensor, create_graph: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluate ``sdf_fn`` and its spatial gradient by autograd.

    The values keep their graph when grad mode is on at the call (so they train the field).
    With ``create_graph`` the gradient is differentiable too (normals and eikonal terms reach
    the field's parameters); otherwise it is detached. Works under ``torch.no_grad``.
    """
    track = torch.is_grad_enabled()
    with torch.enable_grad():
        pts = points if points.requires_grad else points.detach().requires_grad_(True)
        values = sdf_fn(pts)
        if values.shape != pts.shape[:-1]:
            raise RenderInputError(
                f"sdf_fn returned shape {list(values.shape)} for points {list(pts.shape)}; "
                f"expected {list(pts.shape[:-1])}"
            )
        (grad,) = torch.autograd.grad(
            values, pts, grad_outputs=torch.ones_like(values),
            create_graph=create_graph, retain_graph=track or create_graph,
        )
    return (values if track else values.detach()), (grad if create_graph else grad.detach())
