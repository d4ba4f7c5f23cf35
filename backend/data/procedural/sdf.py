"""Signed-distance primitives and operators in numpy (negative inside).

Every node is a callable ``node(p: float64[N,3]) -> float64[N]`` with a conservative
axis-aligned box ``node.bounds() -> (lo[3], hi[3])`` that contains its zero level set.
Values are exact Euclidean distances for the plain primitives and rigid transforms; ellipsoids,
smooth blends and displacements give distance *bounds* whose sign is exact (which is what
containment, occupancy and marching cubes need).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

Array = np.ndarray


class SDF:
    """Base class: a signed distance field node."""

    def __call__(self, p: Array) -> Array:  # p: [N,3] -> [N]
        raise NotImplementedError

    def bounds(self) -> tuple[Array, Array]:
        raise NotImplementedError


def _vec(x: Sequence[float] | float, n: int = 3) -> Array:
    a = np.asarray(x, dtype=np.float64)
    return np.full(n, float(a)) if a.ndim == 0 else a.reshape(n).copy()


def box_distance(p: Array, lo: Array, hi: Array) -> Array:
    """Distance from points [N,3] to an axis-aligned box (negative inside)."""
    c = 0.5 * (lo + hi)
    h = 0.5 * (hi - lo)
    q = np.abs(p - c) - h
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
    return outside + np.minimum(q.max(axis=-1), 0.0)


# ----------------------------------------------------------------------------- primitives
@dataclass
class Sphere(SDF):
    center: Array
    radius: float

    def __post_init__(self):
        self.center = _vec(self.center)

    def __call__(self, p):
        return np.linalg.norm(p - self.center, axis=-1) - self.radius

    def bounds(self):
        return self.center - self.radius, self.center + self.radius


@dataclass
class Ellipsoid(SDF):
    """Axis-aligned ellipsoid (distance bound, exact sign)."""

    center: Array
    radii: Array

    def __post_init__(self):
        self.center, self.radii = _vec(self.center), _vec(self.radii)

    def __call__(self, p):
        q = p - self.center
        k0 = np.linalg.norm(q / self.radii, axis=-1)
        k1 = np.linalg.norm(q / (self.radii * self.radii), axis=-1)
        return np.where(k1 > 1e-12, k0 * (k0 - 1.0) / np.maximum(k1, 1e-12), -self.radii.min())

    def bounds(self):
        return self.center - self.radii, self.center + self.radii


@dataclass
class RoundBox(SDF):
    """Axis-aligned box of half extents ``half`` whose edges are rounded by ``radius``."""

    center: Array
    half: Array
    radius: float = 0.0

    def __post_init__(self):
        self.center, self.half = _vec(self.center), _vec(self.half)
        self.radius = float(min(self.radius, self.half.min()))

    def __call__(self, p):
        q = np.abs(p - self.center) - (self.half - self.radius)
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        return outside + np.minimum(q.max(axis=-1), 0.0) - self.radius

    def bounds(self):
        return self.center - self.half, self.center + self.half


@dataclass
class Cylinder(SDF):
    """Capped cylinder along z, optional edge rounding."""

    center: Array
    radius: float
    half_height: float
    rounding: float = 0.0

    def __post_init__(self):
        self.center = _vec(self.center)
        self.rounding = float(min(self.rounding, self.radius, self.half_height))

    def __call__(self, p):
        q = p - self.center
        r = self.rounding
        d = np.stack(
            [np.hypot(q[:, 0], q[:, 1]) - (self.radius - r), np.abs(q[:, 2]) - (self.half_height - r)], axis=-1
        )
        return np.minimum(d.max(axis=-1), 0.0) + np.linalg.norm(np.maximum(d, 0.0), axis=-1) - r

    def bounds(self):
        e = np.array([self.radius, self.radius, self.half_height])
        return self.center - e, self.center + e


@dataclass
class RoundCone(SDF):
    """Tapered capsule between points a (radius ra) and b (radius rb)."""

    a: Array
    b: Array
    ra: float
    rb: float

    def __post_init__(self):
        self.a, self.b = _vec(self.a), _vec(self.b)

    def __call__(self, p):
        ba = self.b - self.a
        l2 = float(ba @ ba)
        if l2 < 1e-18:
            return np.linalg.norm(p - self.a, axis=-1) - max(self.ra, self.rb)
        rr = self.ra - self.rb
        a2 = l2 - rr * rr
        il2 = 1.0 / l2
        pa = p - self.a
        y = pa @ ba
        z = y - l2
        xv = pa * l2 - y[:, None] * ba
        x2 = np.einsum("ij,ij->i", xv, xv)
        y2 = y * y * l2
        z2 = z * z * l2
        k = np.sign(rr) * rr * rr * x2
        d_mid = (np.sqrt(np.maximum(x2 * a2 * il2, 0.0)) + y * rr) * il2 - self.ra
        d_b = np.sqrt(x2 + z2) * il2 - self.rb
        d_a = np.sqrt(x2 + y2) * il2 - self.ra
        use_b = np.sign(z) * a2 * z2 > k
        use_a = np.sign(y) * a2 * y2 < k
        return np.where(use_b, d_b, np.where(use_a, d_a, d_mid))

    def bounds(self):
        r = max(self.ra, self.rb)
        return np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r


def Capsule(a, b, radius: float) -> RoundCone:
    """Capsule of constant radius between a and b."""
    return RoundCone(a, b, radius, radius)


@dataclass
class Torus(SDF):
    """Torus in the xy plane (axis z): ring radius ``major``, tube radius ``minor``."""

    center: Array
    major: float
    minor: float

    def __post_init__(self):
        self.center = _vec(self.center)

    def __call__(self, p):
        q = p - self.center
        return np.hypot(np.hypot(q[:, 0], q[:, 1]) - self.major, q[:, 2]) - self.minor

    def bounds(self):
        e = np.array([self.major + self.minor] * 2 + [self.minor])
        return self.center - e, self.center + e


@dataclass
class HalfSpace(SDF):
    """Points with ``dot(n, p) > offset`` are outside (n is normalised)."""

    normal: Array
    offset: float
    extent: float = 10.0  # only for bounds: a half space is unbounded

    def __post_init__(self):
        n = _vec(self.normal)
        self.normal = n / np.linalg.norm(n)

    def __call__(self, p):
        return p @ self.normal - self.offset

    def bounds(self):
        return np.full(3, -self.extent), np.full(3, self.extent)


def polygon_sdf(q: Array, poly: Array) -> Array:
    """Signed distance from 2D points q [N,2] to a closed polygon [M,2] (negative inside)."""
    qx, qy = np.ascontiguousarray(q[:, 0]), np.ascontiguousarray(q[:, 1])
    d2 = np.full(len(q), np.inf)
    inside = np.zeros(len(q), dtype=bool)
    m = len(poly)
    for i in range(m):
        ax, ay = poly[i]
        bx, by = poly[(i + 1) % m]
        ex, ey = bx - ax, by - ay
        wx, wy = qx - ax, qy - ay
        ee = ex * ex + ey * ey
        if ee > 0:
            t = np.clip((wx * ex + wy * ey) * (1.0 / ee), 0.0, 1.0)
            rx, ry = wx - t * ex, wy - t * ey
        else:
            rx, ry = wx, wy
        np.minimum(d2, rx * rx + ry * ry, out=d2)
        # crossing-number sign test (a ray towards +r crosses this edge)
        c1 = qy >= ay
        c2 = qy < by
        c3 = ex * wy > ey * wx
        inside ^= (c1 == c2) & (c2 == c3)
    d = np.sqrt(d2)
    return np.where(inside, -d, d)


@dataclass
class Lathe(SDF):
    """Surface of revolution about the z axis of a closed 2D profile of (r, z) points, r >= 0."""

    profile: Array
    center: Array = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self):
        self.profile = np.asarray(self.profile, dtype=np.float64)
        self.center = _vec(self.center)
        if self.profile.ndim != 2 or self.profile.shape[1] != 2 or len(self.profile) < 3:
            raise ValueError("Lathe profile must be an [M>=3, 2] array of (r, z) points")

    def __call__(self, p):
        q = p - self.center
        return polygon_sdf(np.stack([np.hypot(q[:, 0], q[:, 1]), q[:, 2]], axis=-1), self.profile)

    def bounds(self):
        r = self.profile[:, 0].max()
        z0, z1 = self.profile[:, 1].min(), self.profile[:, 1].max()
        return self.center + [-r, -r, z0], self.center + [r, r, z1]


def lathe_profile(radius_fn: Callable[[Array], Array], z0: float, z1: float, n: int = 40) -> Array:
    """Closed (r, z) polygon for a solid of revolution with radius r(z) on [z0, z1]."""
    z = np.linspace(z0, z1, n)
    r = np.maximum(radius_fn(z), 1e-4)
    return np.concatenate([[[0.0, z0]], np.stack([r, z], axis=-1), [[0.0, z1]]])


# ----------------------------------------------------------------------------- operators
def rotation(axis: str, angle: float) -> Array:
    """3x3 rotation matrix about a principal axis (radians, right-handed)."""
    c, s = np.cos(angle), np.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    raise ValueError(f"unknown rotation axis {axis!r}")


@dataclass
class Transform(SDF):
    """child placed by p_world = scale * R @ p_child + t (rigid + uniform scale: stays a distance)."""

    child: SDF
    rot: Array = field(default_factory=lambda: np.eye(3))
    translate: Array = field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0

    def __post_init__(self):
        self.rot = np.asarray(self.rot, dtype=np.float64)
        self.translate = _vec(self.translate)

    def __call__(self, p):
        local = ((p - self.translate) @ self.rot) / self.scale
        return self.child(local) * self.scale

    def bounds(self):
        lo, hi = self.child.bounds()
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        w = corners @ self.rot.T * self.scale + self.translate
        return w.min(axis=0), w.max(axis=0)


def rotated(child: SDF, rot: Array, pivot: Sequence[float] = (0, 0, 0)) -> Transform:
    """Rotate ``child`` by ``rot`` about ``pivot``."""
    pv = _vec(pivot)
    return Transform(child, rot, pv - rot @ pv)


def translated(child: SDF, t: Sequence[float]) -> Transform:
    return Transform(child, np.eye(3), _vec(t))


@dataclass
class Union(SDF):
    """Hard union; children far from a point (by their bounding box) are skipped exactly."""

    children: list

    def __post_init__(self):
        if not self.children:
            raise ValueError("Union needs at least one child")
        self._boxes = [c.bounds() for c in self.children]

    def __call__(self, p):
        d = np.full(len(p), np.inf)
        for child, (lo, hi) in zip(self.children, self._boxes):
            # a child's distance is >= the distance to its bounding box, so points whose box
            # distance already exceeds the current minimum cannot change.
            near = box_distance(p, lo, hi) < d
            if near.any():
                d[near] = np.minimum(d[near], child(p[near]))
        return d

    def bounds(self):
        los, his = zip(*self._boxes)
        return np.min(los, axis=0), np.max(his, axis=0)


def smooth_min(a: Array, b: Array, k: float) -> Array:
    """Polynomial smooth minimum with blend radius k (k=0: plain min)."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


