"""The ISS CLIP2Shape mapper: shapes, noise mixing, training signal, and saved files tied to a CLIP."""

from __future__ import annotations

import json
import math

import pytest
import torch

from backend.models.clip_testing import TINY_CLIP_EMBED_DIM, load_tiny_clip
from backend.models.mapper import (
    Clip2ShapeMapper,
    MapperClipMismatch,
    MapperConfig,
    MapperFileError,
    MapperShapeModelMismatch,
    load_mapper,
    mapper_paths,
    mix_clip_noise,
    read_mapper_metadata,
    save_mapper,
)


def _small_mapper(seed: int = 0, clip_dim: int = TINY_CLIP_EMBED_DIM) -> Clip2ShapeMapper:
    torch.manual_seed(seed)
    mapper = Clip2ShapeMapper(MapperConfig(clip_dim=clip_dim, code_dim=16, hidden_dim=32, num_blocks=2))
    # Residual blocks start as the identity; perturb them so the round trip checks every tensor.
    with torch.no_grad():
        for p in mapper.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return mapper


def test_default_config_maps_vit_b32_features_to_codes():
    mapper = Clip2ShapeMapper()
    codes = mapper(torch.randn(4, 512))
    assert codes.shape == (4, 256)
    cpu_preset = Clip2ShapeMapper(MapperConfig(code_dim=64))
    assert cpu_preset(torch.randn(2, 512)).shape == (2, 64)
    with pytest.raises(ValueError, match="512"):
        mapper(torch.randn(4, 64))


def test_config_is_validated():
    with pytest.raises(ValueError, match="code_dim"):
        MapperConfig(code_dim=0)
    with pytest.raises(ValueError, match="noise weight"):
        MapperConfig(noise_weight=1.5)


def test_mapper_input_scale_does_not_matter():
    mapper = _small_mapper()
    features = torch.randn(3, TINY_CLIP_EMBED_DIM)
    assert torch.allclose(mapper(features), mapper(5.0 * features), atol=1e-5)


def test_noise_mixing_is_unit_length_and_keeps_the_iss_ratio():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(4000, 512, generator=generator)
    mixed = mix_clip_noise(features, 0.75, generator=generator)
    assert torch.allclose(mixed.norm(dim=-1), torch.ones(4000), atol=1e-5)
    cosine = torch.nn.functional.cosine_similarity(mixed, features, dim=-1)
    # Unit feature and unit noise, nearly orthogonal in 512-d: cos ≈ 0.25 / sqrt(0.25² + 0.75²).
    assert cosine.mean().item() == pytest.approx(0.25 / math.hypot(0.25, 0.75), abs=0.01)
    closer = torch.nn.functional.cosine_similarity(mix_clip_noise(features, 0.5, generator=generator), features)
    assert closer.mean() > cosine.mean() + 0.3


def test_noise_mixing_extremes_and_bad_weight():
    features = torch.randn(8, 64)
    unit = torch.nn.functional.normalize(features, dim=-1)
    assert torch.allclose(mix_clip_noise(features, 0.0), unit, atol=1e-6)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.allclose(mix_clip_noise(features, 1.0, g1), mix_clip_noise(-features, 1.0, g2))
    with pytest.raises(ValueError):
        mix_clip_noise(features, -0.1)


def test_mapper_learns_a_regression_from_noisy_features():
    # Stage-1 shaped training on made-up pairs: the L1 loss must fall in a few steps.
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(32, TINY_CLIP_EMBED_DIM, generator=generator)
    codes = torch.randn(32, 16, generator=generator)
    mapper = _small_mapper()
    optimiser = torch.optim.Adam(mapper.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = (mapper(mix_clip_noise(features, 0.25, generator)) - codes).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_save_load_round_trip_records_clip_and_code_dim(tmp_path):
    clip = load_tiny_clip()
    mapper = _small_mapper()
    weights, meta_path = save_mapper(mapper, tmp_path / "mapper", clip_model_id=clip.model_id, shape_model_id="svr-a")
    assert (weights.name, meta_path.name) == ("mapper.safetensors", "mapper.json")
    meta = json.loads(meta_path.read_text())
    assert meta["clip_model_id"] == clip.model_id and meta["code_dim"] == 16
    assert read_mapper_metadata(tmp_path / "mapper.safetensors").config == mapper.config

    loaded = load_mapper(tmp_path / "mapper", clip_model_id=clip.model_id, shape_model_id="svr-a")
    text = clip.encode_text(["a tall vase"])
    assert torch.equal(loaded(text), mapper(text))


def test_loading_for_another_clip_raises_mismatch(tmp_path):
    save_mapper(_small_mapper(), tmp_path / "m", clip_model_id=load_tiny_clip(seed=0).model_id)
    other = load_tiny_clip(seed=1).model_id
    with pytest.raises(MapperClipMismatch) as err:
        load_mapper(tmp_path / "m", clip_model_id=other)
    assert other in str(err.value) and "random-seed0" in str(err.value)


def test_loading_for_another_shape_model_raises_mismatch(tmp_path):
    save_mapper(_small_mapper(), tmp_path / "m", clip_model_id="clip-x", shape_model_id="svr-a")
    with pytest.raises(MapperShapeModelMismatch):
        load_mapper(tmp_path / "m", clip_model_id="clip-x", shape_model_id="svr-b")


def test_broken_or_mismatched_files_raise_file_error(tmp_path):
    save_mapper(_small_mapper(seed=0), tmp_path / "a", clip_model_id="clip-x")
    save_mapper(_small_mapper(seed=1), tmp_path / "b", clip_model_id="clip-x")
    weights_a, _ = mapper_paths(tmp_path / "a")
    weights_b, _ = mapper_paths(tmp_path / "b")
    weights_a.write_bytes(weights_b.read_bytes())  # someone else's weights next to a's JSON
    with pytest.raises(MapperFileError, match="checksum"):
        load_mapper(tmp_path / "a", clip_model_id="clip-x")
    weights_b.unlink()
    with pytest.raises(MapperFileError, match="missing"):
        load_mapper(tmp_path / "b", clip_model_id="clip-x")
    with pytest.raises(MapperFileError, match="no mapper metadata"):
        load_mapper(tmp_path / "nothing", clip_model_id="clip-x")
    (tmp_path / "c.json").write_text('{"format": "something else"}')
    with pytest.raises(MapperFileError, match="not a Stepstone"):
        read_mapper_metadata(tmp_path / "c")
    with pytest.raises(ValueError, match="clip_model_id"):
        save_mapper(_small_mapper(), tmp_path / "d", clip_model_id="")
