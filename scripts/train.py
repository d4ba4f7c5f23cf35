#!/usr/bin/env python
"""Train the shape model in a wall-clock budget, on shapes and photos generated on the fly.

    .venv/bin/python scripts/train.py --minutes 30 --device cpu --out runs/cpu1
    .venv/bin/python scripts/train.py --minutes 8 --device cuda --out /tmp/run --model-preset gpu \\
        --init-from backend/weights/shape_model_cpu --export $OUT/shape_model     # the GPU recipe
    .venv/bin/python scripts/train.py --minutes 10 --resume runs/cpu1            # carry on

No dataset is needed: shapes come from the procedural generator evaluated in torch, their photos
from the torch renderer (backend/train/generated.py). ``--data``/``--dvr`` train on disk datasets
instead (scripts/gen_data.py, DVR/ShapeNet). Evaluates on a held-in procedural set (the Blender-
rendered one in data_cache/procedural_heldin when present, else one the generator makes) and on the
real-object split of the reconstruct benchmark when present, and exports float16 weights that
``python -m backend reconstruct --weights DIR`` loads. See docs/training.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXPORT_FILE_LIMIT = 15 * 2**20
"""Largest file of an export: the GPU machine returns files under 16 MiB."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, help="wall-clock budget of the whole command (training, evaluation, export)")
    p.add_argument("--steps", type=int, help="train exactly this many steps instead of planning them from --minutes")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", help="run directory (logs, checkpoints, export); default: the --resume directory")
    p.add_argument("--resume", help="continue the run in this directory (its newest checkpoint and plan)")
    p.add_argument("--init-from", help="start from these weights (a checkpoint NAME or a folder holding one): "
                                       "their architecture, a fresh optimiser and schedule")
    p.add_argument("--model-preset", default="cpu", choices=["tiny", "cpu", "gpu"],
                   help="model and training recipe (tiny: tests)")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--lr", type=float, help="override the learning rate")
    p.add_argument("--render-every", type=int, help="override how often the rendering losses run")
    p.add_argument("--shapes-held", type=int, help="generated shapes held at once (default: tiny 8, CPU 128, CUDA 512)")
    p.add_argument("--grid", type=int, help="side of the baked shape grids (default: tiny 32, CPU 64, CUDA 128)")
    p.add_argument("--composition-share", type=float, help="share of category-free compositions (default 0.3)")
    p.add_argument("--meshes", help="also draw shapes from this folder of baked third-party meshes "
                                    "(scripts/bake_training_meshes.py)")
    p.add_argument("--mesh-share", type=float, help="share of the shapes drawn from --meshes (default 0.5 with it)")
    p.add_argument("--data", nargs="*", default=[], help="train on these procedural dataset roots instead")
    p.add_argument("--dvr", nargs="*", default=[], help="train on these DVR/ShapeNet-layout roots instead")
    p.add_argument("--heldin", help="held-in procedural dataset root for evaluation "
                                    "(default data_cache/procedural_heldin when present, else generated)")
    p.add_argument("--real", help="real-object split for evaluation (default data_cache/real_split when present)")
    p.add_argument("--eval-shapes", type=int, help="held-in shapes per evaluation (preset: cpu 24)")
    p.add_argument("--real-photos", type=int, default=27, help="real-split photos per evaluation (0 = none)")
    p.add_argument("--eval-every", type=int, help="evaluate every this many steps (0 = at the end only)")
    p.add_argument("--baseline", help="also evaluate these weights on the same sets first (before/after figures "
                                      "from one machine); written to OUT/baseline_eval.json")
    p.add_argument("--export", help="where the final float16 weights go (default OUT/export/shape_model)")
    p.add_argument("--autocast", action="store_true", help="bfloat16 forward pass on CUDA")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores up to 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    space = p.add_argument_group("recipe shape-space (disk data: fit a code per shape, then the encoder to them; "
                                 "how the committed weights were made)")
    space.add_argument("--recipe", default="direct", choices=["direct", "shape-space"],
                       help="direct: train the whole model on batches (default); shape-space: the two-stage recipe "
                            "(needs --data/--dvr, --init-from, --export; --out keeps stage 1 for reuse)")
    from backend.train.shape_space import ShapeSpaceConfig

    d = ShapeSpaceConfig()
    space.add_argument("--code-steps", type=int, default=d.code_steps)
    space.add_argument("--encoder-steps", type=int, default=d.encoder_steps)
    space.add_argument("--encoder-lr", type=float, default=d.encoder_lr)
    space.add_argument("--field-weight", type=float, default=d.field_weight,
                       help="weight of the predicted code's SDF error in stage 2 (0 = codes only)")
    space.add_argument("--pool", choices=["mean", "flatten"], default=d.pool)
    space.add_argument("--azimuth-bins", type=int, default=d.azimuth_bins)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "scripts/train.py", *(argv or sys.argv[1:])])
    if args.recipe == "shape-space":
        return _shape_space(parser, args, command)
    if args.minutes is None and args.steps is None:
        parser.error("give --minutes (a budget) or --steps")
    out = Path(args.out or args.resume or "")
    if not (args.out or args.resume):
        parser.error("give --out DIR (or --resume DIR)")
    if args.resume and Path(args.resume).resolve() != out.resolve():
        _copy_run(Path(args.resume), out)
    if args.resume and not (out / "checkpoints").is_dir():
        parser.error(f"--resume {args.resume}: no checkpoints there")
    if not args.resume and (out / "checkpoints").is_dir():
        parser.error(f"--out {out} already holds a run: continue it with --resume {out}, or choose another --out")

    import torch

    from backend.models.checkpoint import load_shape_model, save_shape_model
    from backend.pipelines.reconstruct.weights import resolve_weights
    from backend.train.checkpoints import latest_checkpoint, load_training_state
    from backend.train.config import TrainConfig, model_config
    from backend.train.data import dvr_source, procedural_source
    from backend.train.evaluate import generated_heldin_items, procedural_eval_items, real_split_items
    from backend.train.generated import GeneratedBatches, GeneratedConfig
    from backend.train.trainer import TrainingError, set_threads, train

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available here", file=sys.stderr)
        return 2
    if args.device.startswith("cuda"):
        # TF32 matrix products: most of bf16's speed on Hopper without its rounding in the renderer
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    set_threads(args.threads)
    config = TrainConfig.preset(args.model_preset)
    overrides = {"batch_size": args.batch_size, "lr": args.lr, "render_every": args.render_every,
                 "eval_every": args.eval_every, "eval_shapes": args.eval_shapes}
    config = dataclasses.replace(config, seed=args.seed, num_threads=args.threads, steps=args.steps or 0,
                                 **{k: v for k, v in overrides.items() if v is not None})
    if args.eval_every is None:
        config = dataclasses.replace(config, eval_every=0 if args.minutes else config.eval_every)

    init_from = resolve_weights(args.init_from) if args.init_from else None
    latest = latest_checkpoint(out) if args.resume else None
    if latest is not None:
        # the run's own settings, so the batches and the schedule continue as they were (options
        # given now still win); a finished plan is extended at its final learning rate
        state = load_training_state(latest)
        config = _resumed_config(state.extra.get("train_config") or {}, config, overrides)
        if args.steps is not None:
            config = dataclasses.replace(config, steps=args.steps)
        elif config.steps <= state.step:
            config = dataclasses.replace(config, steps=0, lr=config.lr * config.lr_final, lr_schedule="constant",
                                         warmup_steps=0)
    if init_from is not None:
        image_size = load_shape_model(init_from)[0].config.encoder.image_size
    elif latest is not None:
        image_size = load_shape_model(latest)[0].config.encoder.image_size
    else:
        image_size = model_config(config.model_preset).encoder.image_size

    if args.mesh_share is not None and not (args.meshes and 0.0 < args.mesh_share <= 1.0):
        parser.error("--mesh-share needs --meshes and a share in (0, 1]")
    if args.data or args.dvr:
        data = [procedural_source(root, "train") for root in args.data] + [dvr_source(root, "train") for root in args.dvr]
    else:
        saved = out / "generated_config.json"
        if latest is not None and saved.is_file():  # the run's own shapes and photos
            generated = GeneratedConfig.from_dict(json.loads(saved.read_text()))
        else:
            generated = GeneratedConfig.for_training(config.model_preset, args.device, image_size)
        bank = dataclasses.replace(generated.bank, **{k: v for k, v in
                                                      {"size": args.shapes_held, "grid": args.grid,
                                                       "composition_share": args.composition_share,
                                                       "meshes": args.meshes,
                                                       "mesh_share": (args.mesh_share if args.mesh_share is not None
                                                                      else 0.5 if args.meshes else None)}.items()
                                                      if v is not None})
        generated = dataclasses.replace(generated, bank=bank)
        out.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(dataclasses.asdict(generated), indent=1) + "\n")

        def data(size: int) -> GeneratedBatches:
            return GeneratedBatches(generated, size, config.seed, args.device, log=print)

    eval_sets = {}
    heldin = Path(args.heldin) if args.heldin else ROOT / "data_cache" / "procedural_heldin"
    if args.data and not args.heldin:
        # disk training data: its own held-in test split (shapes of its categories never trained on)
        eval_sets["heldin"] = _lazy(lambda: [item for root in args.data for item in
                                             procedural_eval_items(root, "test", image_size, config.eval_shapes)])
    elif heldin.is_dir():
        eval_sets["heldin"] = _lazy(lambda: procedural_eval_items(heldin, "test", image_size, config.eval_shapes))
    else:
        eval_sets["heldin_generated"] = _lazy(lambda: generated_heldin_items(image_size, device=args.device,
                                                                             limit=max(config.eval_shapes, 1)))
    real = Path(args.real) if args.real else ROOT / "data_cache" / "real_split"
    if args.real_photos and real.is_dir():
        eval_sets["real"] = _lazy(lambda: real_split_items(real, image_size, args.real_photos))

    if args.baseline:
        _evaluate_baseline(resolve_weights(args.baseline), eval_sets, config, args.device, out)
    budget = None
    if args.minutes is not None:
        budget = args.minutes * 60.0 - (time.perf_counter() - started)
    bar = None if args.quiet else _ProgressBar(config.batch_size)
    try:
        summary = train(config, data, out, eval_items=eval_sets, device=args.device, resume=True,
                        init_from=init_from if latest is None else None, command=command, budget_s=budget,
                        reserve_s=_eval_reserve(args, config, budget), autocast=args.autocast,
                        progress=None if bar is None else bar.update,
                        log=print if bar is None else bar.write)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()

    model, metadata = load_shape_model(latest_checkpoint(out))
    target = Path(args.export) if args.export else out / "export" / "shape_model"
    metadata = {**metadata, "exported_from": str(latest_checkpoint(out)), "eval_all": _read_evals(out)}
    if args.data:
        from backend.train.evaluate import export_report

        metadata.update(export_report(model, args.data))  # every held-in shape, and the datasets used
    save_shape_model(target, model, metadata, dtype=torch.float16, max_file_bytes=EXPORT_FILE_LIMIT)
    print(json.dumps({"step": summary["step"], "wall_s": summary["wall_s"], "eval": summary["eval"],
                      "export": str(target), "seconds": round(time.perf_counter() - started, 1)}, indent=1))
    return 0


