"""Where the text path's models live, what is missing, and loading them.

The text path needs three things:

1. CLIP weights (see ``docs/clip.md``): a local file (``STEPSTONE_CLIP_CHECKPOINT`` or the add-on's
   preference) or the open_clip tag's download cache;
2. an ISS folder written by ``scripts/train_mapper.py``: the CLIP2Shape mapper
   (``mapper.safetensors`` + ``.json``) and the shape model it maps into (``shape_model.*``, the
   decoder as fine-tuned in stage 1). The folder is ``STEPSTONE_ISS_DIR`` or
   ``backend/weights/iss``.

Stylization needs CLIP only. Nothing here ever substitutes random weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from backend.models.clip import CHECKPOINT_ENV_VAR, ClipConfig, ClipWeightsUnavailable

if TYPE_CHECKING:
    from backend.models.clip import ClipModel
    from backend.models.mapper import Clip2ShapeMapper
    from backend.models.shape_model import ShapeModel
    from backend.pipelines.clip_mapper_prep import Preparation

ISS_DIR_ENV_VAR = "STEPSTONE_ISS_DIR"
"""Environment variable naming the folder with the trained mapper and its shape model."""

DEFAULT_ISS_DIR = Path(__file__).resolve().parents[1] / "weights" / "iss"
MAPPER_NAME = "mapper"
"""``<iss dir>/mapper.safetensors`` + ``mapper.json``."""
SHAPE_MODEL_NAME = "shape_model"
"""``<iss dir>/shape_model.safetensors`` + ``shape_model.json``."""

FIRST_USE_TIME = "about 6 minutes on a 2-core CPU"
"""How long the first-use preparation takes (docs/text_to_shape.md)."""

TRAIN_COMMAND = (
    ".venv/bin/python scripts/train_mapper.py --rendered 16 "
    "--shape-model backend/weights/shape_model_cpu --out {iss_dir} --config full"
)
"""How a user makes the ISS folder (``{iss_dir}`` is filled in)."""


class TextAssetsError(RuntimeError):
    """The ISS folder holds files that do not belong together (mapper for another CLIP or shape model)."""


@dataclass
class TextAssetsConfig:
    """Which CLIP and which ISS folder the text pipelines use."""

    clip: ClipConfig = field(default_factory=lambda: ClipConfig(allow_download=False))
    """CLIP to load. Downloads are off by default inside the service (a failed download waits for a
    network timeout); ``scripts/train_mapper.py`` downloads the weights into the cache."""

    iss_dir: str | None = None
    """Folder with ``mapper.*`` and ``shape_model.*``; None = ``STEPSTONE_ISS_DIR`` or
    ``backend/weights/iss``."""

    prepare_on_first_use: bool = True
    """When CLIP weights are present and that folder lacks the mapper, train one in the background
    the first time text to shape runs (`clip_mapper_prep`) and use it once it is done."""

    first_use_max_shapes: int | None = None
    """Photograph at most this many procedural shapes for that mapper (None: the trainer's 368).
    Tests make it tiny; the result is not worth using."""

    def resolved_iss_dir(self) -> Path:
        """The ISS folder this config points to."""
        if self.iss_dir:
            return Path(self.iss_dir).expanduser()
        env = os.environ.get(ISS_DIR_ENV_VAR, "").strip()
        return Path(env).expanduser() if env else DEFAULT_ISS_DIR


@dataclass
class IssAssets:
    """Everything stage 2 needs, loaded and checked against each other."""

    clip: ClipModel
    shape_model: ShapeModel
    mapper: Clip2ShapeMapper
    """Maps a CLIP feature to ``[shape code | colour code]`` (``shape_dim + color_dim``)."""
    shape_model_id: str


def clip_missing_reason(config: ClipConfig) -> str | None:
    """None when the configured CLIP weights are on this machine; otherwise what is missing and how
    to get it (model, tag, cache folder, the settings that point to a file). Loads nothing."""
    from backend.models.clip import resolve_weights_source

    try:
        source = resolve_weights_source(config)
    except ClipWeightsUnavailable as exc:
        return str(exc)
    if source.kind == "random":
        return None
    if source.kind == "checkpoint":
        if source.path is not None and source.path.is_file():
            return None
        return (
            f"the CLIP weights file {source.path} for model {config.model_name!r} (from {source.origin}) "
            "does not exist; fix the path or unset it to use the pretrained tag"
        )
    if source.path is not None:
        return None
    return (
        f"CLIP weights for model {config.model_name!r}, pretrained tag {config.pretrained!r}, are not on this "
        f"machine: they are not in the download cache at {source.cache_dir}. To fix: run "
        "`.venv/bin/python scripts/train_mapper.py --download-clip` once on a machine with internet access "
        f"(it fills that cache), or download the weights from {source.remote} and point the environment "
        f"variable {CHECKPOINT_ENV_VAR} (in Blender: Preferences → Add-ons → Stepstone → CLIP Checkpoint) at the file."
    )


def iss_missing_reason(config: TextAssetsConfig) -> str | None:
    """None when text → shape can run; otherwise every missing piece and the command that makes it."""
    reasons = []
    clip_reason = clip_missing_reason(config.clip)
    if clip_reason:
        reasons.append(clip_reason)
    iss_dir = config.resolved_iss_dir()
    missing = missing_iss_files(iss_dir)
    if missing:
        reasons.append(
            f"the trained ISS CLIP2Shape mapper is missing: no {', '.join(missing)} (folder set by "
            f"{ISS_DIR_ENV_VAR}, default backend/weights/iss). With the CLIP weights present it is trained "
            f"automatically, in the background, the first time text to shape runs ({FIRST_USE_TIME}); or train "
            f"it by hand: {TRAIN_COMMAND.format(iss_dir=iss_dir)}"
        )
    if not reasons:
        return None
    return "text → shape is unavailable: " + " Also: ".join(reasons)


def missing_iss_files(iss_dir: Path) -> list[str]:
    """The files of an ISS folder that are not there."""
    from backend.models.checkpoint import CheckpointFiles
    from backend.models.mapper import mapper_paths

    weights, meta = mapper_paths(iss_dir / MAPPER_NAME)
    shape = CheckpointFiles.at(iss_dir / SHAPE_MODEL_NAME)
    return [str(p) for p in (weights, meta, shape.weights, shape.manifest) if not p.is_file()]


@dataclass
class FirstUse:
    """The first-use preparation that stands in for a missing ISS folder."""

    status: Preparation
    config: TextAssetsConfig
    """``config`` pointed at the preparation's folder."""
    clip_model_name: str
    clip_pretrained: str | None
    clip_weights: Path
    shape_model: Path
    max_shapes: int | None = None

    @property
    def ready(self) -> bool:
        return self.status.state == "done" and not missing_iss_files(Path(self.status.folder))

    def start(self, device: str) -> Preparation:
        from backend.pipelines.clip_mapper_prep import start

        self.status = start(Path(self.status.folder), clip_model_name=self.clip_model_name,
                            clip_pretrained=self.clip_pretrained, clip_weights=self.clip_weights,
                            shape_model=self.shape_model, device=device, max_shapes=self.max_shapes)
        return self.status


def first_use(config: TextAssetsConfig) -> FirstUse | None:
    """The first-use preparation for ``config``'s CLIP, when CLIP weights are on this machine and
    the configured ISS folder lacks its files; None otherwise (or when switched off). Loads nothing."""
    from dataclasses import replace

    from backend.models.clip import resolve_weights_source
    from backend.pipelines.clip_mapper_prep import preparation_dir, read_status
    from backend.pipelines.reconstruct.weights import DEFAULT_WEIGHTS, WeightsUnavailable, check_weights

    if not config.prepare_on_first_use or not missing_iss_files(config.resolved_iss_dir()):
        return None
    if clip_missing_reason(config.clip) is not None:
        return None
    try:
        source = resolve_weights_source(config.clip)
        shape_id = check_weights(DEFAULT_WEIGHTS)
    except (ClipWeightsUnavailable, WeightsUnavailable):
        return None
    if source.path is None:  # random test weights: nothing on disk to key the preparation by
        return None
    folder = preparation_dir(config.clip.model_name, source.path, shape_id)
    return FirstUse(read_status(folder), replace(config, iss_dir=str(folder)), config.clip.model_name,
                    config.clip.pretrained, source.path, DEFAULT_WEIGHTS, config.first_use_max_shapes)


def load_iss_assets(config: TextAssetsConfig, device: str) -> IssAssets:
    """Load CLIP, the ISS shape model and the mapper, checking that they belong together.

    Raises ``ClipWeightsUnavailable``, ``TextAssetsError`` (mapper trained for another CLIP or
    shape model, or with a code size that does not fit), and the checkpoint/mapper file errors.
    """
    from dataclasses import replace

    from backend.models.checkpoint import checkpoint_id, load_shape_model
    from backend.models.clip import load_clip
    from backend.models.mapper import (
        MapperClipMismatch,
        MapperShapeModelMismatch,
        load_mapper,
    )

    iss_dir = config.resolved_iss_dir()
    clip = load_clip(replace(config.clip, device=device))
    shape_path = iss_dir / SHAPE_MODEL_NAME
    shape_model, _ = load_shape_model(shape_path, device=device)
    shape_model.requires_grad_(False).eval()
    shape_id = checkpoint_id(shape_path)
    try:
        mapper = load_mapper(iss_dir / MAPPER_NAME, clip_model_id=clip.model_id, shape_model_id=shape_id, device=device)
    except (MapperClipMismatch, MapperShapeModelMismatch) as exc:
        raise TextAssetsError(f"{exc}. Retrain with: {TRAIN_COMMAND.format(iss_dir=iss_dir)}") from exc
    check_code_size(mapper, shape_model)
    if mapper.config.clip_dim != clip.embed_dim:
        raise TextAssetsError(f"the mapper takes {mapper.config.clip_dim}-d CLIP features; {clip.model_id} gives {clip.embed_dim}")
    return IssAssets(clip=clip, shape_model=shape_model, mapper=mapper, shape_model_id=shape_id)


def check_code_size(mapper: Clip2ShapeMapper, shape_model: ShapeModel) -> None:
    """The mapper must output ``[shape | colour]`` codes of this shape model."""
    expected = shape_model.config.shape_dim + shape_model.config.color_dim
    if mapper.config.code_dim != expected:
        raise TextAssetsError(
            f"the mapper outputs {mapper.config.code_dim}-d codes, but the shape model needs shape + colour "
            f"codes of {shape_model.config.shape_dim} + {shape_model.config.color_dim} = {expected}"
        )
