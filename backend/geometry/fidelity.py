"""How well a result explains its photo: the result seen from the camera its metadata reports.

The camera convention is the one every result's ``metadata["camera"]`` uses, in the output's own
frame (Z up, front -Y): the camera sits at ``target + distance * (cos e sin a, -cos e cos a,
sin e)`` for azimuth a and elevation e, looks at ``target`` with +Z up, and has a square image
with the field of view ``fov`` (degrees) across it. Azimuth 0 and elevation 0 is Blender's front
view (numpad 1). Optional: ``roll`` (degrees; positive turns the image's x axis towards its y
axis, which points down, so the content turns counter-clockwise) and ``principal_offset`` (the
image centre's shift in fractions of the side, x right and y down). The image is the square crop
around the object that the pipeline worked on.
"""

from __future__ import annotations

import math

import numpy as np

from backend.geometry.raster import covered_pixels

FIDELITY_SIZE = 128
"""Side of the crop on which a result's silhouette is compared with the photo's."""

POOR_FIDELITY = 0.9
"""Below this silhouette IoU a result carries a warning that it explains the photo badly."""


def camera_position(camera: dict) -> np.ndarray:
    a, e = math.radians(camera["azimuth"]), math.radians(camera["elevation"])
    offset = np.array([math.cos(e) * math.sin(a), -math.cos(e) * math.cos(a), math.sin(e)])
    return np.asarray(camera.get("target", (0.0, 0.0, 0.0)), dtype=np.float64) + camera["distance"] * offset


def camera_axes(camera: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The camera's image right, image down and viewing direction, unit vectors in the output
    frame."""
    eye = camera_position(camera)
    target = np.asarray(camera.get("target", (0.0, 0.0, 0.0)), dtype=np.float64)
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-9:  # looking straight down or up
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = -np.cross(right, forward)
    roll = math.radians(camera.get("roll", 0.0))
    right, down = math.cos(roll) * right + math.sin(roll) * down, -math.sin(roll) * right + math.cos(roll) * down
    return right, down, forward


def project(points: np.ndarray, camera: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Points [N,3] -> (pixel coordinates [N,2] as (column, row), pixel centres at integers;
    depth along the viewing direction [N])."""
    eye = camera_position(camera)
    right, down, forward = camera_axes(camera)
    rel = np.asarray(points, dtype=np.float64) - eye
    depth = rel @ forward
    focal = (size / 2) / math.tan(math.radians(camera["fov"]) / 2)
    safe = np.where(depth > 1e-9, depth, 1e-9)
    dx, dy = camera.get("principal_offset", (0.0, 0.0))
    columns = size * (0.5 + dx) - 0.5 + focal * (rel @ right) / safe
    rows = size * (0.5 + dy) - 0.5 + focal * (rel @ down) / safe
    return np.stack([columns, rows], axis=1), depth


def silhouette(vertices: np.ndarray, faces: np.ndarray, camera: dict, size: int) -> np.ndarray:
    """bool [size,size]: the pixels whose centre the mesh covers, seen from ``camera``."""
    return covered_image(*project(vertices, camera, size), faces, size)


def covered_image(pixels: np.ndarray, depth: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """bool [size,size]: the pixels whose centre a mesh covers, from its vertices projected to
    ``pixels`` [N,2] (column, row; pixel centres at integers) at ``depth`` [N] in front of the
    camera; faces reaching behind it are left out."""
    tris = faces[(depth[faces] > 0).all(axis=1)]
    out = np.zeros((size, size), dtype=bool)
    _, x, y, _ = covered_pixels(pixels[tris], size, size)
    out[y, x] = True
    return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def silhouette_fidelity(vertices: np.ndarray, faces: np.ndarray, camera: dict, mask: np.ndarray) -> dict:
    """How well a result explains the photo's outline: IoU of its silhouette from ``camera`` with
    the object's mask on the crop (any size; compared at `FIDELITY_SIZE`)."""
    from skimage.transform import resize

    target = resize(np.asarray(mask, dtype=np.float32), (FIDELITY_SIZE, FIDELITY_SIZE), order=1) >= 0.5
    seen = silhouette(vertices, faces, camera, FIDELITY_SIZE)
    return {"silhouette_iou": round(mask_iou(seen, target), 4), "size": FIDELITY_SIZE}
