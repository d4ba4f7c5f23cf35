"""The offline text model: a prompt's words → ``[shape code | colour code]`` of the shape model,
and the main colour it names.

It plays CLIP-and-mapper's part in ISS for the words it was trained on, with no download: trained
by ``scripts/train_text.py`` on captions generated from procedural shapes' parameters, against
the codes the shape model's image encoder gives photos of those shapes (`train/text_codes.py`).
So a prompt lands where images of what it describes land, and the shape model's decoder does the
rest.

Words are pooled two ways and both go to the MLP: a learned attention (so "chair" can outweigh
"tall") and a plain mean (so every word counts a little). Word order is not modelled: the captions
it learns from bind every colour and size word to the whole object, as the colour code does.
Outputs are in standardised units; ``code_mean``/``code_scale`` (buffers, saved with the weights)
bring them back to the shape model's.

The main colour (sRGB) is an output of its own because the shape model's colour network is nearly
colourless: the code of a photographed red car decodes to grey-brown (117, 111, 101) on its own
surface (measured 2026-12-05, `shape_model_cpu`). The colour code still gives the texture its
variation; the named colour sets its mean (`TintedColorField`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

TEXT_ENCODER_KIND = "text_encoder"
PAD = 0
"""Token id of padding; the vocabulary keeps 0 for it."""


@dataclass(frozen=True)
class TextEncoderConfig:
    vocab_size: int
    embed_dim: int = 128
    hidden: int = 384
    layers: int = 3
    shape_dim: int = 64
    color_dim: int = 64
    rgb_dim: int = 3
    """The main part's sRGB colour."""

    @property
    def out_dim(self) -> int:
        return self.shape_dim + self.color_dim + self.rgb_dim


class TextEncoder(nn.Module):
    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD)
        self.attention = nn.Linear(config.embed_dim, 1)
        blocks: list[nn.Module] = []
        width = 2 * config.embed_dim
        for _ in range(config.layers - 1):
            blocks += [nn.Linear(width, config.hidden), nn.LayerNorm(config.hidden), nn.SiLU()]
            width = config.hidden
        blocks.append(nn.Linear(width, config.out_dim))
        self.mlp = nn.Sequential(*blocks)
        self.register_buffer("code_mean", torch.zeros(config.out_dim))
        self.register_buffer("code_scale", torch.ones(config.out_dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] (``PAD`` after the words) → standardised outputs [B, out_dim]."""
        mask = ids != PAD
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every prompt needs at least one known word")
        words = self.embed(ids)
        weights = self.attention(words).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(dim=1)
        attended = (weights.unsqueeze(-1) * words).sum(dim=1)
        mean = (words * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True)
        return self.mlp(torch.cat([attended, mean], dim=1))

    def split(self, standard: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Standardised outputs [B, out_dim] → (shape codes [B, shape_dim], colour codes
        [B, color_dim]) in the shape model's units and main colours [B, 3] in sRGB [0, 1]."""
        out = standard * self.code_scale + self.code_mean
        s, c = self.config.shape_dim, self.config.shape_dim + self.config.color_dim
        return out[:, :s], out[:, s:c], out[:, c:].clamp(0.0, 1.0)

    def codes(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.split(self(ids))

    def set_code_statistics(self, codes: torch.Tensor) -> None:
        """Standardise against these training targets [N, out_dim]."""
        self.code_mean.copy_(codes.mean(dim=0))
        self.code_scale.copy_(codes.std(dim=0).clamp_min(1e-4))


def pad_batch(token_ids: list[list[int]]) -> torch.Tensor:
    """Lists of token ids → [B, T] padded with ``PAD``."""
    width = max(1, max(len(ids) for ids in token_ids))
    out = torch.full((len(token_ids), width), PAD, dtype=torch.long)
    for row, ids in enumerate(token_ids):
        out[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    return out
