"""VolSDF rendering of analytic shapes: silhouettes, depth, normals, gradients."""

import math

import pytest
import torch

from backend.render.cameras import orbit_cameras
from backend.render.fields import RenderInputError
from backend.render.volsdf import (
    VolSDFConfig,
    VolSDFRenderer,
    eikonal_loss,
    laplace_density,
    volsdf_render,
)

DIST, RADIUS, FOCAL, SIZE = 2.5, 0.5, 60.0, 40


def _sphere(radius, center=None):
    def sdf(p):
        c = torch.zeros(3, dtype=p.dtype) if center is None else center
        return (p - c).norm(dim=-1) - radius

    return sdf


def _flat_color(value=0.2):
    return lambda p, n, v: torch.full_like(p, value)


def _rays(size=SIZE, dtype=torch.float64, az=0.4, el=0.3, focal=FOCAL):
    cams = orbit_cameras(
        torch.tensor([az], dtype=dtype), torch.tensor([el], dtype=dtype), DIST,
        focal=focal, height=size, width=size,
    )
    o, d = cams.generate_rays()
    return o.reshape(1, -1, 3), d.reshape(1, -1, 3)


def _analytic_hits(o, d, radius):
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - radius**2)
    t = -b - disc.clamp_min(0).sqrt()
    return disc, t


def test_laplace_density_limits():
    beta = torch.tensor(0.1)
    s = torch.tensor([0.0, 5.0, -5.0])
    sigma = laplace_density(s, beta)
    assert sigma[0] == pytest.approx(0.5 / 0.1)
    assert sigma[1] == pytest.approx(0.0, abs=1e-10)
    assert sigma[2] == pytest.approx(1.0 / 0.1, rel=1e-6)
    # Continuous and monotone across the surface.
    xs = torch.linspace(-0.5, 0.5, 1001)
    assert torch.all(laplace_density(xs, beta).diff() <= 0)


def test_sphere_silhouette_depth_and_normals_match_analytic():
    o, d = _rays()
    config = VolSDFConfig(n_samples=128, beta_init=0.01)
    out = volsdf_render(o, d, _sphere(RADIUS), _flat_color(), torch.tensor(0.01, dtype=torch.float64), config)
    # Silhouette: the equivalent radius of the mask > 0.5 region vs the projected sphere.
    radius_px = math.sqrt(float((out.mask > 0.5).sum()) / math.pi)
    expected_px = FOCAL * math.tan(math.asin(RADIUS / DIST))
    assert abs(radius_px - expected_px) < 1.5, (radius_px, expected_px)
    disc, t = _analytic_hits(o, d, RADIUS)
    # Well inside the silhouette (perpendicular distance < 0.8 r): opaque, exact depth and normals.
    inner = disc > RADIUS**2 - (0.8 * RADIUS) ** 2
    assert inner.sum() > 100
    assert out.mask[inner].min() > 0.99
    assert (out.depth - t)[inner].abs().max() < 0.01
    normals_true = torch.nn.functional.normalize(o + t.unsqueeze(-1) * d, dim=-1)
    cos = (out.normals * normals_true).sum(-1)[inner]
    assert torch.rad2deg(torch.acos(cos.clamp(-1, 1))).max() < 1.0
    assert torch.allclose(out.normals[inner].norm(dim=-1), torch.ones(int(inner.sum()), dtype=torch.float64))
    # Far outside the silhouette: transparent, background colour.
    outer = disc < -0.1
    assert out.mask[outer].max() < 1e-3
    assert torch.allclose(out.rgb[outer], torch.ones_like(out.rgb[outer]), atol=1e-3)
    # Opaque pixels show the surface colour.
    assert torch.allclose(out.rgb[inner], torch.full_like(out.rgb[inner], 0.2), atol=0.01)


def test_background_options_and_bounding_sphere_misses():
    o, d = _rays(size=8, focal=8.0)
    small = _sphere(0.1)
    config = VolSDFConfig(n_samples=16, bound_radius=0.3)
    disc, _ = _analytic_hits(o, d, 0.3)
    missed = disc <= 0
    assert missed.any()
    for background, value in (("white", 1.0), ("black", 0.0), ((0.2, 0.4, 0.6), None)):
        out = volsdf_render(o, d, small, _flat_color(), torch.tensor(0.05, dtype=torch.float64), config, background=background)
        expected = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64) if value is None else torch.full((3,), value, dtype=torch.float64)
        assert torch.equal(out.in_bounds, ~missed)
        assert torch.all(out.mask[missed] == 0)
        assert torch.allclose(out.rgb[missed], expected.expand_as(out.rgb[missed]))
    per_ray = torch.rand(1, o.shape[1], 3, dtype=torch.float64)
    out = volsdf_render(o, d, small, _flat_color(), torch.tensor(0.05, dtype=torch.float64), config, background=per_ray)
    assert torch.allclose(out.rgb[missed], per_ray[missed])
    with pytest.raises(RenderInputError, match="background"):
        volsdf_render(o, d, small, _flat_color(), torch.tensor(0.05), config, background="grey")


