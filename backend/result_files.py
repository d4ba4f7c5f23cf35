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


MINED_INDEX = "clusters.json"


def write_mined_files(final: Message, folder: Path, suffix: str = ".glb", extra: dict[str, Any] | None = None
                      ) -> tuple[Path, list[Path]]:
    """Write a ``mine`` result: each cluster's mesh as ``folder/NAME{suffix}`` (its own texture,
    cut from the result's atlas) and ``folder/clusters.json`` (written last and atomically): the
    clusters with their ``images``, ``mesh`` file and per-image ``cameras``, then the outliers,
    rejected photos and the run's metadata. Returns (the index, the mesh files)."""
    from backend.geometry.mesh_files import export_mesh

    metadata = final.get("metadata")
    folder.mkdir(parents=True, exist_ok=True)
    files, clusters = [], []
    for cluster, mesh in protocol.split_mined(protocol.result_mesh(final), metadata):
        if mesh.texture_png is not None and "uv_tile" in cluster:
            mesh = own_texture(mesh, cluster["uv_tile"])
        path = export_mesh(mesh, folder / f"{cluster['name']}{suffix}")
        files.append(path)
        kept = {k: v for k, v in cluster.items() if k not in ("vertices", "faces", "offset", "uv_tile")}
        clusters.append({"name": cluster["name"], "mesh": path.name, **kept})
    index = folder / MINED_INDEX
    rest = {k: v for k, v in metadata.items() if k != "clusters"}
    write_json_atomic(index, {"clusters": clusters, **rest, **(extra or {})})
    return index, files


def own_texture(mesh: MeshPayload, tile: list[float]) -> MeshPayload:
    """The mesh with its tile of a shared texture atlas as its own texture, UVs remapped."""
    import io

    import numpy as np
    from PIL import Image

    from backend.images import encode_png

    u0, v0, u1, v1 = tile
    atlas = Image.open(io.BytesIO(mesh.texture_png)).convert("RGB")
    width, height = atlas.size
    # UVs count up from the bottom, image rows down from the top
    box = (round(u0 * width), round((1 - v1) * height), round(u1 * width), round((1 - v0) * height))
    texture = encode_png(np.asarray(atlas.crop(box)))
    uvs = (mesh.uvs - np.array([u0, v0], np.float32)) / np.array([u1 - u0, v1 - v0], np.float32)
    return MeshPayload(mesh.vertices, mesh.faces, mesh.normals, uvs.astype(np.float32), mesh.colors, texture,
                       mesh.shading)
