"""Surface rendering: hits and depth of analytic shapes and the implicit depth gradient."""

import pytest
import torch

from backend.render.cameras import orbit_cameras
from backend.render.fields import RenderInputError
from backend.render.surface import SurfaceConfig, surface_render

F64 = torch.float64


def _rays(size=16, az=0.5, el=0.25, dist=2.5, focal=24.0):
    cams = orbit_cameras(
        torch.tensor([az], dtype=F64), torch.tensor([el], dtype=F64), dist, focal=focal, height=size, width=size
    )
    o, d = cams.generate_rays()
    return o.reshape(1, -1, 3), d.reshape(1, -1, 3)


def _box_sdf(half, center):
    def sdf(p):
        q = (p - center).abs() - half
        return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)

    return sdf


def test_sphere_hits_and_depth_match_ray_sphere_intersection():
    o, d = _rays()
    radius = 0.6
    out = surface_render(o, d, lambda p: p.norm(dim=-1) - radius)
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - radius**2)
    clear = disc.abs() > 1e-3  # grazing rays are decided by sampling either way
    assert torch.equal(out.hit[clear], (disc > 0)[clear])
    assert out.hit.sum() > 50 and (~out.hit).sum() > 20
    t = -b - disc.clamp_min(0).sqrt()
    assert (out.depth - t)[out.hit].abs().max() < 1e-9
    assert torch.all(out.depth[~out.hit] == 0)
    assert torch.allclose(out.points[out.hit].norm(dim=-1), torch.full((int(out.hit.sum()),), radius, dtype=F64))
    assert torch.allclose(out.normals[out.hit], out.points[out.hit] / radius)
    assert torch.all(out.normals[~out.hit] == 0)


def test_depth_gradient_wrt_radius_is_minus_one_on_the_central_ray():
    o = torch.tensor([[[0.0, -3.0, 0.0]]], dtype=F64)
    d = torch.tensor([[[0.0, 1.0, 0.0]]], dtype=F64)
    radius = torch.tensor(0.5, dtype=F64, requires_grad=True)
    out = surface_render(o, d, lambda p: p.norm(dim=-1) - radius, config=SurfaceConfig(near=0.5, far=5.0))
    assert out.depth.item() == pytest.approx(2.5, abs=1e-10)
    out.depth.sum().backward()
    assert radius.grad.item() == pytest.approx(-1.0, abs=1e-9)


def test_gradcheck_sphere_depth_points_normals_wrt_shape_and_rays():
    o, d = _rays(size=12)
    idx = torch.tensor([12 * 6 + 6, 12 * 6 + 3, 12 * 3 + 7])
    o, d = o[:, idx].clone(), d[:, idx].clone()
    config = SurfaceConfig(n_steps=64, n_secant=12)

    def render(radius, center, origins, directions):
        directions = torch.nn.functional.normalize(directions, dim=-1)
        out = surface_render(origins, directions, lambda p: (p - center).norm(dim=-1) - radius, config=config)
        assert out.hit.all()
        return out.depth, out.points, out.normals

    inputs = (
        torch.tensor(0.55, dtype=F64, requires_grad=True),
        torch.tensor([0.03, -0.02, 0.04], dtype=F64, requires_grad=True),
        o.requires_grad_(True),
        d.requires_grad_(True),
    )
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradcheck_box_depth_wrt_half_extents_and_center():
    o, d = _rays(size=12, az=0.3, el=0.35)
    idx = torch.tensor([12 * 6 + 6, 12 * 5 + 4, 12 * 7 + 8])
    o, d = o[:, idx], d[:, idx]
    config = SurfaceConfig(n_steps=64, n_secant=12)

    def render(half, center):
        out = surface_render(o, d, _box_sdf(half, center), config=config)
        assert out.hit.all()
        return out.depth, out.points

    inputs = (
        torch.tensor([0.4, 0.3, 0.35], dtype=F64, requires_grad=True),
        torch.tensor([0.02, 0.01, -0.03], dtype=F64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_box_front_face_depth_and_normal():
    o = torch.tensor([[[0.1, -3.0, 0.05]]], dtype=F64)
    d = torch.tensor([[[0.0, 1.0, 0.0]]], dtype=F64)
    half = torch.tensor([0.4, 0.3, 0.35], dtype=F64, requires_grad=True)
    out = surface_render(o, d, _box_sdf(half, torch.zeros(3, dtype=F64)))
    assert out.depth.item() == pytest.approx(2.7, abs=1e-10)
    assert torch.allclose(out.normals[0, 0], torch.tensor([0.0, -1.0, 0.0], dtype=F64))
    out.depth.sum().backward()
    assert torch.allclose(half.grad, torch.tensor([0.0, -1.0, 0.0], dtype=F64), atol=1e-9)


def test_occupancy_convention_and_colour():
    o, d = _rays(size=10)
    sdf = lambda p: p.norm(dim=-1) - 0.6
    logits = lambda p: -20.0 * sdf(p)  # inside positive, like DVR occupancy logits
    color = lambda p, n, v: 0.5 + 0.5 * n
    a = surface_render(o, d, sdf, color)
    b = surface_render(o, d, logits, color, SurfaceConfig(inside="positive"), background="black")
    assert torch.equal(a.hit, b.hit)
    assert torch.allclose(a.depth, b.depth, atol=1e-9)
    assert torch.allclose(a.normals, b.normals, atol=1e-9)
    assert torch.allclose(a.rgb[a.hit], b.rgb[b.hit])
    assert torch.all(a.rgb[~a.hit] == 1.0) and torch.all(b.rgb[~b.hit] == 0.0)
    with pytest.raises(RenderInputError, match="inside"):
        surface_render(o, d, sdf, config=SurfaceConfig(inside="outside"))


def test_thin_shell_first_crossing_and_camera_inside():
    # Two nested spheres as a shell: the first crossing is the outer one.
    o = torch.tensor([[[0.0, -3.0, 0.0], [0.0, 0.0, 0.0]]], dtype=F64)
    d = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]], dtype=F64)
    shell = lambda p: (p.norm(dim=-1) - 0.5).abs() - 0.05
    out = surface_render(o, d, shell, config=SurfaceConfig(near=0.0, far=6.0, n_steps=256))
    assert out.hit[0, 0] and out.depth[0, 0].item() == pytest.approx(3.0 - 0.55, abs=1e-9)
    # From the centre (outside the shell material) the ray enters the shell at 0.45.
    assert out.hit[0, 1] and out.depth[0, 1].item() == pytest.approx(0.45, abs=1e-9)
    solid = surface_render(o, d, lambda p: p.norm(dim=-1) - 0.5, config=SurfaceConfig(near=0.0, far=6.0))
    assert solid.starts_inside[0, 1] and not solid.hit[0, 1]


def test_gradients_reach_mlp_parameters():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Softplus(beta=10), torch.nn.Linear(16, 1)).double()
    with torch.no_grad():
        net[2].bias.fill_(-0.2)
    field = lambda p: p.norm(dim=-1) - 0.5 + 0.1 * net(p).squeeze(-1)
    o, d = _rays(size=8)
    out = surface_render(o, d, field)
    assert out.hit.any()
    out.depth[out.hit].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
