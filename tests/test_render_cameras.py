"""Camera conventions: OpenCV axes, Z-up world with the front on -Y, Blender conversion, rays."""

import math

import pytest
import torch

from backend.render.cameras import (
    CameraError,
    Cameras,
    focal_from_blender_lens,
    focal_from_fov,
    from_blender_matrix_world,
    from_opencv,
    look_at_rotation,
    orbit_cameras,
    to_blender_matrix_world,
)


def _orbit(az_deg, el_deg=0.0, dist=3.0, roll_deg=None, size=64, focal=80.0):
    az = torch.tensor([math.radians(a) for a in az_deg])
    el = torch.full_like(az, math.radians(el_deg))
    roll = None if roll_deg is None else torch.full_like(az, math.radians(roll_deg))
    return orbit_cameras(az, el, dist, focal=focal, height=size, width=size, roll=roll)


def test_azimuth_zero_looks_at_the_front_from_minus_y():
    cams = _orbit([0.0])
    assert torch.allclose(cams.centers, torch.tensor([[0.0, -3.0, 0.0]]), atol=1e-6)
    points = torch.tensor([[[0.0, -0.4, 0.0], [0.0, 0.0, 0.3], [0.3, 0.0, 0.0]]])
    uv, z = cams.project(points)
    centre = torch.tensor([32.0, 32.0])
    assert torch.allclose(uv[0, 0], centre, atol=1e-4), "a point on -Y must project to the image centre"
    assert uv[0, 1, 1] < 32.0 - 5, "+Z must project upward (smaller row)"
    assert abs(uv[0, 1, 0] - 32.0) < 1e-4
    assert uv[0, 2, 0] > 32.0 + 5, "+X must project to the right at azimuth 0"
    assert torch.all(z > 0)


def test_azimuth_ninety_is_blenders_right_view_and_up_stays_up():
    cams = _orbit([90.0, 37.0], el_deg=25.0)
    assert torch.allclose(cams.centers[0], torch.tensor([3.0 * math.cos(math.radians(25)), 0.0, 3.0 * math.sin(math.radians(25))]), atol=1e-5)
    # From +X the object's front (-Y) is on the left of the image.
    uv, _ = cams.project(torch.tensor([[[0.0, -0.3, 0.0]], [[0.0, 0.0, 0.0]]]))
    assert uv[0, 0, 0] < 32.0 - 5
    # Up stays up for any azimuth/elevation: +Z above the origin in the image.
    uv_up, _ = cams.project(torch.tensor([[[0.0, 0.0, 0.3]]] * 2))
    uv_0, _ = cams.project(torch.zeros(2, 1, 3))
    assert torch.all(uv_up[:, 0, 1] < uv_0[:, 0, 1])
    assert torch.allclose(uv_0[:, 0], torch.full((2, 2), 32.0), atol=1e-4)


def test_rotations_are_orthonormal_and_right_handed_even_at_the_pole():
    cams = _orbit([0.0, 45.0, 200.0], el_deg=90.0)
    r = cams.rotation
    eye = torch.eye(3).expand_as(r)
    assert torch.allclose(r @ r.transpose(1, 2), eye, atol=1e-6)
    assert torch.allclose(torch.linalg.det(r), torch.ones(3), atol=1e-6)
    assert torch.isfinite(r).all()


def test_positive_roll_rotates_image_content_counter_clockwise():
    plain, rolled = _orbit([0.0]), _orbit([0.0], roll_deg=20.0)
    right = torch.tensor([[[0.3, 0.0, 0.0]]])
    uv_plain, _ = plain.project(right)
    uv_rolled, _ = rolled.project(right)
    assert abs(uv_plain[0, 0, 1] - 32.0) < 1e-4
    assert uv_rolled[0, 0, 1] < 32.0 - 1.0, "a point on the right must move up"


def test_rays_are_unit_and_reproject_to_their_pixels():
    torch.manual_seed(0)
    cams = _orbit([10.0, 130.0], el_deg=15.0, size=16)
    origins, dirs = cams.generate_rays()
    assert origins.shape == dirs.shape == (2, 16, 16, 3)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(2, 16, 16), atol=1e-6)
    points = (origins + 2.0 * dirs).reshape(2, -1, 3)
    uv, _ = cams.project(points)
    assert torch.allclose(uv, cams.pixel_centers().reshape(1, -1, 2).expand(2, -1, -1), atol=1e-3)
    # The ray through the principal point passes through the look-at target (origin).
    o, d = cams.generate_rays(torch.tensor([[8.0, 8.0]]))
    closest = o - (o * d).sum(-1, keepdim=True) * d
    assert closest.norm(dim=-1).max() < 1e-5


def test_ray_distance_to_z_depth():
    cams = _orbit([30.0], el_deg=10.0, size=8)
    o, d = cams.generate_rays()
    t = 2.5
    z_expected = cams.world_to_camera((o + t * d).reshape(1, -1, 3))[..., 2].reshape(1, 8, 8)
    assert torch.allclose(t * cams.ray_depth_to_z(d), z_expected, atol=1e-5)


