"""Training configuration of the shape model: dataclasses with presets "tiny", "cpu" and "gpu".

The loss weights follow ShapeClipper (RGB, soft-IoU mask, normals with the worst pixels dropped,
eikonal, symmetry) plus 3D supervision from the dataset's SDF samples and a supervised
viewpoint head. See docs/training.md for what each term does and how the presets were chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LossWeights:
    """Weights of the training losses (0 switches a term off and skips its cost)."""

    rgb: float = 1.0
    """MSE between rendered and true colour (over a white background) on the sampled rays."""
    mask: float = 1.0
    """Soft-IoU loss between the rendered opacity and the true alpha on the sampled rays."""
    normals: float = 0.2
    """1 - cos between rendered and true world normals on foreground rays, worst share dropped."""
    normals_drop: float = 0.2
    """Share of foreground rays with the largest normal error left out (silhouette/thin-part noise)."""
    eikonal: float = 0.1
    """(|grad sdf| - 1)^2 on the render samples and the 3D sample points."""
    sdf: float = 3.0
    """Clamped L1 between predicted and true SDF at the dataset's sample points."""
    sdf_clamp: float = 0.1
    """Clamp distance of the SDF loss (errors far from the surface matter less)."""
    occupancy: float = 1.0
    """Binary cross-entropy on occupancy for data without SDF values (DVR/ShapeNet)."""
    surface_color: float = 0.5
    """MSE of the colour field at surface samples against their base colours (where available)."""
    symmetry: float = 0.1
    """|sdf(x) - sdf(mirror x)| when the SDF network is not mirror-symmetric by construction."""
    viewpoint: float = 0.5
    """MSE between predicted and dataset (sin, cos) of azimuth, elevation and roll."""


@dataclass
class TrainConfig:
    """Everything one training run needs besides the data paths. ``preset`` gives the tuned sets."""

    model_preset: str = "cpu"
    """Model to train: "cpu" or "gpu" (`ShapeModelConfig.preset`), or "tiny" (`model_config`)."""
    steps: int = 4_000
    """Optimiser steps to run (training stops there; a resumed run continues up to it)."""
    batch_size: int = 16
    """Shapes per step (one input view each)."""
    lr: float = 5e-4
    """Adam learning rate (constant after warm-up, so a run can be extended by resuming)."""
    warmup_steps: int = 200
    """Linear learning-rate warm-up."""
    lr_schedule: str = "cosine"
    """"constant" after warm-up (a run can be extended by resuming with more steps), or "cosine"
    decay to ``lr * lr_final`` at ``steps`` (better final weights for a run of known length;
    extending it means a new schedule, e.g. ``--lr`` lower and ``--schedule constant``)."""
    lr_final: float = 0.05
    """Final learning rate of the cosine schedule, as a share of ``lr``."""
    augment: bool = True
    """Jitter the encoder inputs (shift, contrast: `backend.train.data.augment_crop`)."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    sdf_points: int = 768
    """3D sample points per shape per step (half near the surface, half uniform in the box)."""
    cached_sdf_points: int = 16_384
    """Sample points kept in memory per shape (drawn once from sdf.npz)."""
    cached_surface_points: int = 4096
    """Surface points (with colours) kept in memory per shape."""
    rays_per_view: int = 64
    """Rays rendered per supervising view per step (half on the object, half anywhere)."""
    supervise_views: int = 2
    """Views rendered per shape per step: the input view, then other views of the same shape."""
    n_samples: int = 32
    """VolSDF samples per ray."""
    beta_init: float = 0.05
    """Initial VolSDF Laplace scale (learned)."""
    render_every: int = 16
    """Render losses every this many steps (3D losses every step); larger saves CPU time."""
    losses: LossWeights = field(default_factory=LossWeights)
    """Loss weights."""
    eval_every: int = 1000
    """Evaluate on the held-in test split every this many steps (0 = only at the end)."""
    eval_shapes: int = 24
    """Test shapes evaluated (spread over categories), each from one fixed view."""
    eval_resolution: int = 64
    """Marching-cubes grid of the evaluation meshes."""
    eval_points: int = 10_000
    """Surface points per mesh for Chamfer / F-score in evaluation."""
    checkpoint_every: int = 250
    """Save a resumable checkpoint every this many steps."""
    keep_checkpoints: int = 3
    """Step checkpoints kept on disk (older ones are deleted; "best" and "latest" stay)."""
    refresh_every: int = 100
    """Re-read the split files every this many steps and load shapes that appeared (growing data)."""
    num_threads: int = 0
    """torch intra-op threads; 0 = all CPU cores (at most 8). On a CPU shared with other jobs, 1
    is faster than 2 (measured: 2 threads took 2.3x the wall time of 1 at load 8 on 2 cores)."""
    seed: int = 0
    """Seed of weight init and of the per-step sampling (step s uses seed (seed, s): resumable)."""
    log_every: int = 10
    """Write a JSONL loss line every this many steps."""

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose 'constant' or 'cosine'")

    @classmethod
    def preset(cls, name: str) -> TrainConfig:
        """``tiny``: CI smoke test (a few steps, small batch, no evaluation meshes of note).
        ``cpu``: the committed default model on a 2-core CPU. ``gpu``: the full model on CUDA."""
        if name == "cpu":
            return cls()
        if name == "tiny":
            return cls(
                model_preset="tiny", steps=6, batch_size=2, warmup_steps=0, lr=3e-3, lr_schedule="constant", sdf_points=256,
                cached_sdf_points=2048, cached_surface_points=512, rays_per_view=32, supervise_views=1,
                n_samples=16, render_every=2, eval_every=0, num_threads=1, eval_shapes=2, eval_resolution=24, eval_points=1000,
                checkpoint_every=3, refresh_every=1000, log_every=1,
            )
        if name == "gpu":
            return cls(
                model_preset="gpu", steps=200_000, batch_size=32, lr=2e-4, warmup_steps=1000,
                sdf_points=4096, cached_sdf_points=65_536, cached_surface_points=16_384,
                rays_per_view=1024, supervise_views=2, n_samples=64, eval_every=2000, eval_shapes=64,
                eval_resolution=96, checkpoint_every=1000, refresh_every=5000, log_every=50,
            )
        raise ValueError(f"unknown training preset {name!r}; choose 'tiny', 'cpu' or 'gpu'")


def model_config(preset: str):
    """The `ShapeModelConfig` a training preset trains. "tiny" is a few-thousand-parameter model
    for smoke tests (32 px input, 16-wide networks); "cpu"/"gpu" are `ShapeModelConfig.preset`."""
    from backend.models.encoders import EncoderConfig
    from backend.models.shape_model import ColorNetConfig, SDFNetConfig, ShapeModelConfig

    if preset == "tiny":
        return ShapeModelConfig(
            shape_dim=16, color_dim=8,
            encoder=EncoderConfig(small_channels=(8, 16), head_hidden=32, image_size=32),
            sdf=SDFNetConfig(hidden=32, layers=3, skip_layers=(1,), pe_freqs=3),
            color=ColorNetConfig(hidden=16, layers=2, pe_freqs=2),
        )
    return ShapeModelConfig.preset(preset)
