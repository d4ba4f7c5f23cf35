"""Category-free procedural compositions, in the spirit of LRM-Zero's Zeroverse.

LRM-Zero (Xie et al., 2024) trained a reconstruction model on nothing but random compositions of
primitives, with height-field displacement, boolean differences and wireframes added, and it
came close to the same model trained on Objaverse. The fixed categories of this package teach
shape priors but cover few of the local phenomena real objects have and a reconstructor must get
right whatever the category: holes and notches, bumpy surfaces, thin wires and handles, parts
joined at odd angles. This family supplies those with no category prior at all.

Zeroverse scatters primitives freely; here every part is attached to the surface of what is
already built (so a shape is one connected object, as real objects are), usually aligned with
the surface normal or the world axes, and often mirror-symmetric in x, because that is what most
made things look like. The builder only composes node classes of ``sdf.py``, so the torch
evaluator of those nodes covers these shapes too. All randomness comes from ``rng``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.interpolate import PchipInterpolator

from .materials import FAMILIES, material
from .sdf import (
    SDF,
    Capsule,
    Cylinder,
    Displace,
    Ellipsoid,
    Intersect,
    Lathe,
    MirrorX,
    RoundBox,
    RoundCone,
    Shell,
    Sphere,
    Subtract,
    Torus,
    Transform,
    Union,
    rotation,
)
from .shape import Part, ShapeSpec, sample_grid

U = np.random.Generator

# Construction units: the first (body) part's longest side is 1, so its longest half extent is
# 0.5. Solid parts are never thinner than MIN_HALF * 2 (~4 % of the body), which keeps them
# meshable at the 48^3 .. 128^3 grids the pipeline uses.
BODY_HALF = 0.5
MIN_HALF = 0.03

_KINDS = ("box", "round_box", "ellipsoid", "sphere", "cylinder", "capsule", "round_cone", "torus", "lathe")
# spheres and ellipsoids are easy to over-produce (blob soup); made objects are mostly boxy or turned
_KIND_P = np.array([0.16, 0.16, 0.1, 0.05, 0.16, 0.09, 0.09, 0.07, 0.12])
_CUT_KINDS = ("hole", "pocket", "notch", "dimple", "slot", "groove")
_WIRE_KINDS = ("handle", "hoop", "rod", "strut", "squiggle", "legs")


def _log_uniform(rng: U, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


# ----------------------------------------------------------------------------- rotations
def _align_z(n: np.ndarray, spin: float = 0.0) -> np.ndarray:
    """Rotation taking local +z to the unit vector n (then spun by ``spin`` about it)."""
    theta = float(np.arccos(np.clip(n[2], -1.0, 1.0)))
    phi = float(np.arctan2(n[1], n[0]))
    return rotation("z", phi) @ rotation("y", theta) @ rotation("z", spin)


def _random_rotation(rng: U) -> np.ndarray:
    return rotation("z", rng.uniform(0, 2 * np.pi)) @ rotation("y", rng.uniform(0, np.pi)) @ rotation(
        "x", rng.uniform(0, 2 * np.pi)
    )


def _axis_rotation(rng: U) -> np.ndarray:
    """A random rotation by right angles: keeps a part's faces parallel to the world's."""
    k = rng.integers(0, 4, 3)
    return rotation("z", k[0] * np.pi / 2) @ rotation("y", k[1] * np.pi / 2) @ rotation("x", k[2] * np.pi / 2)


def _snap_axis(n: np.ndarray) -> np.ndarray:
    a = np.zeros(3)
    i = int(np.argmax(np.abs(n)))
    a[i] = np.sign(n[i]) or 1.0
    return a


# ----------------------------------------------------------------------------- primitives
def _primitive(rng: U, kind: str, size: float) -> tuple[SDF, np.ndarray]:
    """A primitive centred at the origin with longest half extent ``size``; returns (sdf, half extents)."""
    thin = lambda lo: _log_uniform(rng, lo, 1.0)  # noqa: E731 - aspect ratio factor
    if kind in ("box", "round_box"):
        half = np.maximum(size * np.array([1.0, thin(1 / 8), thin(1 / 8)]), MIN_HALF)
        rng.shuffle(half)
        r = half.min() * (rng.uniform(0.0, 0.15) if kind == "box" else rng.uniform(0.3, 0.9))
        return RoundBox((0, 0, 0), half, r), half
    if kind == "ellipsoid":
        # the ellipsoid distance is only a bound; very flat ones bound it loosely, so cap at 1:5
        half = np.maximum(size * np.array([1.0, thin(1 / 5), thin(1 / 5)]), MIN_HALF)
        rng.shuffle(half)
        return Ellipsoid((0, 0, 0), half), half
    if kind == "sphere":
        return Sphere((0, 0, 0), size), np.full(3, size)
    if kind == "cylinder":
        aspect = _log_uniform(rng, 1 / 8, 8)  # half height / radius: discs .. rods
        r, hh = (size / aspect, size) if aspect >= 1 else (size, size * aspect)
        r, hh = max(r, MIN_HALF), max(hh, MIN_HALF)
        return Cylinder((0, 0, 0), r, hh, min(r, hh) * rng.uniform(0.0, 0.4)), np.array([r, r, hh])
    if kind in ("capsule", "round_cone"):
        ra = max(size * _log_uniform(rng, 1 / 8, 1 / 2), MIN_HALF)
        rb = ra if kind == "capsule" else max(ra * rng.uniform(0.2, 0.8), MIN_HALF)
        a, b = (0, 0, -(size - ra)), (0, 0, size - rb)
        return RoundCone(a, b, ra, rb), np.array([ra, ra, size])
    if kind == "torus":
        ratio = rng.uniform(0.12, 0.45)  # tube / ring radius
        minor = max(size * ratio / (1 + ratio), MIN_HALF)
        major = size - minor
        return Torus((0, 0, 0), major, minor), np.array([size, size, minor])
    if kind == "lathe":
        aspect = _log_uniform(rng, 1 / 3, 3)  # half height / max radius
        R, hh = (size / aspect, size) if aspect >= 1 else (size, size * aspect)
        R, hh = max(R, 2 * MIN_HALF), max(hh, MIN_HALF)
        n_ctrl = int(rng.integers(3, 7))
        zc = np.linspace(-hh, hh, n_ctrl)
        rc = R * rng.uniform(0.25, 1.0, n_ctrl)
        rc[rng.integers(n_ctrl)] = R  # the widest point reaches R, so R is the real radius
        f = PchipInterpolator(zc, rc)
        z = np.linspace(-hh, hh, 16)
        prof = np.concatenate([[[0.0, -hh]], np.stack([np.maximum(f(z), MIN_HALF), z], -1), [[0.0, hh]]])
        return Lathe(prof), np.array([R, R, hh])
    raise ValueError(kind)


def _open_shell(rng: U, child: SDF, half: np.ndarray) -> SDF:
    """Hollow the part and slice its top off: a container, tube or cup (a large concavity)."""
    t = max(MIN_HALF, float(half.min()) * rng.uniform(0.06, 0.15))
    cut_z = float(half[2]) * rng.uniform(0.2, 0.8)
    # a box below cut_z rather than a HalfSpace: the node list the torch evaluator covers is short
    big = 2.0 * float(half.max()) + 2.0 * t
    keep = RoundBox((0, 0, cut_z - big), (big, big, big))
    return Intersect(Shell(child, t), keep)


def _displace(rng: U, child: SDF, half: np.ndarray) -> SDF:
    """A few sine waves; in the part's xy plane they act as a height field on its z faces."""
    n = int(rng.integers(2, 6))
    if rng.random() < 0.5:
        a = rng.uniform(0, 2 * np.pi, n)
        dirs = np.stack([np.cos(a), np.sin(a), np.zeros(n)], -1)
    else:
        dirs = rng.normal(size=(n, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    size = 2.0 * float(half.max())
    f = rng.uniform(4.0, 16.0, (n, 1)) / size
    # the mean of n sines rarely peaks at 1, so the drawn amplitude sits high in the 1-4 % range;
    # amp * f < 0.5 keeps the field Lipschitz-safe for the grid sampler, and a wave never cuts
    # through a thin plate
    amp = rng.uniform(0.015, 0.04) * size * np.sqrt(n) / 1.5
    amp = min(amp, 0.45 / float(f.max()), 0.3 * float(half.min()))
    return Displace(child, dirs * f, rng.uniform(0, 2 * np.pi, n), amp)


# ----------------------------------------------------------------------------- scene helpers
class _Scene:
    """The parts, wires and cuts built so far, with the queries placement needs."""

    def __init__(self, symmetric: bool):
        self.symmetric = symmetric
        self.parts: list[Part] = []
        self.cuts: list[SDF] = []
        self._surf: dict = {}

    def sym(self, sdf: SDF) -> SDF:
        return MirrorX(sdf) if self.symmetric else sdf

    def field(self, parts: list[Part] | None = None, cuts: list[SDF] | None = None) -> SDF:
        parts = self.parts if parts is None else parts
        cuts = self.cuts if cuts is None else cuts
        body: SDF = Union([p.sdf for p in parts])
        return Subtract(body, Union(list(cuts))) if cuts else body

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return Union([p.sdf for p in self.parts]).bounds()

    def size(self) -> float:
        lo, hi = self.bounds()
        return float((hi - lo).max())

    def surface(self, rng: U, newest: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Surface points and normals of the object (or of its newest part where not buried).

        Projection is the builder's main cost, so one pool serves all tries until the scene
        changes.
        """
        key = (len(self.parts), len(self.cuts), newest)
        if key not in self._surf:
            pts, nrm = _surface_points(rng, self.parts[-1].sdf if newest else self.field(), 160)
            if newest and len(pts):
                keep = self.field()(pts) > -1e-3 * self.size()
                pts, nrm = pts[keep], nrm[keep]
            self._surf[key] = (pts, nrm)
        return self._surf[key]


def _gradient(f: SDF, p: np.ndarray, d: np.ndarray, eps: float) -> np.ndarray:
    """Unit gradient by forward differences (d = f(p) is already known)."""
    g = np.stack([f(p + e) - d for e in np.eye(3) * eps], -1)
    return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)


def _surface_points(rng: U, f: SDF, n: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Random points on the zero level set of f with outward normals (Newton projection)."""
    lo, hi = f.bounds()
    size = float((hi - lo).max())
    p = rng.uniform(lo, hi, (n, 3))
    eps = 1e-3 * size
    for _ in range(4):
        d = f(p)
        p = p - d[:, None] * _gradient(f, p, d, eps)
    d = f(p)
    g = _gradient(f, p, d, eps)
    ok = np.isfinite(d) & (np.abs(d) < 2e-3 * size)
    return p[ok], g[ok]


def _pick(rng: U, pts: np.ndarray, nrm: np.ndarray, where: str, symmetric: bool) -> int | None:
    """Index of a random surface point facing ``where`` (top/bottom/side/any)."""
    w = np.ones(len(pts))
    if where == "top":
        w = (nrm[:, 2] > 0.5).astype(float)
    elif where == "bottom":
        w = (nrm[:, 2] < -0.5).astype(float)
    elif where == "side":
        w = (np.abs(nrm[:, 2]) < 0.5).astype(float)
    if symmetric:
        w = w * (pts[:, 0] >= -1e-9)  # build on the +x half; MirrorX makes the other
    if w.sum() == 0:
        return None
    return int(rng.choice(len(pts), p=w / w.sum()))


def _mc_inside(rng: U, sdf: SDF, others: list[SDF], n: int = 900) -> list[np.ndarray] | None:
    """Monte Carlo points inside ``sdf``'s box: [inside sdf, inside each of ``others``]."""
    lo, hi = sdf.bounds()
    p = rng.uniform(lo, hi, (n, 3))
    inn = sdf(p) < 0
    if inn.sum() < 15:
        return None
    return [inn] + [o(p) < 0 for o in others]


# ----------------------------------------------------------------------------- parts
def _attach_part(rng: U, scene: _Scene, kind: str, size: float, where: str, orient: str, bumpy: bool) -> bool:
    """Place one part so it overlaps (not swallowed by) what exists; False if no try worked."""
    for _ in range(6):
        # half the time grow from the newest part (arms, stacks, chains) rather than anywhere
        pts, nrm = scene.surface(rng, newest=rng.random() < 0.5 and len(scene.parts) > 1)
        i = _pick(rng, pts, nrm, where, scene.symmetric) if len(pts) else None
        if i is None:
            continue
        anchor, n = pts[i], nrm[i]
        local, half = _primitive(rng, kind, size)
        if bumpy:
            local = _displace(rng, local, half)
        if orient == "normal":
            rot = _align_z(n, rng.uniform(0, 2 * np.pi))
        elif orient == "axis":
            rot = _align_z(_snap_axis(n), rng.integers(0, 4) * np.pi / 2) @ _axis_rotation(rng)
        else:
            rot = _random_rotation(rng)
        # sink the part into the surface by a random share of its extent along the normal
        support = float(np.abs(rot.T @ n) @ half)
        centre = anchor + n * support * rng.uniform(-0.1, 0.7)
        sdf = scene.sym(Transform(local, rot, centre))
        mc = _mc_inside(rng, sdf, [scene.field()])
        if mc is None:
            continue
        inn, old = mc
        overlap = np.count_nonzero(inn & old) / np.count_nonzero(inn)
        if 0.04 <= overlap <= 0.75:
            scene.parts.append(Part(kind, sdf, 0))
            return True
    return False


# ----------------------------------------------------------------------------- cuts
def _make_cut(rng: U, kind: str, anchor: np.ndarray, n: np.ndarray, S: float) -> SDF:
    axis = _snap_axis(n) if rng.random() < 0.6 else n
    rot = _align_z(axis, rng.uniform(0, 2 * np.pi))
    if kind in ("hole", "pocket"):
        r = S * rng.uniform(0.03, 0.09)
        hh = S * (rng.uniform(0.3, 0.7) if kind == "hole" else rng.uniform(0.04, 0.12))
        return Transform(Cylinder((0, 0, 0), r, hh, r * rng.uniform(0, 0.3)), rot, anchor)
    if kind == "notch":
        half = S * rng.uniform(0.04, 0.15, 3)
        return Transform(RoundBox((0, 0, 0), half, half.min() * rng.uniform(0, 0.3)), rot, anchor + n * half[2] * 0.3)
    if kind == "dimple":
        r = S * rng.uniform(0.05, 0.15)
        return Sphere(anchor + n * r * rng.uniform(0.2, 0.7), r)
    if kind == "slot":
        half = S * np.array([rng.uniform(0.08, 0.25), rng.uniform(0.012, 0.03), rng.uniform(0.04, 0.15)])
        return Transform(RoundBox((0, 0, 0), half, half[1] * 0.9), rot, anchor)
    if kind == "groove":  # a ring channel around a protrusion
        major = S * rng.uniform(0.06, 0.2)
        return Transform(Torus((0, 0, 0), major, S * rng.uniform(0.015, 0.035)), rot, anchor - n * major * 0.2)
    raise ValueError(kind)


def _add_cut(rng: U, scene: _Scene, kind: str) -> bool:
    S = scene.size()
    for _ in range(5):
        pts, nrm = scene.surface(rng)
        i = _pick(rng, pts, nrm, "any", scene.symmetric) if len(pts) else None
        if i is None:
            continue
        cut = scene.sym(_make_cut(rng, kind, pts[i], nrm[i], S))
        # measure against the whole object: a cut must bite visibly but never remove much
        body = scene.field()
        lo, hi = body.bounds()
        p = rng.uniform(lo, hi, (4000, 3))
        inn = body(p) < 0
        removed = np.count_nonzero(inn & (cut(p) < 0)) / max(np.count_nonzero(inn), 1)
        if 0.002 <= removed <= 0.15:
            scene.cuts.append(cut)
            return True
    return False


# ----------------------------------------------------------------------------- wires
def _bezier(ctrl: np.ndarray, m: int) -> np.ndarray:
    t = np.linspace(0, 1, m)[:, None]
    a, b, c, d = ctrl
    return (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t**2 * c + t**3 * d


def _chain(pts: np.ndarray, r: float) -> list[SDF]:
    return [Capsule(pts[i], pts[i + 1], r) for i in range(len(pts) - 1)]


def _wire_path(rng: U, scene: _Scene, kind: str, S: float, r: float) -> list[np.ndarray] | None:
    """Polylines (in construction units) for one wire element, or None if this try failed."""
    if kind == "legs":
        return _legs(rng, scene, S, r)
    pts, nrm = scene.surface(rng)
    if len(pts) < 4:
        return None
    where = "top" if kind == "hoop" and rng.random() < 0.6 else "any"
    i = _pick(rng, pts, nrm, where, scene.symmetric)
    if i is None:
        return None
    a, na = pts[i], nrm[i]
    if kind in ("handle", "strut"):
        d = np.linalg.norm(pts - a, axis=1)
        facing = nrm @ na > (-0.2 if kind == "handle" else -1.0)
        ok = np.flatnonzero((d > 0.15 * S) & (d < 0.7 * S) & facing)
        if not len(ok):
            return None
        j = int(rng.choice(ok))
        b, nb = pts[j], nrm[j]
        if kind == "strut":  # a straight bar between two surfaces, slightly sunk at both ends
            u = _unit(b - a)
            return [np.stack([a - u * r, b + u * r])]
        h = d[j] * rng.uniform(0.35, 0.9)
        return [_bezier(np.stack([a - na * 2 * r, a + na * h, b + nb * h, b - nb * 2 * r]), 10)]
    if kind == "hoop":  # a loop standing on one point (lifting eye, key ring)
        R = S * rng.uniform(0.06, 0.18)
        t = _unit(np.cross(na, rng.normal(size=3)))
        c = a + na * R * rng.uniform(0.5, 0.9)
        gap = rng.uniform(0.3, 0.8)
        th = np.linspace(gap, 2 * np.pi - gap, 12)
        return [c - na * R * np.cos(th)[:, None] + t * R * np.sin(th)[:, None]]
    if kind == "rod":  # antenna, spike, peg: one to three segments, gently bent
        L = S * rng.uniform(0.15, 0.5)
        k = int(rng.integers(1, 4))
        d = _snap_axis(na) if rng.random() < 0.5 else na
        out = [a - d * 2 * r]
        for _ in range(k):
            d = _unit(d + rng.normal(0, 0.35, 3))
            out.append(out[-1] + d * L / k)
        return [np.stack(out)]
    if kind == "squiggle":  # a bent wire wandering away from the surface
        out = [a - na * 2 * r]
        d = na
        for _ in range(int(rng.integers(4, 9))):
            d = _unit(d + rng.normal(0, 0.6, 3))
            out.append(out[-1] + d * S * rng.uniform(0.05, 0.12))
        return [np.stack(out)]
    raise ValueError(kind)


def _underside_z(f: SDF, xy: np.ndarray, z0: float, z1: float) -> np.ndarray:
    """Per (x, y) the lowest z in [z0, z1] where a vertical line enters the solid (NaN if none).

    Sphere tracing upwards from z0, all lines at once.
    """
    eps = 1e-4 * (z1 - z0)
    z = np.full(len(xy), z0)
    hit = np.zeros(len(xy), dtype=bool)
    for _ in range(80):
        live = ~hit & (z <= z1)
        if not live.any():
            break
        d = f(np.column_stack([xy[live], z[live]]))
        idx = np.flatnonzero(live)
        hit[idx[d < eps]] = True
        z[idx] += np.where(d < eps, 0.0, np.maximum(d, 10 * eps))
    return np.where(hit, z, np.nan)


def _legs(rng: U, scene: _Scene, S: float, r: float) -> list[np.ndarray] | None:
    """Three to six thin legs from the underside down to a common floor (stools, stands, racks)."""
    f = scene.field()
    lo, hi = f.bounds()
    c = 0.5 * (lo + hi)
    if scene.symmetric:
        c[0] = 0.0
    if rng.random() < 0.4:  # radial footprint
        k = int(rng.integers(3, 7))
        # a symmetric shape needs a footprint symmetric in x
        start = np.pi / 2 if scene.symmetric else rng.uniform(0, 2 * np.pi)
        ang = start + 2 * np.pi * np.arange(k) / k
        foot = np.stack([np.cos(ang), np.sin(ang)], -1) * 0.5 * (hi - lo)[:2].min()
    else:
        foot = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * 0.5 * (hi - lo)[:2]
    L = S * rng.uniform(0.2, 0.6)
    floor = lo[2] - L
    splay = rng.uniform(0.0, 0.35)
    # walk each leg inwards until it meets the underside
    shrink = np.array([0.85, 0.65, 0.45, 0.25])
    xy = c[:2] + (foot[:, None, :] * shrink[None, :, None]).reshape(-1, 2)
    zs = _underside_z(f, xy, lo[2] - 0.01 * S, hi[2]).reshape(len(foot), len(shrink))
    legs = []
    for i, (fx, fy) in enumerate(foot):
        found = np.flatnonzero(np.isfinite(zs[i]))
        if not len(found):
            return None
        x, y = xy[i * len(shrink) + found[0]]
        # sink the leg's end as deep as the body allows without its cap poking out on top
        # (a shallow joint is lost on coarse grids)
        z_in = zs[i, found[0]] + np.array([2.0, 1.0, 0.5]) * r
        cap_in = f(np.column_stack([np.full((3, 2), (x, y)), z_in + r])) < 0
        top = np.array([x, y, z_in[int(np.argmax(cap_in)) if cap_in.any() else 2]])
        out = _unit(np.array([fx, fy, 0.0])) * splay * (top[2] - floor)
        bottom = np.array([x, y, floor + r]) + out
        if rng.random() < 0.3:  # a knee
            mid = 0.5 * (top + bottom) + out * rng.uniform(-0.3, 0.3)
            legs.append(np.stack([top, mid, bottom]))
        else:
            legs.append(np.stack([top, bottom]))
    return legs


def _add_wire(rng: U, scene: _Scene, kind: str) -> bool:
    S = scene.size()
    for _ in range(6):
        r = S * rng.uniform(0.015, 0.03)
        paths = _wire_path(rng, scene, kind, S, r)
        if paths is None:
            continue
        # size the radius against the object as it will be, wire included
        allp = np.concatenate(paths)
        lo, hi = scene.bounds()
        S_new = float((np.maximum(hi, allp.max(0)) - np.minimum(lo, allp.min(0))).max())
        r = r * S_new / S
        caps: list[SDF] = [c for p in paths for c in _chain(p, r)]
        if kind in ("rod", "squiggle") and rng.random() < 0.5:  # a knob at the free end
            caps.append(Sphere(paths[0][-1], r * rng.uniform(1.6, 3.0)))
        wire = scene.sym(Union(caps))
        # must hang out of the body (not buried), must touch it, and no cut may sever it
        field = scene.field()
        samples = np.concatenate(
            [p[:-1] + (p[1:] - p[:-1]) * t for p in paths for t in np.linspace(0, 1, 6)[:, None, None]]
        ).reshape(-1, 3)
        d = field(samples)
        clear = not scene.cuts or bool(np.all(Union(scene.cuts)(samples) > 2 * r))
        if np.mean(d > 0) >= 0.5 and np.any(d < 0) and clear:
            scene.parts.append(Part(f"wire_{kind}", wire, 0))
            return True
    return False


# ----------------------------------------------------------------------------- connectivity
def _pieces(scene: _Scene, cuts: list[SDF], res: int = 48) -> int:
    """Number of separate solid pieces of the non-wire parts (minus ``cuts``) on a coarse grid.

    Wires are left out: they are checked to touch the body and to keep clear of every cut, and
    at this resolution they would either vanish or, with a dilated test, bridge real gaps.
    """
    solid = [p for p in scene.parts if not p.name.startswith("wire")]
    field = scene.field(solid, cuts)
    lo, hi = Union([p.sdf for p in solid]).bounds()
    c, half = 0.5 * (lo + hi), 0.5 * float((hi - lo).max()) * 1.02
    occ = sample_grid(lambda q: field(q * half + c) / half, -1.0, 1.0, res) < 0
    return int(ndimage.label(occ, structure=np.ones((3, 3, 3)))[1])


# ----------------------------------------------------------------------------- builder
def composition(rng: U) -> ShapeSpec:
    """A random connected composition of 2-7 primitives, with bumps, cuts and wires."""
    symmetric = bool(rng.random() < 0.45)
    scene = _Scene(symmetric)
    n_parts = int(rng.integers(2, 8))

    # the body: centred (on the mirror plane when symmetric), usually upright or axis-aligned
    kind = str(rng.choice(_KINDS, p=_KIND_P))
    local, half = _primitive(rng, kind, BODY_HALF)
    # only kinds with exact distances: a shell of a distance *bound* has an uneven, torn wall
    hollow = kind in ("box", "round_box", "cylinder", "lathe") and rng.random() < 0.2
    bumpy = [bool(rng.random() < 0.3)]
    if bumpy[0]:
        local = _displace(rng, local, half)
    if hollow:  # shell the bumpy solid, not bump the shell: waves could eat through a thin wall
        local = _open_shell(rng, local, half)
    # made things mostly stand square; a tilted body mirrored in x would become a chevron
    body_orient = str(rng.choice(["axis", "upright", "random"], p=[0.5, 0.38, 0.12]))
    if symmetric and body_orient == "random":
        body_orient = "axis"
    if hollow:  # containers open upwards; one on its side tends to be closed up by later parts
        body_orient = "upright"
    rot = {"axis": _axis_rotation, "random": _random_rotation}.get(body_orient, lambda g: rotation("z", 0.0))(rng)
    scene.parts.append(Part(kind, scene.sym(Transform(local, rot, (0, 0, 0))), 0))
    kinds, orients, wheres = [kind], [body_orient], ["-"]

    for _ in range(3 * n_parts):
        if len(kinds) == n_parts:
            break
        kind = str(rng.choice(_KINDS, p=_KIND_P))
        # mostly smaller attachments; now and then a second large mass
        size = BODY_HALF * (rng.uniform(0.5, 1.0) if rng.random() < 0.2 else _log_uniform(rng, 0.15, 0.6))
        where = str(rng.choice(["any", "top", "bottom", "side"], p=[0.4, 0.25, 0.15, 0.2]))
        orient = str(rng.choice(["normal", "axis", "random"], p=[0.45, 0.4, 0.15]))
        bump = bool(rng.random() < 0.25)
        if _attach_part(rng, scene, kind, size, where, orient, bump):
            kinds.append(kind)
            orients.append(orient)
            wheres.append(where)
            bumpy.append(bump)

    cut_kinds: list[str] = []
    if rng.random() < 0.6:
        for _ in range(int(rng.integers(1, 4))):
            k = str(rng.choice(_CUT_KINDS))
            if _add_cut(rng, scene, k):
                cut_kinds.append(k)

    wire_kinds: list[str] = []
    if rng.random() < 0.55:
        for _ in range(int(rng.integers(1, 5))):
            k = str(rng.choice(_WIRE_KINDS, p=[0.22, 0.14, 0.2, 0.16, 0.13, 0.15]))
            if k == "legs" and "legs" in wire_kinds:
                continue
            if _add_wire(rng, scene, k):
                wire_kinds.append(k)

    # a cut can sever a thin neck; give up the newest cuts until no cut adds a piece
    if scene.cuts:
        whole = _pieces(scene, [])
        while scene.cuts and _pieces(scene, scene.cuts) > whole:
            scene.cuts.pop()
            cut_kinds.pop()

    # 1-3 materials shared by the parts; the body keeps the first, wires lean to the last
    n_mat = int(rng.integers(1, 4))
    families = [str(f) for f in rng.choice(FAMILIES, size=n_mat, replace=False)]
    materials = [material(rng, fam) for fam in families]
    for i, part in enumerate(scene.parts[1:], start=1):
        if part.name.startswith("wire") and rng.random() < 0.6:
            part.material = n_mat - 1
        else:
            part.material = int(rng.integers(0, n_mat))

    S = scene.size()
    blend = float(S * rng.uniform(0.005, 0.02)) if rng.random() < 0.35 else 0.0
    params = dict(
        n_parts=len(kinds),
        kinds=kinds,
        orientations=orients,
        attach=wheres,
        displaced=int(sum(bumpy)),
        hollow=hollow,
        n_cuts=len(cut_kinds),
        cut_kinds=cut_kinds,
        n_wires=len(wire_kinds),
        wire_kinds=wire_kinds,
        symmetric=symmetric,
        n_materials=n_mat,
        families=families,
        blend=blend,
    )
    return ShapeSpec(scene.parts, materials, params, cuts=list(scene.cuts), blend=blend)

