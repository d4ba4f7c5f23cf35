"""Shape model on CPU: shapes, sphere initialisation, symmetry, rendering, input checks, overfit."""

import math

import numpy as np
import pytest
import torch

from backend.models.encoders import EncoderConfig, EncoderInputError, azimuth_sector, prepare_images
from backend.models.shape_model import (
    ColorNetConfig,
    SDFNetConfig,
    ShapeModel,
    ShapeModelConfig,
    ShapeModelInputError,
    positional_encoding,
)
from backend.render.cameras import orbit_cameras
from backend.render.volsdf import VolSDFConfig, VolSDFRenderer, eikonal_loss


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ShapeModel(ShapeModelConfig.preset("cpu"))


def _unit_dirs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)


def test_encode_shapes_and_viewpoint(model):
    codes = model.encode(torch.rand(2, 3, 64, 64))
    config = model.config
    assert codes.shape.shape == (2, config.shape_dim) and codes.color.shape == (2, config.color_dim)
    vp = codes.viewpoint
    assert vp.azimuth.shape == vp.elevation.shape == vp.roll.shape == (2,)
    assert torch.allclose(vp.sincos.norm(dim=-1), torch.ones(2, 3), atol=1e-5)
    assert torch.allclose(torch.sin(vp.azimuth), vp.sincos[:, 0, 0], atol=1e-5)
    points = torch.rand(2, 5, 7, 3) - 0.5
    assert model.sdf(points, codes.shape).shape == (2, 5, 7)
    rgb = model.color(points, codes.color)
    assert rgb.shape == (2, 5, 7, 3) and rgb.min() > 0 and rgb.max() < 1


@pytest.mark.parametrize("preset", ["cpu", "gpu"])
def test_sphere_initialisation(preset):
    torch.manual_seed(1)
    m = ShapeModel(ShapeModelConfig.preset(preset))
    codes = torch.randn(3, m.config.shape_dim)  # the init must not depend on the code
    with torch.no_grad():
        origin = m.sdf(torch.zeros(3, 1, 3), codes)
        on_sphere = m.sdf(0.5 * _unit_dirs(500).expand(3, -1, -1), codes)
        inside = m.sdf(0.25 * _unit_dirs(500, 1).expand(3, -1, -1), codes)
        outside = m.sdf(0.9 * _unit_dirs(500, 2).expand(3, -1, -1), codes)
    assert torch.allclose(origin, torch.full_like(origin, -0.5), atol=0.06)
    assert on_sphere.abs().max() < 0.02
    assert (inside + 0.25).abs().max() < 0.02
    assert (outside - 0.4).abs().max() < 0.04


def test_sphere_initialisation_renders_the_sphere_silhouette(model):
    size, focal, dist = 24, 30.0, 2.5
    cams = orbit_cameras(torch.tensor([0.7]), torch.tensor([0.2]), dist, focal=focal, height=size, width=size)
    o, d = cams.generate_rays()
    codes = model.encode(torch.rand(1, 3, 64, 64))
    sdf_fn, color_fn = model.fields(codes)
    renderer = VolSDFRenderer(VolSDFConfig(n_samples=48, beta_init=0.01)).eval()
    with torch.no_grad():
        out = renderer(o.reshape(1, -1, 3), d.reshape(1, -1, 3), sdf_fn, color_fn)
    radius_px = math.sqrt(float((out.mask > 0.5).sum()) / math.pi)
    assert abs(radius_px - focal * math.tan(math.asin(0.5 / dist))) < 1.5


def test_blurred_encoding_is_the_encoding_averaged_over_jittered_points():
    torch.manual_seed(0)
    x = torch.rand(5, 3, dtype=torch.float64) - 0.5
    plain = positional_encoding(x, 6)
    assert torch.equal(positional_encoding(x, 6, 0.0), plain)
    jitter = 0.05 * torch.randn(100_000, 1, 3, dtype=torch.float64)
    averaged = positional_encoding(x + jitter, 6).mean(0)
    blurred = positional_encoding(x, 6, 0.05)
    assert torch.allclose(blurred, averaged, atol=0.01)
    assert torch.equal(blurred[:, :3], x)  # the coordinates themselves pass unchanged
    # the top octave (2^5) fades to exp(-(32 * 0.05)^2 / 2) = 0.28 of its amplitude, the lowest hardly
    top = slice(3 + 15, 3 + 18)
    assert torch.allclose(blurred[:, top], plain[:, top] * math.exp(-0.5 * (32 * 0.05) ** 2))
    assert torch.allclose(blurred[:, 3:6], plain[:, 3:6] * math.exp(-0.5 * 0.05 ** 2))


