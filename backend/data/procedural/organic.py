"""Organic builders: rock, fruit, tree, mushroom, quadruped creature, humanoid character.

Smooth unions blend the parts into one skin; creatures and characters face -Y.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

from .materials import material
from .sdf import (
    Capsule,
    Displace,
    Ellipsoid,
    HalfSpace,
    Intersect,
    Lathe,
    RoundBox,
    RoundCone,
    SDF,
    SmoothUnion,
    Sphere,
    Subtract,
    Transform,
    rotation,
)
from .shape import Part, ShapeSpec

U = np.random.Generator


def _bumps(
    rng: U, child: SDF, size: float, amp_frac: tuple[float, float], n: int = 6, freq: tuple[float, float] = (2.0, 5.0)
) -> Displace:
    """Smooth random bumps; amplitude * frequency stays < 0.5 so the field stays Lipschitz-safe."""
    dirs = rng.normal(size=(n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    f = rng.uniform(*freq, size=(n, 1)) / size
    amp = rng.uniform(*amp_frac) * size
    amp = min(amp, 0.45 / float(f.max()))
    return Displace(child, dirs * f, rng.uniform(0, 2 * np.pi, n), amp)


def rock(rng: U) -> ShapeSpec:
    R = 1.0
    radii = R * np.array([1.0, rng.uniform(0.5, 1.0), rng.uniform(0.25, 0.8)])
    rng.shuffle(radii[:2])
    base: SDF = Ellipsoid((0, 0, 0), radii)
    n_cuts = int(rng.integers(0, 7))
    for _ in range(n_cuts):  # flat fractured faces
        n = rng.normal(size=3)
        n /= np.linalg.norm(n)
        extent = float(np.sqrt(((radii * n) ** 2).sum()))
        base = Intersect(base, HalfSpace(n, extent * rng.uniform(0.6, 0.9)))
    rough = _bumps(rng, base, float(radii.max()), (0.03, 0.12), n=8, freq=(1.5, 6.0))
    rough = _bumps(rng, rough, float(radii.max()), (0.01, 0.025), n=10, freq=(8.0, 14.0))
    rough = Intersect(rough, HalfSpace((0, 0, -1), radii[2] * 0.7))  # sits flat on the ground
    m = material(rng, "stone")
    return ShapeSpec([Part("rock", rough, 0)], [m], dict(radii=radii.tolist(), cuts=n_cuts))


def fruit(rng: U) -> ShapeSpec:
    kind = str(rng.choice(["apple", "pear", "orange", "lemon", "banana"]))
    skin = material(rng, "fruit")
    stem_m, leaf_m = material(rng, "bark"), material(rng, "foliage")
    parts = []
    R = 0.04
    if kind in ("apple", "pear"):
        H = R * (rng.uniform(1.7, 2.1) if kind == "apple" else rng.uniform(2.6, 3.4))
        if kind == "apple":
            zc, rc = [0, 0.15, 0.5, 0.85, 1.0], [0.3, 0.8, 1.0, 0.85, 0.35]
        else:
            zc, rc = [0, 0.12, 0.35, 0.65, 0.9, 1.0], [0.3, 0.85, 1.0, 0.55, 0.45, 0.2]
        rc = np.array(rc) * R * rng.uniform(0.9, 1.1, len(rc))
        f = PchipInterpolator(np.array(zc) * H, rc)
        z = np.linspace(0, H, 40)
        prof = np.concatenate([[[0.0, 0.0]], np.stack([np.maximum(f(z), 1e-3), z], -1), [[0.0, H]]])
        body: SDF = Lathe(prof)
        body = Subtract(body, Sphere((0, 0, H + R * 0.1), R * 0.3), k=R * 0.2)
        body = Subtract(body, Sphere((0, 0, -R * 0.15), R * 0.3), k=R * 0.15)
        top = H - R * 0.1
    elif kind == "orange":
        body = Ellipsoid((0, 0, R), (R, R, R * rng.uniform(0.85, 1.0)))
        body = Displace(body, rng.normal(size=(6, 3)) * 30 / R / 2, rng.uniform(0, 6, 6), R * 0.008)
        top = 2 * R * 0.95
    elif kind == "lemon":
        Lz = R * rng.uniform(1.3, 1.7)
        body = SmoothUnion(
            [
                Ellipsoid((0, 0, 0), (R, R, Lz)),
                RoundCone((0, 0, Lz * 0.7), (0, 0, Lz * 1.15), R * 0.35, R * 0.1),
                RoundCone((0, 0, -Lz * 0.7), (0, 0, -Lz * 1.15), R * 0.35, R * 0.1),
            ],
            R * 0.3,
        )
        body = Transform(body, rotation("y", np.pi / 2), (0, 0, R))  # lying on its side
        top = None
    else:
        n = 5
        bend = rng.uniform(0.5, 1.2)
        Lb = R * rng.uniform(4, 6)
        ang = np.linspace(-bend / 2, bend / 2, n + 1)
        pts = np.stack([Lb / bend * np.sin(ang), np.zeros_like(ang), Lb / bend * (1 - np.cos(ang))], -1)
        rad = R * 0.45 * np.sin(np.linspace(0.25, np.pi - 0.25, n + 1)) ** 0.5
        body = SmoothUnion([RoundCone(pts[i], pts[i + 1], rad[i], rad[i + 1]) for i in range(n)], R * 0.1)
        top = None
    parts.append(Part("fruit", body, 0))
    if top is not None and (kind != "orange" or rng.random() < 0.5):
        stem_len = R * rng.uniform(0.2, 0.6)
        lean = rng.uniform(-0.4, 0.4)
        tip = np.array([np.sin(lean) * stem_len, 0, top + np.cos(lean) * stem_len])
        parts.append(Part("stem", RoundCone((0, 0, top - R * 0.1), tip, R * 0.06, R * 0.045), 1))
        if rng.random() < 0.5:
            leaf = Ellipsoid((0, 0, 0), (R * 0.5, R * 0.22, R * 0.05))
            a = rng.uniform(0, 2 * np.pi)
            parts.append(
                Part(
                    "leaf",
                    Transform(
                        leaf,
                        rotation("z", a) @ rotation("y", -0.5),
                        tip + np.array([np.cos(a), np.sin(a), -0.5]) * R * 0.4,
                    ),
                    2,
                )
            )
    return ShapeSpec(parts, [skin, stem_m, leaf_m], dict(kind=kind), blend=R * 0.05)


def tree(rng: U) -> ShapeSpec:
    kind = str(rng.choice(["broadleaf", "conifer", "bare", "round"], p=[0.4, 0.3, 0.1, 0.2]))
    H = rng.uniform(2.5, 8.0)
    r0 = H * rng.uniform(0.03, 0.06)
    bark, leaves = material(rng, "bark"), material(rng, "foliage")
    parts = []
    trunk_h = H * (rng.uniform(0.3, 0.55) if kind in ("broadleaf", "round") else 0.9 if kind == "conifer" else 0.6)
    lean = rng.normal(0, 0.05, 2)
    trunk_top = np.array([lean[0] * H, lean[1] * H, trunk_h])
    parts.append(Part("trunk", RoundCone((0, 0, 0), trunk_top, r0, r0 * 0.6), 0))
    if kind == "conifer":
        tiers = int(rng.integers(2, 6))
        base = H * rng.uniform(0.12, 0.3)
        width = H * rng.uniform(0.18, 0.35)
        for i in range(tiers):
            z0 = base + i * (H - base) / (tiers + 1) * 0.9
            th = (H - z0) * rng.uniform(0.45, 0.7)
            w = width * (1 - i / (tiers + 1))
            prof = np.array([[0, z0], [w, z0 + th * 0.1], [w * 0.1, z0 + th], [0, z0 + th]])
            parts.append(
                Part(f"tier{i}", Lathe(prof, center=(trunk_top[0] * z0 / trunk_h, trunk_top[1] * z0 / trunk_h, 0)), 1)
            )
        return ShapeSpec(parts, [bark, leaves], dict(kind=kind, height=H, tiers=tiers), blend=H * 0.02)
    n_br = int(rng.integers(2, 6)) if kind != "round" else 0  # a round crown hides its branches
    blobs = []
    for i in range(n_br):
        az = 2 * np.pi * i / n_br + rng.uniform(-0.4, 0.4)
        el = rng.uniform(0.5, 1.2)
        ln = (H - trunk_h) * rng.uniform(0.5, 0.9)
        d = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
        start = trunk_top - np.array([0, 0, rng.uniform(0, 0.2) * trunk_h])
        end = start + d * ln
        parts.append(Part(f"branch{i}", RoundCone(start, end, r0 * 0.5, max(r0 * 0.2, H * 0.008)), 0))
        if kind == "bare":
            for j in range(2):
                d2 = d + rng.normal(0, 0.5, 3)
                d2 /= np.linalg.norm(d2)
                parts.append(Part("twig", RoundCone(end, end + d2 * ln * 0.5, max(r0 * 0.2, H * 0.008), H * 0.008), 0))
        else:
            blobs.append(Ellipsoid(end, H * rng.uniform(0.12, 0.22, 3)))
    if kind == "round":
        blobs = [
            Ellipsoid(
                trunk_top + [0, 0, (H - trunk_h) * 0.45], np.array([1, 1, 0.9]) * (H - trunk_h) * rng.uniform(0.45, 0.6)
            )
        ]
    if blobs:
        crown = SmoothUnion(blobs, H * 0.06)
        parts.append(Part("crown", _bumps(rng, crown, H * 0.25, (0.03, 0.08), n=6, freq=(2, 5)), 1))
    return ShapeSpec(parts, [bark, leaves], dict(kind=kind, height=H, branches=n_br), blend=r0 * 0.5)


def mushroom(rng: U) -> ShapeSpec:
    n = int(rng.choice([1, 1, 2, 3]))
    cap_m, stem_m = material(rng, rng.choice(["fruit", "cream", "paint", "bark"])), material(rng, "cream")
    parts = []
    kinds = []
    for i in range(n):
        s = 1.0 if i == 0 else rng.uniform(0.4, 0.8)
        h = s * rng.uniform(0.6, 1.4)
        rs = s * rng.uniform(0.07, 0.16)
        R = s * rng.uniform(0.25, 0.6)
        off = (
            np.zeros(3)
            if i == 0
            else np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a), 0]) * (0.35 + 0.3 * s)
        )
        bend = rng.normal(0, 0.08, 2) * h
        mid = off + [bend[0] * 0.5, bend[1] * 0.5, h * 0.5]
        top = off + [bend[0], bend[1], h]
        parts.append(Part("stem", RoundCone(off + [0, 0, rs], mid, rs * rng.uniform(1.0, 1.5), rs), 1))
        parts.append(Part("stem", RoundCone(mid, top, rs, rs * 0.9), 1))
        kind = str(rng.choice(["dome", "flat", "cone"]))
        kinds.append(kind)
        ch = R * {"dome": rng.uniform(0.5, 0.9), "flat": rng.uniform(0.2, 0.35), "cone": rng.uniform(0.8, 1.3)}[kind]
        if kind == "cone":
            prof = np.array([[0, -ch * 0.1], [R, -ch * 0.05], [R * 0.9, ch * 0.15], [0, ch]])
            cap: SDF = Lathe(prof)
        else:
            cap = Intersect(Ellipsoid((0, 0, 0), (R, R, ch)), HalfSpace((0, 0, -1), ch * 0.1))
        cap = Subtract(cap, Ellipsoid((0, 0, -ch * 0.25), (R * 0.85, R * 0.85, ch * 0.3)), k=R * 0.05)
        parts.append(
            Part(
                "cap",
                Transform(cap, rotation("x", bend[1] / h) @ rotation("y", -bend[0] / h), top - [0, 0, ch * 0.05]),
                0,
            )
        )
    return ShapeSpec(parts, [cap_m, stem_m], dict(count=n, caps=kinds), blend=0.02)


def quadruped(rng: U) -> ShapeSpec:
    Lb = rng.uniform(0.8, 1.6)
    rb = Lb * rng.uniform(0.18, 0.32)
    leg_len = Lb * rng.uniform(0.35, 1.2)
    leg_r = rb * rng.uniform(0.2, 0.4)
    neck = Lb * rng.uniform(0.1, 0.7)
    head = rb * rng.uniform(0.5, 0.9)
    fur, accent = material(rng, "fur"), material(rng, rng.choice(["fur", "dark", "skin"]))
    parts = []
    bz = leg_len + rb * 0.6
    parts.append(Part("body", Ellipsoid((0, 0, bz), (rb * rng.uniform(0.8, 1.1), Lb / 2, rb)), 0))
    parts.append(Part("chest", Ellipsoid((0, -Lb * 0.25, bz + rb * 0.1), (rb * 0.95, Lb * 0.25, rb * 1.05)), 0))
    for sy, name in ((-1, "front"), (1, "back")):
        for sx in (-1, 1):
            hip = np.array([sx * rb * 0.55, sy * Lb * 0.33, bz - rb * 0.3])
            knee = np.array([sx * rb * 0.55, sy * Lb * 0.33 + sy * rng.uniform(-0.1, 0.1) * leg_len, leg_len * 0.5])
            foot = np.array([sx * rb * 0.55, sy * Lb * 0.33 - leg_r * 0.5, leg_r * 0.8])
            parts.append(Part(f"{name}_leg", RoundCone(hip, knee, leg_r * 1.3, leg_r), 0))
            parts.append(Part(f"{name}_shin", RoundCone(knee, foot, leg_r, leg_r * 0.8), 1))
    ang = np.deg2rad(rng.uniform(10, 70))
    n0 = np.array([0, -Lb * 0.45, bz + rb * 0.3])
    n1 = n0 + neck * np.array([0, -np.cos(ang), np.sin(ang)])
    parts.append(Part("neck", RoundCone(n0, n1, rb * 0.5, head * 0.55), 0))
    parts.append(Part("head", Ellipsoid(n1 + [0, -head * 0.2, head * 0.2], (head * 0.8, head, head * 0.85)), 0))
    snout_len = head * rng.uniform(0.4, 1.4)
    s0 = n1 + [0, -head * 0.7, 0.0]
    parts.append(Part("snout", RoundCone(s0, s0 + [0, -snout_len, -head * 0.2], head * 0.5, head * 0.3), 1))
    ear_len = head * rng.uniform(0.3, 1.0)
    floppy = rng.random() < 0.4
    for sx in (-1, 1):
        e0 = n1 + [sx * head * 0.5, -head * 0.1, head * 0.7]
        tip = e0 + (np.array([sx * 0.6, 0.2, -1.0]) if floppy else np.array([sx * 0.3, 0.1, 1.0])) * ear_len
        parts.append(Part("ear", RoundCone(e0, tip, head * 0.22, max(head * 0.08, 0.012 * Lb)), 1))
    tail_len = Lb * rng.uniform(0.1, 0.8)
    t0 = np.array([0, Lb * 0.48, bz + rb * 0.3])
    up = rng.uniform(-0.8, 1.0)
    t1 = t0 + tail_len * 0.5 * np.array([0, np.cos(up * 0.5), np.sin(up * 0.5)])
    t2 = t1 + tail_len * 0.5 * np.array([0, np.cos(up), np.sin(up)])
    tr = max(rb * rng.uniform(0.08, 0.25), 0.025 * Lb)  # tip stays >= ~2 voxels at 128^3
    parts.append(Part("tail", RoundCone(t0, t1, tr, tr * 0.8), 0))
    parts.append(Part("tail", RoundCone(t1, t2, tr * 0.8, tr * 0.4), 1))
    params = dict(
        body_length=Lb,
        body_radius=rb,
        leg_length=leg_len,
        neck_length=neck,
        head_size=head,
        neck_angle_deg=np.rad2deg(ang),
        floppy_ears=floppy,
        tail_length=tail_len,
        snout_length=snout_len,
    )
    return ShapeSpec(parts, [fur, accent], params, blend=rb * 0.25)


def humanoid(rng: U) -> ShapeSpec:
    H = rng.uniform(1.0, 1.9)
    heads = rng.uniform(3.0, 7.5)  # body height in head heights: 3 = chibi, 7.5 = adult
    hh = H / heads
    build = rng.uniform(0.8, 1.4)
    skin, shirt, pants, shoes = (
        material(rng, "skin"),
        material(rng, "fabric"),
        material(rng, "fabric"),
        material(rng, "dark"),
    )
    parts = []
    leg_len = (H - hh) * 0.5
    hip_z = leg_len + hh * 0.1
    shoulder_z = H - hh * 1.25
    sw = hh * 0.9 * build  # half shoulder width
    torso_h = shoulder_z - hip_z
    parts.append(Part("torso", Ellipsoid((0, 0, hip_z + torso_h * 0.55), (sw * 0.95, sw * 0.55, torso_h * 0.6)), 1))
    parts.append(Part("pelvis", Ellipsoid((0, 0, hip_z + hh * 0.05), (sw * 0.75, sw * 0.5, hh * 0.4)), 2))
    parts.append(Part("neck", Capsule((0, 0, shoulder_z), (0, 0, H - hh * 0.9), hh * 0.16 * build), 0))
    parts.append(Part("head", Ellipsoid((0, 0, H - hh * 0.5), (hh * 0.4, hh * 0.45, hh * 0.5)), 0))
    parts.append(Part("nose", Capsule((0, -hh * 0.42, H - hh * 0.5), (0, -hh * 0.48, H - hh * 0.55), hh * 0.06), 0))
    limb = hh * 0.13 * build
    stance = rng.uniform(0.0, 0.35)
    arm_raise_deg, bare_forearms = [], []
    for sx in (-1, 1):
        hip = np.array([sx * sw * 0.45, 0, hip_z])
        foot = np.array([sx * (sw * 0.45 + stance * leg_len), 0, hh * 0.12])
        knee = 0.5 * (hip + foot) + [0, -rng.uniform(0, 0.08) * leg_len, 0]
        parts.append(Part("thigh", RoundCone(hip, knee, limb * 1.4, limb * 1.0), 2))
        parts.append(Part("shin", RoundCone(knee, foot + [0, 0, hh * 0.1], limb, limb * 0.75), 2))
        parts.append(
            Part("foot", RoundBox(foot + [0, -hh * 0.12, -hh * 0.04], (limb * 0.9, hh * 0.26, hh * 0.09), hh * 0.06), 3)
        )
        # arm pose: abduction from hanging (0) to T-pose (90 deg), elbow bend forward
        abd = np.deg2rad(rng.uniform(8, 95))
        arm_raise_deg.append(float(np.rad2deg(abd)))
        arm_len = leg_len * 0.45
        sh = np.array([sx * sw, 0, shoulder_z - hh * 0.1])
        elbow = sh + arm_len * np.array([sx * np.sin(abd), 0, -np.cos(abd)])
        bend = np.deg2rad(rng.uniform(0, 90))
        fore = np.array([sx * np.sin(abd) * np.cos(bend), -np.sin(bend), -np.cos(abd) * np.cos(bend)])
        wrist = elbow + arm_len * fore
        parts.append(Part("upper_arm", RoundCone(sh, elbow, limb * 1.0, limb * 0.8), 1))
        bare_forearms.append(bool(rng.random() < 0.4))  # skin-coloured: short sleeves
        parts.append(Part("forearm", RoundCone(elbow, wrist, limb * 0.8, limb * 0.65), 0 if bare_forearms[-1] else 1))
        parts.append(Part("hand", Sphere(wrist + fore * limb, limb * 1.0), 0))
    params = dict(
        height=H,
        head_heights=heads,
        build=build,
        stance=stance,
        arm_raise_deg=arm_raise_deg,
        bare_forearms=bare_forearms,
    )
    return ShapeSpec(parts, [skin, shirt, pants, shoes], params, blend=hh * 0.06)
