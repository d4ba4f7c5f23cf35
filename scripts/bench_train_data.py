#!/usr/bin/env python
"""Throughput of on-the-fly training data: shapes baked, photos rendered, batches and steps per second.

    .venv/bin/python scripts/bench_train_data.py --device cpu --model-preset cpu
    python3 scripts/bench_train_data.py --device cuda --model-preset cpu --batch-size 256   # on the GPU machine

The shape pool and photo sizes are those `scripts/train.py` uses for that model and device
(`GeneratedConfig.for_training`). Writes bench_results/train_data_<device>_<model>_<size>px.json
(or --out) and prints it. Numbers are medians over repeats after a warm-up; on CUDA every timing
is synchronised.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model-preset", default="cpu", choices=["tiny", "cpu", "gpu"],
                   help="model (and training recipe) whose data and step are timed")
    p.add_argument("--batch-size", type=int, help="views per batch (default: the training preset's)")
    p.add_argument("--shapes", type=int, default=16, help="shapes baked for the timing")
    p.add_argument("--render-size", type=int, help="photo window side (default: the preset's)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", help="JSON file (default bench_results/train_data_<device>_<model>_<size>px.json)")
    args = p.parse_args(argv)

    import torch

    from backend.models.shape_model import ShapeModel
    from backend.render.volsdf import VolSDFConfig, VolSDFRenderer
    from backend.train.config import TrainConfig, model_config
    from backend.train.generated import GeneratedBatches, GeneratedConfig
    from backend.train.losses import training_losses
    from backend.train.trainer import set_threads
    from backend.train.views import photograph, render_views

    threads = set_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":  # as scripts/train.py trains
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    train_config = TrainConfig.preset(args.model_preset)
    if args.batch_size:
        train_config = dataclasses.replace(train_config, batch_size=args.batch_size)
    architecture = model_config(train_config.model_preset)
    generated = GeneratedConfig.for_training(args.model_preset, args.device, architecture.encoder.image_size)
    generated = dataclasses.replace(generated, bank=dataclasses.replace(generated.bank, size=args.shapes, workers=0))
    if args.render_size:
        generated = dataclasses.replace(generated, views=dataclasses.replace(generated.views, render_size=args.render_size))
    source = GeneratedBatches(generated, architecture.encoder.image_size, seed=0, device=device)

    t0 = time.perf_counter()
    source.refresh(0)
    sync()
    bake_s = time.perf_counter() - t0
    b = train_config.batch_size

    def timed(fn) -> float:
        fn()
        sync()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    gen = torch.Generator(device=device).manual_seed(1)
    idx = torch.randint(len(source.bank), (b,), generator=gen, device=device)
    views = generated.views
    clean_s = timed(lambda: render_views(source.bank.select(idx), views, gen))
    photo_s = timed(lambda: photograph(render_views(source.bank.select(idx), views, gen), views, gen,
                                       architecture.encoder.image_size))
    step = [0]

    def next_batch():
        step[0] += 1
        return source.step_batch(train_config, step[0])

    batch_s = timed(next_batch)

    torch.manual_seed(0)
    model = ShapeModel(architecture).to(device)
    renderer = VolSDFRenderer(VolSDFConfig(n_samples=train_config.n_samples)).to(device)
    optimizer = torch.optim.Adam(list(model.parameters()) + list(renderer.parameters()), lr=1e-4)
    batch = next_batch()

    def model_step(render: bool):
        losses = training_losses(model, renderer, batch, train_config.losses, render=render)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].float().backward()
        optimizer.step()

    step_3d_s = timed(lambda: model_step(False))
    step_render_s = timed(lambda: model_step(True))
    every = max(1, train_config.render_every)
    model_mean_s = (step_3d_s * (every - 1) + step_render_s) / every

    result = {
        "date": time.strftime("%Y-%m-%d"), "device": str(device), "device_name": _device_name(torch, device),
        "threads": threads, "host": platform.node(), "torch": torch.__version__,
        "model_preset": train_config.model_preset, "batch_size": b,
        "render_size": views.render_size, "encoder_size": architecture.encoder.image_size, "grid": generated.bank.grid,
        "bake_shapes_per_s": round(args.shapes / bake_s, 2),
        "clean_views_per_s": round(b / clean_s, 1),
        "photo_views_per_s": round(b / photo_s, 1),
        "batches_images_per_s": round(b / batch_s, 1),
        "model_step_images_per_s": round(b / model_mean_s, 1),
        "model_step_3d_s": round(step_3d_s, 4), "model_step_render_s": round(step_render_s, 4),
        "training_images_per_s": round(b / (batch_s + model_mean_s), 1),
        "data_share_of_step": round(batch_s / (batch_s + model_mean_s), 3),
    }
    out = Path(args.out) if args.out else ROOT / "bench_results" / \
        f"train_data_{device.type}_{args.model_preset}_{views.render_size}px.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


def _device_name(torch, device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())