def test_encoding_blur_is_the_networks_setting_unless_a_call_overrides_it():
    torch.manual_seed(0)
    model = ShapeModel(ShapeModelConfig.preset("cpu"))
    codes = model.encode(torch.rand(1, 3, 64, 64))
    with torch.no_grad():
        for param in model.sdf_net.parameters():
            param.add_(0.05 * torch.randn_like(param))
    p = torch.rand(1, 50, 3) - 0.5
    assert model.sdf_net.encoding_blur == 0.0  # what training sees
    plain = model.sdf(p, codes.shape)
    model.sdf_net.encoding_blur = 0.05
    blurred = model.sdf(p, codes.shape)
    assert not torch.allclose(blurred, plain)
    assert torch.equal(model.sdf(p, codes.shape, encoding_blur=0.0), plain)
    assert torch.equal(model.sdf_field(codes.shape[0], 0.0)(p[0]), plain[0])
    assert torch.equal(model.sdf_field(codes.shape[0])(p[0]), blurred[0])


def test_mirror_symmetry():
    torch.manual_seed(0)
    model = ShapeModel(ShapeModelConfig(sdf=SDFNetConfig(symmetric=True), color=ColorNetConfig(symmetric=True)))
    codes = model.encode(torch.rand(2, 3, 64, 64))
    p = torch.rand(2, 100, 3) - 0.5
    mirrored = p * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.equal(model.sdf(p, codes.shape), model.sdf(mirrored, codes.shape))
    assert torch.equal(model.color(p, codes.color), model.color(mirrored, codes.color))
    torch.manual_seed(0)
    free = ShapeModel(ShapeModelConfig(sdf=SDFNetConfig(symmetric=False), color=ColorNetConfig(symmetric=False)))
    with torch.no_grad():
        for param in free.sdf_net.parameters():
            param.add_(0.05 * torch.randn_like(param))
    codes = free.encode(torch.rand(2, 3, 64, 64))
    assert not torch.allclose(free.sdf(p, codes.shape), free.sdf(mirrored, codes.shape))
    assert not torch.allclose(free.color(p, codes.color), free.color(mirrored, codes.color))


def test_render_backward_reaches_every_part():
    torch.manual_seed(0)
    m = ShapeModel()
    renderer = VolSDFRenderer(VolSDFConfig(n_samples=16))
    cams = orbit_cameras(torch.tensor([0.0, 1.0]), torch.tensor([0.1, 0.3]), 2.5, focal=20.0, height=8, width=8)
    o, d = cams.generate_rays()
    codes = m.encode(torch.rand(2, 3, 64, 64))
    sdf_fn, color_fn = m.fields(codes)
    out = renderer(o.reshape(2, -1, 3), d.reshape(2, -1, 3), sdf_fn, color_fn)
    assert out.rgb.shape == (2, 64, 3) and out.normals.shape == (2, 64, 3)
    loss = out.rgb.mean() + out.mask.mean() + out.normals.sum() * 1e-3 + eikonal_loss(out.sdf_gradients)
    loss = loss + codes.viewpoint.sincos.sum()
    loss.backward()
    groups = {
        "backbone": m.encoder.backbone, "shape_head": m.encoder.shape_head,
        "color_head": m.encoder.color_head, "view_head": m.encoder.view_head,
        "sdf_net": m.sdf_net, "color_net": m.color_net,
    }
    for name, module in groups.items():
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0, name
    assert renderer.beta_raw.grad is not None


