"""Reader for real data in the ShapeNet layout used by DVR (Niemeyer et al.) and Occupancy Networks.

Layout per model::

    <root>/<synset>/<model>/image/0000.png ...   RGB(A) views (png or jpg)
    <root>/<synset>/<model>/mask/0000.png ...    object masks
    <root>/<synset>/<model>/depth/0000.exr ...   optional depth maps (camera z)
    <root>/<synset>/<model>/cameras.npz          world_mat_i, camera_mat_i, optional scale_mat_i
    <root>/<synset>/<model>/pointcloud.npz       points, normals (surface samples)
    <root>/<synset>/<model>/points.npz           points, occupancies (maybe np.packbits-packed)
    <root>/<synset>/{train,val,test}.lst         optional split lists

Conventions converted (see docs/dataset.md): DVR projects object points p (the unit-cube frame of
points.npz/pointcloud.npz) as ``camera_mat @ world_mat @ scale_mat @ [p, 1] = [u*d, v*d, d, 1]``
with (u, v) in [-1, 1] where pixel index j maps to u = 2j / (W - 1) - 1, and d the camera depth.
We factor that into pixel intrinsics K (pixel centres at j + 0.5) and an OpenCV rigid
world->camera transform, and rotate the object frame from the source's axes (ShapeNet: Y up;
the front axis is configurable) into the project's Z-up / front -Y frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .records import DatasetError, ShapeRecord

_AXES = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0), "+z": (0, 0, 1), "-z": (0, 0, -1)}


@dataclass(frozen=True)
class DVRLayout:
    """File names and source conventions of a DVR/ONet-style dataset."""

    image_dir: str = "image"
    """Folder of views, sorted by file name."""
    mask_dir: str = "mask"
    """Folder of masks, one per view (same sort order)."""
    depth_dir: str = "depth"
    """Folder of optional EXR depth maps; skipped when absent."""
    cameras_file: str = "cameras.npz"
    pointcloud_file: str = "pointcloud.npz"
    points_file: str = "points.npz"
    source_up: str = "+y"
    """Up axis of the source frame (ShapeNet: +y)."""
    source_front: str = "-z"
    """Axis the source objects face (commonly -z for ShapeNetCore; check on your data)."""


def axis_conversion(up: str, front: str) -> np.ndarray:
    """Rotation C [3,3] taking source coordinates to the project frame (up -> +Z, front -> -Y)."""
    try:
        u, f = np.array(_AXES[up], float), np.array(_AXES[front], float)
    except KeyError as e:
        raise ValueError(f"axis {e} must be one of {sorted(_AXES)}") from None
    if abs(u @ f) > 0:
        raise ValueError(f"up {up} and front {front} must be perpendicular")
    r_y, r_z = -f, u
    return np.stack([np.cross(r_y, r_z), r_y, r_z])


def decompose_dvr_camera(
    camera_mat: np.ndarray,
    world_mat: np.ndarray,
    scale_mat: np.ndarray,
    width: int,
    height: int,
    conversion: np.ndarray = np.eye(3),
) -> tuple[np.ndarray, np.ndarray, float]:
    """(K [3,3] in pixels, OpenCV world_to_cam [4,4] in the converted frame, depth_scale).

    ``depth_scale`` divides DVR depth values to give z in the returned camera frame (DVR's
    matrices may carry a global scale that a rigid transform cannot).
    """
    from scipy.linalg import rq

    m = np.asarray(camera_mat, float) @ np.asarray(world_mat, float) @ np.asarray(scale_mat, float)
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise DatasetError("camera_mat @ world_mat @ scale_mat must be affine (last row 0 0 0 1)")
    ndc_to_pix = np.array(
        [[(width - 1) / 2, 0, (width - 1) / 2 + 0.5], [0, (height - 1) / 2, (height - 1) / 2 + 0.5], [0, 0, 1]]
    )
    P = ndc_to_pix @ m[:3]
    P = P @ np.block([[conversion.T, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]])
    Kr, R = rq(P[:, :3])
    D = np.diag(np.sign(np.diag(Kr)))
    Kr, R = Kr @ D, D @ R
    if np.linalg.det(R) < 0:
        raise DatasetError("the camera matrices describe a mirrored camera (left-handed image axes)")
    lam = Kr[2, 2]
    K = Kr / lam
    t = np.linalg.solve(Kr, P[:, 3])
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, t
    return K, w2c, float(lam)


class DVRDataset:
    """Models of a DVR/ONet ShapeNet-style directory, yielding ShapeRecords."""

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        categories: Sequence[str] | None = None,
        layout: DVRLayout = DVRLayout(),
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset root {self.root} does not exist")
        self.layout = layout
        self.conversion = axis_conversion(layout.source_up, layout.source_front)
        synsets = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if categories is not None:
            missing = set(categories) - set(synsets)
            if missing:
                raise DatasetError(f"categories {sorted(missing)} not found under {self.root}")
            synsets = [s for s in synsets if s in set(categories)]
        self.names: list[str] = []
        for syn in synsets:
            if split is not None:
                lst = self.root / syn / f"{split}.lst"
                if not lst.is_file():
                    raise DatasetError(f"split list {lst} is missing")
                models = [m for m in lst.read_text().split() if m]
            else:
                models = sorted(p.name for p in (self.root / syn).iterdir() if p.is_dir())
            self.names += [f"{syn}/{m}" for m in models]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[ShapeRecord]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> ShapeRecord:
        return self.read(self.names[i])

    def read(self, name: str) -> ShapeRecord:
        from PIL import Image

        d = self.root / name
        if not d.is_dir():
            raise DatasetError(f"model directory {d} does not exist")
        lay = self.layout
        images = _listing(d / lay.image_dir, (".png", ".jpg", ".jpeg"))
        masks = _listing(d / lay.mask_dir, (".png", ".jpg", ".jpeg"))
        if len(masks) != len(images):
            raise DatasetError(f"{d}: {len(images)} images but {len(masks)} masks")
        cam_path = d / lay.cameras_file
        if not cam_path.is_file():
            raise DatasetError(f"{d}: camera file {cam_path.name} is missing")
        cams = np.load(cam_path)
        rgbs, alphas, Ks, w2cs, scales = [], [], [], [], []
        for k, (ip, mp) in enumerate(zip(images, masks)):
            with Image.open(ip) as im:
                rgbs.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
            with Image.open(mp) as im:
                m = np.asarray(im, dtype=np.float32)
            m = m.reshape(m.shape[0], m.shape[1], -1)[..., 0]
            alphas.append((m / (255.0 if m.max() > 1.0 else 1.0)).astype(np.float32))
            if alphas[-1].shape != rgbs[-1].shape[:2]:
                raise DatasetError(f"{mp}: mask size {alphas[-1].shape} differs from image size {rgbs[-1].shape[:2]}")
            for key in (f"world_mat_{k}", f"camera_mat_{k}"):
                if key not in cams:
                    raise DatasetError(f"{cam_path}: missing {key} (view {ip.name})")
            scale = cams[f"scale_mat_{k}"] if f"scale_mat_{k}" in cams else np.eye(4)
            h, w = rgbs[-1].shape[:2]
            K, w2c, lam = decompose_dvr_camera(
                cams[f"camera_mat_{k}"], cams[f"world_mat_{k}"], scale, w, h, self.conversion
            )
            Ks.append(K)
            w2cs.append(w2c)
            scales.append(lam)
        rec = ShapeRecord(
            shape_id=name,
            category=name.split("/", 1)[0],
            images=np.stack(rgbs),
            masks=np.stack(alphas),
            intrinsics=np.array(Ks, np.float32),
            world_to_cam=np.array(w2cs, np.float32),
            meta={
                "source": "dvr",
                "root": str(self.root),
                "axis_conversion": self.conversion.tolist(),
                "images": [p.name for p in images],
            },
        )
        depth_dir = d / lay.depth_dir
        if depth_dir.is_dir():
            from .exr import read_exr

            depths = _listing(depth_dir, (".exr",))
            if len(depths) != len(images):
                raise DatasetError(f"{d}: {len(images)} images but {len(depths)} depth maps")
            maps = []
            for p, lam in zip(depths, scales):
                ch = read_exr(p)
                z = next(iter(ch.values())) if len(ch) == 1 else ch.get("R", next(iter(ch.values())))
                maps.append(np.where(np.isfinite(z) & (z > 0) & (z < 1e9), z / lam, 0.0).astype(np.float32))
            rec.depth = np.stack(maps)
        C = self.conversion.astype(np.float32)
        pc = d / lay.pointcloud_file
        if pc.is_file():
            with np.load(pc) as z:
                _need(z, pc, ("points", "normals"))
                rec.surface_points = z["points"].astype(np.float32) @ C.T
                rec.surface_normals = z["normals"].astype(np.float32) @ C.T
        pts = d / lay.points_file
        if pts.is_file():
            with np.load(pts) as z:
                _need(z, pts, ("points", "occupancies"))
                p = z["points"].astype(np.float32)
                occ = z["occupancies"]
                if occ.dtype == np.uint8 and occ.size == -(-len(p) // 8) and len(p) > occ.size:
                    occ = np.unpackbits(occ)[: len(p)]  # ONet stores np.packbits(occupancies)
                if occ.size != len(p):
                    raise DatasetError(f"{pts}: {occ.size} occupancies for {len(p)} points")
                rec.sdf_points, rec.occupancy = p @ C.T, occ.astype(bool).reshape(-1)
        return rec


def _listing(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"folder {folder} is missing")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in exts)
    if not files:
        raise DatasetError(f"folder {folder} has no {'/'.join(exts)} files")
    return files


def _need(z, path: Path, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in z]
    if missing:
        raise DatasetError(f"{path} lacks arrays {missing}")
