"""Dataset generation: shapes -> meshes, samples and Blender renders, in parallel, resumable.

Each shape is produced by one worker process into ``<root>/<category>/.tmp-<name>-<pid>/`` and
renamed into ``<root>/<category>/<name>/`` only once every file is written, so a shape
directory that exists is complete; an interrupted run leaves only temp dirs, which the next
run deletes and redoes. See docs/dataset.md for the layout.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .cameras import ViewSamplingConfig, sample_views
from .render_blender import RenderConfig
from .samples import SampleConfig, sdf_samples, surface_samples

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test", "test_unseen")


class DatasetConfigError(ValueError):
    """Bad generation settings, or settings that clash with an existing dataset."""


@dataclass(frozen=True)
class GenerationConfig:
    """Everything that decides the content of a generated dataset."""

    categories: tuple[str, ...] = ()
    """Categories to generate; empty = all procedural categories."""
    shapes_per_category: int = 10
    """Shapes per category; their seeds are base_seed, base_seed + 1, ..."""
    base_seed: int = 0
    """First shape seed."""
    mesh_resolution: int = 128
    """Marching-cubes grid size for mesh.ply (and the surface and distance samples)."""
    views: ViewSamplingConfig = field(default_factory=ViewSamplingConfig)
    """Cameras and lights (views per shape, resolution, field of view, ranges)."""
    render: RenderConfig = field(default_factory=RenderConfig)
    """Cycles settings."""
    samples: SampleConfig = field(default_factory=SampleConfig)
    """Surface and SDF sample counts."""
    val_fraction: float = 0.1
    """Fraction of each seen category's shapes in the val split."""
    test_fraction: float = 0.1
    """Fraction of each seen category's shapes in the (held-in) test split."""
    holdout_categories: tuple[str, ...] = ()
    """Categories kept out of train/val/test entirely: all their shapes go to test_unseen."""

    def to_json(self) -> dict:
        d = asdict(self)
        d["categories"] = list(self.resolved_categories())
        return d

    def resolved_categories(self) -> tuple[str, ...]:
        from .procedural import CATEGORIES

        return tuple(self.categories) if self.categories else CATEGORIES

    def validate(self) -> None:
        from .procedural import CATEGORIES

        unknown = [c for c in (*self.categories, *self.holdout_categories) if c not in CATEGORIES]
        if unknown:
            raise DatasetConfigError(f"unknown categories {unknown}; known: {', '.join(CATEGORIES)}")
        missing = [c for c in self.holdout_categories if c not in self.resolved_categories()]
        if missing:
            raise DatasetConfigError(f"held-out categories {missing} are not among the generated categories")
        if self.shapes_per_category < 1:
            raise DatasetConfigError("shapes_per_category must be >= 1")
        if self.base_seed < 0:
            raise DatasetConfigError("base_seed must be >= 0")
        if not (
            0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1
        ):
            raise DatasetConfigError("val_fraction and test_fraction must be in [0, 1) and sum to < 1")
        if self.views.resolution < 8 or self.views.views < 0:
            raise DatasetConfigError("resolution must be >= 8 and views >= 0")
        if self.mesh_resolution < 16:
            raise DatasetConfigError("mesh_resolution must be >= 16")


def shape_name(category: str, seed: int) -> str:
    return f"{category}_{seed:06d}"


def shape_dir(root: Path, category: str, seed: int) -> Path:
    return Path(root) / category / shape_name(category, seed)


def _shape_rng(tag: str, category: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(tag.encode()), zlib.crc32(category.encode()), seed])