def test_input_checks(model):
    with pytest.raises(EncoderInputError, match="RGB"):
        model.encode(torch.rand(1, 4, 64, 64))
    with pytest.raises(EncoderInputError, match=r"\[0, 1\]"):
        model.encode(torch.rand(1, 3, 64, 64) * 255)
    with pytest.raises(ShapeModelInputError, match="shape_code"):
        model.sdf(torch.zeros(2, 10, 3), torch.zeros(3, model.config.shape_dim))
    with pytest.raises(ShapeModelInputError, match="points"):
        model.color(torch.zeros(2, 10, 2), torch.zeros(2, model.config.color_dim))
    with pytest.raises(ValueError, match="backbone"):
        ShapeModel(ShapeModelConfig(encoder=EncoderConfig(backbone="vgg")))
    with pytest.raises(ValueError, match="pool"):
        ShapeModel(ShapeModelConfig(encoder=EncoderConfig(pool="max")))
    with pytest.raises(ValueError, match="divisible"):
        ShapeModel(ShapeModelConfig(encoder=EncoderConfig(pool="flatten", image_size=60)))
    with pytest.raises(EncoderInputError, match="64x64"):
        model.encode(torch.rand(1, 3, 96, 96))


def test_flattened_features_know_where_things_are():
    """The same blob on the left or on the right of the picture: after global average pooling
    of a shift-equivariant CNN the two differ only through border effects; flattened, by where
    the blob is."""
    torch.manual_seed(0)
    left, right = torch.ones(1, 3, 64, 64), torch.ones(1, 3, 64, 64)
    left[..., 24:40, 8:24] = 0.2
    right[..., 24:40, 40:56] = 0.2
    features = {}
    for pool in ("mean", "flatten"):
        cnn = ShapeModel(ShapeModelConfig(encoder=EncoderConfig(pool=pool))).encoder.backbone.eval()
        with torch.no_grad():
            a, b = cnn(left), cnn(right)
        features[pool] = float((a - b).norm() / a.norm())
    assert features["flatten"] > 2 * features["mean"], features  # measured: 0.39 vs 0.12
    with pytest.raises(ValueError, match="preset"):
        ShapeModelConfig.preset("tpu")


def test_prepare_images_composites_and_pads():
    rgba = torch.zeros(1, 4, 20, 40)
    rgba[:, 0, :, 10:30] = 1.0  # red where opaque
    rgba[:, 3, :, 10:30] = 1.0
    out = prepare_images(rgba, size=40)
    assert out.shape == (1, 3, 40, 40)
    # Transparent pixels and the padding become white; the opaque block stays red.
    assert torch.allclose(out[0, :, 2, 2], torch.ones(3))
    assert torch.allclose(out[0, :, 20, 2], torch.ones(3))
    assert torch.allclose(out[0, :, 20, 20], torch.tensor([1.0, 0.0, 0.0]))
    black = prepare_images(rgba, size=16, background=(0.0, 0.0, 0.0))
    assert black.shape == (1, 3, 16, 16) and torch.allclose(black[0, :, 0, 0], torch.zeros(3))


def test_resnet_backbones_build_without_downloads():
    torch.manual_seed(0)
    m = ShapeModel(ShapeModelConfig(encoder=EncoderConfig(backbone="resnet18", head_hidden=32, viewpoint_head=False)))
    m.eval()
    codes = m.encode(torch.rand(1, 3, 64, 64))
    assert codes.shape.shape == (1, m.config.shape_dim) and codes.viewpoint is None
    gpu = ShapeModel(ShapeModelConfig.preset("gpu")).eval()
    with torch.no_grad():
        codes = gpu.encode(torch.rand(1, 3, 64, 64))
    assert codes.shape.shape == (1, 256) and codes.color.shape == (1, 256)


def test_model_mesh_extraction_at_init(model):
    code = model.encode(torch.rand(1, 3, 64, 64)).shape[0].detach()
    mesh = model.extract_mesh(code, resolution=32)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radii - 0.5).max() < 0.03
    with pytest.raises(ShapeModelInputError):
        model.extract_mesh(code[:10])


