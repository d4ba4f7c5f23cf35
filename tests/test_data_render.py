"""A real Blender (Cycles) render of one shape, checked against the mesh it was made from."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend.data.cameras import ViewSamplingConfig, backproject_depth
from backend.data.dataset import ProceduralDataset
from backend.data.generate import GenerationConfig, generate_dataset
from backend.data.procedural import make_shape
from backend.data.samples import SampleConfig, mesh_distance, sdf_normals


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("render")
    cfg = GenerationConfig(
        categories=("mug",),
        shapes_per_category=1,
        base_seed=3,
        mesh_resolution=64,
        views=replace(ViewSamplingConfig(), views=2, resolution=64),
        samples=SampleConfig(surface_points=2000, uniform_points=1000, near_points=1000),
    )
    logs: list[str] = []
    res = generate_dataset(root, cfg, workers=1, log=logs.append)
    assert not res["failed"], res["failed"]
    return root, cfg, res, logs


def test_render_is_consistent_with_mesh_and_cameras(rendered):
    root, cfg, res, _ = rendered
    d = root / "mug" / "mug_000003"
    mesh = trimesh.load(d / "mesh.ply", process=False)
    ds = ProceduralDataset(root, "all")
    rec = ds.read("mug/mug_000003")
    shape = make_shape("mug", 3)
    assert rec.images.shape == (2, 64, 64, 3) and rec.depth.shape == (2, 64, 64) and rec.normals.shape == (2, 64, 64, 3)
    png = np.asarray(Image.open(d / "views" / "rgba_0000.png"))
    assert png.shape == (64, 64, 4) and png[0, 0, 3] == 0  # transparent background
    for k in range(2):
        mask = rec.masks[k] > 0.5
        assert 50 < mask.sum() < 64 * 64 * 0.9, "object should be visible and not fill the frame"
        lit = rec.images[k][mask].mean()
        assert lit > 0.05, "object renders black: lighting is broken"
        K, w2c = rec.intrinsics[k].astype(np.float64), rec.world_to_cam[k].astype(np.float64)
        # depth exists exactly where the object covers the pixel centre
        core = rec.masks[k] > 0.99
        assert np.all(rec.depth[k][core] > 0) and np.all(rec.depth[k][rec.masks[k] == 0] == 0)
        # depth back-projects onto the mesh surface
        pts = backproject_depth(rec.depth[k].astype(np.float64), K, w2c)[core]
        dist = mesh_distance(mesh, pts)
        assert np.median(dist) < 1e-3 and np.percentile(dist, 95) < 5e-3, (np.median(dist), dist.max())
        # normals are world-space, unit, and agree with the mesh at those points
        n = rec.normals[k][core]
        np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=2e-2)
        cos = np.einsum("ij,ij->i", n, sdf_normals(shape, pts))
        assert np.median(cos) > 0.97, np.median(cos)
        cam_pos = -w2c[:3, :3].T @ w2c[:3, 3]
        facing = np.einsum("ij,ij->i", n, pts - cam_pos)
        assert np.mean(facing < 0) > 0.97, "normals should face the camera"
        # every surface sample projects inside the silhouette (K / extrinsics match the mask)
        sp = rec.surface_points.astype(np.float64)
        x = sp @ w2c[:3, :3].T + w2c[:3, 3]
        uv = x @ K.T
        uv = uv[:, :2] / uv[:, 2:3]
        j, i = np.clip(uv[:, 0].astype(int), 0, 63), np.clip(uv[:, 1].astype(int), 0, 63)
        assert np.mean(rec.masks[k][i, j] > 0) > 0.97
    cams = json.loads((d / "cameras.json").read_text())
    assert "OpenCV" in cams["convention"]["world_to_cam"] and "z-depth" in cams["convention"]["depth"]


def test_resume_skips_complete_shape(rendered):
    root, cfg, res, logs = rendered
    before = (root / "mug" / "mug_000003" / "meta.json").stat().st_mtime_ns
    again = generate_dataset(root, cfg, workers=1, log=lambda m: None)
    assert again["done"] == [] and again["skipped"] == ["mug_000003"]
    assert (root / "mug" / "mug_000003" / "meta.json").stat().st_mtime_ns == before
    assert any("mug_000003" in line for line in logs)
