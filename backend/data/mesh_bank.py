"""Third-party meshes baked into the training pool's format: an SDF grid, a material grid, a
palette and surface samples, as `backend.train.shape_bank` bakes its procedural shapes.

The procedural generator makes primitives joined together; real objects are not that (a slice of
toast is a slab, a lamp a shade on a wire, a chair's legs are thin and square). Meshes that ship
in packages nobody in this project made (`scripts/bake_training_meshes.py`: Sweet Home 3D's
furniture catalogues) widen the shapes training sees. The real-object benchmark's own meshes are
left out of every bank.

A baked mesh lies in the unit box (longest side 1, centred on its bounding box, Z up, front -Y),
as the procedural shapes do. Meshes from catalogues are rarely watertight: parts overlap, seats
float a hair above their frames, and sheets have no inside. So the sign of the distance is found
on a fine voxel grid rather than from the triangles: the voxels the surface passes through,
grown by one, wall off whatever the outside cannot reach; that, with the surface's own voxels, is
the solid. A part with a gap of under a voxel is closed, and a sheet becomes a slab
(`MIN_HALF_THICKNESS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.data.procedural import GRID_PADDING

GRID_LIMIT = 0.5 + GRID_PADDING
"""The baked grids span [-GRID_LIMIT, GRID_LIMIT]^3, as the training pool's (`shape_bank.GRID_LIMIT`)."""

SIGN_RESOLUTION = 2
"""The fine voxel grid that finds the sign is this many times the baked grid's side."""

MAX_MATERIALS = 8
"""Palette rows of a baked mesh, as the training pool keeps (`shape_bank.MAX_MATERIALS`); parts whose
colours are nearest share one beyond that."""

MIN_INSIDE_SHARE = 1e-4
"""Least share of the grid a baked mesh must fill (a mesh that fills less is a stray sheet)."""

DEFAULT_ROUGHNESS = 0.6


class MeshBakeError(ValueError):
    """A mesh that cannot be baked (empty, degenerate, or with no inside at the grid's resolution)."""


@dataclass
class MeshPart:
    """One material's triangles: ``vertices`` [V, 3], ``faces`` [F, 3], ``colour`` sRGB 0..1."""

    vertices: np.ndarray
    faces: np.ndarray
    colour: np.ndarray


@dataclass
class BakedMesh:
    sdf: np.ndarray
    """[G, G, G] float32, indexed (x, y, z) over [-GRID_LIMIT, GRID_LIMIT]^3, negative inside."""
    materials: np.ndarray
    """[G, G, G] uint8: the palette row of the nearest surface."""
    palette: np.ndarray
    """[M, 5] float32: sRGB colour, roughness, metallic."""
    surface: np.ndarray
    """[K, 3] float32 points on the surface."""
    surface_material: np.ndarray
    """[K] uint8."""

    def save(self, path: Path) -> None:
        np.savez_compressed(path, sdf=self.sdf.astype(np.float16), materials=self.materials, palette=self.palette,
                            surface=self.surface, surface_material=self.surface_material)

    @classmethod
    def load(cls, path: Path) -> BakedMesh:
        with np.load(path) as data:
            return cls(data["sdf"].astype(np.float32), data["materials"], data["palette"], data["surface"],
                       data["surface_material"])


def normalised(parts: list[MeshPart]) -> list[MeshPart]:
    """The parts moved and scaled together so that their bounding box is centred and its longest
    side is 1."""
    points = np.concatenate([p.vertices for p in parts])
    lo, hi = points.min(0), points.max(0)
    size = float((hi - lo).max())
    if not np.isfinite(size) or size <= 0:
        raise MeshBakeError("the mesh has no extent")
    centre = (lo + hi) / 2
    return [MeshPart((p.vertices - centre) / size, p.faces, p.colour) for p in parts]


