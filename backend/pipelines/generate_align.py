"""ISS stage 2: per-prompt test-time alignment of the CLIP2Shape mapper.

A copy of the mapper turns the prompt's CLIP text feature into ``[shape code | colour code]``;
the shape model's fields are rendered with VolSDF from random views, and only the mapper copy is
fine-tuned with ``w_clip·(1 − cos(CLIP(render), CLIP(text))) + w_bg·background L1`` (ISS: 4 and
3), optionally plus ``w_neg·cos(CLIP(render), CLIP(negative prompt))``. CLIP, the shape decoder
and the renderer stay frozen.

The background term: pixels well outside the silhouette of the *initial* shape (the mapper's
output before fine-tuning, rendered without gradient from the same views; silhouette = opacity
≥ 0.5, dilated by ``background_margin`` of the image side) must show exactly the background
colour. It removes floaters and stops CLIP from painting the backdrop, while the shape keeps room
to grow by the margin. (A mask from the current render itself was tried first: vanishing then
zeroes the term, and with a weak CLIP signal the shape collapsed to nothing within a few steps.)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch

from backend.models.losses_clip import (
    ClipAugmentConfig,
    ClipGuidanceWeights,
    augment_for_clip,
    background_l1_loss,
    clip_consistency_loss,
)
from backend.models.mapper import mix_clip_noise

if TYPE_CHECKING:
    from backend.models.clip import ClipModel
    from backend.models.encoders import ShapeCodes
    from backend.models.mapper import Clip2ShapeMapper
    from backend.models.shape_model import ShapeModel
    from backend.render.cameras import Cameras


@dataclass
class ViewSampling:
    """Random orbit views around the object (the object frame: Z up, front −Y)."""

    elevation_deg: tuple[float, float] = (5.0, 35.0)
    """Range of camera elevation above the ground plane, degrees."""
    distance: float = 2.0
    """Camera distance from the origin."""
    distance_jitter: float = 0.0
    """Relative random change of the distance per view (0.1 = ±10 %)."""
    fov_deg: float = 40.0
    """Full field of view; 40° at distance 2 frames a unit-size object with a margin."""


@dataclass
class AlignConfig:
    """Stage-2 settings (the presets live in ``backend.pipelines.generate``)."""

    steps: int = 20
    """Optimisation steps of the mapper copy."""
    views: int = 4
    """Random views rendered per step."""
    resolution: int = 32
    """Side of each rendered view in pixels."""
    samples: int = 32
    """VolSDF samples per ray."""
    beta: float = 0.02
    """VolSDF Laplace scale: sharp enough that silhouettes are crisp at low resolution."""
    lr: float = 2e-4
    """Adam learning rate of the mapper copy."""
    weights: ClipGuidanceWeights = field(default_factory=ClipGuidanceWeights)
    """ISS's 4·CLIP + 3·background."""
    negative_weight: float = 1.0
    """Weight of ``cos(render, negative prompt)`` when a negative prompt is given."""
    augment: ClipAugmentConfig | None = field(default_factory=ClipAugmentConfig)
    """Random crop/perspective before CLIP; None turns it off."""
    sampling: ViewSampling = field(default_factory=ViewSampling)
    """Where the random views come from."""
    background_margin: float = 0.1
    """Dilation of the initial silhouette before the background term applies, as a fraction of the
    image side."""
    candidate_noise: float = 0.15
    """Noise weight (``mix_clip_noise``) on the text feature for candidates after the first, for
    diversity as in ISS; the first candidate uses the clean text feature."""
    chunk_rays: int = 8192
    """Rays rendered at once (bounds memory on big presets)."""
    backward_chunk_rays: int | None = None
    """Back-propagate through the renderer this many rays at a time: the views are rendered once
    without a graph, the loss's gradient with respect to their pixels is taken, and the rays are
    rendered again chunk by chunk to carry it to the codes (`backprop_render`; the same gradient).
    Memory then grows with the chunk, not with views x pixels x samples: the paper's 10 views of
    90² at 64 samples kept every sample's activations, 72.7 GB of CUDA memory. None: one plain
    backward pass (less work; the small CPU presets)."""


@dataclass
class AlignStep:
    """Loss terms of one step (floats)."""

    total: float
    clip: float
    background: float
    negative: float | None


def orbit_views(
    count: int, resolution: int, sampling: ViewSampling, generator: torch.Generator, device: torch.device | str = "cpu"
) -> Cameras:
    """``count`` cameras with uniform random azimuth and elevation in the configured range."""
    from backend.render.cameras import focal_from_fov, orbit_cameras

    azimuth = torch.rand(count, generator=generator) * 2.0 * math.pi
    lo, hi = (math.radians(a) for a in sampling.elevation_deg)
    elevation = lo + (hi - lo) * torch.rand(count, generator=generator)
    jitter = 1.0 + sampling.distance_jitter * (2.0 * torch.rand(count, generator=generator) - 1.0)
    return orbit_cameras(
        azimuth.to(device),
        elevation.to(device),
        (sampling.distance * jitter).to(device),
        focal=focal_from_fov(sampling.fov_deg, resolution),
        height=resolution,
        width=resolution,
    )


