"""ISS stage 1: feature cache, mapper training (+ decoder fine-tuning), the ISS folder and its
checks at load time. Tiny random CLIP and shape model, synthetic renders, CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from script_modules import load_script

from backend.data.records import ShapeRecord
from backend.models.clip_testing import load_tiny_clip
from backend.models.encoders import EncoderConfig
from backend.models.shape_model import (
    ColorNetConfig,
    SDFNetConfig,
    ShapeModel,
    ShapeModelConfig,
)
from backend.pipelines.generate import GeneratePipeline
from backend.pipelines.generate_assets import (
    TextAssetsConfig,
    TextAssetsError,
    load_iss_assets,
)
from backend.render.cameras import focal_from_fov, orbit_cameras
from backend.train.mapper import (
    MapperTrainingError,
    code_error,
    save_iss,
    smoke_config,
    train_mapper,
)
from backend.train.mapper_data import (
    cached_features,
    load_feature_cache,
    save_feature_cache,
)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def clip():
    return load_tiny_clip()


def tiny_shape_model(seed: int = 0) -> ShapeModel:
    torch.manual_seed(seed)
    return ShapeModel(ShapeModelConfig(
        shape_dim=8, color_dim=8,
        encoder=EncoderConfig(small_channels=(8, 16), head_hidden=16, image_size=32),
        sdf=SDFNetConfig(hidden=32, layers=3, skip_layers=(2,)),
        color=ColorNetConfig(hidden=16, layers=2),
    )).eval()


def synthetic_records(count: int = 6, views: int = 2, size: int = 32) -> list[ShapeRecord]:
    """Coloured discs of different sizes (stand-ins for renders) with real orbit cameras."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    records = []
    for i in range(count):
        azimuth = torch.tensor([2 * math.pi * v / views for v in range(views)], dtype=torch.float32)
        cams = orbit_cameras(azimuth, torch.full((views,), 0.3), 2.0, focal=focal_from_fov(40.0, size), height=size, width=size)
        intrinsics = np.zeros((views, 3, 3), np.float32)
        intrinsics[:, 0, 0], intrinsics[:, 1, 1] = cams.focal[:, 0].numpy(), cams.focal[:, 1].numpy()
        intrinsics[:, :2, 2], intrinsics[:, 2, 2] = cams.principal.numpy(), 1.0
        extrinsics = np.tile(np.eye(4, dtype=np.float32), (views, 1, 1))
        extrinsics[:, :3, :3], extrinsics[:, :3, 3] = cams.rotation.numpy(), cams.translation.numpy()
        radius = size * (0.15 + 0.05 * i)
        mask = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2 < radius**2).astype(np.float32)
        colour = rng.uniform(0, 1, 3).astype(np.float32)
        images = np.broadcast_to(colour, (views, size, size, 3)).copy()
        records.append(ShapeRecord(
            shape_id=f"disc/disc_{i:06d}", category="disc", images=images, masks=np.stack([mask] * views),
            intrinsics=intrinsics, world_to_cam=extrinsics,
        ))
    return records


def test_feature_cache_is_built_once_and_keyed_by_clip_and_shape_model(clip, tmp_path):
    records = synthetic_records(3)
    names = [r.shape_id for r in records]
    model = tiny_shape_model()
    cache, path, was_cached = cached_features(records, names, clip, model, "shape_model:a", tmp_path, image_size=16)
    assert not was_cached and path.is_file()
    assert cache.clip_features.shape == (6, clip.embed_dim) and cache.codes.shape == (6, 16)
    assert cache.images.shape == (6, 3, 16, 16) and cache.masks.shape == (6, 16, 16)
    assert np.allclose(np.linalg.norm(cache.clip_features, axis=1), 1.0, atol=1e-5)
    # Intrinsics follow the downsizing: the principal point stays the image centre.
    assert np.allclose(cache.intrinsics[:, :2, 2], 8.0)

    def never():
        raise AssertionError("the cache should have been reused")

    again, same_path, was_cached = cached_features(never, names, clip, model, "shape_model:a", tmp_path, image_size=16)
    assert was_cached and same_path == path and np.array_equal(again.codes, cache.codes)
    _, other_path, was_cached = cached_features(records, names, clip, model, "shape_model:b", tmp_path, image_size=16)
    assert not was_cached and other_path != path
    round_trip = load_feature_cache(save_feature_cache(cache, tmp_path / "copy.npz"))
    assert list(round_trip.names) == list(cache.names)


