"""Resumable training checkpoints.

Per saved step ``NAME = <run>/checkpoints/step_<step:07d>``:

* ``NAME.safetensors`` + ``NAME.json``: the shape model (`save_shape_model`), loadable by the
  pipeline exactly like the committed default weights;
* ``NAME.train.safetensors`` + ``NAME.train.json``: optimiser tensors, the renderer's beta (end-to-end
  training) and any further named tensors such as random-generator states (safetensors), and the
  step, optimiser hyper-parameters and training config (JSON).

``<run>/checkpoints/latest.txt`` names the newest complete checkpoint; it is written last, so an
interrupted save leaves the previous one in charge.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

TRAIN_STATE_FORMAT = "stepstone-train-state"
TRAIN_STATE_VERSION = 1


class TrainCheckpointError(RuntimeError):
    """A training checkpoint is missing, incomplete or does not match the run."""


@dataclass
class TrainState:
    step: int
    """Optimiser steps completed."""
    optimizer: dict[str, Any]
    """``optimizer.state_dict()``."""
    renderer: dict[str, torch.Tensor]
    """``renderer.state_dict()`` (the learned beta); empty when saved without a renderer."""
    extra: dict[str, Any]
    """JSON facts (config, wall time so far, last metrics)."""
    tensors: dict[str, torch.Tensor]
    """The further tensors given to `save_training_checkpoint`."""


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


SHARD_BYTES = 15 * 2**20
"""Largest file of a checkpoint (model or training state; more files when needed): every file
can come back from the GPU machine, whose returned files must stay under 16 MiB."""


def save_training_checkpoint(run_dir: str | Path, model, optimizer, renderer, step: int,
                             metadata: dict[str, Any], keep: int = 3,
                             tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write model + training state for ``step`` (``renderer`` may be None, ``tensors`` are
    stored as they are), in full precision so a resume is exact, in files of at most
    `SHARD_BYTES`; returns the model checkpoint path (no suffix)."""
    from backend.models.checkpoint import save_shape_model, save_sharded

    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = folder / f"step_{step:07d}"
    save_shape_model(name, model, metadata, max_file_bytes=SHARD_BYTES)
    stored, layout = _flatten_optimizer(optimizer.state_dict())
    for key, value in (renderer.state_dict() if renderer is not None else {}).items():
        stored[f"renderer.{key}"] = value.detach().cpu().contiguous()
    for key, value in (tensors or {}).items():
        stored[f"extra.{key}"] = value.detach().cpu().contiguous()
    shards = [p.name for p in save_sharded(stored, Path(str(name) + ".train.safetensors"), SHARD_BYTES)]
    state_json = {"format": TRAIN_STATE_FORMAT, "format_version": TRAIN_STATE_VERSION, "step": step,
                  "optimizer": layout, "metadata": metadata, **({"shards": shards} if shards else {})}
    Path(str(name) + ".train.json").write_text(json.dumps(state_json, indent=1))
    tmp = folder / ".latest.tmp"
    tmp.write_text(name.name + "\n")
    os.replace(tmp, folder / "latest.txt")
    _prune(folder, keep)
    return name


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (path without suffix), or None."""
    marker = checkpoint_dir(run_dir) / "latest.txt"
    if not marker.is_file():
        return None
    name = checkpoint_dir(run_dir) / marker.read_text().strip()
    for suffix in (".json", ".safetensors", ".train.json", ".train.safetensors"):
        if not Path(str(name) + suffix).is_file():
            raise TrainCheckpointError(f"checkpoint {name} is incomplete: {name}{suffix} is missing")
    return name


def load_training_state(name: str | Path, device="cpu") -> TrainState:
    """Read ``NAME.train.json`` + ``NAME.train.safetensors``."""
    from safetensors.torch import load_file

    meta = json.loads(Path(str(name) + ".train.json").read_text())
    if meta.get("format") != TRAIN_STATE_FORMAT or meta.get("format_version") != TRAIN_STATE_VERSION:
        raise TrainCheckpointError(f"{name}.train.json is not a version {TRAIN_STATE_VERSION} training state")
    tensors = load_file(str(name) + ".train.safetensors", device=str(device))
    for shard in meta.get("shards", []):
        path = Path(name).with_name(shard)
        if not path.is_file():
            raise TrainCheckpointError(f"training state shard {path} is missing")
        tensors.update(load_file(str(path), device=str(device)))
    renderer = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("renderer.")}
    extra = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("extra.")}
    optimizer = _unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith("opt.")}, meta["optimizer"])
    return TrainState(int(meta["step"]), optimizer, renderer, meta.get("metadata", {}), extra)


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"opt.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], layout: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for key, value in layout.get("scalars", {}).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": layout["param_groups"]}


def _prune(folder: Path, keep: int) -> None:
    steps = sorted(folder.glob("step_*.train.json"))
    for old in steps[:-keep] if keep > 0 else []:
        stem = old.name[: -len(".train.json")]
        for path in folder.glob(stem + ".*"):  # model, training state and their shards
            path.unlink(missing_ok=True)


def carry_on_from(model: torch.nn.Module, init_from: str | Path, load, device) -> dict:
    """Put the weights of checkpoint ``init_from`` (read by ``load(path, device) -> (network,
    metadata)``) into ``model``, which must have the same config; returns that run's record, which
    the new run keeps under ``earlier``."""
    loaded, earlier = load(init_from, device)
    if loaded.config != model.config:
        raise ValueError(f"{init_from} has another architecture ({loaded.config}) than {model.config}")
    model.load_state_dict(loaded.state_dict())
    model.train().requires_grad_(True)
    return earlier
