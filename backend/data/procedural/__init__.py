"""Procedural shape generators: seed -> the same analytic SDF shape, every time.

Public API:
    CATEGORIES: tuple of category names
    make_shape(category, seed) -> ProceduralShape (.sdf, .mesh, .color, .metadata)
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

from . import furniture, organic, vehicles, vessels
from .materials import Material
from .shape import GRID_PADDING, Part, ProceduralShape, ShapeError, ShapeSpec

#: Bumped whenever a builder changes what a (category, seed) produces.
GENERATOR_VERSION = "1.0.0"

_BUILDERS: dict[str, Callable[[np.random.Generator], ShapeSpec]] = {
    "chair": furniture.chair,
    "table": furniture.table,
    "stool": furniture.stool,
    "bench": furniture.bench,
    "sofa": furniture.sofa,
    "bed": furniture.bed,
    "bookshelf": furniture.bookshelf,
    "cabinet": furniture.cabinet,
    "lamp": furniture.lamp,
    "vase": vessels.vase,
    "bottle": vessels.bottle,
    "mug": vessels.mug,
    "bowl": vessels.bowl,
    "plant_pot": vessels.plant_pot,
    "car": vehicles.car,
    "airplane": vehicles.airplane,
    "boat": vehicles.boat,
    "rock": organic.rock,
    "fruit": organic.fruit,
    "tree": organic.tree,
    "mushroom": organic.mushroom,
    "quadruped": organic.quadruped,
    "humanoid": organic.humanoid,
}

CATEGORIES: tuple[str, ...] = tuple(_BUILDERS)


class UnknownCategoryError(ValueError):
    """The category name is not one of CATEGORIES."""


def category_rng(category: str, seed: int) -> np.random.Generator:
    """The random stream for one (category, seed): stable across runs and platforms."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([zlib.crc32(category.encode()), int(seed)])


COMPOSITION = "composition"
"""The category-free family (`compositions`): random primitive compositions for training
diversity. Not one of CATEGORIES, which name what an artist can ask for."""


def builder(category: str) -> Callable[[np.random.Generator], ShapeSpec]:
    """The spec builder of a category or of the `COMPOSITION` family."""
    if category == COMPOSITION:
        from .compositions import composition

        return composition
    try:
        return _BUILDERS[category]
    except KeyError:
        raise UnknownCategoryError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}") from None


def make_shape(category: str, seed: int) -> ProceduralShape:
    """Build the normalised shape for ``category`` (or `COMPOSITION`) and ``seed`` (deterministic)."""
    return ProceduralShape(category, int(seed), builder(category)(category_rng(category, seed)))


__all__ = [
    "CATEGORIES",
    "COMPOSITION",
    "GENERATOR_VERSION",
    "GRID_PADDING",
    "Material",
    "Part",
    "ProceduralShape",
    "ShapeError",
    "ShapeSpec",
    "UnknownCategoryError",
    "builder",
    "category_rng",
    "make_shape",
]