def test_blender_round_trip_and_known_front_camera():
    cams = _orbit([0.0, 75.0], el_deg=20.0)
    back = from_blender_matrix_world(to_blender_matrix_world(cams), focal=80.0, height=64, width=64)
    assert torch.allclose(back.rotation, cams.rotation, atol=1e-6)
    assert torch.allclose(back.translation, cams.translation, atol=1e-5)
    # Blender's front camera: location (0, -3, 0), rotation_euler (90 deg, 0, 0).
    front = torch.tensor([[[1.0, 0, 0, 0], [0, 0, -1, -3], [0, 1, 0, 0], [0, 0, 0, 1]]])
    blender = from_blender_matrix_world(front, focal=80.0, height=64, width=64)
    ours = _orbit([0.0])
    assert torch.allclose(blender.rotation, ours.rotation, atol=1e-6)
    assert torch.allclose(blender.translation, ours.translation, atol=1e-5)


def test_look_at_rotation_matches_orbit_and_rejects_parallel_up():
    cams = _orbit([40.0], el_deg=30.0)
    r = look_at_rotation(cams.centers, torch.zeros(1, 3))
    assert torch.allclose(r, cams.rotation, atol=1e-6)
    with pytest.raises(CameraError, match="parallel"):
        look_at_rotation(torch.tensor([[0.0, 0.0, 2.0]]), torch.zeros(1, 3))


def test_intrinsics_helpers():
    assert focal_from_fov(90.0, 64) == pytest.approx(32.0)
    assert focal_from_blender_lens(50.0, 36.0, 1920, 1080) == pytest.approx(50.0 / 36.0 * 1920)
    assert focal_from_blender_lens(50.0, 36.0, 1080, 1920) == pytest.approx(50.0 / 36.0 * 1920)
    base = _orbit([0.0], size=64)
    norm = Cameras.from_normalized(
        torch.tensor([[1.25, 1.25]]), torch.tensor([[0.5, 0.5]]), base.rotation, base.translation, 64, 64
    )
    assert torch.allclose(norm.focal, base.focal) and torch.allclose(norm.principal, base.principal)
    with pytest.raises(CameraError):
        focal_from_fov(180.0, 64)


def test_cameras_validate_shapes_and_select():
    cams = _orbit([0.0, 90.0, 180.0])
    assert len(cams[1]) == 1 and len(cams[-1]) == 1 and len(cams[1:]) == 2
    assert torch.allclose(cams[-1].centers, cams.centers[2:])
    with pytest.raises(CameraError, match="rotation"):
        Cameras(cams.focal, cams.principal, cams.rotation[:2], cams.translation, 64, 64)
    with pytest.raises(CameraError, match="pixels"):
        cams.generate_rays(torch.zeros(2, 5, 2))


def test_orbit_cameras_are_differentiable_in_the_angles():
    az = torch.tensor([0.3], requires_grad=True)
    cams = orbit_cameras(az, torch.tensor([0.2]), 2.0, focal=50.0, height=16, width=16)
    uv, _ = cams.project(torch.tensor([[[0.2, 0.1, 0.3]]]))
    uv.sum().backward()
    assert az.grad is not None and az.grad.abs() > 1e-3


def test_from_opencv_matches_orbit_cameras():
    cams = _orbit([25.0, 200.0], el_deg=12.0)
    k = torch.zeros(2, 3, 3)
    k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = 80.0, 80.0, 32.0, 32.0, 1.0
    w2c = torch.eye(4).repeat(2, 1, 1)
    w2c[:, :3, :3], w2c[:, :3, 3] = cams.rotation, cams.translation
    back = from_opencv(k, w2c, height=64, width=64)
    assert torch.allclose(back.rotation, cams.rotation) and torch.allclose(back.focal, cams.focal)
    assert torch.allclose(back.principal, cams.principal) and torch.allclose(back.translation, cams.translation)


def test_agrees_with_the_dataset_camera_conventions():
    """The renders the shape model trains on (backend.data.cameras) use the same cameras."""
    data_cameras = pytest.importorskip("backend.data.cameras")
    import numpy as np

    az, el, dist = 130.0, 21.0, 2.7
    c2w = data_cameras.look_at_blender(data_cameras.spherical(az, el, dist))
    w2c = torch.tensor(data_cameras.blender_to_world_to_cam(c2w), dtype=torch.float32)
    k = torch.tensor(data_cameras.intrinsics(64, 40.0), dtype=torch.float32)
    theirs = from_opencv(k[None], w2c[None], height=64, width=64)
    ours = orbit_cameras(
        torch.tensor([math.radians(az)]), torch.tensor([math.radians(el)]), dist,
        focal=focal_from_fov(40.0, 64), height=64, width=64,
    )
    assert np.allclose(theirs.rotation.numpy(), ours.rotation.numpy(), atol=1e-5)
    assert np.allclose(theirs.translation.numpy(), ours.translation.numpy(), atol=1e-5)
    assert np.allclose(theirs.focal.numpy(), ours.focal.numpy(), atol=1e-4)
