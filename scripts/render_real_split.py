#!/usr/bin/env python
"""Render the real-object benchmark split: photo-like views of each fetched third-party mesh.

    .venv/bin/python scripts/fetch_real_meshes.py          # the meshes (data_cache/real_meshes)
    .venv/bin/python scripts/render_real_split.py          # the photos (data_cache/real_split)

Every object gets ``--views`` views (default 3: low, middle and high elevation, spread round it,
each with its own focal length and light). Objects alternate, in manifest order, between a
transparent background (the PNG's alpha is the object) and no alpha: a plain studio backdrop or a
textured floor in front of a sky gradient, so finding the object is part of the test. Writes
``OUT/<name>/view_K.png``, ``mask_K.png`` (the true object mask, for scoring only),
``reference.npz`` (the mesh as rendered: Z up, centred, longest side 1) and ``views.json``.
Objects already rendered with the same settings are skipped.

The catalogue split is rendered the same way from the objects `scripts/bake_training_meshes.py`
holds out of the training meshes:

    .venv/bin/python scripts/render_real_split.py --manifest data_cache/catalogue_meshes/objects.json \
        --meshes data_cache/catalogue_meshes --out data_cache/catalogue_split
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.data.render_photos import PhotoConfig, render_object, sample_views  # noqa: E402

MANIFEST = ROOT / "scripts" / "real_objects.json"
NON_ALPHA = ("plain", "textured")


def background_for(index: int) -> str:
    """Every other object has alpha; the rest alternate between a plain and a textured backdrop."""
    return "alpha" if index % 2 == 0 else NON_ALPHA[(index // 2) % 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meshes", default=str(ROOT / "data_cache" / "real_meshes"))
    parser.add_argument("--out", default=str(ROOT / "data_cache" / "real_split"))
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=384)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--only", nargs="+", help="render only these objects")
    parser.add_argument("--manifest", default=str(MANIFEST),
                        help="the objects (default: the real split's; data_cache/catalogue_meshes/objects.json: "
                             "the catalogue split, scripts/bake_training_meshes.py)")
    args = parser.parse_args(argv)
    if args.views < 1:
        parser.error("--views must be at least 1")
    entries = json.loads(Path(args.manifest).read_text())
    cfg = PhotoConfig(resolution=args.resolution, samples=args.samples)
    failed = []
    for index, entry in enumerate(entries):
        name = entry["name"]
        if args.only and name not in args.only:
            continue
        mesh = Path(args.meshes) / name / "mesh.glb"
        out = Path(args.out) / name
        settings = {"views": args.views, **asdict(cfg), "background": background_for(index)}
        record_path = out / "views.json"
        if record_path.exists() and json.loads(record_path.read_text()).get("settings") == settings:
            continue
        if not mesh.exists():
            print(f"{name}: {mesh} missing (run scripts/fetch_real_meshes.py)", file=sys.stderr)
            failed.append(name)
            continue
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        views = sample_views(rng, args.views, settings["background"])
        t0 = time.perf_counter()
        try:
            record = render_object(mesh, views, out, cfg, seed=index)
        except Exception as e:  # one bad file must not stop the split
            print(f"{name}: render failed: {e}", file=sys.stderr)
            failed.append(name)
            continue
        record.update(name=name, kind=entry["kind"], licence=entry["licence"], settings=settings,
                      source={k: entry[k] for k in ("registry", "package", "version", "path")})
        record_path.write_text(json.dumps(record, indent=1))
        print(f"{name}: {args.views} views, {settings['background']}, {time.perf_counter() - t0:.1f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
