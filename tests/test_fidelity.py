"""The camera convention of results' metadata (backend/geometry/fidelity.py)."""

import math

import numpy as np
import pytest
import torch

from backend.geometry.fidelity import mask_iou, project, silhouette
from backend.render.cameras import Cameras, orbit_cameras


@pytest.mark.parametrize("seed", range(4))
def test_metadata_camera_projects_as_the_renderers_orbit_camera(seed):
    rng = np.random.default_rng(seed)
    a, e, r = rng.uniform(-3, 3), rng.uniform(-0.5, 1.0), rng.uniform(-0.4, 0.4)
    focal, offset, size = rng.uniform(40, 120), rng.uniform(-5, 5, 2), 64
    base = orbit_cameras(torch.tensor([a]), torch.tensor([e]), 2.0, focal=torch.tensor([focal]), height=size,
                         width=size, roll=torch.tensor([r]))
    cameras = Cameras(base.focal, base.principal + torch.tensor(offset, dtype=base.principal.dtype),
                      base.rotation, base.translation, size, size)
    points = rng.uniform(-0.5, 0.5, (20, 3))
    uv, _ = cameras.project(torch.tensor(points, dtype=torch.float32)[None])
    camera = {"azimuth": math.degrees(a), "elevation": math.degrees(e), "roll": math.degrees(r),
              "fov": math.degrees(2 * math.atan(size / 2 / focal)), "distance": 2.0,
              "principal_offset": (offset / size).tolist()}
    pixels, _ = project(points, camera, size)
    # the renderer's pixel centres sit at +0.5, the metadata's at whole numbers
    assert np.abs(uv[0].numpy() - 0.5 - pixels).max() < 1e-3


def test_front_view_sees_x_right_and_z_up():
    # a triangle in the y = 0 plane, seen from the front (Blender numpad 1)
    vertices = np.array([[-0.4, 0.0, -0.4], [0.4, 0.0, -0.4], [-0.4, 0.0, 0.4]])
    camera = {"azimuth": 0.0, "elevation": 0.0, "fov": 10.0, "distance": 1.0 / (2 * math.tan(math.radians(5)))}
    seen = silhouette(vertices, np.array([[0, 1, 2]]), camera, 32)
    assert seen[28, 4] and not seen[4, 28]  # the right angle at the bottom left of the image
    assert 280 < seen.sum() < 380  # legs of 0.8 of the frame: half of 25.6 px squared
    assert mask_iou(seen, seen[:, ::-1]) < 0.5  # not its mirror image
