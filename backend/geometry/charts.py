"""UV charts by projection: a texture atlas in milliseconds instead of xatlas's seconds.

Every face is projected along the one of six axis directions (±X, ±Y, ±Z of the object frame)
that its surrounding surface faces most; faces with the same direction that touch form a chart.
The front chart (-Y, the camera's side in the project's frame) is the photo's view, upright, so
the texture of the side the photo saw reads like the photo. Charts are packed on shelves at the
largest common scale that fits.

Why not xatlas, which this replaced: on the 2-core CPU it took 0.5-0.9 s for a 10k-face outline
solid and 1.4-5.6 s for the shape model's 20k-face surfaces (more than the whole network on a
GPU), where this takes 10-50 ms. Its charts fill more of the square (0.56-0.71 against 0.42-0.66
on five real-split results) and it does not stretch tilted faces (projection keeps down to
cos 54.7° = 0.58 of the texel density along the tilt), so the reconstruction presets bake 1.25
times larger textures, which keeps the texture error (`texture.texture_error`) level: 0.13-0.40 /
255 against xatlas's 0.12-0.40 at the old size on the same five surfaces.
"""

from __future__ import annotations

import bisect

import numpy as np

AXES = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)
"""Projection directions, outward (a face is projected along the one its surface faces most).
Six beat 14 or 26 (adding the cube's corners and edges): the charts got smaller and more
numerous, and packing them lost more than the lesser tilt gained (texture error equal or worse
on four real-split results)."""

PLANES = np.array([
    [[0, 1, 0], [0, 0, 1]],    # +X: u = +Y, v = +Z
    [[0, -1, 0], [0, 0, 1]],   # -X: u = -Y, v = +Z
    [[-1, 0, 0], [0, 0, 1]],   # +Y (back): u = -X, v = +Z
    [[1, 0, 0], [0, 0, 1]],    # -Y (front, the photo's side): u = +X, v = +Z, as the photo shows it
    [[1, 0, 0], [0, 1, 0]],    # +Z (top): u = +X, v = +Y
    [[1, 0, 0], [0, -1, 0]],   # -Z (bottom): u = +X, v = -Y
], dtype=np.float64)
"""(u, v) axes of each direction's chart plane, with u x v = the direction: a face seen from
outside keeps its counter-clockwise winding in UV, and Z is up in every side chart."""

SMOOTHING_ROUNDS = 4
"""Rounds of averaging face normals with their neighbours before choosing directions: the
decoder's ripples would otherwise cut the surface into hundreds of one-face charts."""

FRONT = 3
"""Index of -Y in `AXES`: the side the photo shows."""

OWN_FACING = 0.1
"""A face must face its chart's direction by at least this cosine itself (else its own closest
direction is used): a face projected from behind would fold over its neighbours in UV."""


PADDING = 2.0 / 512.0
"""Share of the atlas side kept empty round each chart (2 texels of a 512 texture): room for
`texture.bake`'s dilation, so bilinear reads at a chart's edge do not pick up its neighbour."""


