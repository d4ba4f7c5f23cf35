#!/usr/bin/env python
"""Bake third-party meshes for training: Sweet Home 3D's furniture catalogues (Debian's
``sweethome3d-furniture``: Blend Swap CC-0 and CC-BY, Kator Legaz, Reallusion and Scopia, CC0 or
CC-BY 3.0; about 800 objects: furniture, lamps, plants, kitchenware, appliances, vehicles,
people) into the training pool's format (`backend.data.mesh_bank`).

    .venv/bin/python scripts/bake_training_meshes.py            # -> data_cache/training_meshes (~10 min)
    .venv/bin/python scripts/train_layered_depth.py --meshes data_cache/training_meshes ...

The package is downloaded once with ``apt-get download`` (as `scripts/fetch_real_meshes.py` does,
into the same download cache). The real-object benchmark's own meshes (`scripts/real_objects.json`:
the oak chair, the cupcake and the motorbike come from these catalogues) and doors and windows
(frames round a hole in a wall, not objects) are left out. Each mesh is turned by its catalogue's
``modelRotation``, then from the catalogues' Y up to Z up (front -Y), normalised to the unit box
and baked; ``manifest.json`` lists every baked mesh with its catalogue, creator and licence, and
the ones that could not be baked with the reason. Reruns skip meshes already baked.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_real_meshes import DEFAULT_OUT as REAL_MESHES  # noqa: E402
from fetch_real_meshes import deb_data_tar, download, load_manifest, load_source, normalise, write_single_mesh_glb  # noqa: E402

from backend.data.mesh_bank import MANIFEST, MeshBakeError, MeshPart, bake_mesh, normalised  # noqa: E402

PACKAGE = {"registry": "debian", "package": "sweethome3d-furniture", "version": "1.8-1"}

CATALOGUES = {
    "BlendSwap-CC-0.sh3f": "CC0",
    "BlendSwap-CC-BY.sh3f": "CC-BY-3.0",
    "KatorLegaz.sh3f": "CC-BY-3.0-US",
    "Reallusion.sh3f": "CC-BY-3.0-US",
    "Scopia.sh3f": "CC-BY-3.0",
}
"""Catalogue -> licence, from the package's Debian copyright file."""

Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""Sweet Home 3D models are Y up and face +Z; the training pool's shapes are Z up and face -Y."""

DEFAULT_OUT = ROOT / "data_cache" / "training_meshes"

EVALUATION_EVERY = 25
"""Every this many catalogue objects (the 13th of each run of 25, in catalogue order), one is held
out of the bank for the catalogue split: photos of objects that training never saw, beside the
real split (`render_real_split.py --manifest`)."""

DEFAULT_EVALUATION_OUT = ROOT / "data_cache" / "catalogue_meshes"


def catalogue_items(properties: str) -> list[dict]:
    """The furniture of a ``PluginFurnitureCatalog.properties``: one dict per ``#N`` index."""
    items: dict[int, dict] = {}
    for line in properties.splitlines():
        key, sep, value = line.partition("=")
        name, hash_, index = key.strip().partition("#")
        if line.startswith("#") or not sep or not hash_ or not index.isdigit():
            continue
        items.setdefault(int(index), {})[name] = value.strip()
    return [items[i] for i in sorted(items)]


def benchmark_models() -> set[str]:
    """Catalogue paths (``folder/model.obj`` inside an .sh3f) of the real-object benchmark's meshes."""
    return {entry["path"].rpartition("!")[2] for entry in load_manifest()
            if entry["package"] == PACKAGE["package"]}


def part_colour(mesh) -> np.ndarray:
    """A part's sRGB colour 0..1: its texture's mean over its vertices, else its material's colour."""
    visual = mesh.visual
    material = getattr(visual, "material", None)
    if getattr(visual, "uv", None) is not None and getattr(material, "image", None) is not None:
        try:
            return np.asarray(visual.to_color().vertex_colors, dtype=np.float64)[:, :3].mean(0) / 255.0
        except Exception:  # noqa: BLE001 - an unreadable texture falls back to the material's colour
            pass
    colour = getattr(material, "main_color", None)
    if colour is None and getattr(visual, "kind", None) in ("vertex", "face"):
        colour = np.asarray(visual.vertex_colors).mean(0)
    return np.asarray(colour if colour is not None else (200, 200, 200), dtype=np.float64)[:3] / 255.0


def model_rotation(item: dict) -> np.ndarray:
    values = item.get("modelRotation")
    return np.array([float(v) for v in values.split()]).reshape(3, 3) if values else np.eye(3)


