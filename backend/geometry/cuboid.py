"""Boxes from one photo's outline.

A box seen from a general direction shows three of its faces, and its outline is a hexagon whose
opposite sides are parallel and equal: the projections ``a``, ``b``, ``c`` of its three edge
directions, each twice. Seen from a distant camera, three mutually orthogonal edges whose
projections are known have depths fixed up to one common sign (the Necker cube's two readings,
mirror images in depth): ``a·b + za zb = 0`` for each pair. So the outline alone determines the
whole box, hidden faces included; crates, books, bricks, cabinets and cartons are boxes. A photo
is taken from nearby, so each reading is then refitted through a near camera, whose perspective
the converging sides measure. A near camera can also make the outline a hexagon whose opposite
sides are not the same edges (seen nearly square-on to a face, or with a long side running away
from the lens), where the readings start far off: upright boxes turned and tipped every few
degrees are refitted as well.

Where the three visible faces meet, the photo shows creases: from the corner nearest the camera
to three corners of the hexagon. They tell the box from other hexagonal outlines (a hexagonal
prism end-on, a cushion) and pick the reading the photo shows.

Seen nearly level with its top, a box's outline has five corners, the near edge's foot dropped
below the others by the ground's perspective, and one crease up that edge (`_level_box`); seen
square-on to a face and level, a rectangle whose face the photo shows flat, its depth guessed
(`_front_box`); seen so with studs, a knob or a chimney standing on its top, that rectangle and
the parts above it (`_front_box_with_parts`). A can's outline is nearly a box's in all three, and
a label's edge passes for a crease: what tells them apart is said at each.

Masks are square crops [S,S], rows running down the image; solids are inside-positive fields in
the crop's frame (x = image right, y = depth away from the camera, z = image up; the crop spans
[-0.5,0.5] in x and z), the frame of `backend.pipelines.reconstruct.silhouette`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from backend.geometry.fidelity import mask_iou
from backend.geometry.outline import TUNED_CROP, edge_step, mirror_axis, outline_points

MIN_SOLIDITY = 0.95
"""Least share of its convex hull the outline must fill (a box's outline is convex)."""

MIN_HEXAGON_IOU = 0.95
"""Least IoU of the outline with the fitted hexagon."""

MAX_STRAIGHTNESS = 1.2 / TUNED_CROP
"""Largest root-mean-square distance of the outline from the hexagon's sides, as a share of the
crop's side: a box's outline is six straight edges (real split: the lemons 2.0-2.3 %, the teapot
2.2 %, the asteroid 1.2 %; the cans seen from above pass, at 0.5-0.9 %)."""

MAX_SIDE_ANGLE = 40.0
"""Largest angle (degrees) between a side of the hexagon and the side opposite it: a near camera's
perspective makes a box's far edges converge (a brick seen from 40° above through a 36° field of
view: 14-23°; a box through a 34° one: up to 35°). The box is fitted through a near camera; this
only bounds the distant camera's box it starts from."""

MIN_SIDE_RATIO = 0.4
"""Least length ratio of opposite sides (perspective again)."""

MIN_SIDE = 0.08
"""Least side of the hexagon, as a share of its longest: a box seen square-on to a face, or level
with its top, shows a rectangle, whose depth the outline does not say."""

MIN_CREASE_CONTRAST = 0.02
"""Least colour step (RGB 0..1, the median along its length) on each of the three creases where
the visible faces meet (boxes rendered under one sun: 0.034-0.19 on their generic views; a green
box whose two sides are nearly one shade, and a procedural cabinet: 0.024-0.025. What else fits a
box's corners on the real, mining and held-in photos steps by 0.001 (a mug seen level); the real
split's cans, whose outline is nearly a hexagon, step by 0.033, but their corners fit no box)."""

MIN_CREASE_RATIO = 1.5
"""The creases of the chosen reading must be this many times as strong as the other reading's,
which runs across the faces' middles."""


@dataclass(frozen=True)
class Cuboid:
    centre: np.ndarray
    """(x, y, z) in the crop's frame; the box's centre is on the plane y = 0."""
    axes: np.ndarray
    """[3, 3] the three edge vectors (full lengths) as rows, in the crop's frame."""
    outline_iou: float
    """IoU of the fitted polygon (a general view's hexagon, a level view's silhouette) with the
    outline."""
    crease_contrast: float
    """The weakest of the three creases' colour steps."""
    other_contrast: float
    """The weakest step along the other reading's three lines (0 when it could not be fitted)."""
    elevation: float
    """Degrees by which the camera looks down on the box's top face (the edge nearest the image's
    vertical is the box's up)."""
    perspective: float
    """The crop's side over the fitted camera's distance from the plane of the box's centre (0: a
    distant camera); see `project`."""
    principal: tuple[float, float]
    """Where that camera's axis meets the crop (x, z crop sides); see `project`."""
    corner_error: float
    """Root-mean-square distance of the fitted box's silhouette corners from the outline's, in
    crop sides."""
    depth_seen: bool = True
    """False for a box seen square-on to one face, whose depth the photo does not show: it is
    guessed (`_front_box`)."""
    parts: np.ndarray | None = None
    """bool [S,S]: the outline's pieces standing on the top of a box seen square-on (a brick's
    studs, a lid's knob; `_box_parts`), to be built on their own; None when the outline is the
    box's alone."""

    @property
    def units(self) -> np.ndarray:
        """[3, 3] the edge directions, unit rows."""
        return self.axes / np.linalg.norm(self.axes, axis=1)[:, None]

    @property
    def half(self) -> np.ndarray:
        """[3] half the length of each edge."""
        return np.linalg.norm(self.axes, axis=1) / 2


def _convex_outline(binary: np.ndarray) -> tuple[np.ndarray, float]:
    """The outline's convex hull as (column, row) corners in order, and the outline's solidity."""
    from scipy.spatial import ConvexHull

    rows, cols = np.nonzero(binary)
    corners = np.concatenate([np.stack([cols + dx, rows + dy], 1) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)])
    hull = ConvexHull(corners)
    return corners[hull.vertices], float(binary.sum() / hull.volume)


