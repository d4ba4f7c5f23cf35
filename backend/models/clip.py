"""CLIP through open_clip: where the weights come from, and a frozen wrapper that renders can be
pushed through with gradients.

Weights are looked for in this order, and a missing source is an error, never random weights:

1. ``ClipConfig.checkpoint_path`` (a local file),
2. the environment variable ``STEPSTONE_CLIP_CHECKPOINT`` (a local file),
3. the open_clip pretrained tag (``ClipConfig.pretrained``): taken from the download cache when it
   is there, downloaded into it otherwise (on a machine with internet access).

Random weights are built only when a config asks for them outright (``allow_random_weights``,
tests only), and ``ClipModel.model_id`` then says so.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from backend.models.clip_tokens import check_clip_prompt, get_clip_tokenizer

if TYPE_CHECKING:
    import torch

CHECKPOINT_ENV_VAR = "STEPSTONE_CLIP_CHECKPOINT"
"""Environment variable naming a local CLIP weights file; used when the config names none."""

DEFAULT_MODEL_NAME = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
PRECISIONS = ("fp32", "fp16", "bf16")


class ClipWeightsUnavailable(RuntimeError):
    """The configured CLIP weights cannot be had (not cached and no download, missing or bad file)."""


class ClipConfigError(ValueError):
    """The CLIP configuration names something open_clip does not know, or a setting that cannot work."""


class ClipInputError(ValueError):
    """Images or texts handed to ``ClipModel`` have the wrong type or shape."""


@dataclass
class ClipConfig:
    """Which CLIP to load, from where, and how to run it."""

    model_name: str = DEFAULT_MODEL_NAME
    """open_clip architecture name (one of ``open_clip.list_models()``)."""

    pretrained: str | None = DEFAULT_PRETRAINED
    """open_clip pretrained tag for ``model_name``. Its weights come from the download cache, or are
    downloaded there on first use. With a checkpoint file it still says which activation and image
    normalisation the file was trained with, so set it to the tag the file came from (``None`` for
    a file from no tag)."""

    checkpoint_path: str | None = None
    """Local weights file for ``model_name`` (``.safetensors``, or ``.bin``/``.pt``/``.pth`` read with
    ``torch.load(weights_only=True)``). Wins over ``STEPSTONE_CLIP_CHECKPOINT`` and the tag."""

    cache_dir: str | None = None
    """Download cache for tag weights; ``None`` is open_clip's own (the Hugging Face hub cache for
    hub-hosted tags, ``~/.cache/clip`` for URL-hosted ones)."""

    allow_download: bool = True
    """Download tag weights that are not cached yet. ``False`` fails at once instead of trying the
    network (useful offline: a failed download attempt takes tens of seconds)."""

    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""

    precision: str = "fp32"
    """``fp32``; ``fp16`` (CUDA only) or ``bf16`` run the towers in half precision, features are fp32."""

    allow_random_weights: bool = False
    """Tests only: with no checkpoint path and no tag, build ``model_name`` with random weights
    (seeded by ``random_seed``) instead of failing. The environment variable is not consulted then."""

    random_seed: int = 0
    """Seed for ``allow_random_weights``; part of the resulting ``model_id``."""


@dataclass(frozen=True)
class WeightsSource:
    """Where ``load_clip`` will take the weights from, worked out without loading anything."""

    kind: str
    """``checkpoint`` (a local file), ``tag`` (open_clip pretrained tag) or ``random``."""

    path: Path | None
    """The file to load; for a tag the cached file, or ``None`` while it still has to be downloaded."""

    origin: str
    """Which setting chose this source, for messages."""

    cache_dir: Path | None = None
    """For a tag: the folder its download lands in."""

    remote: str | None = None
    """For a tag: where the weights are downloaded from, for messages."""


class ClipModel:
    """A frozen open_clip model with unit-normalised text and image features.

    ``encode_image`` resizes and normalises in torch, so gradients flow from the features back to
    the pixels (and on into a renderer); CLIP's own parameters never get gradients.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        model_name: str,
        model_id: str,
        weights_description: str,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        image_size: tuple[int, int],
        embed_dim: int,
        device: str,
    ):
        import torch

        model.requires_grad_(False)
        model.eval()
        self._model = model
        self.model_name = model_name
        self.model_id = model_id
        """Identifies the weights: ``open_clip:<name>:sha256-<digest>`` of the loaded weights, or
        ``open_clip:<name>:random-seed<N>``. Mappers record it to refuse a different CLIP."""
        self.weights_description = weights_description
        self.image_size = image_size
        self.embed_dim = embed_dim
        self.device = torch.device(device)
        self.context_length = int(get_clip_tokenizer(model_name).context_length)
        self._input_dtype = _image_input_dtype(model)
        self._mean = torch.tensor(image_mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(image_std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def __repr__(self) -> str:
        return f"ClipModel({self.model_id!r}, device={self.device}, {self.weights_description})"

    def parameters(self):
        """The (frozen) parameters of the wrapped open_clip model."""
        return self._model.parameters()

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-normalised text features ``[B, embed_dim]`` (float32, no gradient).

        Raises ``ClipPromptTooLong`` for a prompt over the context length instead of truncating it.
        """
        import torch
        import torch.nn.functional as F

        if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
            raise ClipInputError("encode_text takes a non-empty list of strings")
        for text in texts:
            check_clip_prompt(text, self.model_name)
        tokens = get_clip_tokenizer(self.model_name)(list(texts)).to(self.device)
        with torch.no_grad():
            features = self._model.encode_text(tokens)
        return F.normalize(features.float(), dim=-1)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in 0..1 → CLIP input ``[B, 3, S, S]``: shortest side resized to the
        model's size (bicubic, antialiased), centre crop, mean/std normalisation. Differentiable."""
        import torch.nn.functional as F

        if images.ndim != 4 or images.shape[1] != 3:
            raise ClipInputError(f"images must be [B, 3, H, W]; got shape {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ClipInputError(f"images must be floating point in 0..1; got {images.dtype}")
        target_h, target_w = self.image_size
        x = images.to(device=self.device, dtype=self._mean.dtype)
        height, width = x.shape[-2:]
        scale = max(target_h / height, target_w / width)
        resized = (max(target_h, round(height * scale)), max(target_w, round(width * scale)))
        if resized != (height, width):
            x = F.interpolate(x, size=resized, mode="bicubic", antialias=True, align_corners=False)
        top = (resized[0] - target_h) // 2
        left = (resized[1] - target_w) // 2
        x = x[..., top : top + target_h, left : left + target_w]
        return (x - self._mean) / self._std

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-normalised image features ``[B, embed_dim]`` (float32) of images ``[B, 3, H, W]`` in
        0..1; differentiable with respect to ``images``."""
        import torch.nn.functional as F

        x = self.preprocess(images).to(self._input_dtype)
        return F.normalize(self._model.encode_image(x).float(), dim=-1)


def _image_input_dtype(model: torch.nn.Module) -> torch.dtype:
    # Half precision converts only conv/linear weights, so the first weight layer says what the
    # image tower expects (embeddings stay fp32).
    import torch

    for module in model.visual.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            return module.weight.dtype
    return next(model.visual.parameters()).dtype


def resolve_weights_source(config: ClipConfig, environ: Mapping[str, str] | None = None) -> WeightsSource:
    """Decide where the weights come from (see the module docstring for the order)."""
    environ = os.environ if environ is None else environ
    if config.checkpoint_path:
        return WeightsSource("checkpoint", Path(config.checkpoint_path).expanduser(), "ClipConfig.checkpoint_path")
    if config.pretrained is None and config.allow_random_weights:
        return WeightsSource("random", None, "ClipConfig.allow_random_weights")
    env_path = environ.get(CHECKPOINT_ENV_VAR, "").strip()
    if env_path:
        return WeightsSource("checkpoint", Path(env_path).expanduser(), f"environment variable {CHECKPOINT_ENV_VAR}")
    if config.pretrained:
        return _locate_tag_weights(config)
    raise ClipWeightsUnavailable(
        f"no CLIP weights configured for model {config.model_name!r}: set ClipConfig.pretrained to an "
        f"open_clip tag, ClipConfig.checkpoint_path or {CHECKPOINT_ENV_VAR} to a weights file"
    )


def load_clip(config: ClipConfig | None = None) -> ClipModel:
    """Build the configured CLIP, frozen and in eval mode.

    Raises ``ClipConfigError`` for an unknown model/tag/precision and ``ClipWeightsUnavailable``
    when the weights cannot be had.
    """
    import torch
    import open_clip

    from backend.devices import resolve_device

    config = config or ClipConfig()
    _validate(config)
    device = resolve_device(config.device)
    if config.precision == "fp16" and not device.startswith("cuda"):
        raise ClipConfigError("precision 'fp16' needs a CUDA device; use 'fp32' or 'bf16' on the CPU")

    tag_cfg = open_clip.get_pretrained_cfg(config.model_name, config.pretrained) if config.pretrained else {}
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    source = resolve_weights_source(config)

    if source.kind == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.random_seed)
            model = open_clip.create_model(config.model_name, pretrained=None, force_quick_gelu=quick_gelu)
        model_id = f"open_clip:{config.model_name}:random-seed{config.random_seed}"
        description = f"random weights (seed {config.random_seed}) — for tests only"
    else:
        path = source.path if source.path is not None else _download_tag_weights(config, tag_cfg, source)
        model = _create_from_file(config, path, source, quick_gelu)
        model_id = f"open_clip:{config.model_name}:sha256-{_state_dict_digest(model)}"
        description = f"weights from {path} ({source.origin})"

    model.to(device)
    if config.precision != "fp32":
        from open_clip.model import convert_weights_to_lp

        convert_weights_to_lp(model, dtype=torch.float16 if config.precision == "fp16" else torch.bfloat16)

    preprocess_cfg = open_clip.get_model_preprocess_cfg(model)
    size = preprocess_cfg["size"]
    return ClipModel(
        model,
        model_name=config.model_name,
        model_id=model_id,
        weights_description=description,
        image_mean=tag_cfg.get("mean", preprocess_cfg["mean"]),
        image_std=tag_cfg.get("std", preprocess_cfg["std"]),
        image_size=(size, size) if isinstance(size, int) else tuple(size),
        embed_dim=int(open_clip.get_model_config(config.model_name)["embed_dim"]),
        device=device,
    )


def _validate(config: ClipConfig) -> None:
    import open_clip

    if config.model_name not in open_clip.list_models():
        raise ClipConfigError(
            f"unknown open_clip model {config.model_name!r}; known models include ViT-B-32, ViT-B-16, ViT-L-14 "
            "(see open_clip.list_models())"
        )
    if config.pretrained and not open_clip.get_pretrained_cfg(config.model_name, config.pretrained):
        tags = open_clip.list_pretrained_tags_by_model(config.model_name)
        raise ClipConfigError(
            f"open_clip has no pretrained tag {config.pretrained!r} for {config.model_name!r}; "
            f"known tags: {', '.join(tags) or 'none'}"
        )
    if config.precision not in PRECISIONS:
        raise ClipConfigError(f"unknown precision {config.precision!r}; use one of {', '.join(PRECISIONS)}")


def _locate_tag_weights(config: ClipConfig) -> WeightsSource:
    """Where a tag's weights are cached (mirrors open_clip's own choice of hub file or URL)."""
    import open_clip
    from open_clip.pretrained import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME, has_hf_hub

    tag_cfg = open_clip.get_pretrained_cfg(config.model_name, config.pretrained)
    origin = f"open_clip pretrained tag {config.pretrained!r}"
    if tag_cfg.get("file"):
        return WeightsSource("tag", Path(tag_cfg["file"]), origin)
    if tag_cfg.get("hf_hub") and has_hf_hub():
        from huggingface_hub import constants, try_to_load_from_cache

        repo_id, filename = os.path.split(tag_cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        # open_clip downloads a safetensors twin of a pickle file when the repository has one.
        if filename == HF_WEIGHTS_NAME:
            candidates = [HF_SAFE_WEIGHTS_NAME, filename]
        elif filename.endswith((".bin", ".pth")):
            candidates = [filename[:-4] + ".safetensors", filename]
        else:
            candidates = [filename]
        cache_dir = Path(config.cache_dir or constants.HF_HUB_CACHE).expanduser()
        remote = f"https://huggingface.co/{repo_id} (file {' or '.join(candidates)})"
        for name in candidates:
            cached = try_to_load_from_cache(repo_id, name, cache_dir=config.cache_dir)
            if isinstance(cached, str):
                return WeightsSource("tag", Path(cached), origin, cache_dir, remote)
        return WeightsSource("tag", None, origin, cache_dir, remote)
    url = tag_cfg["url"]
    cache_dir = Path(config.cache_dir or "~/.cache/clip").expanduser()
    cached_path = cache_dir / os.path.basename(url)
    return WeightsSource("tag", cached_path if cached_path.is_file() else None, origin, cache_dir, url)


def _download_tag_weights(config: ClipConfig, tag_cfg: dict, source: WeightsSource) -> Path:
    import open_clip

    def unavailable(reason: str) -> ClipWeightsUnavailable:
        return ClipWeightsUnavailable(
            f"CLIP weights for model {config.model_name!r}, pretrained tag {config.pretrained!r}, are not "
            f"available: they are not in the download cache at {source.cache_dir} and {reason}.\n"
            f"To fix: run Stepstone once on a machine with internet access (the weights are then cached "
            f"there), or download them elsewhere from {source.remote} and point "
            f"the environment variable {CHECKPOINT_ENV_VAR} (in Blender: Preferences → Add-ons → Stepstone → CLIP Checkpoint, "
            f"or ClipConfig.checkpoint_path) at the file."
        )

    if not config.allow_download:
        raise unavailable("downloading is switched off (ClipConfig.allow_download is False)")
    try:
        target = open_clip.download_pretrained(tag_cfg, cache_dir=config.cache_dir)
    except Exception as exc:  # network, hub and file-system failures all end the same way for the user
        raise unavailable(f"downloading them failed ({type(exc).__name__}: {exc})") from exc
    if not target:
        raise unavailable("open_clip found nowhere to download them from")
    return Path(target)


def _create_from_file(config: ClipConfig, path: Path, source: WeightsSource, quick_gelu: bool):
    import open_clip

    if not path.is_file():
        raise ClipWeightsUnavailable(
            f"CLIP weights file {path} for model {config.model_name!r} (from {source.origin}) does not "
            "exist or is not a file; fix the path, or unset it to use the pretrained tag"
        )
    try:
        # Loaded in fp32 on the CPU: the digest then does not depend on device or precision.
        return open_clip.create_model(
            config.model_name,
            pretrained=str(path),
            precision="fp32",
            device="cpu",
            force_quick_gelu=quick_gelu,
            weights_only=True,
        )
    except Exception as exc:  # torch/safetensors/state-dict errors all mean "this file is not usable"
        hint = " It is the download cache's copy: delete it to download it again." if source.kind == "tag" else ""
        raise ClipWeightsUnavailable(
            f"could not load CLIP weights for model {config.model_name!r} from {path} ({source.origin}): "
            f"{type(exc).__name__}: {_first_line(exc)}. The file must hold an open_clip or OpenAI state dict for "
            f"{config.model_name!r}, as .safetensors or a torch file readable with weights_only=True.{hint}"
        ) from exc


def _first_line(exc: Exception) -> str:
    # torch's unpickling errors run to a page of advice that does not apply to a weights file.
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def _state_dict_digest(model: torch.nn.Module) -> str:
    """sha256 over names, dtypes, shapes and values of the loaded weights (first 16 hex digits).

    Taken from the model rather than the file, so the same weights saved as .bin or .safetensors
    (or converted from the OpenAI layout) get the same id.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.numpy())
    return digest.hexdigest()[:16]
