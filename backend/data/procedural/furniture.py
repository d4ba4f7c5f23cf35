"""Furniture builders: chair, table, stool, bench, sofa, bed, bookshelf, cabinet, lamp.

Construction units are roughly metres; Z-up, the front (where a person sits or opens doors)
faces -Y. Every builder takes a numpy Generator and returns a ShapeSpec.
"""

from __future__ import annotations

import numpy as np

from .materials import material
from .sdf import (
    Capsule,
    Cylinder,
    Elongate,
    Lathe,
    RoundBox,
    RoundCone,
    Shell,
    Torus,
    Transform,
    Union,
    Intersect,
    HalfSpace,
    lathe_profile,
    rotated,
    rotation,
)
from .shape import Part, ShapeSpec

U = np.random.Generator


def _legs(hx: float, hy: float, top: float, style: str, thick: float, splay: float = 0.0):
    """Four legs under a rectangle of half size (hx, hy) whose underside is at height ``top``."""
    legs = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            a = np.array([sx * hx, sy * hy, top])
            b = np.array([sx * (hx + splay), sy * (hy + splay), 0.0])
            if style == "square":
                c = 0.5 * (a + b)
                legs.append(
                    RoundBox(c, (thick, thick, 0.5 * top), 0.15 * thick)
                    if splay == 0
                    else RoundCone(a, b + [0, 0, thick * 0.5], thick, thick * 0.8)
                )
            elif style == "tapered":
                legs.append(RoundCone(a, b + [0, 0, thick * 0.4], thick, thick * 0.45))
            else:
                legs.append(RoundCone(a, b + [0, 0, thick], thick, thick))
    return legs


def _pedestal(top: float, r_col: float, r_base: float, feet: int):
    """Central column with a disk base (feet == 0) or star feet."""
    parts = [Cylinder((0, 0, 0.5 * top), r_col, 0.5 * top)]
    if feet == 0:
        parts.append(Cylinder((0, 0, 0.02), r_base, 0.02, 0.01))
    else:
        for i in range(feet):
            ang = 2 * np.pi * i / feet + np.pi / 2
            end = np.array([np.cos(ang) * r_base, np.sin(ang) * r_base, 0.03])
            parts.append(Capsule((0, 0, 0.06), end, 0.025))
    return parts