def _reduce_polygon(points: np.ndarray, count: int) -> np.ndarray:
    """The closed polygon ``points`` [N, 2] with its least significant corners dropped (the one
    whose triangle with its neighbours is smallest, one at a time) until ``count`` are left."""
    keep = list(range(len(points)))
    while len(keep) > count:
        p = points[keep]
        prev, nxt = np.roll(p, 1, 0), np.roll(p, -1, 0)
        areas = np.abs(np.cross(p - prev, nxt - prev)) / 2
        del keep[int(np.argmin(areas))]
    return points[keep]


def _side_distances(polygon: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[K, M] distance of each of ``points`` [M, 2] from each side of the closed ``polygon`` [K, 2]."""
    distances = []
    for start, end in zip(polygon, np.roll(polygon, -1, 0)):
        t = np.clip(((points - start) @ (end - start)) / max((end - start) @ (end - start), 1e-9), 0, 1)
        distances.append(np.linalg.norm(points - (start + t[:, None] * (end - start)), axis=1))
    return np.stack(distances)


def _refine_sides(polygon: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """The polygon's corners moved to the intersections of straight lines fitted to the stretch
    of ``outline`` (dense points [M, 2]) nearest to each side."""
    nearest = np.argmin(_side_distances(polygon, outline), axis=0)
    lines = []
    for k, (start, end) in enumerate(zip(polygon, np.roll(polygon, -1, 0))):
        points = outline[nearest == k]
        # the middle of the side only: its ends bend round the corners, which a near camera and a
        # soft mask round off
        t = ((points - start) @ (end - start)) / max((end - start) @ (end - start), 1e-9)
        points = points[(t > 0.15) & (t < 0.85)]
        if len(points) < 3:
            lines.append((start, (end - start) / max(np.linalg.norm(end - start), 1e-9)))
            continue
        centre = points.mean(0)
        _, _, vt = np.linalg.svd(points - centre)
        lines.append((centre, vt[0]))
    corners = []
    for k in range(len(polygon)):
        (p, u), (q, v) = lines[k - 1], lines[k]
        matrix = np.array([u, -v]).T
        if abs(np.linalg.det(matrix)) < 1e-6:
            return polygon
        t = np.linalg.solve(matrix, q - p)
        corners.append(p + t[0] * u)
    return np.array(corners)


def _to_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """[N, 2] (column, row) pixel positions of a crop of ``size`` -> (x, z) in crop sides from its
    centre."""
    return np.stack([(pixels[:, 0] + 0.5) / size - 0.5, 0.5 - (pixels[:, 1] + 0.5) / size], 1)


def _to_pixels(points: np.ndarray, size: int) -> np.ndarray:
    """The inverse of `_to_crop`."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.stack([(points[:, 0] + 0.5) * size - 0.5, (0.5 - points[:, 1]) * size - 0.5], 1)


def _follows_outline(polygon: np.ndarray, binary: np.ndarray, outline: np.ndarray) -> float | None:
    """The IoU of ``polygon`` (column, row corners) with the outline ``binary``, when the outline
    covers it by `MIN_HEXAGON_IOU` and runs along its sides (`MAX_STRAIGHTNESS`); else None."""
    if _straightness(polygon, outline) > MAX_STRAIGHTNESS * binary.shape[0]:
        return None
    iou = _polygon_iou(polygon, binary)
    return iou if iou >= MIN_HEXAGON_IOU else None


def _polygon_iou(polygon: np.ndarray, binary: np.ndarray) -> float:
    from skimage.draw import polygon as fill

    inside = np.zeros_like(binary, dtype=bool)
    rr, cc = fill(polygon[:, 1], polygon[:, 0], binary.shape)
    inside[rr, cc] = True
    return mask_iou(inside, binary)


def _straightness(polygon: np.ndarray, outline: np.ndarray) -> float:
    """Root-mean-square distance (pixels) of the ``outline`` points [M, 2] from the closed
    ``polygon``'s sides."""
    return float(np.sqrt(np.mean(np.min(_side_distances(polygon, outline), axis=0) ** 2)))


def _line_step(image: np.ndarray, start: np.ndarray, end: np.ndarray, offset: float) -> float:
    """`edge_step` across the segment ``start``..``end`` ((column, row) pixels), over its middle
    (its ends run into the outline and the other creases)."""
    t = np.linspace(0.2, 0.8, 24)
    points = start + t[:, None] * (end - start)
    direction = (end - start) / max(np.linalg.norm(end - start), 1e-9)
    return edge_step(image, points[:, 0], points[:, 1], -direction[1], direction[0], offset)


def fit_cuboid(rgb: np.ndarray, mask: np.ndarray, principal: tuple[float, float] = (0.0, 0.0)) -> Cuboid | None:
    """The box whose outline ``mask`` (soft [S,S], 0..1) is, seen in ``rgb`` ([S,S,3], 0..1), or
    None when the outline is not a box's or its creases do not show. ``principal``: the photo's
    centre in the crop's frame (see `project`)."""
    from scipy import ndimage

    binary = mask >= 0.5
    if binary.sum() < 64:
        return None
    size = mask.shape[0]
    scale = size / TUNED_CROP  # the same creases are read at every crop size
    image = ndimage.gaussian_filter(np.asarray(rgb, dtype=np.float64), (scale, scale, 0.0))
    hull, solidity = _convex_outline(binary)
    if solidity < MIN_SOLIDITY or len(hull) < 4:
        # studs with gaps between them, or a knob, leave the outline no convex polygon
        return _front_box_with_parts(mask, image, principal)
    outline = outline_points(mask)
    mirror = functools.cache(lambda: mirror_axis(binary))  # only for an outline a box was fitted to
    # three faces' creases outweigh one, and one crease a guessed depth
    if len(hull) >= 6:
        box = _fit_hexagon(_refine_sides(_reduce_polygon(hull, 6), outline), binary, outline, image, principal)
        if box is not None and _not_a_can(box, *mirror(), size):
            return box
    if len(hull) >= 5:
        box = _level_box(_refine_sides(_reduce_polygon(hull, 5), outline), mask, outline, image, principal)
        if box is not None and _not_a_can(box, *mirror(), size):
            return box
    box = _front_box(_refine_sides(_reduce_polygon(hull, 4), outline), mask, outline, image, principal)
    return box if box is not None else _front_box_with_parts(mask, image, principal)


MIRROR_IMAGE = 0.98
"""Least IoU of an outline with its mirror image for it to be a can's as much as a box's (the box
split's boxes: 0.63-0.97, but for one seen square-on; cans on the real split and the mining
photos: 0.98-1.0)."""
MAX_AXIS_OFFSET = 2.0 / TUNED_CROP
"""Farthest (crop sides) the nearest corner of a box whose outline is its own mirror image may lie
from the mirror's axis."""
SQUARE_ON = 0.1
"""Largest share of a horizontal edge's length that runs towards the camera for the box to be
seen square-on to a face (about 6°)."""


def _not_a_can(box: Cuboid, axis: float, symmetry: float, size: int) -> bool:
    """Whether ``box`` may be what an outline of a crop of ``size`` shows whose mirror image about
    the column ``axis`` overlaps it by IoU ``symmetry`` (`mirror_axis`). A can's outline is nearly a
    box's, seen level or from above, and a label's edge passes for a crease; but a box whose
    outline is its own mirror image is seen square-on to a face, or corner-on with its nearest
    corner on the mirror's axis, while a can's corners fall anywhere along its rims."""
    if symmetry < MIRROR_IMAGE:
        return True
    units = box.units
    up = int(np.argmax(np.abs(units[:, 2])))
    if min(abs(units[k, 1]) for k in range(3) if k != up) < SQUARE_ON:
        return True
    corners = box_corners(box.axes, box.centre)
    near = project(corners[[int(np.argmin(corners[:, 1]))]], box.perspective, box.principal)[0]
    return abs(_to_pixels(near, size)[0, 0] - axis) <= MAX_AXIS_OFFSET * size


def _fit_hexagon(hexagon: np.ndarray, binary: np.ndarray, outline: np.ndarray, image: np.ndarray,
                 principal: tuple[float, float]) -> Cuboid | None:
    """The box whose silhouette is ``hexagon`` [6, 2] (column, row), if the outline (``binary``,
    and its ``outline`` points) follows it and the (blurred) ``image`` shows its creases."""
    sides = np.roll(hexagon, -1, 0) - hexagon
    lengths = np.linalg.norm(sides, axis=1)
    if lengths.min() < MIN_SIDE * lengths.max():
        return None
    size = binary.shape[0]
    iou = _follows_outline(hexagon, binary, outline)
    if iou is None:
        return None
    corners = _to_crop(hexagon, size)

    # every box that explains the hexagon's corners through a near camera, from the distant
    # camera's two readings and from upright boxes turned and tipped every few degrees; the
    # photo's creases show which is the box, if any
    readings = []  # (crease step, fitted box, where its creases' ends are seen)
    for axes, centre in [*_distant_readings(sides, size, corners), *_oriented_starts(corners, principal)]:
        fitted = _fit_perspective(corners, axes, centre, principal)
        if fitted is not None and fitted[3] <= MAX_CORNER_ERROR:
            ends = _crease_ends(fitted, principal)
            readings.append((_line_steps(image, ends[0], ends[1:], size), fitted, ends))
    if not readings:
        return None
    crease, (axes, centre, perspective, error), ends = max(readings, key=lambda r: r[0])
    # the other reading: another box that explains the outline (the Necker cube's mirror image);
    # where every start came to the same box, the lines its creases would follow instead
    others = [r[0] for r in readings if np.abs(r[2] - ends).max() > SAME_READING]
    other = max(others) if others else _line_steps(image, ends[0], _other_corners(corners, ends[1:]), size)
    if crease < MIN_CREASE_CONTRAST or crease < MIN_CREASE_RATIO * other:
        return None
    up = axes[int(np.argmax(np.abs(axes[:, 2]) / np.linalg.norm(axes, axis=1)))]
    up = up if up[2] > 0 else -up
    elevation = float(np.degrees(np.arcsin(np.clip(-up[1] / np.linalg.norm(up), -1, 1))))
    return Cuboid(centre=centre, axes=axes, outline_iou=iou, crease_contrast=crease,
                  other_contrast=other, elevation=elevation, perspective=perspective,
                  principal=(float(principal[0]), float(principal[1])), corner_error=error)


SIGNS = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype=np.float64)
"""The box's eight corners, as signs along its three axes."""


