"""The shape model's checkpoint: where the shipped one lies, a torch-free check of the files,
and loading the network onto a device."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from backend.errors import PipelineError
from backend.protocol import ErrorCode

ENCODING_BLUR = 0.05
"""Served shape models evaluate their SDF with the positional encoding averaged over this jitter
of the points (`backend.models.shape_model.positional_encoding`): the committed weights rib most
surfaces along their axes, and this fades the ribs while keeping the shape (docs/reconstruction.md,
"Ripples": 0.04-0.08 measured, F@5% kept within about 0.03 on 14 photos)."""

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "shape_model_cpu"
"""The committed default checkpoint (``.safetensors`` + ``.json``)."""


class WeightsUnavailable(RuntimeError):
    """The shape model's checkpoint files are missing or inconsistent."""


def resolve_weights(path: str | Path) -> Path:
    """The checkpoint ``NAME`` that ``path`` means: ``NAME`` itself, ``NAME.json`` /
    ``NAME.safetensors``, or a folder holding exactly one shape-model checkpoint (what
    ``scripts/train.py`` exports)."""
    path = Path(path)
    if path.is_dir():
        found = []
        for manifest in sorted(path.glob("*.json")):
            try:
                if json.loads(manifest.read_text()).get("kind") == "shape_model":
                    found.append(manifest.with_suffix(""))
            except (ValueError, OSError, AttributeError):
                continue
        if len(found) != 1:
            raise WeightsUnavailable(f"{path} holds {len(found)} shape-model checkpoints; name one "
                                     f"({', '.join(p.name for p in found) or 'none found'})")
        return found[0]
    if path.suffix in (".json", ".safetensors"):
        return path.with_suffix("")
    return path


def check_weights(path: Path, expected_kind: str = "shape_model") -> str:
    """Check ``NAME.json`` + ``NAME.safetensors`` (and any shards) without importing torch: the
    manifest parses, is a checkpoint of ``expected_kind``, and its recorded hashes match the weights.
    Returns the checkpoint id (``"shape_model:<sha256 prefix>"``, as
    `backend.models.checkpoint.checkpoint_id`)."""
    manifest_path, weights_path = path.with_name(path.name + ".json"), path.with_name(path.name + ".safetensors")
    for p in (manifest_path, weights_path):
        if not p.is_file():
            raise WeightsUnavailable(f"{p} is missing")
    try:
        manifest = json.loads(manifest_path.read_text())
        kind, recorded = manifest["kind"], manifest["weights_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise WeightsUnavailable(f"{manifest_path} is not a checkpoint manifest: {exc}") from exc
    if kind != expected_kind:
        raise WeightsUnavailable(f"{manifest_path} holds a {kind!r}, not a {expected_kind.replace('_', ' ')}")
    files = [(weights_path, recorded)]
    for shard in manifest.get("shards") or []:
        files.append((weights_path.with_name(str(shard.get("file"))), shard.get("sha256")))
    for file, expected in files:
        if not file.is_file():
            raise WeightsUnavailable(f"{file} is missing")
        digest = hashlib.sha256()
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise WeightsUnavailable(f"{file} does not match the sha256 recorded in {manifest_path}")
    return f"{kind}:{recorded[:16]}"


def torch_device(device: str):
    """The torch device for a backend device name; ``PIPELINE_UNAVAILABLE`` for CUDA without CUDA."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE, f"device {device!r} was asked for but CUDA is not available")
        return torch.device(device)
    return torch.device("cpu")


def load_model(weights: Path, device: str, encoding_blur: float = ENCODING_BLUR):
    """``(model, metadata, torch device)``: the network in eval mode without gradients, its field
    evaluated with ``encoding_blur``; a checkpoint that passed `check_weights` but does not fit the
    code gives ``PIPELINE_UNAVAILABLE`` with what to do."""
    from backend.models.checkpoint import CheckpointError, load_shape_model

    dev = torch_device(device)
    try:
        model, metadata = load_shape_model(weights, device=dev)
    except CheckpointError as exc:
        raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE,
                            f"the shape model weights {weights} cannot be used: {exc}. Re-export them "
                            "with scripts/train.py --export (docs/training.md).") from exc
    model.eval().requires_grad_(False)
    model.sdf_net.encoding_blur = encoding_blur
    return model, metadata, dev
