"""The procedural generator's SDF trees evaluated in batched torch, on any device.

The numpy nodes (`backend.data.procedural.sdf`) stay the one description of every shape: the
category builders draw their parameters with numpy and return a node tree in microseconds; what
costs time is evaluating it (the numpy `ProceduralShape` measures its extent with two marching-cubes
passes, about half a second a shape here). `compile_sdf` turns a tree into a torch function of
[N, 3] points, and `TorchShape` is the normalised shape with its part materials, measured on a dense
grid on the device — so a GPU that has no Blender can make thousands of training shapes a minute.

Surfaces agree with the numpy generator: at the same normalisation, field values match to float
rounding (the numpy unions skip children by their bounding boxes only where that cannot change the
value), and the torch measurement finds the same extent as the numpy one, because the bounding box of
marching-cubes vertices is the box of the grid's linearly interpolated zero crossings, which is
what `zero_crossing_box` computes (tests/test_torch_sdf.py states the tolerances).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from . import sdf as S
from .shape import GRID_PADDING, ProceduralShape, ShapeError, ShapeSpec, measure_normalisation

TorchField = Callable[[torch.Tensor], torch.Tensor]


class UnsupportedNodeError(TypeError):
    """An SDF node class has no torch counterpart (add one next to the others below)."""


def _t(x, like: torch.Tensor | None = None, *, device=None, dtype=None) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64), device=device, dtype=dtype)


def _smooth_min(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    if k <= 0:
        return torch.minimum(a, b)
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _polygon_sdf(q: torch.Tensor, poly: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Signed distance from 2D points [N, 2] to a closed polygon [M, 2], all edges at once
    (the numpy version's edge loop would cost a kernel launch per edge and operation)."""
    a, b = poly, torch.roll(poly, -1, dims=0)
    e = b - a
    ee = (e * e).sum(-1)
    inv_ee = torch.where(ee > 0, 1.0 / ee.clamp_min(1e-300), torch.zeros_like(ee))
    out = []
    for i in range(0, len(q), chunk):
        qc = q[i: i + chunk]
        w = qc[:, None, :] - a[None]
        t = ((w * e).sum(-1) * inv_ee).clamp(0.0, 1.0)
        r = w - t[..., None] * e
        d = torch.sqrt((r * r).sum(-1).amin(1))
        # crossing-number test: a ray towards +r crosses the edge
        qy = qc[:, 1:2]
        c1 = qy >= a[:, 1]
        c2 = qy < b[:, 1]
        c3 = e[:, 0] * w[..., 1] > e[:, 1] * w[..., 0]
        inside = ((c1 == c2) & (c2 == c3)).sum(1) % 2 == 1
        out.append(torch.where(inside, -d, d))
    return torch.cat(out) if out else q.new_zeros(0)