def _distant_readings(sides: np.ndarray, size: int, corners: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The box in the hexagon's two readings for a distant camera (edge vectors [3, 3] and centre
    (x, z)), when its opposite ``sides`` [6, 2] (pixels) are the same edges seen twice, as a
    distant camera sees them; else none. Three orthogonal edges whose projections ``a``, ``b``,
    ``c`` are known have depths fixed up to one sign: ``a·b + za zb = 0`` for each pair."""
    lengths = np.linalg.norm(sides, axis=1)
    for k in range(3):
        cosine = -(sides[k] @ sides[k + 3]) / (lengths[k] * lengths[k + 3])
        if np.degrees(np.arccos(np.clip(cosine, -1, 1))) > MAX_SIDE_ANGLE:
            return []
        if min(lengths[k], lengths[k + 3]) < MIN_SIDE_RATIO * max(lengths[k], lengths[k + 3]):
            return []
    # the three edge directions, in crop sides (x right, z up)
    a, b, c = ((sides[k] - sides[k + 3]) / 2 * np.array([1.0, -1.0]) / size for k in range(3))
    ab, bc, ac = a @ b, b @ c, a @ c
    if ab <= 0 or bc <= 0 or ac >= 0:
        return []  # no three orthogonal edges project so
    za = np.sqrt(ab * -ac / bc)
    zb, zc = ab / za, -ac / za
    return [(np.array([[a[0], sign * za, a[1]], [-b[0], sign * zb, -b[1]], [c[0], sign * zc, c[1]]]), corners.mean(0))
            for sign in (1.0, -1.0)]


START_ELEVATIONS = (10.0, 20.0, 30.0, 40.0, 50.0)
"""Degrees by which the upright boxes the fit also starts from are tipped towards the camera."""
START_TURNS = (7.5, 22.5, 37.5, 52.5, 67.5, 82.5)
"""Degrees by which they are turned about their upright axis (a box repeats every 90°; a turn of
0 shows two faces, whose silhouette has four corners, not six). Twice as many turns found one box
fewer on the box check split: more wrong fits within the corners' tolerance, and one's creases
outvoted the right fit's."""


