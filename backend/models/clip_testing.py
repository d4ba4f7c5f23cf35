"""A tiny CLIP for tests: the real tokenizer and vocabulary, a few-layer ViT and text transformer,
random weights chosen explicitly.

Every test in the project that needs CLIP uses this instead of pretrained weights (none can be
downloaded where tests run). Its features mean nothing semantically, but shapes, gradients,
tokenization and the loading code paths are the real ones.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from backend.models.clip import ClipConfig, ClipModel, load_clip

TINY_CLIP_MODEL_NAME = "stepstone-tiny-clip"

TINY_CLIP_EMBED_DIM = 64

TINY_CLIP_MODEL_CONFIG = {
    "embed_dim": TINY_CLIP_EMBED_DIM,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    # The full CLIP vocabulary and context, so prompts tokenize exactly as with ViT-B-32.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
"""open_clip model config: 32×32 images in 8×8 patches, 64-wide towers of 2 layers, 64-d features."""


def register_tiny_clip() -> str:
    """Make ``TINY_CLIP_MODEL_NAME`` known to open_clip (idempotent); return the name."""
    import open_clip

    if TINY_CLIP_MODEL_NAME in open_clip.list_models():
        return TINY_CLIP_MODEL_NAME
    # open_clip registers configs from JSON files only; one per user keeps parallel test runs apart.
    folder = Path(tempfile.gettempdir()) / f"stepstone-open-clip-configs-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TINY_CLIP_MODEL_NAME}.json"
    text = json.dumps(TINY_CLIP_MODEL_CONFIG, indent=2)
    if not path.is_file() or path.read_text() != text:
        scratch = path.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(text)
        scratch.replace(path)
    open_clip.add_model_config(path)
    return TINY_CLIP_MODEL_NAME


def tiny_clip_config(seed: int = 0, device: str = "cpu") -> ClipConfig:
    """Config for the tiny CLIP with random weights from ``seed`` (registers the model first)."""
    return ClipConfig(
        model_name=register_tiny_clip(),
        pretrained=None,
        allow_random_weights=True,
        random_seed=seed,
        device=device,
    )


def load_tiny_clip(seed: int = 0, device: str = "cpu") -> ClipModel:
    """The tiny CLIP with random weights from ``seed``; the same seed gives the same weights."""
    return load_clip(tiny_clip_config(seed, device))
