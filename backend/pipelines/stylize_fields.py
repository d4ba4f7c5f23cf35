"""The fields stylization optimises: a colour field on the surface and a normal displacement.

Both are functions of 3D position in the mesh's working frame, so they can be optimised on a
decimated proxy of a large mesh and then evaluated on the full mesh (or baked into its texture).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from backend.models.shape_model import positional_encoding

if TYPE_CHECKING:
    from backend.models.shape_model import ShapeModel


@dataclass
class FieldConfig:
    """Size of a stylization MLP."""

    hidden: int = 64
    """Width of the hidden layers."""
    layers: int = 3
    """Number of hidden layers (ReLU)."""
    pe_freqs: int = 6
    """Positional-encoding octaves (sin/cos of 2^k x); more = finer texture detail."""


class ColorField(nn.Module):
    """``points [K, 3] → rgb [K, 3]`` in (0, 1); starts as uniform mid-grey."""

    def __init__(self, config: FieldConfig | None = None):
        super().__init__()
        self.config = config or FieldConfig()
        widths = [3 + 6 * self.config.pe_freqs] + [self.config.hidden] * self.config.layers
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(self.config.hidden, 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """``[K, 3] → [K, 3]``."""
        return torch.sigmoid(self.head(self.body(positional_encoding(points, self.config.pe_freqs))))


class ShapeModelColorField(nn.Module):
    """A trainable copy of a shape model's colour network with a fixed colour code (ISS: the
    colour head is copied, the original stays untouched)."""

    def __init__(self, shape_model: ShapeModel, color_code: torch.Tensor):
        """``color_code [color_dim]``."""
        super().__init__()
        self.color_net = copy.deepcopy(shape_model.color_net).requires_grad_(True)
        self.register_buffer("code", color_code.detach().reshape(1, -1).clone())

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """``[K, 3] → [K, 3]``."""
        return self.color_net(points.unsqueeze(0), self.code).squeeze(0)


class TintedColorField(nn.Module):
    """A colour field whose mean over ``points`` is moved to ``rgb``: the field keeps its
    variation, the offline text model's named colour sets the overall colour."""

    def __init__(self, field: nn.Module, points: torch.Tensor, rgb: torch.Tensor):
        super().__init__()
        self.field = field
        with torch.no_grad():
            self.register_buffer("offset", rgb.reshape(1, 3) - field(points).mean(dim=0, keepdim=True))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return (self.field(points) + self.offset).clamp(0.0, 1.0)


class DisplacementField(nn.Module):
    """Offset along the original normal, ``max_offset · tanh(MLP(PE(x)))``; starts at zero."""

    def __init__(self, max_offset: float, config: FieldConfig | None = None):
        super().__init__()
        if not max_offset > 0:
            raise ValueError(f"max_offset must be positive; got {max_offset!r}")
        self.max_offset = max_offset
        self.config = config or FieldConfig(pe_freqs=4)
        widths = [3 + 6 * self.config.pe_freqs] + [self.config.hidden] * self.config.layers
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.Softplus(beta=20.0)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(self.config.hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """``[K, 3] → [K]`` signed offsets (positive = outwards)."""
        raw = self.head(self.body(positional_encoding(points, self.config.pe_freqs))).squeeze(-1)
        return self.max_offset * torch.tanh(raw)


def numpy_color_fn(field: nn.Module, chunk: int = 65536):
    """``(points [K, 3], normals) → rgb [K, 3]`` numpy adapter for ``backend.geometry.texture.bake``."""
    device = next(field.parameters()).device

    def color(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(points), chunk):
                part = torch.as_tensor(points[start : start + chunk], dtype=torch.float32, device=device)
                out.append(field(part).cpu().double().numpy())
        return np.concatenate(out) if out else np.zeros((0, 3))

    return color