def held_out_indices(count: int) -> set[int]:
    """Which of ``count`` catalogue objects (in catalogue order) the catalogue split holds out."""
    return {i for i in range(count) if i % EVALUATION_EVERY == EVALUATION_EVERY // 2}


def load_item(archive: zipfile.ZipFile, item: dict) -> list:
    """The item's meshes (trimesh, visuals kept) as its catalogue stores them, Y up."""
    model = item["model"].lstrip("/")
    folder = model.rpartition("/")[0] + "/"
    with tempfile.TemporaryDirectory() as tmp:
        for member in archive.namelist():
            if member.startswith(folder) and not member.endswith("/"):
                target = Path(tmp) / member
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
        meshes = load_source(Path(tmp) / model)
        for mesh in meshes:  # textures are read while their files still exist
            material = getattr(mesh.visual, "material", None)
            if getattr(material, "image", None) is not None:
                material.image.load()
    turn = np.eye(4)
    turn[:3, :3] = model_rotation(item)
    return [m.copy().apply_transform(turn) for m in meshes if len(m.faces)]


def bake_item(archive: zipfile.ZipFile, item: dict, out: Path, grid: int) -> None:
    meshes = load_item(archive, item)
    parts = [MeshPart(np.asarray(m.vertices, dtype=np.float64) @ Y_UP_TO_Z_UP.T, np.asarray(m.faces), part_colour(m))
             for m in meshes]
    bake_mesh(normalised(parts), grid=grid).save(out)


def write_evaluation_item(archive: zipfile.ZipFile, item: dict, folder: Path) -> None:
    """The item as `scripts/fetch_real_meshes.py` writes a real-split mesh: ``folder/mesh.glb``, Y up
    in glTF (Z up in Blender), centred, longest side 1."""
    folder.mkdir(parents=True, exist_ok=True)
    write_single_mesh_glb(normalise(load_item(archive, item), "+Y", None), folder / "mesh.glb", folder.name)


_ARCHIVES: dict[str, zipfile.ZipFile] = {}
"""The catalogues, opened once per worker process (`_open_catalogues`)."""


def _open_catalogues(deb: Path) -> None:
    import tarfile

    data, _ = deb_data_tar(deb.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            name = member.name.rpartition("/")[2]
            if name in CATALOGUES:
                _ARCHIVES[name] = zipfile.ZipFile(io.BytesIO(tar.extractfile(member).read()))


def _bake(catalogue: str, item: dict, target: Path, grid: int, evaluation: bool = False) -> str | None:
    """Bake one item in a worker (or write it for the catalogue split): None, or why it could not be."""
    try:
        if evaluation:
            write_evaluation_item(_ARCHIVES[catalogue], item, target)
        else:
            bake_item(_ARCHIVES[catalogue], item, target, grid)
    except (MeshBakeError, ValueError, KeyError, IndexError) as exc:
        return str(exc)
    return None


def main(argv: list[str] | None = None) -> int:
    from concurrent.futures import ProcessPoolExecutor

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--grid", type=int, default=64, help="baked grid side (the CPU pool's is 64)")
    parser.add_argument("--limit", type=int, default=0, help="bake at most this many (0: all)")
    parser.add_argument("--jobs", type=int, default=2, help="processes baking side by side")
    parser.add_argument("--evaluation-out", default=str(DEFAULT_EVALUATION_OUT),
                        help="where the held-out objects' meshes and objects.json go")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deb = download(PACKAGE, REAL_MESHES / "_downloads")
    _open_catalogues(deb)
    excluded = benchmark_models()
    entries = []  # (catalogue, item, manifest entry)
    for catalogue, licence in CATALOGUES.items():
        archive = _ARCHIVES[catalogue]
        for item in catalogue_items(archive.read("PluginFurnitureCatalog.properties").decode("utf-8", "replace")):
            model = item.get("model", "").lstrip("/")
            if not model or model in excluded or item.get("doorOrWindow") == "true":
                continue
            stem = f"{catalogue.removesuffix('.sh3f')}__{model.rpartition('/')[0].replace('/', '_')}"
            entries.append((catalogue, item, {
                "file": f"{stem}.npz", "name": item.get("name", stem), "category": item.get("category"),
                "source": f"debian:{PACKAGE['package']}={PACKAGE['version']}:{catalogue}!{model}",
                "creator": item.get("creator"), "licence": licence}))
    held_out = held_out_indices(len(entries))
    if args.limit:
        entries = entries[:args.limit]
    evaluation_out = Path(args.evaluation_out)
    baked, failed, evaluation = [], [], []
    with ProcessPoolExecutor(args.jobs, initializer=_open_catalogues, initargs=(deb,)) as pool:
        pending = {}
        for index, (catalogue, item, entry) in enumerate(entries):
            if index in held_out:
                (out / entry["file"]).unlink(missing_ok=True)  # never in the bank
                name = Path(item["model"]).parent.name.lower().replace("-", "_")
                target = evaluation_out / name
                if (target / "mesh.glb").exists():
                    evaluation.append((name, entry))
                    continue
                pending[pool.submit(_bake, catalogue, item, target, args.grid, True)] = (name, entry)
                continue
            target = out / entry["file"]
            if target.exists():
                baked.append(entry)
                continue
            pending[pool.submit(_bake, catalogue, item, target, args.grid)] = (None, entry)
        for future, (name, entry) in pending.items():  # name: the catalogue split's, for a held-out object
            problem = future.result()
            if problem is not None:
                failed.append({**entry, "reason": problem})
                print(f"skipped {entry['file']}: {problem}", flush=True)
            elif name is not None:
                evaluation.append((name, entry))
                print(f"held out {name}", flush=True)
            else:
                baked.append(entry)
                print(f"baked {entry['file']}", flush=True)
    baked.sort(key=lambda e: e["file"])
    manifest = {"package": PACKAGE, "grid": args.grid, "meshes": baked, "skipped": failed,
                "excluded": sorted(excluded), "held_out": sorted(e["source"] for _, e in evaluation)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    if evaluation:
        evaluation_out.mkdir(parents=True, exist_ok=True)
        (evaluation_out / "objects.json").write_text(json.dumps(
            [{"name": name, "kind": entry["category"], "licence": entry["licence"], "registry": PACKAGE["registry"],
              "package": PACKAGE["package"], "version": PACKAGE["version"], "path": entry["source"].split(":", 2)[2],
              "creator": entry["creator"]} for name, entry in sorted(evaluation)], indent=1))
    print(f"{len(baked)} meshes in {out} ({len(failed)} skipped); {len(evaluation)} held out in {evaluation_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
