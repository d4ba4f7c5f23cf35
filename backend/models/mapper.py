"""ISS's CLIP2Shape mapper: a CLIP feature → a shape code of the reconstruction model.

Stage 1 trains it on CLIP *image* features of renders mixed with noise (:func:`mix_clip_noise`),
regressing the shape codes the image encoder gives for the same renders. Stage 2 feeds it a CLIP
*text* feature and fine-tunes a copy per prompt. A mapper only makes sense with the CLIP it was
trained against, so saved mappers record that CLIP's ``model_id`` and refuse any other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from collections.abc import Mapping

MAPPER_FORMAT = "stepstone.clip2shape-mapper"
MAPPER_FORMAT_VERSION = 1


class MapperClipMismatch(ValueError):
    """A saved mapper was trained against a different CLIP from the one it is loaded for."""


class MapperShapeModelMismatch(ValueError):
    """A saved mapper maps into the code space of a different shape model."""


class MapperFileError(RuntimeError):
    """A saved mapper is missing, incomplete, or its two files do not belong together."""


@dataclass
class MapperConfig:
    """Size of the CLIP2Shape mapper."""

    clip_dim: int = 512
    """CLIP feature size (512 for ViT-B-32; ``ClipModel.embed_dim``)."""

    code_dim: int = 256
    """Shape code size of the reconstruction model (e.g. 64 for the CPU preset, 256 on a GPU)."""

    hidden_dim: int = 512
    """Width of the residual blocks."""

    num_blocks: int = 3
    """Number of residual blocks."""

    noise_weight: float = 0.75
    """Share of noise in :func:`mix_clip_noise` during stage-1 training (ISS: 0.75), kept with the
    weights so fine-tuning and evaluation know how the mapper was trained."""

    def __post_init__(self) -> None:
        for name in ("clip_dim", "code_dim", "hidden_dim", "num_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MapperConfig.{name} must be a positive integer; got {value!r}")
        _check_noise_weight(self.noise_weight)


class ResidualBlock(nn.Module):
    """``x + Linear(GELU(Linear(LayerNorm(x))))``; the last layer starts at zero so a fresh block is
    the identity and a deep mapper starts as well-conditioned as a shallow one."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.act = nn.GELU()
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, width]`` → ``[B, width]``."""
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class Clip2ShapeMapper(nn.Module):
    """MLP with residual blocks from a CLIP feature ``[B, clip_dim]`` to a shape code ``[B, code_dim]``."""

    def __init__(self, config: MapperConfig | None = None):
        super().__init__()
        self.config = config or MapperConfig()
        self.input = nn.Linear(self.config.clip_dim, self.config.hidden_dim)
        self.blocks = nn.Sequential(*(ResidualBlock(self.config.hidden_dim) for _ in range(self.config.num_blocks)))
        self.output_norm = nn.LayerNorm(self.config.hidden_dim)
        self.output = nn.Linear(self.config.hidden_dim, self.config.code_dim)

    def forward(self, clip_features: torch.Tensor) -> torch.Tensor:
        """CLIP features ``[B, clip_dim]`` → shape codes ``[B, code_dim]``.

        Features are normalised first: only their direction carries meaning in CLIP space, and text
        and image features must arrive on the same scale.
        """
        if clip_features.ndim != 2 or clip_features.shape[1] != self.config.clip_dim:
            raise ValueError(
                f"the mapper takes CLIP features [B, {self.config.clip_dim}]; got {tuple(clip_features.shape)}"
            )
        x = nn.functional.normalize(clip_features, dim=-1)
        x = self.blocks(self.input(x))
        return self.output(self.output_norm(x))


def mix_clip_noise(
    features: torch.Tensor, noise_weight: float = 0.75, generator: torch.Generator | None = None
) -> torch.Tensor:
    """ISS's noise mixing: ``normalise((1 − w)·f̂ + w·ε̂)`` of features ``[B, D]`` → ``[B, D]``.

    ``f̂`` is the unit feature and ``ε̂`` a unit Gaussian direction. Both are unit length so ``w``
    alone sets the mix: with w = 0.75 the result keeps a cosine of about 0.32 to ``f̂``, enough
    that the mapper learns a whole cone around each image feature, in which text features land.
    """
    _check_noise_weight(noise_weight)
    unit = nn.functional.normalize(features, dim=-1)
    # Drawn where the generator lives, so a CPU generator makes the same noise for CUDA features.
    source = generator.device if generator is not None else unit.device
    noise = torch.randn(unit.shape, generator=generator, device=source, dtype=unit.dtype).to(unit.device)
    noise = nn.functional.normalize(noise, dim=-1)
    return nn.functional.normalize((1.0 - noise_weight) * unit + noise_weight * noise, dim=-1)


@dataclass(frozen=True)
class MapperMetadata:
    """What the JSON next to a saved mapper records."""

    config: MapperConfig
    clip_model_id: str
    """``ClipModel.model_id`` of the CLIP the mapper was trained with."""
    shape_model_id: str | None
    """Identifier of the shape model whose code space it maps into, when the trainer gave one."""
    weights_sha256: str
    """sha256 of the .safetensors file, so a JSON is never paired with someone else's weights."""


