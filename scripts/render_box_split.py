#!/usr/bin/env python
"""Render the box check split: photo-like views of boxes, for the outline solid's box path.

    .venv/bin/python scripts/render_box_split.py                      # -> data_cache/box_split
    .venv/bin/python scripts/bench_reconstruct.py --real-data data_cache/box_split --splits real

The real split has one box-like object (a lego brick, studded and hollow underneath); this split
checks what `backend.geometry.cuboid` finds and misses on plain boxes. It is made here, so it is a
check of that path, not a benchmark of real objects. Each of ``--boxes`` boxes has random sides
(the longest 1, the others 0.2-1), is turned about its vertical axis and wears one of four
surfaces (a plain colour, blotchy noise, stripes, or a different colour per face). It is rendered
by the real split's renderer (`backend.data.render_photos`): 3 views at low, middle and high
elevation, each with its own lens and light; boxes cycle through a transparent background, a
plain backdrop and a textured floor. Same files as the real split (``views.json`` with ``name``
and ``kind``, ``view_K.png``, ``mask_K.png``, ``reference.npz``).
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SURFACES = ("plain", "noise", "stripes", "faces")
BACKGROUNDS = ("alpha", "plain", "textured")


def surface_image(kind: str, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[128, 128, 3] float texture of a box face."""
    if kind == "noise":
        blotches = np.kron(rng.normal(0, 1, (16, 16)), np.ones((8, 8)))[..., None]
        grain = 0.03 * rng.normal(0, 1, (128, 128, 1))
        return np.clip(colour * (1 + 0.15 * blotches) + grain, 0, 1)
    if kind == "stripes":
        rows = np.arange(128)[:, None, None]
        return np.where((rows // 16) % 2 == 0, colour, colour * 0.6) * np.ones((128, 128, 3))
    return np.ones((128, 128, 3)) * colour


def box_mesh_file(path: Path, sides: np.ndarray, kind: str, yaw: float, rng: np.random.Generator) -> None:
    """A textured box (glTF, so Y up on disk) of ``sides`` (x, y, z with z up), turned by ``yaw``
    about its vertical axis."""
    import trimesh
    from PIL import Image

    # trimesh writes glTF as it holds it (Y up): build the box with Blender's z as trimesh's y
    box = trimesh.creation.box(extents=(sides[0], sides[2], sides[1]))
    corners = box.vertices[box.faces].reshape(-1, 3)
    faces = np.arange(len(corners)).reshape(-1, 3)
    normals = np.repeat(box.face_normals, 3, axis=0)
    axis = np.abs(normals).argmax(1)
    planar = {0: [1, 2], 1: [0, 2], 2: [0, 1]}
    uv = np.stack([corners[k, planar[a]] for k, a in enumerate(axis)]) / sides.max() + 0.5
    colour = rng.uniform(0.2, 0.9, 3)
    if kind == "faces":
        palette = np.array([colour, colour[::-1], colour * 0.5 + 0.4])
        mesh = trimesh.Trimesh(corners, faces, process=False,
                               vertex_colors=(np.clip(palette[axis], 0, 1) * 255).astype(np.uint8))
    else:
        image = Image.fromarray((surface_image(kind, colour, rng) * 255).astype(np.uint8))
        mesh = trimesh.Trimesh(corners, faces, process=False,
                               visual=trimesh.visual.TextureVisuals(uv=uv, image=image))
    mesh.apply_transform(trimesh.transformations.rotation_matrix(np.radians(yaw), [0, 1, 0]))
    mesh.export(path)


def main(argv: list[str] | None = None) -> int:
    from backend.data.render_photos import PhotoConfig, render_object, sample_views

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "data_cache" / "box_split"))
    parser.add_argument("--boxes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--resolution", type=int, default=384)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    cfg = PhotoConfig(resolution=args.resolution, samples=args.samples)
    for index in range(args.boxes):
        name, kind = f"box{index}", SURFACES[index % len(SURFACES)]
        sides = np.array([1.0, rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0)])
        rng.shuffle(sides)
        out = Path(args.out) / name
        out.mkdir(parents=True, exist_ok=True)
        box_mesh_file(out / "mesh.glb", sides, kind, float(rng.uniform(0, 90)), rng)
        views = sample_views(np.random.default_rng(zlib.crc32(name.encode())), 3, BACKGROUNDS[index % 3])
        record = render_object(out / "mesh.glb", views, out, cfg, seed=index)
        record.update(name=name, kind=f"box ({kind})", sides=sides.round(3).tolist())
        (out / "views.json").write_text(json.dumps(record, indent=1))
        print(f"{name}: {kind}, sides {sides.round(2).tolist()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
