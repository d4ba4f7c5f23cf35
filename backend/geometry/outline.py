"""Surfaces of revolution from one photo's outline.

Vessels, bottles, cans, lamps and many turned or moulded objects are solids of revolution about
a vertical axis. Seen from the side their outline is mirror-symmetric and every row of it is one
span, and then the outline alone determines the whole solid (Colombo et al., PAMI 2005, do this
with the exact contour geometry; this is the near-orthographic version): the radius at each
height is half the outline's width there. Parts outside the symmetric body, such as a mug's
handle or a jug's spout, are returned apart so they can be inflated on their own.

Masks are square crops [S,S], rows running down the image; fields are inside-positive over
[-0.5,0.5]^3 with axes (x = image right, y = depth away from the camera, z = image up), the
frame of `backend.pipelines.reconstruct.silhouette`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RevolutionFit:
    axis: float
    """Column of the vertical symmetry axis, in pixels (pixel centres at 0, 1, ...)."""
    radius: np.ndarray
    """[S] radius of the body per image row, in pixels (0 where the row has no body)."""
    attached: np.ndarray
    """bool [S,S]: the outline's parts outside the symmetric body (handles, spouts)."""
    symmetry_iou: float
    """IoU of the outline with its mirror image about the axis."""
    half_width: np.ndarray
    """[S] the radius per row before smoothing."""
    smoothing: float
    """Pixels of smoothing along the rows that made ``radius``."""
    reach: np.ndarray
    """[S, 2] how far the body reaches left and right of the axis per row, in pixels: ``radius``
    widened on each side by the outline's lean there (`LEAN_FOLD`), and by up to `SIDE_SLACK` to
    the outline's own edge."""


def body_aspect(fit: RevolutionFit) -> float:
    """How many times wider than tall the body of revolution is: its widest diameter over the rows
    it spans, in pixels."""
    rows = np.nonzero(fit.radius > 0)[0]
    if len(rows) == 0:
        return 0.0
    return float(2.0 * fit.radius.max() / (rows.max() - rows.min() + 1))


def mirror_axis(mask: np.ndarray) -> tuple[float, float]:
    """The vertical axis about which the binary ``mask`` is most nearly mirror-symmetric
    -> (axis column, IoU of the mask with its mirror image)."""
    columns = np.nonzero(mask.any(0))[0]
    if len(columns) == 0:
        return 0.0, 0.0
    width = mask.shape[1]
    area = int(mask.sum())
    best_iou, best_axis = 0.0, 0.0
    # the axis lies between the outline's extreme columns; half-pixel steps
    for twice in range(2 * columns.min(), 2 * columns.max() + 1):
        source = twice - np.arange(width)
        valid = (source >= 0) & (source < width)
        mirrored = np.zeros_like(mask)
        mirrored[:, valid] = mask[:, source[valid]]
        overlap = np.logical_and(mirrored, mask).sum()
        iou = overlap / (area + int(mirrored.sum()) - overlap)
        if iou > best_iou:
            best_iou, best_axis = float(iou), twice / 2.0
    return best_axis, best_iou


def ellipse_iou(mask: np.ndarray) -> float:
    """IoU of the binary ``mask`` with the ellipse of its own second moments (the filled ellipse
    whose area, centre and axes match the outline's): 1 for an ellipse at any angle, lower the
    more the outline has corners, limbs, notches or flat sides."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 3:
        return 0.0
    points = np.stack([xs, ys], 1) + 0.5
    centre = points.mean(0)
    covariance = np.cov((points - centre).T, bias=True)
    if np.linalg.det(covariance) <= 1e-9:
        return 0.0
    rows, cols = np.mgrid[0:mask.shape[0], 0:mask.shape[1]] + 0.5
    offset = np.stack([cols - centre[0], rows - centre[1]], -1)
    # a filled ellipse's second moments are a quarter of its squared semi-axes
    inside = np.einsum("...i,ij,...j->...", offset, np.linalg.inv(covariance), offset) <= 4.0
    return float((inside & mask).sum() / (inside | mask).sum())


FRAME_HOLES = 4
"""Least number of see-through holes (`see_through`) for an outline to be an open frame's: a
chair's slats and legs, a stool's, a shelf's. Default crop: the real split's oak chair 9-10 in each
of its photos, the mining collections' 4-10 in 7 of their 9 chair photos, two views of a held-in
procedural chair 4 and 6; every other real, held-in, box or mining photo 3 at most (a soda can
whose label panel the segmentation cut out, an ant's legs, a mug's handle)."""

FRAME_SHARE = 0.10
"""Least share of the outline (holes filled) that those holes cover: the ant's five gaps between
its legs on one mining photo cover 8 %, a chair's 19-41 %."""

