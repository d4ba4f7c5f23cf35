"""Model checkpoints: weights as safetensors, config and training metadata as JSON, never pickle.

A checkpoint named ``NAME`` is two files side by side:

* ``NAME.safetensors`` -- the ``state_dict`` tensors; its header metadata repeats ``kind`` and
  ``format_version`` so a lone weights file is still identifiable;
* ``NAME.json`` -- ``{"format": "stepstone-checkpoint", "format_version", "kind", "config",
  "metadata", "weights_file", "weights_sha256", "tensors": {name: shape}}``; ``config`` is the
  model's config dataclass as nested JSON, ``metadata`` free JSON (training steps, data, losses).

Weights may be stored in float16 (``save_checkpoint(dtype=...)``; loading casts them to the
model's dtype) and split over several files of at most ``max_file_bytes`` each: ``NAME.safetensors``
then ``NAME.part2.safetensors`` ..., listed with their hashes under ``"shards"`` — so a checkpoint
can travel where single files are size-limited (the GPU machine returns files under 16 MiB).

Loading checks, in order: files and format, kind and version, weights hash, config fields
(unknown, missing or mistyped fields are errors, except a missing field of `LATER_FIELDS`; so
is a difference from an expected config),
then tensor names and shapes against the model built from the config. Each failure raises a
`CheckpointError` subclass naming what differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

FORMAT_NAME = "stepstone-checkpoint"
FORMAT_VERSION = 1
SHAPE_MODEL_KIND = "shape_model"

ConfigT = TypeVar("ConfigT")

LATER_FIELDS: dict[tuple[str, str], Any] = {("EncoderConfig", "azimuth_bins"): 0}
"""Config fields added after format version 1 came out, with the value a file written before
them means (the behaviour of that time). Only these may be missing from a stored config."""


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read as asked."""


class CheckpointFormatError(CheckpointError):
    """Missing files, unreadable JSON, wrong format, kind, version or weights hash."""


class CheckpointConfigError(CheckpointError):
    """The stored config does not fit the config dataclass or differs from the expected one."""


class CheckpointWeightsError(CheckpointError):
    """Stored tensors do not match the model's parameters (names or shapes)."""


