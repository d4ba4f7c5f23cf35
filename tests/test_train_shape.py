"""Shape-model training: data batches, losses, the tiny preset end to end, checkpoints and resume.

The datasets here are written in the documented on-disk format (docs/dataset.md) by a small
numpy sphere tracer over analytic shapes, so the tests need neither Blender nor generated data.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from script_modules import load_script

from backend.data.cameras import blender_to_world_to_cam, intrinsics, look_at_blender, spherical
from backend.render.losses import soft_iou_loss
from backend.train.checkpoints import latest_checkpoint, load_training_state
from backend.train.config import TrainConfig
from backend.train.data import (
    ShapeViewDataset,
    augment_crop,
    mirror_sample,
    permute_channels,
    procedural_source,
    rescale_crops,
    viewpoint_from_extrinsics,
)
from backend.train.evaluate import evaluate, procedural_eval_items
from backend.train.losses import normal_loss, training_losses
from backend.train.trainer import learning_rate, train

SHAPES = {
    "ball": (lambda p: np.linalg.norm(p, axis=-1) - 0.4, (0.85, 0.2, 0.2)),
    "crate": (lambda p: _box(p, np.array([0.45, 0.3, 0.25])), (0.2, 0.3, 0.85)),
    "pill": (lambda p: _capsule(p, 0.35, 0.15), (0.2, 0.7, 0.3)),
}


def _box(p, half):
    q = np.abs(p) - half
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)


def _capsule(p, half_length, radius):
    axis_point = np.zeros_like(p)  # nearest point on the segment along x
    axis_point[..., 0] = np.clip(p[..., 0], -half_length, half_length)
    return np.linalg.norm(p - axis_point, axis=-1) - radius


def _trace(sdf, origins, dirs, steps=96):
    t = np.zeros(len(dirs))
    for _ in range(steps):
        step = sdf(origins + t[:, None] * dirs)
        t = np.minimum(t + np.where(step > 1e-5, step, 0.0), 10.0)  # converged rays stay put
    points = origins + t[:, None] * dirs
    return points, np.abs(sdf(points)) < 2e-3


def _gradient(sdf, p, eps=1e-4):
    g = np.stack([sdf(p + e) - sdf(p - e) for e in np.eye(3) * eps], -1) / (2 * eps)
    return g / np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), 1e-12)


def write_shape(root: Path, category: str, seed: int, views: int, res: int) -> None:
    """One shape in the procedural dataset layout (views, depth, normals, samples, mesh)."""
    import trimesh
    from PIL import Image
    from skimage.measure import marching_cubes

    sdf, colour = SHAPES[category]
    rng = np.random.default_rng(seed)
    d = root / category / f"{category}_{seed:06d}"
    (d / "views").mkdir(parents=True)
    K = intrinsics(res, 40.0)
    cams, depth_maps, normal_maps = [], [], []
    for v in range(views):
        az, el = (v + rng.uniform()) / views * 360.0, rng.uniform(-10, 40)
        c2w = look_at_blender(spherical(az, el, 2.2))
        w2c = blender_to_world_to_cam(c2w)
        j, i = np.meshgrid(np.arange(res) + 0.5, np.arange(res) + 0.5)
        cam_dirs = np.stack([(j - K[0, 2]) / K[0, 0], (i - K[1, 2]) / K[1, 1], np.ones_like(j)], -1).reshape(-1, 3)
        dirs = cam_dirs @ w2c[:3, :3]
        dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
        origin = -w2c[:3, :3].T @ w2c[:3, 3]
        points, hit = _trace(sdf, np.broadcast_to(origin, dirs.shape), dirs)
        normals = np.where(hit[:, None], _gradient(sdf, points), 0.0)
        shade = 0.45 + 0.55 * np.clip(normals @ np.array([0.3, -0.6, 0.75]), 0, 1)
        rgba = np.zeros((res * res, 4))
        rgba[hit, :3] = np.array(colour) * shade[hit, None]
        rgba[hit, 3] = 1.0
        Image.fromarray((rgba.reshape(res, res, 4) * 255 + 0.5).astype(np.uint8)).save(d / "views" / f"rgba_{v:04d}.png")
        depth_maps.append(np.where(hit, (points - origin) @ w2c[2, :3], 0.0).reshape(res, res))
        normal_maps.append(normals.reshape(res, res, 3))
        cams.append({"index": v, "azimuth_deg": az, "elevation_deg": el, "distance": 2.2, "K": K.tolist(),
                     "world_to_cam": w2c.tolist(), "rgba": f"views/rgba_{v:04d}.png"})
    np.savez(d / "views" / "depth.npz", depth=np.array(depth_maps, np.float32))
    np.savez(d / "views" / "normal.npz", normal=np.array(normal_maps, np.float16))
    grid = np.linspace(-0.55, 0.55, 48)
    volume = sdf(np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1))
    verts, faces, _, _ = marching_cubes(volume, 0.0, spacing=(grid[1] - grid[0],) * 3)
    mesh = trimesh.Trimesh(verts - 0.55, faces)
    mesh.export(d / "mesh.ply")
    surface = mesh.sample(2000, seed=seed)  # seeded: the fits trained on these data must not vary by run
    np.savez(d / "points.npz", points=surface.astype(np.float32),
             normals=_gradient(sdf, surface).astype(np.float32),
             colors=np.tile(np.array(colour, np.float32), (len(surface), 1)))
    queries = np.concatenate([rng.uniform(-0.55, 0.55, (2000, 3)), surface + rng.normal(0, 0.02, surface.shape)])
    values = sdf(queries)
    np.savez(d / "sdf.npz", points=queries.astype(np.float32), sdf=values.astype(np.float32), occupancy=values < 0)
    (d / "cameras.json").write_text(json.dumps({"resolution": res, "views": cams}))
    (d / "meta.json").write_text(json.dumps({"category": category, "seed": seed}))


def make_dataset(root: Path, splits: dict[str, list[tuple[str, int]]], views: int = 3, res: int = 32) -> Path:
    """A dataset in the layout of docs/dataset.md; ``splits`` maps split -> [(category, seed)]."""
    root.mkdir(parents=True, exist_ok=True)
    categories = sorted({c for items in splits.values() for c, _ in items})
    (root / "dataset.json").write_text(json.dumps({"format_version": 1, "categories": categories,
                                                   "views": views, "resolution": res}))
    (root / "splits").mkdir()
    for split in ("train", "val", "test", "test_unseen"):
        items = splits.get(split, [])
        (root / "splits" / f"{split}.txt").write_text("".join(f"{c}/{c}_{s:06d}\n" for c, s in items))
        for c, s in items:
            write_shape(root, c, s, views, res)
    return root


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "ds",
                        {"train": [("ball", 0), ("crate", 0)], "test": [("ball", 1)]})


def tiny(**changes) -> TrainConfig:
    return dataclasses.replace(TrainConfig.preset("tiny"), **changes)


def test_viewpoint_from_extrinsics_matches_orbit_cameras():
    from backend.render.cameras import orbit_cameras

    az, el = torch.tensor([0.3, -2.0, 2.9]), torch.tensor([0.2, 0.7, -0.1])
    cams = orbit_cameras(az, el, 2.5, focal=50.0, height=64, width=64)
    for k in range(3):
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = cams.rotation[k].numpy(), cams.translation[k].numpy()
        got = viewpoint_from_extrinsics(w2c)
        assert got[0] == pytest.approx(float(az[k]), abs=1e-5)
        assert got[1] == pytest.approx(float(el[k]), abs=1e-5)
        assert got[2] == pytest.approx(0.0, abs=1e-5)


def test_mirrored_world_is_the_flipped_picture_seen_from_minus_azimuth():
    """The rule `mirror_sample` relies on: mirror the world (x -> -x) and the camera's image x,
    and the camera is the orbit camera at (-az, el, -roll) whose picture is the flipped one."""
    from backend.render.cameras import orbit_cameras

    size = 64
    cams = orbit_cameras(torch.tensor([0.7]), torch.tensor([0.4]), 2.5, focal=50.0, height=size, width=size,
                         roll=torch.tensor([0.15]))
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = cams.rotation[0].numpy(), cams.translation[0].numpy()
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    mirrored = flip @ w2c @ flip
    assert viewpoint_from_extrinsics(mirrored) == pytest.approx([-0.7, 0.4, -0.15], abs=1e-5)
    twin = orbit_cameras(torch.tensor([-0.7]), torch.tensor([0.4]), 2.5, focal=50.0, height=size, width=size,
                         roll=torch.tensor([-0.15]))
    points = torch.tensor([[[0.3, -0.1, 0.2], [-0.25, 0.2, -0.1]]])
    uv, _ = cams.project(points)
    uv_twin, _ = twin.project(points * torch.tensor([-1.0, 1.0, 1.0]))
    assert torch.allclose(uv_twin[..., 0], size - uv[..., 0], atol=1e-4)  # left-right flipped
    assert torch.allclose(uv_twin[..., 1], uv[..., 1], atol=1e-4)


def test_mirrored_batch_entries_negate_every_x(dataset):
    ds = ShapeViewDataset([procedural_source(str(dataset), "train")], image_size=32, sdf_points=512, surface_points=128)
    plain = ds.sample(ds.shapes[0], np.random.default_rng(3), 16, 2, 64, 32)
    mirrored = mirror_sample(plain)
    assert np.array_equal(mirrored["images"], plain["images"][:, :, ::-1])
    assert mirrored["viewpoint"] == pytest.approx(plain["viewpoint"] * np.array([-1, 1, -1]))
    for key in ("origins", "directions", "normals", "sdf_points", "surface_points"):
        assert np.array_equal(mirrored[key][:, 0], -plain[key][:, 0]), key
        assert np.array_equal(mirrored[key][:, 1:], plain[key][:, 1:]), key
    for key in ("rgb", "alpha", "sdf", "occupancy", "surface_colors"):
        assert np.array_equal(mirrored[key], plain[key]), key
    # with augmentation on, about half of the entries come out mirrored
    flipped = 0
    for seed in range(40):
        entry = ds.sample(ds.shapes[0], np.random.default_rng(seed), 16, 2, 64, 32, augment=True)
        reference = ds.sample(ds.shapes[0], np.random.default_rng(seed), 16, 2, 64, 32)
        flipped += bool(np.array_equal(entry["sdf_points"][:, 0], -reference["sdf_points"][:, 0]))
    assert 10 <= flipped <= 30


def test_dataset_camera_convention_gives_the_stated_azimuth(dataset):
    meta = json.loads((dataset / "ball" / "ball_000000" / "cameras.json").read_text())
    for view in meta["views"]:
        az, el, roll = viewpoint_from_extrinsics(np.array(view["world_to_cam"]))
        assert math.degrees(az) % 360 == pytest.approx(view["azimuth_deg"] % 360, abs=1e-3)
        assert math.degrees(el) == pytest.approx(view["elevation_deg"], abs=1e-3)
        assert roll == pytest.approx(0.0, abs=1e-5)


def test_batch_rays_hit_the_object_where_the_mask_says(dataset):
    ds = ShapeViewDataset([procedural_source(str(dataset), "train")], image_size=32, sdf_points=512, surface_points=128)
    assert len(ds) == 2
    batch = ds.batch([0, 1], np.random.default_rng(0), rays_per_view=64, supervise_views=2, sdf_points=100)
    assert batch.images.shape == (2, 3, 32, 32) and batch.origins.shape == (2, 128, 3)
    assert torch.allclose(batch.directions.norm(dim=-1), torch.ones(2, 128), atol=1e-5)
    sdf = SHAPES["ball"][0] if ds.shapes[0].category == "ball" else SHAPES["crate"][0]
    o, d = batch.origins[0].double().numpy(), batch.directions[0].double().numpy()
    _, hit = _trace(sdf, o, d)
    assert ((batch.alpha[0].numpy() > 0.5) == hit).mean() > 0.95
    assert batch.has_sdf.all() and batch.has_colors.all()


def test_augmented_inputs_are_shifted_and_rescaled_but_keep_a_white_background():
    crop = np.ones((3, 32, 32), np.float32)
    crop[:, 10:20, 12:22] = np.array([0.2, 0.5, 0.8], np.float32)[:, None, None]
    seen_shift, seen_contrast = set(), set()
    for seed in range(40):
        out = augment_crop(crop, np.random.default_rng(seed))
        assert out.shape == crop.shape and out.dtype == np.float32
        dark = np.argwhere(out[0] < 0.99)
        (y0, x0), (y1, x1) = dark.min(0), dark.max(0)
        assert (y1 - y0, x1 - x0) == (9, 9)  # the block is moved, not resized
        dy, dx = y0 - 10, x0 - 12
        assert max(abs(dy), abs(dx)) <= 2
        seen_shift.add((dy, dx))
        block = out[:, y0, x0]
        # the distance from white is scaled by one factor in the documented range
        factor = (1.0 - block) / (1.0 - np.array([0.2, 0.5, 0.8]))
        assert np.allclose(factor, factor[0], atol=1e-5) and 0.85 - 1e-5 <= factor[0] <= 1.15 + 1e-5
        seen_contrast.add(round(float(factor[0]), 3))
        assert np.all(np.delete(out.reshape(3, -1), np.ravel_multi_index(
            np.mgrid[y0:y1 + 1, x0:x1 + 1].reshape(2, -1), (32, 32)), axis=1) == 1.0)
    assert len(seen_shift) > 5 and len(seen_contrast) > 5
    same = [augment_crop(crop, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(*same)


def test_rescaled_inputs_zoom_about_the_centre_over_white():
    crop = np.ones((1, 3, 32, 32), np.float32)
    crop[0, :, 12:20, 12:20] = 0.3
    big, small = rescale_crops(np.concatenate([crop, crop]), np.array([2.0, 0.5]))
    for image, side in ((big, 16), (small, 4)):
        dark = np.argwhere(image[0] < 0.5)
        (y0, x0), (y1, x1) = dark.min(0), dark.max(0)
        assert abs((y1 - y0 + 1) - side) <= 1 and abs((x1 - x0 + 1) - side) <= 1
        assert abs((y0 + y1) / 2 - 15.5) <= 0.5 and abs((x0 + x1) / 2 - 15.5) <= 0.5
        assert image[:, 0, 0] == pytest.approx([1.0, 1.0, 1.0])  # white stays white, also off the edge
    assert np.allclose(rescale_crops(crop, np.array([1.0])), crop, atol=1e-5)


def test_channel_permutation_swaps_colours_of_about_the_given_share():
    crops = np.zeros((400, 3, 4, 4), np.float32)
    crops[:, 0], crops[:, 1], crops[:, 2] = 0.1, 0.5, 0.9
    out, changed = permute_channels(crops, np.random.default_rng(0), 0.75)
    assert 0.65 < changed.mean() < 0.85
    assert np.array_equal(out[~changed], crops[~changed])
    assert np.allclose(np.sort(out[:, :, 0, 0], axis=1), [0.1, 0.5, 0.9])  # the same colours, reordered
    assert (out[changed][:, 0, 0, 0] != 0.1).mean() > 0.5


def test_learning_rate_schedules():
    cosine = TrainConfig(lr=1e-3, warmup_steps=10, steps=110, lr_schedule="cosine", lr_final=0.1)
    rates = [learning_rate(cosine, s) for s in range(110)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert rates[10] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))  # decays monotonically
    assert rates[60] == pytest.approx(0.55e-3)  # half-way: half-way between lr and lr * lr_final
    assert learning_rate(cosine, 110) == pytest.approx(1e-4)
    constant = dataclasses.replace(cosine, lr_schedule="constant")
    assert learning_rate(constant, 100) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


def test_loss_helpers():
    pred = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    assert float(soft_iou_loss(pred, pred)) == pytest.approx(0.0)
    assert float(soft_iou_loss(pred, 1 - pred)) == pytest.approx(1.0)
    n = torch.nn.functional.normalize(torch.randn(1, 10, 3), dim=-1)
    bad = n.clone()
    bad[0, :2] *= -1  # two flipped normals: error 2 each, the worst 20 % is dropped
    assert float(normal_loss(bad, n, torch.ones(1, 10, dtype=torch.bool), 0.2)) == pytest.approx(0.0, abs=1e-6)
    assert float(normal_loss(bad, n, torch.ones(1, 10, dtype=torch.bool), 0.0)) == pytest.approx(0.4, abs=1e-5)


def test_tiny_training_lowers_the_loss_and_resumes_exactly(dataset, tmp_path):
    from backend.models.checkpoint import load_shape_model
    from backend.models.shape_model import ShapeModel
    from backend.render.volsdf import VolSDFConfig, VolSDFRenderer
    from backend.train.config import model_config

    source = [procedural_source(str(dataset), "train")]
    config = tiny(steps=30, checkpoint_every=15)
    straight = train(config, source, tmp_path / "a", log=lambda _m: None)
    assert straight["step"] == 30
    # interrupted after 15 steps, then resumed to 30: same batches, same weights
    train(dataclasses.replace(config, steps=15), source, tmp_path / "b", log=lambda _m: None)
    assert load_training_state(latest_checkpoint(tmp_path / "b")).step == 15
    messages = []
    resumed = train(config, source, tmp_path / "b", log=messages.append)
    assert any("resumed" in m and "step 15" in m for m in messages)
    assert resumed["step"] == 30
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 31))
    a, _ = load_shape_model(latest_checkpoint(tmp_path / "a"))
    b, meta = load_shape_model(latest_checkpoint(tmp_path / "b"))
    assert meta["step"] == 30
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(pa, pb, atol=1e-5), name

    # the trained model fits the training shapes better than the initial one (fixed batch)
    ds = ShapeViewDataset(source, 32, 2048, 512)
    batch = ds.batch([0, 1], np.random.default_rng(123), rays_per_view=64, supervise_views=1, sdf_points=1024)
    torch.manual_seed(config.seed)  # the trainer's initialisation
    initial = ShapeModel(model_config("tiny"))
    renderer = VolSDFRenderer(VolSDFConfig(n_samples=16)).eval()
    before = training_losses(initial, renderer, batch, config.losses)
    after = training_losses(a, renderer, batch, config.losses)
    assert float(after["sdf"].detach()) < 0.8 * float(before["sdf"].detach())
    assert float(after["total"].detach()) < float(before["total"].detach())


def test_init_from_fine_tunes_the_checkpoints_own_architecture_and_then_resumes(dataset, tmp_path):
    from backend.models.checkpoint import load_shape_model, save_shape_model
    from backend.models.shape_model import ShapeModel
    from backend.train.config import model_config

    # an architecture the "tiny" preset would not build (wider SDF net, other code size)
    base = model_config("tiny")
    architecture = dataclasses.replace(base, shape_dim=12, sdf=dataclasses.replace(base.sdf, hidden=24))
    torch.manual_seed(7)
    start = ShapeModel(architecture)
    save_shape_model(tmp_path / "start", start, {"beta": 0.03, "step": 123})

    source = [procedural_source(str(dataset), "train")]
    # learning rate 0: the steps run, the weights must stay those of the checkpoint
    summary = train(tiny(steps=2, checkpoint_every=2, lr=0.0), source, tmp_path / "run",
                    init_from=tmp_path / "start", log=lambda _m: None)
    assert summary["step"] == 2 and summary["runs"][0]["init_from"] == str(tmp_path / "start")
    assert summary["beta"] == pytest.approx(0.03, rel=1e-4)
    tuned, _ = load_shape_model(latest_checkpoint(tmp_path / "run"))
    assert tuned.config == architecture
    for (name, a), (_, b) in zip(start.state_dict().items(), tuned.state_dict().items()):
        assert torch.equal(a, b), name

    # the same command again continues the run's own checkpoint, not the initial weights
    messages = []
    resumed = train(tiny(steps=4, checkpoint_every=2), source, tmp_path / "run", init_from=tmp_path / "start",
                    log=messages.append)
    assert any("resumed" in m and "step 2" in m for m in messages)
    assert resumed["step"] == 4 and "init_from" not in resumed["runs"][-1]
    moved, _ = load_shape_model(latest_checkpoint(tmp_path / "run"))
    assert any(not torch.equal(a, b) for a, b in zip(start.state_dict().values(), moved.state_dict().values()))


def test_checkpoint_files_and_evaluation(dataset, tmp_path):
    source = [procedural_source(str(dataset), "train")]
    items = procedural_eval_items(dataset, "test", 32, limit=4)
    assert [it.name for it in items] == ["ball/ball_000001"]
    summary = train(tiny(steps=2, checkpoint_every=2), source, tmp_path / "run", eval_items=items,
                    log=lambda _m: None)
    name = latest_checkpoint(tmp_path / "run")
    for suffix in (".json", ".safetensors", ".train.json", ".train.safetensors"):
        assert Path(str(name) + suffix).is_file()
    state = load_training_state(name)
    assert state.step == 2 and state.optimizer["state"]  # Adam moments were saved
    assert "beta_raw" in state.renderer
    assert summary["eval"]["shapes"] == 1 and 0.0 <= summary["eval"]["f@0.05"] <= 1.0
    evals = [json.loads(x) for x in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert evals[-1]["step"] == 2 and evals[-1]["shapes"][0]["name"] == "ball/ball_000001"


def test_evaluation_scores_a_perfect_prediction_higher(dataset):
    """Sanity of the metric plumbing: the true mesh of a test shape scores F@5% near 1."""
    from backend.geometry.metrics import compare_meshes

    item = procedural_eval_items(dataset, "test", 32, limit=1)[0]
    scores = compare_meshes(item.vertices, item.faces, item.vertices, item.faces, n_points=2000)
    assert scores.fscore[0.05] > 0.99
    from backend.models.shape_model import ShapeModel
    from backend.train.config import model_config

    result = evaluate(ShapeModel(model_config("tiny")), [item], resolution=24, n_points=2000)
    assert result["summary"]["shapes"] == 1 and "chamfer_x1e3" in result["summary"]


def test_empty_dataset_is_a_named_error(tmp_path):
    from backend.train.trainer import TrainingError

    root = make_dataset(tmp_path / "empty", {"test": [("ball", 0)]}, views=1, res=16)
    with pytest.raises(TrainingError, match="no training shapes"):
        train(tiny(), [procedural_source(str(root), "train")], tmp_path / "run", log=lambda _m: None)


def test_train_script_on_disk_data_resumes_and_exports_with_heldin_metrics(dataset, tmp_path):
    from backend.models.checkpoint import checkpoint_id, load_shape_model

    script = load_script("train")
    run = tmp_path / "run"
    common = ["--data", str(dataset), "--model-preset", "tiny", "--quiet", "--real-photos", "0"]
    assert script.main(common + ["--out", str(run), "--steps", "3"]) == 0
    target = tmp_path / "weights" / "exported"
    assert script.main(common + ["--resume", str(run), "--steps", "5", "--lr", "1e-3", "--export", str(target)]) == 0
    _, meta = load_shape_model(target)
    assert meta["step"] == 5 and "--steps 5" in meta["command"]
    assert [(r["from_step"], r["lr"]) for r in meta["runs"]] == [(0, 3e-3), (3, 1e-3)]
    assert meta["heldin_test"][0]["shapes"] == 1 and "f@0.05" in meta["heldin_test"][0]
    assert meta["datasets"][0]["splits"]["train"] == 2
    assert meta["eval"]["heldin/shapes"] == 1
    assert checkpoint_id(target).startswith("shape_model:")
    # fine-tuning the exported weights in a new run
    assert script.main(common + ["--out", str(tmp_path / "tuned"), "--steps", "2", "--init-from", str(target)]) == 0
    _, tuned = load_shape_model(latest_checkpoint(tmp_path / "tuned"))
    assert tuned["step"] == 2 and tuned["runs"][0]["init_from"] == str(target)


def test_presets_name_real_model_configs():
    from backend.models.shape_model import ShapeModelConfig
    from backend.train.config import model_config

    assert model_config(TrainConfig.preset("cpu").model_preset) == ShapeModelConfig.preset("cpu")
    assert model_config(TrainConfig.preset("gpu").model_preset) == ShapeModelConfig.preset("gpu")
    assert model_config("tiny").encoder.image_size == 32
    with pytest.raises(ValueError, match="unknown training preset"):
        TrainConfig.preset("huge")