def fixed_views(count: int, resolution: int, sampling: ViewSampling, device: torch.device | str = "cpu") -> Cameras:
    """``count`` evenly spaced azimuths at the middle elevation (deterministic scoring views)."""
    from backend.render.cameras import focal_from_fov, orbit_cameras

    azimuth = torch.arange(count, dtype=torch.float32) * (2.0 * math.pi / count) + math.pi / 8
    elevation = torch.full((count,), math.radians(sum(sampling.elevation_deg) / 2.0))
    return orbit_cameras(
        azimuth.to(device), elevation.to(device), sampling.distance,
        focal=focal_from_fov(sampling.fov_deg, resolution), height=resolution, width=resolution,
    )


def render_codes(
    shape_model: ShapeModel, codes: ShapeCodes, cameras: Cameras, config: AlignConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one code pair from every camera over white → ``rgb [V, 3, H, W]``, ``alpha [V, 1, H, W]``.

    ``codes`` hold one entry, seen by the V views. Differentiable in the codes.
    """
    return _render(shape_model, codes, cameras, config)


def _render(shape_model, codes, cameras, config: AlignConfig):
    from backend.render.volsdf import VolSDFConfig, volsdf_render

    origins, directions = cameras.generate_rays()
    v, h, w, _ = origins.shape
    # every view's rays in one batch for the one code: ``chunk_rays`` then bounds the points
    # evaluated at once whatever the number of views (per view it let 10 views of 90² at 64
    # samples put 5.2 million points, gigabytes of activations, through the networks at once)
    sdf_fn, color_fn = shape_model.fields(codes)
    out = volsdf_render(
        origins.reshape(1, -1, 3),
        directions.reshape(1, -1, 3),
        sdf_fn,
        color_fn,
        torch.tensor(config.beta, device=origins.device),
        VolSDFConfig(n_samples=config.samples, compute_normals=False, chunk_rays=config.chunk_rays),
        background="white",
    )
    rgb = out.rgb.reshape(v, h, w, 3).permute(0, 3, 1, 2)
    alpha = out.mask.reshape(v, 1, h, w)
    return rgb, alpha


def backprop_render(shape_model: ShapeModel, codes: ShapeCodes, cameras: Cameras, config: AlignConfig,
                    image_grad: torch.Tensor) -> None:
    """Accumulate into ``codes``' ``.grad`` the gradient that ``image_grad [V, 3, H, W]`` (of some
    loss with respect to `render_codes`' image) has with respect to them, rendering
    ``config.backward_chunk_rays`` rays at a time: only one chunk's graph exists at once. The
    renderer is deterministic (samples at bin centres), so the chunks reproduce the image."""
    from backend.render.volsdf import VolSDFConfig, volsdf_render

    origins, directions = cameras.generate_rays()
    origins, directions = origins.reshape(1, -1, 3), directions.reshape(1, -1, 3)
    grad = image_grad.permute(0, 2, 3, 1).reshape(1, -1, 3)
    sdf_fn, color_fn = shape_model.fields(codes)
    chunk = config.backward_chunk_rays
    render_config = VolSDFConfig(n_samples=config.samples, compute_normals=False, chunk_rays=chunk)
    beta = torch.tensor(config.beta, device=origins.device)
    for start in range(0, origins.shape[1], chunk):
        part = slice(start, start + chunk)
        out = volsdf_render(origins[:, part], directions[:, part], sdf_fn, color_fn, beta, render_config,
                            background="white")
        out.rgb.backward(grad[:, part])


class TextShapeAligner:
    """Fine-tunes a private copy of the mapper for one prompt (and one candidate seed).

    ``step()`` runs one optimisation step; ``codes()`` gives the current codes; ``clip_score``
    measures the result on fixed views. Only the mapper copy's parameters ever get gradients.
    """

    def __init__(
        self,
        shape_model: ShapeModel,
        mapper: Clip2ShapeMapper,
        clip: ClipModel,
        text_features: torch.Tensor,
        config: AlignConfig,
        *,
        seed: int,
        negative_features: torch.Tensor | None = None,
        input_noise: float = 0.0,
    ):
        """``text_features`` / ``negative_features``: ``[1, D]`` unit CLIP text features. The shape
        model is frozen here (``requires_grad_(False)``): stage 2 never trains it."""
        self.shape_model = shape_model.requires_grad_(False)
        self.clip = clip
        self.config = config
        self.device = text_features.device
        self.generator = torch.Generator().manual_seed(seed)
        self.mapper = copy.deepcopy(mapper).to(self.device).train()
        self.mapper.requires_grad_(True)
        self.text = text_features
        self.negative = negative_features
        self.mapper_input = (
            mix_clip_noise(text_features, input_noise, self.generator) if input_noise > 0 else text_features
        )
        self.optimizer = torch.optim.Adam(self.mapper.parameters(), lr=config.lr)
        with torch.no_grad():
            self.initial_codes = self.codes()
        self.steps_done = 0

    def codes(self) -> ShapeCodes:
        """Current ``ShapeCodes`` (one entry, differentiable in the mapper copy)."""
        from backend.models.encoders import ShapeCodes

        out = self.mapper(self.mapper_input)
        shape_dim = self.shape_model.config.shape_dim
        return ShapeCodes(shape=out[:, :shape_dim], color=out[:, shape_dim:], viewpoint=None)

    def loss(self, cameras: Cameras, augment: bool = True) -> tuple[torch.Tensor, AlignStep]:
        """The stage-2 loss of the current codes seen from ``cameras``."""
        codes = self.codes()
        rgb, _ = _render(self.shape_model, codes, cameras, self.config)
        return self.image_loss(rgb, cameras, augment)

    def _deferred_backward(self, cameras: Cameras) -> AlignStep:
        """`loss` and its backward pass, a chunk of rays at a time through the renderer."""
        from backend.models.encoders import ShapeCodes

        codes = self.codes()
        leaf = ShapeCodes(shape=codes.shape.detach().requires_grad_(), color=codes.color.detach().requires_grad_(),
                          viewpoint=None)
        with torch.no_grad():
            rgb, _ = _render(self.shape_model, leaf, cameras, self.config)
        rgb.requires_grad_(True)
        total, terms = self.image_loss(rgb, cameras)
        total.backward()
        backprop_render(self.shape_model, leaf, cameras, self.config, rgb.grad)
        torch.autograd.backward([codes.shape, codes.color], [leaf.shape.grad, leaf.color.grad])
        return terms

    def image_loss(self, rgb: torch.Tensor, cameras: Cameras, augment: bool = True) -> tuple[torch.Tensor, AlignStep]:
        """The stage-2 loss of views ``rgb [V, 3, H, W]`` rendered from ``cameras``."""
        clip_input = rgb
        if augment and self.config.augment is not None:
            clip_input = augment_for_clip(rgb, self.config.augment, self.generator)
        features = self.clip.encode_image(clip_input)
        clip_term = clip_consistency_loss(features, self.text)
        white = torch.ones(3, device=rgb.device)
        background_mask = self.expected_background(cameras)
        background_term = background_l1_loss(rgb, background_mask, white)
        weights = self.config.weights
        total = weights.clip * clip_term + weights.background * background_term
        negative_term = None
        if self.negative is not None:
            negative_term = 1.0 - clip_consistency_loss(features, self.negative)
            total = total + self.config.negative_weight * negative_term
        step = AlignStep(
            total=float(total.detach()),
            clip=float(clip_term.detach()),
            background=float(background_term.detach()),
            negative=None if negative_term is None else float(negative_term.detach()),
        )
        return total, step

    @torch.no_grad()
    def expected_background(self, cameras: Cameras) -> torch.Tensor:
        """``[V, 1, H, W]`` 1 where the background is expected (outside the dilated initial silhouette)."""
        # A mask needs less than a training render: half the side and half the samples, then
        # nearest upsampling (the margin is far wider than the error that makes).
        coarse = _half_size(cameras)
        config = replace(self.config, samples=max(8, self.config.samples // 2))
        _, alpha = _render(self.shape_model, self.initial_codes, coarse, config)
        radius = max(0, round(self.config.background_margin * coarse.width))
        inside = torch.nn.functional.max_pool2d((alpha >= 0.5).float(), 2 * radius + 1, stride=1, padding=radius)
        inside = torch.nn.functional.interpolate(inside, size=(cameras.height, cameras.width), mode="nearest")
        return 1.0 - inside

    def step(self, cameras: Cameras | None = None) -> AlignStep:
        """One Adam step on random views (or on ``cameras`` when given)."""
        if cameras is None:
            cameras = orbit_views(
                self.config.views, self.config.resolution, self.config.sampling, self.generator, self.device
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.backward_chunk_rays is None:
            total, terms = self.loss(cameras)
            total.backward()
        else:
            terms = self._deferred_backward(cameras)
        self.optimizer.step()
        self.steps_done += 1
        return terms

    @torch.no_grad()
    def clip_score(self, cameras: Cameras) -> float:
        """Mean ``cos(CLIP(render), CLIP(text))`` over ``cameras`` (no augmentation)."""
        codes = self.codes()
        rgb, _ = _render(self.shape_model, codes, cameras, self.config)
        return float(1.0 - clip_consistency_loss(self.clip.encode_image(rgb), self.text))


def _half_size(cameras: Cameras) -> Cameras:
    """The same cameras with half the pixels per side (intrinsics scaled to match)."""
    from backend.render.cameras import Cameras as CamerasType

    height, width = max(4, cameras.height // 2), max(4, cameras.width // 2)
    scale = torch.tensor([width / cameras.width, height / cameras.height], device=cameras.focal.device)
    return CamerasType(cameras.focal * scale, cameras.principal * scale, cameras.rotation, cameras.translation, height, width)