def compile_sdf(node: S.SDF, device="cpu", dtype=torch.float32) -> TorchField:
    """A torch function ``points [N, 3] -> distances [N]`` equal to ``node`` (numpy) on the same points."""
    c = lambda x: _t(x, device=device, dtype=dtype)  # noqa: E731
    if isinstance(node, S.Sphere):
        center, r = c(node.center), float(node.radius)
        return lambda p: torch.linalg.vector_norm(p - center, dim=-1) - r
    if isinstance(node, S.Ellipsoid):
        center, radii = c(node.center), c(node.radii)
        inner = -float(np.min(node.radii))

        def ellipsoid(p):
            q = p - center
            k0 = torch.linalg.vector_norm(q / radii, dim=-1)
            k1 = torch.linalg.vector_norm(q / (radii * radii), dim=-1)
            return torch.where(k1 > 1e-12, k0 * (k0 - 1.0) / k1.clamp_min(1e-12), torch.full_like(k0, inner))
        return ellipsoid
    if isinstance(node, S.RoundBox):
        center, inner_half, r = c(node.center), c(node.half - node.radius), float(node.radius)

        def round_box(p):
            q = (p - center).abs() - inner_half
            return torch.linalg.vector_norm(q.clamp_min(0.0), dim=-1) + q.amax(-1).clamp_max(0.0) - r
        return round_box
    if isinstance(node, S.Cylinder):
        center, r = c(node.center), float(node.rounding)
        radial, axial = float(node.radius) - r, float(node.half_height) - r

        def cylinder(p):
            q = p - center
            d = torch.stack([torch.hypot(q[:, 0], q[:, 1]) - radial, q[:, 2].abs() - axial], dim=-1)
            return d.amax(-1).clamp_max(0.0) + torch.linalg.vector_norm(d.clamp_min(0.0), dim=-1) - r
        return cylinder
    if isinstance(node, S.RoundCone):
        return _round_cone(node, c)
    if isinstance(node, S.Torus):
        center, major, minor = c(node.center), float(node.major), float(node.minor)

        def torus(p):
            q = p - center
            return torch.hypot(torch.hypot(q[:, 0], q[:, 1]) - major, q[:, 2]) - minor
        return torus
    if isinstance(node, S.HalfSpace):
        normal, offset = c(node.normal), float(node.offset)
        return lambda p: p @ normal - offset
    if isinstance(node, S.Lathe):
        profile, center = c(node.profile), c(node.center)

        def lathe(p):
            q = p - center
            return _polygon_sdf(torch.stack([torch.hypot(q[:, 0], q[:, 1]), q[:, 2]], dim=-1), profile)
        return lathe
    if isinstance(node, S.Transform):
        child = compile_sdf(node.child, device, dtype)
        rot, translate, scale = c(node.rot), c(node.translate), float(node.scale)
        return lambda p: child(((p - translate) @ rot) / scale) * scale
    if isinstance(node, S.Union):
        children = [compile_sdf(ch, device, dtype) for ch in node.children]

        def union(p):
            d = children[0](p)
            for ch in children[1:]:
                d = torch.minimum(d, ch(p))
            return d
        return union
    if isinstance(node, S.SmoothUnion):
        children, k = [compile_sdf(ch, device, dtype) for ch in node.children], float(node.k)

        def smooth_union(p):
            d = children[0](p)
            for ch in children[1:]:
                d = _smooth_min(d, ch(p), k)
            return d
        return smooth_union
    if isinstance(node, S.Subtract):
        base, cutter, k = compile_sdf(node.base, device, dtype), compile_sdf(node.cutter, device, dtype), float(node.k)
        return lambda p: _subtract(base(p), cutter(p), k)
    if isinstance(node, S.Intersect):
        a, b = compile_sdf(node.a, device, dtype), compile_sdf(node.b, device, dtype)
        return lambda p: torch.maximum(a(p), b(p))
    if isinstance(node, S.Shell):
        child, h = compile_sdf(node.child, device, dtype), float(node.half_thickness)
        return lambda p: child(p).abs() - h
    if isinstance(node, S.Offset):
        child, r = compile_sdf(node.child, device, dtype), float(node.r)
        return lambda p: child(p) - r
    if isinstance(node, S.Elongate):
        child, h = compile_sdf(node.child, device, dtype), c(node.h)
        return lambda p: child(p - torch.maximum(torch.minimum(p, h), -h))
    if isinstance(node, S.MirrorX):
        child = compile_sdf(node.child, device, dtype)
        return lambda p: child(torch.cat([p[:, :1].abs(), p[:, 1:]], dim=-1))
    if isinstance(node, S.Displace):
        child = compile_sdf(node.child, device, dtype)
        freqs, phases, amp = c(np.asarray(node.freqs)).T, c(node.phases), float(node.amplitude)
        return lambda p: child(p) + amp * torch.sin(p @ freqs + phases).mean(-1)
    raise UnsupportedNodeError(f"no torch evaluation for SDF node {type(node).__name__}")


def _subtract(a: torch.Tensor, cutter: torch.Tensor, k: float) -> torch.Tensor:
    return torch.maximum(a, -cutter) if k <= 0 else -_smooth_min(-a, cutter, k)


def _round_cone(node: S.RoundCone, c) -> TorchField:
    a_np, b_np = node.a, node.b
    ba_np = b_np - a_np
    l2 = float(ba_np @ ba_np)
    a, ra, rb = c(a_np), float(node.ra), float(node.rb)
    if l2 < 1e-18:
        r = max(ra, rb)
        return lambda p: torch.linalg.vector_norm(p - a, dim=-1) - r
    ba = c(ba_np)
    rr = ra - rb
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    sign_rr = float(np.sign(rr))

    def round_cone(p):
        pa = p - a
        y = pa @ ba
        z = y - l2
        xv = pa * l2 - y[:, None] * ba
        x2 = (xv * xv).sum(-1)
        y2 = y * y * l2
        z2 = z * z * l2
        k = sign_rr * rr * rr * x2
        d_mid = (torch.sqrt((x2 * a2 * il2).clamp_min(0.0)) + y * rr) * il2 - ra
        d_b = torch.sqrt(x2 + z2) * il2 - rb
        d_a = torch.sqrt(x2 + y2) * il2 - ra
        use_b = torch.sign(z) * a2 * z2 > k
        use_a = torch.sign(y) * a2 * y2 < k
        return torch.where(use_b, d_b, torch.where(use_a, d_a, d_mid))
    return round_cone


