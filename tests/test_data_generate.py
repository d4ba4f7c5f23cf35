"""Dataset generation without renders: layout, splits, resume, atomic writes, config checks."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from backend.data import generate as gen
from backend.data.cameras import ViewSamplingConfig
from backend.data.dataset import ProceduralDataset
from backend.data.generate import DatasetConfigError, GenerationConfig, assign_splits, generate_dataset
from backend.data.records import DatasetError
from backend.data.samples import SampleConfig

TINY = GenerationConfig(
    categories=("bowl", "rock"),
    shapes_per_category=2,
    mesh_resolution=32,
    views=replace(ViewSamplingConfig(), views=0, resolution=32),
    samples=SampleConfig(surface_points=500, uniform_points=300, near_points=300),
)


def test_splits_hold_out_shapes_of_every_category_and_whole_categories():
    cfg = GenerationConfig(categories=("chair", "mug", "tree"), shapes_per_category=10, holdout_categories=("tree",))
    s = assign_splits(cfg)
    assert s == assign_splits(cfg)  # deterministic
    for cat in ("chair", "mug"):
        assert sum(n.startswith(cat) for n in s["test"]) == 1
        assert sum(n.startswith(cat) for n in s["val"]) == 1
        assert sum(n.startswith(cat) for n in s["train"]) == 8
    assert len(s["test_unseen"]) == 10 and all(n.startswith("tree/") for n in s["test_unseen"])
    everything = [n for v in s.values() for n in v]
    assert len(everything) == len(set(everything)) == 30


def test_growing_a_dataset_never_moves_shapes_between_splits():
    small = GenerationConfig(categories=("chair", "mug"), shapes_per_category=5)
    first = assign_splits(small)
    existing = {n: k for k, names in first.items() for n in names}
    grown = assign_splits(replace(small, shapes_per_category=20), existing)
    for split, names in first.items():
        assert set(names) <= set(grown[split])
    assert sum(n.startswith("chair/") for n in grown["test"]) == 2  # 10 % of 20
    # an untouched category keeps its shapes; a clashing hold-out is refused
    only_mug = assign_splits(GenerationConfig(categories=("mug",), shapes_per_category=5), existing)
    assert set(first["train"]) <= set(only_mug["train"])
    with pytest.raises(DatasetConfigError, match="clashes"):
        assign_splits(replace(small, holdout_categories=("mug",)), existing)


def test_bad_configs_raise():
    with pytest.raises(DatasetConfigError, match="unknown categories"):
        GenerationConfig(categories=("spaceship",)).validate()
    with pytest.raises(DatasetConfigError, match="held-out"):
        GenerationConfig(categories=("chair",), holdout_categories=("mug",)).validate()


def test_generate_resume_and_reader(tmp_path):
    root = tmp_path / "ds"
    logs: list[str] = []
    res = generate_dataset(root, TINY, workers=2, log=logs.append)
    assert sorted(r["name"] for r in res["done"]) == ["bowl_000000", "bowl_000001", "rock_000000", "rock_000001"]
    info = json.loads((root / "dataset.json").read_text())
    assert info["format_version"] == gen.FORMAT_VERSION and info["categories"] == ["bowl", "rock"]
    d = root / "bowl" / "bowl_000001"
    assert {p.name for p in d.iterdir()} == {"meta.json", "mesh.ply", "points.npz", "sdf.npz", "cameras.json"}
    # resume: nothing to do; a removed shape and a stale temp dir are handled
    again = generate_dataset(root, TINY, workers=1, log=logs.append)
    assert again["done"] == [] and len(again["skipped"]) == 4
    shutil.rmtree(d)
    (root / "rock" / ".tmp-rock_000000-999").mkdir()
    third = generate_dataset(root, TINY, workers=1, log=logs.append)
    assert [r["name"] for r in third["done"]] == ["bowl_000001"]
    assert not list(root.glob("*/.tmp-*"))
    # the regenerated shape is identical (seeded)
    ds = ProceduralDataset(root, "all")
    assert len(ds) == 4
    rec = ds.read("bowl/bowl_000001")
    assert rec.sdf.shape == (600,) and rec.surface_points.shape == (500, 3) and rec.images.shape[0] == 0
    assert rec.meta["category"] == "bowl" and rec.meta["seed"] == 1
    # a different resolution cannot be mixed into the same dataset
    with pytest.raises(DatasetConfigError, match="resolution"):
        generate_dataset(root, replace(TINY, views=replace(TINY.views, resolution=64)), workers=1, log=logs.append)


def test_failed_shape_leaves_no_partial_directory(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gen, "sdf_samples", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        gen.generate_shape(tmp_path, "bowl", 0, TINY)
    assert not gen.is_complete(tmp_path, "bowl", 0)
    assert list((tmp_path / "bowl").iterdir()) == []


def test_reader_errors(tmp_path):
    with pytest.raises(DatasetError, match="dataset.json"):
        ProceduralDataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"categories": []}))
    with pytest.raises(ValueError, match="unknown split"):
        ProceduralDataset(tmp_path, "training")
    with pytest.raises(DatasetError, match="split file"):
        ProceduralDataset(tmp_path, "train")
