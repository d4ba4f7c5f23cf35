"""Two-stage training of the shape model: first the shape space, then the images mapped into it.

The "image as stepping stone" idea of ISS applied to reconstruction (docs/training.md):

1. **Shape codes** (`fit_shape_codes`): every training shape gets its own code, optimised
   together with the SDF network against the shape's 3D samples (auto-decoding): clamped-L1 SDF
   (or occupancy cross-entropy for data without distances), eikonal term, and a small pull
   towards where the codes started (the encoder's mean prediction over the shape's views), so
   the space stays the one the encoder already maps into.
2. **Encoder** (`fit_encoder`): the image encoder learns to predict each view's shape code
   (squared error), the earlier encoder's colour code (so the colour network still fits), the
   viewpoint (sin/cos) and, with `ShapeSpaceConfig.azimuth_bins`, the azimuth sector; with
   `ShapeSpaceConfig.field_weight`, also the SDF error of the shape its code decodes to.

Regressing fixed codes costs a CNN pass per image and no field evaluation or rendering, so a CPU
trains the encoder for many more images per minute than end-to-end training; and the codes it
regresses reconstruct the training shapes far better than what end-to-end training reached
(measured in docs/training.md). The SDF network keeps its architecture; the encoder may switch
to ``pool="flatten"`` (its convolutions are kept, its heads start afresh).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backend.models.encoders import azimuth_sector
from backend.train.checkpoints import latest_checkpoint, load_training_state, save_training_checkpoint
from backend.train.data import MIRROR_VIEWPOINT, CachedShape, augment_crop, permute_channels, rescale_crops
from backend.train.losses import clamped_l1, viewpoint_loss
from backend.train.trainer import cosine_decay


@dataclass
class ShapeSpaceConfig:
    """Options of both stages. The defaults are the fifth session's run that made the committed
    CPU weights, plus the stage-2 regularisation added in the sixth (`weight_decay`,
    `feature_dropout`, `scale_jitter`, `channel_swap`; docs/training.md), which that run did
    not have."""

    code_steps: int = 2500
    """Stage 1 optimiser steps."""
    code_batch: int = 32
    """Shapes per stage-1 step."""
    code_points: int = 1024
    """3D samples per shape per stage-1 step."""
    code_lr: float = 1e-3
    """Adam step of the per-shape codes (cosine-decayed to 10 %)."""
    decoder_lr: float = 1e-4
    """Adam step of the SDF network (cosine-decayed to 10 %)."""
    code_prior: float = 0.01
    """Weight of the squared distance of each code from its starting point."""
    sdf_weight: float = 3.0
    sdf_clamp: float = 0.1
    eikonal_weight: float = 0.1
    encoder_steps: int = 6000
    """Stage 2 optimiser steps."""
    encoder_batch: int = 32
    """Views per stage-2 step."""
    encoder_lr: float = 1e-3
    """AdamW step of the encoder (100 warm-up steps, cosine-decayed to 5 %)."""
    weight_decay: float = 1e-4
    """AdamW weight decay of the encoder."""
    feature_dropout: float = 0.3
    """Dropout on the backbone features while the encoder trains (`ImageEncoder.feature_dropout`)."""
    scale_jitter: float = 0.1
    """Training inputs are zoomed by a random factor in [1 - this, 1 + this] (`rescale_crops`)."""
    channel_swap: float = 0.8
    """Share of training inputs whose colour channels are shuffled (`permute_channels`); their
    colour codes are not supervised."""
    field_weight: float = 0.0
    """Weight of the predicted code's field error in stage 2: the frozen SDF network, given the
    encoder's code, against the shape's 3D samples (clamped L1, or occupancy cross-entropy).
    Codes that decode to the same shape can lie far apart; this term judges the prediction by
    the shape it gives rather than by its distance from one fitted code."""
    field_points: int = 512
    """3D samples per view per stage-2 step for `field_weight`."""
    pool: str = "flatten"
    """Encoder pooling of the trained model (`EncoderConfig.pool`)."""
    azimuth_bins: int = 24
    """Azimuth sectors of the encoder's classifier (`EncoderConfig.azimuth_bins`; 0 = none)."""
    color_weight: float = 0.1
    viewpoint_weight: float = 0.5
    azimuth_weight: float = 0.5
    azimuth_smoothing: float = 0.1
    """Label smoothing of the azimuth classifier."""
    seed: int = 0


