"""Training the photo embedding (`backend.models.photo_embedding`) on procedural shapes, self-supervised.

Each step draws shapes from a `ShapeBank` (the shape model's on-the-fly pool: categories and
category-free compositions, replaced as training goes) and photographs each of them from
`VIEWS_PER_SHAPE` random viewpoints with the training renderer (`backend.train.views`: random light,
background, degradations and segmentation errors, cropped over white as the pipelines crop). The
loss is supervised-contrastive: every photo must be nearer the other photos of its shape than those
of any other shape in the batch. A shape's colours are the same from every side, which would let
the network match colours and ignore shape; so each photo's colours are disturbed on their own
(grey, channels swapped, contrast), and colour is left to the colour features mining adds itself.

Evaluation: on the real-object split's photos (3 views of 27 objects never trained on), how often
a photo's nearest other photo shows the same object.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from backend.models.photo_embedding import PHOTO_EMBEDDING_KIND, PhotoEmbedding, PhotoEmbeddingConfig
from backend.train.generated import GeneratedConfig, step_generator
from backend.train.shape_bank import ShapeBank
from backend.train.views import photograph, render_views

VIEWS_PER_SHAPE = 3


@dataclass
class EmbeddingTrainConfig:
    model: PhotoEmbeddingConfig = field(default_factory=PhotoEmbeddingConfig)
    shapes_per_step: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    seed: int = 7_000_000
    """Bank seed: apart from the shape model's and the text models' shapes."""


def disturb_colours(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per photo: grey (half of them) or channels permuted, and contrast against the white
    background changed (white stays white)."""
    b = images.shape[0]
    dev = images.device
    out = images.clone()
    perms = torch.stack([torch.randperm(3, generator=gen, device=gen.device) for _ in range(b)]).to(dev)
    out = torch.gather(out, 1, perms[:, :, None, None].expand_as(out))
    grey = (torch.rand(b, generator=gen, device=gen.device) < 0.5).to(dev)
    out = torch.where(grey[:, None, None, None], out.mean(1, keepdim=True).expand_as(out), out)
    contrast = (torch.rand(b, 1, 1, 1, generator=gen, device=gen.device) * 0.8 + 0.6).to(dev)
    return (1.0 - (1.0 - out) * contrast).clamp(0.0, 1.0)


def contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised-contrastive loss: mean over photos of -log(share of its similarity mass on the
    photos of its own shape)."""
    similarity = embeddings @ embeddings.T / temperature
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    similarity = similarity.masked_fill(eye, -1e9)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    return -(log_prob * positive).sum(1).div(positive.sum(1).clamp_min(1)).mean()


def real_split_accuracy(model: PhotoEmbedding, root: Path) -> float | None:
    """Nearest-neighbour accuracy on the real split's photos (None without the split)."""
    from backend.images import decode_image
    from backend.pipelines.reconstruct.inputs import object_crop
    from backend.segmentation import segment

    folders = sorted(p.parent for p in root.glob("*/views.json"))
    if not folders:
        return None
    crops, labels = [], []
    for k, folder in enumerate(folders):
        for image_path in sorted(folder.glob("view_*.png")):
            image = decode_image(image_path.read_bytes(), max_pixels=64_000_000, name=image_path.name)
            seg = segment(image.rgba, image.has_alpha)
            rgb, _ = object_crop(image.rgba, seg.mask, model.config.image_size)
            crops.append(rgb.transpose(2, 0, 1))
            labels.append(k)
    embeddings = model.embed(torch.as_tensor(np.stack(crops)))
    similarity = embeddings @ embeddings.T
    similarity.fill_diagonal_(-2.0)
    labels_t = torch.as_tensor(labels)
    return float((labels_t[similarity.argmax(1)] == labels_t).float().mean())


def train(config: EmbeddingTrainConfig, minutes: float, out: Path, real_split: Path | None = None,
          device: str = "cpu", log=print, init_from: Path | None = None) -> dict:
    """Train for ``minutes`` of wall clock (from the weights of checkpoint ``init_from`` when
    given); save the checkpoint ``out`` (``out.safetensors`` + ``out.json``); returns the run's
    record, which carries on the earlier runs' record under ``earlier``."""
    from backend.models.checkpoint import save_checkpoint

    torch.manual_seed(config.seed)
    generated = GeneratedConfig.preset("cpu" if device == "cpu" else "gpu")
    bank = ShapeBank(generated.bank, config.seed, torch.device(device), log)
    model = PhotoEmbedding(config.model).to(device)
    earlier = None
    if init_from is not None:
        from backend.models.photo_embedding import load_photo_embedding
        from backend.train.checkpoints import carry_on_from

        earlier = carry_on_from(model, init_from, load_photo_embedding, device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = time.monotonic()
    deadline = start + minutes * 60
    losses: list[float] = []
    step = 0
    baseline = real_split_accuracy(model, real_split) if real_split else None
    log(f"nearest-neighbour accuracy on the real split before training: {baseline}")
    while time.monotonic() < deadline:
        bank.sync(step)
        gen = step_generator(config.seed, step, device)
        idx = torch.randint(len(bank), (config.shapes_per_step,), generator=gen, device=gen.device).to(device)
        shapes = bank.select(idx)
        photos = []
        for _ in range(VIEWS_PER_SHAPE):
            views = photograph(render_views(shapes, generated.views, gen), generated.views, gen,
                               config.model.image_size)
            photos.append(disturb_colours(views.crops, gen))
        images = torch.cat(photos)
        labels = idx.repeat(VIEWS_PER_SHAPE)
        loss = contrastive_loss(model(images), labels, config.temperature)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 25 == 0:
            log(f"step {step}: loss {np.mean(losses[-25:]):.3f} ({time.monotonic() - start:.0f} s)")
    accuracy = real_split_accuracy(model, real_split) if real_split else None
    log(f"nearest-neighbour accuracy on the real split after {step} steps: {accuracy}")
    record = {"steps": step, "seconds": round(time.monotonic() - start), "device": device,
              "loss_first": round(float(np.mean(losses[:25])), 4) if losses else None,
              "loss_last": round(float(np.mean(losses[-25:])), 4) if losses else None,
              "real_split_nn_accuracy": {"before": baseline, "after": accuracy},
              "train": {k: v for k, v in asdict(config).items() if k != "model"},
              **({"earlier": earlier} if earlier else {})}
    save_checkpoint(out, model, config.model, kind=PHOTO_EMBEDDING_KIND, metadata=record, dtype=torch.float16)
    return record
