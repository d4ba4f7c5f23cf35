"""An embedding of object photos in which photos of one object from different sides lie close.

Mining a photo collection (`backend.pipelines.mine`) groups photos by the object they show, whatever
side they show it from. The shape model's encoder codes are no good at that (trained to predict a
shape, they vary with the viewpoint as much as between objects: on the mining benchmark a photo's
nearest neighbour by them shows the same object 57 % of the time), so this small network is
trained for it alone, self-supervised on the project's procedural shapes
(`backend.train.photo_embedding`): two photos of one shape from random viewpoints must be nearer
each other than any photo of the other shapes in the batch.

Input: the object crop every pipeline makes (`backend.pipelines.reconstruct.inputs.object_crop`,
over white), ``[B, 3, S, S]`` in [0, 1]. Output: unit vectors ``[B, dim]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PhotoEmbeddingConfig:
    image_size: int = 64
    widths: tuple[int, ...] = (32, 64, 128, 256)
    """Channels of the stride-2 stages."""
    dim: int = 128
    """Length of the embedding."""


class PhotoEmbedding(nn.Module):
    def __init__(self, config: PhotoEmbeddingConfig = PhotoEmbeddingConfig()) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = 3
        for width in config.widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True),
                       nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        self.backbone = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True), nn.Linear(channels, config.dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {list(images.shape)}")
        features = self.backbone(images * 2.0 - 1.0).mean(dim=(2, 3))
        return nn.functional.normalize(self.head(features), dim=-1)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode embedding, the same for a photo and its mirror image (an object and its
        mirror image are one object seen from the other side, for most things people photograph)."""
        was_training = self.training
        self.eval()
        try:
            both = self(images) + self(images.flip(-1))
        finally:
            self.train(was_training)
        return nn.functional.normalize(both, dim=-1)


PHOTO_EMBEDDING_KIND = "photo_embedding"


def load_photo_embedding(path, device="cpu") -> tuple[PhotoEmbedding, dict]:
    """The network of checkpoint ``path`` in eval mode without gradients, and its metadata."""
    from backend.models.checkpoint import load_network

    return load_network(path, PhotoEmbeddingConfig, PhotoEmbedding, kind=PHOTO_EMBEDDING_KIND, device=device)
