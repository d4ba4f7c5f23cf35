#!/usr/bin/env python
"""Review sheet of shape mining: what `mine` makes of a photo collection.

    .venv/bin/python scripts/review_mining.py                                 # the yard collection
    .venv/bin/python scripts/review_mining.py --photos FOLDER --out out/review_mining

Runs ``python -m backend mine`` on the folder, then writes one PNG (``OUT/mining.png``) with a row
per cluster: three of its photos, then the mined object rendered by Blender from the .glb the
backend wrote, from the front, the right, the back and above-left. Look at it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

PHOTOS_PER_ROW = 3
VIEWS = ((0.0, 15.0, "front"), (90.0, 15.0, "right"), (180.0, 15.0, "back"), (270.0, 45.0, "above left"))


def main(argv: list[str] | None = None) -> int:
    from PIL import Image, ImageDraw

    from backend.cli import EXIT_OK
    from backend.cli import main as backend_main
    from backend.data.render_photos import ResultCamera
    from review_reconstruct import PANEL, on_grey, render_in_blender

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", default=str(ROOT / "data_cache" / "mining_split" / "yard" / "photos"))
    parser.add_argument("--out", default=str(ROOT / "out" / "review_mining"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    mined = out / "mined"
    if backend_main(["mine", args.photos, "--out", str(mined), "--device", "cpu"]) != EXIT_OK:
        return 1
    index = json.loads((mined / "clusters.json").read_text())
    cameras = [ResultCamera(azimuth, elevation, 30.0, 2.4) for azimuth, elevation, _ in VIEWS]
    rows = []
    for cluster in index["clusters"]:
        photos = []
        for name in cluster["images"][:PHOTOS_PER_ROW]:
            photo = Image.open(Path(args.photos) / name)
            photo = on_grey(np.asarray(photo.convert("RGBA"), dtype=np.float32) / 255.0)
            photo.thumbnail((PANEL, PANEL))
            photos.append(photo)
        photos += [Image.new("RGB", (PANEL, PANEL), (255, 255, 255))] * (PHOTOS_PER_ROW - len(photos))
        renders = [on_grey(r) for r in render_in_blender(mined / cluster["mesh"], cameras)]
        row = Image.new("RGB", (PANEL * (PHOTOS_PER_ROW + len(VIEWS)), PANEL + 22), (255, 255, 255))
        draw = ImageDraw.Draw(row)
        draw.text((6, 4), f"{cluster['name']}: {len(cluster['images'])} photos; {cluster['shape_from'][:110]}",
                  fill=(0, 0, 0))
        for k, panel in enumerate(photos + renders):
            row.paste(panel, (k * PANEL + (PANEL - panel.width) // 2, 22 + (PANEL - panel.height) // 2))
        rows.append(row)
    sheet = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), (255, 255, 255))
    for k, row in enumerate(rows):
        sheet.paste(row, (0, k * row.height))
    sheet.save(out / "mining.png")
    print(out / "mining.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
