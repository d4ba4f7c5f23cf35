"""Shape records made on the spot by the project's own renderer: no dataset, no Blender.

The ISS mapper (CLIP image features → the shape model's codes) needs views of many shapes with
their cameras. A Blender-rendered dataset takes hours to make on a CPU; here each procedural
shape is built by the torch generator and photographed by the training renderer from evenly
spread azimuths, giving the same `ShapeRecord` the dataset reader gives (images, masks, OpenCV
cameras), so the mapper's feature cache and training take it unchanged.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

from backend.data.records import ShapeRecord

MAPPER_SEED_OFFSET = 5_000_000
"""Shapes for the CLIP mapper: apart from the shape model's, the text model's and the evaluations' seeds."""


def photograph(category: str, seed: int, azimuth: torch.Tensor, elevation: torch.Tensor, size: int,
               grid: int = 64, gen: torch.Generator | None = None):
    """(baked shape, rendered views, cameras): one procedural shape built by the torch generator
    and photographed over white by the training renderer from orbit cameras at ``azimuth`` /
    ``elevation`` (radians, one per view), 35° field of view, the object framed."""
    from backend.data.procedural.torch_sdf import make_torch_shape
    from backend.render.cameras import orbit_cameras
    from backend.train.shape_bank import bake_shape
    from backend.train.views import FRAMED_RADIUS, ViewConfig, render_views

    views = len(azimuth)
    shape = make_torch_shape(category, seed, measure_res=grid)
    baked = bake_shape(shape, grid, 512, seed)
    fov = math.radians(35.0)
    cams = orbit_cameras(azimuth, elevation, FRAMED_RADIUS / math.sin(0.4 * fov),
                         focal=0.5 * size / math.tan(0.5 * fov), height=size, width=size)
    shapes = {"sdf": baked.sdf.float()[None, None].expand(views, -1, -1, -1, -1).contiguous(),
              "materials": baked.materials.float()[None, None].expand(views, -1, -1, -1, -1).contiguous(),
              "palette": baked.palette[None].expand(views, -1, -1).contiguous()}
    angles = torch.stack([azimuth, elevation, torch.zeros(views)], 1)
    rendered = render_views(shapes, ViewConfig(render_size=size, texture_amplitude=0.0),
                            gen or torch.Generator().manual_seed(seed), cameras=(cams, angles))
    return baked, rendered, cams


def render_record(category: str, seed: int, views: int = 8, size: int = 128, grid: int = 64,
                  elevation_deg: tuple[float, float] = (10.0, 35.0)) -> ShapeRecord:
    """One procedural shape photographed over white from ``views`` cameras around it."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"{category}/{seed}".encode()))
    first = float(torch.rand((), generator=gen)) * 2 * math.pi
    azimuth = torch.tensor([first + 2 * math.pi * i / views for i in range(views)])
    low, high = (math.radians(e) for e in elevation_deg)
    elevation = low + (high - low) * torch.rand(views, generator=gen)
    _, rendered, cams = photograph(category, seed, azimuth, elevation, size, grid, gen)
    intrinsics = torch.zeros(views, 3, 3)
    intrinsics[:, 0, 0], intrinsics[:, 1, 1] = cams.focal[:, 0], cams.focal[:, 1]
    intrinsics[:, 0, 2], intrinsics[:, 1, 2] = cams.principal[:, 0], cams.principal[:, 1]
    intrinsics[:, 2, 2] = 1.0
    world_to_cam = torch.eye(4).repeat(views, 1, 1)
    world_to_cam[:, :3, :3], world_to_cam[:, :3, 3] = cams.rotation, cams.translation
    return ShapeRecord(
        shape_id=f"{category}/{category}_{seed:07d}", category=category,
        images=rendered.clean.float().numpy().astype(np.float32), masks=rendered.alpha.float().numpy().astype(np.float32),
        intrinsics=intrinsics.numpy().astype(np.float32), world_to_cam=world_to_cam.numpy().astype(np.float32))


def rendered_records(pairs: list[tuple[str, int]], views: int = 8, size: int = 128) -> Iterator[ShapeRecord]:
    """`render_record` for each ``(category, seed)``; shapes the generator cannot build are skipped."""
    from backend.data.procedural import ShapeError

    for category, seed in pairs:
        try:
            yield render_record(category, seed, views, size)
        except ShapeError:
            continue


def record_names(pairs: list[tuple[str, int]], views: int, size: int) -> list[str]:
    """What a feature cache of these records depends on (its key), renderer settings included."""
    return [f"rendered:{category}/{seed}:{views}x{size}" for category, seed in pairs]


def mapper_photographs(per_category: int, views: int, max_shapes: int | None = None
                       ) -> tuple[list[tuple[str, int]], list[str], Callable[[], Iterator[ShapeRecord]]]:
    """The CLIP mapper's training shapes: ``per_category`` seeds of every procedural category
    (at most ``max_shapes``) -> ``(pairs, feature-cache names, a function yielding their
    records)``, the records made only when the function is called."""
    from backend.data.procedural import CATEGORIES
    from backend.train.text_codes import shape_pairs

    size = 128
    pairs = shape_pairs(CATEGORIES, per_category, MAPPER_SEED_OFFSET)[:max_shapes]
    return pairs, record_names(pairs, views, size), lambda: rendered_records(pairs, views, size)
