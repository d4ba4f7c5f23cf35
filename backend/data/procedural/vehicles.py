"""Vehicle builders: car, airplane, boat. Length runs along Y with the nose/bow at -Y."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .materials import material
from .sdf import (
    Capsule,
    Cylinder,
    Ellipsoid,
    HalfSpace,
    Intersect,
    MirrorX,
    Offset,
    RoundBox,
    RoundCone,
    SmoothUnion,
    Subtract,
    Transform,
    rotation,
)
from .shape import Part, ShapeSpec

U = np.random.Generator


def car(rng: U) -> ShapeSpec:
    kind = str(rng.choice(["sedan", "hatchback", "suv", "pickup", "sports", "van"]))
    L = rng.uniform(3.6, 5.0)
    W = rng.uniform(1.6, 2.0)
    clear = rng.uniform(0.12, 0.3) if kind in ("suv", "pickup", "van") else rng.uniform(0.1, 0.18)
    body_h = rng.uniform(0.5, 0.75) if kind != "sports" else rng.uniform(0.4, 0.55)
    cab_h = {"sports": 0.35, "van": 0.9, "suv": 0.7}.get(kind, 0.5) * rng.uniform(0.85, 1.15)
    wheel_r = rng.uniform(0.3, 0.42) * (1.1 if kind in ("suv", "pickup") else 1.0)
    paint, glass, rubber = material(rng, "paint"), material(rng, "glass"), material(rng, "rubber")
    paint = replace(paint, roughness=paint.roughness * 0.6, metallic=float(rng.uniform(0.0, 0.6)))  # car paint
    z_body = clear + wheel_r * 0.5
    body = RoundBox((0, 0, z_body + body_h / 2), (W / 2, L / 2, body_h / 2), min(0.18, body_h * 0.35))
    # cabin: a rounded box whose front/back are sheared into windscreen slopes by half-space cuts
    cab_len = {"van": 0.8, "pickup": 0.35, "hatchback": 0.55, "suv": 0.62}.get(kind, 0.45) * L
    cab_y = {"van": 0.05, "pickup": -0.1, "hatchback": 0.1, "suv": 0.1}.get(kind, 0.05) * L
    z_cab = z_body + body_h
    cabin_box = RoundBox((0, cab_y, z_cab + cab_h / 2 - 0.05), (W / 2 * 0.9, cab_len / 2, cab_h / 2 + 0.05), 0.12)
    # windscreen / rear window angles from the vertical
    slope_f = np.deg2rad(rng.uniform(45, 65) if kind != "van" else rng.uniform(20, 35))
    slope_b = np.deg2rad(rng.uniform(45, 65) if kind in ("sedan", "sports") else rng.uniform(5, 25))
    front = HalfSpace(
        (0, -np.cos(slope_f), np.sin(slope_f)),
        np.dot((0, -np.cos(slope_f), np.sin(slope_f)), (0, cab_y - cab_len / 2, z_cab)) + 0.0,
    )
    back = HalfSpace(
        (0, np.cos(slope_b), np.sin(slope_b)),
        np.dot((0, np.cos(slope_b), np.sin(slope_b)), (0, cab_y + cab_len / 2, z_cab)),
    )
    cabin = Intersect(Intersect(cabin_box, front), back)
    parts = [Part("body", body, 0), Part("cabin", cabin, 0)]
    # windows: a band of the cabin, grown a little so it sits proud of the paint
    band = Intersect(
        Intersect(cabin, HalfSpace((0, 0, -1), -(z_cab + 0.08))), HalfSpace((0, 0, 1), z_cab + cab_h - 0.08)
    )
    parts.append(Part("windows", Offset(band, 0.015), 1))
    if kind == "pickup":
        bed_y0 = cab_y + cab_len / 2 + 0.05
        parts.append(
            Part(
                "bed_wall",
                Subtract(
                    RoundBox((0, (bed_y0 + L / 2) / 2, z_cab + 0.15), (W / 2, (L / 2 - bed_y0) / 2, 0.2), 0.05),
                    RoundBox((0, (bed_y0 + L / 2) / 2, z_cab + 0.3), (W / 2 - 0.08, (L / 2 - bed_y0) / 2 - 0.08, 0.35)),
                ),
                0,
            )
        )
    wb = L * rng.uniform(0.28, 0.36)
    ww = rng.uniform(0.18, 0.3)
    for sy in (-1, 1):
        for sx in (-1, 1):
            c = (sx * (W / 2 - ww / 2 + 0.03), sy * wb, wheel_r)
            tyre = Transform(Cylinder((0, 0, 0), wheel_r, ww / 2, 0.06), rotation("y", np.pi / 2), c)
            parts.append(Part("wheel", tyre, 2))
    spoiler = rng.random() < 0.4
    if spoiler:
        parts.append(Part("spoiler", RoundBox((0, L / 2 - 0.15, z_cab + 0.12), (W / 2 * 0.85, 0.12, 0.025), 0.02), 0))
    params = dict(
        kind=kind,
        length=L,
        width=W,
        clearance=clear,
        body_height=body_h,
        cabin_height=cab_h,
        wheel_radius=wheel_r,
        wheelbase=2 * wb,
        spoiler=spoiler,
    )
    return ShapeSpec(parts, [paint, glass, rubber], params)


def airplane(rng: U) -> ShapeSpec:
    L = rng.uniform(8, 40)
    fr = L * rng.uniform(0.035, 0.07)
    span = L * rng.uniform(0.7, 1.4)
    sweep = np.deg2rad(rng.uniform(0, 40))
    dihedral = np.deg2rad(rng.uniform(-3, 8))
    chord = L * rng.uniform(0.08, 0.2)
    ref = max(L, span)  # the longest side after normalisation
    wing_t = max(chord * rng.uniform(0.1, 0.16), 0.02 * ref)  # >= ~2 voxels at 128^3
    high = rng.choice([-0.6, 0.0, 0.7])
    body_m, accent = material(rng, rng.choice(["paint", "metal"])), material(rng, "paint")
    parts = []
    nose = RoundCone((0, -L / 2 + fr, 0), (0, -L / 2 + L * 0.2, 0), fr * 0.6, fr)
    mid = Capsule((0, -L / 2 + L * 0.2, 0), (0, L / 2 - L * 0.3, 0), fr)
    tail = RoundCone((0, L / 2 - L * 0.3, 0), (0, L / 2 - fr * 0.3, fr * 0.5), fr, fr * 0.3)
    parts.append(Part("fuselage", SmoothUnion([nose, mid, tail], fr * 0.2), 0))
    wy = -L * rng.uniform(0.0, 0.12)
    # right wing (+x), swept back (+Y) and tipped up by the dihedral, mirrored to the left
    wing = RoundBox((span / 4, 0, 0), (span / 4, chord / 2, wing_t / 2), wing_t * 0.45)
    parts.append(
        Part("wings", MirrorX(Transform(wing, rotation("z", sweep) @ rotation("y", -dihedral), (0, wy, high * fr))), 0)
    )
    tail_span = span * rng.uniform(0.25, 0.4)
    tc = chord * rng.uniform(0.4, 0.7)
    stab = RoundBox((tail_span / 4, 0, 0), (tail_span / 4, tc / 2, max(wing_t * 0.35, 0.01 * ref)), wing_t * 0.15)
    parts.append(
        Part("stabilizers", MirrorX(Transform(stab, rotation("z", sweep), (0, L / 2 - tc * 0.8, fr * 0.3))), 0)
    )
    fin_h = fr * rng.uniform(1.5, 3.0)
    fin = Transform(
        RoundBox((0, 0, fin_h / 2), (max(wing_t * 0.35, 0.01 * ref), tc * 0.6, fin_h / 2), wing_t * 0.15),
        rotation("x", -np.deg2rad(rng.uniform(10, 40))),
        (0, L / 2 - tc * 0.8, fr * 0.5),
    )
    parts.append(Part("fin", fin, 1))
    n_eng = int(rng.choice([0, 2, 4]))
    er = fr * rng.uniform(0.35, 0.6)
    for i in range(n_eng // 2):
        for sx in (-1, 1):
            x = span / 2 * (0.35 + 0.3 * i)
            y = wy + x * np.tan(sweep) - chord * 0.6
            z = high * fr + x * np.tan(dihedral) - er * 1.2
            eng = Transform(Cylinder((0, 0, 0), er, er * 1.6, er * 0.3), rotation("x", np.pi / 2), (sx * x, y, z))
            parts.append(Part("engine", eng, 1))
    prop = n_eng == 0 and rng.random() < 0.6
    if prop:
        hub = (0, -L / 2 - fr * 0.1, 0)
        parts.append(Part("spinner", Ellipsoid(hub, (fr * 0.3, fr * 0.5, fr * 0.3)), 1))
        for k in range(int(rng.integers(2, 5))):
            a = 2 * np.pi * k / 4 + 0.3
            parts.append(
                Part(
                    "blade",
                    Capsule(hub, (fr * 1.8 * np.cos(a), hub[1], fr * 1.8 * np.sin(a)), max(fr * 0.12, 0.01 * ref)),
                    1,
                )
            )
    params = dict(
        length=L,
        fuselage_radius=fr,
        span=span,
        sweep_deg=np.rad2deg(sweep),
        dihedral_deg=np.rad2deg(dihedral),
        wing_position=float(high),
        engines=n_eng,
        propeller=prop,
    )
    return ShapeSpec(parts, [body_m, accent], params)


def boat(rng: U) -> ShapeSpec:
    L = rng.uniform(3, 12)
    B = L * rng.uniform(0.25, 0.4)
    D = B * rng.uniform(0.35, 0.6)
    kind = str(rng.choice(["rowboat", "motorboat", "sailboat"]))
    hull_m, deck_m, sail_m = (
        material(rng, rng.choice(["paint", "wood"])),
        material(rng, rng.choice(["wood", "cream", "paint"])),
        material(rng, "cream"),
    )
    # hull: an ellipsoid sliced by the deck plane, pointed towards the bow (-Y) by a pair of cuts
    hull = Intersect(Ellipsoid((0, 0, D), (B / 2, L / 2, D * 1.4)), HalfSpace((0, 0, 1), D))
    bow = np.deg2rad(rng.uniform(20, 35))
    for sx in (-1, 1):
        n = np.array([sx * np.cos(bow), -np.sin(bow), 0.0])
        hull = Intersect(hull, HalfSpace(n, float(n @ np.array([0, -L / 2, 0])) + B * 0.02))
    wall = max(B * 0.04, 0.04)
    parts = []
    if kind == "rowboat":
        # the cavity: the hull lifted above the deck line and shrunk by the wall thickness
        cavity = Offset(Transform(hull, np.eye(3), (0, 0, 2 * wall)), -wall)
        parts.append(Part("hull", Subtract(hull, cavity), 0))
        for i in range(int(rng.integers(1, 4))):
            y = (i - 1) * L * 0.22
            parts.append(Part("thwart", RoundBox((0, y, D * 0.75), (B / 2 * 0.8, L * 0.04, wall * 0.6), wall * 0.2), 1))
    else:
        parts.append(Part("hull", hull, 0))
        parts.append(Part("deck", Offset(Intersect(hull, HalfSpace((0, 0, -1), -(D - wall))), wall * 0.3), 1))
        ch = D * rng.uniform(0.5, 1.2)
        cl = L * rng.uniform(0.2, 0.4)
        cy = L * rng.uniform(-0.05, 0.15)
        parts.append(Part("cabin", RoundBox((0, cy, D + ch / 2), (B / 2 * 0.6, cl / 2, ch / 2), ch * 0.2), 1))
    if kind == "sailboat":
        mh = L * rng.uniform(0.8, 1.4)
        my = -L * 0.1
        parts.append(Part("mast", Capsule((0, my, D), (0, my, D + mh), max(L * 0.008, 0.05)), 1))
        sail = Intersect(
            RoundBox((0, my + L * 0.18, D + mh * 0.55), (max(wall * 0.5, 0.007 * L), L * 0.18, mh * 0.42), 0.01),
            HalfSpace(
                (0, np.cos(0.3) * mh * 0.84, np.sin(0.3) * L * 0.36),
                float(np.dot((0, np.cos(0.3) * mh * 0.84, np.sin(0.3) * L * 0.36), (0, my, D + mh * 0.97))),
            ),
        )
        parts.append(Part("sail", sail, 2))
    elif kind == "motorboat":
        parts.append(Part("motor", RoundBox((0, L / 2, D * 0.8), (B * 0.08, B * 0.08, D * 0.5), B * 0.03), 1))
    params = dict(kind=kind, length=L, beam=B, depth=D, bow_angle_deg=np.rad2deg(bow))
    return ShapeSpec(parts, [hull_m, deck_m, sail_m], params)
