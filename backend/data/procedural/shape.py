"""ProceduralShape: an analytic SDF made of coloured parts, normalised to the unit box.

Normalisation (project convention): Z-up, front towards -Y, centred on the bounding-box centre,
longest bounding-box side 1, so the shape lies in [-0.5, 0.5]^3. Builders construct in any
convenient units with the right orientation; this module measures the extent and rescales.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .materials import Material
from .sdf import SDF, SmoothUnion, Subtract, Union

#: Margin of empty space (in normalised units) around [-0.5, 0.5]^3 for meshing and sampling.
GRID_PADDING = 0.05


class ShapeError(RuntimeError):
    """A procedural shape could not be built, measured or meshed."""


@dataclass
class Part:
    """One named, coloured piece of a shape."""

    name: str
    sdf: SDF
    material: int
    """Index into the shape's material list."""


@dataclass
class ShapeSpec:
    """What a category builder returns, in construction units (Z-up, front -Y)."""

    parts: list[Part]
    materials: list[Material]
    params: dict[str, Any] = field(default_factory=dict)
    cuts: list[SDF] = field(default_factory=list)
    """Solids removed from the union of parts (cavities, grooves)."""
    blend: float = 0.0
    """Smooth-union radius between parts (construction units); 0 = hard union."""


def sample_grid(fn, lo: float, hi: float, res: int, lipschitz: float = 2.0, chunk: int = 400_000) -> np.ndarray:
    """Evaluate an SDF on a res^3 grid spanning [lo, hi]^3, exactly near the surface only.

    Blocks of 8^3 points, then 2^3 sub-blocks of the blocks that may hold surface, whose centre
    value proves (with the given Lipschitz safety factor) that no surface passes through them
    are filled with that centre value: signs stay right, which is all marching cubes needs away
    from the surface. Returns float64[res, res, res].
    """
    h = (hi - lo) / (res - 1)
    xs = lo + h * np.arange(res)
    big = 8
    nb = -(-res // big)
    # level 1: 8^3 blocks, centred between their first and last grid points
    origins = np.stack(np.meshgrid(*[np.arange(nb) * big] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    centres = lo + h * (np.minimum(origins + big, res) - 1 + origins) / 2.0
    dc = _chunked(fn, centres, chunk)
    vol = np.repeat(np.repeat(np.repeat(dc.reshape(nb, nb, nb), big, 0), big, 1), big, 2)[:res, :res, :res].copy()
    # a block is safe if the centre value exceeds the distance to its farthest point plus one
    # voxel (so the gaps between blocks are covered too)
    active = np.abs(dc) <= lipschitz * np.sqrt(3.0) * 0.5 * (big + 1) * h
    if not active.any():
        return vol
    # level 2: 2^3 sub-blocks of the active blocks
    sub = np.stack(np.meshgrid(*[np.arange(0, big, 2)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    sorg = (origins[active][:, None, :] + sub[None]).reshape(-1, 3)
    sorg = sorg[(sorg < res).all(axis=1)]
    sd = _chunked(fn, lo + h * (sorg + 0.5), chunk)
    near = np.abs(sd) <= lipschitz * np.sqrt(3.0) * 0.5 * 3 * h
    local = np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    far_idx = np.minimum(sorg[~near][:, None, :] + local[None], res - 1)
    vol[far_idx[..., 0], far_idx[..., 1], far_idx[..., 2]] = sd[~near][:, None]
    idx = np.minimum(sorg[near][:, None, :] + local[None], res - 1).reshape(-1, 3)
    vol[idx[:, 0], idx[:, 1], idx[:, 2]] = _chunked(fn, xs[idx], chunk)
    return vol


def _chunked(fn, p: np.ndarray, chunk: int) -> np.ndarray:
    return np.concatenate([fn(p[i : i + chunk]) for i in range(0, len(p), chunk)]) if len(p) else np.zeros(0)


def marching_cubes_mesh(vol: np.ndarray, lo: float, hi: float):
    """Watertight, outward-oriented trimesh of the zero level set of a cubic grid."""
    import trimesh
    from skimage.measure import marching_cubes

    if not (vol.min() < 0.0 < vol.max()):
        raise ShapeError("the field has no zero crossing inside the grid (empty or overfull shape)")
    h = (hi - lo) / (vol.shape[0] - 1)
    verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(h, h, h))
    mesh = trimesh.Trimesh(verts + lo, faces, process=True)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def measure_normalisation(bounds: tuple[np.ndarray, np.ndarray], res: int, extent, name: str
                          ) -> tuple[np.ndarray, float]:
    """Centre and longest side of a shape's surface, in construction units.

    A coarse pass over the conservative ``bounds`` finds the object; a second pass at ``res``
    over a cube 1.3x that size (so features the coarse grid missed still fit) measures it at about
    the resolution of a ``res`` mesh. ``extent(center, half, grid_res)`` returns the surface's box
    (lo, hi) on a grid_res^3 grid over [-1, 1]^3 mapped to ``center + half * [-1, 1]^3``, or None
    when the grid shows no surface.
    """
    lo, hi = bounds
    center = 0.5 * (lo + hi)
    half = 0.5 * float((hi - lo).max()) * 1.1
    size = 0.0
    for grid_res in (max(32, res // 2), res):
        box = extent(center, half, grid_res)
        if box is None:
            raise ShapeError(f"{name}: the field has no zero crossing inside the grid (empty or overfull shape)")
        vlo, vhi = box
        center = center + 0.5 * (vlo + vhi) * half
        size = float((vhi - vlo).max()) * half
        if size <= 1e-9:
            raise ShapeError(f"{name}: degenerate (zero-size) shape")
        half = 0.65 * size
    return center, size


class ProceduralShape:
    """A normalised procedural shape with an analytic SDF, part colours and metadata."""

    def __init__(self, category: str, seed: int, spec: ShapeSpec, measure_res: int = 128):
        if not spec.parts:
            raise ShapeError(f"{category}/{seed}: the builder returned no parts")
        self.category = category
        self.seed = int(seed)
        self.params = dict(spec.params)
        self.parts = list(spec.parts)
        self.materials = list(spec.materials)
        sdfs = [p.sdf for p in self.parts]
        body: SDF = SmoothUnion(sdfs, spec.blend) if spec.blend > 0 else Union(sdfs)
        self._field: SDF = Subtract(body, Union(list(spec.cuts))) if spec.cuts else body
        self._center, self._scale = self._measure(measure_res)

    # ---------------------------------------------------------------- normalisation
    def _measure(self, res: int) -> tuple[np.ndarray, float]:
        """Bounding-box centre and longest side of the zero level set, in construction units
        (`measure_normalisation`, the box of marching-cubes vertices)."""

        def extent(center: np.ndarray, half: float, grid_res: int):
            vol = sample_grid(lambda q: self._field(q * half + center) / half, -1.0, 1.0, grid_res)
            try:
                verts = marching_cubes_mesh(vol, -1.0, 1.0).vertices
            except ShapeError:
                return None
            return verts.min(axis=0), verts.max(axis=0)

        return measure_normalisation(self._field.bounds(), res, extent, f"{self.category}/{self.seed}")

    def _to_construction(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"points must be an [N, 3] array, got shape {p.shape}")
        return p * self._scale + self._center

    # ---------------------------------------------------------------- queries
    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (bound) at normalised points [N,3] -> [N], negative inside."""
        q = self._to_construction(points)
        return _chunked(self._field, q, 400_000) / self._scale

    def part_labels(self, points: np.ndarray) -> np.ndarray:
        """Index of the nearest part for each point [N,3] -> int32[N]."""
        q = self._to_construction(points)
        d = np.stack([p.sdf(q) for p in self.parts], axis=-1)
        return np.argmin(d, axis=-1).astype(np.int32)

    def material_ids(self, points: np.ndarray) -> np.ndarray:
        """Material index for each point [N,3] -> int32[N]."""
        lut = np.array([p.material for p in self.parts], dtype=np.int32)
        return lut[self.part_labels(points)]

    def color(self, points: np.ndarray) -> np.ndarray:
        """sRGB base colour for each point [N,3] -> float32[N,3]."""
        pal = np.array([m.base_color for m in self.materials], dtype=np.float32)
        return pal[self.material_ids(points)]

    def mesh(self, resolution: int = 128):
        """Watertight marching-cubes mesh (trimesh.Trimesh) on a resolution^3 grid."""
        if resolution < 16:
            raise ValueError(f"mesh resolution must be >= 16, got {resolution}")
        lo, hi = -0.5 - GRID_PADDING, 0.5 + GRID_PADDING
        vol = sample_grid(self.sdf, lo, hi, resolution)
        try:
            return marching_cubes_mesh(vol, lo, hi)
        except ShapeError as e:
            raise ShapeError(f"{self.category}/{self.seed}: {e}") from None

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description: category, seed, parameters, parts, materials, normalisation."""
        return {
            "category": self.category,
            "seed": self.seed,
            "params": _jsonable(self.params),
            "parts": [{"name": p.name, "material": p.material} for p in self.parts],
            "materials": [m.to_json() for m in self.materials],
            "normalization": {"construction_center": self._center.tolist(), "construction_scale": self._scale},
        }

    def __repr__(self) -> str:
        return f"ProceduralShape({self.category!r}, seed={self.seed}, parts={len(self.parts)})"


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return round(float(x), 5)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x