def test_stage1_smoke_loss_decreases_and_the_iss_folder_loads(clip, tmp_path):
    records = synthetic_records(6)
    model = tiny_shape_model()
    cache, _, _ = cached_features(records, [r.shape_id for r in records], clip, model, "shape_model:base", tmp_path / "c")
    decoder_before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_mapper(cache, model, smoke_config(epochs=25, seed=1))
    history = result.history
    assert np.mean([h.mapper for h in history[-3:]]) < 0.7 * np.mean([h.mapper for h in history[:3]])
    renders = [h.render for h in history if h.render is not None]
    assert len(renders) >= len(history) // 3 and np.isfinite(renders).all()
    # The decoder is fine-tuned on a copy; the given model is untouched.
    assert all(torch.equal(v, decoder_before[k]) for k, v in model.state_dict().items())
    assert any(not torch.equal(v, decoder_before[k]) for k, v in result.shape_model.state_dict().items()
               if k.startswith("sdf_net"))
    assert code_error(result.mapper, cache) < 0.7 * float(np.abs(cache.codes).mean())

    iss = tmp_path / "iss"
    written = save_iss(iss, result, clip_model_id=clip.model_id)
    assets = load_iss_assets(TextAssetsConfig(clip=_clip_config(0), iss_dir=str(iss)), "cpu")
    assert assets.shape_model_id == written["shape_model_id"]
    features = torch.from_numpy(cache.clip_features[:4])
    assert torch.allclose(assets.mapper(features), result.mapper(features), atol=1e-6)
    assert GeneratePipeline("cpu", TextAssetsConfig(clip=_clip_config(0), iss_dir=str(iss))).unavailable_reason() is None

    with pytest.raises(TextAssetsError, match="trained with CLIP"):
        load_iss_assets(TextAssetsConfig(clip=_clip_config(1), iss_dir=str(iss)), "cpu")
    # A shape model swapped in afterwards is not the one the mapper maps into.
    from backend.models.checkpoint import save_shape_model

    save_shape_model(iss / "shape_model", tiny_shape_model(seed=7))
    with pytest.raises(TextAssetsError, match="maps into shape model"):
        load_iss_assets(TextAssetsConfig(clip=_clip_config(0), iss_dir=str(iss)), "cpu")


def test_mapper_only_training_and_a_cache_from_another_model_is_refused(clip, tmp_path):
    records = synthetic_records(2)
    cache, _, _ = cached_features(records, [r.shape_id for r in records], clip, tiny_shape_model(), "x", tmp_path)
    result = train_mapper(cache, tiny_shape_model(), smoke_config(epochs=2, decoder_finetune=False))
    assert all(h.render is None for h in result.history)
    bigger = ShapeModel(ShapeModelConfig(shape_dim=4, color_dim=4, encoder=EncoderConfig(small_channels=(8,), head_hidden=8),
                                         sdf=SDFNetConfig(hidden=16, layers=2, skip_layers=(1,)),
                                         color=ColorNetConfig(hidden=8, layers=1)))
    with pytest.raises(MapperTrainingError, match="another shape model"):
        train_mapper(cache, bigger, smoke_config(epochs=1))


def test_script_reports_missing_clip_weights(tmp_path, capsys):
    script = _load_script()
    missing = tmp_path / "clip.safetensors"
    assert script.main(["--download-clip", "--device", "cpu", "--clip-checkpoint", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def _clip_config(seed: int):
    from backend.models.clip_testing import tiny_clip_config

    return tiny_clip_config(seed)


def write_dataset(root, records: list[ShapeRecord]) -> None:
    """A dataset folder in the generator's layout (docs/dataset.md), views only."""
    import json

    from PIL import Image

    (root / "splits").mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({"format_version": 1, "categories": ["disc"]}))
    (root / "splits" / "train.txt").write_text("\n".join(r.shape_id for r in records) + "\n")
    for record in records:
        folder = root / record.shape_id
        (folder / "views").mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps({"category": record.category}))
        views = []
        for v in range(record.num_views):
            rgba = np.concatenate([record.images[v], record.masks[v][..., None]], axis=-1)
            Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(folder / "views" / f"rgba_{v:04d}.png")
            views.append({"rgba": f"views/rgba_{v:04d}.png", "K": record.intrinsics[v].tolist(),
                          "world_to_cam": record.world_to_cam[v].tolist()})
        (folder / "cameras.json").write_text(json.dumps({"resolution": record.images.shape[1], "views": views}))