def test_chunking_does_not_change_results():
    o, d = _rays(size=10)
    beta = torch.tensor(0.05, dtype=torch.float64)
    whole = volsdf_render(o, d, _sphere(0.5), _flat_color(), beta, VolSDFConfig(n_samples=24))
    chunked = volsdf_render(o, d, _sphere(0.5), _flat_color(), beta, VolSDFConfig(n_samples=24, chunk_rays=7))
    for name in ("rgb", "mask", "depth", "normals", "sdf_gradients"):
        assert torch.allclose(getattr(whole, name), getattr(chunked, name)), name


def test_fixed_near_far_and_batch_entries_stay_separate():
    o, d = _rays(size=6, focal=8.0)
    o2, d2 = torch.cat([o, o]), torch.cat([d, d])
    radii = torch.tensor([0.3, 0.6], dtype=torch.float64)

    def sdf(p):
        return p.norm(dim=-1) - radii.view(2, *([1] * (p.dim() - 2)))

    config = VolSDFConfig(n_samples=32, near=1.0, far=4.0, compute_normals=False)
    out = volsdf_render(o2, d2, sdf, _flat_color(), torch.tensor(0.02, dtype=torch.float64), config)
    assert out.normals is None and out.sdf_gradients is None
    assert out.mask[1].sum() > out.mask[0].sum() * 2
    single = volsdf_render(o, d, _sphere(0.3), _flat_color(), torch.tensor(0.02, dtype=torch.float64), config)
    assert torch.allclose(out.mask[:1], single.mask)


def test_training_mode_jitters_samples_and_eval_is_deterministic():
    o, d = _rays(size=4, dtype=torch.float32)
    renderer = VolSDFRenderer(VolSDFConfig(n_samples=8))
    a, b = renderer(o, d, _sphere(0.5), _flat_color()), renderer(o, d, _sphere(0.5), _flat_color())
    assert not torch.equal(a.t, b.t)
    renderer.eval()
    a, b = renderer(o, d, _sphere(0.5), _flat_color()), renderer(o, d, _sphere(0.5), _flat_color())
    assert torch.equal(a.t, b.t)
    assert renderer.beta.item() == pytest.approx(0.1)


def test_beta_is_learnable_and_eikonal_material():
    o, d = _rays(size=6, dtype=torch.float32)
    renderer = VolSDFRenderer()
    out = renderer(o, d, _sphere(0.5), _flat_color())
    out.mask.sum().backward()
    assert renderer.beta_raw.grad is not None and renderer.beta_raw.grad.abs() > 0
    assert out.sdf_gradients.shape == (1, 36, 64, 3)
    assert eikonal_loss(out.sdf_gradients, out.in_bounds) < 1e-8
    doubled = lambda p: 2.0 * _sphere(0.5)(p)
    out2 = renderer(o, d, doubled, _flat_color())
    assert eikonal_loss(out2.sdf_gradients).item() == pytest.approx(1.0, rel=1e-4)


def test_gradcheck_outputs_wrt_shape_colour_and_beta():
    """Finite differences vs autograd for every output, including the normals (double backward)."""
    o, d = _rays(size=24)
    # A few rays through the sphere's edge, where all outputs vary.
    idx = torch.tensor([24 * 12 + 6, 24 * 12 + 8, 24 * 5 + 12])
    o, d = o[:, idx], d[:, idx]
    config = VolSDFConfig(n_samples=12)

    def render(radius, center, beta, tint):
        sdf = lambda p: (p - center).norm(dim=-1) - radius
        color = lambda p, n, v: torch.sigmoid(p * tint + n)
        out = volsdf_render(o, d, sdf, color, beta, config)
        return out.rgb, out.mask, out.depth, out.normals

    inputs = (
        torch.tensor(0.55, dtype=torch.float64, requires_grad=True),
        torch.tensor([0.02, -0.03, 0.05], dtype=torch.float64, requires_grad=True),
        torch.tensor(0.08, dtype=torch.float64, requires_grad=True),
        torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradcheck_wrt_ray_origins():
    o, d = _rays(size=16)
    idx = torch.tensor([16 * 8 + 4, 16 * 3 + 8])
    o, d = o[:, idx].clone().requires_grad_(True), d[:, idx]
    config = VolSDFConfig(n_samples=10, near=1.5, far=3.5)

    def render(origins):
        out = volsdf_render(origins, d, _sphere(0.5), _flat_color(0.3), torch.tensor(0.1, dtype=torch.float64), config)
        return out.mask, out.depth

    assert torch.autograd.gradcheck(render, (o,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_bad_inputs_are_reported():
    o, d = _rays(size=4)
    with pytest.raises(RenderInputError, match="origins"):
        volsdf_render(o[0], d[0], _sphere(0.5), _flat_color(), torch.tensor(0.1), VolSDFConfig())
    with pytest.raises(RenderInputError, match="sdf_fn"):
        volsdf_render(o, d, lambda p: p.norm(dim=-1, keepdim=True), _flat_color(), torch.tensor(0.1), VolSDFConfig())
    with pytest.raises(RenderInputError, match="near"):
        volsdf_render(o, d, _sphere(0.5), _flat_color(), torch.tensor(0.1), VolSDFConfig(near=2.0, far=1.0))