def _oriented_starts(corners: np.ndarray, principal: tuple[float, float]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Boxes to start the near camera's fit from: a box standing upright, seen from each of a few
    elevations and turns through a camera of the prior's perspective, its sides and centre
    fitted to the hexagon's ``corners`` [6, 2] in the order its silhouette puts them. Seen
    square-on to a face, or deep into a near camera, a box's outline is a hexagon whose
    opposite sides are not the same edges, and the distant camera's readings start far off."""
    from scipy.spatial.transform import Rotation

    perspective = PERSPECTIVE_PRIOR[0]
    centre = np.asarray(principal, dtype=np.float64)
    middle = corners.mean(0)
    order = np.argsort(np.arctan2(*(corners - middle).T[::-1]))
    target = corners[order]
    for elevation in START_ELEVATIONS:
        for turn in START_TURNS:
            # the camera looks along +y; the box turned about its upright axis, then tipped towards it
            units = Rotation.from_euler("zx", [turn, elevation], degrees=True).as_matrix().T
            hull = _silhouette_order(((SIGNS / 2) @ units)[:, [0, 2]])
            if len(hull) != 6:
                continue
            best = None
            for shift in range(6):
                picked = np.roll(hull, shift)
                # seen = principal + (corner - principal) / (1 + p y), corner = (cx, 0, cz) + signs *
                # lengths * units / 2: multiplied out, linear in the lengths and the centre
                design = np.zeros((12, 5))
                rhs = np.zeros(12)
                for row, k in enumerate(picked):
                    for axis, column in enumerate((0, 2)):
                        offset = target[row, axis] - centre[axis]
                        design[2 * row + axis, :3] = SIGNS[k] * (units[:, column] - offset * perspective * units[:, 1]) / 2
                        design[2 * row + axis, 3 + axis] = 1.0
                        rhs[2 * row + axis] = offset + centre[axis]
                solution, *_ = np.linalg.lstsq(design, rhs, rcond=None)
                error = np.linalg.norm(design @ solution - rhs)
                if solution[:3].min() > 0 and (best is None or error < best[0]):
                    best = (error, solution)
            if best is not None:
                yield units * best[1][:3, None], best[1][3:]


def _silhouette_order(points: np.ndarray) -> np.ndarray:
    """Indices of the convex hull's corners of ``points`` [N, 2], in the order of their angle about
    the hull's middle."""
    from scipy.spatial import ConvexHull

    vertices = ConvexHull(points).vertices
    middle = points[vertices].mean(0)
    return vertices[np.argsort(np.arctan2(*(points[vertices] - middle).T[::-1]))]


def project(points: np.ndarray, perspective: float, principal: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """[N, 2] image positions (x, z in crop sides from the crop's centre) of ``points`` [N, 3] in
    the crop's frame, seen by a camera whose focal length is 1 / ``perspective`` crop sides, at
    that distance from the plane y = 0 (so that plane is seen at the crop's scale), looking along
    +y through the ``principal`` point (x, z: the photo's centre, which the crop round the object
    need not share)."""
    centre = np.asarray(principal, dtype=np.float64)
    w = 1.0 + perspective * points[:, 1]
    return centre + (points[:, [0, 2]] - centre) / w[:, None]


def box_corners(axes: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """[8, 3] corners of the box with edge vectors ``axes`` (rows) about ``centre``."""
    return centre + (SIGNS / 2) @ axes


PERSPECTIVE_PRIOR = (0.5, 0.02)
"""Mean and weight of the prior on the perspective (the crop's side over the camera's distance): a
photo framed on an object through a 30-50° lens sees it at about 0.5. The corners decide it when the
box is near the camera; the prior, when a distant camera leaves it free."""

SAME_READING = 3.0 / TUNED_CROP
"""Fits whose creases' ends are seen this close (share of the crop's side) are the same reading."""
MATCH_ROUNDS = 3
"""Fits at most, each with the hexagon's corners matched again to the box as the last fit sees it."""
MAX_CORNER_ERROR = 1.5 / TUNED_CROP
"""Largest root-mean-square distance between the fitted box's silhouette corners and the
hexagon's, as a share of the crop's side."""


def _fit_perspective(corners: np.ndarray, axes: np.ndarray, centre: np.ndarray, principal: tuple[float, float]
                     ) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """The box (edge vectors, centre, perspective) whose silhouette corners best match the
    hexagon's ``corners`` [6, 2] (x, z crop sides), starting from the distant camera's box
    ``axes`` about ``centre`` (x, z) -> (axes, centre [3], perspective, root-mean-square corner
    error), or None when the starting box's corners do not match the hexagon's one to one."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    lengths = np.linalg.norm(axes, axis=1)
    left, _, right = np.linalg.svd(axes / lengths[:, None])
    units = left @ right  # the nearest orthonormal axes (a mirror image is the same box)

    def box(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        turned = units @ Rotation.from_rotvec(params[:3]).as_matrix().T
        return turned * np.exp(params[3:6])[:, None], np.array([params[6], 0.0, params[7]])

    def residuals(params: np.ndarray, match: np.ndarray) -> np.ndarray:
        edges, middle = box(params)
        seen = project(box_corners(edges, middle)[match], params[8], principal)
        mean, weight = PERSPECTIVE_PRIOR
        return np.concatenate([(seen - corners).ravel(), [weight * (params[8] - mean)]])

    lower = np.full(9, -np.inf)
    upper = np.full(9, np.inf)
    lower[8], upper[8] = 0.0, 2.5

    def fit(seen_through: float):
        """The fit whose corners are first matched to the hexagon's as a camera of perspective
        ``seen_through`` sees the starting box, then again as each fitted camera sees the fitted
        box, until the match no longer changes (a near camera puts other corners where a distant
        one would)."""
        params = np.concatenate([np.zeros(3), np.log(lengths), [centre[0], centre[1], seen_through]])
        match, solution = None, None
        for _ in range(MATCH_ROUNDS):
            edges, middle = box(params)
            seen = project(box_corners(edges, middle), params[8], principal)
            rematch = np.argmin(np.linalg.norm(seen[None] - corners[:, None], axis=-1), axis=1)
            if len(set(rematch.tolist())) != len(corners) or (match is not None and np.array_equal(rematch, match)):
                break
            match = rematch
            if solution is None:
                params[8] = PERSPECTIVE_PRIOR[0]
            solution = least_squares(residuals, params, bounds=(lower, upper), args=(match,))
            params = solution.x.copy()
        return solution

    solutions = [s for s in (fit(0.0), fit(PERSPECTIVE_PRIOR[0])) if s is not None]
    if not solutions:
        return None
    solution = min(solutions, key=lambda s: float(np.sum(s.fun[:-1] ** 2)))
    edges, middle = box(solution.x)
    error = float(np.sqrt(np.mean(solution.fun[:-1] ** 2) * 2))
    return edges, middle, float(solution.x[8]), error


LEVEL_TURNS = (15.0, 30.0, 45.0, 60.0, 75.0)
"""Degrees by which the upright boxes the level fit starts from are turned."""
LEVEL_ELEVATIONS = (2.0, 5.0, 10.0)
"""Degrees above the box's centre from which they are seen."""
MAX_LEVEL_ELEVATION = 20.0
"""Highest a level view's fitted camera may look down on the box; from higher up the top shows,
and the outline is the hexagon's."""
MAX_LEAN = 15.0
"""Largest angle (degrees) from the image's vertical of a level view's two outer sides: its
vertical edges, which a near camera looking down tips towards each other."""
LEVEL_CORNERS = np.array([0, 4, 5, 3, 2])
"""Rows of `SIGNS` seen at a level view's five outline corners, for a box turned by 0-90° (its
first axis running right and away from the camera, its second left and away, its third up): the
bottom of the nearest vertical edge, the bottom and top of the right one, the top and bottom of
the left one."""
NEAR_TOP = 1
"""Row of `SIGNS` at the top of the nearest vertical edge."""
TOP_MIDDLE = np.array([NEAR_TOP, 7])
"""Rows of `SIGNS` at the tops of the nearest and the farthest vertical edges."""


def _level_box(pentagon: np.ndarray, mask: np.ndarray, outline: np.ndarray, image: np.ndarray,
               principal: tuple[float, float]) -> Cuboid | None:
    """The box whose outline ``pentagon`` [5, 2] (column, row) is, seen nearly level with its top,
    or None.

    Seen so, a box's top shows as a sliver or not at all, and its outline has five corners: the
    tops and bottoms of the two outer vertical edges, and the bottom of the nearest one, which
    the ground's perspective drops below the others (the camera is above the box's foot). How far
    it drops on each side, with the two faces' widths, fixes the box's turn and the camera's
    height; the top's edges, near the eye's level, converge with the bottom's, which fixes the
    perspective. The photo must show the crease up the near edge, where the two faces meet,
    stronger than any up the middle of either face."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    size = mask.shape[0]
    if _straightness(pentagon, outline) > MAX_STRAIGHTNESS * size:
        return None
    corners = _to_crop(pentagon, size)
    # the near edge's bottom is the lowest corner; round from it: the right edge's bottom and top,
    # the left's top and bottom (the hull runs anticlockwise in the image, x right and z up)
    near = int(np.argmin(corners[:, 1]))
    target = corners[np.roll(np.arange(5), -near)]
    if target[1, 0] < target[4, 0]:
        target = target[[0, 4, 3, 2, 1]]
    for bottom, top in ((target[1], target[2]), (target[4], target[3])):
        edge = top - bottom
        if edge[1] <= 0 or np.degrees(np.arctan2(abs(edge[0]), edge[1])) > MAX_LEAN:
            return None
    if not target[4, 0] < target[0, 0] < target[1, 0]:
        return None

    def seen(params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        units = Rotation.from_euler("zx", params[:2], degrees=True).as_matrix().T
        axes = units * np.exp(params[2:5])[:, None]
        centre = np.array([params[5], 0.0, params[6]])
        return axes, centre, project(box_corners(axes, centre), params[7], principal)

    # the higher of the near and far edges' tops is where the outline's top is (the eye above
    # the top face sees the far one on the outline, below it the near one)
    top_edge = _top_profile(mask)

    def residuals(params: np.ndarray) -> np.ndarray:
        mean, weight = PERSPECTIVE_PRIOR
        projected = seen(params)[2]
        middle = projected[TOP_MIDDLE]
        above = np.max(middle[:, 1] - np.interp(middle[:, 0], *top_edge))
        return np.concatenate([(projected[LEVEL_CORNERS] - target).ravel(), [above, weight * (params[7] - mean)]])

    lower = np.array([1.0, -MAX_LEVEL_ELEVATION, -6.0, -6.0, -6.0, -np.inf, -np.inf, 0.0])
    upper = np.array([89.0, MAX_LEVEL_ELEVATION, 1.0, 1.0, 1.0, np.inf, np.inf, 2.5])
    middle = target.mean(0)
    fits = [least_squares(residuals, np.array([turn, elevation, *np.log([0.3, 0.3, 0.5]), *middle,
                                                PERSPECTIVE_PRIOR[0]]), bounds=(lower, upper))
            for turn in LEVEL_TURNS for elevation in LEVEL_ELEVATIONS]
    fit = min(fits, key=lambda f: float(np.sum(f.fun[:-1] ** 2)))
    error = float(np.sqrt(np.mean(fit.fun[:2 * len(LEVEL_CORNERS)] ** 2) * 2))
    if error > MAX_CORNER_ERROR:
        return None
    axes, centre, projected = seen(fit.x)
    iou = _polygon_iou(_to_pixels(projected[_silhouette_order(projected)], size), mask >= 0.5)
    if iou < MIN_HEXAGON_IOU:
        return None
    near_bottom, right_bottom, right_top, left_top, left_bottom = projected[LEVEL_CORNERS]
    near_top = projected[NEAR_TOP]
    crease = _line_steps(image, near_bottom, near_top[None], size)
    other = max(_line_steps(image, (near_bottom + bottom) / 2, ((near_top + top) / 2)[None], size)
                for bottom, top in ((right_bottom, right_top), (left_bottom, left_top)))
    if crease < MIN_CREASE_CONTRAST or crease < MIN_CREASE_RATIO * other:
        return None
    return Cuboid(centre=centre, axes=axes, outline_iou=iou, crease_contrast=crease, other_contrast=other,
                  elevation=float(fit.x[1]), perspective=float(fit.x[7]),
                  principal=(float(principal[0]), float(principal[1])), corner_error=error)


MAX_SQUARE_TILT = 10.0
"""Largest angle (degrees) of a square-on view's sides from the image's horizontal and vertical."""
MAX_FRONT_SHADING = 0.015
"""Largest spread (standard deviation, RGB 0..1) of the median colours of the columns, and of the
rows, across the middle of a square-on view's face for the face to be flat: a flat face under one
light is one shade, texture aside (boxes seen square-on: 0.000-0.010), where a can's wall darkens
towards its sides (the real split's cans seen level: 0.12-0.15; a lemon 0.025)."""


def _front_box(quad: np.ndarray, mask: np.ndarray, outline: np.ndarray, image: np.ndarray,
               principal: tuple[float, float]) -> Cuboid | None:
    """The box seen square-on to one face, level, whose outline ``quad`` [4, 2] (column, row) is,
    or None. Its outline is a rectangle that the photo shows flat (`MAX_FRONT_SHADING`): a can seen
    level has a box's outline too, but its wall's shade changes across it. The depth is not in
    the photo: the box is as deep as it is wide, as a surface of revolution of that outline would
    be."""
    size = mask.shape[0]
    binary = mask >= 0.5
    iou = _follows_outline(quad, binary, outline)
    if iou is None:
        return None
    sides = np.roll(quad, -1, 0) - quad
    steep = np.degrees(np.arctan2(np.abs(sides[:, 1]), np.abs(sides[:, 0])))  # 0: horizontal
    if np.minimum(steep, 90.0 - steep).max() > MAX_SQUARE_TILT or (steep > 45.0).sum() != 2:
        return None
    if max(_shading_spread(image, binary, axis) for axis in (0, 1)) > MAX_FRONT_SHADING:
        return None
    corners = _to_crop(quad, size)
    lo, hi = corners.min(0), corners.max(0)
    width, height = hi - lo
    rectangle = np.array([[x, z] for x in (lo[0], hi[0]) for z in (lo[1], hi[1])])
    error = float(np.sqrt(np.mean(np.min(np.linalg.norm(rectangle[:, None] - corners[None], axis=-1), axis=1) ** 2)))
    centre = np.array([(lo[0] + hi[0]) / 2, 0.0, (lo[1] + hi[1]) / 2])
    axes = np.diag([width, width, height])
    return Cuboid(centre=centre, axes=axes, outline_iou=iou, crease_contrast=0.0, other_contrast=0.0,
                  elevation=0.0, perspective=0.0, principal=(float(principal[0]), float(principal[1])),
                  corner_error=error, depth_seen=False)


BODY_SPAN = 0.9
"""Least share of the outline's typical row (column) width that a row (column) at the outline's
top or bottom (left or right) must span to be the box's own, square-on: narrower ones, from the
ends inwards, are not (`_box_parts`)."""

MAX_PARTS_SHARE = 0.15
"""Largest share of the outline that the parts standing on a box seen square-on may take: a
brick's studs take 5-8 %, where a table's or a chair's legs under its top take half or more."""

MAX_PART_WIDTH = 0.5
"""Widest part standing on a box's top, as a share of the box's width: a stud, a knob, a chimney.
Wider rows above the rectangle are its top face seen from a little above, or the object's own
shape (a loaf's rounded crown, a nut's bevelled top: the real split's loaf seen end-on and nut
seen level were taken for boxes with parts before parts had to stand on the top and be at most
this wide)."""

MIN_PART_ASPECT = 0.25
"""Least height of a part standing on a box's top, as a share of its own width (a brick's studs,
down to the rectangle: 0.33-0.42): flatter pieces are the top edge's own unevenness, a top sloping
across the photo a few degrees (a procedural sofa's back seen from behind: 0.11), and no part."""

MAX_EDGE_PIECE = 3.0 / TUNED_CROP
"""Largest half-thickness (the deepest point's distance to its outline, as a share of the crop's
side) of a piece beside or under a box seen square-on that is still its edge rather than a part
off that side: a side face seen edge-on a few degrees off square, a bottom edge sloping with the
lens (mining photos of a brick: 3-5 pixels thick at 192). A mug's handle is a part off a side,
and no box with parts on its top."""


def _box_parts(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(the rectangle of the outline ``binary``: its rows and columns at the ends that are
    narrower than the body's cut off; the parts standing on its top) -> (body, parts), or None
    when nothing stands on the top (pieces flatter than `MIN_PART_ASPECT` are not parts), a
    piece beside or under the rectangle is thicker than `MAX_EDGE_PIECE`, a part is wider than
    `MAX_PART_WIDTH` of the box, or the parts are more than `MAX_PARTS_SHARE` of the outline.
    Rows of the pieces above the rectangle that run across more than `MAX_PART_WIDTH` of it are
    its top face seen from a little above, and belong to neither: a sliver no thicker than
    `MAX_EDGE_PIECE`, or the outline is no box with parts."""
    from scipy import ndimage

    keep = np.ones_like(binary)
    for axis in (1, 0):  # row widths, then column heights
        spans = (binary & keep).sum(axis)
        full = BODY_SPAN * np.median(spans[spans > 0])
        wide = np.nonzero(spans >= full)[0]
        if len(wide) == 0:
            return None
        cut = np.ones(len(spans), bool)
        cut[wide.min():wide.max() + 1] = False
        if axis == 1:
            keep[cut] = False
        else:
            keep[:, cut] = False
    body = binary & keep
    # a pixel or two along the rectangle's sides is its soft edge or a bevel, not a part
    parts = ndimage.binary_opening(binary & ~keep, iterations=max(1, round(binary.shape[0] / TUNED_CROP)))
    width = int(body.any(0).sum())
    # rows across most of the width above the rectangle are its top face seen from a little above
    spans, count = ndimage.label(parts, structure=[[0, 0, 0], [1, 1, 1], [0, 0, 0]])
    span_widths = np.bincount(spans.ravel(), minlength=count + 1)
    face = parts & (span_widths[spans] > MAX_PART_WIDTH * width)
    if _thickness(face) > MAX_EDGE_PIECE * binary.shape[0]:
        return None  # no sliver: the object's own wide upper part (a sofa's back)
    parts &= ~face
    top = int(np.argmax(body.any(1)))
    rows = np.arange(binary.shape[0])[:, None]
    labels, count = ndimage.label(parts)
    parts = np.zeros_like(binary)
    for index in range(1, count + 1):
        piece = labels == index
        if piece[top:].any():  # beside or under the box
            if _thickness(piece) > MAX_EDGE_PIECE * binary.shape[0]:
                return None
            continue
        # it reaches down to the rectangle through the top face's sliver under it
        columns = piece.any(0)
        lowest = binary.shape[0] - 1 - np.argmax(piece[::-1], axis=0)
        piece |= binary & columns[None, :] & (rows > lowest[None, :]) & (rows < top)
        if columns.sum() > MAX_PART_WIDTH * width:
            return None
        if piece.any(1).sum() >= MIN_PART_ASPECT * columns.sum():
            parts |= piece
    if not parts.any() or parts.sum() > MAX_PARTS_SHARE * binary.sum():
        return None
    return body, parts


def _thickness(piece: np.ndarray) -> float:
    """Pixels from the bool mask's deepest point to its outline (0 for an empty one)."""
    from scipy import ndimage

    return float(ndimage.distance_transform_edt(np.pad(piece, 1)).max())


def _box_parts_at_tuned_size(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """`_box_parts` of the soft ``mask``, read on it enlarged to `TUNED_CROP` when it is smaller:
    its limits are a pixel or two there, and a smaller crop rounds them off (a brick seen 8° off
    square-on: its sloping bottom edge 3 px thick at 192, within the limit, 2 at 96, over half
    of it; mining builds its candidates from 96 px crops). The body and parts come back at the
    mask's own size."""
    from scipy import ndimage

    size = mask.shape[0]
    if size >= TUNED_CROP:
        return _box_parts(mask >= 0.5)
    factor = int(np.ceil(TUNED_CROP / size))
    split = _box_parts(ndimage.zoom(mask.astype(np.float64), factor, order=1) >= 0.5)
    if split is None:
        return None
    body, parts = (piece.reshape(size, factor, size, factor).mean((1, 3)) >= 0.5 for piece in split)
    binary = mask >= 0.5
    body &= binary
    parts &= binary & ~body
    return (body, parts) if parts.any() else None


def _front_box_with_parts(mask: np.ndarray, image: np.ndarray, principal: tuple[float, float]) -> Cuboid | None:
    """The box seen square-on to one face (`_front_box`) whose outline has parts standing off
    it: its rectangle is the outline without them, and the parts are returned with it."""
    split = _box_parts_at_tuned_size(mask)
    if split is None:
        return None
    body, parts = split
    soft = np.where(body, mask, 0.0)
    hull, solidity = _convex_outline(body)
    if solidity < MIN_SOLIDITY or len(hull) < 4:
        return None
    outline = outline_points(soft)
    box = _front_box(_refine_sides(_reduce_polygon(hull, 4), outline), soft, outline, image, principal)
    return None if box is None else replace(box, parts=parts)


def _shading_spread(image: np.ndarray, binary: np.ndarray, axis: int) -> float:
    """Spread of the median brightness of the columns (``axis`` 0) or rows (1) across the middle
    three fifths of the outline ``binary``, each read along the object's pixels clear of its edge
    (there the photo blends the object with the background)."""
    from scipy import ndimage

    rows, cols = np.nonzero(binary.any(1))[0], np.nonzero(binary.any(0))[0]
    binary = ndimage.binary_erosion(binary, iterations=max(1, round(3 * binary.shape[0] / TUNED_CROP)))
    first, last = (rows.min(), rows.max()) if axis == 0 else (cols.min(), cols.max())
    middle = slice(int(first + 0.2 * (last - first)), int(last - 0.2 * (last - first)) + 1)
    brightness = image.mean(-1)
    inside, values = (binary[middle], brightness[middle]) if axis == 0 else (binary[:, middle].T, brightness[:, middle].T)
    medians = [np.median(values[:, k][inside[:, k]]) for k in range(inside.shape[1]) if inside[:, k].sum() >= 5]
    return float(np.std(medians)) if len(medians) > 3 else np.inf


def _top_profile(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the soft ``mask``'s [S,S] outline is highest in each column that it reaches: (x, z) in
    crop sides, the top edge read between pixels from the partly covered pixel above."""
    size = mask.shape[0]
    binary = mask >= 0.5
    columns = np.nonzero(binary.any(0))[0]
    first = np.argmax(binary[:, columns], axis=0)
    partial = np.where(first > 0, mask[np.maximum(first - 1, 0), columns], 0.0)
    return (columns + 0.5) / size - 0.5, 0.5 - (first - partial) / size


def _crease_ends(fitted: tuple, principal: tuple[float, float]) -> np.ndarray:
    """[4, 2] where the fitted box's corner nearest the camera and its three neighbours are seen
    (x, z crop sides), the neighbours in order of their direction from it: the creases between
    the visible faces run between them."""
    axes, centre, perspective, _ = fitted
    corners = box_corners(axes, centre)
    near = int(np.argmin(corners[:, 1]))
    seen = project(corners, perspective, principal)
    neighbours = np.array([k for k in range(8) if np.count_nonzero(SIGNS[k] != SIGNS[near]) == 1])
    directions = seen[neighbours] - seen[near]
    return seen[np.concatenate([[near], neighbours[np.argsort(np.arctan2(directions[:, 1], directions[:, 0]))]])]


def _line_steps(image: np.ndarray, start: np.ndarray, ends: np.ndarray, size: int) -> float:
    """The weakest colour step along the lines from ``start`` to each of ``ends`` (crop sides)."""
    return min(_line_step(image, _to_pixels(start, size)[0], _to_pixels(end, size)[0], 2.0 * size / TUNED_CROP)
               for end in ends)


def _other_corners(hexagon: np.ndarray, crease_ends: np.ndarray) -> np.ndarray:
    """The three of the ``hexagon``'s corners [6, 2] that the creases do not run to: the other
    reading's creases would."""
    taken = np.argmin(np.linalg.norm(hexagon[None] - crease_ends[:, None], axis=-1), axis=1)
    return hexagon[[k for k in range(len(hexagon)) if k not in set(taken.tolist())][:3]]


def cuboid_field(box: Cuboid, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inside-positive field of the box on a grid over the crop, its depth axis reaching as far as
    the box does at the grid's spacing -> (field [G, D, G], lo, hi)."""
    spacing = 1.0 / (grid - 1)
    reach = float(np.abs(box.axes[:, 1]).sum() / 2)
    half_depth = max(0.5, spacing * np.ceil((reach + 4 * spacing) / spacing))
    g = np.linspace(-0.5, 0.5, grid)
    depth = np.arange(-half_depth, half_depth + spacing / 2, spacing)
    x, y, z = np.meshgrid(g, depth, g, indexing="ij")
    along = (np.stack([x, y, z], -1) - box.centre) @ box.units.T  # [..., 3]
    field = np.min(box.half - np.abs(along), axis=-1)
    lo = np.array([-0.5, depth[0], -0.5])
    hi = np.array([0.5, depth[-1], 0.5])
    return field.astype(np.float32), lo, hi


def box_mesh(box: Cuboid, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """The box's exact surface, each face a grid of ``cells`` x ``cells`` squares (two triangles
    each), welded along the edges, faces wound outwards -> (vertices [V, 3], faces [F, 3])."""
    units, half = box.units, box.half
    steps = np.arange(cells + 1)
    u, v = (grid.reshape(-1) for grid in np.meshgrid(steps, steps, indexing="ij"))
    # every vertex as whole steps along the three axes, so the grids meet on identical ones
    lattice, faces = [], []
    for axis in range(3):
        first, second = (axis + 1) % 3, (axis + 2) % 3  # right-handed: first x second = axis
        for side in (0, cells):
            nodes = np.empty((len(u), 3), dtype=np.int64)
            nodes[:, axis], nodes[:, first], nodes[:, second] = side, u, v
            index = len(lattice) * len(u) + np.arange(len(u)).reshape(cells + 1, cells + 1)
            a, b, c, d = index[:-1, :-1], index[1:, :-1], index[1:, 1:], index[:-1, 1:]
            quads = np.stack([a, b, c, a, c, d], -1).reshape(-1, 3)
            outwards = 1.0 if side else -1.0
            if outwards * np.linalg.det(units[[axis, first, second]]) < 0:
                quads = quads[:, ::-1]
            lattice.append(nodes)
            faces.append(quads)
    welded, inverse = np.unique(np.concatenate(lattice), axis=0, return_inverse=True)
    vertices = box.centre + ((welded / cells * 2 - 1) * half) @ units
    return vertices, inverse.reshape(-1)[np.concatenate(faces)]


def face_views(box: Cuboid) -> np.ndarray:
    """[3, 2] how squarely the camera sees each face (the cosine between the face's outward normal
    and the direction to the eye; 0 or less: facing away), by axis and side (-, +)."""
    units, half = box.units, box.half
    views = np.zeros((3, 2))
    for axis in range(3):
        for index, side in enumerate((-1.0, 1.0)):
            normal = side * units[axis]
            middle = box.centre + normal * half[axis]
            if box.perspective > 0:
                towards = np.array([box.principal[0], -1.0 / box.perspective, box.principal[1]]) - middle
            else:
                towards = np.array([0.0, -1.0, 0.0])
            views[axis, index] = normal @ towards / np.linalg.norm(towards)
    return views


MIN_SEEN_WIDTH = 4.0 / TUNED_CROP
"""Narrowest (crop sides, on average across it) a face may be seen for the photo to show it: a box
seen level with its top shows the top as a sliver of a pixel or two, whose colours are the sides'
and the background's, smeared across the whole face."""


def _face_widths(box: Cuboid) -> np.ndarray:
    """[3, 2] how wide each face is seen on average (its area in the photo over its longest side,
    crop sides), by axis and side (-, +)."""
    units, half = box.units, box.half
    widths = np.zeros((3, 2))
    for axis in range(3):
        first, second = [k for k in range(3) if k != axis]
        for index, side in enumerate((-1.0, 1.0)):
            corners = np.array([box.centre + side * half[axis] * units[axis] + a * half[first] * units[first]
                                + b * half[second] * units[second] for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
            seen = project(corners, box.perspective, box.principal)
            x, z = seen[:, 0], seen[:, 1]
            area = abs(x @ np.roll(z, -1) - z @ np.roll(x, -1)) / 2
            widths[axis, index] = area / np.linalg.norm(seen - np.roll(seen, -1, 0), axis=1).max()
    return widths


OFF_BOX = 0.01
"""Crop sides beyond its faces at which a point is no longer on a box: about a voxel of the
default grid, within which marching cubes puts a box's faces when it is meshed with its parts."""


def fold_hidden(box: Cuboid, points: np.ndarray) -> np.ndarray:
    """``points`` [N, 3] on the box's surface, each moved to where the photo shows what is there
    most likely: a point on a face the photo shows stays; on a face it does not show, the same
    place on the face opposite it, if that one is shown (a box's opposite sides are alike more
    often than not: a crate, a carton, a brick), where colours carried straight through the box
    would cross it in diagonal bands; where neither of two opposite faces is shown (a box seen
    square-on to its front shows neither side), the mirror image across the shared edge on the
    neighbouring face seen most squarely (carried straight through, the front's and the top's
    colours met across each side in a diagonal). A face seen as a sliver (`MIN_SEEN_WIDTH`) counts
    as not shown. Points off the box (`OFF_BOX`: on its parts, `Cuboid.parts`) stay where they
    are: the photo shows their front, and what is behind them carried straight through."""
    units, half = box.units, box.half
    views = face_views(box)
    shown = (views > 0) & (_face_widths(box) >= MIN_SEEN_WIDTH)
    along = (points - box.centre) @ units.T  # [N, 3]
    off = (np.abs(along) > half + OFF_BOX).any(1)
    axis = np.argmax(np.abs(along) / half, axis=1)
    side = (along[np.arange(len(points)), axis] > 0).astype(int)  # 0: the - face, 1: the + face
    # onto the opposite face where it is shown
    flip = ~shown[axis, side] & shown[axis, 1 - side]
    along[flip, axis[flip]] *= -1
    side = np.where(flip, 1 - side, side)
    # what is still on a face not shown: across the edge onto the neighbour seen most squarely
    for face_axis in range(3):
        for face_side in range(2):
            on_face = (axis == face_axis) & (side == face_side) & ~shown[face_axis, face_side]
            if not on_face.any():
                continue
            others = [k for k in range(3) if k != face_axis]
            candidates = [(views[k, j], k, j) for k in others for j in range(2) if shown[k, j]]
            if not candidates:
                continue
            _, k, j = max(candidates)
            edge = (1.0 if j else -1.0) * half[k]
            beyond = np.abs(edge - along[on_face, k])  # distance from the shared edge
            inward = np.minimum(beyond, 2 * half[face_axis])
            along[on_face, k] = edge
            along[on_face, face_axis] = (1.0 if face_side else -1.0) * (half[face_axis] - inward)
    return np.where(off[:, None], points, box.centre + along @ units)
