#!/usr/bin/env python
"""Train the photo embedding that shape mining groups photos with (docs/mining.md).

    .venv/bin/python scripts/train_photo_embedding.py --minutes 30     # -> backend/weights/photo_embedding.*
    .venv/bin/python scripts/train_photo_embedding.py --minutes 30 --init-from backend/weights/photo_embedding \\
        --seed 7100000                                                 # carry on, on other shapes
    .venv/bin/python scripts/train_photo_embedding.py --minutes 8 --device cuda --out $OUT/photo_embedding

Self-supervised on procedural shapes photographed on the fly by the training renderer
(`backend/train/photo_embedding.py`): no dataset, no download. Prints, and records in the
checkpoint's metadata, how often a real-split photo's nearest neighbour shows the same object,
before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from backend.train.photo_embedding import EmbeddingTrainConfig, train

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock training budget")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(ROOT / "backend" / "weights" / "photo_embedding"),
                        help="checkpoint NAME (NAME.safetensors + NAME.json)")
    parser.add_argument("--real-split", default=str(ROOT / "data_cache" / "real_split"),
                        help="evaluation photos (scripts/render_real_split.py); skipped when absent")
    parser.add_argument("--init-from", help="start from this checkpoint NAME (carry on an earlier run)")
    parser.add_argument("--seed", type=int, default=EmbeddingTrainConfig.seed,
                        help="shape seed (a carried-on run should draw other shapes)")
    parser.add_argument("--shapes-per-step", type=int, default=EmbeddingTrainConfig.shapes_per_step)
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    real = Path(args.real_split)
    record = train(EmbeddingTrainConfig(shapes_per_step=args.shapes_per_step, seed=args.seed), args.minutes,
                   Path(args.out), real if real.is_dir() else None, args.device,
                   log=lambda line: print(line, flush=True),
                   init_from=Path(args.init_from) if args.init_from else None)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