def test_script_trains_from_a_dataset_folder_into_a_loadable_iss_folder(clip, tmp_path):
    from safetensors.torch import save_file

    from backend.models.checkpoint import save_shape_model

    write_dataset(tmp_path / "data", synthetic_records(3))
    save_shape_model(tmp_path / "shape", tiny_shape_model())
    # The tiny CLIP's weights as a file, loaded the way a user's downloaded checkpoint is.
    weights = tmp_path / "tiny_clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip._model.state_dict().items()}, str(weights))
    script = _load_script()
    args = ["--data", str(tmp_path / "data"), "--shape-model", str(tmp_path / "shape"), "--out", str(tmp_path / "iss"),
            "--config", "smoke", "--epochs", "3", "--device", "cpu", "--cache-dir", str(tmp_path / "cache"),
            "--clip-model", clip.model_name, "--clip-pretrained", "none", "--clip-checkpoint", str(weights)]
    assert script.main(args) == 0
    assert len(list((tmp_path / "cache").glob("mapper_features_*.npz"))) == 1
    from dataclasses import replace

    clip_config = replace(_clip_config(0), pretrained=None, allow_random_weights=False, checkpoint_path=str(weights))
    assets = load_iss_assets(TextAssetsConfig(clip=clip_config, iss_dir=str(tmp_path / "iss")), "cpu")
    assert assets.mapper.config.code_dim == 16
    assert script.main(args) == 0  # the second run reads the feature cache


def test_script_trains_without_a_dataset_from_shapes_it_renders(clip, tmp_path):
    """Issue 19, item 2: the mapper needs no Blender dataset: procedural shapes photographed by
    the project's renderer give the views (and cameras) it learns from."""
    from safetensors.torch import save_file

    from backend.models.checkpoint import save_shape_model
    from backend.train.rendered_records import render_record

    record = render_record("vase", 5_000_000, views=3, size=64)
    assert record.images.shape == (3, 64, 64, 3) and record.masks.shape == (3, 64, 64)
    assert 0.05 < record.masks.mean() < 0.9 and np.allclose(record.intrinsics[:, 2, 2], 1.0)
    centre = record.world_to_cam[:, :3, :3] @ np.zeros(3) + record.world_to_cam[:, :3, 3]
    assert (centre[:, 2] > 0).all()  # the object is in front of every camera (OpenCV: +z forward)
    save_shape_model(tmp_path / "shape", tiny_shape_model())
    weights = tmp_path / "tiny_clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip._model.state_dict().items()}, str(weights))
    args = ["--rendered", "1", "--max-shapes", "2", "--views", "2", "--shape-model", str(tmp_path / "shape"),
            "--out", str(tmp_path / "iss"), "--config", "smoke", "--epochs", "2", "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache"), "--clip-model", clip.model_name, "--clip-pretrained", "none",
            "--clip-checkpoint", str(weights)]
    assert _load_script().main(args) == 0
    from dataclasses import replace

    clip_config = replace(_clip_config(0), pretrained=None, allow_random_weights=False, checkpoint_path=str(weights))
    assets = load_iss_assets(TextAssetsConfig(clip=clip_config, iss_dir=str(tmp_path / "iss")), "cpu")
    assert assets.mapper.config.code_dim == 16
    import json

    data = json.loads((tmp_path / "iss" / "shape_model.json").read_text())["metadata"]["data"]
    assert data["rendered_per_category"] == 1 and data["shapes"] == 2 and data["views"] == 4


def _load_script():
    return load_script("train_mapper")
