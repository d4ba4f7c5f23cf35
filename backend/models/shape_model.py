"""The single-view shape model (ShapeClipper-style): image -> codes -> SDF + colour fields.

Coordinates are the project's object frame (Z up, front facing -Y, metres), the object inside
roughly [-0.6, 0.6]^3. The SDF is negative inside. With ``symmetric`` the fields are evaluated on
``(|x|, y, z)``: every shape and texture is mirror-symmetric about the YZ plane, as most
man-made objects seen from the front are.

Use:

    model = ShapeModel(ShapeModelConfig.preset("cpu"))
    codes = model.encode(images)                  # images [B, 3, 64, 64] in [0, 1], white bg
    sdf_fn, color_fn = model.fields(codes)        # callables for backend.render renderers
    mesh = model.extract_mesh(codes.shape[0])     # marching cubes of one shape code
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from backend.models.encoders import EncoderConfig, ImageEncoder, ShapeCodes


class ShapeModelInputError(ValueError):
    """Points or codes passed to the shape model have inconsistent shapes."""


@dataclass
class SDFNetConfig:
    """SDF network options."""

    hidden: int = 64
    """Width of the hidden layers."""
    layers: int = 5
    """Number of hidden layers."""
    skip_layers: tuple[int, ...] = (3,)
    """Hidden layers (0-based) that receive the network input again, concatenated."""
    pe_freqs: int = 6
    """Positional-encoding octaves: sin/cos of 2^k * x for k < pe_freqs, plus x itself."""
    softplus_beta: float = 100.0
    """Sharpness of the softplus activations (large = close to ReLU, which the sphere init assumes)."""
    init_radius: float = 0.5
    """Radius of the sphere the network represents at initialisation."""
    symmetric: bool = True
    """Evaluate on (|x|, y, z): mirror symmetry about the YZ plane."""


@dataclass
class ColorNetConfig:
    """Colour network options."""

    hidden: int = 64
    """Width of the hidden layers."""
    layers: int = 3
    """Number of hidden layers (ReLU)."""
    pe_freqs: int = 6
    """Positional-encoding octaves of the colour network."""
    symmetric: bool = True
    """Evaluate on (|x|, y, z): mirror-symmetric texture."""


@dataclass
class ShapeModelConfig:
    """Shape model sizes. Defaults are the CPU preset; see `preset`."""

    shape_dim: int = 128
    """Shape code size."""
    color_dim: int = 64
    """Colour code size."""
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(pool="flatten"))
    """Image encoder."""
    sdf: SDFNetConfig = field(default_factory=lambda: SDFNetConfig(hidden=128, layers=6, symmetric=False))
    """SDF network. Not mirror-symmetric by construction: a mug's handle sits on one side; the
    training's symmetry loss and mirrored inputs keep the rest symmetric."""
    color: ColorNetConfig = field(default_factory=lambda: ColorNetConfig(symmetric=False))
    """Colour network."""

    @classmethod
    def preset(cls, name: str) -> ShapeModelConfig:
        """``"cpu"``: small CNN with a flattened 4x4 feature map, 6x128 SDF MLP, 128-d shape code,
        64 px input. The committed default weights are the previous cpu model (average-pooled
        encoder, symmetric 5x64 SDF, 64-d codes; their JSON states it); docs/training.md compares
        the two.
        ``"gpu"``: ResNet-34, 8x256 SDF MLP, 256-d codes, 128 px input."""
        if name == "cpu":
            return cls()
        if name == "gpu":
            return cls(
                shape_dim=256,
                color_dim=256,
                encoder=EncoderConfig(backbone="resnet34", head_hidden=512, image_size=128),
                sdf=SDFNetConfig(hidden=256, layers=8, skip_layers=(4,), symmetric=False),
                color=ColorNetConfig(hidden=256, layers=4, symmetric=False),
            )
        raise ValueError(f"unknown shape model preset {name!r}; choose 'cpu' or 'gpu'")


_CODE_INIT_STD = 1e-4
"""Std of the initial code weights of the SDF network (see `SDFNetwork.geometric_init`)."""


