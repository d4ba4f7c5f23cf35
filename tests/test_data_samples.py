"""Samples, cameras and the EXR reader (no Blender needed)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import trimesh

from backend.data.cameras import (
    ViewSamplingConfig,
    backproject_depth,
    blender_to_world_to_cam,
    intrinsics,
    look_at_blender,
    sample_views,
    spherical,
)
from backend.data.exr import ExrError, read_exr
from backend.data.procedural import make_shape
from backend.data.samples import SampleConfig, mesh_distance, sdf_samples, surface_samples


@pytest.fixture(scope="module")
def mug():
    shape = make_shape("mug", 2)
    return shape, shape.mesh(64)


def test_mesh_distance_matches_brute_force(mug):
    _, mesh = mug
    pts = np.random.default_rng(0).uniform(-0.55, 0.55, (150, 3))
    tri = mesh.triangles
    brute = np.array(
        [
            np.linalg.norm(trimesh.triangles.closest_point(tri, np.repeat(p[None], len(tri), 0)) - p, axis=1).min()
            for p in pts
        ]
    )
    np.testing.assert_allclose(mesh_distance(mesh, pts), brute, atol=1e-9)


def test_surface_and_sdf_samples(mug):
    shape, mesh = mug
    rng = np.random.default_rng(1)
    surf = surface_samples(shape, mesh, 3000, rng)
    assert surf["points"].dtype == np.float32 and surf["points"].shape == (3000, 3)
    assert np.median(mesh_distance(mesh, surf["points"].astype(np.float64))) < 1e-6
    assert mesh_distance(mesh, surf["points"].astype(np.float64)).max() < 1e-3
    np.testing.assert_allclose(np.linalg.norm(surf["normals"], axis=1), 1.0, atol=1e-3)
    # normals point outwards: stepping along them leaves the shape
    assert np.mean(shape.sdf(surf["points"] + 0.01 * surf["normals"]) > 0) > 0.97
    cfg = SampleConfig(surface_points=3000, uniform_points=2000, near_points=2000)
    s = sdf_samples(shape, mesh, cfg, rng, surf["points"])
    assert s["points"].shape == (4000, 3) and s["sdf"].shape == (4000,)
    np.testing.assert_array_equal(s["occupancy"], s["sdf"] < 0)
    assert 0.01 < s["occupancy"].mean() < 0.9
    assert np.abs(s["points"][:2000]).max() <= cfg.box_half
    # near-surface samples are near the surface, and |sdf| is a real distance to the mesh
    assert np.median(np.abs(s["sdf"][2000:])) < 0.03
    assert np.abs(s["sdf"]).max() < 0.55 * np.sqrt(3)


def test_camera_conventions():
    K = intrinsics(100, 40.0)
    assert K[0, 2] == K[1, 2] == 50.0 and K[0, 0] == pytest.approx(50 / np.tan(np.deg2rad(20)))
    c2w = look_at_blender(spherical(0.0, 0.0, 3.0))  # in front of the object, on -Y
    np.testing.assert_allclose(c2w[:3, 3], [0, -3, 0], atol=1e-12)
    w2c = blender_to_world_to_cam(c2w)
    cam = lambda p: w2c[:3, :3] @ p + w2c[:3, 3]  # noqa: E731
    np.testing.assert_allclose(cam(np.zeros(3)), [0, 0, 3], atol=1e-12)  # origin straight ahead
    assert cam(np.array([1.0, 0, 0]))[0] > 0  # world +X is image right seen from the front
    assert cam(np.array([0, 0, 1.0]))[1] < 0  # world +Z (up) is image up (OpenCV y down)
    assert spherical(90.0, 0.0, 1.0)[0] == pytest.approx(1.0)  # azimuth 90: the right side (+X)
    # a known point back-projects from its projected depth
    p = np.array([0.1, -0.2, 0.15])
    x = cam(p)
    uv = (K @ x)[:2] / x[2]
    depth = np.zeros((100, 100))
    i, j = int(uv[1]), int(uv[0])
    depth[i, j] = x[2]
    q = backproject_depth(depth, K, w2c)[i, j]
    # pixel centres are at +0.5: the point lies on the ray through the pixel, within a pixel
    assert np.linalg.norm(q - p) < 3.0 * np.tan(np.deg2rad(20)) / 50 * 1.5


def test_sample_views_fit_and_stratify():
    cfg = ViewSamplingConfig(views=12, resolution=64)
    views = sample_views(np.random.default_rng(0), cfg, bounding_radius=0.6)
    az = np.array([v["azimuth_deg"] for v in views])
    assert np.all(np.diff(az) > 0) and az.min() < 30 and az.max() > 330
    for v in views:
        assert cfg.elevation_range_deg[0] <= v["elevation_deg"] <= cfg.elevation_range_deg[1]
        # the bounding sphere fits in the frame: distance >= r / sin(fov / 2)
        assert v["distance"] >= 0.6 / np.sin(np.deg2rad(20)) * cfg.fit_margin_range[0] - 1e-9
        w2c = np.array(v["world_to_cam"])
        np.testing.assert_allclose(w2c[:3, :3] @ w2c[:3, :3].T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(w2c[2, 3], v["distance"], rtol=1e-9)  # looks at the origin


def _write_exr(path, channels: dict[str, np.ndarray]) -> None:
    """Tiny single-part scanline EXR writer (NONE compression, FLOAT) for the reader test."""
    names = sorted(channels)
    h, w = channels[names[0]].shape

    def attr(name, typ, data):
        return name.encode() + b"\0" + typ.encode() + b"\0" + struct.pack("<i", len(data)) + data

    chl = (
        b"".join(n.encode() + b"\0" + struct.pack("<i", 2) + b"\0\0\0\0" + struct.pack("<ii", 1, 1) for n in names)
        + b"\0"
    )
    header = (
        attr("channels", "chlist", chl)
        + attr("compression", "compression", b"\0")
        + attr("dataWindow", "box2i", struct.pack("<4i", 0, 0, w - 1, h - 1))
        + attr("displayWindow", "box2i", struct.pack("<4i", 0, 0, w - 1, h - 1))
        + attr("lineOrder", "lineOrder", b"\0")
        + attr("pixelAspectRatio", "float", struct.pack("<f", 1))
        + attr("screenWindowCenter", "v2f", struct.pack("<2f", 0, 0))
        + attr("screenWindowWidth", "float", struct.pack("<f", 1))
        + b"\0"
    )
    start = 8 + len(header) + 8 * h
    lines, offsets = [], []
    for y in range(h):
        data = b"".join(channels[n][y].astype("<f4").tobytes() for n in names)
        offsets.append(start + sum(len(x) for x in lines))
        lines.append(struct.pack("<ii", y, len(data)) + data)
    with open(path, "wb") as f:
        f.write(struct.pack("<ii", 20000630, 2) + header + struct.pack(f"<{h}Q", *offsets) + b"".join(lines))


def test_exr_reader_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    chans = {"R": rng.normal(size=(5, 7)).astype(np.float32), "Z": rng.uniform(1, 9, (5, 7)).astype(np.float32)}
    _write_exr(tmp_path / "a.exr", chans)
    got = read_exr(tmp_path / "a.exr")
    assert set(got) == {"R", "Z"}
    for k in chans:
        np.testing.assert_array_equal(got[k], chans[k])
    (tmp_path / "b.exr").write_bytes(b"not an exr at all")
    with pytest.raises(ExrError, match="not an OpenEXR"):
        read_exr(tmp_path / "b.exr")
