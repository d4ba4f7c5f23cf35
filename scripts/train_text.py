#!/usr/bin/env python
"""Train the offline text model that `generate` uses when no CLIP is installed.

    .venv/bin/python scripts/train_text.py                       # → backend/weights/text_model.*
    .venv/bin/python scripts/train_text.py --per-category 16 --epochs 5 --out /tmp/text_model

1. Code records (`backend/train/text_codes.py`): ``--per-category`` procedural shapes of every
   category, photographed by the training renderer and encoded by the shape model's encoder
   (about 2.4 shapes/s on a 2-core CPU). Kept in ``--cache`` and extended, never rebuilt.
2. The text encoder learns to put each shape's generated captions on its code
   (`backend/train/text_model.py`): about a minute on a CPU.
3. Evaluation on shapes and phrasings never trained on (`TEXT_EVAL_SEED_OFFSET` seeds, the
   captions' held-out templates and synonyms), written into the checkpoint's metadata.

Needs no download and no GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape-model", default=str(ROOT / "backend" / "weights" / "shape_model_cpu"))
    parser.add_argument("--out", default=str(ROOT / "backend" / "weights" / "text_model"))
    parser.add_argument("--cache", default=str(ROOT / "data_cache" / "text_codes"))
    parser.add_argument("--per-category", type=int, default=48, help="training shapes per category")
    parser.add_argument("--eval-per-category", type=int, default=6, help="evaluation shapes per category")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--captions-per-shape", type=int, default=48)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)

    import torch

    from backend.data.procedural import CATEGORIES
    from backend.models.checkpoint import save_checkpoint
    from backend.models.text_encoder import TEXT_ENCODER_KIND
    from backend.pipelines.reconstruct.weights import check_weights, load_model, resolve_weights
    from backend.text.vocab import build_vocabulary
    from backend.train.text_codes import TEXT_EVAL_SEED_OFFSET, build_code_records, shape_pairs
    from backend.train.text_model import TextTrainConfig, evaluate_text_encoder, train_text_encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    weights = resolve_weights(args.shape_model)
    shape_model_id = check_weights(weights)
    model, _, _ = load_model(weights, "cpu")
    cache = Path(args.cache) / shape_model_id.replace(":", "_")
    print(f"code records in {cache}", flush=True)
    train = build_code_records(model, shape_pairs(CATEGORIES, args.per_category), cache / "train.npz")
    held_out = build_code_records(model, shape_pairs(CATEGORIES, args.eval_per_category, TEXT_EVAL_SEED_OFFSET),
                                  cache / "eval.npz")
    vocab = build_vocabulary()
    config = TextTrainConfig(epochs=args.epochs, captions_per_shape=args.captions_per_shape)
    encoder, report = train_text_encoder(train, vocab, config, log=lambda line: print(line, flush=True))
    evaluation = {"heldout_phrasings_new_shapes": evaluate_text_encoder(encoder, held_out, vocab, "heldout"),
                  "train_phrasings_new_shapes": evaluate_text_encoder(encoder, held_out, vocab, "train")}
    print(json.dumps(evaluation, indent=1), flush=True)
    files = save_checkpoint(args.out, encoder, encoder.config, kind=TEXT_ENCODER_KIND, metadata={
        "vocabulary": vocab.to_json(), "shape_model_id": shape_model_id,
        "training": {**report, "config": asdict(config), "shapes_per_category": args.per_category},
        "evaluation": evaluation})
    size = files.weights.stat().st_size / 1e6
    print(f"wrote {files.manifest} and {files.weights.name} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