def chair(rng: U) -> ShapeSpec:
    w, d = rng.uniform(0.38, 0.6), rng.uniform(0.36, 0.55)
    h, t = rng.uniform(0.38, 0.52), rng.uniform(0.025, 0.08)
    round_seat = rng.random() < 0.2
    leg_style = rng.choice(["round", "square", "tapered", "pedestal"], p=[0.3, 0.3, 0.25, 0.15])
    back_style = rng.choice(["panel", "slats", "rails", "none_low"], p=[0.4, 0.3, 0.25, 0.05])
    back_h = rng.uniform(0.25, 0.6) if back_style != "none_low" else rng.uniform(0.08, 0.15)
    tilt = np.deg2rad(rng.uniform(0, 16))
    arms = rng.random() < 0.3
    frame = material(rng, rng.choice(["wood", "metal", "paint"]))
    seat_m = material(rng, rng.choice(["fabric", "wood", "plastic"]))
    mats = [frame, seat_m]
    parts: list[Part] = []
    if round_seat:
        seat = Cylinder((0, 0, h - t / 2), 0.5 * min(w, d) * 1.1, t / 2, t * rng.uniform(0.1, 0.5))
    else:
        seat = RoundBox((0, 0, h - t / 2), (w / 2, d / 2, t / 2), t * rng.uniform(0.05, 0.5))
    parts.append(Part("seat", seat, 1))
    lt = rng.uniform(0.015, 0.035)
    splay, stretchers = 0.0, False
    if leg_style == "pedestal":
        for i, leg in enumerate(
            _pedestal(h - t, rng.uniform(0.025, 0.05), rng.uniform(0.2, 0.3), int(rng.choice([0, 4, 5])))
        ):
            parts.append(Part(f"base{i}", leg, 0))
    else:
        inset = rng.uniform(0.02, 0.06)
        splay = rng.uniform(0, 0.05) if rng.random() < 0.4 else 0.0
        for i, leg in enumerate(_legs(w / 2 - inset, d / 2 - inset, h - t, leg_style, lt, splay)):
            parts.append(Part(f"leg{i}", leg, 0))
        stretchers = rng.random() < 0.4
        if stretchers:
            zr = rng.uniform(0.08, 0.2)
            for sx in (-1, 1):
                parts.append(
                    Part(
                        "stretcher",
                        RoundBox((sx * (w / 2 - inset), 0, zr), (lt * 0.6, d / 2 - inset, lt * 0.6), lt * 0.3),
                        0,
                    )
                )
    # back: built upright at the rear edge, then tilted about the rear seat edge
    y0 = d / 2 - 0.02
    bt = rng.uniform(0.015, 0.04)
    back = []
    post_r = rng.uniform(0.012, 0.025)
    if back_style == "panel" or back_style == "none_low":
        back.append(
            RoundBox(
                (0, y0, h + back_h / 2), (w / 2 * rng.uniform(0.85, 1.0), bt, back_h / 2), bt * rng.uniform(0.2, 1.0)
            )
        )
    else:
        for sx in (-1, 1):
            back.append(
                RoundBox((sx * (w / 2 - post_r), y0, h + back_h / 2), (post_r, post_r, back_h / 2), post_r * 0.4)
            )
        back.append(RoundBox((0, y0, h + back_h - 0.03), (w / 2, bt, 0.03), 0.01))
        n = int(rng.integers(2, 7))
        for i in range(n):
            if back_style == "slats":
                x = (i + 0.5) / n * (w - 4 * post_r) - (w / 2 - 2 * post_r)
                back.append(
                    RoundBox(
                        (x, y0, h + back_h / 2), (0.5 * (w - 4 * post_r) / n * 0.45, bt * 0.7, back_h / 2 - 0.02), 0.004
                    )
                )
            else:
                z = h + 0.05 + (i + 0.5) / n * (back_h - 0.1)
                back.append(RoundBox((0, y0, z), (w / 2 - post_r, bt * 0.7, 0.012), 0.005))
    R = rotation("x", -tilt)
    for i, b in enumerate(back):
        parts.append(Part(f"back{i}", rotated(b, R, (0, y0, h)), 1 if back_style == "panel" and i == 0 else 0))
    if arms:
        az = h + rng.uniform(0.15, 0.25)
        for sx in (-1, 1):
            x = sx * (w / 2 + 0.02)
            parts.append(Part("armrest", RoundBox((x, 0.02, az), (0.03, d / 2 * 0.9, 0.015), 0.01), 0))
            parts.append(Part("armpost", Capsule((x, -d / 2 + 0.08, h), (x, -d / 2 + 0.08, az), 0.015), 0))
    params = dict(
        width=w,
        depth=d,
        seat_height=h,
        seat_thickness=t,
        round_seat=round_seat,
        leg_style=str(leg_style),
        back_style=str(back_style),
        back_height=back_h,
        back_tilt_deg=np.rad2deg(tilt),
        arms=arms,
        leg_splay=splay,
        stretchers=stretchers,
    )
    return ShapeSpec(parts, mats, params)