def grid_points(lo: float, hi: float, res: int, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """[res^3, 3] points of a cubic grid over [lo, hi]^3, x slowest (the layout of ``sample_grid``)."""
    axis = torch.linspace(lo, hi, res, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def zero_crossing_box(vol: torch.Tensor, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Bounding box of the linearly interpolated zero crossings along the edges of a [R, R, R]
    grid over [lo, hi]^3 (= the box of its marching-cubes vertices); None without a crossing."""
    res = vol.shape[0]
    h = (hi - lo) / (res - 1)
    los, his = [], []
    for axis in range(3):
        a = vol.narrow(axis, 0, res - 1)
        b = vol.narrow(axis, 1, res - 1)
        cross = (a < 0) != (b < 0)
        if not bool(cross.any()):
            continue
        idx = cross.nonzero()
        va, vb = a[cross], b[cross]
        t = va / (va - vb)
        coords = idx.to(vol.dtype)
        coords[:, axis] += t
        # a crossing along this axis bounds all three coordinates; so do the other axes' crossings
        los.append(coords.amin(0))
        his.append(coords.amax(0))
    if not los:
        return None
    return lo + h * torch.stack(los).amin(0), lo + h * torch.stack(his).amax(0)


def make_torch_shape(category: str, seed: int, **options) -> TorchShape:
    """`make_shape`'s shape for ``(category, seed)`` built on a torch device (options: `TorchShape`).
    ``category`` may also be the category-free composition family."""
    from . import builder, category_rng

    return TorchShape(category, seed, builder(category)(category_rng(category, seed)), **options)


class TorchShape:
    """A procedural shape on a torch device: normalised SDF, part materials, dense bakes.

    Normalisation is the numpy `ProceduralShape`'s (Z-up, front -Y, bounding-box centre at the
    origin, longest side 1), measured here on dense grids of ``measure_res`` (the numpy shape uses
    128; training uses less on a CPU, where the difference is a fraction of a voxel).
    """

    def __init__(self, category: str, seed: int, spec: ShapeSpec, *, device="cpu", dtype=torch.float32,
                 measure_res: int = 128, normalisation: tuple[np.ndarray, float] | None = None,
                 chunk: int = 1 << 20) -> None:
        if not spec.parts:
            raise ShapeError(f"{category}/{seed}: the builder returned no parts")
        self.category, self.seed = category, int(seed)
        self.device, self.dtype, self.chunk = torch.device(device), dtype, chunk
        self.params = dict(spec.params)
        self.materials = list(spec.materials)
        self.part_material = torch.tensor([p.material for p in spec.parts], device=self.device)
        self._parts = [compile_sdf(p.sdf, device, dtype) for p in spec.parts]
        self._cuts = compile_sdf(S.Union(list(spec.cuts)), device, dtype) if spec.cuts else None
        self._blend = float(spec.blend)
        body = S.SmoothUnion([p.sdf for p in spec.parts], spec.blend) if spec.blend > 0 else S.Union([p.sdf for p in spec.parts])
        self._bounds = body.bounds()
        if normalisation is None:
            normalisation = self._measure(measure_res)
        center, scale = normalisation
        self.center = torch.as_tensor(np.asarray(center, np.float64), device=self.device, dtype=dtype)
        self.scale = float(scale)

    @classmethod
    def from_numpy(cls, shape: ProceduralShape, spec: ShapeSpec, **options) -> TorchShape:
        """The torch twin of a numpy shape built from ``spec``, taking over its normalisation."""
        return cls(shape.category, shape.seed, spec, normalisation=(shape._center, shape._scale), **options)

    # ------------------------------------------------------------------ construction-space fields
    def _field_and_label(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self._parts[0](q)
        values = [d]
        for part in self._parts[1:]:
            v = part(q)
            values.append(v)
            d = _smooth_min(d, v, self._blend) if self._blend > 0 else torch.minimum(d, v)
        if self._cuts is not None:
            d = _subtract(d, self._cuts(q), 0.0)
        label = torch.stack(values, dim=-1).argmin(-1) if len(values) > 1 else torch.zeros_like(d, dtype=torch.long)
        return d, label

    def _evaluate(self, q: torch.Tensor, labels: bool):
        return self._chunked(self._field_and_label, q, labels)

    def _measure(self, res: int) -> tuple[np.ndarray, float]:
        def extent(center: np.ndarray, half: float, grid_res: int):
            c = torch.as_tensor(center, device=self.device, dtype=self.dtype)
            vol, _ = self._sample_grid(lambda q: self._field_and_label(q * half + c), -1.0, 1.0, grid_res,
                                       scale=1.0 / half)
            box = zero_crossing_box(vol, -1.0, 1.0)
            return None if box is None else tuple(b.double().cpu().numpy() for b in box)

        return measure_normalisation(self._bounds, res, extent, f"{self.category}/{self.seed}")

    def _sample_grid(self, fn, lo: float, hi: float, res: int, scale: float, block: int = 4,
                     lipschitz: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Field values [res]^3 (times ``scale``) and part labels of ``fn`` on a grid over [lo, hi]^3,
        exact only near the surface: blocks of ``block``^3 voxels whose centre value proves (with
        the Lipschitz safety factor) that no surface comes within a voxel of them hold that value
        moved towards zero by the block's half diagonal — the right sign and never more than the
        true distance, which is what zero crossings and sphere tracing need. Labels there are 0."""
        h = (hi - lo) / (res - 1)
        nb = -(-res // block)
        axis = lo + h * (block * torch.arange(nb, device=self.device, dtype=self.dtype) + (block - 1) / 2)
        centres = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
        dc = self._chunked(fn, centres, labels=False).reshape(nb, nb, nb) * scale
        half_diag = math.sqrt(3.0) * (block - 1) / 2 * h
        near_block = dc.abs() <= lipschitz * (half_diag + h)
        cell = torch.arange(res, device=self.device) // block
        vol = dc[cell][:, cell][:, :, cell]
        vol = vol - torch.sign(vol) * half_diag
        near = near_block[cell][:, cell][:, :, cell]
        labels = torch.zeros(res, res, res, dtype=torch.long, device=self.device)
        idx = near.nonzero()
        if len(idx):
            pts = lo + h * idx.to(self.dtype)
            d, lab = self._chunked(fn, pts, labels=True)
            vol[near] = d * scale
            labels[near] = lab
        return vol, labels

    def _chunked(self, fn, q: torch.Tensor, labels: bool):
        outs = [fn(q[i: i + self.chunk]) for i in range(0, len(q), self.chunk)]
        d = torch.cat([o[0] for o in outs])
        return (d, torch.cat([o[1] for o in outs])) if labels else d

    # ------------------------------------------------------------------ normalised queries
    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distance at normalised points [N, 3] -> [N] (negative inside)."""
        return self._evaluate(points * self.scale + self.center, labels=False) / self.scale

    def sdf_and_material(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed distance [N] and material index [N] (of the nearest part) at normalised points."""
        d, label = self._evaluate(points * self.scale + self.center, labels=True)
        return d / self.scale, self.part_material[label]

    def bake(self, res: int, padding: float = GRID_PADDING) -> tuple[torch.Tensor, torch.Tensor]:
        """SDF [res, res, res] and material index (uint8) grids over [-0.5-padding, 0.5+padding]^3,
        exact near the surface (see `_sample_grid`; material ids are only meaningful there)."""
        lim = 0.5 + padding
        vol, labels = self._sample_grid(lambda q: self._field_and_label(q * self.scale + self.center), -lim, lim, res,
                                        scale=1.0 / self.scale)
        return vol, self.part_material[labels].to(torch.uint8)

    def palette(self) -> torch.Tensor:
        """[M, 5] per material: sRGB base colour, roughness, metallic."""
        rows = [[*m.base_color, m.roughness, m.metallic] for m in self.materials]
        return torch.tensor(rows, device=self.device, dtype=torch.float32)
