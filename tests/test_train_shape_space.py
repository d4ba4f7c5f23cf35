"""Two-stage shape-space training (backend/train/shape_space.py, scripts/train.py --recipe shape-space) on
the analytic test datasets of test_train_shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from script_modules import load_script

from backend.models.checkpoint import load_shape_model, save_shape_model
from backend.models.encoders import azimuth_sector
from backend.models.shape_model import ShapeModel
from backend.train.config import model_config
from backend.train.data import ShapeViewDataset, procedural_source
from backend.train.checkpoints import latest_checkpoint
from backend.train.shape_space import (
    ShapeSpaceConfig,
    encoder_checkpoints,
    fit_encoder,
    fit_shape_codes,
    mean_view_codes,
    shape_space_model,
)
from tests.test_train_shape import make_dataset, write_shape

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "ds",
                        {"train": [("ball", 0), ("crate", 0)], "test": [("ball", 1)]})


@pytest.fixture(scope="module")
def shapes(dataset):
    return ShapeViewDataset([procedural_source(str(dataset), "train")], 32, sdf_points=2048, surface_points=1).shapes


def _sdf_error(model, shapes, codes) -> float:
    with torch.no_grad():
        errors = [(model.sdf(torch.from_numpy(s.sdf_points)[None], codes[i:i + 1])[0] - torch.from_numpy(s.sdf))
                  .abs().clamp(max=0.1).mean() for i, s in enumerate(shapes)]
    return float(torch.stack(errors).mean())


def _code_error(model, shapes, codes) -> float:
    """Mean squared error of the encoder's codes over every view of ``shapes``."""
    with torch.no_grad():
        return float(torch.stack([((model.encode(torch.from_numpy(s.crops)).shape - codes[i]) ** 2).sum(-1).mean()
                                  for i, s in enumerate(shapes)]).mean())


def test_fitted_codes_describe_the_training_shapes_better(shapes):
    torch.manual_seed(0)
    model = ShapeModel(model_config("tiny"))
    start = mean_view_codes(model.encoder, shapes)
    before = _sdf_error(model, shapes, start)
    codes = fit_shape_codes(model, shapes, ShapeSpaceConfig(code_steps=150, code_batch=2, code_points=512,
                                                            code_lr=3e-3, decoder_lr=1e-3), log=lambda _: None)
    assert codes.shape == start.shape and not torch.equal(codes, start)
    assert _sdf_error(model, shapes, codes) < 0.5 * before


def test_codes_of_added_shapes_fit_with_the_network_frozen(shapes):
    torch.manual_seed(0)
    model = ShapeModel(model_config("tiny"))
    config = ShapeSpaceConfig(code_steps=150, code_batch=2, code_points=512, code_lr=3e-3, decoder_lr=1e-3)
    fit_shape_codes(model, shapes, config, log=lambda _: None)  # a network that has learnt these shapes
    weights = {k: v.clone() for k, v in model.sdf_net.state_dict().items()}
    start = mean_view_codes(model.encoder, shapes)
    codes = fit_shape_codes(model, shapes, config, log=lambda _: None, train_decoder=False)
    assert all(torch.equal(v, weights[k]) for k, v in model.sdf_net.state_dict().items())
    assert _sdf_error(model, shapes, codes) < 0.8 * _sdf_error(model, shapes, start)


def test_encoder_learns_to_predict_the_codes_and_the_azimuth_sector(shapes):
    torch.manual_seed(0)
    initial = ShapeModel(model_config("tiny"))
    # without the regularisation, which slows fitting so few steps (tested on its own below)
    config = ShapeSpaceConfig(encoder_steps=200, encoder_batch=8, encoder_lr=3e-3, pool="flatten", azimuth_bins=8,
                              weight_decay=0.0, feature_dropout=0.0, scale_jitter=0.0, channel_swap=0.0)
    model = shape_space_model(initial, config, log=lambda _: None)
    assert model.config.encoder.pool == "flatten" and model.encoder.azimuth_head is not None
    assert torch.equal(model.sdf_net.hidden[0].weight, initial.sdf_net.hidden[0].weight)  # the decoder is kept
    codes = torch.randn(len(shapes), model.config.shape_dim) * 0.5

    before = _code_error(model, shapes, codes)
    fit_encoder(model, shapes, codes, config, teacher=initial.encoder, log=lambda _: None)
    assert _code_error(model, shapes, codes) < 0.3 * before
    with torch.no_grad():
        views = torch.from_numpy(np.concatenate([s.crops for s in shapes]))
        truth = torch.from_numpy(np.concatenate([s.viewpoint[:, 0] for s in shapes]))
        predicted = model.encode(views).viewpoint.azimuth_logits.argmax(-1)
    assert (predicted == azimuth_sector(truth, 8)).float().mean() >= 0.8  # the classifier fits its training views