def unwrap(vertices: np.ndarray, faces: np.ndarray, padding: float = PADDING
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Charts by axis projection, packed into the unit square -> ``(mapping [N'], faces [M, 3],
    uvs [N', 2])``: new vertex ``i`` is old vertex ``mapping[i]`` (a vertex on a chart border
    appears once per chart), face order is kept. UV origin is bottom-left (Blender's and
    glTF-after-flip convention used on the wire). ``padding``: see `PADDING`.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        raise ValueError("no faces to unwrap")
    normals = _face_normals(vertices, faces)
    pairs = _adjacent_faces(faces)
    direction = _directions(normals, pairs)
    chart = _charts(direction, pairs, len(faces))

    # one new vertex per (chart, old vertex)
    corner_chart = np.repeat(chart.astype(np.int64), 3)
    keys = corner_chart * len(vertices) + faces.reshape(-1)
    unique_keys, new_corner = np.unique(keys, return_inverse=True)
    mapping = unique_keys % len(vertices)
    vertex_chart = unique_keys // len(vertices)
    new_faces = new_corner.reshape(-1, 3)

    chart_direction = np.zeros(chart.max() + 1, dtype=np.int64)
    chart_direction[chart] = direction
    planes = PLANES[chart_direction[vertex_chart]]  # [N', 2, 3]
    flat = np.einsum("nd,nkd->nk", vertices[mapping], planes)
    uvs = _pack(flat, vertex_chart, chart_direction, padding)
    return mapping.astype(np.int64), new_faces.astype(np.int32), uvs.astype(np.float32)


def _face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return cross / np.maximum(np.linalg.norm(cross, axis=1, keepdims=True), 1e-20)


def _adjacent_faces(faces: np.ndarray) -> np.ndarray:
    """[P, 2] pairs of faces that share an edge (an edge with k faces links them in a chain)."""
    edges = np.sort(np.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=1).reshape(-1, 2), axis=1)
    keys = edges[:, 0] * (faces.max() + 1) + edges[:, 1]
    order = np.argsort(keys, kind="stable")
    same = keys[order[1:]] == keys[order[:-1]]
    face_of = order // 3
    return np.stack([face_of[:-1][same], face_of[1:][same]], axis=1)


def _directions(normals: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Each face's projection direction (index into `AXES`)."""
    from scipy.sparse import coo_matrix

    count = len(normals)
    both = np.concatenate([pairs, pairs[:, ::-1]])
    neighbours = coo_matrix((np.ones(len(both)), (both[:, 0], both[:, 1])), shape=(count, count)).tocsr()
    smooth = normals.copy()
    for _ in range(SMOOTHING_ROUNDS):
        smooth = smooth + neighbours @ smooth
        smooth /= np.maximum(np.linalg.norm(smooth, axis=1, keepdims=True), 1e-20)
    direction = np.argmax(smooth @ AXES.T, axis=1)
    facing = np.einsum("fd,fd->f", normals, AXES[direction])
    own = facing < OWN_FACING
    direction[own] = np.argmax(normals[own] @ AXES.T, axis=1)
    return direction


def _charts(direction: np.ndarray, pairs: np.ndarray, count: int) -> np.ndarray:
    """Chart index of each face: connected faces of one direction."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    linked = pairs[direction[pairs[:, 0]] == direction[pairs[:, 1]]]
    graph = coo_matrix((np.ones(len(linked), np.int8), (linked[:, 0], linked[:, 1])), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def _boxes(flat: np.ndarray, vertex_chart: np.ndarray, charts: int) -> tuple[np.ndarray, np.ndarray]:
    low = np.full((charts, 2), np.inf)
    high = np.full((charts, 2), -np.inf)
    np.minimum.at(low, vertex_chart, flat)
    np.maximum.at(high, vertex_chart, flat)
    return low, high


def _pack(flat: np.ndarray, vertex_chart: np.ndarray, chart_direction: np.ndarray, padding: float) -> np.ndarray:
    """Place each chart's 2D points (``flat`` [N', 2], chart of each row) in the unit square,
    all at one scale, on shelves; returns uvs [N', 2].

    Charts are packed as they lie and, again, laid on their long side (all but the front, the
    photo's view, which stays upright); whichever fits them larger is kept. Neither wins always:
    on five real-split results the gain was -0.06 to +0.04 of the atlas used.
    """
    charts = vertex_chart.max() + 1
    best = None
    for turn_long_side in (False, True):
        placed = flat
        if turn_long_side:
            low, high = _boxes(flat, vertex_chart, charts)
            turn = ((high - low)[:, 1] > (high - low)[:, 0]) & (chart_direction != FRONT)
            turned = turn[vertex_chart]
            placed = flat.copy()
            placed[turned] = flat[turned][:, ::-1] * np.array([-1.0, 1.0])
        low, high = _boxes(placed, vertex_chart, charts)
        scale, corner = _shelf_pack(np.maximum(high - low, 1e-9), padding)
        if best is None or scale > best[0]:
            best = (scale, corner[vertex_chart] + (placed - low[vertex_chart]) * scale)
    return best[1]


def _shelf_pack(extent: np.ndarray, padding: float) -> tuple[float, np.ndarray]:
    """The largest scale at which boxes of ``extent`` [C, 2] (plus ``padding`` all round) fit the
    unit square on shelves, and each box's lower-left corner there. Padding is halved until the
    boxes fit at all (tens of thousands of charts, from a surface as rough as a hedgehog)."""
    order = np.argsort(-extent[:, 1], kind="stable")

    def shelves(scale: float, padding: float) -> tuple[np.ndarray, float]:
        """Corners at this scale and the height used: best fit by decreasing height (a box goes
        on the shelf with the least room left that still holds it; every earlier shelf is tall
        enough). The shelves' room is kept sorted, so thousands of charts (a rough 80k-face
        surface makes 13,000) cost milliseconds, not the seconds of scanning every shelf."""
        boxes = (extent[order] * scale + 2 * padding).tolist()
        corner = np.zeros_like(extent)
        room: list[tuple[float, int]] = []  # (width left, shelf), sorted
        shelf_y: list[float] = []
        shelf_x: list[float] = []
        top = 0.0
        for c, (w, h) in zip(order.tolist(), boxes):
            i = bisect.bisect_left(room, (w, -1))
            if i < len(room):
                left, shelf = room.pop(i)
            else:
                left, shelf = 1.0, len(shelf_x)
                shelf_y.append(top)
                shelf_x.append(0.0)
                top += h
            corner[c] = (shelf_x[shelf] + padding, shelf_y[shelf] + padding)
            shelf_x[shelf] += w
            bisect.insort(room, (left - w, shelf))
        return corner, top

    while padding > 1e-7 and shelves(0.0, padding)[1] > 1.0:
        padding /= 2.0
    # bisection between 0 and the scale at which the boxes' area alone fills the square
    area = float((extent[:, 0] * extent[:, 1]).sum())
    lo, hi = 0.0, min(1.0 / np.sqrt(area), (1.0 - 2 * padding) / extent.max())
    for _ in range(20):
        mid = 0.5 * (lo + hi)
        if shelves(mid, padding)[1] <= 1.0:
            lo = mid
        else:
            hi = mid
    return lo, shelves(lo, padding)[0]