def shape_space_model(initial, config: ShapeSpaceConfig, log: Callable[[str], None] = print, encoder_from=None):
    """A `ShapeModel` with ``initial``'s architecture except the encoder's pooling and azimuth
    classifier from ``config``; every tensor whose shape still fits is copied from ``initial``,
    the encoder's from ``encoder_from`` instead when given (another model: an encoder trained
    since ``initial``'s SDF network was fitted)."""
    from backend.models.shape_model import ShapeModel

    encoder = dataclasses.replace(initial.config.encoder, pool=config.pool, azimuth_bins=config.azimuth_bins)
    model = ShapeModel(dataclasses.replace(initial.config, encoder=encoder))
    state, given = model.state_dict(), dict(initial.state_dict())
    if encoder_from is not None:
        given = {k: v for k, v in given.items() if not k.startswith("encoder.")}
        given.update((k, v) for k, v in encoder_from.state_dict().items() if k.startswith("encoder."))
    for name, value in given.items():
        if name in state and state[name].shape == value.shape:
            state[name] = value.clone()
    fresh = sorted({".".join(n.split(".")[:2]) for n in state if n not in given or given[n].shape != state[n].shape})
    model.load_state_dict(state)
    if fresh:
        log(f"new parameters (trained from scratch): {', '.join(fresh)}")
    return model.to(next(initial.parameters()).device)


@torch.no_grad()
def mean_view_codes(encoder, shapes: list[CachedShape]) -> torch.Tensor:
    """[N, shape_dim] the encoder's shape code of every shape, averaged over its views."""
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    codes = torch.stack([encoder(torch.from_numpy(s.crops).to(device)).shape.mean(0) for s in shapes])
    encoder.train(was_training)
    return codes


def fit_shape_codes(model, shapes: list[CachedShape], config: ShapeSpaceConfig,
                    log: Callable[[str], None] = print, train_decoder: bool = True) -> torch.Tensor:
    """Stage 1: returns the [N, shape_dim] codes of ``shapes``; ``model.sdf_net`` is trained in
    place, or with ``train_decoder=False`` left as it is (codes for shapes added to a dataset
    after stage 1, in the space the other codes already live in). Shapes need 3D samples (SDF
    values or occupancy)."""
    from backend.render.fields import sdf_and_gradient

    device = next(model.parameters()).device
    samples = ShapeSamples(shapes, device)
    start = mean_view_codes(model.encoder, shapes)
    codes = torch.nn.Parameter(start.clone())
    model.sdf_net.train().requires_grad_(train_decoder)
    groups = [{"params": [codes], "lr": config.code_lr}]
    if train_decoder:
        groups.append({"params": model.sdf_net.parameters(), "lr": config.decoder_lr})
    optimizer = torch.optim.Adam(groups)
    generator = torch.Generator().manual_seed(config.seed)
    batch = min(config.code_batch, len(shapes))
    t0 = time.perf_counter()
    for step in range(config.code_steps):
        factor = cosine_decay(step / max(1, config.code_steps), 0.1)
        for group, lr in zip(optimizer.param_groups, (config.code_lr, config.decoder_lr)):
            group["lr"] = lr * factor
        rows = torch.randperm(len(shapes), generator=generator)[:batch].to(device)
        pick = torch.randint(samples.count, (batch, config.code_points), generator=generator).to(device)
        p, target = samples.gather(rows, pick)
        code = codes[rows]
        # the eikonal term shapes the network; a frozen one needs neither it nor the double backward
        if train_decoder:
            values, grad = sdf_and_gradient(lambda q: model.sdf(q, code), p, create_graph=True)
        else:
            values, grad = model.sdf(p, code), None
        fit = samples.fit(values, target, rows, config, sdf_weight=config.sdf_weight)
        eikonal = ((grad.norm(dim=-1) - 1.0) ** 2).mean() if grad is not None else values.new_zeros(())
        prior = ((code - start[rows]) ** 2).mean()
        loss = fit + config.eikonal_weight * eikonal + config.code_prior * prior
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 250 == 0 or step + 1 == config.code_steps:
            log(f"codes {step + 1}/{config.code_steps}: fit {float(fit.detach()):.4f} eikonal {float(eikonal.detach()):.4f} "
                f"prior {float(prior.detach()):.4f} ({time.perf_counter() - t0:.0f} s)")
    model.sdf_net.requires_grad_(False)
    return codes.detach()