FRAME_MIN_HOLE = 0.002
"""Holes under this share of the outline (holes filled) are specks of segmentation, not seen through."""


def see_through(mask: np.ndarray) -> tuple[int, float]:
    """(the number of holes in the binary ``mask`` of at least `FRAME_MIN_HOLE` of its filled
    area, the share of that area they cover): where the outline shows the background through the
    object."""
    from scipy import ndimage

    inside = np.asarray(mask, dtype=bool)
    filled = ndimage.binary_fill_holes(inside)
    labels, count = ndimage.label(filled & ~inside)
    if count == 0:
        return 0, 0.0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    holes = sizes[sizes >= FRAME_MIN_HOLE * filled.sum()]
    return int(len(holes)), float(holes.sum() / filled.sum())


def is_frame(holes: int, share: float) -> bool:
    """Whether an outline seen through in ``holes`` places over ``share`` of it (`see_through`)
    is an open frame's (`FRAME_HOLES`, `FRAME_SHARE`): an inflation or a surface of revolution
    makes it a flat cut-out with holes, whatever its depth."""
    return holes >= FRAME_HOLES and share >= FRAME_SHARE


TUNED_CROP = 192
"""Crop side (pixels) at which the lengths below that are given in pixels were chosen (the
default preset's): at other crop sizes they scale with the crop, so the preview, default and
high presets find the same rims and smooth the same profiles (read in fixed pixels, the rim's
edge step fell with the crop's size, and at 320 px the rims of a gear and a nut seen from 40°
above were lost)."""


PLAIN_TOLERANCE = 0.013
"""How far the outline may stray from a side, as a share of its longer extent, when it is simplified
to the polygon `long_side_share` measures (about 2 pixels at the default crop): a side is straight
or gently curved, a leg or an ear is a side of its own."""

LONG_SIDE = 0.15
"""Shortest side of that polygon, as a share of the outline's longer extent, that is a long one."""

PLAIN = 0.7
"""Least share of the outline along long sides (`long_side_share`) for it to be plain: a sofa, a
table, a cabinet, a bed, a light switch, seen whole. Inflated, such an outline is a pillow, rounded
in depth where the object is flat and square (default preset, 2026-12-08: the catalogue, held-in
and real photos at 0.73-0.95 for which this keeps the model's result, 19, were closer to the object
by 0.02-0.56 F@5% but for a bath's, 0.17 further; animals and figures, whose outlines turn at every
leg, ear and hand, are at 0.2-0.6)."""


def outline_points(mask: np.ndarray) -> np.ndarray:
    """[M, 2] (column, row) points along the soft ``mask``'s longest outline, at level 0.5, closed
    (the last point is the first)."""
    from skimage.measure import find_contours

    return max(find_contours(np.pad(mask, 1), 0.5), key=len)[:, ::-1] - 1.0


def long_side_share(mask: np.ndarray) -> float:
    """The share of the soft ``mask``'s outline along sides at least `LONG_SIDE` of its longer
    extent, once it is simplified to a polygon within `PLAIN_TOLERANCE`: about 1 for a box's or a
    table's outline and for a disc's (gently curved sides are long ones too), low for an
    animal's."""
    from skimage.measure import approximate_polygon

    if not (mask > 0.5).any():
        return 0.0
    points = outline_points(mask)
    extent = np.ptp(points, axis=0).max()
    length = np.linalg.norm(np.diff(points, axis=0), axis=1).sum()
    sides = np.linalg.norm(np.diff(approximate_polygon(points, tolerance=PLAIN_TOLERANCE * extent), axis=0), axis=1)
    return float(sides[sides >= LONG_SIDE * extent].sum() / length)


NOTCH_AREA = 0.005
"""Largest gap between two spans of the outline's rows, as a share of the body's area, that is a
notch in one part rather than the space between two parts: a gear's teeth, a knurled or ribbed
edge. A gear seen edge-on or from above is a solid of revolution whose toothed rows would
otherwise count as two parts or more (real split: its three photos scored F@5 0.34-0.48 as an
inflation; its notches are 0.1-0.3 % of the body each, the gap between a chair's legs 13-38 %,
between a figure's arm and its body 0.8 %)."""


