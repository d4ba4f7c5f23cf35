"""Finding the object in an input image: the alpha channel when there is one, otherwise a
border-colour background model refined by GrabCut.

Automatic method (documented in docs/reconstruction.md): the image border is assumed to show
background. Its main colours (k-means in CIELAB, k=3), and each row's colours at its left and
right ends (a sky, a wall or a floor that changes with height), are the background. A pixel's
distance to it allows for shadows: darkening counts at half weight, and a coloured background
dimmed in linear RGB (a cast shadow on a coloured floor) counts as that background. The distance
is thresholded with Otsu's method (at least ΔE 10) and cleaned with morphological
opening/closing and hole filling; of its pieces, the object is the largest after a penalty for
running off the frame (floor tiles, sky), with the large pieces next to it. Confidence falls
when the border is not uniform, the object touches the border, or the object is tiny or nearly
fills the frame.

That colour threshold is exact on a studio backdrop and leaves pieces of a patterned one (a
floor, a table, a room), whose colours also lie inside the frame, or loses parts of the object
that share them. So its mask then seeds GrabCut (OpenCV: colour mixtures for object and background
and a graph cut between them): the frame's border ring is background for certain, the border
model's object (widened by a few pixels) is probably object, the rest probably background.
Of its holes only those that show the background round the object are kept.

When what the colours found lies off the photo's centre, it is most often a floor tile or a
shadow beside a white or grey object whose colours match the floor's: GrabCut then starts again
from the middle of the frame (the photographer framed the object), and its result is kept when it
lies at the centre, with a note saying so.
Measured against the true masks of the benchmarks' photos (`scripts/bench_segmentation.py`):
docs/reconstruction.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.errors import PipelineError
from backend.protocol import ErrorCode

LOW_CONFIDENCE = 0.5
OFF_CENTRE = 0.12
"""Without alpha, an object whose centre lies farther than this (share of the frame) from the
photo's centre is doubted: on the mining benchmark's photos most wrong masks were a floor tile, a
band of sky or a shadow beside the object (13 of its 22 masks under IoU 0.7 are doubted so, 7
by the confidence alone; 3 of its 73 good ones, as before)."""
FILLS_FRAME = "the object seems to fill the whole frame"
TOUCHES_BORDER = "the object touches the image border; it may be cut off"
CENTRE_SEED = 0.5
"""Share of the frame's width and height, about its centre, that GrabCut takes for probable object
when the mask found by colour lies off the centre (`OFF_CENTRE`). On the benchmarks' photos every
such mask was wrong (12 of 167 photos without alpha: a floor tile or a shadow beside a white or
grey object; mean IoU 0.16 with the true mask); GrabCut from the middle of the frame replaced 11
of them, and the twelve went to 0.66 (`scripts/bench_segmentation.py`). On 19 photos cropped so
that their object lies a quarter of the way across, it replaced a right mask with a worse one
twice."""


@dataclass
class Segmentation:
    mask: np.ndarray
    """[H,W] bool, True on the object."""
    method: str
    confidence: float
    """0..1; below ``LOW_CONFIDENCE`` the user is warned."""
    notes: list[str]


def segment(rgba: np.ndarray, has_alpha: bool) -> Segmentation:
    if has_alpha:
        mask = rgba[..., 3] >= 128
        if not mask.any():
            raise PipelineError(ErrorCode.NO_OBJECT, "the image is fully transparent: there is no object to reconstruct")
        if mask.mean() < 0.995:
            return Segmentation(_largest_component(mask), "alpha channel", 1.0, [])
        # Alpha that covers the whole frame says nothing about the object's outline.
        seg = _estimate_background(rgba[..., :3])
        seg.notes.insert(0, "the alpha channel is opaque everywhere; the background was estimated instead")
        return seg
    return _estimate_background(rgba[..., :3])


def _estimate_background(rgb: np.ndarray) -> Segmentation:
    border = _border_model(rgb)
    cut = grabcut_mask(rgb, border.mask)
    if not cut.any():
        return border
    agreement = float((cut & border.mask).sum() / max(1, (cut | border.mask).sum()))
    area = float(cut.mean())
    if area < MIN_OBJECT_AREA:
        raise PipelineError(ErrorCode.NO_OBJECT, f"the detected object covers only {area:.2%} of the image")
    # where the cut moved the outline a lot, neither estimate is sure of it
    confidence = border.confidence * min(1.0, 0.5 + agreement / 2)
    notes = list(border.notes)
    off_centre = _off_centre(cut)
    if off_centre > OFF_CENTRE:
        confidence = min(confidence, 0.9 * LOW_CONFIDENCE)
        # what the colours found is most likely a floor tile or a shadow beside an object whose
        # colours match the floor's; the photographer framed the object, so GrabCut starts again
        # from the middle of the frame
        framed = grabcut_mask(rgb, centre_seed(cut.shape))
        if framed.mean() >= MIN_OBJECT_AREA and _off_centre(framed) <= OFF_CENTRE:
            notes = [note for note in notes if note not in (FILLS_FRAME, TOUCHES_BORDER)]  # said of the mask dropped
            notes.append(f"what stands out from the background by colour lies off the photo's centre (by {off_centre:.0%} "
                         "of the frame), likely floor or shadow: the object was taken from the middle of the frame instead; "
                         "if that is wrong, crop the photo around the object")
            return Segmentation(framed, "GrabCut (OpenCV) from the middle of the frame", round(confidence, 3), notes)
        notes.append(f"the object found lies off the photo's centre (by {off_centre:.0%} of the frame): it may be a piece "
                     "of floor, wall or shadow; if so, crop the photo around the object")
    return Segmentation(cut, border.method + ", refined by GrabCut (OpenCV)", round(confidence, 3), notes)


def _off_centre(mask: np.ndarray) -> float:
    """How far the mask's centroid lies from the frame's centre, as a share of the frame."""
    ys, xs = np.nonzero(mask)
    return float(np.hypot(ys.mean() / mask.shape[0] - 0.5, xs.mean() / mask.shape[1] - 0.5))


def centre_seed(shape: tuple[int, int]) -> np.ndarray:
    """bool [H,W]: the middle `CENTRE_SEED` of the frame in each direction, GrabCut's probable object
    when the colours found nothing there."""
    seed = np.zeros(shape, dtype=bool)
    (h, w), half = shape, CENTRE_SEED / 2
    seed[round(h * (0.5 - half)):round(h * (0.5 + half)), round(w * (0.5 - half)):round(w * (0.5 + half))] = True
    return seed


def grabcut_mask(rgb: np.ndarray, seed: np.ndarray, max_side: int = 320, iterations: int = 5,
                 runs: int = 3) -> np.ndarray:
    """GrabCut of ``rgb`` [H,W,3] uint8 from a first guess ``seed`` (bool [H,W], widened by 3
    pixels, is probable object; the border ring is certain background; the rest probable
    background) -> bool [H,W] (holes closed unless they show the background, largest component).

    GrabCut's colour mixtures start from k-means with random centres, and on a busy background
    one start can take a patch of floor for the object where another does not: the mask is the
    pixel-wise majority of ``runs`` seeded runs, which is also reproducible."""
    import cv2
    from scipy import ndimage

    height, width = rgb.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    small = rgb if scale == 1.0 else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    guess = seed if scale == 1.0 else cv2.resize(seed.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    guess = ndimage.binary_dilation(guess, iterations=3)
    bgr = np.ascontiguousarray(small[..., ::-1])
    h, w = small.shape[:2]
    votes = np.zeros((h, w), np.int32)
    ring = max(2, min(h, w) // 50)
    for run in range(runs):
        labels = np.where(guess, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        labels[frame_ring(labels.shape, ring)] = cv2.GC_BGD
        cv2.setRNGSeed(run)
        cv2.grabCut(bgr, labels, None, np.zeros((1, 65)), np.zeros((1, 65)), iterations, cv2.GC_INIT_WITH_MASK)
        votes += (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    mask = fill_unseen_holes(small, (2 * votes > runs)).astype(np.uint8)
    if scale != 1.0:
        mask = cv2.resize(mask * 255, (width, height), interpolation=cv2.INTER_LINEAR) >= 128
    mask = fill_small_holes(mask.astype(bool))
    return pick_object(mask) if mask.any() else mask


def _border_model(rgb: np.ndarray) -> Segmentation:
    from scipy import ndimage
    from skimage.transform import resize

    height, width = rgb.shape[:2]
    scale = min(1.0, 256.0 / max(height, width))
    small = rgb if scale == 1.0 else (resize(rgb, (max(8, round(height * scale)), max(8, round(width * scale))),
                                             order=1, anti_aliasing=True, preserve_range=True)).astype(np.uint8)
    distance, lit_distance, border = background_distance(small)
    if float(lit_distance.max()) < 10.0:
        raise PipelineError(ErrorCode.NO_OBJECT, "no object stands out from the background (the image is nearly uniform)")
    notes = []
    mask, threshold = _object_mask(distance, lit_distance)
    lit_mask, lit_threshold = _object_mask(lit_distance, lit_distance)
    # A cast shadow lies beside its object, so what is found without the shadow match is the
    # object and its shadow. When the shadow match leaves next to nothing of it, or something
    # else (a floor tile), it was the object's own colours that matched a dimmed floor.
    kept = mask.sum() / max(1, lit_mask.sum())
    elsewhere = (mask & ~lit_mask).sum() > 0.5 * mask.sum()
    if lit_mask.mean() >= MIN_OBJECT_AREA and (mask.mean() < MIN_OBJECT_AREA or kept < SHADOW_KEPT or elsewhere):
        mask, threshold, distance = lit_mask, lit_threshold, lit_distance
        notes.append("the object's colours match the floor's in shadow; cast shadows were not told apart from it")
    area = float(mask.mean())
    if area == 0.0:
        raise PipelineError(ErrorCode.NO_OBJECT, "no object found against the background")
    if area < MIN_OBJECT_AREA:
        raise PipelineError(ErrorCode.NO_OBJECT, f"the detected object covers only {area:.2%} of the image")

    border_bg = float((distance[border] <= threshold).mean())
    frame = frame_ring(mask.shape)
    outline = mask & ~ndimage.binary_erosion(mask)
    touching = float((mask & frame).sum() / max(1, outline.sum()))  # share of the outline on the frame
    separation = float(np.clip((np.median(distance[mask]) - threshold) / threshold, 0.0, 1.0))
    confidence = border_bg * (1.0 - min(1.0, 4.0 * touching)) * (0.5 + 0.5 * separation)
    if area > 0.9:
        confidence *= 0.3
        notes.append(FILLS_FRAME)
    if touching > 0.02:
        notes.append(TOUCHES_BORDER)
    if border_bg < 0.8:
        notes.append("the image border is not a uniform background")
    if scale != 1.0:
        mask = resize(mask.astype(np.float32), (height, width), order=1) >= 0.5
    method = "border-colour background model (CIELAB k-means + Otsu threshold)"
    return Segmentation(mask, method, round(float(confidence), 3), notes)


def _object_mask(distance: np.ndarray, lit_distance: np.ndarray) -> tuple[np.ndarray, float]:
    """The object's mask from each pixel's distance to the background (ΔE, with and without the
    cast-shadow match) -> (bool mask, the Otsu threshold used; at least ΔE 10)."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    threshold = max(10.0, float(threshold_otsu(distance)))
    above = distance > threshold
    # Pad by repeating the edge so erosion does not eat an object that runs off the frame.
    pad = 3
    mask = np.pad(above, pad, mode="edge")
    mask = ndimage.binary_closing(ndimage.binary_opening(mask, iterations=1), iterations=2)[pad:-pad, pad:-pad]
    mask = fill_small_holes(mask)
    if not mask.any():
        return mask, threshold
    return _enclosed_shade(pick_object(mask), (lit_distance > threshold) & ~above), threshold