def fit_encoder(model, shapes: list[CachedShape], codes: torch.Tensor, config: ShapeSpaceConfig,
                teacher=None, log: Callable[[str], None] = print, checkpoints: Path | None = None,
                checkpoint_every: int = 500) -> float:
    """Stage 2: train ``model.encoder`` in place to map every view of ``shapes`` to ``codes``
    (and, when ``teacher`` -- an earlier encoder -- is given, to its colour codes). Returns the
    seconds spent, earlier interrupted runs included.

    With ``checkpoints`` (a folder), the encoder, optimiser and random generators are saved there
    every ``checkpoint_every`` steps, and a call that finds a checkpoint continues from it: the
    result is the one an uninterrupted run gives. The caller keeps the folder to one set of
    inputs and settings (`encoder_checkpoints`)."""
    device = next(model.parameters()).device
    crops = np.concatenate([s.crops for s in shapes])
    viewpoints = torch.from_numpy(np.concatenate([s.viewpoint for s in shapes])).to(device)
    owner = torch.tensor(np.repeat(np.arange(len(shapes)), [len(s.crops) for s in shapes]), device=device)
    colors = None
    if teacher is not None and config.color_weight:
        teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
        with torch.no_grad():
            colors = torch.cat([teacher(torch.from_numpy(crops[i:i + 256]).to(device)).color
                                for i in range(0, len(crops), 256)])
    field = ShapeSamples(shapes, device) if config.field_weight else None
    model.sdf_net.requires_grad_(False)
    encoder = model.encoder.train().requires_grad_(True)
    has_view = encoder.view_head is not None
    bins = model.config.encoder.azimuth_bins
    encoder.feature_dropout.p = config.feature_dropout
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=config.encoder_lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    batch = min(config.encoder_batch, len(crops))
    start, seconds_before = 0, 0.0
    latest = latest_checkpoint(checkpoints) if checkpoints is not None else None
    if latest is not None:
        start, seconds_before = _resume_encoder(latest, model, optimizer, rng)
        log(f"encoder resumed from {latest} at step {start}")
    t0 = time.perf_counter()
    for step in range(start, config.encoder_steps):
        optimizer.param_groups[0]["lr"] = (config.encoder_lr * min(1.0, (step + 1) / 100)
                                           * cosine_decay(step / max(1, config.encoder_steps), 0.05))
        rows = rng.choice(len(crops), batch, replace=False)
        images = np.stack([augment_crop(crops[i], rng) for i in rows])
        if config.scale_jitter:
            images = rescale_crops(images, rng.uniform(1.0 - config.scale_jitter, 1.0 + config.scale_jitter, batch))
        images, swapped = permute_channels(images, rng, config.channel_swap)
        # the mirror image is the mirrored object seen from -azimuth (`mirror_sample`); the
        # shape code stays: codes describe mirror-symmetric fields or are fitted as such
        flip = rng.random(batch) < 0.5
        images[flip] = images[flip][..., ::-1]
        view = viewpoints[rows] * torch.from_numpy(np.where(flip[:, None], MIRROR_VIEWPOINT, 1.0)).to(device)
        out = encoder(torch.from_numpy(np.ascontiguousarray(images)).to(device))
        rows_t = torch.from_numpy(rows).to(device)
        code_loss = ((out.shape - codes[owner[rows_t]]) ** 2).sum(-1).mean()
        loss = code_loss
        if field is not None:
            pick = torch.from_numpy(rng.integers(field.count, size=(batch, config.field_points))).to(device)
            points, target = field.gather(owner[rows_t], pick)
            loss = loss + config.field_weight * field.fit(model.sdf(points, out.shape), target, owner[rows_t], config)
        if colors is not None and not swapped.all():
            kept = torch.from_numpy(~swapped).to(device)
            loss = loss + config.color_weight * ((out.color[kept] - colors[rows_t[kept]]) ** 2).sum(-1).mean()
        if has_view and config.viewpoint_weight:
            loss = loss + config.viewpoint_weight * viewpoint_loss(out.viewpoint.sincos, view)
        if bins and config.azimuth_weight:
            loss = loss + config.azimuth_weight * torch.nn.functional.cross_entropy(
                out.viewpoint.azimuth_logits, azimuth_sector(view[:, 0], bins), label_smoothing=config.azimuth_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        optimizer.step()
        if step % 250 == 0 or step + 1 == config.encoder_steps:
            log(f"encoder {step + 1}/{config.encoder_steps}: code {float(code_loss.detach()):.4f} "
                f"total {float(loss.detach()):.4f} "
                f"({seconds_before + time.perf_counter() - t0:.0f} s)")
        if checkpoints is not None and (step + 1) % checkpoint_every == 0 and step + 1 < config.encoder_steps:
            save_training_checkpoint(
                checkpoints, model, optimizer, None, step + 1,
                {"seconds": seconds_before + time.perf_counter() - t0, "numpy_rng": rng.bit_generator.state},
                keep=1, tensors={"torch_rng": torch.get_rng_state()})
    encoder.feature_dropout.p = 0.0
    encoder.eval().requires_grad_(False)
    return seconds_before + time.perf_counter() - t0


def _resume_encoder(name: Path, model, optimizer, rng: np.random.Generator) -> tuple[int, float]:
    """Load a `fit_encoder` checkpoint into ``model``'s encoder, ``optimizer`` and ``rng`` (and
    torch's generator); returns the steps done and the seconds they took."""
    from backend.models.checkpoint import load_shape_model

    device = next(model.parameters()).device
    saved, _ = load_shape_model(name, device=device)
    model.encoder.load_state_dict(saved.encoder.state_dict())
    state = load_training_state(name, device=device)
    optimizer.load_state_dict(state.optimizer)
    rng.bit_generator.state = state.extra["numpy_rng"]
    torch.set_rng_state(state.tensors["torch_rng"].cpu())
    return state.step, float(state.extra["seconds"])


def encoder_checkpoints(run_dir: Path, settings: dict) -> Path:
    """The folder of `fit_encoder` checkpoints in ``run_dir`` for one set of inputs and settings
    (JSON-able: the stage-2 config, the starting weights, the codes, ...): named by their hash,
    so a rerun with the same ones resumes and other settings start afresh beside it."""
    import hashlib
    import json

    text = json.dumps(settings, sort_keys=True)
    folder = Path(run_dir) / f"encoder-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, indent=1, sort_keys=True))
    return folder


class ShapeSamples:
    """The 3D samples of every shape as tensors (the first ``count`` of each), and the field's
    fit to them: clamped L1 for SDF values, cross-entropy for occupancy-only data."""

    def __init__(self, shapes: list[CachedShape], device) -> None:
        missing = [s.name for s in shapes if s.sdf_points is None]
        if missing:
            raise ValueError(f"{len(missing)} shape(s) have no 3D samples (SDF or occupancy), e.g. {missing[0]}")
        self.count = min(len(s.sdf_points) for s in shapes)
        self.points = torch.from_numpy(np.stack([s.sdf_points[:self.count] for s in shapes])).to(device)
        self.has_sdf = torch.tensor([s.sdf is not None for s in shapes], device=device)
        self.targets = torch.from_numpy(np.stack([
            s.sdf[:self.count] if s.sdf is not None else s.occupancy[:self.count].astype(np.float32)
            for s in shapes])).to(device)

    def gather(self, rows: torch.Tensor, pick: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Points [B, P, 3] and targets [B, P] of shapes ``rows`` [B] at sample indices ``pick`` [B, P]."""
        return (torch.gather(self.points[rows], 1, pick.unsqueeze(-1).expand(-1, -1, 3)),
                torch.gather(self.targets[rows], 1, pick))

    def fit(self, values: torch.Tensor, target: torch.Tensor, rows: torch.Tensor, config: ShapeSpaceConfig,
            sdf_weight: float = 1.0) -> torch.Tensor:
        sdf_rows = self.has_sdf[rows]
        fit = values.new_zeros(())
        if bool(sdf_rows.any()):
            fit = fit + sdf_weight * clamped_l1(values[sdf_rows], target[sdf_rows], config.sdf_clamp)
        if bool((~sdf_rows).any()):  # occupancy logit = -sdf / 0.01, as in end-to-end training
            fit = fit + torch.nn.functional.binary_cross_entropy_with_logits(
                -values[~sdf_rows] / 0.01, target[~sdf_rows])
        return fit


def run_shape_space(config: ShapeSpaceConfig, *, data: list[str], dvr: list[str], init_from: str | Path,
                    run_dir: str | Path, export: str | Path, device: str = "cpu", threads: int = 0,
                    command: str = "") -> None:
    """The whole two-stage recipe on disk datasets: stage 1 (codes and SDF network, kept in
    ``run_dir`` and reused: new shapes get codes of their own with the network frozen; shapes that
    disappeared are an error), stage 2 (the encoder, checkpointed in ``run_dir/encoder-<hash>``
    and resumed after an interruption), then ``export`` with held-in scores in its metadata."""
    import hashlib
    import shutil

    from safetensors.torch import load_file

    from backend.models.checkpoint import checkpoint_id, load_shape_model, save_shape_model
    from backend.train.data import ShapeViewDataset, dvr_source, procedural_source
    from backend.train.evaluate import export_report
    from backend.train.trainer import set_threads

    def log(message: str) -> None:
        print(message, flush=True)

    set_threads(threads)
    torch.manual_seed(config.seed)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    initial, init_metadata = load_shape_model(init_from, device=device)
    sources = [procedural_source(root, "train") for root in data] + [dvr_source(root, "train") for root in dvr]
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
        model, stage1_metadata = load_shape_model(stage1, device=device)
        timings.update(stage1_metadata.get("timings", {}))
        stored = dict(zip((run_dir / "codes_names.txt").read_text().split("\n"),
                          load_file(str(codes_file))["codes"].to(device)))
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
        "shape_space": dataclasses.asdict(config), "init_from": checkpoint_id(init_from),
        "stage1": checkpoint_id(stage1), "shapes": names,
        "codes_sha256": hashlib.sha256(codes.detach().cpu().numpy().tobytes()).hexdigest()})
    # stage 1 trains only the SDF network, so ``initial``'s encoder is the checkpoint's as loaded
    seconds = fit_encoder(trained, shapes, codes, config, teacher=initial.encoder, log=log, checkpoints=checkpoints)
    timings["encoder_s"] = round(seconds, 1)
    trained.eval()
    metadata = {
        "beta": init_metadata.get("beta"), "command": command, "init_from": checkpoint_id(init_from),
        "recipe": "shape space (backend/train/shape_space.py)", "shape_space": dataclasses.asdict(config),
        "train_shapes": len(shapes), "data": [f"procedural:{r}" for r in data] + [f"dvr:{r}" for r in dvr],
        "timings": timings, "device": device,
    }
    metadata.update(export_report(trained, data, log=log))
    save_shape_model(export, trained, metadata)
    shutil.rmtree(checkpoints)  # the export holds the result; an interrupted run would have resumed from here
    print(f"exported to {export} ({checkpoint_id(export)})")


def save_codes(run_dir: Path, names: list[str], codes) -> None:
    """The stage-1 codes of the run directory (``codes.safetensors``) and their shape names."""
    from safetensors.torch import save_file

    save_file({"codes": codes.cpu().contiguous()}, str(run_dir / "codes.safetensors"))
    (run_dir / "codes_names.txt").write_text("\n".join(names))
