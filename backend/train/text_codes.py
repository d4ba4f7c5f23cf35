"""Targets of the offline text model: where each procedural shape lands in the shape model's space.

For a shape ``(category, seed)`` the torch generator builds it, the training renderer photographs it
over white from ``views`` fixed azimuths, and the shape model's encoder maps each photo to
``[shape code | colour code]``; their mean is the shape's place in the space images map to (the
ISS idea: text is taught to land where the images of what it describes land). The caption side
rebuilds the shape's spec from ``(category, seed)`` (cheap: no field is evaluated), so a record
keeps only what needs the renderer: the codes and the shape's normalised extents.

Records are appended to an ``.npz`` per call and read back with `load_code_records`.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

TEXT_SEED_OFFSET = 2_000_000
"""Shapes for the text model use seeds from here on: apart from the shape model's training pool
(`shape_bank.TRAIN_SEED_OFFSET`) and from the held-in evaluation seeds."""
TEXT_EVAL_SEED_OFFSET = 3_000_000
"""Seeds of the shapes the text model is evaluated on (never trained on)."""


@dataclass
class CodeRecords:
    categories: list[str]
    seeds: np.ndarray
    """[N] int64"""
    extents: np.ndarray
    """[N, 3] bounding-box size of the normalised shape (longest side about 1)."""
    shape_codes: np.ndarray
    """[N, V, shape_dim] one code per photographed view."""
    color_codes: np.ndarray
    """[N, V, color_dim]"""

    def __len__(self) -> int:
        return len(self.categories)


def shape_pairs(categories: Iterable[str], per_category: int, offset: int = TEXT_SEED_OFFSET) -> list[tuple[str, int]]:
    """``per_category`` seeds of every category, interleaved so a partial build covers them all."""
    cats = list(categories)
    return [(category, offset + n) for n in range(per_category) for category in cats]


@torch.no_grad()
def encode_shape(model, category: str, seed: int, views: int = 4, grid: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(extents [3], shape codes [V, S], colour codes [V, C]) of one procedural shape."""
    from backend.train.rendered_records import photograph
    from backend.train.shape_bank import GRID_LIMIT
    from backend.train.views import crop_over_white

    first = math.radians(zlib.crc32(f"{category}/{seed}".encode()) % 90)
    azimuth = torch.tensor([first + 2 * math.pi * i / views for i in range(views)])
    elevation = torch.full((views,), math.radians(20.0))
    baked, rendered, _ = photograph(category, seed, azimuth, elevation, 2 * model.config.encoder.image_size, grid)
    inside = (baked.sdf.float() < 0).nonzero().float()
    step = 2 * GRID_LIMIT / (grid - 1)
    extents = ((inside.max(0).values - inside.min(0).values + 1) * step).numpy() if len(inside) else np.zeros(3)
    codes = model.encode(crop_over_white(rendered.clean, rendered.alpha, model.config.encoder.image_size))
    return extents.astype(np.float32), codes.shape.numpy().astype(np.float32), codes.color.numpy().astype(np.float32)


def build_code_records(model, pairs: list[tuple[str, int]], out: Path, views: int = 4,
                       log: Callable[[str], None] = print, save_every: int = 50) -> CodeRecords:
    """Encode ``pairs`` (skipping those ``out`` already holds) and save after every ``save_every``."""
    from backend.data.procedural import ShapeError

    records = load_code_records(out) if out.is_file() else None
    done = set(zip(records.categories, records.seeds.tolist())) if records else set()
    rows = _rows(records) if records else []
    todo = [pair for pair in pairs if pair not in done]
    started = time.monotonic()
    for i, (category, seed) in enumerate(todo):
        try:
            extents, shape_codes, color_codes = encode_shape(model, category, seed, views)
        except ShapeError as exc:
            log(f"skipped {category}/{seed}: {exc}")
            continue
        rows.append((category, seed, extents, shape_codes, color_codes))
        if (i + 1) % save_every == 0 or i + 1 == len(todo):
            _save(rows, out)
            rate = (i + 1) / (time.monotonic() - started)
            log(f"{len(rows)} shapes encoded ({rate:.2f}/s, {(len(todo) - i - 1) / rate / 60:.0f} min left)")
    return load_code_records(out)


def _rows(records: CodeRecords) -> list[tuple]:
    return [(records.categories[i], int(records.seeds[i]), records.extents[i], records.shape_codes[i],
             records.color_codes[i]) for i in range(len(records))]


def _save(rows: list[tuple], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, categories=np.array([r[0] for r in rows]), seeds=np.array([r[1] for r in rows], np.int64),
             extents=np.stack([r[2] for r in rows]), shape_codes=np.stack([r[3] for r in rows]),
             color_codes=np.stack([r[4] for r in rows]))
    tmp.replace(out)


def load_code_records(path: Path) -> CodeRecords:
    with np.load(path) as data:
        return CodeRecords([str(c) for c in data["categories"]], data["seeds"], data["extents"],
                           data["shape_codes"], data["color_codes"])