@dataclass
class CheckpointFiles:
    """Paths of one checkpoint."""

    weights: Path
    """The ``.safetensors`` file."""
    manifest: Path
    """The ``.json`` file."""

    @classmethod
    def at(cls, path: str | Path) -> CheckpointFiles:
        """Both paths for ``NAME``, ``NAME.safetensors`` or ``NAME.json``."""
        path = Path(path)
        base = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
        return cls(base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json"))


@dataclass
class Checkpoint:
    """What `read_checkpoint` returns."""

    config: Any
    """The config dataclass instance."""
    state_dict: dict[str, torch.Tensor]
    """Tensors by parameter/buffer name."""
    metadata: dict[str, Any]
    """Training metadata as stored."""


# ---------------------------------------------------------------- config <-> JSON


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass (possibly nested) as JSON-ready dicts and lists."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise CheckpointConfigError(f"config must be a dataclass instance, got {type(config).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(config_type: type[ConfigT], data: Any, where: str = "config") -> ConfigT:
    """Rebuild ``config_type`` from `config_to_dict` output, strictly: every field present, no
    extra fields, values of the declared types (tuples from lists, ints accepted as floats)."""
    if not isinstance(data, dict):
        raise CheckpointConfigError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(config_type)
    names = [f.name for f in dataclasses.fields(config_type)]
    later = {name: value for (owner, name), value in LATER_FIELDS.items() if owner == config_type.__name__}
    data = {**{n: v for n, v in later.items() if n not in data}, **data}
    unknown = sorted(set(data) - set(names))
    missing = [n for n in names if n not in data]
    if unknown or missing:
        raise CheckpointConfigError(
            f"{where} does not match {config_type.__name__}: "
            f"unknown fields {unknown or 'none'}, missing fields {missing or 'none'}"
        )
    values = {n: _value_from_json(hints[n], data[n], f"{where}.{n}") for n in names}
    try:
        return config_type(**values)
    except (TypeError, ValueError) as exc:
        raise CheckpointConfigError(f"{where}: {exc}") from exc


def _value_from_json(tp: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return config_from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _value_from_json(option, value, where)
            except CheckpointConfigError:
                continue
        raise CheckpointConfigError(f"{where}: {value!r} fits none of {tp}")
    if origin is tuple:
        if not isinstance(value, list):
            raise CheckpointConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_value_from_json(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CheckpointConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp in (bool, str) and not isinstance(value, tp):
        raise CheckpointConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def config_differences(stored: Any, expected: Any, where: str = "") -> list[str]:
    """``"field: stored X, expected Y"`` lines for every differing leaf of two configs."""
    a, b = config_to_dict(stored), config_to_dict(expected)
    return _dict_differences(a, b, where)


def _dict_differences(a: dict, b: dict, where: str) -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        name = f"{where}.{key}" if where else key
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out += _dict_differences(a[key], b[key], name)
        elif a.get(key) != b.get(key):
            out.append(f"{name}: checkpoint {a.get(key)!r}, expected {b.get(key)!r}")
    return out


# ---------------------------------------------------------------- save / read


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    config: Any,
    *,
    kind: str,
    metadata: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    max_file_bytes: int | None = None,
) -> CheckpointFiles:
    """Write ``model.state_dict()`` and ``config`` (+ JSON ``metadata``) as checkpoint ``path``;
    floating tensors cast to ``dtype`` when given, files split at ``max_file_bytes``."""
    files = CheckpointFiles.at(path)
    metadata = dict(metadata or {})
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint metadata must be JSON-serialisable: {exc}") from exc
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    files.weights.parent.mkdir(parents=True, exist_ok=True)
    header = {"kind": kind, "format_version": str(FORMAT_VERSION)}
    shards = [{"file": shard.name, "sha256": _sha256(shard)}
              for shard in save_sharded(tensors, files.weights, max_file_bytes, header)]
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config_to_dict(config),
        "metadata": metadata,
        "weights_file": files.weights.name,
        "weights_sha256": _sha256(files.weights),
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        **({"shards": shards} if shards else {}),
    }
    files.manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return files


def read_checkpoint(
    path: str | Path,
    config_type: type[ConfigT],
    *,
    kind: str,
    expected_config: ConfigT | None = None,
    device: torch.device | str = "cpu",
) -> Checkpoint:
    """Read and validate checkpoint ``path`` (``NAME``, ``NAME.json`` or ``NAME.safetensors``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = CheckpointFiles.at(path)
    for p in (files.manifest, files.weights):
        if not p.is_file():
            raise CheckpointFormatError(f"checkpoint file not found: {p}")
    try:
        manifest = json.loads(files.manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointFormatError(f"{files.manifest} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise CheckpointFormatError(f"{files.manifest} is not a {FORMAT_NAME} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointFormatError(
            f"{files.manifest}: format version {manifest.get('format_version')!r} is not supported "
            f"(this code reads version {FORMAT_VERSION})"
        )
    if manifest.get("kind") != kind:
        raise CheckpointFormatError(f"{files.manifest} holds a {manifest.get('kind')!r}, not a {kind!r}")
    if manifest.get("weights_sha256") != _sha256(files.weights):
        raise CheckpointFormatError(
            f"{files.weights} does not match the hash recorded in {files.manifest} (files from different saves?)"
        )
    config = config_from_dict(config_type, manifest.get("config"))
    if expected_config is not None:
        diffs = config_differences(config, expected_config)
        if diffs:
            raise CheckpointConfigError(
                f"checkpoint {files.manifest} was saved with a different config:\n  " + "\n  ".join(diffs)
            )
    paths = [files.weights]
    for shard in manifest.get("shards") or []:
        shard_path = files.weights.with_name(str(shard.get("file")))
        if not shard_path.is_file() or _sha256(shard_path) != shard.get("sha256"):
            raise CheckpointFormatError(f"weights shard {shard_path} is missing or does not match {files.manifest}")
        paths.append(shard_path)
    state = {}
    for weights_path in paths:
        try:
            state.update(load_file(str(weights_path), device=str(device)))
        except (SafetensorError, OSError) as exc:
            raise CheckpointFormatError(f"cannot read weights {weights_path}: {exc}") from exc
    metadata = manifest.get("metadata")
    return Checkpoint(config, state, metadata if isinstance(metadata, dict) else {})


def split_tensors(tensors: dict[str, torch.Tensor], max_bytes: int | None) -> list[dict[str, torch.Tensor]]:
    """Tensors in order, grouped so no group exceeds ``max_bytes`` (a larger single tensor is an error)."""
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if max_bytes is not None and nbytes > max_bytes - 4096:
            raise CheckpointError(f"tensor {name} ({nbytes} bytes) does not fit in a file of {max_bytes} bytes")
        if max_bytes is not None and groups[-1] and size + nbytes > max_bytes - 65536:
            groups.append({})
            size = 0
        groups[-1][name] = tensor
        size += nbytes
    return groups


def save_sharded(tensors: dict[str, torch.Tensor], path: Path, max_bytes: int | None,
                 header: dict[str, str] | None = None) -> list[Path]:
    """Write ``tensors`` to the safetensors file ``path`` and, beyond ``max_bytes``, to
    ``path``'s name with ``.partN`` before ``.safetensors`` (N = 2, 3 ...); returns those extra files."""
    from safetensors.torch import save_file

    groups = split_tensors(tensors, max_bytes)
    save_file(groups[0], str(path), metadata=header)
    shards = []
    for i, group in enumerate(groups[1:], start=2):
        shards.append(path.with_name(path.name.replace(".safetensors", f".part{i}.safetensors")))
        save_file(group, str(shards[-1]), metadata=header)
    return shards


def checkpoint_id(path: str | Path) -> str:
    """A stable identifier of a saved checkpoint: ``"<kind>:<first 16 hex of the weights sha256>"``.

    Use it wherever another artefact must record which model it belongs to (for example the
    CLIP2Shape mapper's ``shape_model_id``). Reads only the JSON manifest.
    """
    files = CheckpointFiles.at(path)
    try:
        manifest = json.loads(files.manifest.read_text())
        return f"{manifest['kind']}:{manifest['weights_sha256'][:16]}"
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointFormatError(f"cannot read a checkpoint id from {files.manifest}: {exc}") from exc


def load_state_dict_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load tensors into ``model`` after checking names and shapes, with a readable error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = [
        f"{k}: stored {list(state_dict[k].shape)}, model {list(own[k].shape)}"
        for k in sorted(set(own) & set(state_dict))
        if state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        lines = []
        if missing:
            lines.append(f"missing tensors: {_short(missing)}")
        if unexpected:
            lines.append(f"unexpected tensors: {_short(unexpected)}")
        if wrong:
            lines.append("shape mismatches:\n    " + "\n    ".join(wrong[:20]))
        raise CheckpointWeightsError(f"{source} does not fit the model:\n  " + "\n  ".join(lines))
    model.load_state_dict(state_dict, strict=True)


def load_network(path: str | Path, config_type: type[ConfigT], network_type, *, kind: str,
                 device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The ``network_type(config)`` of a small single-network checkpoint ``path`` in eval mode
    without gradients (weights in float32 whatever they were saved as), and its metadata."""
    checkpoint = read_checkpoint(path, config_type, kind=kind, device=device)
    model = network_type(checkpoint.config).to(device)
    load_state_dict_strict(model, {k: v.float() for k, v in checkpoint.state_dict.items()},
                           source=str(CheckpointFiles.at(path).weights))
    model.eval().requires_grad_(False)
    return model, checkpoint.metadata


def _short(names: list[str], limit: int = 10) -> str:
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- shape model


def save_shape_model(path: str | Path, model, metadata: dict[str, Any] | None = None, *,
                     dtype: torch.dtype | None = None, max_file_bytes: int | None = None) -> CheckpointFiles:
    """Save a `ShapeModel` with its config and training ``metadata`` (options: `save_checkpoint`)."""
    return save_checkpoint(path, model, model.config, kind=SHAPE_MODEL_KIND, metadata=metadata, dtype=dtype,
                           max_file_bytes=max_file_bytes)


def load_shape_model(
    path: str | Path,
    *,
    expected_config=None,
    device: torch.device | str = "cpu",
):
    """Build a `ShapeModel` from checkpoint ``path``; returns ``(model, metadata)``.

    ``expected_config`` (a `ShapeModelConfig`) turns any config difference into a
    `CheckpointConfigError` instead of silently building the stored architecture.
    """
    from backend.models.shape_model import ShapeModel, ShapeModelConfig

    ckpt = read_checkpoint(
        path, ShapeModelConfig, kind=SHAPE_MODEL_KIND, expected_config=expected_config, device=device
    )
    model = ShapeModel(ckpt.config).to(device)
    load_state_dict_strict(model, ckpt.state_dict, source=str(CheckpointFiles.at(path).weights))
    return model, ckpt.metadata
