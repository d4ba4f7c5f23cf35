"""Camera and lighting sampling for dataset renders, and the camera conventions.

Conventions (also in docs/dataset.md):
- World frame = the shape's normalised frame: Z up, object front towards -Y, metres.
- ``cam_to_world_blender`` [4,4]: Blender camera object matrix (camera looks down its local -Z,
  local +Y is image up, +X image right).
- ``world_to_cam`` [4,4]: OpenCV extrinsics (x right, y down, z forward):
  ``world_to_cam = diag(1, -1, -1, 1) @ inv(cam_to_world_blender)``.
- ``K`` [3,3]: pixel intrinsics; pixel (row i, col j) has its centre at (u, v) = (j + 0.5, i + 0.5),
  so ``[u, v, 1]^T ~ K @ X_cam`` and cx = W / 2, cy = H / 2.
- Azimuth 0 puts the camera in front of the object (on -Y), 90 deg on its right (+X);
  elevation is the angle above the XY plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: diag(1,-1,-1,1): flips Blender/OpenGL camera axes (-Z forward, +Y up) to OpenCV (+Z, -Y)
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class ViewSamplingConfig:
    """How views and lights are drawn for one shape."""

    views: int = 24
    """Number of views per shape."""
    resolution: int = 128
    """Square image side in pixels."""
    fov_deg: float = 40.0
    """Fixed field of view of the (square) image, degrees."""
    elevation_range_deg: tuple[float, float] = (-10.0, 45.0)
    """Camera elevation above the XY plane, uniform in this range."""
    fit_margin_range: tuple[float, float] = (1.05, 1.35)
    """Camera distance = margin * (bounding-sphere radius) / sin(fov / 2): 1 = sphere touches the frame."""
    sun_elevation_range_deg: tuple[float, float] = (15.0, 75.0)
    """Sun elevation; its azimuth is within +-100 deg of the camera's so the seen side is mostly lit."""
    sun_strength_range: tuple[float, float] = (1.5, 4.5)
    """Sun irradiance (Blender W/m^2 units)."""
    world_strength_range: tuple[float, float] = (0.25, 0.9)
    """Uniform environment light strength."""


def intrinsics(resolution: int, fov_deg: float) -> np.ndarray:
    """Pixel intrinsics K [3,3] of a square image with the given field of view."""
    f = 0.5 * resolution / np.tan(0.5 * np.deg2rad(fov_deg))
    c = 0.5 * resolution
    return np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])


def look_at_blender(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Blender-convention object matrix [4,4] at ``eye`` whose -Z axis points at ``target``."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    f = target - eye
    f /= np.linalg.norm(f)
    r = np.cross(f, up)
    if np.linalg.norm(r) < 1e-8:  # looking straight along up: any horizontal right vector works
        r = np.cross(f, [0.0, 1.0, 0.0])
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = r, u, -f, eye
    return m


def blender_to_world_to_cam(cam_to_world_blender: np.ndarray) -> np.ndarray:
    """OpenCV world->camera [4,4] from a Blender camera matrix_world [4,4]."""
    return BLENDER_TO_OPENCV @ np.linalg.inv(cam_to_world_blender)


def spherical(azimuth_deg: float, elevation_deg: float, distance: float) -> np.ndarray:
    """Position for azimuth/elevation (see module doc) at ``distance`` from the origin."""
    a, e = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    return distance * np.array([np.cos(e) * np.sin(a), -np.cos(e) * np.cos(a), np.sin(e)])


def sample_views(rng: np.random.Generator, cfg: ViewSamplingConfig, bounding_radius: float) -> list[dict]:
    """Draw ``cfg.views`` cameras (stratified over the full azimuth circle) with their lights.

    Returns JSON-ready dicts: index, azimuth_deg, elevation_deg, distance, K, world_to_cam,
    cam_to_world_blender and light (sun direction towards the sun, strengths, colours).
    """
    if cfg.views < 1:
        raise ValueError(f"views must be >= 1, got {cfg.views}")
    K = intrinsics(cfg.resolution, cfg.fov_deg)
    fit = bounding_radius / np.sin(0.5 * np.deg2rad(cfg.fov_deg))
    out = []
    for i in range(cfg.views):
        az = (i + rng.uniform()) / cfg.views * 360.0
        el = rng.uniform(*cfg.elevation_range_deg)
        dist = fit * rng.uniform(*cfg.fit_margin_range)
        c2w = look_at_blender(spherical(az, el, dist))
        sun_az = az + rng.uniform(-100.0, 100.0)
        sun_el = rng.uniform(*cfg.sun_elevation_range_deg)
        tint = rng.uniform(0.85, 1.0, 3)
        out.append(
            {
                "index": i,
                "azimuth_deg": float(az),
                "elevation_deg": float(el),
                "distance": float(dist),
                "K": K.tolist(),
                "world_to_cam": blender_to_world_to_cam(c2w).tolist(),
                "cam_to_world_blender": c2w.tolist(),
                "light": {
                    "sun_direction": spherical(sun_az, sun_el, 1.0).tolist(),
                    "sun_strength": float(rng.uniform(*cfg.sun_strength_range)),
                    "sun_angle_deg": float(rng.uniform(2.0, 25.0)),
                    "sun_color": (tint / tint.max()).tolist(),
                    "world_strength": float(rng.uniform(*cfg.world_strength_range)),
                    "world_color": (1.0 - 0.15 * rng.uniform(0, 1, 3)).tolist(),
                },
            }
        )
    return out


def backproject_depth(depth: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray) -> np.ndarray:
    """World points [H,W,3] from a z-depth map [H,W] (pixel centres, OpenCV camera)."""
    h, w = depth.shape
    j, i = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    rays = np.stack([j, i, np.ones_like(j)], axis=-1) @ np.linalg.inv(K).T
    cam = rays * depth[..., None]
    c2w = np.linalg.inv(world_to_cam)
    return cam @ c2w[:3, :3].T + c2w[:3, 3]