def mapper_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights .safetensors, metadata .json)`` for a mapper saved at ``path`` (suffix ignored)."""
    base = Path(path)
    if base.suffix in (".safetensors", ".json"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def save_mapper(
    mapper: Clip2ShapeMapper, path: str | Path, *, clip_model_id: str, shape_model_id: str | None = None
) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` and ``<path>.json``; return both paths."""
    from safetensors.torch import save_file

    if not clip_model_id:
        raise ValueError("clip_model_id is required: a mapper is only valid with the CLIP it was trained with")
    weights_path, meta_path = mapper_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in mapper.state_dict().items()}
    save_file(tensors, str(weights_path), metadata={"format": MAPPER_FORMAT, "clip_model_id": clip_model_id})
    meta = {
        "format": MAPPER_FORMAT,
        "format_version": MAPPER_FORMAT_VERSION,
        "config": asdict(mapper.config),
        "clip_model_id": clip_model_id,
        "shape_model_id": shape_model_id,
        "code_dim": mapper.config.code_dim,
        "weights_sha256": _file_sha256(weights_path),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return weights_path, meta_path


def read_mapper_metadata(path: str | Path) -> MapperMetadata:
    """Read and check the JSON of a saved mapper without loading its weights."""
    _, meta_path = mapper_paths(path)
    if not meta_path.is_file():
        raise MapperFileError(f"no mapper metadata at {meta_path}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MapperFileError(f"mapper metadata {meta_path} is not readable JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != MAPPER_FORMAT:
        raise MapperFileError(f"{meta_path} is not a Stepstone CLIP2Shape mapper (format {MAPPER_FORMAT!r})")
    if meta.get("format_version") != MAPPER_FORMAT_VERSION:
        raise MapperFileError(
            f"{meta_path} has mapper format version {meta.get('format_version')!r}; "
            f"this Stepstone reads version {MAPPER_FORMAT_VERSION}"
        )
    try:
        config = _config_from_dict(meta["config"])
        return MapperMetadata(
            config=config,
            clip_model_id=str(meta["clip_model_id"]),
            shape_model_id=meta.get("shape_model_id"),
            weights_sha256=str(meta["weights_sha256"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MapperFileError(f"mapper metadata {meta_path} is incomplete or invalid: {exc}") from exc


def load_mapper(
    path: str | Path,
    *,
    clip_model_id: str,
    shape_model_id: str | None = None,
    device: str | torch.device = "cpu",
) -> Clip2ShapeMapper:
    """Load a mapper saved by :func:`save_mapper` for use with the CLIP ``clip_model_id``.

    Raises ``MapperClipMismatch`` when it was trained with another CLIP, ``MapperShapeModelMismatch``
    when ``shape_model_id`` is given and differs from the recorded one, ``MapperFileError`` for
    missing, foreign or inconsistent files.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_path, meta_path = mapper_paths(path)
    meta = read_mapper_metadata(path)
    if meta.clip_model_id != clip_model_id:
        raise MapperClipMismatch(
            f"the mapper {weights_path} was trained with CLIP {meta.clip_model_id!r}, but the loaded CLIP is "
            f"{clip_model_id!r}. Load the CLIP it was trained with (same model and weights), or train a "
            "mapper for this CLIP."
        )
    if shape_model_id is not None and meta.shape_model_id is not None and meta.shape_model_id != shape_model_id:
        raise MapperShapeModelMismatch(
            f"the mapper {weights_path} maps into shape model {meta.shape_model_id!r}, not {shape_model_id!r}"
        )
    if not weights_path.is_file():
        raise MapperFileError(f"mapper weights {weights_path} are missing (metadata {meta_path} exists)")
    if _file_sha256(weights_path) != meta.weights_sha256:
        raise MapperFileError(f"mapper weights {weights_path} do not match the checksum recorded in {meta_path}")
    mapper = Clip2ShapeMapper(meta.config)
    try:
        mapper.load_state_dict(load_file(str(weights_path)))
    except (SafetensorError, RuntimeError) as exc:
        raise MapperFileError(f"mapper weights {weights_path} do not fit the recorded config: {exc}") from exc
    return mapper.to(device)


def _config_from_dict(data: Mapping) -> MapperConfig:
    known = {f.name for f in fields(MapperConfig)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown mapper config fields {sorted(unknown)}")
    return MapperConfig(**data)


def _check_noise_weight(weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"noise weight must lie in [0, 1]; got {weight!r}")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
