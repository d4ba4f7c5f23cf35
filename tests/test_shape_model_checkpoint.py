"""Shape model checkpoints: safetensors + JSON round trip and every kind of mismatch."""

import json

import pytest
import torch
from safetensors import safe_open

from backend.models.checkpoint import (
    CheckpointConfigError,
    CheckpointError,
    CheckpointFiles,
    CheckpointFormatError,
    CheckpointWeightsError,
    checkpoint_id,
    config_from_dict,
    config_to_dict,
    load_shape_model,
    save_shape_model,
)
from backend.models.encoders import EncoderConfig
from backend.models.shape_model import SDFNetConfig, ShapeModel, ShapeModelConfig


def _tiny_config(**sdf):
    return ShapeModelConfig(
        shape_dim=16, color_dim=8,
        encoder=EncoderConfig(small_channels=(8, 16), head_hidden=16, image_size=32),
        sdf=SDFNetConfig(hidden=16, layers=3, skip_layers=(2,), **sdf),
    )


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = ShapeModel(_tiny_config()).eval()
    with torch.no_grad():  # make the weights differ from any fresh init
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    files = save_shape_model(tmp_path / "shape", model, metadata={"steps": 120, "data": "procedural-v1"})
    return model, files


def test_round_trip_reproduces_outputs_config_and_metadata(saved):
    model, files = saved
    assert files.weights.name == "shape.safetensors" and files.manifest.name == "shape.json"
    for path in (files.weights, files.manifest, files.weights.with_suffix("")):
        loaded, metadata = load_shape_model(path)
        loaded.eval()
        assert loaded.config == model.config
        assert metadata == {"steps": 120, "data": "procedural-v1"}
        images = torch.rand(2, 3, 32, 32)
        a, b = model.encode(images), loaded.encode(images)
        assert torch.equal(a.shape, b.shape) and torch.equal(a.color, b.color)
        p = torch.rand(2, 50, 3) - 0.5
        assert torch.equal(model.sdf(p, a.shape), loaded.sdf(p, a.shape))
    with safe_open(str(files.weights), framework="pt") as f:
        assert f.metadata()["kind"] == "shape_model"
    manifest = json.loads(files.manifest.read_text())
    assert manifest["format_version"] == 1 and manifest["config"]["sdf"]["skip_layers"] == [2]
    assert checkpoint_id(files.weights) == "shape_model:" + manifest["weights_sha256"][:16]


def test_expected_config_mismatch_names_the_fields(saved):
    _, files = saved
    expected = _tiny_config()
    expected.sdf.hidden = 32
    expected.encoder.backbone = "resnet18"
    with pytest.raises(CheckpointConfigError) as err:
        load_shape_model(files.manifest, expected_config=expected)
    assert "sdf.hidden: checkpoint 16, expected 32" in str(err.value)
    assert "encoder.backbone" in str(err.value)
    load_shape_model(files.manifest, expected_config=_tiny_config())  # equal config is fine


def test_edited_config_that_no_longer_fits_the_weights(saved):
    _, files = saved
    manifest = json.loads(files.manifest.read_text())
    manifest["config"]["sdf"]["hidden"] = 24
    files.manifest.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointWeightsError, match=r"sdf_net.hidden.0.weight: stored \[16, 55\], model \[24, 55\]"):
        load_shape_model(files.manifest)


@pytest.mark.parametrize(
    "edit, error, message",
    [
        (lambda m: m["config"].update(extra=1), CheckpointConfigError, "unknown fields \\['extra'\\]"),
        (lambda m: m["config"]["sdf"].pop("layers"), CheckpointConfigError, "missing fields \\['layers'\\]"),
        (lambda m: m["config"]["sdf"].update(hidden="wide"), CheckpointConfigError, "config.sdf.hidden"),
        (lambda m: m.update(format_version=2), CheckpointFormatError, "version 2"),
        (lambda m: m.update(kind="mapper"), CheckpointFormatError, "'mapper'"),
        (lambda m: m.update(format="other"), CheckpointFormatError, "not a stepstone-checkpoint"),
    ],
)
def test_manifest_problems_raise_named_errors(saved, edit, error, message):
    _, files = saved
    manifest = json.loads(files.manifest.read_text())
    edit(manifest)
    files.manifest.write_text(json.dumps(manifest))
    with pytest.raises(error, match=message):
        load_shape_model(files.manifest)


def test_weights_from_another_save_and_missing_files(saved, tmp_path):
    _, files = saved
    other = save_shape_model(tmp_path / "other", ShapeModel(_tiny_config()))
    files.weights.write_bytes(other.weights.read_bytes())
    with pytest.raises(CheckpointFormatError, match="hash"):
        load_shape_model(files.manifest)
    with pytest.raises(CheckpointFormatError, match="not found"):
        load_shape_model(tmp_path / "nothing")
    files.manifest.write_text("{not json")
    with pytest.raises(CheckpointFormatError, match="not valid JSON"):
        load_shape_model(files.manifest)


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(CheckpointError, match="JSON"):
        save_shape_model(tmp_path / "x", ShapeModel(_tiny_config()), metadata={"when": object()})


def test_config_dict_round_trip_and_paths():
    for config in (ShapeModelConfig.preset("cpu"), ShapeModelConfig.preset("gpu")):
        assert config_from_dict(ShapeModelConfig, config_to_dict(config)) == config
    files = CheckpointFiles.at("runs/model.v2")
    assert files.weights.name == "model.v2.safetensors" and files.manifest.name == "model.v2.json"


def test_config_written_before_a_later_field_loads_with_its_old_meaning(saved):
    _, files = saved
    manifest = json.loads(files.manifest.read_text())
    del manifest["config"]["encoder"]["azimuth_bins"]
    files.manifest.write_text(json.dumps(manifest))
    model, _ = load_shape_model(files.manifest)
    assert model.config.encoder.azimuth_bins == 0 and model.encoder.azimuth_head is None


def test_azimuth_classifier_round_trips(tmp_path):
    config = _tiny_config()
    config.encoder.azimuth_bins = 12
    model = ShapeModel(config)
    files = save_shape_model(tmp_path / "bins", model)
    loaded, _ = load_shape_model(files.manifest)
    assert loaded.config.encoder.azimuth_bins == 12
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded.encode(images).viewpoint.azimuth_logits, model.encode(images).viewpoint.azimuth_logits)


def test_shipped_weights_manifest_names_its_own_file():
    # hand-copying an exported checkpoint into place twice left the manifest naming the export's
    # file; installing with save_shape_model writes the right name
    from backend.pipelines.reconstruct.weights import DEFAULT_WEIGHTS

    manifest = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert manifest["weights_file"] == DEFAULT_WEIGHTS.with_suffix(".safetensors").name