def table(rng: U) -> ShapeSpec:
    shape = rng.choice(["rect", "round", "oval"], p=[0.5, 0.3, 0.2])
    h = rng.uniform(0.4, 0.8)
    w = rng.uniform(0.6, 1.8)
    d = w * rng.uniform(0.45, 1.0) if shape != "round" else w
    t = rng.uniform(0.02, 0.06)
    top_m, leg_m = material(rng, "wood"), material(rng, rng.choice(["wood", "metal", "paint"]))
    parts = []
    if shape == "rect":
        top = RoundBox((0, 0, h - t / 2), (w / 2, d / 2, t / 2), t * rng.uniform(0.1, 0.5))
    elif shape == "round":
        top = Cylinder((0, 0, h - t / 2), w / 2, t / 2, t * 0.3)
    else:
        top = Transform(
            Elongate(Cylinder((0, 0, 0), d / 2, t / 2, t * 0.3), (w / 2 - d / 2, 0, 0)), translate=(0, 0, h - t / 2)
        )
    parts.append(Part("top", top, 0))
    support = rng.choice(["legs", "pedestal", "trestle"], p=[0.6, 0.25, 0.15])
    lt = rng.uniform(0.02, 0.05)
    leg_style, splay, lower_shelf = None, 0.0, False
    if support == "legs":
        inset = rng.uniform(0.04, 0.15) * (0.7 if shape == "rect" else 0.5)
        hx, hy = w / 2 - inset - lt, d / 2 - inset - lt
        if shape != "rect":
            hx, hy = hx * 0.7, hy * 0.7
        splay = rng.uniform(0, 0.06) if rng.random() < 0.3 else 0.0
        leg_style = str(rng.choice(["round", "square", "tapered"]))
        for i, leg in enumerate(_legs(hx, hy, h - t, leg_style, lt, splay)):
            parts.append(Part(f"leg{i}", leg, 1))
        if rng.random() < 0.5 and shape == "rect":
            ah = rng.uniform(0.04, 0.1)
            parts.append(
                Part("apron", Shell(RoundBox((0, 0, h - t - ah / 2), (hx, hy, ah / 2)), max(0.01, 0.007 * w)), 1)
            )
        lower_shelf = rng.random() < 0.25
        if lower_shelf:
            parts.append(Part("shelf", RoundBox((0, 0, rng.uniform(0.1, 0.25)), (hx, hy, 0.012), 0.005), 0))
    elif support == "pedestal":
        for i, p in enumerate(
            _pedestal(h - t, rng.uniform(0.04, 0.08), min(w, d) * rng.uniform(0.25, 0.4), int(rng.choice([0, 3, 4])))
        ):
            parts.append(Part(f"pedestal{i}", p, 1))
    else:
        for sx in (-1, 1):
            x = sx * (w / 2 - rng.uniform(0.08, 0.2))
            parts.append(Part("trestle", RoundBox((x, 0, (h - t) / 2), (0.03, d / 2 * 0.8, (h - t) / 2), 0.01), 1))
        parts.append(Part("beam", RoundBox((0, 0, 0.25 * h), (w / 2 - 0.15, 0.025, 0.03), 0.01), 1))
    params = dict(
        top_shape=str(shape),
        height=h,
        width=w,
        depth=d,
        thickness=t,
        support=str(support),
        leg_style=leg_style,
        leg_splay=splay,
        lower_shelf=lower_shelf,
    )
    return ShapeSpec(parts, [top_m, leg_m], params)


def stool(rng: U) -> ShapeSpec:
    h = rng.uniform(0.35, 0.8)
    r = rng.uniform(0.14, 0.22)
    t = rng.uniform(0.03, 0.07)
    square = rng.random() < 0.3
    n_legs = int(rng.choice([3, 4])) if not square else 4
    seat_m, leg_m = (
        material(rng, rng.choice(["wood", "fabric", "plastic"])),
        material(rng, rng.choice(["wood", "metal"])),
    )
    parts = [
        Part(
            "seat",
            RoundBox((0, 0, h - t / 2), (r, r, t / 2), t * 0.4)
            if square
            else Cylinder((0, 0, h - t / 2), r, t / 2, t * rng.uniform(0.1, 0.5)),
            0,
        )
    ]
    pedestal = rng.random() < 0.2
    lt = rng.uniform(0.015, 0.03)
    splay, footrest = 0.0, False
    if pedestal:
        for i, p in enumerate(_pedestal(h - t, rng.uniform(0.025, 0.05), r * rng.uniform(0.9, 1.3), 0)):
            parts.append(Part(f"pedestal{i}", p, 1))
    else:
        splay = rng.uniform(0.0, 0.08)
        for i in range(n_legs):
            ang = 2 * np.pi * i / n_legs + (np.pi / 4 if square else np.pi / 2)
            dirv = np.array([np.cos(ang), np.sin(ang), 0])
            a = dirv * r * 0.75 + [0, 0, h - t]
            b = dirv * (r * 0.75 + splay) + [0, 0, lt]
            parts.append(Part(f"leg{i}", RoundCone(a, b, lt, lt * rng.uniform(0.6, 1.0)), 1))
        footrest = rng.random() < 0.5
        if footrest:
            zr = rng.uniform(0.25, 0.45) * h
            rr = r * 0.75 + splay * (1 - zr / (h - t))
            parts.append(Part("footrest", Torus((0, 0, zr), rr, lt * 0.7), 1))
    params = dict(
        height=h,
        radius=r,
        thickness=t,
        square=square,
        legs=n_legs,
        pedestal=pedestal,
        leg_splay=splay,
        footrest=footrest,
    )
    return ShapeSpec(parts, [seat_m, leg_m], params)


