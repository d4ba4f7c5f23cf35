"""Training losses of the shape model (ShapeClipper's image losses + 3D supervision).

Every function returns a scalar tensor; `training_losses` combines them for one `Batch`. The two
that test-time refinement uses too (`soft_iou_loss`, `mirror_asymmetry`) live on the serving side,
in `backend.render.losses`.
"""

from __future__ import annotations

import math

import torch

from backend.render.losses import mirror_asymmetry, soft_iou_loss
from backend.train.config import LossWeights
from backend.train.data import Batch


def normal_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, drop: float) -> torch.Tensor:
    """Mean 1 - cos over ``valid`` rays [B, N] after dropping the worst ``drop`` share.

    ShapeClipper drops the largest errors because silhouette pixels and thin parts carry normals
    that a smooth coarse field cannot match; they would otherwise dominate the term.
    """
    err = 1.0 - (pred * target).sum(-1)
    err = err[valid]
    if err.numel() == 0:
        return pred.sum() * 0.0
    keep = max(1, math.ceil(err.numel() * (1.0 - drop)))
    return torch.topk(err, keep, largest=False).values.mean()


def clamped_l1(pred: torch.Tensor, target: torch.Tensor, clamp: float) -> torch.Tensor:
    """Mean |clamp(pred) - clamp(target)| (DeepSDF): the surface neighbourhood matters most."""
    return (pred.clamp(-clamp, clamp) - target.clamp(-clamp, clamp)).abs().mean()


def viewpoint_loss(sincos: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between predicted unit (sin, cos) pairs [B, 3, 2] and target angles [B, 3] (radians)."""
    goal = torch.stack([torch.sin(target), torch.cos(target)], dim=-1)
    return ((sincos - goal) ** 2).sum(-1).mean()


def training_losses(model, renderer, batch: Batch, weights: LossWeights, render: bool = True
                    ) -> dict[str, torch.Tensor]:
    """All loss terms for ``batch`` plus their weighted ``total``.

    ``model`` is a `ShapeModel`, ``renderer`` a `VolSDFRenderer`. Rendering losses are skipped
    when ``render`` is False (the 3D and viewpoint terms still apply).
    """
    from backend.render.fields import sdf_and_gradient
    from backend.render.volsdf import eikonal_loss

    codes = model.encode(batch.images)
    sdf_fn, color_fn = model.fields(codes)
    out: dict[str, torch.Tensor] = {}
    zero = codes.shape.sum() * 0.0

    if render and (weights.rgb or weights.mask or weights.normals or weights.eikonal):
        result = renderer(batch.origins, batch.directions, sdf_fn, color_fn, background="white")
        out["rgb"] = ((result.rgb - batch.rgb) ** 2).mean()
        out["mask"] = soft_iou_loss(result.mask, batch.alpha)
        valid = (batch.alpha > 0.5) & batch.has_normals[:, None] & (result.mask > 0.5).detach()
        out["normals"] = normal_loss(result.normals, batch.normals, valid, weights.normals_drop)
        out["eikonal_render"] = eikonal_loss(result.sdf_gradients, result.in_bounds)

    has_points = batch.has_points
    if bool(has_points.any()) and (weights.sdf or weights.occupancy or weights.eikonal):
        values, grad = sdf_and_gradient(sdf_fn, batch.sdf_points, create_graph=weights.eikonal > 0)
        sdf_rows = has_points & batch.has_sdf
        occ_rows = has_points & ~batch.has_sdf
        if bool(sdf_rows.any()):
            out["sdf"] = clamped_l1(values[sdf_rows], batch.sdf[sdf_rows], weights.sdf_clamp)
        if bool(occ_rows.any()):
            # occupancy logit = -sdf / 0.01: a 1 cm band around the surface is uncertain
            out["occupancy"] = torch.nn.functional.binary_cross_entropy_with_logits(
                -values[occ_rows] / 0.01, batch.occupancy[occ_rows])
        out["eikonal_points"] = ((grad[has_points].norm(dim=-1) - 1.0) ** 2).mean()

    if weights.surface_color and bool(batch.has_colors.any()):
        rows = batch.has_colors
        pred = model.color(batch.surface_points[rows], codes.color[rows])
        out["surface_color"] = ((pred - batch.surface_colors[rows]) ** 2).mean()

    if weights.symmetry and not model.config.sdf.symmetric and bool(has_points.any()):
        out["symmetry"] = mirror_asymmetry(sdf_fn, batch.sdf_points)

    if weights.viewpoint and codes.viewpoint is not None:
        out["viewpoint"] = viewpoint_loss(codes.viewpoint.sincos, batch.viewpoint)

    total = zero
    for name, value in out.items():
        weight = weights.eikonal if name.startswith("eikonal") else getattr(weights, name)
        total = total + weight * value
    out["total"] = total
    return out
