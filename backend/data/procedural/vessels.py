"""Vessel builders (surfaces of revolution): vase, bottle, mug, bowl, plant pot.

Hollow vessels are a solid lathe minus an inner lathe (the cavity) that runs out through the
top, so they are open, watertight, and their walls have a real thickness.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

from .materials import material
from .sdf import (
    Capsule,
    Cylinder,
    Elongate,
    Ellipsoid,
    Lathe,
    RoundBox,
    RoundCone,
    SDF,
    SmoothUnion,
    Subtract,
    Torus,
    Transform,
    Union,
    rotation,
)
from .shape import Part, ShapeSpec

U = np.random.Generator


def _radius_fn(z_ctrl, r_ctrl):
    f = PchipInterpolator(np.asarray(z_ctrl, float), np.asarray(r_ctrl, float))
    return lambda z: f(np.clip(z, z_ctrl[0], z_ctrl[-1]))


def _profile(fn, z0: float, z1: float, n: int = 48) -> np.ndarray:
    z = np.linspace(z0, z1, n)
    r = np.maximum(fn(z), 1e-3)
    return np.concatenate([[[0.0, z0]], np.stack([r, z], -1), [[0.0, z1]]])


def hollow(fn, height: float, wall: float, bottom: float) -> tuple[SDF, SDF]:
    """(vessel, cavity): a lathe of radius fn(z) on [0, height] with an open top."""
    outer = Lathe(_profile(fn, 0.0, height))
    zc = np.linspace(bottom, height, 48)
    rc = np.maximum(fn(zc) - wall, 1e-3)
    # the cavity pokes out above the rim so the vessel is open
    cav = np.concatenate(
        [[[0.0, bottom]], np.stack([rc, zc], -1), [[rc[-1], height + 10 * wall], [0.0, height + 10 * wall]]]
    )
    cavity = Lathe(cav)
    return Subtract(outer, cavity), cavity


def vase(rng: U) -> ShapeSpec:
    H = rng.uniform(0.2, 0.6)
    n = int(rng.integers(4, 7))
    z = np.linspace(0, H, n)
    base = rng.uniform(0.04, 0.12)
    r = base * np.exp(rng.normal(0, 0.35, n))
    r[0] = base * rng.uniform(0.5, 1.0)
    neck = rng.random() < 0.6
    if neck:
        r[-2] = min(r[-2], base * rng.uniform(0.3, 0.7))
        r[-1] = r[-2] * rng.uniform(1.0, 1.6)
    r = np.clip(r, 0.025, 0.25)
    fn = _radius_fn(z, r)
    wall = rng.uniform(0.006, 0.012) * max(1.0, H / 0.3)
    body, cavity = hollow(fn, H, wall, wall * 1.5)
    m = material(rng, rng.choice(["ceramic", "glass", "paint", "metal"]))
    parts = [Part("body", body, 0)]
    handles = rng.random() < 0.2
    if handles:
        zh = H * rng.uniform(0.55, 0.8)
        for sx in (-1, 1):
            rr = float(fn(np.array([zh]))[0])
            t = Transform(Torus((0, 0, 0), H * 0.12, wall * 1.2), rotation("x", np.pi / 2), (sx * rr, 0, zh))
            parts.append(Part("handle", Subtract(t, cavity), 0))
    return ShapeSpec(parts, [m], dict(height=H, radii=r.tolist(), wall=wall, handles=handles, neck=neck))


def bottle(rng: U) -> ShapeSpec:
    r = rng.uniform(0.025, 0.05)
    hb = rng.uniform(0.1, 0.25)
    sh = rng.uniform(0.01, 0.08)
    rn = r * rng.uniform(0.25, 0.55)
    nl = rng.uniform(0.02, 0.12)
    square = rng.random() < 0.2
    glass, cap_m, label_m = (
        material(rng, "glass"),
        material(rng, rng.choice(["metal", "plastic"])),
        material(rng, "paint"),
    )
    top = hb + sh + nl
    fn = _radius_fn([0, 0.006, hb, hb + sh, top], [r * 0.9, r, r, rn, rn])
    parts = [Part("body", Lathe(_profile(fn, 0.0, top)), 0)]
    if square:
        parts[0] = Part(
            "body",
            Union([RoundBox((0, 0, hb / 2), (r * 0.9, r * 0.9, hb / 2), r * 0.25), Lathe(_profile(fn, hb * 0.9, top))]),
            0,
        )
    cap_h = rng.uniform(0.01, 0.03)
    parts.append(Part("cap", Cylinder((0, 0, top + cap_h / 2), rn * 1.15, cap_h / 2, rn * 0.2), 1))
    label = rng.random() < 0.5 and not square
    if label:
        lz = hb * rng.uniform(0.3, 0.6)
        parts.append(Part("label", Cylinder((0, 0, lz), r * 1.015, hb * rng.uniform(0.15, 0.3)), 2))
    return ShapeSpec(
        parts,
        [glass, cap_m, label_m],
        dict(radius=r, body_height=hb, shoulder=sh, neck_radius=rn, neck_length=nl, square=square, label=label),
    )


def mug(rng: U) -> ShapeSpec:
    r = rng.uniform(0.035, 0.06)
    h = rng.uniform(0.07, 0.14)
    taper = rng.uniform(0.75, 1.15)
    belly = rng.uniform(0.0, 0.15)
    fn = lambda z: r * (taper + (1 - taper) * (1 - z / h)) * (1 + belly * np.sin(np.pi * z / h))  # noqa: E731
    wall = rng.uniform(0.004, 0.008)
    body, cavity = hollow(fn, h, wall, wall * 1.5)
    m_body = material(rng, "ceramic")
    m_handle = m_body if rng.random() < 0.7 else material(rng, "ceramic")
    style = rng.choice(["round", "tall", "square"])
    hr = h * rng.uniform(0.25, 0.38)
    tube = rng.uniform(0.005, 0.009)
    zc = h * rng.uniform(0.45, 0.55)
    rz = float(fn(np.array([zc]))[0])
    if style == "round":
        ring: SDF = Torus((0, 0, 0), hr, tube)
    elif style == "tall":
        ring = Elongate(Torus((0, 0, 0), hr * 0.7, tube), (0, hr * 0.4, 0))
    else:
        ring = Elongate(Torus((0, 0, 0), hr * 0.35, tube), (hr * 0.35, hr * 0.5, 0))
    # the ring lies in the xz plane, its centre just outside the wall on +x (the right side)
    handle = Transform(ring, rotation("x", np.pi / 2), (rz + hr * 0.55, 0, zc))
    parts = [Part("body", body, 0), Part("handle", Subtract(handle, cavity), 1)]
    return ShapeSpec(
        parts, [m_body, m_handle], dict(radius=r, height=h, taper=taper, belly=belly, handle=str(style), wall=wall)
    )


def bowl(rng: U) -> ShapeSpec:
    R = rng.uniform(0.06, 0.15)
    H = R * rng.uniform(0.3, 0.9)
    foot_r = R * rng.uniform(0.3, 0.6)
    p = rng.uniform(0.4, 1.0)
    fn = lambda z: foot_r + (R - foot_r) * (np.clip(z / H, 0, 1) ** p)  # noqa: E731
    wall = rng.uniform(0.005, 0.01) * max(1.0, R / 0.1)
    body, _ = hollow(fn, H, wall, wall * 1.5)
    m = material(rng, rng.choice(["ceramic", "wood", "plastic", "metal"]))
    parts = [Part("body", body, 0)]
    foot = rng.random() < 0.5
    if foot:
        parts.append(Part("foot", Torus((0, 0, wall * 0.6), foot_r * 0.85, wall * 0.8), 0))
    rim = rng.random() < 0.3
    if rim:
        parts.append(Part("rim", Torus((0, 0, H - wall * 0.5), R - wall * 0.3, wall * 0.9), 0))
    return ShapeSpec(parts, [m], dict(radius=R, height=H, foot_radius=foot_r, power=p, foot=foot, rim=rim))


def plant_pot(rng: U) -> ShapeSpec:
    r_top = rng.uniform(0.06, 0.18)
    H = r_top * rng.uniform(0.8, 1.6)
    r_bot = r_top * rng.uniform(0.6, 1.0)
    lip = rng.random() < 0.6
    lip_h = H * rng.uniform(0.1, 0.2)
    wall = rng.uniform(0.006, 0.012) * max(1.0, r_top / 0.1)

    def fn(z):
        base = r_bot + (r_top - r_bot) * z / H
        return base + (wall * 1.2 if lip else 0.0) * (z > H - lip_h)

    body, _ = hollow(fn, H, wall, wall * 2)
    pot_m, soil_m, leaf_m = (
        material(rng, rng.choice(["ceramic", "paint", "plastic", "stone"])),
        material(rng, "soil"),
        material(rng, "foliage"),
    )
    soil_z = H * rng.uniform(0.7, 0.9)
    r_soil = float(fn(np.array([soil_z]))[0]) - wall
    parts = [Part("pot", body, 0), Part("soil", Cylinder((0, 0, soil_z - 0.01), r_soil, 0.01, 0.004), 1)]
    plant = str(rng.choice(["none", "leaves", "cactus", "bush"], p=[0.2, 0.35, 0.2, 0.25]))
    plant_parts = []
    if plant == "leaves":
        n = int(rng.integers(4, 10))
        L = H * rng.uniform(0.8, 2.0)
        for i in range(n):
            ang = rng.uniform(0, 2 * np.pi)
            lean = rng.uniform(0.2, 1.0)
            d = np.array([np.cos(ang) * np.sin(lean), np.sin(ang) * np.sin(lean), np.cos(lean)])
            ln = L * rng.uniform(0.6, 1.0)
            plant_parts.append(RoundCone((0, 0, soil_z), np.array([0, 0, soil_z]) + d * ln, r_top * 0.08, r_top * 0.04))
    elif plant == "cactus":
        ch = H * rng.uniform(0.8, 1.8)
        cr = r_soil * rng.uniform(0.3, 0.6)
        plant_parts.append(Capsule((0, 0, soil_z), (0, 0, soil_z + ch), cr))
        for sx in (-1, 1):
            if rng.random() < 0.6:
                z0 = soil_z + ch * rng.uniform(0.3, 0.6)
                elbow = (sx * cr * 2.2, 0, z0)
                plant_parts.append(Capsule((0, 0, z0), elbow, cr * 0.55))
                plant_parts.append(Capsule(elbow, (sx * cr * 2.2, 0, z0 + ch * rng.uniform(0.2, 0.4)), cr * 0.55))
    elif plant == "bush":
        for i in range(int(rng.integers(3, 8))):
            c = np.array(
                [rng.normal(0, r_soil * 0.5), rng.normal(0, r_soil * 0.5), soil_z + rng.uniform(0.3, 1.2) * r_top]
            )
            plant_parts.append(Ellipsoid(c, r_top * rng.uniform(0.35, 0.6, 3)))
    if plant_parts:
        parts.append(Part("plant", SmoothUnion(plant_parts, r_top * 0.1), 2))
    return ShapeSpec(
        parts, [pot_m, soil_m, leaf_m], dict(top_radius=r_top, height=H, bottom_radius=r_bot, lip=lip, plant=plant)
    )
