"""Third-party meshes baked for training (`backend.data.mesh_bank`), the training pool drawing from
them (`backend.train.shape_bank`), and the catalogue reading of scripts/bake_training_meshes.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh
from script_modules import load_script

from backend.data.mesh_bank import (
    GRID_LIMIT,
    MAX_MATERIALS,
    MIN_HALF_THICKNESS,
    BakedMesh,
    MeshBakeError,
    MeshBank,
    MeshPart,
    bake_mesh,
    normalised,
)
from backend.train.shape_bank import BankConfig, ShapeBank, grid_lookup

GRID = 32
VOXEL = 2 * GRID_LIMIT / (GRID - 1)


def part(mesh: trimesh.Trimesh, colour=(0.5, 0.5, 0.5)) -> MeshPart:
    return MeshPart(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces), np.asarray(colour))


def sdf_at(baked: BakedMesh, points) -> np.ndarray:
    volume = torch.from_numpy(baked.sdf)[None, None]
    return grid_lookup(volume, torch.tensor(points, dtype=torch.float32)[None])[0, 0].numpy()


def test_normalised_puts_the_parts_in_the_unit_box_together():
    a = part(trimesh.creation.box(extents=(2, 1, 1)))
    b = part(trimesh.creation.box(extents=(1, 1, 1)).apply_translation((3, 0, 0)))
    moved = normalised([a, b])
    points = np.concatenate([p.vertices for p in moved])
    assert np.allclose(points.min(0), -points.max(0))
    assert np.isclose((points.max(0) - points.min(0)).max(), 1.0)
    assert np.isclose(moved[1].vertices[:, 0].max(), 0.5)  # the second part keeps its place


def test_a_closed_box_is_negative_inside_and_its_surface_where_its_faces_are():
    box = normalised([part(trimesh.creation.box(extents=(1.0, 0.6, 0.4)))])
    baked = bake_mesh(box, grid=GRID, surface_points=300)
    assert baked.sdf.shape == (GRID, GRID, GRID)
    values = sdf_at(baked, [[0, 0, 0], [0.45, 0.25, 0.15], [0.5, 0.5, 0.5], [0, 0, 0.35]])
    assert values[0] < -0.15 and values[1] < 0 and values[2] > 0.2 and values[3] > 0.1
    # the top face at z = 0.2, pushed out by the least half-thickness
    along = np.linspace(0.0, 0.4, 81)
    top = sdf_at(baked, [[0, 0, z] for z in along])
    crossing = along[np.argmax(top > 0)]
    assert abs(crossing - (0.2 + MIN_HALF_THICKNESS * VOXEL)) < 0.5 * VOXEL
    assert baked.surface.shape == (300, 3) and np.abs(np.abs(baked.surface).max(0) - [0.5, 0.3, 0.2]).max() < 1e-6


def test_a_sheet_becomes_a_slab_that_rays_can_hit():
    quad = trimesh.Trimesh(vertices=[[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]],
                           faces=[[0, 1, 2], [0, 2, 3]])
    baked = bake_mesh([part(quad)], grid=GRID)
    column = sdf_at(baked, [[0.1, 0.1, z] for z in np.linspace(-0.1, 0.1, 81)])
    inside = np.linspace(-0.1, 0.1, 81)[column < 0]
    assert len(inside) and np.isclose(inside.max(), -inside.min(), atol=0.01)
    assert 1.0 * VOXEL < inside.max() - inside.min() < 2.0 * VOXEL


def test_each_node_takes_the_colour_of_the_nearest_part_and_many_parts_share_rows():
    left = part(trimesh.creation.box(extents=(0.4, 0.4, 0.4)).apply_translation((-0.3, 0, 0)), (1.0, 0.0, 0.0))
    right = part(trimesh.creation.box(extents=(0.4, 0.4, 0.4)).apply_translation((0.3, 0, 0)), (0.0, 0.0, 1.0))
    baked = bake_mesh([left, right], grid=GRID)
    nodes = np.linspace(-GRID_LIMIT, GRID_LIMIT, GRID)
    near_left = baked.materials[np.argmin(np.abs(nodes + 0.5)), GRID // 2, GRID // 2]
    near_right = baked.materials[np.argmin(np.abs(nodes - 0.5)), GRID // 2, GRID // 2]
    assert baked.palette[near_left, :3].tolist() == [1.0, 0.0, 0.0]
    assert baked.palette[near_right, :3].tolist() == [0.0, 0.0, 1.0]
    # twelve parts in six pairs of nearly the same colour: the pairs are joined
    parts = [part(trimesh.creation.box(extents=(0.1, 0.1, 0.1)).apply_translation((0.15 * i - 0.8, 0, 0)),
                  (i // 2 / 6 + 0.01 * (i % 2), 0.5, 0.5)) for i in range(12)]
    many = bake_mesh(normalised(parts), grid=GRID)
    assert len(many.palette) == MAX_MATERIALS
    assert len(bake_mesh(normalised(parts[:4]), grid=GRID).palette) == 4


def test_baked_meshes_fit_the_pool_they_are_drawn_into():
    from backend.train import shape_bank

    assert GRID_LIMIT == shape_bank.GRID_LIMIT and MAX_MATERIALS == shape_bank.MAX_MATERIALS


def test_meshes_that_cannot_be_baked_say_why():
    with pytest.raises(MeshBakeError, match="no triangles"):
        bake_mesh([MeshPart(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), np.ones(3))])
    with pytest.raises(MeshBakeError, match="no extent"):
        normalised([MeshPart(np.zeros((3, 3)), np.array([[0, 1, 2]]), np.ones(3))])


def bank_folder(tmp_path, names=("cube", "bar")):
    meshes = []
    for index, name in enumerate(names):
        extents = (1.0, 0.5 + 0.3 * index, 0.4)
        baked = bake_mesh(normalised([part(trimesh.creation.box(extents=extents), (0.2, 0.6, 0.9))]), grid=GRID)
        baked.save(tmp_path / f"{name}.npz")
        meshes.append({"file": f"{name}.npz", "name": name, "source": "test", "licence": "CC0"})
    (tmp_path / "manifest.json").write_text(json.dumps({"meshes": meshes}))
    return tmp_path


def test_a_saved_mesh_loads_as_it_was_baked(tmp_path):
    folder = bank_folder(tmp_path)
    bank = MeshBank(folder)
    assert len(bank) == 2 and bank.name(1) == "bar"
    loaded = bank.load(0)
    again = bake_mesh(normalised([part(trimesh.creation.box(extents=(1.0, 0.5, 0.4)), (0.2, 0.6, 0.9))]), grid=GRID)
    assert np.abs(loaded.sdf - again.sdf).max() < 1e-3  # float16 on disk
    assert (loaded.materials == again.materials).all() and np.allclose(loaded.palette, again.palette)
    with pytest.raises(FileNotFoundError, match="bake_training_meshes"):
        MeshBank(tmp_path / "nowhere")


def mesh_pool(folder, share: float, size=6, grid=GRID, surface_points=64) -> ShapeBank:
    config = BankConfig(size=size, grid=grid, measure_res=32, surface_points=surface_points,
                        categories=("table", "mug"), composition_share=0.0, refresh_every=0,
                        meshes=str(folder) if folder else None, mesh_share=share)
    return ShapeBank(config, seed=11)


def test_the_pool_draws_baked_meshes_beside_procedural_shapes(tmp_path):
    folder = bank_folder(tmp_path)
    only = mesh_pool(folder, 1.0)
    only.sync(0)
    assert all(name.startswith("mesh/") for name in only.names(range(6)))
    half = mesh_pool(folder, 0.5, size=12)
    half.sync(0)
    kinds = {name.split("/")[0] for name in half.names(range(12))}
    assert kinds == {"mesh", "table", "mug"}
    stacked = half.tensors()  # meshes and procedural shapes stack into one pool
    assert stacked["sdf"].shape == (12, 1, GRID, GRID, GRID) and stacked["surface"].shape == (12, 64, 3)
    # the baked grid is resampled to the pool's, and more samples drawn than were baked
    other = mesh_pool(folder, 1.0, size=2, grid=24, surface_points=4000)
    other.sync(0)
    assert other.tensors()["sdf"].shape[-1] == 24 and other.tensors()["surface"].shape[1] == 4000


def test_a_pool_without_meshes_draws_what_it_always_drew(tmp_path):
    plain, with_none = mesh_pool(None, 0.5), mesh_pool(bank_folder(tmp_path), 0.0)
    assert [plain.shape_identity(n) for n in range(20)] == [with_none.shape_identity(n) for n in range(20)]
    assert with_none.meshes is None


def test_every_other_mesh_draw_is_mirrored(tmp_path):
    folder = bank_folder(tmp_path, names=("cube",))
    pool = mesh_pool(folder, 1.0, size=2)
    pool.sync(0)
    first, second = pool.slots
    assert torch.equal(first.sdf.flip(0), second.sdf)


def test_catalogue_items_and_the_benchmark_meshes_left_out():
    script = load_script("bake_training_meshes")
    text = "\n".join(["# comment=1", "id=catalogue", "name#1=Chair", "model#1=/a/chair/chair.obj",
                      "doorOrWindow#1=false", "name#2=Door", "model#2=/a/door/door.obj", "doorOrWindow#2=true",
                      "modelRotation#2=1 0 0 0 0 1 0 -1 0"])
    items = script.catalogue_items(text)
    assert [i["name"] for i in items] == ["Chair", "Door"] and items[1]["doorOrWindow"] == "true"
    assert np.allclose(script.model_rotation(items[1]) @ [0, 0, 1], [0, 1, 0])  # a Z-up model turned Y up
    assert np.allclose(script.Y_UP_TO_Z_UP @ [0, 1, 0], [0, 0, 1]) and np.allclose(script.Y_UP_TO_Z_UP @ [0, 0, 1],
                                                                                    [0, -1, 0])
    held = script.held_out_indices(784)
    assert len(held) == 31 and 12 in held and 11 not in held and 37 in held  # one in 25, spread through
    excluded = script.benchmark_models()
    assert "blendswap-cc-0/oakChair/oakChair.obj" in excluded and len(excluded) == 3


def test_the_trainer_takes_meshes_and_records_them_with_the_run(tmp_path, monkeypatch):
    from backend.train import evaluate as evaluation

    monkeypatch.setattr(evaluation, "generated_heldin_items", lambda size, **kw: [])
    (tmp_path / "bank").mkdir()
    folder = bank_folder(tmp_path / "bank")
    quiet = ["--quiet", "--threads", "1", "--real-photos", "0", "--heldin", "/nonexistent"]
    assert load_script("train").main(["--model-preset", "tiny", "--shapes-held", "3", "--steps", "2", "--out",
                                      str(tmp_path / "run"), "--meshes", str(folder), *quiet]) == 0
    bank = json.loads((tmp_path / "run" / "generated_config.json").read_text())["bank"]
    assert bank["meshes"] == str(folder) and bank["mesh_share"] == 0.5


def test_a_mesh_share_without_meshes_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        load_script("train").main(["--model-preset", "tiny", "--steps", "1", "--out", str(tmp_path / "run"),
                                   "--mesh-share", "0.3", "--quiet"])
    assert not (tmp_path / "run").exists()