def _resumed_config(stored: dict, fresh, overrides: dict):
    """The TrainConfig a run was saved with, with this command's explicit ``overrides``."""
    from backend.train.config import LossWeights, TrainConfig

    if not stored:
        return fresh
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in stored.items() if k in known}
    values["losses"] = LossWeights(**stored.get("losses", {}))
    config = TrainConfig(**values)
    return dataclasses.replace(config, num_threads=fresh.num_threads,
                               **{k: v for k, v in overrides.items() if v is not None})


def _shape_space(parser, args, command: str) -> int:
    from backend.train.shape_space import ShapeSpaceConfig, run_shape_space

    if not (args.data or args.dvr) or not args.init_from or not args.export or not args.out:
        parser.error("--recipe shape-space needs --data or --dvr, --init-from, --out and --export")
    config = dataclasses.replace(ShapeSpaceConfig(), code_steps=args.code_steps, encoder_steps=args.encoder_steps,
                                 encoder_lr=args.encoder_lr, field_weight=args.field_weight, pool=args.pool,
                                 azimuth_bins=args.azimuth_bins, seed=args.seed)
    run_shape_space(config, data=args.data, dvr=args.dvr, init_from=args.init_from, run_dir=args.out,
                    export=args.export, device=args.device, threads=args.threads, command=command)
    return 0


