"""Colour names for sRGB colours: a hue/saturation/value rule over a small basic palette.

The names are the ones people type in a prompt ("red", "dark brown", "light grey"), not a
colourimetric standard: the rule is tuned so the procedural material families read naturally
(dark wood is brown, pale cream is beige, low-saturation metal is grey).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

BASIC_COLOURS: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "teal", "blue", "purple", "pink",
    "brown", "beige", "black", "white", "grey",
)
SHADES: tuple[str, ...] = ("light", "dark")

# Upper hue bound (degrees) of each chromatic name, in order round the wheel; red wraps past 345.
_HUES: tuple[tuple[float, str], ...] = (
    (15.0, "red"), (45.0, "orange"), (70.0, "yellow"), (160.0, "green"), (195.0, "teal"),
    (255.0, "blue"), (320.0, "purple"), (345.0, "pink"), (360.0, "red"),
)


@dataclass(frozen=True)
class ColourName:
    """A basic colour name with an optional lightness modifier."""

    base: str
    """One of ``BASIC_COLOURS``."""
    shade: str = ""
    """"light", "dark" or ""."""

    @property
    def text(self) -> str:
        return f"{self.shade} {self.base}" if self.shade else self.base


def name_colour(rgb: tuple[float, float, float]) -> ColourName:
    """The basic name of an sRGB colour with components in [0, 1]."""
    r, g, b = (min(max(float(c), 0.0), 1.0) for c in rgb)
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    hue = h * 360.0
    if v < 0.15 or (s < 0.25 and v < 0.25):
        return ColourName("black")
    if s < 0.15:
        if v > 0.88:
            return ColourName("white")
        return ColourName("grey", "light" if v > 0.7 else "dark" if v < 0.35 else "")
    base = next(name for bound, name in _HUES if hue < bound)
    warm = base in ("red", "orange", "yellow") and hue < 60.0
    if warm and hue >= 20.0 and s < 0.4 and v > 0.7:
        return ColourName("beige")
    # dark, muted warm colours are what people call brown (wood, bark, soil, leather)
    if warm and (v < 0.55 or (base != "yellow" and s < 0.7 and v < 0.8)) and not (base == "red" and s > 0.6):
        return ColourName("brown", "dark" if v < 0.35 else "light" if v > 0.6 else "")
    if base == "red" and s < 0.5 and v > 0.7:
        return ColourName("pink")
    if v < 0.4:
        return ColourName(base, "dark")
    if v > 0.75 and s < 0.5 and base not in ("pink", "beige"):
        return ColourName(base, "light")
    return ColourName(base)
