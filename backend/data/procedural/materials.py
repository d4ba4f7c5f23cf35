"""Per-part base materials: small families of plausible colours with random jitter.

Colours are sRGB in [0, 1] (the renderer converts to linear for Blender's Principled BSDF).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Material:
    """A part's surface look."""

    base_color: tuple[float, float, float]
    """sRGB base colour in [0, 1]."""
    roughness: float = 0.5
    """Principled BSDF roughness in [0, 1]."""
    metallic: float = 0.0
    """Principled BSDF metallic in [0, 1]."""
    family: str = ""
    """The ``FAMILIES`` name it was drawn from ("wood", "metal", ...); "" when made by hand."""

    def to_json(self) -> dict:
        out = {
            "base_color": [round(c, 4) for c in self.base_color],
            "roughness": round(self.roughness, 4),
            "metallic": round(self.metallic, 4),
        }
        if self.family:
            out["family"] = self.family
        return out


def _hsv(
    rng: np.random.Generator, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]
) -> tuple[float, float, float]:
    hue = rng.uniform(*h) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(*s), rng.uniform(*v))
    return (float(r), float(g), float(b))


# Each family: (hue range, saturation range, value range, roughness range, metallic range)
_FAMILIES: dict[str, tuple] = {
    "wood": ((0.05, 0.11), (0.35, 0.75), (0.25, 0.75), (0.4, 0.8), (0.0, 0.0)),
    "fabric": ((0.0, 1.0), (0.1, 0.7), (0.25, 0.9), (0.7, 1.0), (0.0, 0.0)),
    "metal": ((0.0, 1.0), (0.0, 0.12), (0.45, 0.9), (0.15, 0.5), (0.8, 1.0)),
    "paint": ((0.0, 1.0), (0.3, 0.9), (0.3, 0.95), (0.2, 0.6), (0.0, 0.2)),
    "ceramic": ((0.0, 1.0), (0.0, 0.6), (0.5, 0.98), (0.05, 0.4), (0.0, 0.0)),
    "glass": ((0.2, 0.55), (0.1, 0.6), (0.3, 0.8), (0.0, 0.15), (0.0, 0.0)),
    "plastic": ((0.0, 1.0), (0.4, 1.0), (0.3, 1.0), (0.2, 0.5), (0.0, 0.0)),
    "rubber": ((0.0, 1.0), (0.0, 0.1), (0.05, 0.18), (0.8, 1.0), (0.0, 0.0)),
    "dark": ((0.0, 1.0), (0.0, 0.2), (0.05, 0.3), (0.3, 0.7), (0.0, 0.3)),
    "foliage": ((0.2, 0.38), (0.4, 0.9), (0.25, 0.7), (0.5, 0.9), (0.0, 0.0)),
    "bark": ((0.04, 0.1), (0.3, 0.7), (0.15, 0.45), (0.8, 1.0), (0.0, 0.0)),
    "stone": ((0.0, 1.0), (0.0, 0.18), (0.3, 0.75), (0.7, 1.0), (0.0, 0.0)),
    "soil": ((0.05, 0.1), (0.4, 0.8), (0.12, 0.3), (0.9, 1.0), (0.0, 0.0)),
    "fruit": ((-0.04, 0.3), (0.6, 1.0), (0.5, 0.95), (0.2, 0.5), (0.0, 0.0)),
    "skin": ((0.03, 0.1), (0.2, 0.6), (0.35, 0.95), (0.4, 0.7), (0.0, 0.0)),
    "fur": ((0.03, 0.12), (0.0, 0.7), (0.1, 0.95), (0.7, 1.0), (0.0, 0.0)),
    "cream": ((0.08, 0.16), (0.05, 0.3), (0.8, 0.98), (0.4, 0.8), (0.0, 0.0)),
}

FAMILIES: tuple[str, ...] = tuple(_FAMILIES)


def material(rng: np.random.Generator, family: str) -> Material:
    """Draw a material from a named family (see ``FAMILIES``)."""
    try:
        h, s, v, rough, metal = _FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown material family {family!r}; known: {', '.join(FAMILIES)}") from None
    return Material(_hsv(rng, h, s, v), float(rng.uniform(*rough)), float(rng.uniform(*metal)), family)
