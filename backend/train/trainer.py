"""The shape-model training loop: sample a batch, compute losses, step Adam, log, evaluate,
checkpoint; resumes from the newest checkpoint of a run directory.

Run directory layout::

    <run>/train_config.json      the TrainConfig and data sources of the run
    <run>/log.jsonl              one JSON line per log step ({"step", "loss/...", "lr", "s_per_step", ...})
    <run>/eval.jsonl             one JSON line per evaluation (summary + per-shape rows)
    <run>/checkpoints/...        see backend/train/checkpoints.py
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from backend.train.checkpoints import latest_checkpoint, load_training_state, save_training_checkpoint
from backend.train.config import TrainConfig, model_config
from backend.train.data import ShapeSource, ShapeViewDataset
from backend.train.evaluate import EvalItem, evaluate
from backend.train.losses import training_losses


class TrainingError(RuntimeError):
    """Training cannot start or continue (no data, diverged, mismatching resume)."""


def set_threads(requested: int) -> int:
    """Use ``requested`` intra-op threads, or all cores up to 8 when 0; returns the number."""
    threads = requested or min(8, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads


def cosine_decay(progress: float, final: float) -> float:
    """Share of the base learning rate at ``progress`` (0..1) of a cosine decay from 1 to ``final``."""
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then constant or (``lr_schedule="cosine"``) cosine decay to
    ``lr * lr_final`` at ``config.steps``."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_schedule == "cosine":
        span = max(1, config.steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        return config.lr * cosine_decay(progress, config.lr_final)
    return config.lr


def train(config: TrainConfig, sources: Sequence[ShapeSource], run_dir: str | Path, *,
          eval_items: list[EvalItem] | Callable[[], list[EvalItem]] | None = None, device: str = "cpu", resume: bool = True,
          init_from: str | Path | None = None, command: str = "", log: Callable[[str], None] = print) -> dict:
    """Train (or continue training) a shape model; returns the final summary dict.

    With ``resume`` and a checkpoint in ``run_dir`` the model, optimiser, renderer and step are
    restored and training continues to ``config.steps``; per-step sampling depends only on
    ``(config.seed, step)``, so a resumed run draws the same batches as an uninterrupted one.
    ``eval_items`` may be a callable, asked again at every evaluation (data still being generated).

    ``init_from`` (a model checkpoint, e.g. the committed default weights) fine-tunes: the run
    trains that checkpoint's architecture — whatever ``config.model_preset`` says — starting from
    its weights and renderer β with a fresh optimiser at step 0. Once the run has a checkpoint of
    its own, resuming continues from that one.
    """
    from backend.models.checkpoint import load_shape_model
    from backend.models.shape_model import ShapeModel
    from backend.render.volsdf import VolSDFConfig, VolSDFRenderer

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    threads = set_threads(config.num_threads)
    architecture = model_config(config.model_preset)
    initial, beta_init = None, config.beta_init
    if init_from is not None:
        initial, init_metadata = load_shape_model(init_from, device=device)
        architecture = initial.config
        beta_init = float(init_metadata.get("beta", beta_init))
    torch.manual_seed(config.seed)
    dataset = ShapeViewDataset(sources, architecture.encoder.image_size, config.cached_sdf_points,
                               config.cached_surface_points, config.seed, log=log)
    if len(dataset) == 0:
        raise TrainingError("no training shapes found: check the dataset path and split")
    log(f"{len(dataset)} training shapes in memory, {threads} thread(s), device {device}")

    model = initial if initial is not None else ShapeModel(architecture).to(device)
    renderer = VolSDFRenderer(VolSDFConfig(n_samples=config.n_samples, beta_init=beta_init)).to(device)
    optimizer = torch.optim.Adam(list(model.parameters()) + list(renderer.parameters()), lr=config.lr)
    step, wall_before = 0, 0.0
    history: list[dict] = []
    latest = latest_checkpoint(run_dir) if resume else None
    if latest is not None:
        model, _ = load_shape_model(latest, expected_config=architecture, device=device)
        renderer = VolSDFRenderer(VolSDFConfig(n_samples=config.n_samples, beta_init=config.beta_init)).to(device)
        state = load_training_state(latest, device=device)
        renderer.load_state_dict(state.renderer)
        optimizer = torch.optim.Adam(list(model.parameters()) + list(renderer.parameters()), lr=config.lr)
        optimizer.load_state_dict(state.optimizer)
        step = state.step
        wall_before = float(state.extra.get("wall_s", 0.0))
        history = list(state.extra.get("runs") or [{"command": state.extra.get("command", ""), "from_step": 0}])
        log(f"resumed from {latest.name} at step {step}")
    history.append({"command": command, "from_step": step, "lr": config.lr, "device": device,
                    **({"init_from": str(init_from)} if init_from is not None and latest is None else {})})
    (run_dir / "train_config.json").write_text(json.dumps(
        {"config": asdict(config), "command": command, "device": device,
         "sources": [s.tag for s in sources]}, indent=1))

    model.train()
    renderer.train()
    t_start = time.perf_counter()
    t_log, steps_since_log = t_start, 0
    last_eval: dict = {}
    logfile = (run_dir / "log.jsonl").open("a")
    evalfile = (run_dir / "eval.jsonl").open("a")

    def metadata() -> dict:
        return {"step": step, "wall_s": round(wall_before + time.perf_counter() - t_start, 1),
                "train_shapes": len(dataset), "train_config": asdict(config), "command": command,
                "beta": float(renderer.beta.detach()), "eval": last_eval.get("summary", {}),
                "data": [s.tag for s in sources], "runs": history}

    def run_eval() -> None:
        nonlocal last_eval
        items = eval_items() if callable(eval_items) else eval_items
        if not items:
            return
        t0 = time.perf_counter()
        last_eval = {"step": step, **evaluate(model, items, config.eval_resolution, config.eval_points)}
        evalfile.write(json.dumps({"seconds": round(time.perf_counter() - t0, 1), **last_eval}) + "\n")
        evalfile.flush()
        log(f"eval @ {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in last_eval["summary"].items()))

    try:
        while step < config.steps:
            rng = np.random.default_rng([config.seed, step])
            torch.manual_seed(config.seed * 1_000_003 + step)
            indices = rng.integers(len(dataset), size=config.batch_size)
            batch = dataset.batch(indices, rng, rays_per_view=config.rays_per_view,
                                  supervise_views=config.supervise_views, sdf_points=config.sdf_points,
                                  augment=config.augment).to(device)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            render = config.render_every <= 1 or step % config.render_every == 0
            losses = training_losses(model, renderer, batch, config.losses, render=render)
            total = losses["total"]
            if not torch.isfinite(total):
                raise TrainingError(f"loss became {float(total)} at step {step}: " +
                                    ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items()))
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            steps_since_log += 1
            if step % config.log_every == 0 or step == config.steps:
                now = time.perf_counter()
                line = {"step": step, "lr": learning_rate(config, step - 1), "beta": round(float(renderer.beta.detach()), 5),
                        "s_per_step": round((now - t_log) / steps_since_log, 3), "shapes": len(dataset),
                        **{f"loss/{k}": round(float(v.detach()), 6) for k, v in losses.items()}}
                logfile.write(json.dumps(line) + "\n")
                logfile.flush()
                t_log, steps_since_log = now, 0
            if config.eval_every and step % config.eval_every == 0:
                run_eval()
            if step % config.checkpoint_every == 0 or step == config.steps:
                save_training_checkpoint(run_dir, model, optimizer, renderer, step, metadata(),
                                         config.keep_checkpoints)
            if config.refresh_every and step % config.refresh_every == 0:
                added = dataset.refresh()
                if added:
                    log(f"step {step}: {added} new training shapes (now {len(dataset)})")
        if eval_items and last_eval.get("step") != step:
            run_eval()
            save_training_checkpoint(run_dir, model, optimizer, renderer, step, metadata(), config.keep_checkpoints)
    finally:
        logfile.close()
        evalfile.close()
    return metadata()