def _palette_of(parts: list[MeshPart], areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(palette colours [M, 3], each part's row [P]): the parts' colours, merged into at most
    `MAX_MATERIALS` by joining the two nearest rows (area-weighted) until few enough are left."""
    colours = [np.asarray(p.colour, dtype=np.float64) for p in parts]
    weights = list(np.maximum(areas, 1e-12))
    members = [[i] for i in range(len(parts))]
    while len(colours) > MAX_MATERIALS:
        stacked = np.stack(colours)
        distance = np.linalg.norm(stacked[:, None] - stacked[None], axis=-1) + np.eye(len(colours)) * 1e9
        a, b = np.unravel_index(int(np.argmin(distance)), distance.shape)
        a, b = min(a, b), max(a, b)
        total = weights[a] + weights[b]
        colours[a] = (colours[a] * weights[a] + colours[b] * weights[b]) / total
        weights[a] = total
        members[a] += members.pop(b)
        del colours[b], weights[b]
    row_of = np.zeros(len(parts), dtype=np.int64)
    for row, indices in enumerate(members):
        row_of[indices] = row
    return np.stack(colours), row_of


def _sample_surface(parts: list[MeshPart], count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` area-uniform points on the parts [count, 3] and the part of each [count]."""
    from backend.geometry.mesh_ops import sample_surface

    vertices = np.concatenate([p.vertices for p in parts])
    starts = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    faces = np.concatenate([p.faces + start for p, start in zip(parts, starts)])
    owner = np.concatenate([np.full(len(p.faces), i) for i, p in enumerate(parts)])
    index, weights = sample_surface(vertices, faces, count, seed)
    return np.einsum("nk,nkd->nd", weights, vertices[faces[index]]), owner[index]


def _part_areas(parts: list[MeshPart]) -> np.ndarray:
    areas = []
    for p in parts:
        t = p.vertices[p.faces]
        areas.append(0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1).sum())
    return np.asarray(areas)


def _fine_cell(points: np.ndarray, resolution: int) -> tuple[np.ndarray, ...]:
    """The (x, y, z) indices of the voxels holding ``points`` [N, 3] on a grid of ``resolution``
    per side over [-GRID_LIMIT, GRID_LIMIT]^3."""
    index = np.clip(((points + GRID_LIMIT) * resolution / (2 * GRID_LIMIT)).astype(np.int64), 0, resolution - 1)
    return index[:, 0], index[:, 1], index[:, 2]


def surface_voxels(points: np.ndarray, owner: np.ndarray, resolution: int) -> np.ndarray:
    """[R, R, R] int: for each voxel of a grid over [-GRID_LIMIT, GRID_LIMIT]^3, the part of a
    surface point in it, or -1 where none is."""
    voxels = np.full((resolution,) * 3, -1, dtype=np.int64)
    voxels[_fine_cell(points, resolution)] = owner
    return voxels


def solid_voxels(surface: np.ndarray) -> np.ndarray:
    """[R, R, R] bool: the voxels that hold surface (bool [R, R, R]), or that the outside
    (everything reachable from the grid's border without crossing the surface's voxels grown by
    one) does not reach."""
    from scipy import ndimage

    wall = ndimage.binary_dilation(surface, structure=np.ones((3, 3, 3), bool))
    labels, _ = ndimage.label(~wall)
    border = np.unique(np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(),
                                       labels[:, :, [0, -1]].ravel()]))
    outside = np.isin(labels, border[border > 0])
    # the grown wall's outer layer is outside too: only the surface's own voxels and what the
    # outside cannot reach count as solid
    return surface | (~wall & ~outside)


MIN_HALF_THICKNESS = 0.75
"""Baked-grid voxels: every surface is at least twice this thick. A sheet (a bed's base board, a
lampshade, a leaf) has no inside at the baked grid's resolution: rays traced from its far side
stalled beside it (on a bed, half the rays from below), so its zero level set is pushed out to
this distance, and every other solid grows by as much (1.3 % of its size at 64^3)."""

