"""A finished job on disk: the mesh in the asked-for format and its metadata JSON beside it
(method, fitted camera, timings, warnings). One writer for the single-item CLI and for batches."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from backend import protocol
from backend.protocol import MeshPayload, Message


def write_result_files(final: Message, output: Path, extra: dict[str, Any] | None = None
                       ) -> tuple[MeshPayload, Path, Path]:
    """Write a ``result`` message's mesh to ``output`` and its metadata (plus ``extra``) to
    ``output`` with a .json suffix. The JSON is written last and atomically, so a JSON on disk
    always describes a complete mesh. Returns (mesh, mesh path, JSON path)."""
    from backend.geometry.mesh_files import export_mesh

    mesh = protocol.result_mesh(final)
    path = export_mesh(mesh, output)
    meta_path = path.with_suffix(".json")
    write_json_atomic(meta_path, {**final.get("metadata"), **(extra or {})})
    return mesh, path, meta_path


def write_json_atomic(path: Path, value: Any) -> None:
    """Readers see the old file or the new one, never half of one (a kill mid-write included)."""
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