def positional_encoding(x: torch.Tensor, n_freqs: int, blur: float = 0.0) -> torch.Tensor:
    """[..., 3] -> [..., 3 + 6 * n_freqs]: x, then sin and cos of 2^k x for k < n_freqs.

    ``blur`` > 0 gives the encoding's mean over points jittered by a Gaussian of that standard
    deviation (each octave's sin and cos scaled by exp(-(2^k blur)^2 / 2), as mip-NeRF's
    integrated encoding): the high octaves fade, and with them the ribs a network trained on the
    plain encoding lays along its axes (docs/reconstruction.md, "Ripples")."""
    if n_freqs == 0:
        return x
    freqs = 2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)
    scaled = (x.unsqueeze(-2) * freqs.unsqueeze(-1)).flatten(-2)
    sin, cos = torch.sin(scaled), torch.cos(scaled)
    if blur > 0:
        fade = torch.exp(-0.5 * (freqs * blur) ** 2).repeat_interleave(x.shape[-1])
        sin, cos = sin * fade, cos * fade
    return torch.cat([x, sin, cos], dim=-1)


def _fibonacci_sphere(n: int) -> torch.Tensor:
    """[n, 3] unit vectors spread evenly over the sphere."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    polar = torch.acos(1.0 - 2.0 * i / n)
    turn = math.pi * (1.0 + math.sqrt(5.0)) * i
    points = torch.stack(
        [torch.cos(turn) * torch.sin(polar), torch.sin(turn) * torch.sin(polar), torch.cos(polar)], dim=-1
    )
    return points.float()


def _mirror(points: torch.Tensor) -> torch.Tensor:
    return torch.cat([points[..., :1].abs(), points[..., 1:]], dim=-1)


class SDFNetwork(nn.Module):
    """Code-conditioned SDF MLP with softplus activations, input skips and sphere initialisation.

    Input of the first layer (and of each skip layer, concatenated to the hidden state and
    scaled by 1/sqrt(2)) is ``[x, PE(x), code]``.

    Geometric initialisation. The classic recipe (Gaussian hidden weights, positive-mean output
    weights, bias -radius; Atzmon & Lipman 2020) only approximates a sphere for wide networks:
    at 5x64 we measured SDF errors of 0.15-0.3 on the radius-0.5 sphere. We use a variant with
    the same idea -- a positively homogeneous network of |x| -- built to be accurate at any
    width: first-layer xyz weights are unit vectors spread evenly over the sphere (Fibonacci
    lattice, randomly rotated), PE and code weights start at zero, hidden layers start as the
    identity on the hidden state, and the output layer is calibrated on the sphere so that the
    zero level sits at ``init_radius`` with unit radial slope. Code weights start tiny (std
    1e-4), so the initial shape hardly depends on the code. Result at 5x64: |SDF| < 0.01 on the
    sphere and SDF(origin) within 0.05 of -radius (softplus rounds the cone tip).
    """

    def __init__(self, config: SDFNetConfig, code_dim: int) -> None:
        super().__init__()
        if config.layers < 1 or config.hidden < 1:
            raise ValueError(f"SDF network needs layers >= 1 and hidden >= 1, got {config.layers}, {config.hidden}")
        bad = [i for i in config.skip_layers if not 0 < i < config.layers]
        if bad:
            raise ValueError(f"skip_layers must lie in 1..{config.layers - 1}, got {bad}")
        self.config = config
        self.in_dim = 3 + 6 * config.pe_freqs + code_dim
        self.skips = frozenset(config.skip_layers)
        self.hidden = nn.ModuleList()
        for i in range(config.layers):
            width_in = self.in_dim if i == 0 else config.hidden + (self.in_dim if i in self.skips else 0)
            self.hidden.append(nn.Linear(width_in, config.hidden))
        self.out = nn.Linear(config.hidden, 1)
        self.activation = nn.Softplus(beta=config.softplus_beta)
        self.encoding_blur = 0.0
        """`positional_encoding`'s ``blur`` when the field is evaluated: 0 in training; serving
        sets it when it loads the weights (`backend.pipelines.reconstruct.weights.load_model`)."""
        self.geometric_init()

    @torch.no_grad()
    def geometric_init(self) -> None:
        """Reset the weights to the sphere of radius ``config.init_radius`` (see the class doc)."""
        h = self.config.hidden
        code_dim = self.in_dim - 3 - 6 * self.config.pe_freqs
        first = self.hidden[0]
        nn.init.zeros_(first.weight)
        nn.init.zeros_(first.bias)
        rotation, _ = torch.linalg.qr(torch.randn(3, 3))
        first.weight[:, :3] = _fibonacci_sphere(h) @ rotation
        for i, layer in enumerate(self.hidden[1:], start=1):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
            # Skip layers see the hidden state scaled by 1/sqrt(2); undo it.
            gain = math.sqrt(2.0) if i in self.skips else 1.0
            layer.weight[:, :h] = gain * torch.eye(h)
        for i, layer in enumerate(self.hidden):
            if i == 0 or i in self.skips:
                # Tiny, not zero: with zero code weights a zero code (auto-decoding, test-time
                # fitting) would sit at a saddle where neither code nor weights get gradients.
                nn.init.normal_(layer.weight[:, layer.in_features - code_dim :], 0.0, _CODE_INIT_STD)
        nn.init.normal_(self.out.weight, 1.0 / h, 1e-4 / h)
        nn.init.zeros_(self.out.bias)
        self._calibrate_sphere()

    @torch.no_grad()
    def _calibrate_sphere(self) -> None:
        """Scale and shift the output layer so the field is ~``|x| - radius`` near the sphere."""
        radius = self.config.init_radius
        dirs = _fibonacci_sphere(256).unsqueeze(0)
        code = torch.zeros(1, self.in_dim - 3 - 6 * self.config.pe_freqs)  # code-free sphere
        inner = self.forward(dirs * radius, code).mean()
        outer = self.forward(dirs * (2.0 * radius), code).mean()
        slope = float(outer - inner) / radius
        if not slope > 0:
            raise RuntimeError(f"sphere initialisation failed: radial slope {slope}")
        self.out.weight /= slope
        self.out.bias -= self.forward(dirs * radius, code).mean()

    def forward(self, points: torch.Tensor, code: torch.Tensor, encoding_blur: float | None = None) -> torch.Tensor:
        """points [B, N, 3], code [B, D] -> sdf [B, N]; ``encoding_blur`` overrides
        `encoding_blur` for this call."""
        if self.config.symmetric:
            points = _mirror(points)
        blur = self.encoding_blur if encoding_blur is None else encoding_blur
        encoded = positional_encoding(points, self.config.pe_freqs, blur)
        code = code.unsqueeze(1)
        x = encoded
        for i, layer in enumerate(self.hidden):
            if i == 0:
                x = _linear_with_code(layer, encoded, code)
            elif i in self.skips:
                x = _linear_with_code(layer, torch.cat([x, encoded], dim=-1), code, 1.0 / math.sqrt(2.0))
            else:
                x = layer(x)
            x = self.activation(x)
        return self.out(x).squeeze(-1)


def _linear_with_code(
    layer: nn.Linear, per_point: torch.Tensor, code: torch.Tensor, input_scale: float = 1.0
) -> torch.Tensor:
    """``layer(input_scale * cat([per_point, code]))`` without copying the code to every point.

    per_point [B, N, P], code [B, 1, D]. The code's share of the layer is computed once per batch
    entry and broadcast, which saves the largest block of per-point work; the scale is applied
    to the (small) weight matrix rather than to the activations.
    """
    p = per_point.shape[-1]
    weight = layer.weight * input_scale if input_scale != 1.0 else layer.weight
    return nn.functional.linear(per_point, weight[:, :p], layer.bias) + nn.functional.linear(code, weight[:, p:])


class ColorNetwork(nn.Module):
    """Code-conditioned colour MLP: ``[x, PE(x), code]`` -> ReLU MLP -> sigmoid RGB."""

    def __init__(self, config: ColorNetConfig, code_dim: int) -> None:
        super().__init__()
        if config.layers < 1 or config.hidden < 1:
            raise ValueError(f"colour network needs layers >= 1 and hidden >= 1, got {config.layers}, {config.hidden}")
        self.config = config
        widths = [3 + 6 * config.pe_freqs + code_dim] + [config.hidden] * config.layers
        body: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            body += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*body, nn.Linear(config.hidden, 3))

    def forward(self, points: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """points [B, N, 3], code [B, D] -> rgb [B, N, 3] in (0, 1)."""
        if self.config.symmetric:
            points = _mirror(points)
        encoded = positional_encoding(points, self.config.pe_freqs)
        x = _linear_with_code(self.body[0], encoded, code.unsqueeze(1))
        return torch.sigmoid(self.body[1:](x))


class ShapeModel(nn.Module):
    """Image encoder + SDF network + colour network."""

    def __init__(self, config: ShapeModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ShapeModelConfig()
        self.encoder = ImageEncoder(self.config.encoder, self.config.shape_dim, self.config.color_dim)
        self.sdf_net = SDFNetwork(self.config.sdf, self.config.shape_dim)
        self.color_net = ColorNetwork(self.config.color, self.config.color_dim)

    def encode(self, images: torch.Tensor) -> ShapeCodes:
        """images [B, 3, H, W] in [0, 1] (see `backend.models.encoders`) -> `ShapeCodes`."""
        return self.encoder(images)

    forward = encode

    def sdf(self, points: torch.Tensor, shape_code: torch.Tensor, encoding_blur: float | None = None) -> torch.Tensor:
        """points [B, ..., 3], shape_code [B, shape_dim] -> signed distance [B, ...]
        (``encoding_blur``: see `SDFNetwork.forward`)."""
        flat = self._flatten(points, shape_code, self.config.shape_dim, "shape_code")
        return self.sdf_net(flat, shape_code, encoding_blur).reshape(points.shape[:-1])

    def color(self, points: torch.Tensor, color_code: torch.Tensor) -> torch.Tensor:
        """points [B, ..., 3], color_code [B, color_dim] -> rgb [B, ..., 3] in (0, 1)."""
        flat = self._flatten(points, color_code, self.config.color_dim, "color_code")
        return self.color_net(flat, color_code).reshape(points.shape)

    def fields(
        self, codes: ShapeCodes
    ) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[..., torch.Tensor]]:
        """``(sdf_fn, color_fn)`` bound to ``codes`` in the interface of `backend.render`."""

        def sdf_fn(points: torch.Tensor) -> torch.Tensor:
            return self.sdf(points, codes.shape)

        def color_fn(points: torch.Tensor, normals=None, viewdirs=None) -> torch.Tensor:
            return self.color(points, codes.color)

        return sdf_fn, color_fn

    def sdf_field(self, shape_code: torch.Tensor, encoding_blur: float | None = None
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
        """points [N, 3] -> SDF [N] of one shape code [shape_dim]: the single-shape field that
        marching cubes, carving and the symmetry prior take (``encoding_blur``: see
        `SDFNetwork.forward`)."""
        if shape_code.shape != (self.config.shape_dim,):
            raise ShapeModelInputError(
                f"a single-shape field needs one shape code [{self.config.shape_dim}], got {list(shape_code.shape)}"
            )
        code = shape_code.unsqueeze(0)
        return lambda points: self.sdf(points.unsqueeze(0), code, encoding_blur).squeeze(0)

    def extract_mesh(self, shape_code: torch.Tensor, **options):
        """Mesh of one shape code [shape_dim]; ``options`` go to
        `backend.render.extract.extract_mesh` (resolution, bound, coarse_to_fine, ...)."""
        from backend.render.extract import extract_mesh

        options.setdefault("device", shape_code.device)
        return extract_mesh(self.sdf_field(shape_code), **options)

    @staticmethod
    def _flatten(points: torch.Tensor, code: torch.Tensor, dim: int, name: str) -> torch.Tensor:
        if points.dim() < 2 or points.shape[-1] != 3:
            raise ShapeModelInputError(f"points must be [B, ..., 3], got {list(points.shape)}")
        if code.dim() != 2 or code.shape != (points.shape[0], dim):
            raise ShapeModelInputError(
                f"{name} must be [B, {dim}] with B={points.shape[0]} (from points), got {list(code.shape)}"
            )
        return points.reshape(points.shape[0], -1, 3)
