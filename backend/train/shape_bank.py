"""A pool of procedural shapes baked on the training device, refreshed as training goes.

Rendering and 3D targets need the shapes' fields thousands of times a step; evaluating the SDF
trees that often would be launch-bound on a GPU and slow on a CPU. So each shape is evaluated once,
densely (`TorchShape.bake`): an SDF grid (float16), a material-index grid, its material palette,
and surface points with their materials. Every renderer and sampler then reads all shapes of a
batch with one `grid_sample`.

Which shapes the pool holds is a function of the step alone: shape number ``n`` is drawn from
``(seed, n)``; slots start with shapes ``0..size-1`` and every ``refresh_every`` steps the next
``refresh_count`` shape numbers replace slots round-robin. A run resumed at step ``s`` rebuilds
exactly the pool an uninterrupted run had at ``s``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from backend.data.procedural import CATEGORIES, COMPOSITION, GRID_PADDING, ShapeError, builder, category_rng
from backend.data.procedural.torch_sdf import TorchShape, zero_crossing_box

TRAIN_SEED_OFFSET = 1_000_000
"""Training shapes use seeds from here on: the disk datasets (held-in evaluation) use small seeds,
so a category's evaluation shapes never appear in on-the-fly training."""

MAX_MATERIALS = 8
"""Palette rows kept per shape (builders use at most a handful)."""

MESH = "mesh"
"""The category name of shapes drawn from a bank of baked meshes (`BankConfig.meshes`)."""

GRID_LIMIT = 0.5 + GRID_PADDING
"""The baked grids span [-GRID_LIMIT, GRID_LIMIT]^3 (the unit box and the generator's padding)."""


@dataclass
class BankConfig:
    """What the pool holds and how it changes."""

    size: int = 128
    """Shapes held at once."""
    grid: int = 64
    """Side of the baked SDF / material grids over [-0.55, 0.55]^3 (voxel = 1.1 / (grid - 1))."""
    measure_res: int = 64
    """Grid of the normalisation measurement (`TorchShape`; the numpy generator uses 128)."""
    surface_points: int = 2048
    """Surface points (with materials) kept per shape for the colour targets and near-surface SDF samples."""
    composition_share: float = 0.3
    """Share of shapes from the category-free composition family; the rest spread over categories."""
    categories: Sequence[str] = field(default_factory=lambda: tuple(CATEGORIES))
    """Categories to draw from (the composition family comes on top, by ``composition_share``)."""
    refresh_every: int = 50
    """Replace ``refresh_count`` shapes every this many steps (0 = never)."""
    refresh_count: int = 8
    """Shapes replaced at each refresh."""
    workers: int = 0
    """Processes that build the next shapes' specs (numpy, CPU) while the device trains; 0 builds
    them in line. Worth it where CPU cores are idle (a GPU machine), not on a small shared CPU."""
    meshes: str | None = None
    """A folder of third-party meshes baked for training (`backend.data.mesh_bank`,
    `scripts/bake_training_meshes.py`), drawn from by ``mesh_share``; None: procedural shapes only."""
    mesh_share: float = 0.0
    """Share of the shapes drawn from ``meshes`` (the rest as without them)."""


@dataclass
class BankedShape:
    name: str
    sdf: torch.Tensor
    materials: torch.Tensor
    palette: torch.Tensor
    surface: torch.Tensor
    surface_material: torch.Tensor