def bench(rng: U) -> ShapeSpec:
    L, d, h = rng.uniform(0.9, 2.0), rng.uniform(0.28, 0.5), rng.uniform(0.38, 0.5)
    slatted = rng.random() < 0.4
    seat_m, leg_m = material(rng, "wood"), material(rng, rng.choice(["wood", "metal", "paint"]))
    parts = []
    t = rng.uniform(0.03, 0.07)
    if slatted:
        n = int(rng.integers(3, 7))
        gap = 0.012
        sw = (d - gap * (n - 1)) / n
        for i in range(n):
            y = -d / 2 + sw / 2 + i * (sw + gap)
            parts.append(Part(f"slat{i}", RoundBox((0, y, h - t / 2), (L / 2, sw / 2, t / 2), 0.008), 0))
    else:
        parts.append(Part("seat", RoundBox((0, 0, h - t / 2), (L / 2, d / 2, t / 2), t * rng.uniform(0.1, 0.5)), 0))
    side_panels = rng.random() < 0.5
    if side_panels:
        for sx in (-1, 1):
            x = sx * (L / 2 - rng.uniform(0.05, 0.2))
            parts.append(Part("panel", RoundBox((x, 0, (h - t) / 2), (0.025, d / 2 * 0.9, (h - t) / 2), 0.01), 1))
    else:
        n_pairs = 2 if L < 1.5 else 3
        lt = rng.uniform(0.02, 0.04)
        for i in range(n_pairs):
            x = (i / (n_pairs - 1) - 0.5) * (L - 0.15)
            for sy in (-1, 1):
                parts.append(
                    Part("leg", RoundBox((x, sy * (d / 2 - 0.05), (h - t) / 2), (lt, lt, (h - t) / 2), lt * 0.3), 1)
                )
    back = rng.random() < 0.45
    if back:
        bh = rng.uniform(0.25, 0.45)
        for i in range(int(rng.integers(1, 4))):
            z = h + 0.08 + i * 0.1
            if z > h + bh:
                break
            parts.append(Part("backrail", RoundBox((0, d / 2 - 0.02, z), (L / 2, 0.015, 0.04), 0.01), 0))
        for sx in (-1, 1):
            parts.append(
                Part(
                    "backpost",
                    RoundBox(
                        (sx * (L / 2 - 0.06), d / 2 - 0.02, h + bh / 2 - 0.02), (0.025, 0.025, bh / 2 + 0.02), 0.008
                    ),
                    1,
                )
            )
    params = dict(length=L, depth=d, height=h, slatted=slatted, backrest=back, side_panels=side_panels)
    return ShapeSpec(parts, [seat_m, leg_m], params)


