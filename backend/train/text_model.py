"""Training the offline text model (`backend/models/text_encoder.py`) on generated captions.

Each procedural shape of the code records (`text_codes.py`) gets many captions made from its own
parameters (`backend/text/captions.py`, train phrasings only); the encoder learns to put every one
of them on the shape's mean code. Short captions ("a chair") thus learn the mean of every shape
they describe, long ones the shape itself. Word dropout keeps any single word from being needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from backend.models.text_encoder import TextEncoder, TextEncoderConfig, pad_batch
from backend.train.text_codes import CodeRecords


@dataclass(frozen=True)
class TextTrainConfig:
    captions_per_shape: int = 48
    epochs: int = 12
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    word_dropout: float = 0.15
    color_weight: float = 0.5
    """The colour code counts this much (per dimension) against the shape code."""
    rgb_weight: float = 8.0
    """The main colour's three numbers count this much each: without it 3 of 131 outputs would be
    lost in the codes' loss."""
    seed: int = 0
    model: dict = field(default_factory=dict)
    """Overrides of `TextEncoderConfig` (embed_dim, hidden, layers)."""


@dataclass
class CaptionSet:
    token_ids: list[list[int]]
    shape_index: np.ndarray
    """[M] record row of each caption."""
    texts: list[str]


def shape_attributes(records: CodeRecords) -> list:
    """Caption attributes of every record's shape (its spec rebuilt from category and seed)."""
    from backend.data.procedural import builder, category_rng
    from backend.text.attributes import attributes_for

    return [attributes_for(category, builder(category)(category_rng(category, int(seed))), tuple(extents))
            for category, seed, extents in zip(records.categories, records.seeds, records.extents)]


def make_captions(attributes: list, vocab, per_shape: int, split: str, seed: int) -> CaptionSet:
    """``per_shape`` captions of each shape (its `shape_attributes`), as token ids."""
    from backend.text.captions import captions
    from backend.text.vocab import UnknownPromptError, analyse

    rng = np.random.default_rng(seed)
    ids, rows, texts = [], [], []
    for row, attrs in enumerate(attributes):
        for text in captions(attrs, rng, per_shape, split=split):
            try:  # exactly what inference feeds the encoder: the known content words, synonyms resolved
                tokens = [vocab.index(word) for word in analyse(text, vocab).known]
            except UnknownPromptError:
                continue
            if tokens:
                ids.append(tokens)
                rows.append(row)
                texts.append(text)
    return CaptionSet(ids, np.asarray(rows), texts)


def target_codes(records: CodeRecords, attributes: list) -> torch.Tensor:
    """[N, shape_dim + color_dim + 3]: each shape's codes averaged over its photographed views, and
    its main part's sRGB colour."""
    rgb = np.array([a.main.rgb for a in attributes], dtype=np.float32)
    return torch.from_numpy(np.concatenate([records.shape_codes.mean(1), records.color_codes.mean(1), rgb], axis=1))


def train_text_encoder(records: CodeRecords, vocab, config: TextTrainConfig = TextTrainConfig(),
                       log: Callable[[str], None] = print) -> tuple[TextEncoder, dict]:
    torch.manual_seed(config.seed)
    attributes = shape_attributes(records)
    targets = target_codes(records, attributes)
    shape_dim = records.shape_codes.shape[-1]
    model = TextEncoder(TextEncoderConfig(vocab_size=len(vocab), shape_dim=shape_dim,
                                          color_dim=records.color_codes.shape[-1], **config.model))
    model.set_code_statistics(targets)
    standard = (targets - model.code_mean) / model.code_scale
    data = make_captions(attributes, vocab, config.captions_per_shape, "train", config.seed)
    weights = torch.ones(standard.shape[1])
    weights[shape_dim:] = config.color_weight
    weights[-3:] = config.rgb_weight
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(data.token_ids) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.lr, total_steps=config.epochs * steps_per_epoch)
    gen = np.random.default_rng(config.seed)
    started, history = time.monotonic(), []
    for epoch in range(config.epochs):
        order = gen.permutation(len(data.token_ids))
        total = 0.0
        for step in range(steps_per_epoch):
            batch = order[step * config.batch_size:(step + 1) * config.batch_size]
            ids = pad_batch([_drop_words(data.token_ids[i], config.word_dropout, gen) for i in batch])
            predicted = model(ids)
            loss = ((predicted - standard[data.shape_index[batch]]).abs() * weights).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        history.append(total / steps_per_epoch)
        log(f"epoch {epoch + 1}/{config.epochs}: loss {history[-1]:.4f} ({time.monotonic() - started:.0f} s)")
    model.eval()
    return model, {"captions": len(data.token_ids), "shapes": len(records), "loss": history,
                   "seconds": round(time.monotonic() - started, 1)}


def _drop_words(ids: list[int], rate: float, gen: np.random.Generator) -> list[int]:
    kept = [i for i in ids if gen.random() >= rate]
    return kept or [ids[int(gen.integers(len(ids)))]]


@torch.no_grad()
def evaluate_text_encoder(model: TextEncoder, records: CodeRecords, vocab, split: str = "heldout",
                          per_shape: int = 8, seed: int = 1) -> dict:
    """On shapes and phrasings it was not trained on: how close each caption's code comes to its
    own shape's (L1 in standardised units), and whether the nearest evaluation shape (cosine, in
    standardised units) is of the caption's category (top-1) — a check of the code, not of the
    generated mesh."""
    attributes = shape_attributes(records)
    data = make_captions(attributes, vocab, per_shape, split, seed)
    targets = (target_codes(records, attributes) - model.code_mean) / model.code_scale
    predicted = torch.cat([model(pad_batch(data.token_ids[i:i + 512])) for i in range(0, len(data.token_ids), 512)])
    own = targets[data.shape_index]
    similarity = torch.nn.functional.normalize(predicted, dim=1) @ torch.nn.functional.normalize(targets, dim=1).T
    nearest = similarity.argmax(dim=1).numpy()
    categories = np.asarray(records.categories)
    rgb, own_rgb = model.split(predicted)[2], model.split(own)[2]
    return {"captions": len(data.token_ids), "l1": float((predicted - own).abs().mean()),
            "l1_of_mean_code": float(own.abs().mean()), "rgb_l1": float((rgb - own_rgb).abs().mean()),
            "nearest_same_category": float((categories[nearest] == categories[data.shape_index]).mean())}