def _evaluate_baseline(weights: Path, eval_sets: dict, config, device: str, out: Path) -> None:
    from backend.models.checkpoint import load_shape_model
    from backend.train.evaluate import evaluate_sets

    model, _ = load_shape_model(weights, device=device)
    summary = {"weights": str(weights),
               **evaluate_sets(model, eval_sets, config.eval_resolution, config.eval_points)["summary"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "baseline_eval.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("baseline: " + ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if "f@" in k))


class _lazy:
    """An evaluation set built on first use (building it costs seconds; a run without an
    evaluation never pays), then kept."""

    def __init__(self, make) -> None:
        self.make, self.items = make, None

    def __call__(self):
        if self.items is None:
            self.items = self.make()
        return self.items


def _eval_reserve(args, config, budget: float | None) -> float:
    """Seconds kept from the budget for the final evaluation and export (measured: about 1.3 s an
    item on this 2-core CPU, mostly the pose-free alignment, which runs on the CPU on any device;
    building a generated held-in shape adds about as much)."""
    if budget is None:
        return 0.0
    per_item = 2.0 if args.device == "cpu" else 1.6
    return min(0.35 * budget, 10.0 + per_item * (config.eval_shapes + (args.real_photos or 0)))


def _read_evals(out: Path) -> list[dict]:
    path = out / "eval.jsonl"
    if not path.is_file():
        return []
    return [{"step": row["step"], **row["summary"]} for row in map(json.loads, path.read_text().splitlines())]


def _copy_run(source: Path, target: Path) -> None:
    """Start ``target`` as a copy of run ``source`` (logs and checkpoints), then resume there."""
    if target.exists() and any(target.iterdir()):
        raise SystemExit(f"error: --out {target} is not empty; resume in place with --resume {source}")
    shutil.copytree(source, target, dirs_exist_ok=True)


class _ProgressBar:
    def __init__(self, batch_size: int) -> None:
        from tqdm import tqdm

        self.batch_size = batch_size
        self.bar = tqdm(total=None, unit="step", dynamic_ncols=True, file=sys.stderr)

    def update(self, step: int, planned: int, line: dict) -> None:
        if planned and self.bar.total != planned:
            self.bar.total = planned
        self.bar.n = step
        per_step = line.get("s_per_step") or 0.0
        self.bar.set_postfix({"img/s": round(self.batch_size / per_step) if per_step else "-",
                              "loss": f"{line.get('loss/total', float('nan')):.4f}",
                              "sdf": f"{line.get('loss/sdf', float('nan')):.4f}"}, refresh=True)

    def write(self, message: str) -> None:
        self.bar.write(message)

    def close(self) -> None:
        self.bar.close()


if __name__ == "__main__":
    raise SystemExit(main())
