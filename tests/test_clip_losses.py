"""CLIP guidance losses, backgrounds and augmentations."""

from __future__ import annotations

import pytest
import torch

from backend.models.clip_testing import load_tiny_clip
from backend.models.losses_clip import (
    ClipAugmentConfig,
    ClipGuidanceWeights,
    _homography_from_unit_square,
    augment_for_clip,
    background_l1_loss,
    clip_consistency_loss,
    clip_guidance_loss,
    composite_background,
    random_background_colors,
)


def test_iss_weights():
    weights = ClipGuidanceWeights()
    assert (weights.clip, weights.background) == (4.0, 3.0)


def test_consistency_loss_values():
    text = torch.tensor([1.0, 0.0, 0.0])
    views = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [-1.0, 0.0, 0.0]])
    # cos = 1, 0, -1 → 1 − cos = 0, 1, 2 → mean 1
    assert clip_consistency_loss(views, text).item() == pytest.approx(1.0)
    assert clip_consistency_loss(views[:1], text[None]).item() == pytest.approx(0.0)
    per_view = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert clip_consistency_loss(views, per_view).item() == pytest.approx((0 + 0 + 2) / 3)
    with pytest.raises(ValueError):
        clip_consistency_loss(views, torch.ones(2, 3))


def test_background_l1_counts_only_background_pixels():
    rgb = torch.zeros(2, 3, 4, 4)
    rgb[:, :, :2] = 1.0  # top half white, bottom half black
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :2] = 1.0
    white = torch.ones(3)
    assert background_l1_loss(rgb, mask, white).item() == pytest.approx(0.0)
    assert background_l1_loss(rgb, 1.0 - mask, white).item() == pytest.approx(1.0)
    grey = torch.full((2, 3), 0.25)
    assert background_l1_loss(rgb, mask, grey).item() == pytest.approx(0.75)
    assert background_l1_loss(rgb, torch.zeros_like(mask), white).item() == 0.0
    with pytest.raises(ValueError):
        background_l1_loss(rgb, mask[:, :, :2], white)


def test_composite_and_random_backgrounds():
    colors = random_background_colors(5, generator=torch.Generator().manual_seed(0))
    assert colors.shape == (5, 3) and colors.min() >= 0 and colors.max() <= 1
    rgb = torch.rand(5, 3, 6, 6)
    alpha = torch.zeros(5, 1, 6, 6)
    alpha[..., :3] = 1.0
    out = composite_background(rgb * alpha, alpha, colors)
    assert torch.allclose(out[..., :3], rgb[..., :3])
    assert torch.allclose(out[..., 3:], colors[:, :, None, None].expand(5, 3, 6, 3))


def test_homography_maps_the_square_onto_the_corners():
    corners = torch.tensor([[[-0.9, -0.8], [0.7, -1.0], [0.95, 0.6], [-0.6, 0.9]]])
    h = _homography_from_unit_square(corners)
    square = torch.tensor([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]])
    mapped = square @ h[0].T
    assert torch.allclose(mapped[:, :2] / mapped[:, 2:], corners[0], atol=1e-5)


def test_augment_identity_when_switched_off():
    images = torch.rand(2, 3, 16, 20)
    same = augment_for_clip(images, ClipAugmentConfig(min_crop_scale=1.0, perspective=0.0))
    assert torch.allclose(same, images, atol=1e-5)


def test_augment_crops_and_is_differentiable_and_seeded():
    width = 32
    ramp = torch.linspace(0, 1, width).view(1, 1, 1, width).expand(3, 3, 24, width).clone().requires_grad_(True)
    config = ClipAugmentConfig(min_crop_scale=0.5, perspective=0.0)
    out = augment_for_clip(ramp, config, torch.Generator().manual_seed(0))
    assert out.shape == ramp.shape
    row = out[:, 0, 12]
    assert (row[:, 1:] - row[:, :-1] >= -1e-6).all()  # still a left-to-right ramp
    assert ((row[:, -1] - row[:, 0]) < 0.99).all()  # but zoomed in: a crop
    out.sum().backward()
    assert ramp.grad.abs().sum() > 0
    again = augment_for_clip(ramp.detach(), config, torch.Generator().manual_seed(0))
    assert torch.equal(again, out.detach())
    jittered = augment_for_clip(ramp.detach(), ClipAugmentConfig(), torch.Generator().manual_seed(0))
    assert not torch.allclose(jittered, out.detach())
    with pytest.raises(ValueError):
        ClipAugmentConfig(min_crop_scale=0.0)


def test_guidance_loss_falls_when_optimising_an_image_toward_a_text():
    clip = load_tiny_clip()
    text = clip.encode_text(["a small red teapot"])[0]
    torch.manual_seed(0)
    logits = torch.zeros(2, 3, 32, 32).uniform_(-0.1, 0.1).requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=0.1)
    background = torch.ones(3)
    no_background = torch.zeros(2, 1, 32, 32)
    generator = torch.Generator().manual_seed(0)
    history = []
    for _ in range(15):
        terms = clip_guidance_loss(
            clip,
            torch.sigmoid(logits),
            text,
            background_mask=no_background,
            background=background,
            augment=ClipAugmentConfig(),
            generator=generator,
        )
        optimiser.zero_grad()
        terms.total.backward()
        optimiser.step()
        history.append(terms.clip.item())
    assert terms.background.item() == 0.0
    assert history[-1] < history[0] - 0.1
    assert all(p.grad is None for p in clip.parameters())


def test_guidance_loss_weights_both_terms():
    clip = load_tiny_clip()
    text = clip.encode_text(["a chair"])
    rgb = torch.zeros(1, 3, 32, 32)
    mask = torch.ones(1, 1, 32, 32)
    weights = ClipGuidanceWeights(clip=2.0, background=5.0)
    terms = clip_guidance_loss(clip, rgb, text, background_mask=mask, background=torch.ones(3), weights=weights)
    assert terms.background.item() == pytest.approx(1.0)
    assert terms.total.item() == pytest.approx(2.0 * terms.clip.item() + 5.0, rel=1e-5)