class ShapeBank:
    """The pool of baked shapes (see the module doc); ``tensors()`` gives them stacked for sampling."""

    def __init__(self, config: BankConfig, seed: int, device="cpu", log: Callable[[str], None] | None = None) -> None:
        if config.size < 1 or config.grid < 16:
            raise ValueError(f"shape bank needs size >= 1 and grid >= 16, got {config.size}, {config.grid}")
        self.config, self.seed, self.device = config, int(seed), torch.device(device)
        self.log = log or (lambda _msg: None)
        self.slots: list[BankedShape | None] = [None] * config.size
        self.slot_number = [-1] * config.size
        self._stacked: dict[str, torch.Tensor] | None = None
        self._pool = None
        self._specs: dict = {}
        self.meshes = None
        if config.meshes and config.mesh_share > 0:
            from backend.data.mesh_bank import MeshBank

            self.meshes = MeshBank(config.meshes)

    # ------------------------------------------------------------------ which shape is where
    def numbers_at(self, step: int) -> list[int]:
        """Shape number in each slot at ``step`` (before that step's batch is drawn)."""
        cfg = self.config
        numbers = list(range(cfg.size))
        refreshes = step // cfg.refresh_every if cfg.refresh_every else 0
        if refreshes:
            total = refreshes * cfg.refresh_count
            # replacement i (0-based) puts shape size + i into slot i % size; only the last
            # assignment of each slot matters
            first = max(0, total - cfg.size)
            for i in range(first, total):
                numbers[i % cfg.size] = cfg.size + i
        return numbers

    def sync(self, step: int) -> int:
        """Build whatever shapes the pool should hold at ``step``; returns how many were built.
        With ``workers``, the specs of the shapes the next refresh needs start building now."""
        wanted = self.numbers_at(step)
        changed = [slot for slot, number in enumerate(wanted) if self.slot_number[slot] != number]
        self._prefetch([wanted[slot] for slot in changed])
        for slot in changed:
            self.slots[slot] = self._build(wanted[slot])
            self.slot_number[slot] = wanted[slot]
            if self._stacked is not None:
                for key, value in _fields(self.slots[slot]).items():
                    self._stacked[key][slot] = value
        if self.config.refresh_every:
            ahead = (step // self.config.refresh_every + 1) * self.config.refresh_every
            self._prefetch([n for n in self.numbers_at(ahead) if n not in wanted])
        return len(changed)

    def shape_identity(self, number: int, attempt: int = 0) -> tuple[str, int]:
        """(category, seed) of shape ``number`` (a later ``attempt`` when an earlier one failed)."""
        rng = np.random.default_rng([self.seed, number, attempt])
        # only a pool with meshes draws for them, so a pool without draws what it always drew
        if self.meshes is not None and rng.random() < self.config.mesh_share:
            return MESH, int(rng.integers(len(self.meshes)))
        cats = list(self.config.categories)
        if not cats or rng.random() < self.config.composition_share:
            category = COMPOSITION
        else:
            category = cats[int(rng.integers(len(cats)))]
        return category, TRAIN_SEED_OFFSET + int(rng.integers(1 << 40))

    def _prefetch(self, numbers: list[int]) -> None:
        if self.config.workers <= 0:
            return
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: the workers need numpy only, and must not inherit a CUDA context
            self._pool = ProcessPoolExecutor(self.config.workers, mp_context=multiprocessing.get_context("spawn"))
        for number in numbers:
            if number in self._specs:
                continue
            identity = self.shape_identity(number)
            if identity[0] != MESH:  # a baked mesh has no spec to build
                self._specs[number] = self._pool.submit(build_spec, *identity)

    def _build(self, number: int) -> BankedShape:
        pending = self._specs.pop(number, None)
        for attempt in range(8):
            category, seed = self.shape_identity(number, attempt)
            if category == MESH:
                return self._mesh_shape(seed, number)
            try:
                spec = pending.result() if attempt == 0 and pending is not None else build_spec(category, seed)
                shape = TorchShape(category, seed, spec, device=self.device, measure_res=self.config.measure_res)
                return bake_shape(shape, self.config.grid, self.config.surface_points, seed)
            except ShapeError as exc:
                self.log(f"shape {number}: {exc}; drawing another")
        raise ShapeError(f"shape {number}: eight draws in a row failed to build")

    def _mesh_shape(self, index: int, number: int) -> BankedShape:
        """Baked mesh ``index`` at the pool's grid and sample count, mirrored left to right for
        every other draw (a mirror image is as real an object as the original)."""
        baked = self.meshes.load(index)
        cfg = self.config
        sdf = torch.from_numpy(baked.sdf)
        materials = torch.from_numpy(baked.materials.astype(np.int64))
        surface = torch.from_numpy(baked.surface.astype(np.float32))
        if sdf.shape[0] != cfg.grid:
            sdf = torch.nn.functional.interpolate(sdf[None, None], size=(cfg.grid,) * 3, mode="trilinear",
                                                  align_corners=True)[0, 0]
            materials = torch.nn.functional.interpolate(materials[None, None].float(), size=(cfg.grid,) * 3,
                                                        mode="nearest")[0, 0].long()
        rng = np.random.default_rng([self.seed, number, 1 << 20])
        pick = torch.from_numpy(rng.choice(len(surface), size=cfg.surface_points,
                                           replace=len(surface) < cfg.surface_points))
        surface, surface_material = surface[pick], torch.from_numpy(baked.surface_material.astype(np.int64))[pick]
        if number % 2:
            sdf, materials = sdf.flip(0), materials.flip(0)
            surface = surface * torch.tensor([-1.0, 1.0, 1.0])
        palette = torch.zeros(MAX_MATERIALS, 5)
        rows = torch.from_numpy(baked.palette[:MAX_MATERIALS])
        palette[: len(rows)] = rows
        device = self.device
        return BankedShape(f"{MESH}/{self.meshes.name(index)}", sdf.to(device, torch.float16),
                           materials.clamp_max(MAX_MATERIALS - 1).to(device, torch.uint8), palette.to(device),
                           surface.to(device), surface_material.clamp_max(MAX_MATERIALS - 1).to(device))

    # ------------------------------------------------------------------ stacked tensors
    def tensors(self) -> dict[str, torch.Tensor]:
        """All slots stacked: sdf [N, 1, G, G, G] float16, materials [N, 1, G, G, G] uint8,
        palette [N, MAX_MATERIALS, 5], surface [N, K, 3], surface_material [N, K] long."""
        if any(s is None for s in self.slots):
            raise RuntimeError("ShapeBank.sync must run before tensors()")
        if self._stacked is None:
            rows = [_fields(s) for s in self.slots]
            self._stacked = {key: torch.stack([r[key] for r in rows]) for key in rows[0]}
        return self._stacked

    def select(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stacked rows of ``indices`` [B] as the renderer and samplers take them (`gather_shapes`)."""
        return gather_shapes(self.tensors(), indices)

    def names(self, indices: Sequence[int]) -> list[str]:
        return [self.slots[i].name for i in indices]

    def __len__(self) -> int:
        return self.config.size


def build_spec(category: str, seed: int):
    """The generator's spec (numpy node tree) of one shape: the CPU part of building it."""
    return builder(category)(category_rng(category, seed))


def gather_shapes(tensors: dict[str, torch.Tensor], indices: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows ``indices`` of stacked shape tensors, one per view, read once per batch: grids in
    float32 as `grid_sample` reads them (the pool stores them small)."""
    rows = {key: value[indices] for key, value in tensors.items()}
    for key in ("sdf", "materials"):
        rows[key] = rows[key].float()
    return rows


def _fields(shape: BankedShape) -> dict[str, torch.Tensor]:
    """One shape's rows of the stacked tensors (`ShapeBank.tensors`)."""
    return {"sdf": shape.sdf[None], "materials": shape.materials[None], "palette": shape.palette,
            "surface": shape.surface, "surface_material": shape.surface_material}


def bake_shape(shape: TorchShape, grid: int, surface_points: int, seed: int) -> BankedShape:
    """One shape's grids, palette and surface samples (see `ShapeBank`)."""
    sdf, materials = shape.bake(grid)
    if zero_crossing_box(sdf, -GRID_LIMIT, GRID_LIMIT) is None:
        raise ShapeError(f"{shape.category}/{shape.seed}: no surface on the {grid}^3 training grid")
    palette = torch.zeros(MAX_MATERIALS, 5, device=sdf.device)
    rows = shape.palette()[:MAX_MATERIALS]
    palette[: len(rows)] = rows
    surface = surface_samples(sdf, surface_points, seed)
    _, surface_material = shape.sdf_and_material(surface.to(shape.dtype))
    return BankedShape(f"{shape.category}/{shape.seed}", sdf.to(torch.float16),
                       materials.clamp_max(MAX_MATERIALS - 1), palette, surface.float(),
                       surface_material.long().clamp_max(MAX_MATERIALS - 1))


def surface_samples(sdf: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` points on the zero level set of a grid over [-0.55, 0.55]^3: centres of voxels
    next to it, jittered, then moved onto it by two Newton steps along the grid gradient."""
    lim, h = GRID_LIMIT, voxel(sdf.shape[0])
    gen = torch.Generator(device="cpu").manual_seed(seed % (1 << 63))
    near = (sdf.abs() < 1.5 * h).nonzero()
    if len(near) == 0:
        raise ShapeError("no voxel touches the surface")
    pick = near[torch.randint(len(near), (count,), generator=gen).to(near.device)]
    jitter = (torch.rand(count, 3, generator=gen) - 0.5).to(sdf.device) * h
    points = -lim + h * pick.to(torch.float32) + jitter
    volume = sdf.float()[None, None]
    for _ in range(2):
        d, g = grid_sdf_and_gradient(volume, points[None])
        points = points - (d[0, :, None] * torch.nn.functional.normalize(g[0], dim=-1))
    return points.clamp(-lim, lim)


def grid_lookup(volume: torch.Tensor, points: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Values of grids [B, C, G, G, G] over [-0.55, 0.55]^3 at points [B, N, 3] -> [B, C, N]
    (trilinear; points outside read the border value)."""
    # grid_sample's last coordinate indexes the first spatial axis (D): reverse xyz -> zyx
    coords = (points / GRID_LIMIT).flip(-1)[:, :, None, None, :].to(volume.dtype)
    out = torch.nn.functional.grid_sample(volume, coords, mode=mode, padding_mode="border", align_corners=True)
    return out[:, :, :, 0, 0]


def grid_sdf_and_gradient(volume: torch.Tensor, points: torch.Tensor, eps: float | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """SDF [B, N] and its central-difference gradient [B, N, 3] from grids [B, 1, G, G, G]."""
    eps = eps if eps is not None else voxel(volume.shape[-1])
    offsets = torch.eye(3, device=points.device, dtype=points.dtype) * eps
    probe = torch.cat([points] + [points + o for o in offsets] + [points - o for o in offsets], dim=1)
    values = grid_lookup(volume, probe)[:, 0].float()
    n = points.shape[1]
    d = values[:, :n]
    plus = values[:, n: 4 * n].reshape(-1, 3, n)
    minus = values[:, 4 * n:].reshape(-1, 3, n)
    return d, ((plus - minus) / (2 * eps)).transpose(1, 2)


def outside_box_distance(points: torch.Tensor) -> torch.Tensor:
    """Distance from points [..., 3] to the grid box [-0.55, 0.55]^3 (0 inside): grid values
    are only valid inside, so samplers add this to what the border returns."""
    return torch.linalg.vector_norm((points.abs() - GRID_LIMIT).clamp_min(0.0), dim=-1)


def voxel(grid: int) -> float:
    """Spacing of a baked grid of side ``grid``."""
    return 2 * GRID_LIMIT / (grid - 1)

