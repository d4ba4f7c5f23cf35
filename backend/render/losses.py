"""Losses on rendered masks and on SDF fields, used both by training (`backend.train.losses`) and
by the reconstruction's test-time refinement (`backend.pipelines.reconstruct.fitting`)."""

from __future__ import annotations

import torch


def soft_iou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft IoU per batch entry, averaged: pred/target [B, N] in [0, 1]."""
    inter = (pred * target).sum(-1)
    union = (pred + target - pred * target).sum(-1)
    return (1.0 - inter / union.clamp_min(1e-6)).mean()


def mirror_asymmetry(sdf_fn, points: torch.Tensor) -> torch.Tensor:
    """Mean |SDF(x, y, z) - SDF(-x, y, z)| at ``points`` [..., 3]: a soft prior of mirror symmetry
    about the YZ plane, for SDF nets that are not symmetric by construction."""
    mirrored = points * points.new_tensor([-1.0, 1.0, 1.0])
    return (sdf_fn(points) - sdf_fn(mirrored)).abs().mean()