def bridge_notches(body: np.ndarray, max_share: float = NOTCH_AREA) -> np.ndarray:
    """bool [S,S]: ``body`` with each gap between the spans of its rows filled in when the gap
    (a connected piece of background between a row's first and last pixel) is at most
    ``max_share`` of the body's area."""
    from scipy import ndimage

    columns = np.arange(body.shape[1])[None, :]
    first = np.argmax(body, axis=1)[:, None]
    last = (body.shape[1] - 1 - np.argmax(body[:, ::-1], axis=1))[:, None]
    between = ~body & (columns > first) & (columns < last) & body.any(1)[:, None]
    labels, count = ndimage.label(between)
    if count == 0:
        return body
    areas = ndimage.sum(between, labels, index=np.arange(1, count + 1))
    small = np.nonzero(areas <= max_share * body.sum())[0] + 1
    return body | np.isin(labels, small)


def row_spans(body: np.ndarray) -> np.ndarray:
    """[S]: the number of spans in each row of the binary ``body`` [S,S]."""
    return np.count_nonzero(np.diff(np.pad(body.astype(np.int8), ((0, 0), (1, 0))), axis=1) == 1, axis=1)


SIDE_SLACK = 2.0
"""Pixels (at `TUNED_CROP`) by which the body may reach past its symmetric radius and its lean
on either side, as far as the outline's own edge does there: beside a part, or on an uneven side
too slight to be a lean, the edge often lies a pixel or two out, and parts are only taken from
two pixels beyond the body, so that band had been in neither (real split, the outline solid's
surfaces of revolution: silhouette IoU from the reported camera 0.961 -> 0.968, a cactus 0.888
-> 0.952)."""

LEAN_FOLD = 0.25
"""Largest share of the body's widest radius by which a piece of the outline may reach past the
symmetric body on one side and still be the body's own: a lemon or a stone lying at a slant,
whose outline is nearly but not quite its mirror image (`_is_lean`). The body reaches that far on
that side (its cross-section an oval off the axis); a piece that reaches further is a handle's or
a spout's, inflated on its own. Cut off as parts, the slant's slivers came out as fins along the
body (a lemon, real split: F@2 0.80, where the inflation of the same outline scores 0.99)."""


def fit_revolution(mask: np.ndarray, min_iou: float = 0.75, min_single_rows: float = 0.97,
                   min_body: float = 0.8, smoothing: float = 4.0 / TUNED_CROP, notch: float = NOTCH_AREA
                   ) -> RevolutionFit | None:
    """The outline as a surface of revolution, or None when it is not one.

    ``mask`` is the soft object mask [S,S] (0..1). It is one when the binary outline's mirror
    image about its best vertical axis overlaps it by ``min_iou``, the symmetric body (outline
    AND mirror) covers ``min_body`` of it, and at least ``min_single_rows`` of the body's rows are
    one span (a chair's legs or a figure's arms make two; gaps of up to ``notch`` of the body's
    area are bridged, see `NOTCH_AREA`). The radius per row is the smaller of the
    two half-widths about the axis, measured on the soft mask (sub-pixel: no terraces), so an
    attached part on one side does not widen the body; it is smoothed along the rows
    (``smoothing`` of the crop's side) inside the body only, so the rims stay crisp.
    """
    from scipy import ndimage

    binary = mask >= 0.5
    axis, iou = mirror_axis(binary)
    if iou < min_iou:
        return None
    width = binary.shape[1]
    source = np.round(2 * axis - np.arange(width)).astype(int)
    valid = (source >= 0) & (source < width)
    mirrored = np.zeros_like(binary)
    mirrored[:, valid] = binary[:, source[valid]]
    # A body of revolution seen from the side cannot be seen through: holes inside it are
    # segmentation's (pale letters on a can that matched the floor), and would split its rows.
    body = ndimage.binary_fill_holes(binary & mirrored)
    mask = np.where(body & ~binary, 1.0, mask)
    binary = binary | body
    if body.sum() < min_body * binary.sum():
        return None
    rows = np.nonzero(body.any(1))[0]
    spans = row_spans(bridge_notches(body, notch))[rows]
    if len(rows) == 0 or (spans == 1).mean() < min_single_rows:
        return None

    columns = np.arange(width)[None, :]
    first = np.argmax(body, axis=1)[:, None]
    last = (width - 1 - np.argmax(body[:, ::-1], axis=1))[:, None]
    # the soft edge reaches a pixel or two past the binary body
    left = np.where((columns >= first - 2) & (columns <= axis), mask, 0.0).sum(1)
    right = np.where((columns > axis) & (columns <= last + 2), mask, 0.0).sum(1)
    half_width = np.minimum(left, right)
    top, bottom = rows.min(), rows.max() + 1
    half_width[:top] = half_width[bottom:] = 0.0
    radius = half_width.copy()
    smoothing *= mask.shape[0]
    radius[top:bottom] = ndimage.gaussian_filter1d(half_width[top:bottom], smoothing, mode="nearest")
    through = _spans_through_axis(binary, axis)
    side = _side_widths(mask, through, axis)
    lean = _lean(side, binary, through, axis, half_width)
    lean[top:bottom] = ndimage.gaussian_filter1d(lean[top:bottom], smoothing, mode="nearest", axis=0)
    reach = radius[:, None] + lean
    within = (columns >= axis - reach[:, :1]) & (columns <= axis + reach[:, 1:])
    body = body | (binary & within)
    attached = binary & ~ndimage.binary_dilation(body, iterations=2)
    # the body reaches on to the outline's own edge where that lies a pixel or two further out,
    # beside a part (whose inflation still starts where it did) or on an uneven side
    side[top:bottom] = ndimage.gaussian_filter1d(side[top:bottom], smoothing, mode="nearest", axis=0)
    slack = SIDE_SLACK * mask.shape[0] / TUNED_CROP
    reach[top:bottom] = np.maximum(reach, np.minimum(side, reach + slack))[top:bottom]
    return RevolutionFit(axis=axis, radius=radius, attached=attached, symmetry_iou=iou, half_width=half_width,
                         smoothing=smoothing, reach=reach)


