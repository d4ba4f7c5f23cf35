"""On-the-fly training data: the shape bank, the torch photo renderer, generated batches, and
scripts/train.py end to end (budget, resume, export that the reconstruct CLI loads)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from script_modules import load_script

from backend.data.procedural.torch_sdf import grid_points, make_torch_shape
from backend.render.cameras import orbit_cameras
from backend.train.generated import GeneratedBatches, GeneratedConfig, step_generator
from backend.train.shape_bank import GRID_LIMIT, BankConfig, ShapeBank, bake_shape, gather_shapes, grid_lookup, voxel
from backend.train.views import (
    ViewConfig,
    crop_over_white,
    jpeg_like,
    photograph,
    render_views,
    simulated_segmentation,
)

ROOT = Path(__file__).resolve().parents[1]
LIM = GRID_LIMIT


def tiny_bank(size=3, grid=32, **kw) -> ShapeBank:
    config = BankConfig(size=size, grid=grid, measure_res=32, surface_points=256, categories=("table", "mug", "vase"),
                        composition_share=0.0, refresh_every=2, refresh_count=1, **kw)
    return ShapeBank(config, seed=5)


def sphere_bank(radius=0.4, grid=48) -> dict[str, torch.Tensor]:
    pts = grid_points(-LIM, LIM, grid)
    sdf = (pts.norm(dim=-1) - radius).reshape(1, 1, grid, grid, grid)
    palette = torch.zeros(1, 8, 5)
    palette[0, 0] = torch.tensor([0.8, 0.2, 0.2, 0.5, 0.0])
    surface = torch.nn.functional.normalize(torch.randn(1, 2000, 3, generator=torch.Generator().manual_seed(0)),
                                            dim=-1) * radius
    return {"sdf": sdf, "materials": torch.zeros(1, 1, grid, grid, grid, dtype=torch.uint8), "palette": palette,
            "surface": surface}


def test_bank_slots_depend_on_the_step_alone():
    bank = tiny_bank(size=3)
    assert bank.numbers_at(0) == [0, 1, 2]
    assert bank.numbers_at(1) == [0, 1, 2]
    assert bank.numbers_at(2) == [3, 1, 2]  # one replacement every 2 steps, round-robin
    assert bank.numbers_at(6) == [3, 4, 5]
    assert bank.numbers_at(8) == [6, 4, 5]
    assert bank.sync(0) == 3 and bank.sync(1) == 0 and bank.sync(2) == 1
    assert bank.sync(8) == 3  # slots 0..2 hold 6, 4, 5 now
    fresh = tiny_bank(size=3)
    fresh.sync(8)  # a resumed run at step 8 builds the same pool directly
    assert fresh.names(range(3)) == bank.names(range(3))
    for key, value in fresh.tensors().items():
        assert torch.equal(value, bank.tensors()[key]), key
    # training seeds stay far from the small seeds of the evaluation datasets
    assert all(int(name.split("/")[1]) >= 1_000_000 for name in bank.names(range(3)))
    # specs built ahead by a worker process give the same pool
    ahead = tiny_bank(size=3, workers=1)
    ahead.sync(0)
    ahead.sync(2)
    straight = tiny_bank(size=3)
    straight.sync(0)
    straight.sync(2)
    assert ahead.names(range(3)) == straight.names(range(3))
    for key, value in ahead.tensors().items():
        assert torch.equal(value, straight.tensors()[key]), key


def test_baked_grid_holds_the_exact_field_near_the_surface():
    shape = make_torch_shape("table", 11, measure_res=48)
    baked = bake_shape(shape, 40, 512, seed=0)
    pts = baked.surface[None] + torch.randn(1, 512, 3) * 0.01
    from_grid = grid_lookup(baked.sdf.float()[None, None], pts)[0, 0]
    exact = shape.sdf(pts[0])
    # trilinear interpolation of the exact values: within a voxel near the surface
    assert (from_grid - exact).abs().median() < 0.25 * voxel(40)
    assert (from_grid - exact).abs().max() < 1.5 * voxel(40)
    # surface samples lie on the surface (the grid rounds sharp edges off by a fraction of a voxel)
    off = shape.sdf(baked.surface).abs()
    assert off.median() < 0.1 * voxel(40) and off.max() < voxel(40)
    extent = baked.surface.amax(0) - baked.surface.amin(0)
    assert abs(float(extent.max()) - 1.0) < 2 * voxel(40)


def test_renderer_sees_a_sphere_where_it_is():
    bank = sphere_bank(0.4)
    size, fov = 64, math.radians(30)
    angles = torch.tensor([[0.3, 0.2, 0.0]])
    distance = 2.5
    cams = orbit_cameras(angles[:, 0], angles[:, 1], distance, focal=0.5 * size / math.tan(fov / 2), height=size,
                         width=size)
    views = render_views(gather_shapes(bank, torch.zeros(1, dtype=torch.long)),
                         ViewConfig(texture_amplitude=0.0, plain_share=0.0),
                         torch.Generator().manual_seed(0), cameras=(cams, angles))
    # coverage of the projected disc: angular radius asin(r / d)
    disc = math.pi * (math.tan(math.asin(0.4 / distance)) * 0.5 * size / math.tan(fov / 2)) ** 2
    assert float(views.alpha.sum()) == pytest.approx(disc, rel=0.03)
    hit = views.depth[0] > 0
    assert float(views.depth[0][hit].min()) == pytest.approx(distance - 0.4, abs=0.01)
    normals = views.normals[0][hit]
    assert torch.allclose(normals.norm(dim=-1), torch.ones(len(normals)), atol=1e-3)
    # normals face the camera and match the sphere's (points = origin + depth * direction)
    o, d = cams.generate_rays()
    points = (o + views.depth[..., None] * d)[0][hit]
    assert float((normals * torch.nn.functional.normalize(points, dim=-1)).sum(-1).min()) > 0.98
    # shaded object over white: background pixels white, object pixels reddish
    assert torch.allclose(views.clean[0][views.alpha[0] == 0], torch.ones(1, 3))
    obj = views.clean[0][views.alpha[0] == 1]
    assert float((obj[:, 0] - obj[:, 1]).mean()) > 0.1


def test_windowed_cameras_frame_the_object_and_keep_the_viewpoint():
    bank = sphere_bank(0.4)
    config = ViewConfig(render_size=40)
    views = render_views(gather_shapes(bank, torch.zeros(4, dtype=torch.long)), config,
                         torch.Generator().manual_seed(3))
    for alpha in views.alpha:
        rows, cols = torch.nonzero(alpha > 0.5, as_tuple=True)
        extent = max(int(rows.max() - rows.min()), int(cols.max() - cols.min())) + 1
        assert 0.7 * 40 < extent <= 40  # the window is about the object, with a margin
        assert rows.min() > 0 and cols.min() > 0 and rows.max() < 39 and cols.max() < 39
    # the camera still looks from the viewpoint it reports
    c = views.cameras.centers
    assert torch.allclose(torch.atan2(c[:, 0], -c[:, 1]), views.viewpoint[:, 0], atol=0.2)


def test_photos_crops_and_degradations():
    bank = sphere_bank(0.4)
    config = ViewConfig(render_size=48)
    gen = torch.Generator().manual_seed(1)
    views = photograph(render_views(gather_shapes(bank, torch.zeros(6, dtype=torch.long)), config, gen), config, gen, 32)
    assert views.photo.shape == (6, 48, 48, 3) and views.crops.shape == (6, 3, 32, 32)
    assert float(views.photo.min()) >= 0 and float(views.photo.max()) <= 1
    # encoder inputs: object over white, corners white (the crop's margin)
    assert torch.allclose(views.crops[:, :, 0, 0], torch.ones(6, 3), atol=0.02)
    again_gen = torch.Generator().manual_seed(1)
    again = photograph(render_views(gather_shapes(bank, torch.zeros(6, dtype=torch.long)), config, again_gen), config,
                       again_gen, 32)
    assert torch.equal(again.crops, views.crops)
    # an 8x8-block DCT quantiser with a negligible step changes nothing; a coarse one blocks
    img = torch.rand(2, 3, 20, 20)
    assert torch.allclose(jpeg_like(img, torch.full((2,), 1e-6)), img, atol=1e-4)
    coarse = jpeg_like(img, torch.full((2,), 0.5))
    assert (coarse - img).abs().mean() > 0.05


def test_simulated_segmentation_grows_and_shrinks_within_bounds():
    alpha = torch.zeros(16, 32, 32)
    alpha[:, 8:24, 8:24] = 1.0
    masks = simulated_segmentation(alpha, 2, 1, torch.Generator().manual_seed(0))
    areas = (masks > 0.5).flatten(1).sum(1)
    assert int(areas.min()) >= 14 * 14 and int(areas.max()) <= 20 * 20
    assert len(set(areas.tolist())) > 1


def test_crop_over_white_follows_the_pipeline_rule():
    """The generator's encoder inputs are cut as `object_crop` cuts a user's photo."""
    from backend.pipelines.reconstruct.inputs import object_crop

    rng = np.random.default_rng(0)
    photo = rng.uniform(size=(1, 60, 60, 3)).astype(np.float32)
    mask = np.zeros((1, 60, 60), np.float32)
    mask[0, 12:40, 20:33] = 1.0
    got = crop_over_white(torch.from_numpy(photo), torch.from_numpy(mask), 32)[0].permute(1, 2, 0).numpy()
    rgba = (np.concatenate([photo[0], mask[0, ..., None]], -1) * 255 + 0.5).astype(np.uint8)
    want, _ = object_crop(rgba, mask[0] > 0.5, 32)
    # same framing: the white margins line up, the content agrees up to resampling
    assert np.abs(got.mean(-1) > 0.99).astype(float).mean() == pytest.approx((want.mean(-1) > 0.99).mean(), abs=0.06)
    assert np.abs(got - want).mean() < 0.1


def test_generated_batches_are_a_function_of_the_step():
    from backend.train.config import TrainConfig

    config = GeneratedConfig(bank=BankConfig(size=3, grid=32, measure_res=32, surface_points=256,
                                             categories=("table", "mug"), composition_share=0.0),
                             views=ViewConfig(render_size=40, supervise_size=24, trace_steps=32, shadow_steps=4))
    source = GeneratedBatches(config, 32, seed=2)
    train_config = TrainConfig.preset("tiny")
    a = source.step_batch(train_config, 7)
    b = GeneratedBatches(config, 32, seed=2).step_batch(train_config, 7)
    c = source.step_batch(train_config, 8)
    for key, value in a.__dict__.items():
        assert torch.equal(value, b.__dict__[key]), key
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (2, 3, 32, 32) and a.sdf_points.shape == (2, train_config.sdf_points, 3)
    assert a.origins.shape == (2, train_config.rays_per_view * train_config.supervise_views, 3)
    # SDF targets are the shapes' fields (within the grid's interpolation error): the step's
    # first draw picks the pool slots
    idx = torch.randint(3, (2,), generator=step_generator(2, 7, "cpu"))
    for row, slot in enumerate(idx.tolist()):
        category, seed = source.bank.slots[slot].name.split("/")
        exact = make_torch_shape(category, int(seed), measure_res=32).sdf(a.sdf_points[row])
        near = exact.abs() < 0.05
        assert near.sum() > 100
        assert (a.sdf[row][near] - exact[near]).abs().median() < 0.3 * voxel(32)
        assert (torch.sign(a.sdf[row]) == torch.sign(exact))[exact.abs() > 2 * voxel(32)].all()
    # half the rays hit the object, colours over white
    assert float(a.alpha.mean()) > 0.3 and float(a.rgb.min()) >= 0.0


def test_step_generator_streams_differ_by_step_and_seed():
    x = torch.rand(4, generator=step_generator(0, 1, "cpu"))
    assert torch.equal(x, torch.rand(4, generator=step_generator(0, 1, "cpu")))
    assert not torch.equal(x, torch.rand(4, generator=step_generator(0, 2, "cpu")))
    assert not torch.equal(x, torch.rand(4, generator=step_generator(1, 1, "cpu")))


# ------------------------------------------------------------------ scripts/train.py end to end
def _train(args: list[str]) -> int:
    quiet = ["--quiet", "--threads", "1", "--real-photos", "0", "--heldin", "/nonexistent"]
    return load_script("train").main(args + quiet)


@pytest.mark.slow
def test_train_script_resumes_exactly_and_exports_weights_the_cli_loads(tmp_path, monkeypatch):
    from backend.models.checkpoint import load_shape_model
    from backend.train import evaluate as evaluation
    from backend.train.checkpoints import latest_checkpoint

    # the generated held-in set, kept to one category so the test stays short
    real = evaluation.generated_heldin_items
    monkeypatch.setattr(evaluation, "generated_heldin_items",
                        lambda size, **kw: real(size, **{**kw, "categories": ["bowl"]}))
    common = ["--model-preset", "tiny", "--shapes-held", "3", "--eval-shapes", "1"]
    assert _train(common + ["--steps", "6", "--lr", "2e-3", "--out", str(tmp_path / "a")]) == 0
    assert _train(common + ["--steps", "3", "--lr", "2e-3", "--out", str(tmp_path / "b")]) == 0
    # the resume need not repeat the run's options: it continues with the ones it was saved with
    assert _train(["--steps", "6", "--resume", str(tmp_path / "b"), "--eval-shapes", "1"]) == 0
    a, meta_a = load_shape_model(latest_checkpoint(tmp_path / "a"))
    b, meta_b = load_shape_model(latest_checkpoint(tmp_path / "b"))
    assert meta_a["step"] == meta_b["step"] == 6
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name
    assert meta_a["eval"]["heldin_generated/shapes"] == 1

    # the export: float16, one model, loadable by the reconstruct CLI by folder
    export = tmp_path / "a" / "export"
    manifest = json.loads((export / "shape_model.json").read_text())
    assert manifest["metadata"]["step"] == 6 and manifest["metadata"]["eval_all"]
    exported, _ = load_shape_model(export / "shape_model")
    for (name, pa), (_, pe) in zip(a.state_dict().items(), exported.state_dict().items()):
        assert torch.allclose(pa, pe, atol=2e-3 * max(1.0, float(pa.abs().max()))), name

    from backend.cli import main as cli

    out = tmp_path / "mug.glb"
    assert cli(["reconstruct", str(ROOT / "examples" / "mug.png"), "--weights", str(export), "--method", "model",
                "--quality", "preview", "--device", "cpu", "-o", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["weights"]["step"] == 6 and out.stat().st_size > 1000
    assert cli(["reconstruct", str(ROOT / "examples" / "mug.png"), "--weights", str(tmp_path / "nothing"),
                "-o", str(out)]) == 2


@pytest.mark.slow
def test_train_script_plans_its_length_from_the_budget(tmp_path, monkeypatch):
    from backend.train import evaluate as evaluation

    monkeypatch.setattr(evaluation, "generated_heldin_items", lambda size, **kw: [])
    assert _train(["--model-preset", "tiny", "--shapes-held", "3", "--minutes", "0.4", "--out", str(tmp_path / "r")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    config = json.loads((tmp_path / "r" / "train_config.json").read_text())
    assert lines[-1]["step"] > 6  # calibrated, then planned past the calibration
    # the time budget, not a step count, ended it; the plan it made is recorded with the checkpoint
    from backend.train.checkpoints import latest_checkpoint, load_training_state

    state = load_training_state(latest_checkpoint(tmp_path / "r"))
    assert state.extra["train_config"]["steps"] >= state.step > 6
    assert config["config"]["steps"] == 0  # as started: no fixed length
    with pytest.raises(SystemExit):  # an existing run is not silently restarted
        _train(["--model-preset", "tiny", "--minutes", "0.2", "--out", str(tmp_path / "r")])


def test_fp16_sharded_checkpoints_round_trip(tmp_path):
    from backend.models.checkpoint import CheckpointFormatError, load_shape_model, save_shape_model
    from backend.models.shape_model import ShapeModel
    from backend.pipelines.reconstruct.weights import WeightsUnavailable, check_weights, resolve_weights
    from backend.train.config import model_config

    model = ShapeModel(model_config("tiny"))
    files = save_shape_model(tmp_path / "m" / "shape_model", model, {"step": 1}, dtype=torch.float16,
                             max_file_bytes=40_000)
    manifest = json.loads(files.manifest.read_text())
    shards = manifest["shards"]
    assert shards and all((tmp_path / "m" / s["file"]).stat().st_size < 40_000 for s in shards)
    loaded, meta = load_shape_model(tmp_path / "m" / "shape_model")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert b.dtype == a.dtype and torch.allclose(a, b, atol=1e-3 * max(1.0, float(a.abs().max()))), name
    assert resolve_weights(tmp_path / "m") == tmp_path / "m" / "shape_model"
    assert check_weights(resolve_weights(tmp_path / "m")).startswith("shape_model:")
    # a damaged shard is caught by the torch-free check and by the loader
    (tmp_path / "m" / shards[-1]["file"]).write_bytes(b"broken")
    with pytest.raises(WeightsUnavailable, match="does not match"):
        check_weights(tmp_path / "m" / "shape_model")
    with pytest.raises(CheckpointFormatError, match="shard"):
        load_shape_model(tmp_path / "m" / "shape_model")
    with pytest.raises(WeightsUnavailable, match="holds 0"):
        resolve_weights(tmp_path)


def test_throughput_benchmark_reports_every_stage(tmp_path):
    module = load_script("bench_train_data")
    out = tmp_path / "bench.json"
    assert module.main(["--model-preset", "tiny", "--shapes", "2", "--repeats", "1", "--threads", "1",
                        "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("bake_shapes_per_s", "photo_views_per_s", "batches_images_per_s", "model_step_images_per_s",
                "training_images_per_s"):
        assert result[key] > 0, key
    assert 0 < result["data_share_of_step"] < 1


def test_training_checkpoints_come_in_files_the_gpu_machine_can_return(tmp_path, monkeypatch):
    """Every file of a run's checkpoint stays under the shard size; a resume reads them all back."""
    from backend.models.checkpoint import load_shape_model
    from backend.models.shape_model import ShapeModel
    from backend.train import checkpoints
    from backend.train.config import model_config

    monkeypatch.setattr(checkpoints, "SHARD_BYTES", 60_000)
    model = ShapeModel(model_config("tiny"))
    optimizer = torch.optim.Adam(model.parameters())
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()
    for step in (1, 2, 3):
        checkpoints.save_training_checkpoint(tmp_path, model, optimizer, None, step, {"step": step}, keep=2)
    files = list((tmp_path / "checkpoints").iterdir())
    assert any(".part2." in f.name for f in files) and any(".train.part2." in f.name for f in files)
    assert max(f.stat().st_size for f in files) < 60_000
    assert not any(f.name.startswith("step_0000001") for f in files)  # pruned with all its shards
    latest = checkpoints.latest_checkpoint(tmp_path)
    state = checkpoints.load_training_state(latest)
    restored = torch.optim.Adam(model.parameters())
    restored.load_state_dict(state.optimizer)
    for a, b in zip(optimizer.state_dict()["state"].values(), restored.state_dict()["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    loaded, _ = load_shape_model(latest)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
