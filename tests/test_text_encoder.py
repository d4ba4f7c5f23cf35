"""The offline text model: the network, its training on code records, and its checkpoint."""

import numpy as np
import pytest
import torch

from backend.models.text_encoder import PAD, TextEncoder, TextEncoderConfig, pad_batch
from backend.train.text_codes import CodeRecords


def test_pad_batch_and_the_pooled_forward_ignore_padding():
    ids = pad_batch([[3, 4], [5]])
    assert ids.tolist() == [[3, 4], [5, PAD]]
    model = TextEncoder(TextEncoderConfig(vocab_size=8, embed_dim=8, hidden=16, layers=2, shape_dim=3, color_dim=2))
    out = model(ids)
    assert out.shape == (2, 3 + 2 + 3)
    # padding changes nothing: the second prompt alone gives the same output
    assert torch.allclose(model(pad_batch([[5]])), out[1:], atol=1e-6)
    with pytest.raises(ValueError, match="at least one known word"):
        model(pad_batch([[]]))


def test_outputs_come_back_in_the_shape_models_units_and_colours_in_range():
    model = TextEncoder(TextEncoderConfig(vocab_size=4, embed_dim=4, hidden=8, layers=2, shape_dim=2, color_dim=1))
    targets = torch.tensor([[1.0, 10.0, -5.0, 0.9, 0.1, 0.1], [3.0, 30.0, -7.0, 0.1, 0.1, 0.9]])
    model.set_code_statistics(targets)
    assert torch.allclose(model.code_mean, torch.tensor([2.0, 20.0, -6.0, 0.5, 0.1, 0.5]))
    shape, color, rgb = model.codes(pad_batch([[1]]))
    out = model(pad_batch([[1]])) * model.code_scale + model.code_mean
    assert torch.allclose(torch.cat([shape, color], 1), out[:, :3])
    assert torch.allclose(rgb, out[:, 3:].clamp(0, 1)) and shape.shape == (1, 2) and color.shape == (1, 1)


def synthetic_records():
    """Two categories whose codes differ clearly; extents say 'tall' for one, 'wide' for the other."""
    rng = np.random.default_rng(0)
    categories = ["chair"] * 6 + ["vase"] * 6
    shape = np.stack([np.full((2, 4), 1.0 if c == "chair" else -1.0) for c in categories]) + 0.05 * rng.normal(size=(12, 2, 4))
    color = np.stack([np.full((2, 3), 0.5 if c == "chair" else -0.5) for c in categories])
    extents = np.tile([1.0, 0.8, 0.9], (12, 1))
    return CodeRecords(categories, np.arange(12) + 2_000_000, extents.astype(np.float32),
                       shape.astype(np.float32), color.astype(np.float32))


def test_training_puts_each_category_near_its_own_codes():
    from backend.text.vocab import build_vocabulary
    from backend.train.text_model import TextTrainConfig, evaluate_text_encoder, train_text_encoder

    records = synthetic_records()
    vocab = build_vocabulary()
    config = TextTrainConfig(captions_per_shape=12, epochs=8, batch_size=32, model={"embed_dim": 16, "hidden": 32})
    model, report = train_text_encoder(records, vocab, config, log=lambda line: None)
    assert report["loss"][-1] < report["loss"][0]
    scores = evaluate_text_encoder(model, records, vocab, "heldout", per_shape=4)
    assert scores["nearest_same_category"] > 0.9 and scores["l1"] < scores["l1_of_mean_code"]
