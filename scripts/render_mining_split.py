#!/usr/bin/env python
"""Render the shape-mining benchmark: photo collections of real objects, shuffled together.

    .venv/bin/python scripts/fetch_real_meshes.py          # the meshes (data_cache/real_meshes)
    .venv/bin/python scripts/render_mining_split.py        # the collections (data_cache/mining_split)

Each collection (`COLLECTIONS`) holds several real-split objects (never the held-out set), each
photographed 6-12 times round itself: varied elevation, focal length, light and background
(transparent, a plain backdrop or a textured floor, per photo), plus distractor photos of other
objects seen once. Photos without alpha are saved as JPEG half of the time and some are
resized, so a collection mixes formats and sizes as a scraped folder does. The file names are
shuffled: ``OUT/<collection>/photos/photo_NNN.{png,jpg}``; ``OUT/<collection>/truth.json`` says
which object each photo shows (or that it is a distractor) and where each object's reference
mesh is (``OUT/objects/<name>/reference.npz``, Z up, centred, longest side 1).
Objects already rendered with the same settings are skipped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.data.render_photos import BACKGROUNDS, PhotoConfig, render_object, sample_views  # noqa: E402

COLLECTIONS = {
    "shop": {"objects": {"mug": 8, "cow": 10, "stanford_bunny": 6, "oak_chair": 12, "cupcake": 8,
                         "utah_teapot": 6},
             "distractors": ["lemon", "gearwheel", "elephant", "cactus"]},
    "yard": {"objects": {"horse": 8, "lego_brick": 8, "soda_can": 10, "mushroom": 6},
             "distractors": ["bread", "nut"]},
    "tune": {"objects": {"duck": 8, "cat": 8, "stanford_dragon": 8, "standing_man": 8, "motorbike": 8, "bone": 6},
             "distractors": ["airplane", "asteroid"]},
    "check": {"objects": {"ant": 8, "colored_airplane": 8, "snowden_bust": 8},
              "distractors": ["lemon", "cactus"]},
}
"""Collections: objects with their photo counts, and distractors (one photo each; an object that is
a distractor anywhere is one everywhere, so its one photo is rendered once). ``tune`` and
``check`` are the validation collections: mining's settings are chosen on them, never on ``shop``
and ``yard``, whose objects they do not share; ``check`` settles what ``tune`` cannot tell apart."""


def render(name: str, count: int, meshes: Path, out: Path, cfg: PhotoConfig) -> dict:
    """``count`` photos of one object into ``out/objects/name`` (skipped when already there)."""
    target = out / "objects" / name
    settings = {"views": count, **asdict(cfg)}
    record_path = target / "views.json"
    if record_path.exists() and json.loads(record_path.read_text()).get("settings") == settings:
        return json.loads(record_path.read_text())
    rng = np.random.default_rng(zlib.crc32(("mining:" + name).encode()))
    views = [replace(view, background=str(rng.choice(BACKGROUNDS))) for view in sample_views(rng, count, "alpha")]
    t0 = time.perf_counter()
    record = render_object(meshes / name / "mesh.glb", views, target, cfg, seed=zlib.crc32(name.encode()) % 1000)
    record.update(name=name, settings=settings)
    record_path.write_text(json.dumps(record, indent=1))
    print(f"{name}: {count} photos, {time.perf_counter() - t0:.0f} s", flush=True)
    return record


def assemble(collection: str, spec: dict, out: Path, records: dict[str, dict]) -> None:
    """Shuffle the objects' photos (and one photo of each distractor) into one folder, with
    mixed formats and sizes, and write the truth."""
    from PIL import Image

    folder = out / collection
    photos = folder / "photos"
    if photos.exists():
        shutil.rmtree(photos)
    photos.mkdir(parents=True)
    entries = [(name, k) for name, count in spec["objects"].items() for k in range(count)]
    entries += [(name, 0) for name in spec["distractors"]]
    rng = np.random.default_rng(zlib.crc32(collection.encode()))
    order = rng.permutation(len(entries))
    truth = {"photos": {}, "objects": {}, "distractors": spec["distractors"]}
    for number, index in enumerate(order):
        name, k = entries[index]
        source = out / "objects" / name / f"view_{k}.png"
        image = Image.open(source)
        if rng.random() < 0.3:  # a smaller photo, as a scraped folder has
            side = int(image.size[0] * rng.uniform(0.5, 0.8))
            image = image.resize((side, side), Image.LANCZOS)
        if image.mode == "RGB" and rng.random() < 0.5:
            file = f"photo_{number:03d}.jpg"
            image.save(photos / file, quality=90)
        else:
            file = f"photo_{number:03d}.png"
            image.save(photos / file)
        view = records[name]["views"][k]
        truth["photos"][file] = {"object": None if name in spec["distractors"] else name, "shows": name,
                                 "view": k, "azimuth": view["azimuth"], "elevation": view["elevation"],
                                 "background": view["background"]}
    for name in spec["objects"]:
        truth["objects"][name] = {"reference": f"../objects/{name}/reference.npz", "photos": spec["objects"][name]}
    (folder / "truth.json").write_text(json.dumps(truth, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--meshes", default=str(ROOT / "data_cache" / "real_meshes"))
    parser.add_argument("--out", default=str(ROOT / "data_cache" / "mining_split"))
    parser.add_argument("--resolution", type=int, default=320)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--only", nargs="+", choices=sorted(COLLECTIONS), help="render only these collections")
    args = parser.parse_args(argv)
    meshes, out = Path(args.meshes), Path(args.out)
    cfg = PhotoConfig(resolution=args.resolution, samples=args.samples)
    for collection, spec in COLLECTIONS.items():
        if args.only and collection not in args.only:
            continue
        records = {}
        for name, count in [*spec["objects"].items(), *((d, 1) for d in spec["distractors"])]:
            if not (meshes / name / "mesh.glb").exists():
                print(f"{name}: {meshes / name / 'mesh.glb'} missing (run scripts/fetch_real_meshes.py)",
                      file=sys.stderr)
                return 1
            records[name] = render(name, count, meshes, out, cfg)
        assemble(collection, spec, out, records)
        print(f"{collection}: {sum(spec['objects'].values()) + len(spec['distractors'])} photos", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
