#!/usr/bin/env python
"""ISS stage 1: train the CLIP2Shape mapper for text → shape and write the ISS folder.

    .venv/bin/python scripts/train_mapper.py --data /work/data_cache/procedural \
        --shape-model backend/weights/shape_model --out backend/weights/iss --config full

    # only fetch the CLIP weights into the download cache (needs internet once):
    .venv/bin/python scripts/train_mapper.py --download-clip

CLIP features and encoder codes of the training renders are cached under --cache-dir (keyed by
CLIP, shape model and data), so re-runs start training at once. See docs/text_to_shape.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="procedural dataset root (backend/data, docs/dataset.md)")
    parser.add_argument("--rendered", type=int, metavar="PER_CATEGORY", default=None,
                        help="no dataset: render this many procedural shapes per category with the project's "
                             "renderer (backend/train/rendered_records.py) instead of reading --data")
    parser.add_argument("--views", type=int, default=8, help="views per shape with --rendered")
    parser.add_argument("--split", default="train", help="dataset split (default train)")
    parser.add_argument("--max-shapes", type=int, default=None, help="use at most this many shapes")
    parser.add_argument("--shape-model", help="shape model checkpoint path (NAME of NAME.safetensors/.json)")
    parser.add_argument("--out", default="backend/weights/iss", help="ISS folder to write (mapper + shape model)")
    parser.add_argument("--config", default="full", choices=["smoke", "full"], help="stage-1 preset")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--no-decoder-finetune", action="store_true", help="train the mapper only")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--cache-dir", default="/work/data_cache/mapper_features", help="feature cache folder")
    parser.add_argument("--clip-model", default=None, help="open_clip model name (default ViT-B-32)")
    parser.add_argument("--clip-pretrained", default=None,
                        help="open_clip pretrained tag ('none' for a checkpoint file that comes from no tag)")
    parser.add_argument("--clip-checkpoint", default=None, help="local CLIP weights file")
    parser.add_argument("--download-clip", action="store_true", help="only download/check the CLIP weights, then exit")
    args = parser.parse_args(argv)

    from backend.devices import resolve_device
    from backend.models.clip import ClipConfig, ClipWeightsUnavailable, load_clip

    device = resolve_device(args.device)
    clip_config = ClipConfig(device=device)
    if args.clip_model:
        clip_config = replace(clip_config, model_name=args.clip_model)
    if args.clip_pretrained:
        clip_config = replace(clip_config, pretrained=None if args.clip_pretrained == "none" else args.clip_pretrained)
    if args.clip_checkpoint:
        clip_config = replace(clip_config, checkpoint_path=args.clip_checkpoint)
    try:
        clip = load_clip(clip_config)
    except ClipWeightsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"CLIP: {clip}")
    if args.download_clip:
        return 0
    if not (args.data or args.rendered) or not args.shape_model:
        parser.error("--shape-model and either --data or --rendered are required for training")

    from backend.models.checkpoint import checkpoint_id, load_shape_model
    from backend.train.mapper import MapperTrainConfig, fit_and_save

    shape_model, _ = load_shape_model(args.shape_model, device=device)
    shape_model.eval()
    shape_id = checkpoint_id(args.shape_model)
    if args.rendered:
        from backend.train.rendered_records import mapper_photographs

        _, names, source = mapper_photographs(args.rendered, args.views, args.max_shapes)
        where = "rendered by the project's renderer"
        data = {"rendered_per_category": args.rendered, "views_per_shape": args.views}
    else:
        from backend.data.dataset import ProceduralDataset

        dataset = ProceduralDataset(args.data, split=args.split, load=("views",))
        names = dataset.names[: args.max_shapes] if args.max_shapes else dataset.names
        source, where = (lambda: (dataset.read(n) for n in names)), f"{args.data} ({args.split})"
        data = {"root": str(args.data), "split": args.split}
    print(f"data: {len(names)} shapes {where}; shape model {shape_id}")

    config = MapperTrainConfig.preset(args.config)
    if args.epochs:
        config = replace(config, epochs=args.epochs)
    if args.no_decoder_finetune:
        config = replace(config, decoder_finetune=False)

    def report(stats) -> None:
        render = f", render {stats.render:.4f}" if stats.render is not None else ""
        print(f"epoch {stats.epoch + 1}/{config.epochs}: mapper L1 {stats.mapper:.4f}{render} ({stats.seconds:.1f} s)")

    started = time.monotonic()
    summary = fit_and_save(source, names, data, clip, shape_model, shape_id, args.out, config, device=device,
                           cache_dir=args.cache_dir, on_epoch=report,
                           on_record=lambda i: print(f"  features {i}/{len(names)}", end="\r", flush=True))
    print(f"features: {'read from' if summary['features_cached'] else 'written to'} {summary['features']}; "
          f"{time.monotonic() - started:.1f} s in all")
    print(json.dumps({"written": summary["written"], "clean_feature_code_l1": round(summary["clean_feature_code_l1"], 5)},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