def sofa(rng: U) -> ShapeSpec:
    n_seats = int(rng.integers(1, 5))
    seat_w = rng.uniform(0.5, 0.7)
    arm_w = rng.uniform(0.0, 0.22) if rng.random() < 0.85 else 0.0
    W = n_seats * seat_w + 2 * arm_w
    D = rng.uniform(0.7, 1.0)
    base_h = rng.uniform(0.12, 0.3)
    leg_h = rng.uniform(0.0, 0.15)
    cush_t = rng.uniform(0.1, 0.2)
    back_h = rng.uniform(0.3, 0.55)
    back_t = rng.uniform(0.12, 0.25)
    soft = rng.uniform(0.02, 0.06)
    fab, leg_m = material(rng, "fabric"), material(rng, rng.choice(["wood", "metal", "dark"]))
    parts = []
    z0 = leg_h
    parts.append(Part("base", RoundBox((0, 0, z0 + base_h / 2), (W / 2, D / 2, base_h / 2), soft), 0))
    inner = W / 2 - arm_w
    sw = 2 * inner / n_seats
    for i in range(n_seats):
        x = -inner + sw * (i + 0.5)
        parts.append(
            Part(
                f"cushion{i}",
                RoundBox(
                    (x, -back_t / 2, z0 + base_h + cush_t / 2 - 0.01),
                    (sw / 2 - 0.005, (D - back_t) / 2, cush_t / 2),
                    soft * 1.5,
                ),
                0,
            )
        )
    parts.append(
        Part(
            "back",
            RoundBox(
                (0, D / 2 - back_t / 2, z0 + base_h + back_h / 2), (W / 2, back_t / 2, back_h / 2 + 0.02), soft * 1.5
            ),
            0,
        )
    )
    if arm_w > 0.03:
        arm_h = rng.uniform(0.12, 0.35)
        for sx in (-1, 1):
            parts.append(
                Part(
                    "arm",
                    RoundBox(
                        (sx * (W / 2 - arm_w / 2), 0, z0 + base_h + arm_h / 2 - 0.02),
                        (arm_w / 2, D / 2, arm_h / 2 + 0.02),
                        min(soft * 2, arm_w / 2),
                    ),
                    0,
                )
            )
    chaise = rng.random() < 0.2 and n_seats >= 2
    if chaise:
        cl = rng.uniform(0.5, 0.8)
        x = -inner + sw / 2
        parts.append(
            Part(
                "chaise",
                RoundBox(
                    (x, -D / 2 - cl / 2 + 0.05, z0 + (base_h + cush_t) / 2),
                    (sw / 2, cl / 2, (base_h + cush_t) / 2),
                    soft * 1.5,
                ),
                0,
            )
        )
    if leg_h > 0.03:
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(
                    Part(
                        "leg",
                        RoundCone(
                            (sx * (W / 2 - 0.06), sy * (D / 2 - 0.06), leg_h),
                            (sx * (W / 2 - 0.05), sy * (D / 2 - 0.05), 0.015),
                            0.025,
                            0.015,
                        ),
                        1,
                    )
                )
    params = dict(seats=n_seats, width=W, depth=D, arm_width=arm_w, back_height=back_h, leg_height=leg_h, chaise=chaise)
    return ShapeSpec(parts, [fab, leg_m], params)