SHADOW_KEPT = 0.05
"""Least share of what is found without the cast-shadow match that the match may leave (see
`_border_model`): the longest shadows on the mining and real photos, a low sun's, left 19 % (a
cow); the boxes whose colours all matched the floor in shadow left at most 3 %."""
MIN_OBJECT_AREA = 0.005
"""Share of the image under which what was found is not taken for an object."""
SIDE_MARGIN = 0.04
"""Share of the frame's width at each end of a row whose colour is that row's background."""
SIDE_ROWS = 5
"""Rows (at 256 px) over which a row's side colour is the median, so one odd pixel row is not."""
SIDE_AGREEMENT = 10.0
"""ΔE under which a row's two ends show one colour of background (a band of sky or wall)."""
SIDE_KNOWN = 25.0
"""ΔE under which a row's end shows a colour of the frame's top or bottom edge (a floor tile)."""
SHADOW_LIGHT = (0.1, 1.0)
"""The share of its lit colour a background colour keeps in a cast shadow."""
SHADOW_MIN_CHROMA = 10.0
"""A background colour greyer than this (CIELAB chroma) casts no shadow model: a grey floor's
shadow is the grey of a white object's shaded side."""
ENCLOSED_SHARE = 0.7
"""A shaded piece with more of its surroundings on the object than this is the object's."""


