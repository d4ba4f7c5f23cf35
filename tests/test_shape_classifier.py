"""The shape classifier (voxels, network, augmentation, training) and the text benchmark's measures."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh
from script_modules import load_script

from backend.train.shape_classifier import (
    FINE,
    GRID,
    LIMIT,
    AugmentConfig,
    ClassifierConfig,
    OccupancySet,
    ShapeClassifier,
    TrainConfig,
    augment,
    classify_mesh,
    load_classifier,
    pool_occupancy,
    save_classifier,
    train_classifier,
    voxelise_mesh,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")
NODES = -LIMIT + 2 * LIMIT / (FINE - 1) * np.arange(FINE)
H = 2 * LIMIT / (FINE - 1)


def load_bench():
    return load_script("bench_text")


def box_nodes(half: np.ndarray, margin: float) -> np.ndarray:
    """Nodes of the voxel grid inside a centred box of half extents ``half`` grown by ``margin``."""
    x, y, z = np.meshgrid(NODES, NODES, NODES, indexing="ij")
    return (np.abs(x) <= half[0] + margin) & (np.abs(y) <= half[1] + margin) & (np.abs(z) <= half[2] + margin)


# ------------------------------------------------------------------------------------ voxels
def test_a_box_fills_its_cells_whatever_its_size_and_place():
    extents = np.array([1.0, 0.5, 0.25])
    box = trimesh.creation.box(extents=extents * 3.0)
    box.apply_translation([2.0, -1.0, 5.0])  # voxelise_mesh normalises to the unit box first
    occupancy = voxelise_mesh(box.vertices, box.faces)
    half = extents / 2
    assert occupancy[box_nodes(half, -0.5 * H)].all(), "a node inside the box is empty"
    assert not occupancy[~box_nodes(half, 0.6 * H)].any(), "a node outside the box is filled"


def test_a_hole_in_the_surface_still_fills_the_inside():
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    vertices, faces = trimesh.remesh.subdivide_to_size(box.vertices, box.faces, max_edge=H * 0.5)
    # a hole three nodes across in the +X side: the inside leaks out unless the closing seals it
    hole = np.linalg.norm(vertices[faces].mean(1) - [0.5, 0.03, 0.01], axis=1) < 1.5 * H
    mesh = trimesh.Trimesh(vertices, faces[~hole], process=False)
    mesh.remove_unreferenced_vertices()
    assert hole.sum() > 100 and not mesh.is_watertight
    occupancy = voxelise_mesh(mesh.vertices, mesh.faces)
    assert occupancy[box_nodes(np.full(3, 0.5), -0.5 * H)].all()


def test_pooling_gives_occupancy_fractions_on_the_classifier_grid():
    occupancy = torch.zeros(2, 1, FINE, FINE, FINE)
    occupancy[0, 0, :2, :2, :1] = 1.0  # half of the first 2³ block
    pooled = pool_occupancy(occupancy)
    assert pooled.shape == (2, 1, GRID, GRID, GRID)
    assert pooled[0, 0, 0, 0, 0] == pytest.approx(0.5)
    assert float(pooled.sum()) == pytest.approx(0.5)


# ------------------------------------------------------------------------------------ model
def test_the_classifier_maps_a_batch_of_grids_to_category_logits():
    model = ShapeClassifier()
    logits = model(torch.rand(3, 1, GRID, GRID, GRID))
    assert logits.shape == (3, len(model.config.categories)) == (3, 23)
    assert 1e5 < sum(p.numel() for p in model.parameters()) < 5e5


def test_augmentation_switched_off_is_the_identity_and_dilation_only_grows():
    occupancy = torch.from_numpy(box_nodes(np.array([0.3, 0.1, 0.2]), 0.0)).float()[None, None].repeat(2, 1, 1, 1, 1)
    off = AugmentConfig(scale=(1.0, 1.0), shift=0.0, clean_share=1.0, dilate_share=0.0, erode_share=0.0)
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(augment(occupancy, off, generator), occupancy)
    grown = augment(occupancy, replace(off, dilate_share=1.0), generator)
    assert bool((grown >= occupancy).all()) and grown.sum() > occupancy.sum()
    distorted = augment(occupancy, AugmentConfig(), generator)
    assert set(distorted.unique().tolist()) <= {0.0, 1.0}


def two_kinds(count: int) -> OccupancySet:
    """Tall thin boxes (label 0) and flat wide ones (label 1) of random sizes."""
    rng = np.random.default_rng(0)
    grids, labels = [], []
    for i in range(count):
        label = i % 2
        tall, flat = rng.uniform(0.3, 0.5), rng.uniform(0.05, 0.15)
        half = np.array([flat, flat, tall]) if label == 0 else np.array([tall, tall, flat])
        grids.append(np.packbits(box_nodes(half, 0.0).reshape(-1)))
        labels.append(label)
    return OccupancySet(np.stack(grids), np.array(labels), np.arange(count))


def test_training_reduces_the_loss_and_the_weights_round_trip(tmp_path):
    data = two_kinds(16)
    config = ClassifierConfig(channels=(4, 8), pooled=1, dropout=0.0, categories=("tall", "flat"))
    model, report = train_classifier(data, TrainConfig(epochs=4, batch=8, lr=1e-2), config, log=lambda _m: None)
    assert report.losses[-1] < report.losses[0]
    path = tmp_path / "classifier.pt"
    save_classifier(model, path, metadata={"shapes": 16})
    loaded, metadata = load_classifier(path)
    grids = pool_occupancy(data.grids(slice(0, 4)))
    assert metadata == {"shapes": 16} and loaded.config == config
    assert torch.allclose(loaded(grids), model(grids))


def test_classify_mesh_gives_probabilities_over_the_categories():
    model = ShapeClassifier().eval()
    box = trimesh.creation.box(extents=(0.4, 0.4, 1.0))
    probs = classify_mesh(model, box.vertices, box.faces)
    assert probs.shape == (23,) and probs.sum() == pytest.approx(1.0, abs=1e-5) and (probs >= 0).all()


# ------------------------------------------------------------------------------------ benchmark measures
def test_r_precision_counts_the_own_prompt_within_the_top_r_and_ties_by_chance():
    bench = load_bench()
    # three results, four prompts: prompts 0 and 1 share a category, 2 and 3 another
    relevant = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1]], bool)
    scores = np.array([
        [0.9, 0.9, 0.1, 0.1],  # own prompt tied first with its category: a hit
        [0.1, 0.1, 0.8, 0.8],  # the other category ranks first: a miss
        [0.5, 0.5, 0.5, 0.5],  # everything tied: chance, R / P = 2 / 4
    ])
    assert bench.r_precision(scores, np.array([0, 1, 2]), relevant) == pytest.approx((1 + 0 + 0.5) / 3)
    failed = np.full((1, 4), -np.inf)
    assert bench.r_precision(failed, np.array([0]), relevant[:1]) == 0.0


def test_match_scores_break_ties_by_colour_and_sink_failures():
    bench = load_bench()
    prompts = [bench.Prompt("a chair", "chair", "chair", False),
               bench.Prompt("a red chair", "chair", "chair", False, colour="red"),
               bench.Prompt("a vase", "vase", "vase", False)]
    categories = ("chair", "vase")
    probs = np.array([[0.7, 0.3], [np.nan, np.nan]])
    scores = bench.match_scores(probs, ["red", None], prompts, categories)
    assert scores[0, 1] > scores[0, 0] > scores[0, 2]
    assert scores[0, 1] - scores[0, 0] == pytest.approx(bench.TIE_BREAK)
    assert np.isneginf(scores[1]).all()


def test_surface_colour_weights_faces_by_area_and_gets_its_name():
    bench = load_bench()
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [2.01, 0, 0], [2, 0.01, 0]], float)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    colours = np.array([[200, 30, 30, 255]] * 3 + [[20, 40, 220, 255]] * 3, np.uint8)  # big red, tiny blue
    rgb = bench.surface_colour(vertices, faces, colours)
    assert rgb == pytest.approx(np.array([200, 30, 30]) / 255, abs=1e-3)
    assert bench.colour_name(rgb) == "red"
    assert bench.colour_name(np.array([0.1, 0.2, 0.85])) == "blue"
    assert bench.colour_name(np.array([0.45, 0.1, 0.1])) in ("red", "brown")  # dark: shade dropped


def test_size_words_compare_height_over_width_with_the_plain_prompt():
    bench = load_bench()
    tall = np.array([[-0.1, -0.1, -0.5], [0.1, 0.1, 0.5]])
    wide = np.array([[-0.5, -0.2, -0.1], [0.5, 0.2, 0.1]])
    assert bench.aspect(tall) == pytest.approx(5.0) and bench.aspect(wide) == pytest.approx(0.2)
    assert bench.size_correct("tall", 5.0, 1.0) and not bench.size_correct("tall", 0.2, 1.0)
    assert bench.size_correct("wide", 0.2, 1.0) and not bench.size_correct("wide", 5.0, 1.0)


def test_the_prompt_set_covers_every_category_in_held_out_phrasings():
    from backend.data.procedural import CATEGORIES
    from backend.text.captions import HELDOUT_TEMPLATES

    bench = load_bench()
    prompts = bench.prompt_set()
    assert len(prompts) == 4 * len(CATEGORIES)
    assert {p.category for p in prompts} == set(CATEGORIES)
    assert {"i would like {a} {adjs} {noun}", "{a} {colour} coloured {noun}"} <= set(HELDOUT_TEMPLATES)
    assert all(p.colour in bench.COLOURS for p in prompts if p.colour)
    assert len({p.text for p in prompts}) == len(prompts)


def test_the_benchmark_runs_prompts_through_a_pipeline_and_summarises_them(monkeypatch):
    """The tiny random models and small preset of tests/test_generate.py: the numbers mean nothing,
    the plumbing is real."""
    from test_generate import SMALL, tiny_assets

    from backend.pipelines import generate
    from backend.pipelines.generate import GeneratePipeline

    monkeypatch.setitem(generate.PRESETS, ("cpu", "preview"), SMALL)

    bench = load_bench()
    prompts = bench.prompt_set()[:4]
    classifier = ShapeClassifier().eval()
    results, probs, metadata = bench.run_prompts(GeneratePipeline("cpu", assets=tiny_assets()), prompts, "preview",
                                                 classifier, log=lambda _m: None)
    summary = bench.summarise(prompts, results, probs, classifier.config.categories)
    assert summary["prompts"] == 4 and summary["failed"] == 0 and summary["size_prompts"] == 2
    assert probs.shape == (4, 23) and np.allclose(probs.sum(1), 1.0, atol=1e-4)
    assert all(r.named_colour and r.aspect > 0 for r in results) and "method" in metadata
    assert "| R-precision |" in bench.markdown(summary, "preview")