def test_regularised_encoder_still_learns_the_codes(shapes):
    torch.manual_seed(0)
    config = ShapeSpaceConfig(encoder_steps=150, encoder_batch=8, encoder_lr=3e-3, pool="flatten", azimuth_bins=0)
    assert config.feature_dropout > 0 and config.channel_swap > 0 and config.scale_jitter > 0
    model = shape_space_model(ShapeModel(model_config("tiny")), config, log=lambda _: None)
    codes = torch.randn(len(shapes), model.config.shape_dim) * 0.5

    before = _code_error(model, shapes, codes)
    fit_encoder(model, shapes, codes, config, teacher=model.encoder, log=lambda _: None)
    assert _code_error(model, shapes, codes) < 0.5 * before
    assert model.encoder.feature_dropout.p == 0.0 and not model.encoder.training  # dropout acts only while training


def test_field_term_pulls_predictions_towards_the_shapes(shapes):
    """Given the wrong code targets (each shape the other's), the field term makes the encoder's
    codes fit the shapes' own 3D samples better than regressing the targets alone does."""
    torch.manual_seed(0)
    fitted = ShapeModel(model_config("tiny"))
    codes = fit_shape_codes(fitted, shapes, ShapeSpaceConfig(code_steps=150, code_batch=2, code_points=512,
                                                             code_lr=3e-3, decoder_lr=1e-3), log=lambda _: None)
    swapped = codes.flip(0)
    errors = {}
    for weight in (0.0, 300.0):
        torch.manual_seed(0)
        model = shape_space_model(fitted, ShapeSpaceConfig(azimuth_bins=0), log=lambda _: None)
        config = ShapeSpaceConfig(encoder_steps=150, encoder_batch=8, encoder_lr=3e-3, azimuth_bins=0,
                                  weight_decay=0.0, feature_dropout=0.0, scale_jitter=0.0, channel_swap=0.0,
                                  field_weight=weight, field_points=256)
        fit_encoder(model, shapes, swapped, config, log=lambda _: None)
        assert torch.equal(model.sdf_net.hidden[0].weight, fitted.sdf_net.hidden[0].weight)  # the decoder stays
        with torch.no_grad():
            predicted = torch.stack([model.encode(torch.from_numpy(s.crops)).shape.mean(0) for s in shapes])
        errors[weight] = _sdf_error(model, shapes, predicted)
    assert errors[300.0] < 0.7 * errors[0.0]


def test_interrupted_encoder_resumes_to_the_uninterrupted_result(shapes, tmp_path):
    """Every source of randomness is on (augmentation, channel swaps, dropout, the field term's
    samples): a run continued from its step-3 checkpoint ends where the uninterrupted run ends."""
    initial = ShapeModel(model_config("tiny"))
    config = ShapeSpaceConfig(encoder_steps=6, encoder_batch=8, pool="flatten", azimuth_bins=6, field_weight=30.0,
                              field_points=64)
    codes = torch.randn(len(shapes), initial.config.shape_dim) * 0.5
    torch.manual_seed(0)
    whole = shape_space_model(initial, config, log=lambda _: None)
    fit_encoder(whole, shapes, codes, config, teacher=initial.encoder, log=lambda _: None,
                checkpoints=tmp_path / "whole", checkpoint_every=3)
    assert latest_checkpoint(tmp_path / "whole").name == "step_0000003"  # none after the last step

    torch.manual_seed(123)  # the checkpoint's generator state must win over this
    resumed, lines = shape_space_model(initial, config, log=lambda _: None), []
    fit_encoder(resumed, shapes, codes, config, teacher=initial.encoder, log=lines.append,
                checkpoints=tmp_path / "whole", checkpoint_every=3)
    assert any("resumed" in line and "step 3" in line for line in lines)
    assert all(torch.equal(v, whole.encoder.state_dict()[k]) for k, v in resumed.encoder.state_dict().items())

    torch.manual_seed(123)  # and without the checkpoint that seed gives another encoder: the check above can fail
    other = shape_space_model(initial, config, log=lambda _: None)
    fit_encoder(other, shapes, codes, config, teacher=initial.encoder, log=lambda _: None)
    assert not all(torch.equal(v, whole.encoder.state_dict()[k]) for k, v in other.encoder.state_dict().items())


