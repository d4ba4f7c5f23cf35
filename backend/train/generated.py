"""Training batches made on the fly from the procedural generator: no dataset on disk.

`GeneratedBatches` draws a step's shapes from a `ShapeBank`, renders their input photos and
supervision views (`backend.train.views`) and samples their 3D targets from the baked grids, all on
the training device, and returns the same `Batch` the disk datasets give — so one training loop
(`backend.train.trainer.train`) and one set of losses serve both. Everything a step draws depends
on ``(seed, step)`` only: a resumed run sees exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from backend.train.data import Batch
from backend.train.shape_bank import GRID_LIMIT, BankConfig, ShapeBank, grid_lookup, outside_box_distance
from backend.train.views import ViewConfig, photograph, render_views


@dataclass
class GeneratedConfig:
    """Shapes and views of on-the-fly training."""

    bank: BankConfig = field(default_factory=BankConfig)
    views: ViewConfig = field(default_factory=ViewConfig)
    near_surface_sigma: tuple[float, float] = (0.005, 0.03)
    """Std of the offsets of the near-surface SDF samples (half the samples each)."""

    @classmethod
    def preset(cls, name: str) -> GeneratedConfig:
        """Sized for a training preset: ``tiny`` (tests: 8 coarse shapes), ``cpu`` (128 shapes on
        64^3 grids, 80 px windows for the 64 px encoder), ``gpu`` (512 shapes on 128^3 grids,
        32 replaced every 20 steps, their specs built by CPU worker processes meanwhile; 160 px
        windows for the 128 px encoder)."""
        if name == "tiny":
            return cls(bank=BankConfig(size=8, grid=32, measure_res=32, surface_points=512, refresh_every=4,
                                       refresh_count=2),
                       views=ViewConfig(render_size=40, supervise_size=24, trace_steps=32, shadow_steps=4))
        if name == "cpu":
            return cls()
        if name == "gpu":
            return cls(bank=BankConfig(size=512, grid=128, measure_res=128, surface_points=8192, refresh_every=20,
                                       refresh_count=32, workers=min(12, max(1, (os.cpu_count() or 2) - 2))),
                       views=ViewConfig(render_size=160, supervise_size=64, trace_steps=64, shadow_steps=16))
        raise ValueError(f"unknown generated-data preset {name!r}; choose 'tiny', 'cpu' or 'gpu'")

    @classmethod
    def from_dict(cls, data: dict) -> GeneratedConfig:
        """The inverse of `dataclasses.asdict` (JSON lists back to tuples)."""
        def build(kind, values: dict):
            return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

        return cls(bank=build(BankConfig, data["bank"]), views=build(ViewConfig, data["views"]),
                   near_surface_sigma=tuple(data["near_surface_sigma"]))

    @classmethod
    def for_training(cls, model_preset: str, device: str, image_size: int) -> GeneratedConfig:
        """The pool of the device (``gpu`` on CUDA, else the model preset's) with windows of
        1.25x the encoder input."""
        name = "tiny" if model_preset == "tiny" else ("gpu" if str(device).startswith("cuda") else "cpu")
        config = cls.preset(name)
        size = max(config.views.render_size, round(1.25 * image_size)) if name == "tiny" else round(1.25 * image_size)
        return dataclasses.replace(config, views=dataclasses.replace(config.views, render_size=size))


def step_generator(seed: int, step: int, device) -> torch.Generator:
    """The random stream of one step (on ``device``, so per-pixel noise is drawn where it is used)."""
    gen = torch.Generator(device=device)
    gen.manual_seed((int(seed) * 1_000_003 + int(step)) % (1 << 62))
    return gen


class GeneratedBatches:
    """Batch source for `train`: ``refresh(step)`` keeps the shape pool current, ``batch(...)`` makes a step."""

    def __init__(self, config: GeneratedConfig, image_size: int, seed: int, device="cpu",
                 log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.image_size = image_size
        self.seed = int(seed)
        self.device = torch.device(device)
        self.bank = ShapeBank(config.bank, seed, self.device, log)
        self.tags = [f"generated:seed{seed}:grid{config.bank.grid}:pool{config.bank.size}"]

    def __len__(self) -> int:
        return len(self.bank)

    def refresh(self, step: int) -> int:
        """Bring the pool to what it holds at ``step``; returns the number of shapes built."""
        return self.bank.sync(step)

    def step_batch(self, train_config, step: int) -> Batch:
        """`batch` with the sizes of a `TrainConfig` (the trainer's interface)."""
        return self.batch(step, train_config.batch_size, rays_per_view=train_config.rays_per_view,
                          supervise_views=train_config.supervise_views, sdf_points=train_config.sdf_points)

    def batch(self, step: int, batch_size: int, *, rays_per_view: int, supervise_views: int, sdf_points: int,
              surface_points: int | None = None) -> Batch:
        """The batch of ``step``: one photo-like input per shape, rays from ``supervise_views`` clean
        views (the first is the input's camera), ``sdf_points`` 3D samples, coloured surface samples."""
        self.bank.sync(step)
        gen = step_generator(self.seed, step, self.device)
        idx = torch.randint(len(self.bank), (batch_size,), generator=gen, device=gen.device).to(self.device)
        shapes = self.bank.select(idx)
        views = render_views(shapes, self.config.views, gen)
        views = photograph(views, self.config.views, gen, self.image_size)
        supervised = [views] + [render_views(shapes, self.config.views, gen, size=self.config.views.supervise_size)
                                for _ in range(supervise_views - 1)]
        rays = [_sample_rays(v, rays_per_view, gen) for v in supervised]
        origins, directions, rgb, alpha, normals = (torch.cat([r[k] for r in rays], dim=1) for k in range(5))
        points, sdf = self._sdf_samples(shapes, sdf_points, gen)
        surface, colours = self._surface_samples(shapes, surface_points or sdf_points, gen)
        b = batch_size
        yes = torch.ones(b, dtype=torch.bool, device=self.device)
        return Batch(
            images=views.crops.contiguous(), viewpoint=views.viewpoint.float(), origins=origins,
            directions=directions, rgb=rgb, alpha=alpha, normals=normals, has_normals=yes,
            sdf_points=points, sdf=sdf, occupancy=(sdf < 0).float(), has_sdf=yes, has_points=yes,
            surface_points=surface, surface_colors=colours, has_colors=yes,
        )

    def _sdf_samples(self, shapes, count: int, gen) -> tuple[torch.Tensor, torch.Tensor]:
        """Half near the surface (two noise scales), half uniform in a box a little larger than the grid."""
        near = count // 2
        base, _ = _surface_pick(shapes, near, gen)
        b = len(base)
        lo, hi = self.config.near_surface_sigma
        sigma = torch.where(torch.arange(near, device=self.device) % 2 == 0, lo, hi)
        offsets = torch.randn(b, near, 3, generator=gen, device=gen.device).to(self.device) * sigma[None, :, None]
        lim = GRID_LIMIT + 0.05
        uniform = (torch.rand(b, count - near, 3, generator=gen, device=gen.device).to(self.device) * 2 - 1) * lim
        points = torch.cat([base + offsets, uniform], dim=1)
        values = grid_lookup(shapes["sdf"], points)[:, 0] + outside_box_distance(points)
        return points, values

    def _surface_samples(self, shapes, count: int, gen) -> tuple[torch.Tensor, torch.Tensor]:
        points, pick = _surface_pick(shapes, count, gen)
        material = torch.gather(shapes["surface_material"], 1, pick)
        colours = torch.gather(shapes["palette"][..., :3], 1, material[..., None].expand(-1, -1, 3))
        return points, colours


def _surface_pick(shapes, count: int, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` of each shape's stored surface samples, drawn with replacement: points [B, count, 3]
    and their indices [B, count]."""
    surface = shapes["surface"]
    pick = torch.randint(surface.shape[1], (len(surface), count), generator=gen, device=gen.device).to(surface.device)
    return torch.gather(surface, 1, pick[..., None].expand(-1, -1, 3)), pick


def _sample_rays(views, count: int, gen) -> tuple[torch.Tensor, ...]:
    """``count`` rays per view, half through the object, half anywhere: origins, directions,
    colour over white, coverage, normals."""
    b = views.alpha.shape[0]
    alpha = views.alpha.reshape(b, -1)
    on_object = count // 2
    weights = (alpha > 0.5).float() + 1e-6
    fg = torch.multinomial(weights.to(gen.device), on_object, replacement=True, generator=gen).to(alpha.device)
    anywhere = torch.randint(alpha.shape[1], (b, count - on_object), generator=gen, device=gen.device).to(alpha.device)
    flat = torch.cat([fg, anywhere], dim=1)
    width = views.alpha.shape[2]
    pixels = torch.stack([flat % width, flat // width], dim=-1).float() + 0.5
    origins, directions = views.cameras.generate_rays(pixels)
    take = lambda x, c: torch.gather(x.reshape(b, -1, c), 1, flat[..., None].expand(-1, -1, c))  # noqa: E731
    return (origins.float(), directions.float(), take(views.clean, 3), take(views.alpha[..., None], 1)[..., 0],
            take(views.normals, 3))