def bed(rng: U) -> ShapeSpec:
    W = rng.uniform(0.9, 1.9)
    L = rng.uniform(1.9, 2.2)
    frame_h = rng.uniform(0.15, 0.4)
    mat_t = rng.uniform(0.15, 0.28)
    wood, sheet, pillow_m = (
        material(rng, rng.choice(["wood", "paint", "fabric"])),
        material(rng, "fabric"),
        material(rng, "cream"),
    )
    parts = [
        Part("frame", RoundBox((0, 0, frame_h / 2 + 0.05), (W / 2, L / 2, frame_h / 2), 0.02), 0),
        Part(
            "mattress",
            RoundBox(
                (0, 0.02, frame_h + 0.05 + mat_t / 2 - 0.02), (W / 2 - 0.03, L / 2 - 0.05, mat_t / 2), mat_t * 0.25
            ),
            1,
        ),
    ]
    top = frame_h + 0.05 + mat_t - 0.02
    head_h = rng.uniform(0.4, 1.1)
    head_style = rng.choice(["panel", "round", "posts"])
    hy = L / 2 + 0.03
    if head_style == "panel":
        parts.append(Part("headboard", RoundBox((0, hy, head_h / 2), (W / 2 + 0.03, 0.04, head_h / 2), 0.02), 0))
    elif head_style == "round":
        r = W / 2 + 0.03
        disk = Transform(Cylinder((0, 0, 0), r, 0.04, 0.02), rotation("x", np.pi / 2), (0, hy, head_h - r))
        low = RoundBox((0, hy, (head_h - r) / 2), (r, 0.04, (head_h - r) / 2), 0.02)
        # the disk may reach below the floor on low, wide beds: cut it at z = 0
        parts.append(Part("headboard", Intersect(Union([disk, low]), HalfSpace((0, 0, -1), 0.0)), 0))
    else:
        for sx in (-1, 1):
            parts.append(Part("post", Cylinder((sx * (W / 2 + 0.02), hy, head_h / 2), 0.04, head_h / 2, 0.02), 0))
        for i in range(int(rng.integers(2, 4))):
            z = top + (i + 1) * (head_h - top) / 4
            parts.append(
                Part("rail", Transform(Cylinder((0, 0, 0), 0.02, W / 2, 0.01), rotation("y", np.pi / 2), (0, hy, z)), 0)
            )
    footboard = rng.random() < 0.5
    if footboard:
        fh = rng.uniform(frame_h + 0.1, top + 0.25)
        parts.append(Part("footboard", RoundBox((0, -L / 2 - 0.03, fh / 2), (W / 2 + 0.03, 0.035, fh / 2), 0.02), 0))
    n_p = 1 if W < 1.2 else int(rng.integers(1, 3))
    for i in range(n_p):
        x = 0 if n_p == 1 else (i - 0.5) * W / 2
        pw = (W - 0.15) / n_p / 2
        parts.append(Part("pillow", RoundBox((x, L / 2 - 0.28, top + 0.05), (pw - 0.03, 0.18, 0.06), 0.055), 2))
    blanket = rng.random() < 0.6
    if blanket:
        cover = rng.uniform(0.4, 0.75) * L
        parts.append(
            Part("blanket", RoundBox((0, -L / 2 + cover / 2, top - 0.02), (W / 2 - 0.01, cover / 2, 0.045), 0.03), 1)
        )
    params = dict(
        width=W,
        length=L,
        frame_height=frame_h,
        mattress=mat_t,
        headboard=str(head_style),
        headboard_height=head_h,
        pillows=n_p,
        footboard=footboard,
        blanket=blanket,
    )
    return ShapeSpec(parts, [wood, sheet, pillow_m], params)


def bookshelf(rng: U) -> ShapeSpec:
    W, D, H = rng.uniform(0.5, 1.6), rng.uniform(0.22, 0.4), rng.uniform(0.6, 2.0)
    t = rng.uniform(0.015, 0.035)
    n_shelves = max(1, int(round(H / rng.uniform(0.25, 0.4))))
    wood = material(rng, rng.choice(["wood", "paint"]))
    book_mats = [material(rng, "paint") for _ in range(3)]
    parts = []
    for sx in (-1, 1):
        parts.append(Part("side", RoundBox((sx * (W / 2 - t / 2), 0, H / 2), (t / 2, D / 2, H / 2), 0.003), 0))
    back = rng.random() < 0.7
    if back:
        bt = 0.006 * max(H, W)
        parts.append(Part("back", RoundBox((0, D / 2 - bt, H / 2), (W / 2, bt, H / 2), 0.002), 0))
    plinth = rng.uniform(0.0, 0.08)
    levels = np.linspace(plinth + t / 2, H - t / 2, n_shelves + 1)
    for i, z in enumerate(levels):
        parts.append(Part(f"shelf{i}", RoundBox((0, 0, z), (W / 2, D / 2, t / 2), 0.003), 0))
    fill = rng.uniform(0.0, 0.9)
    for i, (z0, z1) in enumerate(zip(levels[:-1], levels[1:])):
        gap = z1 - z0 - t
        x = -W / 2 + t + 0.01
        books = []
        while x < W / 2 - t - 0.04 and rng.random() < 0.5 + fill * 0.5:
            bw = rng.uniform(0.015, 0.05)
            bh = min(gap - 0.01, rng.uniform(0.6, 0.95) * gap)
            bd = rng.uniform(0.6, 0.95) * (D - 0.02)
            books.append(
                RoundBox((x + bw / 2, D / 2 - 0.01 - bd / 2, z0 + t / 2 + bh / 2), (bw / 2, bd / 2, bh / 2), 0.003)
            )
            x += bw + rng.uniform(0.0, 0.01)
            if rng.random() < 0.08:
                x += rng.uniform(0.05, 0.2)
        if books:
            parts.append(Part(f"books{i}", Union(books), 1 + int(rng.integers(0, 3))))
    params = dict(width=W, depth=D, height=H, shelves=n_shelves, back_panel=back, fill=fill)
    return ShapeSpec(parts, [wood] + book_mats, params)


