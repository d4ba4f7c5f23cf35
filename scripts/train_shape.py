#!/usr/bin/env python
"""Train the shape model on procedural data (and/or DVR-layout ShapeNet data); resumable.

    .venv/bin/python scripts/train_shape.py --data /work/data_cache/procedural_train \
        --run runs/shape_cpu --preset cpu
    # continue the same run later (or on a GPU with --device cuda): run the same command again
    # export the newest checkpoint as the default weights:
    .venv/bin/python scripts/train_shape.py --run runs/shape_cpu --export backend/weights/shape_model_cpu

See docs/training.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="*", default=[], help="procedural dataset roots (scripts/gen_data.py)")
    parser.add_argument("--dvr", nargs="*", default=[], help="DVR/ShapeNet-layout dataset roots")
    parser.add_argument("--run", required=True, help="run directory (logs, checkpoints); reused to resume")
    parser.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "gpu"], help="training preset")
    parser.add_argument("--steps", type=int, help="override the preset's total step count")
    parser.add_argument("--batch-size", type=int, help="override the preset's batch size")
    parser.add_argument("--eval-every", type=int, help="override the evaluation interval")
    parser.add_argument("--lr", type=float, help="override the learning rate (e.g. lower it when resuming)")
    parser.add_argument("--schedule", choices=["constant", "cosine"],
                        help="override the learning-rate schedule (cosine ends at --steps)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores up to 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="ignore checkpoints in --run (start over)")
    parser.add_argument("--init-from", help="fine-tune this model checkpoint (e.g. backend/weights/shape_model_cpu): "
                                            "its architecture and weights, a fresh optimiser, step 0")
    parser.add_argument("--export", help="write the run's newest model checkpoint to this path and exit")
    args = parser.parse_args(argv)

    if args.export:
        return export(Path(args.run), Path(args.export), args.data, args.threads)

    from backend.train.config import TrainConfig, model_config
    from backend.train.data import dvr_source, procedural_source
    from backend.train.evaluate import GrowingEvalSet
    from backend.train.trainer import train

    config = TrainConfig.preset(args.preset)
    overrides = {"steps": args.steps, "batch_size": args.batch_size, "eval_every": args.eval_every, "lr": args.lr,
                 "lr_schedule": args.schedule}
    config = dataclasses.replace(config, num_threads=args.threads, seed=args.seed,
                                 **{k: v for k, v in overrides.items() if v is not None})
    if not args.data and not args.dvr:
        parser.error("give at least one --data or --dvr dataset")
    sources = [procedural_source(root, "train") for root in args.data]
    sources += [dvr_source(root, "train") for root in args.dvr]
    if args.init_from:
        from backend.models.checkpoint import load_shape_model

        image_size = load_shape_model(args.init_from)[0].config.encoder.image_size
    else:
        image_size = model_config(config.model_preset).encoder.image_size
    eval_sets = [GrowingEvalSet(root, "test", image_size, config.eval_shapes) for root in args.data]

    def eval_items():
        return [item for eval_set in eval_sets for item in eval_set()]

    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "scripts/train_shape.py", *(argv or sys.argv[1:])])
    summary = train(config, sources, args.run, eval_items=eval_items, device=args.device,
                    resume=not args.fresh, init_from=args.init_from, command=command)
    print({k: v for k, v in summary.items() if k != "train_config"})
    return 0


def export(run: Path, target: Path, data: list[str], threads: int) -> int:
    """Copy the newest checkpoint's model (safetensors + JSON) to ``target``; with ``data``, first
    evaluate it on every shape of each root's held-in test split and record the result and the
    datasets' generation settings in the metadata."""
    from backend.models.checkpoint import load_shape_model, save_shape_model
    from backend.train.checkpoints import latest_checkpoint
    from backend.train.evaluate import export_report
    from backend.train.trainer import set_threads

    latest = latest_checkpoint(run)
    if latest is None:
        print(f"no checkpoint in {run}", file=sys.stderr)
        return 1
    set_threads(threads)
    model, metadata = load_shape_model(latest)
    metadata = {**metadata, "exported_from": str(latest)}
    report = export_report(model, data)
    for row in report.get("heldin_test", []):
        row["step"] = metadata.get("step")
    metadata.update(report)
    save_shape_model(target, model, metadata)
    print(f"exported {latest.name} (step {metadata.get('step')}) to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
