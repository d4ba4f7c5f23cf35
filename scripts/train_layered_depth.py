#!/usr/bin/env python
"""Train the layered-depth network that the `layered` reconstruction builds solids from
(docs/reconstruction.md).

    .venv/bin/python scripts/train_layered_depth.py --minutes 60     # -> backend/weights/layered_depth.*
    .venv/bin/python scripts/train_layered_depth.py --minutes 60 --init-from backend/weights/layered_depth --lr 5e-4 \\
        --seed 8100000                                               # carry on, on other shapes
    .venv/bin/python scripts/train_layered_depth.py --minutes 8 --device cuda --out $OUT/layered_depth

Supervised by the procedural shapes' own depth, photographed on the fly by the training renderer
(`backend/train/layered_depth.py`): no dataset, no download. Prints, and records in the
checkpoint's metadata, the front and thickness errors on the real split's photos beside those of
the silhouette inflation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    import torch

    from backend.train.layered_depth import LayeredTrainConfig, train

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--out", default=str(ROOT / "backend" / "weights" / "layered_depth"),
                        help="checkpoint NAME (NAME.safetensors + NAME.json)")
    parser.add_argument("--real-split", default=str(ROOT / "data_cache" / "real_split"),
                        help="evaluation photos (scripts/render_real_split.py); skipped when absent")
    parser.add_argument("--init-from", help="start from this checkpoint NAME (carry on an earlier run)")
    parser.add_argument("--seed", type=int, default=LayeredTrainConfig.seed,
                        help="shape seed (a carried-on run should draw other shapes)")
    parser.add_argument("--views-per-step", type=int, default=LayeredTrainConfig.views_per_step)
    parser.add_argument("--lr", type=float, default=LayeredTrainConfig.lr)
    parser.add_argument("--meshes", help="a folder of baked third-party meshes (scripts/bake_training_meshes.py)")
    parser.add_argument("--mesh-share", type=float, default=0.5,
                        help="share of the shapes drawn from --meshes (default 0.5)")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    real = Path(args.real_split)
    if args.meshes and not 0.0 < args.mesh_share <= 1.0:
        parser.error("--mesh-share must be in (0, 1]")
    config = LayeredTrainConfig(views_per_step=args.views_per_step, seed=args.seed, lr=args.lr,
                                meshes=args.meshes, mesh_share=args.mesh_share if args.meshes else 0.0)
    record = train(config, args.minutes, Path(args.out), real if real.is_dir() else None, args.device,
                   log=lambda line: print(line, flush=True),
                   init_from=Path(args.init_from) if args.init_from else None)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
