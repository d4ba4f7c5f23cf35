"""The shape-model training loop: sample a batch, compute losses, step Adam, log, evaluate,
checkpoint; resumes from the newest checkpoint of a run directory.

Run directory layout::

    <run>/train_config.json      the TrainConfig and data sources of the run
    <run>/log.jsonl              one JSON line per log step ({"step", "loss/...", "lr", "s_per_step", ...})
    <run>/eval.jsonl             one JSON line per evaluation (summary + per-shape rows)
    <run>/checkpoints/...        see backend/train/checkpoints.py
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from backend.train.checkpoints import latest_checkpoint, load_training_state, save_training_checkpoint
from backend.train.config import TrainConfig, model_config
from backend.train.data import Batch, ShapeSource, ShapeViewDataset
from backend.train.evaluate import EvalSet, evaluate_sets
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


CALIBRATION_STEPS = 5
"""Fewest steps timed (after the first, which pays for warm-up) to plan a run's length from its
budget; at least one rendering period (`TrainConfig.render_every`) is timed, since those steps cost more."""

class BatchSource(Protocol):
    """Where a run's batches come from: disk datasets (`DatasetBatches`) or the generator
    (`backend.train.generated.GeneratedBatches`). ``step_batch`` must depend on ``(seed, step)`` only."""

    tags: list[str]

    def __len__(self) -> int: ...

    def step_batch(self, config: TrainConfig, step: int) -> Batch: ...

    def refresh(self, step: int) -> int: ...


class DatasetBatches:
    """Batches of shapes read from disk datasets and held in memory (`ShapeViewDataset`)."""

    def __init__(self, sources: Sequence[ShapeSource], image_size: int, config: TrainConfig,
                 log: Callable[[str], None]) -> None:
        self.dataset = ShapeViewDataset(sources, image_size, config.cached_sdf_points, config.cached_surface_points,
                                        config.seed, log=log)
        self.tags = [s.tag for s in sources]

    def __len__(self) -> int:
        return len(self.dataset)

    def step_batch(self, config: TrainConfig, step: int) -> Batch:
        rng = np.random.default_rng([config.seed, step])
        indices = rng.integers(len(self.dataset), size=config.batch_size)
        return self.dataset.batch(indices, rng, rays_per_view=config.rays_per_view,
                                  supervise_views=config.supervise_views, sdf_points=config.sdf_points,
                                  augment=config.augment)

    def refresh(self, step: int) -> int:
        return self.dataset.refresh()


def train(config: TrainConfig, data: Sequence[ShapeSource] | Callable[[int], BatchSource], run_dir: str | Path, *,
          eval_items: EvalSet | dict[str, EvalSet] | None = None, device: str = "cpu", resume: bool = True,
          init_from: str | Path | None = None, command: str = "", log: Callable[[str], None] = print,
          budget_s: float | None = None, reserve_s: float = 0.0, autocast: bool = False,
          progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Train (or continue training) a shape model; returns the final summary dict.

    ``data`` is a list of disk dataset sources, or a factory that makes a `BatchSource` for the
    model's encoder input size (the generator). With ``resume`` and a checkpoint in ``run_dir`` the
    model, optimiser, renderer and step are restored and training continues to ``config.steps``;
    per-step sampling depends only on ``(config.seed, step)``, so a resumed run draws the same
    batches as an uninterrupted one. ``eval_items`` may be a callable, asked again at every
    evaluation (data still being generated), or several named sets (``{"heldin": ..., "real": ...}``),
    whose summaries are reported as ``name/metric``.

    ``budget_s`` stops training (with a checkpoint and the final evaluation) once that many seconds
    of this call have passed, wherever ``config.steps`` is. With a budget and ``config.steps`` 0 the
    run plans its own length: it times `CALIBRATION_STEPS` steps, then fixes ``steps`` so the rest
    of the budget, less ``reserve_s`` (the final evaluation and export), is used, and plans once
    more a quarter of the way in, from the pace of the longer stretch; the learning-rate
    schedule follows the plan, which the checkpoints record, so a resumed run keeps it.
    ``autocast`` runs the forward pass in bfloat16 on CUDA (weights and optimiser stay float32).
    ``progress(step, planned_steps, log_line)`` is called at every log step.

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
    t_call = time.perf_counter()
    if callable(data):
        dataset = data(architecture.encoder.image_size)
    else:
        dataset = DatasetBatches(data, architecture.encoder.image_size, config, log)
    torch.manual_seed(config.seed)
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
         "sources": list(dataset.tags)}, indent=1))

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
                "data": list(dataset.tags), "runs": history}

    eval_sets = eval_items if isinstance(eval_items, dict) else ({"": eval_items} if eval_items else {})

    def run_eval() -> None:
        nonlocal last_eval
        t0 = time.perf_counter()
        result = {"step": step, **evaluate_sets(model, eval_sets, config.eval_resolution, config.eval_points)}
        if not result["summary"]:
            return
        last_eval = result
        evalfile.write(json.dumps({"seconds": round(time.perf_counter() - t0, 1), **last_eval}) + "\n")
        evalfile.flush()
        log(f"eval @ {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in last_eval["summary"].items()))

    out_of_time = (lambda: False) if budget_s is None else (lambda: time.perf_counter() - t_call > budget_s)
    use_autocast = autocast and torch.device(device).type == "cuda"
    planning = budget_s is not None and config.steps <= 0
    first_step, t_first, replan_at = step, None, -1
    calibration = max(CALIBRATION_STEPS, config.render_every)
    try:
        while (planning or step < config.steps) and not out_of_time():
            batch = dataset.step_batch(config, step).to(device)
            torch.manual_seed(config.seed * 1_000_003 + step)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            render = config.render_every <= 1 or step % config.render_every == 0
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_autocast):
                losses = training_losses(model, renderer, batch, config.losses, render=render)
            losses = {k: v.float() for k, v in losses.items()}
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
            if planning and step == first_step + 1:
                t_first = time.perf_counter()
            elif t_first is not None and step in (first_step + 1 + calibration, replan_at):
                # plan the length from the pace so far; again a quarter of the way in, when the
                # pace of a longer stretch (shape refreshes, evaluations) is known
                per_step = (time.perf_counter() - t_first) / (step - first_step - 1)
                left = budget_s - reserve_s - (time.perf_counter() - t_call)
                planned = step + max(0, int(left / per_step))
                warmup = config.warmup_steps if not planning else min(config.warmup_steps, max(1, planned // 10))
                config = dataclasses.replace(config, steps=planned, warmup_steps=warmup)
                replan_at = step + (planned - step) // 4 if planning else -1
                planning = False
                log(f"planned {planned} steps ({per_step:.3f} s/step, {left:.0f} s left for training)")
            if step % config.log_every == 0 or step == config.steps:
                now = time.perf_counter()
                line = {"step": step, "lr": learning_rate(config, step - 1), "beta": round(float(renderer.beta.detach()), 5),
                        "s_per_step": round((now - t_log) / steps_since_log, 3), "shapes": len(dataset),
                        **{f"loss/{k}": round(float(v.detach()), 6) for k, v in losses.items()}}
                logfile.write(json.dumps(line) + "\n")
                logfile.flush()
                if progress is not None:
                    progress(step, config.steps, line)
                t_log, steps_since_log = now, 0
            if config.eval_every and step % config.eval_every == 0:
                run_eval()
            if step % config.checkpoint_every == 0 or step == config.steps:
                save_training_checkpoint(run_dir, model, optimizer, renderer, step, metadata(),
                                         config.keep_checkpoints)
            if config.refresh_every and step % config.refresh_every == 0:
                added = dataset.refresh(step)
                if added:
                    log(f"step {step}: {added} new training shapes (now {len(dataset)})")
        if step < config.steps or planning:
            log(f"time budget of {budget_s:.0f} s reached at step {step}")
            save_training_checkpoint(run_dir, model, optimizer, renderer, step, metadata(), config.keep_checkpoints)
        if eval_sets and last_eval.get("step") != step:
            run_eval()
            save_training_checkpoint(run_dir, model, optimizer, renderer, step, metadata(), config.keep_checkpoints)
    finally:
        logfile.close()
        evalfile.close()
    return metadata()
