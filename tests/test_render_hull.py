"""The visual-hull field used to carve reconstructions by their input silhouettes."""

import math

import numpy as np
import pytest
import torch

from backend.render.cameras import orbit_cameras
from backend.render.hull import hull_field, mask_outside_distance

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SIZE = 64


def front_camera(azimuth_deg=0.0):
    return orbit_cameras(torch.tensor([math.radians(azimuth_deg)]), torch.tensor([0.0]), 3.0, focal=80.0,
                         height=SIZE, width=SIZE)


def sphere_mask(cameras, radius):
    """The exact silhouette of a sphere at the origin: pixels whose ray passes within ``radius``."""
    v, u = np.mgrid[0:SIZE, 0:SIZE]
    uv = torch.from_numpy(np.stack([u, v], -1).reshape(-1, 2) + 0.5).float()
    origins, dirs = cameras.generate_rays(uv)
    o, d = origins[0], dirs[0] / dirs[0].norm(dim=-1, keepdim=True)
    closest = o - (o * d).sum(-1, keepdim=True) * d
    return (closest.norm(dim=-1) < radius).reshape(SIZE, SIZE).numpy().astype(np.float32)


def test_outside_distance_is_zero_on_the_mask_and_grows_off_it():
    mask = np.zeros((9, 9), np.float32)
    mask[4, 4] = 1.0
    dist = mask_outside_distance(mask)
    assert dist[4, 4] == 0.0
    assert dist[4, 7] == pytest.approx(3.0) and dist[0, 0] == pytest.approx(math.hypot(4, 4))
    empty = mask_outside_distance(np.zeros((5, 5)))
    assert np.isfinite(empty).all() and empty.min() > 5


def test_a_sphere_is_inside_its_own_hull_and_points_beyond_its_cone_are_outside():
    cams = front_camera()
    radius = 0.4
    hull = hull_field(cams, [sphere_mask(cams, radius)], margin_px=1.0)
    # points on the sphere project onto its silhouette: never carved
    directions = torch.nn.functional.normalize(torch.randn(2000, 3), dim=-1)
    assert hull(directions * radius).max() <= 0.0
    # the cone's side, sideways from the sphere's centre (the camera looks along +y at azimuth 0)
    beside = torch.tensor([[0.8, 0.0, 0.0], [0.0, 0.0, -0.9], [-0.6, 0.0, 0.0]])
    bound = hull(beside)
    assert (bound > 0).all()
    # a lower bound of the distance to the cone: the true one is at least |x| - radius (near the centre)
    true_min = beside.norm(dim=-1) - radius
    assert (bound <= true_min * 1.05).all() and (bound > 0.5 * true_min).all()
    # along the viewing direction, in front of and behind the sphere, nothing is carved
    along = torch.tensor([[0.0, -1.0, 0.0], [0.0, 1.2, 0.0]])
    assert (hull(along) <= 0.0).all()


def test_several_views_intersect_and_points_behind_a_camera_are_outside():
    cams = orbit_cameras(torch.tensor([0.0, math.pi / 2]), torch.tensor([0.0, 0.0]), 3.0, focal=80.0,
                         height=SIZE, width=SIZE)
    masks = [sphere_mask(cams[i], 0.4) for i in range(2)]
    hull = hull_field(cams, masks, margin_px=0.5)
    one_view = hull_field(cams[0], masks[:1], margin_px=0.5)
    # on the first camera's axis, far along it: inside that view's cone, outside the second's
    deep = torch.tensor([[0.0, 0.9, 0.0]])
    assert one_view(deep) <= 0 < hull(deep)
    # a point behind the first camera (further out along its centre's direction) is outside
    behind = cams.centers[:1] * 1.2
    assert one_view(behind) > 0 and torch.isfinite(hull(behind)).all()


def test_view_and_mask_count_must_agree():
    with pytest.raises(ValueError, match="masks for"):
        hull_field(front_camera(), [np.ones((SIZE, SIZE))] * 2)


def test_the_distance_is_interpolated_between_pixel_centres():
    # a mask whose left half is set: the distance grows 1 px per pixel to the right
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[:, : SIZE // 2] = 1.0
    cams = front_camera()
    hull = hull_field(cams, [mask], margin_px=0.0)
    # points on the image's horizontal midline, a quarter pixel apart, right of the mask
    u = torch.tensor([SIZE / 2 + 3.5, SIZE / 2 + 3.75, SIZE / 2 + 4.0])
    origins, dirs = cams.generate_rays(torch.stack([u, torch.full_like(u, SIZE / 2 + 0.5)], -1))
    points = origins[0] + dirs[0] * 3.0  # depth along the ray: any point of it projects to u
    _, z = cams.project(points.unsqueeze(0))
    pixels = hull(points) * cams.focal[0, 0] / z[0]
    # pixel centre x + 0.5 lies x - SIZE/2 + 1 pixels from the last mask column
    assert pixels.tolist() == pytest.approx([4.0, 4.25, 4.5], abs=1e-3)
    with pytest.raises(ValueError, match="2 x 2"):
        hull_field(cams, [np.ones((1, SIZE))])