def _lean(side: np.ndarray, binary: np.ndarray, through: np.ndarray, axis: float, half_width: np.ndarray
          ) -> np.ndarray:
    """[S, 2] pixels by which each row's span through the axis (``through``; its soft widths on
    each side ``side``, `_side_widths`) reaches past ``half_width`` to the left and to the right,
    where the outline's piece beyond ``half_width`` is a lean (`_is_lean`). Elsewhere 0: a part's
    rows."""
    from scipy import ndimage

    columns = np.arange(binary.shape[1])
    beyond = binary & (np.abs(columns[None, :] - axis) > half_width[:, None] + 0.5)
    labels, count = ndimage.label(beyond)
    folded = np.zeros_like(binary)
    for index in range(1, count + 1):
        piece = labels == index
        if _is_lean(piece, through, axis, half_width):
            folded |= piece
    unfolded = beyond & ~folded
    part_rows = np.stack([(unfolded & (columns <= axis)).any(1), (unfolded & (columns > axis)).any(1)], axis=1)
    measured = (through.any(1) & (half_width > 0))[:, None] & ~part_rows
    return np.where(measured, np.maximum(side - half_width[:, None], 0.0), 0.0)


def _spans_through_axis(binary: np.ndarray, axis: float) -> np.ndarray:
    """bool [S, S]: each row's span of the outline that holds the axis column."""
    from scipy import ndimage

    centre = int(np.clip(round(axis), 0, binary.shape[1] - 1))
    runs, _ = ndimage.label(binary, structure=[[0, 0, 0], [1, 1, 1], [0, 0, 0]])  # each row's spans apart
    at_axis = runs[:, centre:centre + 1]
    return (runs == at_axis) & (at_axis > 0)


def _side_widths(mask: np.ndarray, through: np.ndarray, axis: float) -> np.ndarray:
    """[S, 2] pixels of the soft ``mask`` left and right of the axis in each row's span through
    it (``through``), widened by two pixels for the soft edge (it reaches a pixel or two past the
    binary span, as in the half-widths): how far the outline itself reaches on each side."""
    from scipy import ndimage

    span = ndimage.binary_dilation(through, structure=np.ones((1, 5), bool))
    columns = np.arange(through.shape[1])[None, :]
    return np.stack([np.where(span & (columns <= axis), mask, 0.0).sum(1),
                     np.where(span & (columns > axis), mask, 0.0).sum(1)], axis=1)


def _is_lean(piece: np.ndarray, through: np.ndarray, axis: float, half_width: np.ndarray) -> bool:
    """Whether ``piece`` (bool [S,S], outside the body's ``half_width`` on one side of the axis)
    is the body's own lean rather than a part: every row of it joins the span through the axis
    (``through``; a handle's loop leaves a gap), it reaches past the body by at most `LEAN_FOLD`
    of the body's widest radius (not of its own rows' radius, which a slanted oval's ends pass by
    far), and the outline runs on over it without a dent (its side's edge, row by row, keeps
    within a pixel and a quarter of the reach of its convex envelope: a handle or a spout meets
    the body at a corner, a slant runs into it smoothly)."""
    if not (piece <= through).all():
        return False
    columns = np.arange(piece.shape[1])
    rows = np.nonzero(piece.any(1))[0]
    side = np.sign(np.nonzero(piece)[1].mean() - axis)
    body_rows = np.nonzero(through.any(1))[0]
    margin = max(3, int(0.1 * (body_rows.max() - body_rows.min())))
    near = np.arange(max(rows.min() - margin, body_rows.min()), min(rows.max() + margin, body_rows.max()) + 1)
    near = near[through[near].any(1)]
    edge = np.where(through[near], (columns[None, :] - axis) * side, -np.inf).max(1)  # [rows] px from the axis
    reach = float((edge - half_width[near]).max())
    if reach > LEAN_FOLD * float(half_width.max()):
        return False
    return float((_upper_envelope(near.astype(np.float64), edge) - edge).max()) <= 1.0 + 0.25 * reach