@dataclass
class SmoothUnion(SDF):
    """Union with blend radius k; far children are skipped exactly (smooth_min(d, c) = d when c >= d + k)."""

    children: list
    k: float

    def __post_init__(self):
        if not self.children:
            raise ValueError("SmoothUnion needs at least one child")
        self._boxes = [c.bounds() for c in self.children]

    def __call__(self, p):
        d = np.full(len(p), np.inf)
        for child, (lo, hi) in zip(self.children, self._boxes):
            near = box_distance(p, lo, hi) < d + self.k
            if near.any():
                dn = d[near]
                cn = child(p[near])
                d[near] = np.where(np.isinf(dn), cn, smooth_min(np.where(np.isinf(dn), cn, dn), cn, self.k))
        return d

    def bounds(self):
        los, his = zip(*self._boxes)
        return np.min(los, axis=0) - self.k, np.max(his, axis=0) + self.k


@dataclass
class Subtract(SDF):
    """``base`` minus ``cutter`` (smooth edge of radius k when k > 0)."""

    base: SDF
    cutter: SDF
    k: float = 0.0

    def __post_init__(self):
        self._box = self.cutter.bounds()

    def __call__(self, p):
        a = self.base(p)
        # the cutter matters only where it is deeper than -a (+k when smooth); its box bounds that
        need = box_distance(p, *self._box) < -a + self.k
        if not need.any():
            return a
        an, b = a[need], -self.cutter(p[need])
        out = a.copy()
        out[need] = np.maximum(an, b) if self.k <= 0 else -smooth_min(-an, -b, self.k)
        return out

    def bounds(self):
        return self.base.bounds()


