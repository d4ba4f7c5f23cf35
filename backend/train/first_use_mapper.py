"""The CLIP path's mapper, trained on the user's machine the first time text to shape runs with
CLIP weights present (`backend.pipelines.clip_mapper_prep` starts it; nobody needs to call it).

    python -m backend.train.first_use_mapper --out FOLDER --shape-model backend/weights/shape_model_cpu \
        --clip-model ViT-B-32 --clip-pretrained laion2b_s34b_b79k --clip-checkpoint FILE [--device cpu]

No dataset: procedural shapes are photographed by the project's renderer
(`rendered_records`), CLIP sees the photos, the shape model's encoder gives their codes, and the
mapper learns one from the other (stage 1 without fine-tuning the decoder, which would need
rendering in the loop: minutes more on a CPU for a decoder the offline path already shares).
Progress goes to ``FOLDER/status.json`` (with a heartbeat, so a killed run is seen as dead); the
ISS files are written to ``FOLDER/partial`` and moved into FOLDER only when complete, the
mapper last.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

SHAPES_PER_CATEGORY = 16
"""Procedural shapes per category photographed (368 in all; about 1 s each on a 2-core CPU)."""
VIEWS = 4
"""Photos per shape."""
EPOCHS = 200
"""Passes over the photos' features (seconds: the mapper is a small MLP)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the preparation folder (status.json, the ISS files)")
    parser.add_argument("--shape-model", required=True, help="shape model checkpoint (NAME of NAME.json/.safetensors)")
    parser.add_argument("--clip-model", required=True, help="open_clip model name")
    parser.add_argument("--clip-pretrained", default="none", help="the tag the weights file comes from, or 'none'")
    parser.add_argument("--clip-checkpoint", required=True, help="CLIP weights file")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--per-category", type=int, default=SHAPES_PER_CATEGORY)
    parser.add_argument("--views", type=int, default=VIEWS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--max-shapes", type=int, default=None, help="at most this many shapes (tests)")
    args = parser.parse_args(argv)

    from backend.pipelines.clip_mapper_prep import HEARTBEAT_S, write_status

    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    lock = threading.Lock()  # the heartbeat must never write back a status read before the last one

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with lock:
                write_status(folder)

    def report(stage: str, progress: float, message: str) -> None:
        with lock:
            write_status(folder, state="running", stage=stage, progress=round(progress, 4), message=message)

    write_status(folder, state="running", started_at=time.time(), error=None)
    beat = threading.Thread(target=heartbeat, name="heartbeat", daemon=True)
    beat.start()
    started = time.monotonic()
    try:
        summary = _prepare(args, folder, report)
    except Exception as exc:  # noqa: BLE001 - every failure is written where the backend reads it
        traceback.print_exc()
        stop.set()
        beat.join()
        write_status(folder, state="failed", error=f"{type(exc).__name__}: {exc}", eta_s=None)
        return 1
    stop.set()
    beat.join()
    write_status(folder, state="done", stage="done", progress=1.0, message="done", eta_s=0.0,
                 seconds=round(time.monotonic() - started, 1), summary=summary)
    print(f"done in {time.monotonic() - started:.0f} s: {summary}", flush=True)
    return 0


def _prepare(args, folder: Path, report) -> dict:
    import torch

    from backend.models.checkpoint import checkpoint_id, load_shape_model
    from backend.models.clip import ClipConfig, load_clip
    from backend.models.clip_testing import TINY_CLIP_MODEL_NAME, register_tiny_clip
    from backend.pipelines.generate_assets import MAPPER_NAME, SHAPE_MODEL_NAME
    from backend.train.mapper import MapperTrainConfig, fit_and_save
    from backend.train.rendered_records import mapper_photographs

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    report("loading", 0.01, "loading CLIP and the shape model")
    if args.clip_model == TINY_CLIP_MODEL_NAME:  # the tests' CLIP, which open_clip does not ship
        register_tiny_clip()
    clip = load_clip(ClipConfig(model_name=args.clip_model,
                                pretrained=None if args.clip_pretrained == "none" else args.clip_pretrained,
                                checkpoint_path=args.clip_checkpoint, allow_download=False, device=args.device))
    shape_model, _ = load_shape_model(args.shape_model, device=args.device)
    shape_model.requires_grad_(False).eval()
    shape_id = checkpoint_id(args.shape_model)
    pairs, names, photographs = mapper_photographs(args.per_category, args.views, args.max_shapes)
    config = replace(MapperTrainConfig.preset("full"), epochs=args.epochs, decoder_finetune=False)
    scratch = folder / "partial"
    shutil.rmtree(scratch, ignore_errors=True)
    summary = fit_and_save(
        photographs, names,
        {"rendered_per_category": args.per_category, "views_per_shape": args.views, "first_use": True},
        clip, shape_model, shape_id, scratch, config, device=args.device, cache_dir=folder / "features",
        on_record=lambda i: report("photographing", 0.02 + 0.88 * i / len(pairs),
                                   f"photographing procedural shape {i} of {len(pairs)}"),
        on_epoch=lambda stats: report("training", 0.9 + 0.09 * (stats.epoch + 1) / config.epochs,
                                      f"training the mapper, epoch {stats.epoch + 1} of {config.epochs}"))
    # the shape model first, the mapper last: a folder with a mapper is a complete one
    for name in (SHAPE_MODEL_NAME, MAPPER_NAME):
        for part in sorted(scratch.glob(f"{name}.*")):
            part.replace(folder / part.name)
    shutil.rmtree(scratch, ignore_errors=True)
    return {"clip": clip.model_id, "shape_model": shape_id, "shapes": len(pairs), "views_per_shape": args.views,
            "clean_feature_code_l1": round(summary["clean_feature_code_l1"], 5)}


if __name__ == "__main__":
    if hasattr(os, "nice"):
        os.nice(10)  # the artist's own work comes first
    sys.exit(main())
