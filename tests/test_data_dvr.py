"""The DVR/ONet ShapeNet-layout loader, on a synthetic model whose answers are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from backend.data.cameras import backproject_depth
from backend.data.dvr import DVRDataset, axis_conversion
from backend.data.records import DatasetError
from tests.test_data_samples import _write_exr

CENTER = np.array([0.1, 0.2, -0.15])  # sphere in the source (Y-up) object frame
RADIUS = 0.2
RES = 48
FOCAL_NDC = 2.2


def _look_at_cv(eye):
    """OpenCV world->camera [4,4] looking at the origin with world +y up."""
    f = -eye / np.linalg.norm(eye)
    r = np.cross(f, [0, 1.0, 0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)  # image down
    R = np.stack([r, d, f])
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = R, -R @ eye
    return m


def _render_sphere(world_mat, camera_mat, scale_mat):
    """Mask and DVR depth of the sphere: rays through DVR's pixel grid (u = 2j/(W-1) - 1)."""
    M_inv = np.linalg.inv(camera_mat @ world_mat @ scale_mat)
    j, i = np.meshgrid(np.arange(RES), np.arange(RES))
    u, v = 2 * j / (RES - 1) - 1, 2 * i / (RES - 1) - 1
    # object-space points at DVR depth d: o + d * r (affine in d)
    o = (M_inv @ np.array([0, 0, 0, 1.0]))[:3]
    r = np.einsum("ab,hwb->hwa", M_inv[:3, :3], np.stack([u, v, np.ones_like(u)], -1))
    oc = o - CENTER
    a = (r * r).sum(-1)
    b = 2 * (r * oc).sum(-1)
    c = oc @ oc - RADIUS**2
    disc = b * b - 4 * a * c
    hit = disc > 0
    d = np.where(hit, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), 0.0)
    return hit, d


@pytest.fixture()
def dvr_root(tmp_path):
    model = tmp_path / "03001627" / "model_a"
    for sub in ("image", "mask", "depth"):
        (model / sub).mkdir(parents=True)
    cams = {}
    scale_mat = np.diag([2.0, 2.0, 2.0, 1.0])
    scale_mat[:3, 3] = [0.1, 0.0, -0.05]
    camera_mat = np.diag([FOCAL_NDC, FOCAL_NDC, 1.0, 1.0])
    for k, eye in enumerate([np.array([0.3, 0.8, -2.6]), np.array([2.4, 1.0, 0.7]), np.array([-1.5, 1.6, 1.9])]):
        world_mat = _look_at_cv(eye)
        hit, depth = _render_sphere(world_mat, camera_mat, scale_mat)
        rgb = np.where(hit[..., None], [200, 80, 40], [255, 255, 255]).astype(np.uint8)
        Image.fromarray(rgb).save(model / "image" / f"{k:04d}.png")
        Image.fromarray((hit * 255).astype(np.uint8)).save(model / "mask" / f"{k:04d}.png")
        _write_exr(model / "depth" / f"{k:04d}.exr", {"R": np.where(hit, depth, np.inf).astype(np.float32)})
        cams[f"world_mat_{k}"], cams[f"camera_mat_{k}"], cams[f"scale_mat_{k}"] = world_mat, camera_mat, scale_mat
    np.savez(model / "cameras.npz", **cams)
    rng = np.random.default_rng(0)
    n = rng.normal(size=(500, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    np.savez(model / "pointcloud.npz", points=(CENTER + RADIUS * n).astype(np.float32), normals=n.astype(np.float32))
    p = rng.uniform(-0.5, 0.5, (1001, 3)).astype(np.float16)  # odd count: packbits pads
    occ = np.linalg.norm(p.astype(np.float64) - CENTER, axis=1) < RADIUS
    np.savez(model / "points.npz", points=p, occupancies=np.packbits(occ))
    (tmp_path / "03001627" / "train.lst").write_text("model_a\n")
    return tmp_path, occ


def test_axis_conversion_is_a_rotation_to_z_up_front_minus_y():
    C = axis_conversion("+y", "-z")
    np.testing.assert_allclose(C @ C.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(C) == pytest.approx(1.0)
    np.testing.assert_allclose(C @ [0, 1, 0], [0, 0, 1])
    np.testing.assert_allclose(C @ [0, 0, -1], [0, -1, 0])
    with pytest.raises(ValueError, match="perpendicular"):
        axis_conversion("+y", "-y")


def test_loader_converts_cameras_depth_and_points(dvr_root):
    root, occ = dvr_root
    ds = DVRDataset(root, split="train")
    assert ds.names == ["03001627/model_a"]
    rec = ds[0]
    C = axis_conversion("+y", "-z")
    center = C @ CENTER
    assert rec.images.shape == (3, RES, RES, 3) and rec.masks.shape == (3, RES, RES)
    assert set(np.unique(rec.masks)) <= {0.0, 1.0}
    assert rec.category == "03001627"
    for k in range(3):
        K, w2c = rec.intrinsics[k].astype(np.float64), rec.world_to_cam[k].astype(np.float64)
        np.testing.assert_allclose(w2c[:3, :3] @ w2c[:3, :3].T, np.eye(3), atol=1e-5)
        hit = rec.masks[k] > 0.5
        assert hit.sum() > 20
        # depth (converted to our z) back-projects exactly onto the converted sphere
        pts = backproject_depth(rec.depth[k].astype(np.float64), K, w2c)[hit]
        np.testing.assert_allclose(np.linalg.norm(pts - center, axis=1), RADIUS, atol=2e-4)
        # the sphere's centre projects near the silhouette's centroid
        x = w2c[:3, :3] @ center + w2c[:3, 3]
        uv = (K @ x)[:2] / x[2]
        ii, jj = np.nonzero(hit)
        assert abs(uv[0] - (jj.mean() + 0.5)) < 1.0 and abs(uv[1] - (ii.mean() + 0.5)) < 1.0
    np.testing.assert_allclose(np.linalg.norm(rec.surface_points - center, axis=1), RADIUS, atol=1e-5)
    np.testing.assert_allclose(rec.surface_normals, (rec.surface_points - center) / RADIUS, atol=1e-4)
    assert rec.occupancy.shape == (1001,) and np.array_equal(rec.occupancy, occ)
    np.testing.assert_allclose(rec.sdf_points @ C, np.load(root / "03001627/model_a/points.npz")["points"], atol=1e-6)
    assert rec.sdf is None  # real data has occupancy only


def test_loader_reports_missing_files(dvr_root):
    root, _ = dvr_root
    model = root / "03001627" / "model_a"
    cams = dict(np.load(model / "cameras.npz"))
    del cams["world_mat_1"]
    np.savez(model / "cameras.npz", **cams)
    with pytest.raises(DatasetError, match="world_mat_1"):
        DVRDataset(root)[0]
    for f in (model / "mask").iterdir():
        f.unlink()
    (model / "mask").rmdir()
    with pytest.raises(DatasetError, match="mask"):
        DVRDataset(root)[0]
    with pytest.raises(DatasetError, match="val.lst"):
        DVRDataset(root, split="val")
    with pytest.raises(DatasetError, match="does not exist"):
        DVRDataset(root / "nowhere")
