"""Pinhole cameras, batched, in the OpenCV convention, and per-pixel ray generation.

Conventions (used by every renderer in `backend.render`):

* World: Z up, object front facing -Y, right-handed, metres (the project's orientation).
* Camera frame: OpenCV -- x right, y down, z forward (the viewing direction).
* Extrinsics are world->camera: ``x_cam = R @ x_world + t``; the camera centre is ``-R^T t``.
* Pixels: ``u`` is the column, ``v`` the row; pixel ``(row i, col j)`` covers ``[j, j+1) x [i, i+1)``
  so its centre is at ``(u, v) = (j + 0.5, i + 0.5)``; a principal point of ``(W/2, H/2)`` is the
  image centre.
* Intrinsics are in pixels. `Cameras.from_normalized` accepts them as fractions of the image
  size (focal ``fx/W``, ``fy/H``; principal point ``cx/W``, ``cy/H``, so ``(0.5, 0.5)`` is the centre).

Orbit cameras (`orbit_cameras`): azimuth 0 puts the camera on the -Y axis looking at the front of
the object (Blender's front view); positive azimuth turns the camera counter-clockwise seen from
above (+Z), so azimuth +90 degrees looks from +X (Blender's right view). Positive elevation lifts
the camera above the XY plane. In every orbit view world +Z projects upward in the image (before
roll) and, at azimuth 0, world +X projects to the right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


class CameraError(ValueError):
    """Camera parameters with wrong shapes, dtypes or degenerate values."""


# OpenCV camera axes expressed in Blender's camera frame (x right, y up, looking down -z):
# x stays, y and z flip. The matrix is its own inverse.
_BLENDER_TO_OPENCV_AXES = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))


@dataclass(eq=False)
class Cameras:
    """A batch of ``B`` pinhole cameras sharing one image size.

    All tensors live on the same device and share one floating dtype.
    """

    focal: torch.Tensor
    """[B, 2] focal lengths ``(fx, fy)`` in pixels."""
    principal: torch.Tensor
    """[B, 2] principal point ``(cx, cy)`` in pixels (``(W/2, H/2)`` is the image centre)."""
    rotation: torch.Tensor
    """[B, 3, 3] world->camera rotation ``R`` (OpenCV camera axes)."""
    translation: torch.Tensor
    """[B, 3] world->camera translation ``t`` so that ``x_cam = R x_world + t``."""
    height: int
    """Image height in pixels."""
    width: int
    """Image width in pixels."""

    def __post_init__(self) -> None:
        if self.focal.dim() != 2 or self.focal.shape[0] < 1:
            raise CameraError(f"Cameras.focal must be [B, 2] with B >= 1, got {list(self.focal.shape)}")
        b = self.focal.shape[0]
        expected = {"focal": (b, 2), "principal": (b, 2), "rotation": (b, 3, 3), "translation": (b, 3)}
        for name, shape in expected.items():
            value = getattr(self, name)
            if tuple(value.shape) != shape:
                raise CameraError(f"Cameras.{name} must have shape {list(shape)}, got {list(value.shape)}")
            if not value.is_floating_point():
                raise CameraError(f"Cameras.{name} must be a floating tensor, got {value.dtype}")
        devices = {str(getattr(self, n).device) for n in expected}
        dtypes = {getattr(self, n).dtype for n in expected}
        if len(devices) != 1 or len(dtypes) != 1:
            raise CameraError(f"Cameras tensors must share device and dtype, got {devices} / {dtypes}")
        if int(self.height) < 1 or int(self.width) < 1:
            raise CameraError(f"image size must be positive, got {self.height}x{self.width}")

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_normalized(
        cls,
        focal: torch.Tensor,
        principal: torch.Tensor,
        rotation: torch.Tensor,
        translation: torch.Tensor,
        height: int,
        width: int,
    ) -> Cameras:
        """Build from intrinsics given as fractions of the image size ([B, 2] each)."""
        scale = torch.tensor([float(width), float(height)], dtype=focal.dtype, device=focal.device)
        return cls(focal * scale, principal * scale, rotation, translation, height, width)

    # ----------------------------------------------------------------- basic properties

    def __len__(self) -> int:
        return self.focal.shape[0]

    @property
    def device(self) -> torch.device:
        return self.focal.device

    @property
    def dtype(self) -> torch.dtype:
        return self.focal.dtype

    @property
    def centers(self) -> torch.Tensor:
        """[B, 3] camera centres in world coordinates (``-R^T t``)."""
        return -(self.rotation.transpose(1, 2) @ self.translation.unsqueeze(-1)).squeeze(-1)

    def to(self, device=None, dtype=None) -> Cameras:
        """A copy on another device and/or dtype."""
        def move(x):
            return x.to(device=device, dtype=dtype)

        return Cameras(
            move(self.focal), move(self.principal), move(self.rotation), move(self.translation),
            self.height, self.width,
        )

    def __getitem__(self, index) -> Cameras:
        """Select cameras by an int, slice, or index tensor (keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Cameras(
            self.focal[index], self.principal[index], self.rotation[index],
            self.translation[index], self.height, self.width,
        )

    # ----------------------------------------------------------------- geometry

    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """[B, N, 3] world points -> [B, N, 3] camera-frame points."""
        self._check_points(points)
        return points @ self.rotation.transpose(1, 2) + self.translation.unsqueeze(1)

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project [B, N, 3] world points.

        Returns ``(uv [B, N, 2] in pixels, z [B, N] camera-frame depth)``. Points behind the camera
        (``z <= 0``) get meaningless ``uv``; callers mask them with ``z > 0``.
        """
        cam = self.world_to_camera(points)
        z = cam[..., 2]
        uv = cam[..., :2] / z.unsqueeze(-1) * self.focal.unsqueeze(1) + self.principal.unsqueeze(1)
        return uv, z

    def pixel_centers(self) -> torch.Tensor:
        """[H, W, 2] pixel centres ``(u, v)`` of the full image."""
        v, u = torch.meshgrid(
            torch.arange(self.height, device=self.device, dtype=self.dtype) + 0.5,
            torch.arange(self.width, device=self.device, dtype=self.dtype) + 0.5,
            indexing="ij",
        )
        return torch.stack([u, v], dim=-1)

    def generate_rays(
        self, pixels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """World-space rays through pixels.

        Args:
            pixels: optional [B, N, 2] (or [N, 2], shared) pixel coordinates ``(u, v)``; use
                ``j + 0.5, i + 0.5`` for the centre of pixel row ``i`` column ``j``. ``None``
                means every pixel centre.

        Returns:
            ``(origins, directions)``: [B, H, W, 3] each when ``pixels`` is None, else [B, N, 3].
            Directions are unit length, so a ray parameter ``t`` is the Euclidean distance from
            the camera centre. Rays are differentiable w.r.t. the camera tensors.
        """
        b = len(self)
        if pixels is None:
            uv = self.pixel_centers().reshape(1, -1, 2).expand(b, -1, -1)
        else:
            if pixels.dim() == 2:
                pixels = pixels.unsqueeze(0).expand(b, -1, -1)
            if pixels.dim() != 3 or pixels.shape[0] != b or pixels.shape[-1] != 2:
                raise CameraError(f"pixels must be [B, N, 2] or [N, 2] with B={b}, got {list(pixels.shape)}")
            uv = pixels.to(dtype=self.dtype, device=self.device)
        xy = (uv - self.principal.unsqueeze(1)) / self.focal.unsqueeze(1)
        dirs_cam = torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1)
        # Row-vector form of R^T d: d @ R.
        dirs = torch.nn.functional.normalize(dirs_cam @ self.rotation, dim=-1)
        origins = self.centers.unsqueeze(1).expand_as(dirs)
        if pixels is None:
            shape = (b, self.height, self.width, 3)
            return origins.reshape(shape), dirs.reshape(shape)
        return origins, dirs

    def ray_depth_to_z(self, directions: torch.Tensor) -> torch.Tensor:
        """Factor turning a ray distance into camera-frame z-depth for unit ``directions``
        [B, ..., 3]: ``z = t * factor`` (returns [B, ...])."""
        b = len(self)
        flat = directions.reshape(b, -1, 3)
        factor = flat @ self.rotation[:, 2, :].unsqueeze(-1)
        return factor.reshape(directions.shape[:-1])

    def _check_points(self, points: torch.Tensor) -> None:
        if points.dim() != 3 or points.shape[0] != len(self) or points.shape[-1] != 3:
            raise CameraError(f"points must be [B, N, 3] with B={len(self)}, got {list(points.shape)}")


# --------------------------------------------------------------------- intrinsics helpers


def focal_from_fov(fov_degrees: float, size_pixels: int) -> float:
    """Focal length in pixels for a full field of view (degrees) across ``size_pixels``."""
    if not 0.0 < fov_degrees < 180.0:
        raise CameraError(f"field of view must be in (0, 180) degrees, got {fov_degrees}")
    return 0.5 * size_pixels / math.tan(math.radians(fov_degrees) / 2.0)


def focal_from_blender_lens(
    lens_mm: float, sensor_width_mm: float, width: int, height: int, sensor_fit: str = "AUTO"
) -> float:
    """Focal length in pixels of a Blender perspective camera (square pixels).

    ``sensor_fit`` follows Blender: AUTO fits the sensor width to the larger image side,
    HORIZONTAL to the width, VERTICAL to the height (Blender then uses ``sensor_height``; pass
    that value as ``sensor_width_mm``).
    """
    if lens_mm <= 0 or sensor_width_mm <= 0:
        raise CameraError(f"lens and sensor size must be positive, got {lens_mm}, {sensor_width_mm}")
    if sensor_fit == "AUTO":
        fit_pixels = max(width, height)
    elif sensor_fit == "HORIZONTAL":
        fit_pixels = width
    elif sensor_fit == "VERTICAL":
        fit_pixels = height
    else:
        raise CameraError(f"sensor_fit must be AUTO, HORIZONTAL or VERTICAL, got {sensor_fit!r}")
    return lens_mm / sensor_width_mm * fit_pixels


def _intrinsics(b: int, focal, height: int, width: int, like: torch.Tensor):
    focal = torch.as_tensor(focal, dtype=like.dtype, device=like.device)
    if focal.dim() == 0:
        focal = focal.expand(b, 2)
    elif focal.dim() == 1 and focal.shape[0] == b:
        focal = focal.unsqueeze(-1).expand(b, 2)
    if tuple(focal.shape) != (b, 2):
        raise CameraError(f"focal must be a scalar, [B] or [B, 2], got {list(focal.shape)}")
    principal = torch.tensor([width / 2.0, height / 2.0], dtype=like.dtype, device=like.device)
    return focal.clone(), principal.expand(b, 2).clone()


# --------------------------------------------------------------------- extrinsics helpers


def look_at_rotation(
    eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor | None = None
) -> torch.Tensor:
    """World->camera rotations [B, 3, 3] (OpenCV axes) for cameras at ``eye`` [B, 3] looking at
    ``target`` [B, 3] with world ``up`` [3] or [B, 3] (default +Z) projecting upward."""
    if up is None:
        up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device)
    forward = target - eye
    if bool((forward.norm(dim=-1) < 1e-9).any()):
        raise CameraError("look_at: eye and target coincide")
    z = torch.nn.functional.normalize(forward, dim=-1)
    x = torch.linalg.cross(z, up.expand_as(z))
    if bool((x.norm(dim=-1) < 1e-6).any()):
        raise CameraError("look_at: viewing direction is parallel to the up vector; pass another up")
    x = torch.nn.functional.normalize(x, dim=-1)
    y = torch.linalg.cross(z, x)
    return torch.stack([x, y, z], dim=1)


def orbit_cameras(
    azimuth: torch.Tensor,
    elevation: torch.Tensor,
    distance: torch.Tensor | float,
    *,
    focal,
    height: int,
    width: int,
    roll: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
) -> Cameras:
    """Cameras on a sphere around ``target`` (default the origin), looking at it.

    Args:
        azimuth: [B] radians; 0 = camera on -Y looking at the object's front, +pi/2 = on +X.
        elevation: [B] radians; positive above the XY plane (+pi/2 looks straight down).
        distance: [B] or scalar, camera-to-target distance.
        focal: focal length in pixels, scalar, [B] or [B, 2].
        roll: optional [B] radians, rotation about the optical axis; positive roll turns the
            camera's x axis towards its y axis (image content appears rotated counter-clockwise).
        target: optional [B, 3] or [3] look-at point.

    Differentiable w.r.t. every tensor argument and well defined at the poles: the camera's x
    axis is ``(cos az, sin az, 0)`` for every elevation.
    """
    if azimuth.dim() != 1 or elevation.shape != azimuth.shape:
        raise CameraError(
            f"azimuth and elevation must be [B] tensors of equal shape, got "
            f"{list(azimuth.shape)} and {list(elevation.shape)}"
        )
    b = azimuth.shape[0]
    distance = torch.as_tensor(distance, dtype=azimuth.dtype, device=azimuth.device).expand(b)
    ca, sa = torch.cos(azimuth), torch.sin(azimuth)
    ce, se = torch.cos(elevation), torch.sin(elevation)
    zero = torch.zeros_like(azimuth)
    outward = torch.stack([ce * sa, -ce * ca, se], dim=-1)  # unit vector target -> camera
    z_axis = -outward
    x_axis = torch.stack([ca, sa, zero], dim=-1)
    y_axis = torch.linalg.cross(z_axis, x_axis)
    if roll is not None:
        cr, sr = torch.cos(roll).unsqueeze(-1), torch.sin(roll).unsqueeze(-1)
        x_axis, y_axis = cr * x_axis + sr * y_axis, -sr * x_axis + cr * y_axis
    rotation = torch.stack([x_axis, y_axis, z_axis], dim=1)
    if target is None:
        target = torch.zeros(3, dtype=azimuth.dtype, device=azimuth.device)
    eye = target + distance.unsqueeze(-1) * outward
    translation = -(rotation @ eye.unsqueeze(-1)).squeeze(-1)
    f, c = _intrinsics(b, focal, height, width, azimuth)
    return Cameras(f, c, rotation, translation, height, width)


def from_opencv(
    intrinsics: torch.Tensor, world_to_cam: torch.Tensor, *, height: int, width: int
) -> Cameras:
    """Cameras from OpenCV matrices: ``K`` [B, 3, 3] in pixels (pixel-centre convention of this
    module, zero skew) and world->camera extrinsics [B, 4, 4] or [B, 3, 4]."""
    if intrinsics.dim() != 3 or tuple(intrinsics.shape[1:]) != (3, 3):
        raise CameraError(f"intrinsics must be [B, 3, 3], got {list(intrinsics.shape)}")
    if world_to_cam.dim() != 3 or tuple(world_to_cam.shape[1:]) not in ((4, 4), (3, 4)):
        raise CameraError(f"world_to_cam must be [B, 4, 4] or [B, 3, 4], got {list(world_to_cam.shape)}")
    if bool((intrinsics[:, 0, 1].abs() > 1e-9).any()):
        raise CameraError("intrinsics with skew are not supported")
    focal = torch.stack([intrinsics[:, 0, 0], intrinsics[:, 1, 1]], dim=-1)
    principal = torch.stack([intrinsics[:, 0, 2], intrinsics[:, 1, 2]], dim=-1)
    return Cameras(focal, principal, world_to_cam[:, :3, :3], world_to_cam[:, :3, 3], height, width)


def from_blender_matrix_world(
    matrix_world: torch.Tensor, *, focal, height: int, width: int
) -> Cameras:
    """Cameras from Blender camera objects' ``matrix_world`` [B, 4, 4] (camera->world, camera
    looking down its -Z with +Y up; scale must be 1). ``focal`` in pixels, see
    `focal_from_blender_lens`."""
    if matrix_world.dim() != 3 or tuple(matrix_world.shape[1:]) != (4, 4):
        raise CameraError(f"matrix_world must be [B, 4, 4], got {list(matrix_world.shape)}")
    c2w = matrix_world[:, :3, :3]
    flip = torch.tensor(_BLENDER_TO_OPENCV_AXES, dtype=c2w.dtype, device=c2w.device)
    rotation = (c2w @ flip).transpose(1, 2)
    eye = matrix_world[:, :3, 3]
    translation = -(rotation @ eye.unsqueeze(-1)).squeeze(-1)
    f, c = _intrinsics(matrix_world.shape[0], focal, height, width, matrix_world)
    return Cameras(f, c, rotation, translation, height, width)


def to_blender_matrix_world(cameras: Cameras) -> torch.Tensor:
    """Inverse of `from_blender_matrix_world`: [B, 4, 4] camera->world in Blender's convention."""
    flip = torch.tensor(_BLENDER_TO_OPENCV_AXES, dtype=cameras.dtype, device=cameras.device)
    c2w = cameras.rotation.transpose(1, 2) @ flip
    out = torch.zeros(len(cameras), 4, 4, dtype=cameras.dtype, device=cameras.device)
    out[:, :3, :3] = c2w
    out[:, :3, 3] = cameras.centers
    out[:, 3, 3] = 1.0
    return out
