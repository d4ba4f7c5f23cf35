#!/usr/bin/env python
"""Generate the procedural shape dataset (meshes, samples, Blender renders); resumable.

Example:
    .venv/bin/python scripts/gen_data.py --out /work/data_cache/procedural_small \
        --shapes-per-category 2 --views 8 --res 128
Re-running the same command skips complete shapes; see docs/dataset.md for the layout.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None) -> argparse.Namespace:
    from backend.data.procedural import CATEGORIES

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="dataset root directory")
    p.add_argument("--shapes-per-category", type=int, default=10, help="shapes per category (default 10)")
    p.add_argument("--views", type=int, default=24, help="rendered views per shape (default 24; 0 = no renders)")
    p.add_argument("--res", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel (default 16)")
    p.add_argument("--mesh-res", type=int, default=128, help="marching-cubes grid for mesh.ply (default 128)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    p.add_argument("--seed", type=int, default=0, help="first shape seed (default 0)")
    p.add_argument(
        "--categories",
        nargs="+",
        default=None,
        metavar="CAT",
        help=f"categories to make (default all): {' '.join(CATEGORIES)}",
    )
    p.add_argument(
        "--holdout-categories",
        nargs="+",
        default=(),
        metavar="CAT",
        help="categories kept out of train/val/test (all their shapes go to test_unseen)",
    )
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    return p.parse_args(argv)


def main(argv=None) -> int:
    from backend.data.cameras import ViewSamplingConfig
    from backend.data.generate import DatasetConfigError, GenerationConfig, generate_dataset
    from backend.data.render_blender import RenderConfig

    a = parse_args(argv)
    cfg = GenerationConfig(
        categories=tuple(a.categories or ()),
        shapes_per_category=a.shapes_per_category,
        base_seed=a.seed,
        mesh_resolution=a.mesh_res,
        views=replace(ViewSamplingConfig(), views=a.views, resolution=a.res),
        render=replace(RenderConfig(), samples=a.samples),
        val_fraction=a.val_fraction,
        test_fraction=a.test_fraction,
        holdout_categories=tuple(a.holdout_categories),
    )
    try:
        res = generate_dataset(a.out, cfg, workers=a.workers, log=lambda m: print(m, flush=True))
    except DatasetConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = res["done"]
    if done:
        keys = ("mesh_s", "samples_s", "render_s", "total_s")
        mean = {k: sum(d[k] for d in done) / len(done) for k in keys}
        print("mean per shape: " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in mean.items()))
    print(
        json.dumps(
            {
                "made": len(done),
                "skipped": len(res["skipped"]),
                "failed": len(res["failed"]),
                "seconds": round(res["seconds"], 1),
            }
        )
    )
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