EXACT_WITHIN = 3.0
"""Fine voxels from the surface within which a node's distance is measured to the surface samples
themselves; farther ones take the distance between voxel centres, which is within a voxel of it
and only steers the renderer's steps."""


def bake_mesh(parts: list[MeshPart], grid: int = 64, surface_points: int = 2048, seed: int = 0,
              roughness: float = DEFAULT_ROUGHNESS) -> BakedMesh:
    """The parts (already `normalised`) baked on a ``grid`` per side: signed distances at the grid's
    nodes (to the sampled surface, signed by `solid_voxels` at `SIGN_RESOLUTION` times the grid),
    the nearest part's palette row, and ``surface_points`` samples."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    parts = [p for p in parts if len(p.faces)]
    if not parts:
        raise MeshBakeError("the mesh has no triangles")
    rng = np.random.default_rng(seed)
    resolution = SIGN_RESOLUTION * grid
    cell = 2 * GRID_LIMIT / resolution
    areas = _part_areas(parts)
    if not np.isfinite(areas).all() or areas.sum() <= 0:
        raise MeshBakeError("the mesh has no area")
    # dense enough that every fine voxel the surface crosses holds a sample
    dense = int(np.clip(4 * areas.sum() / cell ** 2, 50_000, 2_000_000))
    points, owner = _sample_surface(parts, dense, seed)
    voxels = surface_voxels(points, owner, resolution)
    surface = voxels >= 0
    solid = solid_voxels(surface)
    distance, (ix, iy, iz) = ndimage.distance_transform_edt(~surface, return_indices=True)
    nodes = np.linspace(-GRID_LIMIT, GRID_LIMIT, grid)
    xyz = np.stack(np.meshgrid(nodes, nodes, nodes, indexing="ij"), -1).reshape(-1, 3)
    at = _fine_cell(xyz, resolution)
    unsigned = distance[at] * cell
    part = voxels[ix[at], iy[at], iz[at]]
    near = distance[at] <= EXACT_WITHIN
    exact, nearest = cKDTree(points).query(xyz[near])
    unsigned[near], part[near] = exact, owner[nearest]
    sdf = np.minimum(np.where(solid[at], -unsigned, unsigned), unsigned - MIN_HALF_THICKNESS * 2 * GRID_LIMIT / (grid - 1))
    sdf = sdf.reshape((grid,) * 3).astype(np.float32)
    if (sdf < 0).mean() < MIN_INSIDE_SHARE:
        raise MeshBakeError(f"the mesh fills {(sdf < 0).mean():.1e} of its grid: no inside at {grid}^3")
    colours, row_of = _palette_of(parts, areas)
    palette = np.zeros((len(colours), 5), dtype=np.float32)
    palette[:, :3] = np.clip(colours, 0, 1)
    palette[:, 3] = roughness
    materials = row_of[part].reshape((grid,) * 3).astype(np.uint8)
    keep = rng.choice(len(points), size=surface_points, replace=len(points) < surface_points)
    return BakedMesh(sdf, materials, palette, points[keep].astype(np.float32),
                     row_of[owner[keep]].astype(np.uint8))


MANIFEST = "manifest.json"
"""The bank folder's list of its meshes: each entry's ``file`` (an .npz of `BakedMesh`), ``name``,
``source`` and ``licence``."""


class MeshBank:
    """A folder of baked meshes and its manifest (`MANIFEST`)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        manifest = self.folder / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} not found: bake the meshes with scripts/bake_training_meshes.py")
        self.entries = json.loads(manifest.read_text())["meshes"]
        if not self.entries:
            raise ValueError(f"{manifest} lists no meshes")

    def __len__(self) -> int:
        return len(self.entries)

    def name(self, index: int) -> str:
        return self.entries[index]["name"]

    def load(self, index: int) -> BakedMesh:
        return BakedMesh.load(self.folder / self.entries[index]["file"])