def background_distance(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How far each pixel of ``rgb`` [H,W,3] uint8 is from the background -> (ΔE [H,W]; the
    same without the cast-shadow match [H,W]; the border ring, bool [H,W]).

    The references are the border ring's main colours (k-means in CIELAB, k=3) and, for every
    row, the colour at its left end and the colour at its right end (`side_colours`): a sky,
    a wall or a floor changes from row to row, and neither the band just above a horizon nor
    the floor's tiles blurred together near it match a colour of the frame's top or bottom.
    A pixel also matches one of the ring's colours in shadow: that colour dimmed in linear RGB
    (a cast shadow on a coloured floor is the floor's hue, darker). Any darkening counts at
    half weight, for soft shadows on a grey floor."""
    from skimage.color import rgb2lab

    lab = rgb2lab(rgb)
    h, w = lab.shape[:2]
    ring = max(2, min(h, w) // 64)
    border = frame_ring((h, w), ring)
    centres, shares = _kmeans(lab[border], k=3)
    # An object cut by the frame puts its own colour on the border: such a minor cluster is not background.
    centres = centres[(shares >= 0.15) | (shares == shares.max())]
    linear = _linear(rgb / 255.0)
    lit = np.full((h, w), np.inf)
    shade = np.full((h, w), np.inf)
    for centre in centres[:, None, None, :]:  # [1,1,3]: broadcast over the image, converted once
        lit = np.minimum(lit, _lit_distance(lab, centre))
        if np.linalg.norm(centre[..., 1:]) >= SHADOW_MIN_CHROMA:
            shade = np.minimum(shade, _shadow_distance(lab, linear, centre))
    # no shadow match for the sides: a dimmed side colour also matched the shaded flank of an
    # object standing on that row (a cow on the mining benchmark lost its mask)
    for colour in side_colours(lab, ring):
        lit = np.fmin(lit, _lit_distance(lab, colour[:, None, :]))  # fmin: a dropped end (NaN) matches nothing
    return np.minimum(lit, shade), lit, border


def frame_ring(shape: tuple[int, ...], width: int = 1) -> np.ndarray:
    """bool [H,W]: the ``width`` pixels along the frame's four edges."""
    ring = np.zeros(shape[:2], dtype=bool)
    ring[:width], ring[-width:], ring[:, :width], ring[:, -width:] = True, True, True, True
    return ring


def _enclosed_shade(mask: np.ndarray, shaded: np.ndarray) -> np.ndarray:
    """The object's ``mask`` with back the ``shaded`` pixels (those only the cast-shadow match
    took for background) whose pieces lie mostly against it: a cast shadow lies on the floor,
    but a band of dark cake between cream and case, or pale letters on a can, are the object's
    own colours that happen to match a dimmed background."""
    from scipy import ndimage

    shaded = shaded & ~mask
    labels, count = ndimage.label(shaded)
    if count == 0:
        return mask
    index = np.arange(1, count + 1)
    rim = ndimage.binary_dilation(shaded) & ~shaded  # the pixels around each shaded piece
    rim_labels = ndimage.grey_dilation(labels, size=3) * rim
    against_object = ndimage.sum(mask, rim_labels, index=index)
    around = ndimage.sum(rim, rim_labels, index=index)
    enclosed = index[against_object > ENCLOSED_SHARE * np.maximum(around, 1)]
    return mask | np.isin(labels, enclosed)


def side_colours(lab: np.ndarray, ring: int) -> tuple[np.ndarray, np.ndarray]:
    """The background colour at each row's left and right end -> ([H,3], [H,3]) in CIELAB: the
    median over the row's outer `SIDE_MARGIN` and `SIDE_ROWS` rows round it. The two ends need
    not agree: a checker floor shows one tile at the left and another at the right. But an end
    that matches neither the other end nor any colour of the frame's top and bottom edges (their
    outer ``ring`` rows) is an object running off that side of the frame: a floor runs to the
    bottom edge, a sky to the top. That end of that row is dropped (NaN: it matches nothing)."""
    from scipy import ndimage

    h, w = lab.shape[:2]
    margin = max(2, round(SIDE_MARGIN * w))
    rows = max(1, round(SIDE_ROWS * h / 256.0))
    colours = [ndimage.median_filter(np.median(lab[:, end], axis=1), size=(rows, 1), mode="nearest")
               for end in (slice(0, margin), slice(w - margin, w))]
    agree = np.linalg.norm(colours[0] - colours[1], axis=-1) < SIDE_AGREEMENT
    edges = np.concatenate([lab[:ring], lab[-ring:]]).reshape(-1, 3)[::max(1, ring)]
    out = []
    for colour in colours:
        known = np.linalg.norm(colour[:, None] - edges[None], axis=-1).min(axis=1) < SIDE_KNOWN
        out.append(np.where((agree | known)[:, None], colour, np.nan))
    return out[0], out[1]


def _lit_distance(lab: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """ΔE from each pixel to the reference colour, darkening at half weight."""
    diff = lab - reference
    diff[..., 0] *= np.where(diff[..., 0] < 0, 0.5, 1.0)
    return np.linalg.norm(diff, axis=-1)


def _shadow_distance(lab: np.ndarray, linear: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """ΔE from each pixel to the reference colour dimmed by the factor that fits it best."""
    from skimage.color import lab2rgb, rgb2lab

    lit = _linear(lab2rgb(reference))
    light = np.sum(linear * lit, -1) / np.maximum(np.sum(lit * lit, -1), 1e-6)
    shaded = np.clip(light, *SHADOW_LIGHT)[..., None] * lit
    return np.linalg.norm(lab - rgb2lab(_srgb(shaded)), axis=-1)


def _linear(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


FRAME_PENALTY = 5.0
"""A piece of the mask loses this times the share of its outline that lies on the frame: floor
tiles and bands of sky run off the frame, an object mostly does not."""
JOIN_DISTANCE = 0.04
"""Pieces at least a tenth the size of the chosen one and this close to it (share of the image's
longer side) are kept with it: a cupcake's cream and its case, parted by a band of dark cake."""


def pick_object(mask: np.ndarray) -> np.ndarray:
    """The object among the pieces of ``mask``: the largest after the frame penalty, with the
    large pieces next to it."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask

    def per_piece(where: np.ndarray) -> np.ndarray:
        return np.bincount(labels[where], minlength=count + 1)[1:].astype(np.float64)

    sizes = per_piece(mask)
    on_frame = per_piece(mask & frame_ring(mask.shape))
    edge = per_piece(mask & ~ndimage.binary_erosion(mask, border_value=1))
    scores = sizes * np.maximum(0.05, 1.0 - FRAME_PENALTY * on_frame / np.maximum(1.0, edge))
    best = int(np.argmax(scores))
    chosen = labels == best + 1
    reach = max(1, round(JOIN_DISTANCE * max(mask.shape)))
    # city-block distance within the chosen piece's box widened by the reach: the same pixels as
    # `reach` 4-connected dilations, at one pass's cost on a large photo
    ys, xs = np.nonzero(chosen)
    window = (slice(max(0, ys.min() - reach), ys.max() + reach + 1), slice(max(0, xs.min() - reach), xs.max() + reach + 1))
    near = ndimage.distance_transform_cdt(~chosen[window], metric="taxicab") <= reach
    touching = np.unique(labels[window][near & mask[window]])
    for label in touching:
        if label != best + 1 and sizes[label - 1] >= 0.1 * sizes[best]:
            chosen |= labels == label
    return chosen


SMALL_HOLE = 0.01
"""Holes in the object's mask up to this share of its area are closed (specks of object colour
that matched the background); larger ones are real (the loop of a handle, the gap under an arm)."""


def fill_small_holes(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    holes = ndimage.binary_fill_holes(mask) & ~mask
    labels, count = ndimage.label(holes)
    if count == 0:
        return mask
    sizes = ndimage.sum(holes, labels, index=np.arange(1, count + 1))
    small = np.nonzero(sizes <= SMALL_HOLE * max(1, int(mask.sum())))[0] + 1
    return mask | np.isin(labels, small)


SEEN_THROUGH = 0.9
"""A hole in the object is background seen through it when at least this share of its pixels
matches a colour just outside the object (ΔE under `SEEN_THROUGH_DELTA`); the chair's and the
handle's holes on the benchmarks' photos match at 0.95 or more, a can's white label panel taken
for a pale floor tile at 0.55-0.86."""
SEEN_THROUGH_DELTA = 8.0
SEEN_THROUGH_RING = 6
"""Pixels round the object's outline whose colours a seen-through hole must show."""


def fill_unseen_holes(rgb: np.ndarray, mask: np.ndarray, samples: int = 400) -> np.ndarray:
    """``mask`` (bool [H,W]) with its holes closed unless they show the background: what
    is seen through a hole (a handle's loop, the gaps of a chair's back) is what lies round
    the object, while a patch of the object's own colour that merely resembles some background
    colour (a white label taken for a pale floor tile) matches nothing just outside it."""
    from scipy import ndimage
    from skimage.color import rgb2lab

    solid = ndimage.binary_fill_holes(mask)
    labels, count = ndimage.label(solid & ~mask)
    if count == 0:
        return mask
    around = ndimage.binary_dilation(solid, iterations=SEEN_THROUGH_RING) & ~solid
    if not around.any():
        return mask
    rng = np.random.default_rng(0)

    def lab_sample(where: np.ndarray) -> np.ndarray:
        pixels = rgb[where]
        if len(pixels) > samples:
            pixels = pixels[rng.choice(len(pixels), samples, replace=False)]
        return rgb2lab(pixels[None].astype(np.uint8))[0]

    outside = lab_sample(around)
    for label in range(1, count + 1):
        hole = labels == label
        inside = lab_sample(hole)
        nearest = np.linalg.norm(inside[:, None] - outside[None], axis=-1).min(axis=1)
        if (nearest < SEEN_THROUGH_DELTA).mean() < SEEN_THROUGH:
            mask = mask | hole
    return mask


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = ndimage.sum(mask, labels, index=np.arange(1, count + 1))
    return labels == (1 + int(np.argmax(sizes)))


def _kmeans(points: np.ndarray, k: int, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Plain Lloyd k-means with deterministic farthest-point initialisation → (centres, share of points)."""
    points = points.reshape(-1, points.shape[-1]).astype(np.float64)
    centres = [points[0]]
    for _ in range(1, k):
        d = np.min(np.linalg.norm(points[:, None] - np.array(centres)[None], axis=-1), axis=1)
        centres.append(points[int(np.argmax(d))])
    centres = np.array(centres)
    for _ in range(iterations):
        assign = np.argmin(np.linalg.norm(points[:, None] - centres[None], axis=-1), axis=1)
        for j in range(k):
            if (assign == j).any():
                centres[j] = points[assign == j].mean(axis=0)
    assign = np.argmin(np.linalg.norm(points[:, None] - centres[None], axis=-1), axis=1)
    return centres, np.bincount(assign, minlength=k) / len(points)


def crop_square(mask: np.ndarray, margin: float = 0.1) -> tuple[int, int, int]:
    """The square `crop_to_object` cuts around the mask's box with ``margin`` each side ->
    (top row, left column, side), in the image's pixels (it may reach past the image)."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(np.ceil(max(y1 - y0, x1 - x0) * (1.0 + 2.0 * margin)))
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    return int(round(cy - side / 2.0)), int(round(cx - side / 2.0)), side


def crop_to_object(rgba: np.ndarray, mask: np.ndarray, size: int, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Square crop around the mask with ``margin``, resized to ``size``² → (rgb float [S,S,3], mask float [S,S])."""
    from skimage.transform import resize

    top, left, side = crop_square(mask, margin)
    canvas_rgb = np.ones((side, side, 3), dtype=np.float32)
    canvas_mask = np.zeros((side, side), dtype=np.float32)
    sy0, sx0 = max(0, top), max(0, left)
    sy1, sx1 = min(rgba.shape[0], top + side), min(rgba.shape[1], left + side)
    canvas_rgb[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = rgba[sy0:sy1, sx0:sx1, :3] / 255.0
    canvas_mask[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = mask[sy0:sy1, sx0:sx1]
    rgb = resize(canvas_rgb, (size, size), order=1, anti_aliasing=side > size)
    return rgb.astype(np.float32), resize(canvas_mask, (size, size), order=1, anti_aliasing=side > size).astype(np.float32)
