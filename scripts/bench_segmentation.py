#!/usr/bin/env python
"""Benchmark of finding the object in a photo without alpha (`backend/segmentation.py`).

    .venv/bin/python scripts/bench_segmentation.py      # -> bench_results/segmentation.{json,md}

Every photo without alpha of the real split, the box split and the mining collections (their
object photos: distractors have no mask) is segmented as the reconstruct and mine jobs do, and
its mask compared with the true one the renderer wrote (IoU; a photo refused for showing no
object scores 0). Reported per split: the mean IoU, how many photos fall under 0.75, and how
many of the masks were doubted (confidence under `LOW_CONFIDENCE`) and how many of those were
right. The mining collections are where segmentation is tuned; the real split, which scores
reconstruction, is the check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POOR = 0.75
"""A mask under this IoU with the true one is counted as poor."""


def view_cases(root: Path, split: str) -> list[dict]:
    """The photos of a split laid out as the real split is (``OBJECT/view_K.png`` beside
    ``OBJECT/mask_K.png``)."""
    return [{"split": split, "name": f"{photo.parent.name}/{photo.stem.removeprefix('view_')}", "photo": photo,
             "mask": photo.with_name(photo.name.replace("view_", "mask_"))}
            for photo in sorted(root.glob("*/view_*.png"))]


def mining_cases(root: Path) -> list[dict]:
    """The object photos of the mining collections (``COLLECTION/photos``, ``truth.json``): the
    mask of the view each shows, from ``objects/OBJECT``."""
    cases = []
    for truth_file in sorted(root.glob("*/truth.json")):
        truth = json.loads(truth_file.read_text())
        for name, photo in sorted(truth["photos"].items()):
            cases.append({"split": "mining", "name": f"{truth_file.parent.name}/{name}",
                          "photo": truth_file.parent / "photos" / name,
                          "mask": root / "objects" / photo["shows"] / f"mask_{photo['view']}.png"})
    return cases


def score_case(case: dict) -> dict | None:
    """IoU of the mask found against the true one, or None for a photo that carries alpha."""
    from PIL import Image

    from backend.errors import PipelineError
    from backend.segmentation import LOW_CONFIDENCE, segment

    image = Image.open(case["photo"])
    rgba = np.asarray(image.convert("RGBA"))
    if image.mode in ("RGBA", "LA") and rgba[..., 3].min() < 255:
        return None
    # mining photos were resized after rendering: the true mask follows
    truth = np.asarray(Image.open(case["mask"]).convert("L").resize(image.size, Image.BILINEAR)) > 127
    try:
        found = segment(rgba, has_alpha=False)
    except PipelineError as exc:
        return {"split": case["split"], "name": case["name"], "iou": 0.0, "doubted": True, "refused": str(exc)}
    mask = found.mask
    iou = float((mask & truth).sum() / max(1, (mask | truth).sum()))
    return {"split": case["split"], "name": case["name"], "iou": round(iou, 4),
            "doubted": found.confidence < LOW_CONFIDENCE, "method": found.method}


def summarise(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for split in dict.fromkeys(row["split"] for row in rows):
        ious = np.array([row["iou"] for row in rows if row["split"] == split])
        doubted = [row for row in rows if row["split"] == split and row["doubted"]]
        out[split] = {"photos": len(ious), "mean_iou": round(float(ious.mean()), 4),
                      "poor": int((ious < POOR).sum()), "doubted": len(doubted),
                      "doubted_but_right": sum(1 for row in doubted if row["iou"] >= POOR)}
    return out


def markdown(summary: dict[str, dict], rows: list[dict]) -> str:
    lines = ["| split | photos without alpha | mean IoU | under 0.75 | doubted (of them right) |", "|---|---|---|---|---|"]
    for split, s in summary.items():
        lines.append(f"| {split} | {s['photos']} | {s['mean_iou']:.3f} | {s['poor']} | "
                     f"{s['doubted']} ({s['doubted_but_right']}) |")
    worst = sorted(rows, key=lambda row: row["iou"])[:10]
    lines += ["", "Worst masks: " + ", ".join(f"{row['split']} {row['name']} {row['iou']:.2f}" for row in worst)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = ROOT / "data_cache"
    parser.add_argument("--real-data", default=str(data / "real_split"))
    parser.add_argument("--box-data", default=str(data / "box_split"))
    parser.add_argument("--mining-data", default=str(data / "mining_split"))
    parser.add_argument("--out", default=str(ROOT / "bench_results" / "segmentation"),
                        help="writes OUT.json (every photo) and OUT.md (the table)")
    args = parser.parse_args(argv)
    cases = []
    for split, root in (("real", args.real_data), ("box", args.box_data)):
        cases += view_cases(Path(root), split) if Path(root).is_dir() else []
    cases += mining_cases(Path(args.mining_data)) if Path(args.mining_data).is_dir() else []
    if not cases:
        raise SystemExit("no photos found: render the splits first (docs/reconstruction.md, 'Benchmark')")
    rows = [row for row in map(score_case, cases) if row is not None]
    summary = summarise(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "photos": rows}, indent=1))
    out.with_suffix(".md").write_text(markdown(summary, rows))
    print(markdown(summary, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