def test_overfit_sdf_mlp_to_a_box():
    torch.manual_seed(0)
    m = ShapeModel()
    half = torch.tensor([0.35, 0.15, 0.25])

    def box(p):
        q = p.abs() - half
        return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)

    code = torch.zeros(1, m.config.shape_dim)
    opt = torch.optim.Adam(m.sdf_net.parameters(), lr=2e-3)
    test_points = torch.rand(1, 4096, 3, generator=torch.Generator().manual_seed(1)) * 1.2 - 0.6

    def error():
        with torch.no_grad():
            return float((m.sdf(test_points, code) - box(test_points)).abs().mean())

    before = error()
    for _ in range(60):
        p = torch.rand(1, 1024, 3) * 1.2 - 0.6
        loss = (m.sdf(p, code) - box(p)).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = error()
    assert after < 0.25 * before, (before, after)


def test_overfit_code_and_sdf_to_a_sphere_silhouette():
    """Auto-decoder style: a shape code and the SDF network fitted to two silhouettes of a
    smaller sphere through the VolSDF renderer (soft-IoU loss). A 5x64 SDF network: the
    mechanism is under test, and the step sizes below are tuned for that width."""
    torch.manual_seed(0)
    m = ShapeModel(ShapeModelConfig(shape_dim=64, sdf=SDFNetConfig(hidden=64, layers=5)))
    renderer = VolSDFRenderer(VolSDFConfig(n_samples=24, beta_init=0.03)).eval()
    cams = orbit_cameras(torch.tensor([0.0, 1.3]), torch.tensor([0.2, 0.5]), 2.5, focal=16.0, height=12, width=12)
    o, d = cams.generate_rays()
    o, d = o.reshape(2, -1, 3), d.reshape(2, -1, 3)
    b = (o * d).sum(-1)
    target = ((b * b - ((o * o).sum(-1) - 0.3**2)) > 0).float()
    code = torch.zeros(1, m.config.shape_dim, requires_grad=True)
    opt = torch.optim.Adam([{"params": [code], "lr": 0.05}, {"params": m.sdf_net.parameters(), "lr": 3e-3}])

    def soft_iou_loss():
        out = renderer(o, d, lambda p: m.sdf(p, code.expand(2, -1)), lambda p, n, v: torch.ones_like(p))
        inter = (out.mask * target).sum()
        return 1.0 - inter / (out.mask + target - out.mask * target).sum()

    losses = []
    for _ in range(30):
        loss = soft_iou_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
    assert code.abs().max() > 1e-2, "a zero code must not be stuck at a saddle"


def test_azimuth_candidates_from_classifier_and_from_regression():
    torch.manual_seed(0)
    config = ShapeModelConfig(encoder=EncoderConfig(small_channels=(8, 16), head_hidden=16, image_size=32,
                                                    azimuth_bins=8),
                              sdf=SDFNetConfig(hidden=16, layers=2, skip_layers=()), color=ColorNetConfig(hidden=8, layers=1))
    vp = ShapeModel(config).encode(torch.rand(2, 3, 32, 32)).viewpoint
    assert vp.azimuth_logits.shape == (2, 8)
    vp.azimuth_logits = torch.tensor([[0.0, 5.0, 1.0, 0, 0, 0, 0, 3.0], [9.0, 0, 0, 0, 0, 0, 0, 0]])
    candidates = vp.azimuth_candidates(3)
    assert torch.allclose(candidates[0], torch.tensor([1.0, 7.0, 2.0]) * math.pi / 4)  # best sectors first
    assert float(candidates[1, 0]) == 0.0
    vp.azimuth_logits = None  # regression only: the predicted angle, then evenly round the circle
    spread = vp.azimuth_candidates(4)
    assert torch.allclose(spread[:, 0], vp.azimuth) and torch.allclose(spread[:, 2] - spread[:, 0], torch.full((2,), math.pi))
    with pytest.raises(ValueError, match="viewpoint_head"):
        ShapeModel(ShapeModelConfig(encoder=EncoderConfig(viewpoint_head=False, azimuth_bins=4)))
    # the classifier's target sectors are centred where its candidates are
    assert azimuth_sector(candidates[0], 8).tolist() == [1, 7, 2]
    assert azimuth_sector(torch.tensor([0.3, -0.3, -math.pi / 4 - 0.1, 2 * math.pi - 0.1]), 8).tolist() == [0, 0, 7, 0]