def generate_shape(root: str | Path, category: str, seed: int, cfg: GenerationConfig) -> dict:
    """Produce one complete shape directory (atomically). Returns timings and stats."""
    from .procedural import GENERATOR_VERSION, make_shape

    final = shape_dir(Path(root), category, seed)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        shape = make_shape(category, seed)
        mesh = shape.mesh(cfg.mesh_resolution)
        mesh.visual.vertex_colors = np.concatenate(
            [np.round(shape.color(mesh.vertices) * 255), np.full((len(mesh.vertices), 1), 255)], axis=1
        ).astype(np.uint8)
        mesh.export(tmp / "mesh.ply")
        t_mesh = time.perf_counter()
        rng = _shape_rng("samples", category, seed)
        surf = surface_samples(shape, mesh, cfg.samples.surface_points, rng)
        np.savez_compressed(tmp / "points.npz", **surf)
        sdf = sdf_samples(shape, mesh, cfg.samples, rng, surf["points"])
        np.savez_compressed(tmp / "sdf.npz", **sdf)
        t_samples = time.perf_counter()
        radius = float(np.linalg.norm(mesh.vertices, axis=1).max())
        views = sample_views(_shape_rng("views", category, seed), cfg.views, radius) if cfg.views.views else []
        render_info: dict = {"materials": []}
        if views:
            from .render_blender import render_views

            materials = [m.to_json() for m in shape.materials]
            face_mat = shape.material_ids(mesh.triangles_center)
            render_info = render_views(
                mesh.vertices,
                mesh.faces,
                face_mat,
                materials,
                views,
                cfg.views.resolution,
                tmp / "views",
                cfg.render,
                seed=zlib.crc32(f"{category}/{seed}".encode()),
            )
        t_render = time.perf_counter()
        cameras = {
            "convention": {
                "world": "normalised object frame: Z up, front -Y, longest bbox side 1, bbox centre at origin",
                "world_to_cam": "OpenCV (x right, y down, z forward); = diag(1,-1,-1,1) @ inv(cam_to_world_blender)",
                "K": "pixels; pixel (row i, col j) centre at (u, v) = (j + 0.5, i + 0.5)",
                "depth": "z-depth along the camera axis (OpenCV z), 0 = background",
                "normal": "world-space unit normals, 0 = background",
            },
            "resolution": cfg.views.resolution,
            "fov_deg": cfg.views.fov_deg,
            "views": [dict(v, rgba=f"views/rgba_{v['index']:04d}.png") for v in views],
        }
        (tmp / "cameras.json").write_text(json.dumps(cameras, indent=1))
        timings = {
            "mesh_s": t_mesh - t0,
            "samples_s": t_samples - t_mesh,
            "render_s": t_render - t_samples,
            "total_s": time.perf_counter() - t0,
        }
        meta = shape.metadata()
        meta.update(
            {
                "name": final.name,
                "format_version": FORMAT_VERSION,
                "generator_version": GENERATOR_VERSION,
                "mesh": {
                    "resolution": cfg.mesh_resolution,
                    "vertices": int(len(mesh.vertices)),
                    "faces": int(len(mesh.faces)),
                    "watertight": bool(mesh.is_watertight),
                    "bounds": mesh.bounds.tolist(),
                },
                "samples": {"surface": int(len(surf["points"])), "sdf": int(len(sdf["points"]))},
                "views": len(views),
                "resolution": cfg.views.resolution,
                "render_materials": render_info["materials"],
                "timings": timings,
            }
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if final.exists():  # a stale copy (e.g. from a forced regeneration)
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"name": final.name, "category": category, "seed": seed, **timings}


def is_complete(root: str | Path, category: str, seed: int) -> bool:
    """A shape directory exists only once complete (it is renamed into place last)."""
    return (shape_dir(Path(root), category, seed) / "meta.json").is_file()