def cabinet(rng: U) -> ShapeSpec:
    W, D, H = rng.uniform(0.4, 1.4), rng.uniform(0.3, 0.6), rng.uniform(0.4, 1.9)
    foot = rng.choice(["plinth", "legs", "none"])
    fh = rng.uniform(0.04, 0.18) if foot != "none" else 0.0
    body_m, handle_m = material(rng, rng.choice(["wood", "paint"])), material(rng, rng.choice(["metal", "dark"]))
    parts = [Part("body", RoundBox((0, 0, fh + (H - fh) / 2), (W / 2, D / 2, (H - fh) / 2), 0.01), 0)]
    if rng.random() < 0.5:
        parts.append(Part("top", RoundBox((0, -0.01, H + 0.012), (W / 2 + 0.02, D / 2 + 0.02, 0.015), 0.005), 0))
    if foot == "legs":
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(
                    Part(
                        "leg",
                        RoundCone(
                            (sx * (W / 2 - 0.04), sy * (D / 2 - 0.04), fh + 0.01),
                            (sx * (W / 2 - 0.03), sy * (D / 2 - 0.03), 0.01),
                            0.02,
                            0.012,
                        ),
                        1,
                    )
                )
    elif foot == "plinth":
        parts.append(Part("plinth", RoundBox((0, 0.02, fh / 2), (W / 2 - 0.02, D / 2 - 0.03, fh / 2), 0.005), 0))
    # front layout: rows of drawers at the top, doors below; grooves are cut into the front face
    n_drawers = int(rng.integers(0, 5))
    n_doors = int(rng.choice([0, 1, 2])) if n_drawers < 4 else 0
    if n_drawers == 0 and n_doors == 0:
        n_doors = 2
    z_lo, z_hi = fh + 0.02, H - 0.02
    drawer_h = min((z_hi - z_lo) / max(n_drawers, 1), rng.uniform(0.12, 0.25)) if n_drawers else 0.0
    if n_doors == 0:
        drawer_h = (z_hi - z_lo) / n_drawers
    cuts = []
    g = 0.008 * max(W, H)
    yf = -D / 2
    z = z_hi
    knob = rng.choice(["knob", "bar"])
    hr = max(0.008, 0.005 * max(W, H))

    def handle(x, zc, vertical):
        if knob == "knob":
            return Part("handle", Capsule((x, yf, zc), (x, yf - 0.025, zc), 1.5 * hr), 1)
        if vertical:
            return Part("handle", Capsule((x, yf - 0.02, zc - 0.06), (x, yf - 0.02, zc + 0.06), hr), 1)
        return Part("handle", Capsule((x - 0.06, yf - 0.02, zc), (x + 0.06, yf - 0.02, zc), hr), 1)

    for i in range(n_drawers):
        z_top, z_bot = z, z - drawer_h
        cuts.append(RoundBox((0, yf, z_bot), (W / 2 - 0.02, 0.01, g / 2)))
        parts.append(handle(0.0, 0.5 * (z_top + z_bot), False))
        z = z_bot
    if n_doors:
        for sx in (0,) if n_doors == 1 else (-1, 1):
            dx = (W / 2 - 0.02) if n_doors == 1 else (W / 4 - 0.015)
            cx = sx * (W / 4)
            cuts.append(Shell(RoundBox((cx, yf, 0.5 * (z + z_lo)), (dx, 0.02, 0.5 * (z - z_lo) - 0.005)), g / 2))
            hx = cx + (dx - 0.05) * (-sx if sx else 1)
            parts.append(handle(hx, 0.5 * (z + z_lo) + 0.15 * (z - z_lo), True))
    params = dict(width=W, depth=D, height=H, foot=str(foot), drawers=n_drawers, doors=n_doors, handle=str(knob))
    return ShapeSpec(parts, [body_m, handle_m], params, cuts=cuts)