def _upper_envelope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The least concave function over the points (``x`` increasing, ``y``), at ``x``."""
    hull: list[int] = []
    for i in range(len(x)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b when it lies on or under the chord from a to i
            if (y[b] - y[a]) * (x[i] - x[a]) <= (y[i] - y[a]) * (x[b] - x[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return np.interp(x, x[hull], y[hull])


def revolution_field(fit: RevolutionFit, size: int, grid: int) -> np.ndarray:
    """Inside-positive field [G,G,G] of the body: radius at the height minus the distance to the
    axis (object units: the crop's side is 1)."""
    g = np.linspace(-0.5, 0.5, grid)
    rows = np.clip((0.5 - g) * size - 0.5, 0, size - 1)  # z -> image row
    radius = np.interp(rows, np.arange(size), fit.radius) / size  # [G] along z
    axis_x = (fit.axis + 0.5) / size - 0.5
    reach = np.stack([np.interp(rows, np.arange(size), side) for side in fit.reach.T], 1) / size  # [G, 2]
    x = g[:, None, None] - axis_x
    y = g[None, :, None]
    side_reach = np.where(x < 0, reach[None, None, :, 0], reach[None, None, :, 1])
    # the cross-section is a circle of the radius, stretched sideways to the body's reach
    across = x * radius[None, None, :] / np.maximum(side_reach, 1e-9)
    field = radius[None, None, :] - np.hypot(across, y)
    # rows without body are outside everywhere (a zero radius would leave a seam on the axis)
    return np.where(radius[None, None, :] > 0, field, -1.0)


# ---------------------------------------------------------------- photos taken from above
# A vessel photographed from above shows the ellipse of its rim: a circle of radius r seen at
# elevation e projects to an ellipse of semi-axes r and r sin e. The outline alone cannot tell
# that ellipse from a domed top seen level (both bound the same silhouette), but the rim's near
# half is also an edge *inside* the outline: between the opening or the lid and the wall below.

RIM_MIN_CONTRAST = 0.1
"""Least colour step (RGB 0..1, the median across the arc) along the rim's near half for the
ellipse to be taken for a rim; a dome has no such edge."""

RIM_OUTLINE_ERROR = 0.08
"""Largest mean gap between the outline's top and the rim ellipse's far half, as a share of the
rim's radius."""

MAX_ELEVATION = 50.0
"""Steepest elevation (degrees) considered. Photos of objects are rarely taken from higher, and an
ellipse that round can be a whole part: a lamp's shade passed for a rim seen from 56-58°."""

RIM_MIN_SAG = 1 / 24
"""Least depth of the rim's ellipse below its ends, as a share of the crop's side (8 px on the
default 192 px crop): a flatter ellipse is close enough to a straight line that a horizontal band
of colour (a label, a stripe) would pass for a rim."""

RIM_INSIDE = 0.9
"""Share of the arc's outer side that must lie inside the outline."""

RIM_SHRINK = (1.0, 0.95, 0.9, 0.85)
"""Scales of the ellipse at which the edge is looked for: a mug's lip has a thickness, and the edge
that shows is the opening's, inside the outer rim."""


@dataclass(frozen=True)
class Opening:
    """What the inside of a rim's ellipse shows, read across it against the wall below it
    (`read_opening`). An open vessel shows its far inner wall there, a wall curved as the outer
    one but facing the other way: its brightness across runs as the outer wall's mirrored, and
    varies as much. A lid or a closed top is flat, one brightness across."""

    mirrored: float
    """Correlation of the brightness inside the ellipse, across it, with the wall's mirrored."""
    amplitude: float
    """How much the brightness varies across inside the ellipse, over how much it does on the wall."""

    @property
    def open(self) -> bool:
        return self.mirrored >= OPENING_MIRRORED and self.amplitude >= OPENING_AMPLITUDE


@dataclass(frozen=True)
class Rim:
    elevation: float
    """Degrees above the rim's plane from which the photo sees it."""
    row: float
    """Image row of the ellipse's centre."""
    radius: float
    """Pixels."""
    contrast: float
    """Colour step across its near half (RGB 0..1)."""
    opening: Opening | None = None
    """What shows inside it, when the wall's shading could be read."""


def edge_step(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, nx, ny, offset: float) -> float:
    """Colour step across a line through the points (``xs``, ``ys``) (pixels, column and row) with
    unit normals (``nx``, ``ny``): the norm of the median difference between the colours of
    ``image`` [H, W, C] ``offset`` pixels along the normals and ``offset`` pixels against them, so
    only an edge that runs along the whole line counts, not texture."""
    from scipy import ndimage

    def at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.stack([ndimage.map_coordinates(image[..., c], [y, x], order=1, mode="nearest")
                         for c in range(image.shape[-1])], -1)

    step = at(xs + offset * nx, ys + offset * ny) - at(xs - offset * nx, ys - offset * ny)
    return float(np.linalg.norm(np.median(step, axis=0)))


def _arc_step(image: np.ndarray, inside: np.ndarray, axis: float, row: float, a: float, b: float,
              offset: float) -> float:
    """Colour step across the near (lower) half of the ellipse centred at (``axis``, ``row``) with
    semi-axes ``a`` (across) and ``b`` (down): the norm of the median difference between the
    colours ``offset`` pixels outside and inside it, so only an edge that runs along the whole
    arc counts, not texture. 0 where the arc runs along the outline (``inside``: the binary mask)
    rather than inside it: there the step is the background's, and an elliptical outline (an egg
    lying down) would pass for a dish seen from above."""
    from scipy import ndimage

    theta = np.linspace(0.15 * np.pi, 0.85 * np.pi, 48)
    x, y = axis + a * np.cos(theta), row + b * np.sin(theta)
    nx, ny = np.cos(theta) / a, np.sin(theta) / b
    norm = np.hypot(nx, ny)
    nx, ny = nx / norm, ny / norm
    # twice as far out as the colours are read: the photo is blurred and its mask soft
    beyond = ndimage.map_coordinates(inside.astype(np.float64), [y + 2 * offset * ny, x + 2 * offset * nx],
                                     order=0, mode="constant")
    if beyond.mean() < RIM_INSIDE:
        return 0.0
    return edge_step(image, x, y, nx, ny, offset)


def find_rim(rgb: np.ndarray, mask: np.ndarray, fit: RevolutionFit) -> Rim | None:
    """The rim at the top of a surface of revolution seen from above, or None (seen level, or no
    rim found). ``rgb`` is the crop [S,S,3] in 0..1 and ``mask`` the soft mask [S,S] that ``fit``
    was made on.

    Each hypothesis puts the rim's ellipse under the outline's top row: its far half must follow
    the outline (`RIM_OUTLINE_ERROR`) and its near half, or a slightly smaller copy of it (the
    inside of a lip), must be an edge in the photo (`RIM_MIN_CONTRAST`). The strongest edge wins.
    """
    from scipy import ndimage

    rows = np.nonzero(fit.radius > 0)[0]
    if len(rows) == 0:
        return None
    top, bottom = int(rows.min()), int(rows.max())
    scale = fit.radius.shape[0] / TUNED_CROP  # the same edge is measured at every crop size
    image = ndimage.gaussian_filter(np.asarray(rgb, dtype=np.float64), (scale, scale, 0.0))
    inside = np.asarray(mask) >= 0.5
    max_sine = np.sin(np.radians(MAX_ELEVATION))
    best: Rim | None = None
    least = max(4, int(np.ceil(RIM_MIN_SAG * fit.radius.shape[0])))
    for half_height in range(least, (bottom - top) // 2):
        centre = top + half_height
        radius = float(fit.radius[centre])
        if radius < 8 * scale or half_height > max_sine * radius:
            continue
        far = np.arange(top, centre + 1)
        ellipse = radius * np.sqrt(np.clip(1 - ((centre - far) / half_height) ** 2, 0, 1))
        if np.mean(np.abs(fit.radius[far] - ellipse)) > RIM_OUTLINE_ERROR * radius:
            continue
        contrast = max(_arc_step(image, inside, fit.axis, centre, k * radius, k * half_height, 2.0 * scale)
                       for k in RIM_SHRINK)
        if contrast >= RIM_MIN_CONTRAST and (best is None or contrast > best.contrast):
            best = Rim(float(np.degrees(np.arcsin(half_height / radius))), float(centre), radius, contrast)
    return None if best is None else dataclasses.replace(best, opening=read_opening(image, inside, fit, best))


OPENING_MIRRORED = 0.5
"""Least correlation of the brightness across the rim's inside with the wall's mirrored for an
opening. Rim photos, default crop: the real split's mug from 15 degrees 0.98, the held-in split's
mugs 0.60-0.99, plant pots and a vase 0.95-0.99, bowls -0.69-0.94 (those seen from low, showing
their floor more than their wall, read low), the mining photos' mugs 0.65-0.98; closed tops: the real split's loaf -0.72,
can 0.14 and teapot -0.56, the mining photos' teapots 0.01 and -0.77 and cans 0.44-0.81."""

OPENING_AMPLITUDE = 0.9
"""Least ratio of the brightness's variation across the rim's inside to the wall's for an
opening: the mining photos' cans 0.16-0.77, whose lids' shading follows the wall's mirrored but
barely varies (a flat top), the real split's can and loaf 0.73 and 0.72, against 1.10-12 for every
opening above `OPENING_MIRRORED` but one held-in mug (0.23)."""

OPENING_BINS = 18
"""Bins of the position across the body (-0.9..0.9 of its radius) over which brightness is averaged."""

OPENING_MIN_SHADING = 0.005
"""Least variation of the wall's brightness across it (0..1) for its shading to say anything."""


def read_opening(image: np.ndarray, inside: np.ndarray, fit: RevolutionFit, rim: Rim) -> Opening | None:
    """The brightness across the inside of ``rim``'s ellipse (within 0.8 of it; a column's
    position across the rim's radius, where a deep vessel's far inner wall stands) against the
    wall's below the rim (a pixel's position across its row's radius), mirrored -> `Opening`, or
    None where the wall's brightness does not vary across it, or too few positions hold both.
    ``image`` is the crop [S, S, 3] in 0..1."""
    lum = np.asarray(image[..., :3], dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
    size = lum.shape[0]
    sag = max(rim.radius * np.sin(np.radians(rim.elevation)), 1e-6)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    ex, ey = (cols - fit.axis) / rim.radius, (rows - rim.row) / sag
    within = ex ** 2 + ey ** 2 < 0.8 ** 2
    body = np.nonzero(fit.radius > 0)[0]
    margin = 3 * size / TUNED_CROP  # off the rim's edge and the base's
    wall = inside & (rows > rim.row + sag + margin) & (rows < body.max() - margin)
    wall_radius = np.maximum(fit.radius[rows.astype(int)], 1.0)

    def across(region: np.ndarray, position: np.ndarray) -> np.ndarray:
        index = np.clip(np.floor((position[region] + 0.9) / 1.8 * OPENING_BINS), -1, OPENING_BINS).astype(int)
        keep = (index >= 0) & (index < OPENING_BINS)
        count = np.bincount(index[keep], minlength=OPENING_BINS)
        total = np.bincount(index[keep], weights=lum[region][keep], minlength=OPENING_BINS)
        return np.where(count > 3, total / np.maximum(count, 1), np.nan)

    inner = across(within, ex)
    outer = across(wall, (cols - fit.axis) / wall_radius)[::-1]
    both = ~np.isnan(inner) & ~np.isnan(outer)
    if both.sum() < 5 or np.std(outer[both]) < OPENING_MIN_SHADING or np.std(inner[both]) == 0:
        return None
    return Opening(float(np.corrcoef(inner[both], outer[both])[0, 1]),
                   float(np.std(inner[both]) / np.std(outer[both])))


def top_ellipse(fit: RevolutionFit, elevation: float) -> Rim:
    """Where the body's top circle would be seen from ``elevation`` degrees above (known from
    elsewhere when the photo shows no rim: a closed top, or an edge too faint): the ellipse under
    the outline's top row whose depth, the radius there times sin e, reaches up to that row. A
    flat top's ellipse has the body's full radius; a dome's shrinks to its tip."""
    rows = np.nonzero(fit.radius > 0)[0]
    top, bottom = int(rows.min()), int(rows.max())
    centre = top + _ellipse_drop(fit.radius, top, 1, np.sin(np.radians(elevation)), max(1, (bottom - top) // 2))
    return Rim(float(elevation), float(centre), float(fit.radius[centre]), 0.0)


def _ellipse_drop(radius: np.ndarray, end: int, direction: int, sin_e: float, span: int) -> int:
    """Rows from ``end`` (the outline's top or bottom row), going ``direction`` (1 down, -1 up),
    to the centre of the ellipse that a circle of the body seen from above makes there: the first
    of ``span`` drops that is nearest the ``radius`` [S] at its row times sin e (a flat end's
    ellipse reaches the outline's end row with its near or far half)."""
    drops = np.arange(0, span)
    return int(drops[np.argmin(np.abs(drops - radius[end + direction * drops] * sin_e))])


WALL_SHARE = 0.12
"""An open vessel's wall and floor, as a share of its largest radius (a ceramic mug's is about an eighth)."""

WALL_VOXELS = 2.5
"""The thinnest wall, in voxels of the grid: thinner walls open holes in the extracted surface."""


def tilted_revolution_field(fit: RevolutionFit, rim: Rim, size: int, grid: int
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The body as a solid of revolution about an axis tilted towards the camera by the rim's
    elevation, in the crop's frame (x right, y away from the camera, z image up) -> (field
    [G, D, G] over ``lo``..``hi``, ``lo``, ``hi``). The depth axis reaches as far as the tilted
    solid does, at the grid's spacing.

    A circle at height h on the axis appears at image height h cos e; the body's radius at a
    height is the outline's half-width at that image height, between the rim (flat, at the top)
    and the base, whose ellipse's near half is the outline's bottom (flat too). Near-orthographic,
    like `revolution_field`. Where the rim is an opening (`Opening.open`), the body is a shell:
    hollow down to a floor, its wall `WALL_SHARE` of its radius thick.
    """
    from scipy import ndimage

    e = np.radians(rim.elevation)
    cos_e, sin_e = np.cos(e), np.sin(e)
    rows = np.nonzero(fit.radius > 0)[0]
    bottom = int(rows.max())
    # the base: the row whose half-width times sin e reaches down to the outline's bottom
    top = int(round(rim.row))
    base = max(top + 1, bottom - _ellipse_drop(fit.radius, bottom, -1, sin_e, (bottom - rows.min()) // 2))

    def height(row: np.ndarray) -> np.ndarray:  # image row -> height along the axis (crop units)
        return (0.5 - (row + 0.5) / size) / cos_e

    spacing = 1.0 / (grid - 1)
    h_top, h_base = float(height(np.float64(top))), float(height(np.float64(base)))
    # a dish seen from above: its base hides behind the rim's near half, and the body between
    # them would be thinner than the grid resolves (see-through slits)
    h_base = min(h_base, h_top - 2.5 * spacing)
    body_rows = np.arange(top, base + 1)
    # smoothed between the rim and the base only: the narrow rows of the rim's ellipse above it
    # would pinch the wall under the rim
    radius = ndimage.gaussian_filter1d(fit.half_width[top:base + 1], fit.smoothing, mode="nearest") / size
    radius[0] = max(radius[0], rim.radius / size)
    lean = (fit.reach - fit.radius[:, None])[top:base + 1] / size  # [rows, 2]
    axis_x = (fit.axis + 0.5) / size - 0.5

    # depth reached: a circle at height h spans y in [-h sin e - r cos e, -h sin e + r cos e]
    heights = height(body_rows.astype(np.float64))
    near = float(np.min(-heights * sin_e - radius * cos_e))
    far = float(np.max(-heights * sin_e + radius * cos_e))
    lo_y = min(-0.5, -spacing * np.ceil((-near + 4 * spacing) / spacing))
    hi_y = max(0.5, spacing * np.ceil((far + 4 * spacing) / spacing))
    g = np.linspace(-0.5, 0.5, grid)
    depth = np.arange(lo_y, hi_y + spacing / 2, spacing)

    x, y, z = np.meshgrid(g, depth, g, indexing="ij")
    h = z * cos_e - y * sin_e
    forward = y * cos_e + z * sin_e
    # heights increase upwards while rows increase downwards: interpolate on the reversed rows
    r = np.interp(h, heights[::-1], radius[::-1])  # the caps below cut it at the rim and the base
    reach = r + np.where(x < axis_x, np.interp(h, heights[::-1], lean[::-1, 0]),
                         np.interp(h, heights[::-1], lean[::-1, 1]))
    across = (x - axis_x) * r / np.maximum(reach, 1e-9)
    field = np.minimum(np.minimum(r - np.hypot(across, forward), h_top - h), h - h_base)
    if rim.opening is not None and rim.opening.open:
        # a shell: the inside follows the outside a wall's thickness in, down to a floor as thick
        wall = max(WALL_SHARE * float(radius.max()), WALL_VOXELS * spacing)
        hollow = np.minimum(r - wall - np.hypot(across, forward), h - (h_base + wall))
        field = np.minimum(field, -hollow)
    lo = np.array([-0.5, depth[0], -0.5])
    hi = np.array([0.5, depth[-1], 0.5])
    return field.astype(np.float32), lo, hi
