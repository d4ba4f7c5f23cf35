#!/usr/bin/env python
"""Two-stage training of a shape model from a checkpoint: fit a code per training shape with the
SDF network, then train the image encoder to predict those codes (backend/train/shape_space.py).

    .venv/bin/python scripts/train_shape_space.py --data /work/data_cache/procedural_train \
        --init-from backend/weights/shape_model_cpu --run runs/shape_space --export runs/shape_space/model

Stage 1 is saved in the run directory (``stage1.*``: the model with its fitted SDF network, and
``codes.safetensors``); running the same command again skips it and trains the encoder anew,
starting from the ``--init-from`` checkpoint's encoder (so a model this script exported can be
trained further on the same stage 1).
The encoder is checkpointed every 500 steps in ``<run>/encoder-<hash>/`` (the hash of its
settings, starting weights and codes): the same command after an interruption resumes there,
and the folder is deleted once the export is written.
Shapes generated into the datasets since then get codes of their own, fitted with the SDF
network frozen, before the encoder trains on all of them.
``--export`` receives the final model with the command, the data's settings and its held-in test
scores in its metadata. See docs/training.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from backend.train.shape_space import ShapeSpaceConfig

    defaults = ShapeSpaceConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="*", default=[], help="procedural dataset roots (scripts/gen_data.py)")
    parser.add_argument("--dvr", nargs="*", default=[], help="DVR/ShapeNet-layout dataset roots (occupancy)")
    parser.add_argument("--init-from", required=True, help="model checkpoint to start from")
    parser.add_argument("--run", required=True, help="run directory (stage-1 results; reused when present)")
    parser.add_argument("--export", required=True, help="where to write the trained model checkpoint")
    parser.add_argument("--code-steps", type=int, default=defaults.code_steps)
    parser.add_argument("--encoder-steps", type=int, default=defaults.encoder_steps)
    parser.add_argument("--encoder-lr", type=float, default=defaults.encoder_lr)
    parser.add_argument("--field-weight", type=float, default=defaults.field_weight,
                        help="weight of the predicted code's SDF error in stage 2 (0 = codes only)")
    parser.add_argument("--pool", choices=["mean", "flatten"], default=defaults.pool)
    parser.add_argument("--azimuth-bins", type=int, default=defaults.azimuth_bins)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores up to 8)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.data and not args.dvr:
        parser.error("give at least one --data or --dvr dataset")
    config = dataclasses.replace(defaults, code_steps=args.code_steps, encoder_steps=args.encoder_steps,
                                 encoder_lr=args.encoder_lr, field_weight=args.field_weight, pool=args.pool,
                                 azimuth_bins=args.azimuth_bins, seed=args.seed)
    command = " ".join(shlex.quote(a) for a in
                       [".venv/bin/python", "scripts/train_shape_space.py", *(argv or sys.argv[1:])])
    run(args, config, command)
    return 0


def run(args, config, command: str) -> None:
    import hashlib
    import shutil
    import time

    import torch
    from safetensors.torch import load_file

    from backend.models.checkpoint import checkpoint_id, load_shape_model, save_shape_model
    from backend.train.data import ShapeViewDataset, dvr_source, procedural_source
    from backend.train.evaluate import export_report
    from backend.train.shape_space import encoder_checkpoints, fit_encoder, fit_shape_codes, shape_space_model
    from backend.train.trainer import set_threads

    def log(message: str) -> None:
        print(message, flush=True)

    set_threads(args.threads)
    torch.manual_seed(config.seed)
    run_dir = Path(args.run)
    run_dir.mkdir(parents=True, exist_ok=True)
    initial, init_metadata = load_shape_model(args.init_from, device=args.device)
    sources = [procedural_source(root, "train") for root in args.data] + [dvr_source(root, "train") for root in args.dvr]
    t0 = time.perf_counter()
    dataset = ShapeViewDataset(sources, initial.config.encoder.image_size, surface_points=1, seed=config.seed)
    shapes = dataset.shapes
    if not shapes:
        raise SystemExit("no training shapes found in the given datasets")
    print(f"{len(shapes)} training shapes, {sum(len(s.crops) for s in shapes)} views "
          f"(loaded in {time.perf_counter() - t0:.0f} s)", flush=True)

    stage1, codes_file = run_dir / "stage1", run_dir / "codes.safetensors"
    names = [s.name for s in shapes]
    timings = {}
    if codes_file.exists() and (run_dir / "stage1.json").exists():
        model, stage1_metadata = load_shape_model(stage1, device=args.device)
        timings.update(stage1_metadata.get("timings", {}))
        stored = dict(zip((run_dir / "codes_names.txt").read_text().split("\n"),
                          load_file(str(codes_file))["codes"].to(args.device)))
        current = set(names)
        gone = [n for n in stored if n not in current]
        if gone:
            raise SystemExit(f"{codes_file} was fitted to shapes these datasets lack (e.g. {gone[0]}); "
                             f"remove {run_dir} to start over")
        print(f"stage 1 reused from {run_dir}", flush=True)
        added = [s for s in shapes if s.name not in stored]
        if added:  # the dataset grew since stage 1: fit codes for the new shapes, network frozen
            print(f"fitting codes for {len(added)} shapes added since stage 1", flush=True)
            t1 = time.perf_counter()
            stored.update(zip([s.name for s in added], fit_shape_codes(model, added, config, log=log,
                                                                        train_decoder=False)))
            timings["added_codes_s"] = round(time.perf_counter() - t1, 1)
            timings["added_shapes"] = len(added)
        codes = torch.stack([stored[n] for n in names])
        if added:
            save_codes(run_dir, names, codes)
    else:
        model = initial
        t1 = time.perf_counter()
        codes = fit_shape_codes(model, shapes, config, log=log)
        timings["codes_s"] = round(time.perf_counter() - t1, 1)
        save_shape_model(stage1, model, {**init_metadata, "stage": "shape codes", "command": command,
                                         "timings": dict(timings)})
        save_codes(run_dir, names, codes)

    # the encoder starts from --init-from's: the same as stage 1's when stage 1 ran just now,
    # and the later one when a reused stage 1 is given a newer checkpoint to continue from
    trained = shape_space_model(model, config, log=log, encoder_from=initial)
    checkpoints = encoder_checkpoints(run_dir, {
        "shape_space": dataclasses.asdict(config), "init_from": checkpoint_id(args.init_from),
        "stage1": checkpoint_id(stage1), "shapes": names,
        "codes_sha256": hashlib.sha256(codes.detach().cpu().numpy().tobytes()).hexdigest()})
    # stage 1 trains only the SDF network, so ``initial``'s encoder is the checkpoint's as loaded
    seconds = fit_encoder(trained, shapes, codes, config, teacher=initial.encoder, log=log, checkpoints=checkpoints)
    timings["encoder_s"] = round(seconds, 1)
    trained.eval()
    metadata = {
        "beta": init_metadata.get("beta"), "command": command, "init_from": checkpoint_id(args.init_from),
        "recipe": "shape space (backend/train/shape_space.py)", "shape_space": dataclasses.asdict(config),
        "train_shapes": len(shapes), "data": [f"procedural:{r}" for r in args.data] + [f"dvr:{r}" for r in args.dvr],
        "timings": timings, "device": args.device,
    }
    metadata.update(export_report(trained, args.data, log=log))
    save_shape_model(args.export, trained, metadata)
    shutil.rmtree(checkpoints)  # the export holds the result; an interrupted run would have resumed from here
    print(f"exported to {args.export} ({checkpoint_id(args.export)})")


def save_codes(run_dir: Path, names: list[str], codes) -> None:
    """The stage-1 codes of the run directory (``codes.safetensors``) and their shape names."""
    from safetensors.torch import save_file

    save_file({"codes": codes.cpu().contiguous()}, str(run_dir / "codes.safetensors"))
    (run_dir / "codes_names.txt").write_text("\n".join(names))


if __name__ == "__main__":
    raise SystemExit(main())