def lamp(rng: U) -> ShapeSpec:
    floor = rng.random() < 0.4
    H = rng.uniform(1.2, 1.8) if floor else rng.uniform(0.3, 0.7)
    base_r = rng.uniform(0.1, 0.2) if floor else rng.uniform(0.06, 0.14)
    base_style = rng.choice(["disk", "square", "dome"])
    base_m, shade_m = (
        material(rng, rng.choice(["metal", "ceramic", "wood", "dark"])),
        material(rng, rng.choice(["fabric", "cream", "paint"])),
    )
    parts = []
    bh = rng.uniform(0.02, 0.06) * (1.5 if not floor else 1)
    if base_style == "disk":
        parts.append(Part("base", Cylinder((0, 0, bh / 2), base_r, bh / 2, bh * 0.4), 0))
    elif base_style == "square":
        parts.append(Part("base", RoundBox((0, 0, bh / 2), (base_r * 0.85, base_r * 0.85, bh / 2), bh * 0.3), 0))
    else:
        parts.append(
            Part(
                "base",
                Lathe(
                    lathe_profile(
                        lambda z: base_r * np.sqrt(np.clip(1 - (z / (base_r * 0.6)) ** 2, 0, 1)) + 0.01,
                        0.0,
                        base_r * 0.6,
                        24,
                    )
                ),
                0,
            )
        )
    shade_h = rng.uniform(0.15, 0.3) * (1.3 if floor else 1.0) * (H / 1.0 if not floor else 1.0) + 0.05
    r_top = rng.uniform(0.05, 0.15) * (1.5 if floor else 1.0)
    r_bot = r_top * rng.uniform(1.0, 2.0)
    arm = rng.random() < 0.35
    stem_r = max(rng.uniform(0.008, 0.02), 0.008 * H)
    if arm:
        elbow = np.array([0.0, rng.uniform(-0.1, 0.1), H * rng.uniform(0.45, 0.7)])
        head = np.array([0.0, -rng.uniform(0.15, 0.4) * H, H])
        parts.append(Part("stem", Capsule((0, 0, bh), elbow, stem_r), 0))
        parts.append(Part("arm", Capsule(elbow, head, stem_r), 0))
        tilt = rotation("x", rng.uniform(0.3, 0.9))
        shade_top = head
    else:
        shade_top = np.array([0.0, 0.0, H])
        parts.append(Part("stem", Capsule((0, 0, bh), (0, 0, H - shade_h * 0.3), stem_r), 0))
        tilt = np.eye(3)
    style = rng.choice(["cone", "dome", "drum"])
    if style == "dome":
        prof = lathe_profile(lambda z: r_bot * np.sqrt(np.clip(1 - (z / shade_h) ** 2, 0, 1)) + 0.01, 0.0, shade_h, 30)
    elif style == "drum":
        prof = lathe_profile(lambda z: np.full_like(z, r_bot), 0.0, shade_h, 8)
    else:
        prof = lathe_profile(lambda z: r_bot + (r_top - r_bot) * z / shade_h, 0.0, shade_h, 8)
    # open at the bottom (and the top for cones/drums): a shell of the solid, sliced
    wall = max(0.006, 0.009 * H)  # half thickness: stays >= ~2 voxels of a 128^3 mesh
    shell = Shell(Lathe(prof), wall)
    shade = Intersect(shell, HalfSpace((0, 0, -1), -1.5 * wall))
    if style != "dome":
        shade = Intersect(shade, HalfSpace((0, 0, 1), shade_h - 1.5 * wall))
    parts.append(Part("shade", Transform(shade, tilt, shade_top - tilt @ np.array([0, 0, shade_h * 0.85])), 1))
    parts.append(
        Part(
            "bulb",
            Transform(Cylinder((0, 0, 0), stem_r * 2.5, 0.03, 0.01), tilt, shade_top - tilt @ [0, 0, shade_h * 0.4]),
            0,
        )
    )
    params = dict(floor=floor, height=H, base=str(base_style), shade=str(style), arm=arm, shade_height=shade_h)
    return ShapeSpec(parts, [base_m, shade_m], params)
