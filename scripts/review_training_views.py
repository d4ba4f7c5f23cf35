#!/usr/bin/env python
"""Review sheet of the on-the-fly training data: per shape, the clean render, the photo, the
simulated segmentation, the normals and the encoder input, as training step 0 draws them.

    .venv/bin/python scripts/review_training_views.py --out out/review/training_views.png

Look at it after changing the generator, the renderer or the degradations.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TILE = 96


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "out" / "review" / "training_views.png"))
    p.add_argument("--shapes", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder-size", type=int, default=64)
    p.add_argument("--composition-share", type=float, default=0.3)
    args = p.parse_args(argv)

    import torch
    from PIL import Image, ImageDraw

    from backend.train.generated import GeneratedConfig
    from backend.train.shape_bank import ShapeBank
    from backend.train.views import photograph, render_views

    config = GeneratedConfig.for_training("cpu", "cpu", args.encoder_size)
    bank_config = dataclasses.replace(config.bank, size=args.shapes, composition_share=args.composition_share)
    bank = ShapeBank(bank_config, args.seed, log=print)
    bank.sync(0)
    gen = torch.Generator().manual_seed(args.seed)
    views = render_views(bank.select(torch.arange(args.shapes)), config.views, gen)
    views = photograph(views, config.views, gen, args.encoder_size)

    def tile(image: np.ndarray) -> Image.Image:
        return Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).resize((TILE, TILE), Image.NEAREST)

    rows = []
    for i in range(args.shapes):
        hit = views.alpha[i].numpy()[..., None] > 0
        cells = [views.clean[i].numpy(), views.photo[i].numpy(), np.repeat(views.seg_mask[i].numpy()[..., None], 3, -1),
                 (views.normals[i].numpy() * 0.5 + 0.5) * hit, views.crops[i].permute(1, 2, 0).numpy()]
        row = Image.new("RGB", (TILE * len(cells), TILE + 14), "white")
        for j, cell in enumerate(cells):
            row.paste(tile(cell), (j * TILE, 14))
        ImageDraw.Draw(row).text((2, 1), bank.names([i])[0], fill="black")
        rows.append(row)
    half = (len(rows) + 1) // 2
    sheet = Image.new("RGB", (rows[0].width * 2 + 8, rows[0].height * half), "white")
    for k, row in enumerate(rows):
        sheet.paste(row, ((k // half) * (row.width + 8), (k % half) * row.height))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"wrote {out}: per shape clean render, photo, simulated mask, normals, encoder input")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
