"""The layered-depth reconstruction: the solid from depth maps, the network's contract, its
training targets and the pipeline around them."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from backend.config import ServiceLimits
from backend.geometry.layers import layered_field
from backend.geometry.mesh_ops import extract_surface
from backend.geometry.surface_quality import surface_quality
from backend.images import decode_image
from backend.models.layered_depth import LayeredDepthConfig, LayeredDepthNet
from backend.requests import CommonParams, ReconstructRequest
from doubles import recording_context

TINY = LayeredDepthConfig(image_size=32, widths=(8, 16))


def disc(size=96, radius=0.3):
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
    r2 = xx ** 2 + yy ** 2
    return (r2 < radius ** 2).astype(np.float64), np.sqrt(np.clip(radius ** 2 - r2, 0, None))


def test_a_disc_with_a_spheres_depth_layers_becomes_that_sphere():
    mask, half = disc()
    layers = layered_field(mask, 0.1 - half, 0.1 + half, grid=64)  # any shift of both: same solid
    vertices, faces = extract_surface(layers.field, layers.lo, layers.hi)
    centre = (vertices.max(0) + vertices.min(0)) / 2
    radius = np.linalg.norm(vertices - centre, axis=1)
    assert abs(np.median(radius) - 0.3) < 0.02 and radius.max() - radius.min() < 0.06
    assert surface_quality(vertices, faces).pieces == 1


def test_an_object_deeper_than_wide_is_not_cut_by_the_grid():
    mask, _ = disc(radius=0.2)
    inside = mask > 0
    front, back = np.where(inside, -0.7, 0.0), np.where(inside, 0.7, 0.0)
    layers = layered_field(mask, front, back, grid=48)
    vertices, _ = extract_surface(layers.field, layers.lo, layers.hi)
    assert layers.lo[1] <= -0.7 and layers.hi[1] >= 0.7
    assert vertices[:, 1].max() - vertices[:, 1].min() == pytest.approx(1.4, abs=0.05)


def test_a_layer_thinner_than_the_grid_still_gives_a_closed_slab():
    mask, _ = disc()
    flat = np.zeros_like(mask)
    layers = layered_field(mask, flat, flat, grid=48)
    vertices, faces = extract_surface(layers.field, layers.lo, layers.hi)
    quality = surface_quality(vertices, faces)
    assert quality.pieces == 1 and np.ptp(vertices[:, 0]) == pytest.approx(0.6, abs=0.05)


def test_the_network_gives_a_front_and_a_thickness_that_is_never_negative():
    net = LayeredDepthNet(TINY)
    out = net(torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32))
    assert out.shape == (2, 2, 32, 32) and (out[:, 1] >= 0).all()
    with pytest.raises(ValueError, match="masks"):
        net(torch.rand(2, 3, 32, 32), torch.ones(2, 32, 32))


def test_a_network_that_corrects_nothing_gives_the_silhouette_inflation():
    from backend.geometry.layers import inflation_profile
    from backend.models.layered_depth import THICKNESS_SHARPNESS

    net = LayeredDepthNet(TINY).eval()
    torch.nn.init.zeros_(net.head.weight)
    torch.nn.init.zeros_(net.head.bias)
    mask, _ = disc(32, 0.4)
    with torch.no_grad():
        out = net(torch.rand(1, 3, 32, 32), torch.as_tensor(mask, dtype=torch.float32)[None, None])
    half = inflation_profile(mask >= 0.5)
    assert np.allclose(out[0, 0].numpy(), -half, atol=1e-6)
    inside = half > 0.05
    assert np.allclose(out[0, 1].numpy()[inside], 2 * half[inside], atol=1e-3)
    assert (out[0, 1].numpy()[~inside] <= 0.1 + np.log(2) / THICKNESS_SHARPNESS).all()


def test_prediction_treats_a_photo_and_its_mirror_image_alike():
    torch.manual_seed(0)
    net = LayeredDepthNet(TINY).eval()
    rgb = np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)
    mask, _ = disc(48, 0.35)
    mask[:, :20] = 0  # not symmetric itself
    front, back = net.predict(rgb, mask)
    mirror_front, mirror_back = net.predict(rgb[:, ::-1], mask[:, ::-1])
    assert front.shape == (48, 48) and (back >= front).all()
    inside = mask >= 0.5
    assert abs(front[inside].mean()) < 1e-5
    assert np.allclose(mirror_front[:, ::-1], front, atol=1e-5) and np.allclose(mirror_back[:, ::-1], back, atol=1e-5)


def sphere_shapes(count: int, grid: int = 32, radius: float = 0.3) -> dict:
    from backend.train.shape_bank import GRID_LIMIT

    axis = torch.linspace(-GRID_LIMIT, GRID_LIMIT, grid)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    sdf = (torch.stack([x, y, z], -1).norm(dim=-1) - radius).permute(2, 1, 0)  # grid [z, y, x]
    direction = torch.nn.functional.normalize(torch.randn(256, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    palette = torch.tensor([[0.6, 0.5, 0.4, 0.5, 0.0]]).repeat(8, 1)
    return {"sdf": sdf[None, None].repeat(count, 1, 1, 1, 1), "materials": torch.zeros(count, 1, grid, grid, grid),
            "palette": palette[None].repeat(count, 1, 1), "surface": (direction * radius)[None].repeat(count, 1, 1)}


def test_training_targets_of_a_sphere_are_its_depth_in_crop_sides():
    from backend.train.generated import GeneratedConfig, step_generator
    from backend.train.layered_depth import layer_batch

    generated = GeneratedConfig.preset("tiny")
    batch = layer_batch(sphere_shapes(4), generated, step_generator(1, 0, "cpu"), size=32)
    assert batch.crops.shape == (4, 3, 32, 32) and batch.masks.shape == (4, 1, 32, 32)
    valid = batch.valid
    assert valid.float().mean() > 0.3
    thickness = batch.back - batch.front
    assert (thickness[valid] >= 0).all()
    for k in range(4):
        assert abs(float(batch.front[k][valid[k]].mean())) < 1e-4
        # a sphere of diameter 0.6 fills the crop's square minus its margins (1.2x its outline,
        # more when the segmentation was grown): through the centre it is about 1 / 1.2 crops deep
        centre = thickness[k][valid[k]].max()
        assert 0.65 < float(centre) < 0.9
        # the front is nearest at the middle of the disc, furthest at its rim
        rows, cols = torch.nonzero(valid[k], as_tuple=True)
        middle = ((rows - rows.float().mean()).abs() < 2) & ((cols - cols.float().mean()).abs() < 2)
        assert float(batch.front[k][rows[middle], cols[middle]].mean()) < float(batch.front[k][valid[k]].mean())


def test_a_training_run_saves_a_network_the_pipeline_loads_and_a_second_run_carries_it_on(tmp_path):
    from backend.models.layered_depth import load_layered_depth
    from backend.train.layered_depth import LayeredTrainConfig, train

    config = LayeredTrainConfig(model=TINY, views_per_step=4, data_preset="tiny")
    first = train(config, minutes=0.01, out=tmp_path / "first", log=lambda _: None)
    assert first["steps"] >= 1 and first["loss_last"] is not None
    network, metadata = load_layered_depth(tmp_path / "first")
    assert network.config == TINY and metadata["steps"] == first["steps"]
    second = train(config, minutes=0.01, out=tmp_path / "second", log=lambda _: None, init_from=tmp_path / "first")
    assert second["earlier"]["steps"] == first["steps"]
    other = LayeredTrainConfig(model=LayeredDepthConfig(image_size=32, widths=(8, 24)), views_per_step=4,
                               data_preset="tiny")
    with pytest.raises(ValueError, match="another architecture"):
        train(other, minutes=0.01, out=tmp_path / "third", log=lambda _: None, init_from=tmp_path / "first")


def test_the_real_split_check_measures_a_spheres_thickness(tmp_path):
    """`_mesh_layers` (the real-split evaluation) against a sphere seen by a pinhole camera."""
    import trimesh

    from backend.train.layered_depth import _mesh_layers

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    distance, fov, size = 6.0, 30.0, 256
    view = {"world_to_cam": [[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, distance], [0, 0, 0, 1]], "fov": fov}
    focal = (size / 2) / math.tan(math.radians(fov) / 2)
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5 - size / 2)
    mask = np.hypot(xx, yy) < 0.5 * focal / distance
    front, back, valid = _mesh_layers(sphere.vertices, sphere.faces, view, mask, 64)
    # the unit is the crop's side (1.2 diameters) at the mean front depth, which lies 2/3 of the
    # radius in front of the centre on a sphere
    unit = 1.2 * 1.0 * (distance - 0.5 * 2 / 3) / distance
    assert (back - front)[valid].max() == pytest.approx(1.0 / unit, rel=0.02)
    assert abs(front[valid].mean()) < 1e-9


def odd_shape_png(size=128):
    """An L-shaped block: no surface of revolution, so the layered solid is built."""
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[20:108, 30:60] = (200, 80, 40, 255)
    rgba[80:108, 30:100] = (200, 80, 40, 255)
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from backend.models.checkpoint import save_checkpoint
    from backend.models.layered_depth import LAYERED_DEPTH_KIND

    path = tmp_path_factory.mktemp("layered") / "layered_depth"
    torch.manual_seed(0)
    save_checkpoint(path, LayeredDepthNet(TINY), TINY, kind=LAYERED_DEPTH_KIND, metadata={}, dtype=torch.float16)
    return path


def request_for(data, method="layered"):
    image = decode_image(data, max_pixels=ServiceLimits().max_image_pixels)
    return ReconstructRequest([image], CommonParams(quality="preview"), texture="uv", method=method)


def test_the_layered_pipeline_builds_its_solid_in_the_photos_frame(tiny_weights):
    from backend.pipelines.reconstruct.layered import LayeredReconstructPipeline

    from backend.pipelines.reconstruct.silhouette import OutlineReconstructPipeline

    output = LayeredReconstructPipeline("cpu", tiny_weights).run(request_for(odd_shape_png()), recording_context())
    meta = output.metadata
    assert meta["solid"] == "layered depth" and meta["mean_thickness"] > 0
    # from the reported camera it covers the outline as well as the inflation does, however deep
    # the (untrained) network makes it
    inflated = OutlineReconstructPipeline("cpu").run(request_for(odd_shape_png(), "outline"), recording_context())
    assert inflated.metadata["solid"] == "inflation"
    assert meta["fidelity"]["silhouette_iou"] >= inflated.metadata["fidelity"]["silhouette_iou"] - 0.01


def test_a_vessel_stays_a_surface_of_revolution(tiny_weights):
    from backend.pipelines.reconstruct.layered import LayeredReconstructPipeline

    data = open("examples/vase_on_grey.jpg", "rb").read()
    output = LayeredReconstructPipeline("cpu", tiny_weights).run(request_for(data), recording_context())
    assert output.metadata["solid"] == "surface of revolution"


def test_missing_weights_are_named(tmp_path):
    from backend.pipelines.reconstruct.layered import LayeredReconstructPipeline
    from backend.pipelines.reconstruct.weights import WeightsUnavailable

    with pytest.raises(WeightsUnavailable, match="no_layers.json is missing"):
        LayeredReconstructPipeline("cpu", tmp_path / "no_layers")


def test_the_committed_network_gives_one_clean_solid():
    from backend.pipelines.reconstruct.layered import DEFAULT_LAYERED_WEIGHTS, LayeredReconstructPipeline

    pipe = LayeredReconstructPipeline("cpu", DEFAULT_LAYERED_WEIGHTS)
    output = pipe.run(request_for(odd_shape_png()), recording_context())
    quality = surface_quality(output.mesh.vertices, output.mesh.faces)
    assert output.metadata["solid"] == "layered depth"
    assert quality.pieces == 1 and quality.sharp_edge_share < 0.05
    assert output.metadata["fidelity"]["silhouette_iou"] >= 0.9