def test_encoder_checkpoint_folders_follow_the_settings(tmp_path):
    a = encoder_checkpoints(tmp_path, {"steps": 10, "init_from": "x"})
    assert encoder_checkpoints(tmp_path, {"init_from": "x", "steps": 10}) == a
    assert encoder_checkpoints(tmp_path, {"steps": 20, "init_from": "x"}) != a
    assert json.loads((a / "settings.json").read_text()) == {"steps": 10, "init_from": "x"}


def _train_script():
    return load_script("train")


def test_script_fits_reuses_stage_one_and_exports(dataset, tmp_path):
    script = _train_script()
    torch.manual_seed(0)
    init = save_shape_model(tmp_path / "init", ShapeModel(model_config("tiny")), {"beta": 0.03})
    run, out = tmp_path / "run", tmp_path / "out"
    args = ["--data", str(dataset), "--init-from", str(init.manifest), "--out", str(run), "--export", str(out),
            "--code-steps", "3", "--encoder-steps", "2", "--azimuth-bins", "6", "--threads", "1",
            "--recipe", "shape-space"]
    assert script.main(args) == 0
    assert (run / "codes.safetensors").exists() and (run / "stage1.json").exists()
    model, meta = load_shape_model(out)
    assert model.config.encoder.azimuth_bins == 6 and model.config.encoder.pool == "flatten"
    assert meta["beta"] == 0.03 and meta["train_shapes"] == 2 and "codes_s" in meta["timings"]
    assert meta["heldin_test"][0]["shapes"] == 1 and "--code-steps 3" in meta["command"]
    assert not list(run.glob("encoder-*"))  # the encoder's checkpoints go once the export is written
    stage1, _ = load_shape_model(run / "stage1")
    assert script.main(args) == 0  # stage 1 is reused: the decoder is the stored one
    again, meta2 = load_shape_model(out)
    assert meta2["timings"]["codes_s"] == meta["timings"]["codes_s"]  # stage 1's time is carried over
    assert torch.equal(again.sdf_net.hidden[0].weight, stage1.sdf_net.hidden[0].weight)
    # continuing from the exported model on the same stage 1: its encoder is the start
    continued = tmp_path / "continued"
    assert script.main([*args[:3], str(out), *args[4:6], "--export", str(continued), *args[8:], "--encoder-steps", "0"]) == 0
    model3, _ = load_shape_model(continued)
    assert all(torch.equal(v, again.encoder.state_dict()[k]) for k, v in model3.encoder.state_dict().items())
    assert torch.equal(model3.sdf_net.hidden[0].weight, stage1.sdf_net.hidden[0].weight)


def test_script_fits_codes_for_shapes_added_since_stage_one(tmp_path):
    script = _train_script()
    data = make_dataset(tmp_path / "ds", {"train": [("ball", 0), ("crate", 0)], "test": [("ball", 1)]})
    torch.manual_seed(0)
    init = save_shape_model(tmp_path / "init", ShapeModel(model_config("tiny")), {"beta": 0.03})
    run, out = tmp_path / "run", tmp_path / "out"
    args = ["--data", str(data), "--init-from", str(init.manifest), "--out", str(run), "--export", str(out),
            "--code-steps", "3", "--encoder-steps", "2", "--threads", "1", "--recipe", "shape-space"]
    assert script.main(args) == 0
    stage1, _ = load_shape_model(run / "stage1")
    first = dict(zip((run / "codes_names.txt").read_text().split("\n"), load_file(str(run / "codes.safetensors"))["codes"]))

    write_shape(data, "crate", 2, 3, 32)  # the dataset grows: one more training shape
    with open(data / "splits" / "train.txt", "a") as f:
        f.write("crate/crate_000002\n")
    assert script.main(args) == 0
    names = (run / "codes_names.txt").read_text().split("\n")
    codes = dict(zip(names, load_file(str(run / "codes.safetensors"))["codes"]))
    assert sorted(names) == sorted([*first, "crate/crate_000002"])
    assert all(torch.equal(codes[n], first[n]) for n in first)  # earlier codes are kept as they were
    model, meta = load_shape_model(out)
    assert meta["train_shapes"] == 3 and meta["timings"]["added_shapes"] == 1
    assert torch.equal(model.sdf_net.hidden[0].weight, stage1.sdf_net.hidden[0].weight)  # the network stays

    (data / "splits" / "train.txt").write_text("ball/ball_000000\n")  # a shape of stage 1 is gone
    with pytest.raises(SystemExit, match="remove"):
        script.main(args)