@dataclass
class Intersect(SDF):
    a: SDF
    b: SDF

    def __call__(self, p):
        return np.maximum(self.a(p), self.b(p))

    def bounds(self):
        (l1, h1), (l2, h2) = self.a.bounds(), self.b.bounds()
        return np.maximum(l1, l2), np.minimum(h1, h2)


@dataclass
class Shell(SDF):
    """Hollow wall of total thickness 2*half_thickness centred on the child's surface."""

    child: SDF
    half_thickness: float

    def __call__(self, p):
        return np.abs(self.child(p)) - self.half_thickness

    def bounds(self):
        lo, hi = self.child.bounds()
        return lo - self.half_thickness, hi + self.half_thickness


@dataclass
class Offset(SDF):
    """Grow (r > 0) or shrink the child by r: rounds convex edges."""

    child: SDF
    r: float

    def __call__(self, p):
        return self.child(p) - self.r

    def bounds(self):
        lo, hi = self.child.bounds()
        return lo - max(self.r, 0.0), hi + max(self.r, 0.0)


@dataclass
class Elongate(SDF):
    """Stretch the child by inserting a slab of half extents h at its origin (round -> stadium)."""

    child: SDF
    h: Array

    def __post_init__(self):
        self.h = _vec(self.h)

    def __call__(self, p):
        q = p - np.clip(p, -self.h, self.h)
        return self.child(q)

    def bounds(self):
        lo, hi = self.child.bounds()
        return lo - self.h, hi + self.h


@dataclass
class MirrorX(SDF):
    """Mirror the child's x >= 0 half onto x < 0 (left/right symmetry)."""

    child: SDF

    def __call__(self, p):
        q = p.copy()
        q[:, 0] = np.abs(q[:, 0])
        return self.child(q)

    def bounds(self):
        lo, hi = self.child.bounds()
        m = max(abs(lo[0]), abs(hi[0]))
        return np.array([-m, lo[1], lo[2]]), np.array([m, hi[1], hi[2]])


@dataclass
class Displace(SDF):
    """Add a smooth bounded displacement ``amplitude * sum_i sin(f_i . p + phase_i) / n`` (bumps)."""

    child: SDF
    freqs: Array  # [n,3]
    phases: Array  # [n]
    amplitude: float

    def __call__(self, p):
        waves = np.sin(p @ np.asarray(self.freqs).T + self.phases).mean(axis=-1)
        return self.child(p) + self.amplitude * waves

    def bounds(self):
        lo, hi = self.child.bounds()
        return lo - abs(self.amplitude), hi + abs(self.amplitude)