def assign_splits(cfg: GenerationConfig, existing: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Deterministic split of shape names (``'<category>/<name>'``).

    Held-out categories go to test_unseen. In every other category, shapes already assigned in
    ``existing`` (name -> split, from an earlier run) keep their split, and new shapes, in a
    seeded order, fill test then val up to their fractions (test gets at least one shape when a
    category has 3 or more), then train. So growing a dataset never moves a shape between splits.
    """
    existing = dict(existing or {})
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    seeds = range(cfg.base_seed, cfg.base_seed + cfg.shapes_per_category)
    for cat in cfg.resolved_categories():
        names = [f"{cat}/{shape_name(cat, s)}" for s in seeds]
        names += [n for n in existing if n.split("/", 1)[0] == cat and n not in names]
        held_out = cat in cfg.holdout_categories
        for n in names:
            if n in existing and (existing[n] == "test_unseen") != held_out:
                raise DatasetConfigError(
                    f"{n} is in split {existing[n]!r} of the existing dataset, which clashes with "
                    f"holdout_categories={list(cfg.holdout_categories)}; use a new --out directory"
                )
        if held_out:
            splits["test_unseen"] += names
            continue
        total = len(names)
        want_test = int(round(cfg.test_fraction * total)) if total >= 3 else 0
        if cfg.test_fraction > 0 and total >= 3:
            want_test = max(want_test, 1)
        want_val = int(round(cfg.val_fraction * total)) if total >= 3 else 0
        have = {s: sum(existing.get(n) == s for n in names) for s in SPLITS}
        new = [n for n in names if n not in existing]
        order = sorted(new, key=lambda n: zlib.crc32(f"split/{n}".encode()))
        for n in order:
            if have["test"] < want_test:
                split = "test"
            elif have["val"] < want_val:
                split = "val"
            else:
                split = "train"
            have[split] += 1
            existing[n] = split
        for n in names:
            splits[existing[n]].append(n)
    run_categories = set(cfg.resolved_categories())
    for n, split in existing.items():  # shapes of categories this run does not touch
        if n.split("/", 1)[0] not in run_categories:
            splits[split].append(n)
    return {k: sorted(v) for k, v in splits.items()}


def read_splits(root: Path) -> dict[str, str]:
    """name -> split for the split files of an existing dataset (empty if none)."""
    out: dict[str, str] = {}
    for split in SPLITS:
        p = Path(root) / "splits" / f"{split}.txt"
        if p.is_file():
            for n in p.read_text().split():
                out[n] = split
    return out


def _write_index(root: Path, cfg: GenerationConfig) -> None:
    from .procedural import GENERATOR_VERSION

    info = {
        "format_version": FORMAT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "categories": list(cfg.resolved_categories()),
        "seeds": list(range(cfg.base_seed, cfg.base_seed + cfg.shapes_per_category)),
        "resolution": cfg.views.resolution,
        "views": cfg.views.views,
        "config": cfg.to_json(),
    }
    path = root / "dataset.json"
    if path.exists():
        old = json.loads(path.read_text())
        for key in ("format_version", "generator_version", "resolution", "views"):
            if old.get(key) != info[key]:
                raise DatasetConfigError(
                    f"{path} was made with {key}={old.get(key)!r}, this run asks for {info[key]!r}; "
                    "use a new --out directory (or delete the old dataset)"
                )
        old_cfg = dict(old.get("config", {}))
        new_cfg = info["config"]
        for key in ("views", "render", "samples", "mesh_resolution", "val_fraction", "test_fraction"):
            if key in old_cfg and old_cfg[key] != json.loads(json.dumps(new_cfg[key])):
                raise DatasetConfigError(
                    f"{path}: setting {key!r} differs from the existing dataset; use a new --out directory"
                )
        # the shape set may grow: keep the union of categories and seeds
        info["categories"] = list(dict.fromkeys(old["categories"] + info["categories"]))
        info["seeds"] = sorted(set(old["seeds"]) | set(info["seeds"]))
    tmp = root / ".dataset.json.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, path)
    splits_dir = root / "splits"
    splits_dir.mkdir(exist_ok=True)
    for name, items in assign_splits(cfg, read_splits(root)).items():
        tmp_split = splits_dir / f".{name}.tmp"
        tmp_split.write_text("".join(f"{x}\n" for x in items))
        os.replace(tmp_split, splits_dir / f"{name}.txt")


def _worker_init(clean_sys_path: list[str]) -> None:
    # A parent that already imported bpy (the test suite, Blender itself) has Blender's script
    # folders first on sys.path; a spawned child inherits them, and there `import bpy` finds
    # Blender's pure-Python `bpy` package instead of the module. Start from the clean path.
    sys.path[:] = clean_sys_path
    from .render_blender import quiet_stdout

    quiet_stdout()


def _without_blender_paths(paths: list[str]) -> list[str]:
    user_config = str(Path.home() / ".config" / "blender")

    def added_by_blender(entry: str) -> bool:
        parts = Path(entry).parts
        in_bpy_scripts = "scripts" in parts and "bpy" in parts[:parts.index("scripts")]
        return in_bpy_scripts or entry.startswith(user_config)

    return [entry for entry in paths if not added_by_blender(entry)]


def _run_one(root: str, category: str, seed: int, cfg: GenerationConfig) -> dict:
    return generate_shape(root, category, seed, cfg)


def generate_dataset(
    root: str | Path, cfg: GenerationConfig, workers: int | None = None, log: Callable[[str], None] = print
) -> dict:
    """Generate (or complete) a dataset at ``root``; complete shapes are skipped.

    Shapes run in ``workers`` spawned processes (default: CPU count), each with its own bpy.
    Returns {"done": [...], "skipped": [...], "failed": [...], "seconds": float}.
    """
    cfg.validate()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_index(root, cfg)
    for stale in root.glob("*/.tmp-*"):  # leftovers of an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    todo, skipped = [], []
    for cat in cfg.resolved_categories():
        for seed in range(cfg.base_seed, cfg.base_seed + cfg.shapes_per_category):
            (skipped if is_complete(root, cat, seed) else todo).append((cat, seed))
    workers = max(1, workers or os.cpu_count() or 1)
    if cfg.render.threads == 0:
        cfg = _with_threads(cfg, max(1, (os.cpu_count() or 1) // workers))
    log(f"{len(todo)} shapes to make, {len(skipped)} already complete, {workers} worker(s)")
    done, failed = [], []
    t0 = time.perf_counter()
    if todo:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(_without_blender_paths(sys.path),)) as pool:
            pending = {pool.submit(_run_one, str(root), c, s, cfg): (c, s) for c, s in todo}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    cat, seed = pending.pop(fut)
                    try:
                        res = fut.result()
                    except Exception as e:  # one bad shape must not stop the run
                        failed.append({"name": shape_name(cat, seed), "error": f"{type(e).__name__}: {e}"})
                        log(f"FAILED {shape_name(cat, seed)}: {type(e).__name__}: {e}")
                        continue
                    done.append(res)
                    n = len(done) + len(failed)
                    elapsed = time.perf_counter() - t0
                    eta = elapsed / n * (len(todo) - n)
                    log(
                        f"[{n:>{len(str(len(todo)))}}/{len(todo)}] {res['name']}: {res['total_s']:.1f}s "
                        f"(mesh {res['mesh_s']:.1f}, samples {res['samples_s']:.1f}, render {res['render_s']:.1f}) "
                        f"elapsed {elapsed:.0f}s, eta {eta:.0f}s"
                    )
    return {
        "done": done,
        "skipped": [shape_name(c, s) for c, s in skipped],
        "failed": failed,
        "seconds": time.perf_counter() - t0,
    }


def _with_threads(cfg: GenerationConfig, threads: int) -> GenerationConfig:
    from dataclasses import replace

    return replace(cfg, render=replace(cfg.render, threads=threads))
