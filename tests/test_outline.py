"""Surfaces of revolution from an outline (backend/geometry/outline.py)."""

import numpy as np
import pytest

from backend.geometry.outline import (
    SIDE_SLACK,
    TUNED_CROP,
    bridge_notches,
    ellipse_iou,
    find_rim,
    fit_revolution,
    mirror_axis,
    revolution_field,
    row_spans,
    tilted_revolution_field,
)

S = 128


def vase_mask(axis: float = 60.0) -> np.ndarray:
    """A soft vase outline: radius 12 px at the neck to 30 px at the belly, rows 20..110."""
    rows, cols = np.mgrid[:S, :S].astype(np.float64)
    t = (rows - 20) / 90
    radius = 12 + 18 * np.sin(np.pi * np.clip(t, 0, 1)) ** 2
    inside = (rows >= 20) & (rows < 110)
    # soft edge one pixel wide, as a resized crop has
    return np.clip(radius - np.abs(cols - axis) + 0.5, 0, 1) * inside


def test_mirror_axis_of_a_symmetric_outline():
    axis, iou = mirror_axis(vase_mask(60.0) >= 0.5)
    assert axis == pytest.approx(60.0, abs=0.5)
    assert iou > 0.97


def test_vase_is_a_surface_of_revolution_with_its_radius_per_row():
    fit = fit_revolution(vase_mask())
    assert fit is not None
    t = (np.arange(S) - 20) / 90
    expected = 12 + 18 * np.sin(np.pi * t) ** 2
    rows = np.arange(30, 100)  # away from the rims, where smoothing rounds the ends
    assert np.abs(fit.radius[rows] - expected[rows]).max() < 1.0
    assert fit.radius[:15].max() == 0 and fit.radius[115:].max() == 0
    assert not fit.attached.any()


def test_a_handle_is_attached_and_does_not_widen_the_body():
    mask = np.zeros((S, S))
    mask[30:100, 40:80] = 1.0  # the body: half-width 20 about column 59.5
    rows, cols = np.mgrid[:S, :S]
    ring = np.hypot(rows - 65, cols - 80)
    mask[(ring > 14) & (ring < 20) & (cols >= 80)] = 1.0  # a handle on the right
    fit = fit_revolution(mask)
    assert fit is not None
    assert fit.axis == pytest.approx(59.5, abs=1.0)
    assert np.abs(fit.radius[40:90] - 20).max() < 1.0
    assert fit.attached[65, 96:99].all() and not fit.attached[65, 50:70].any()


def test_holes_inside_the_body_are_segmentation_not_see_through():
    """Pale letters on a can that segmentation took for the floor: the body is still one solid of
    revolution, its radius unchanged where the letters are."""
    mask = np.zeros((S, S))
    mask[20:110, 40:80] = 1.0  # a can, half-width 20 about column 59.5
    mask[60:68, 62:72] = 0.0   # the letters, right of the axis
    fit = fit_revolution(mask)
    assert fit is not None
    assert np.abs(fit.radius[30:100] - 20).max() < 1.0


@pytest.mark.parametrize("shape", ["two_legs", "lopsided"])
def test_outlines_that_are_not_of_revolution(shape):
    mask = np.zeros((S, S))
    if shape == "two_legs":  # a table from the front: two spans in most rows
        mask[20:35, 20:108] = 1
        mask[35:110, 20:35] = 1
        mask[35:110, 93:108] = 1
    else:  # an animal from the side
        mask[40:80, 20:100] = 1
        mask[20:50, 90:120] = 1
        mask[80:110, 25:32] = 1
    assert fit_revolution(mask) is None


def test_a_gear_seen_edge_on_is_a_surface_of_revolution_despite_its_teeth():
    """Its toothed rows have notches a few pixels across: one part, not several."""
    mask = np.zeros((S, S))
    mask[50:70, 14:114] = 1.0              # the gear's rim, edge-on
    for centre in 63.5 + 8 * np.arange(-6, 7):  # teeth 6 px wide side by side: 2 x 4 px notches
        mask[70:74, int(centre - 2.5):int(centre + 3.5)] = 1.0
    assert row_spans(mask[70:74] >= 0.5).min() > 1
    fit = fit_revolution(mask)
    assert fit is not None
    assert fit.axis == pytest.approx(63.5, abs=1.0)
    assert np.abs(fit.radius[50:60] - 50).max() < 1.0  # above the teeth, which smoothing reaches
    assert fit_revolution(mask, notch=0.0) is None


def test_small_gaps_are_bridged_and_large_ones_kept():
    body = np.zeros((S, S), bool)
    body[20:100, 20:40] = body[20:100, 88:108] = True  # two legs, a wide gap between them
    body[20:30, 40:88] = True                          # joined by a seat
    body[100:103, 30:33] = body[100:103, 35:38] = True  # and a notched foot under the left leg
    bridged = bridge_notches(body)
    assert bridged[101, 33:35].all()                    # the notch, 6 px of a 3,700 px body
    assert not bridged[60, 40:88].any()                 # not the space between the legs
    assert row_spans(body)[101] == 2 and row_spans(bridged)[101] == 1 and row_spans(bridged)[60] == 2


def test_revolution_field_is_a_solid_of_the_fitted_radius():
    fit = fit_revolution(vase_mask(64.0))
    grid = 65
    field = revolution_field(fit, S, grid)
    g = np.linspace(-0.5, 0.5, grid)
    z = 32  # the grid's middle row: z = 0, image row 63.5
    radius = np.interp(63.5, np.arange(S), fit.radius) / S
    axis_x = (fit.axis + 0.5) / S - 0.5
    # along x through the axis at y = 0, and along depth y at the axis: the same radius
    inside_x = g[field[:, grid // 2, z] > 0]
    inside_y = g[field[np.argmin(np.abs(g - axis_x)), :, z] > 0]
    step = g[1] - g[0]
    assert (inside_x.max() - inside_x.min()) / 2 == pytest.approx(radius, abs=step)
    assert (inside_y.max() - inside_y.min()) / 2 == pytest.approx(radius, abs=step)
    # nothing above or below the outline's rows
    assert (field[:, :, g > 0.5 - 15 / S] < 0).all()


def test_a_slanted_oval_is_one_body_without_fins():
    """A lemon lying at a slant: its outline is nearly its own mirror image, and what reaches past
    the symmetric body on each side is the body's lean, not a part (cut off and inflated on its
    own, it came out as fins along the body)."""
    rows, cols = np.mgrid[:S, :S].astype(np.float64)
    turn = np.radians(12.0)
    u = (cols - 64) * np.cos(turn) + (rows - 64) * np.sin(turn)
    v = -(cols - 64) * np.sin(turn) + (rows - 64) * np.cos(turn)
    mask = np.clip((1.0 - np.hypot(u / 44.0, v / 36.0)) * 40.0 + 0.5, 0, 1)
    fit = fit_revolution(mask)
    assert fit is not None
    assert fit.attached.sum() < 0.002 * (mask >= 0.5).sum()
    grid = 97
    field = revolution_field(fit, S, grid)
    g = np.linspace(-0.5, 0.5, grid)
    node = np.clip(np.round((g + 0.5) * S - 0.5).astype(int), 0, S - 1)
    outline = mask[node[::-1][None, :], node[:, None]] >= 0.5  # [x, z] at the grid's nodes
    covered = (field > 0).any(1)
    assert (covered & outline).sum() / (covered | outline).sum() > 0.95
    # the cross-section's depth is the body's: no thin sheet where one side reaches further
    depth = (field > 0).sum(1)
    assert np.percentile(depth[covered], 10) > 0.2 * depth.max()


def test_a_handle_seen_edge_on_stays_a_part():
    """A handle seen from behind the mug shows no loop: a strip beside the body, met at corners."""
    mask = np.zeros((S, S))
    mask[30:100, 40:80] = 1.0           # the body: half-width 20 about column 59.5
    mask[50:80, 80:84] = 1.0            # the handle's strip, 20 % of the radius out
    fit = fit_revolution(mask)
    assert fit is not None
    # the body reaches no further into the 4 px strip than the side's slack: the strip is the part's
    assert np.abs(fit.reach[40:90] - 20).max() <= SIDE_SLACK * S / TUNED_CROP + 1e-9
    assert fit.attached[65, 82:84].all()


def test_the_body_reaches_its_own_edge_beside_a_part():
    """Beside a handle the body's edge lies a pixel and a half out (a seam, a shadow line): that
    band is neither the symmetric body nor the part, which starts two pixels beyond the body; the
    body reaches it, so the photo's outline is covered there."""
    mask = np.zeros((S, S))
    mask[30:100, 40:80] = 1.0           # the body: half-width 20 about column 59.5
    mask[45:85, 80] = 1.0               # its edge a pixel further out beside the handle...
    mask[45:85, 81] = 0.5               # ...and half a pixel more, soft
    mask[50:80, 81:86] = 1.0            # the handle's strip
    fit = fit_revolution(mask)
    assert fit is not None
    past = fit.reach[55:75] - fit.radius[55:75, None]
    assert (past[:, 1] > 1.0).all() and (past[:, 1] <= SIDE_SLACK * S / TUNED_CROP + 1e-9).all()
    assert np.abs(past[:, 0]).max() < 0.05
    assert fit.attached[65, 84:86].all()


# ---------------------------------------------------------------- seen from above: the rim

def can_from_above(elevation: float, size: int = 192, radius: float = 40.0, height: float = 70.0):
    """A can seen from ``elevation`` degrees, near-orthographic: its wall orange, its lid's
    ellipse blue -> (rgb [S,S,3] on white, mask [S,S] of 0 and 1)."""
    sine, cosine = np.sin(np.radians(elevation)), np.cos(np.radians(elevation))
    rows, cols = np.mgrid[:size, :size].astype(np.float64)
    dx = cols - size / 2
    lid_row = size / 2 - height * cosine / 2
    base_row = size / 2 + height * cosine / 2

    def in_ellipse(row):
        return (dx / radius) ** 2 + ((rows - row) / max(radius * sine, 1e-6)) ** 2 <= 1

    wall = ((np.abs(dx) <= radius) & (rows >= lid_row) & (rows <= base_row)) | in_ellipse(base_row)
    lid = in_ellipse(lid_row)
    rgb = np.ones((size, size, 3))
    rgb[wall] = (0.9, 0.5, 0.2)
    rgb[lid] = (0.2, 0.3, 0.8)
    return rgb, (wall | lid).astype(np.float64)


def seen_iou(field: np.ndarray, mask: np.ndarray, grid: int) -> float:
    """IoU of a solid over a [-0.5, 0.5] crop of ``grid`` nodes, seen along its depth axis, with
    the 192 px outline it was built from."""
    target = mask[::2, ::2][::-1].T[:grid - 1, :grid - 1] > 0.5
    seen = (field > 0).any(axis=1)[:grid - 1, :grid - 1]
    return float((seen & target).sum() / (seen | target).sum())


def upright_nodes(field: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  elevation: float) -> tuple[np.ndarray, np.ndarray]:
    """(height along the tilted axis, distance from it) of every node of a solid seen from
    ``elevation`` degrees, in pixels of the 192 px crop."""
    grid = field.shape[0]
    e = np.radians(elevation)
    x, y, z = np.meshgrid(np.linspace(-0.5, 0.5, grid), np.linspace(lo[1], hi[1], field.shape[1]),
                          np.linspace(-0.5, 0.5, grid), indexing="ij")
    return (z * np.cos(e) - y * np.sin(e)) * 192, np.hypot(x, y * np.cos(e) + z * np.sin(e)) * 192


def shaded_vessel_from_above(elevation: float, opening: bool, size: int = 192, radius: float = 40.0,
                             height: float = 70.0, lid_shading: float = 0.0):
    """A white vessel seen from ``elevation`` degrees, near-orthographic, lit from the right and
    in front: its wall shaded as a cylinder's, and inside its rim either the far inner wall of an
    open vessel (facing the camera and the axis, so shaded as the outer wall mirrored, a little
    darker), inside a lip a tenth of its radius wide, or a flat lid (one brightness, plus
    ``lid_shading`` times the inner wall's variation) -> (rgb [S,S,3] on white, mask [S,S] of 0
    and 1)."""
    sine, cosine = np.sin(np.radians(elevation)), np.cos(np.radians(elevation))
    rows, cols = np.mgrid[:size, :size].astype(np.float64)
    u = np.clip((cols - size / 2) / radius, -1, 1)
    lid_row = size / 2 - height * cosine / 2
    base_row = size / 2 + height * cosine / 2
    light = np.array([0.6, 0.7, 0.4]) / np.linalg.norm([0.6, 0.7, 0.4])  # (right, towards the camera, up)

    def in_ellipse(row, scale=1.0):
        return (u / scale) ** 2 + ((rows - row) / max(scale * radius * sine, 1e-6)) ** 2 <= 1

    def lit(nx, ny, nz):
        return 0.2 + 0.7 * np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0, 1)

    across = np.sqrt(1 - u ** 2)
    wall = ((np.abs(cols - size / 2) <= radius) & (rows >= lid_row) & (rows <= base_row)) | in_ellipse(base_row)
    top = in_ellipse(lid_row)
    rgb = np.ones((size, size, 3))
    rgb[wall] = lit(u, across, 0.0)[wall, None]
    rgb[top] = (lit(0.0, 0.0, 1.0) + lid_shading * (lit(-u, across, 0.0) - lit(0.0, 1.0, 0.0)))[top, None]
    if opening:
        inner = in_ellipse(lid_row, 0.9)
        rgb[inner] = lit(-u, across, 0.0)[inner, None] - 0.05
    return rgb, (wall | top).astype(np.float64)


@pytest.mark.parametrize("elevation", [20.0, 35.0])
def test_an_open_vessel_seen_from_above_is_a_shell(elevation):
    rgb, mask = shaded_vessel_from_above(elevation, opening=True)
    fit = fit_revolution(mask)
    rim = find_rim(rgb, mask, fit)
    assert rim is not None and rim.opening is not None and rim.opening.open
    assert rim.opening.mirrored > 0.9
    field, lo, hi = tilted_revolution_field(fit, rim, 192, 97)
    assert seen_iou(field, mask, 97) > 0.93  # still the photo's outline from the camera
    # upright, its axis is empty from the rim down to a floor near the base, and its wall stands
    # a wall's thickness (`WALL_SHARE` of the radius) thick all round
    heights, radial = upright_nodes(field, lo, hi, rim.elevation)
    inside = field > 0
    on_axis = radial < 5
    assert not inside[on_axis & (heights > heights[inside].min() + 14)].any()
    assert inside[on_axis & (heights < heights[inside].min() + 2)].any()  # the floor
    middle = inside & (np.abs(heights - np.median(heights[inside])) < 3)
    thickness = np.ptp(radial[middle])
    assert 2.0 < thickness < 0.25 * 40


@pytest.mark.parametrize("faint", [0.0, 0.15])
def test_a_lid_is_not_an_opening(faint):
    """A closed top's shading is one flat face's, however the wall's is: the can stays solid. A
    lid whose brightness follows the wall's mirrored but faintly (a photo's cans: a lid not quite
    flat, a reflection) is no opening either: a far inner wall varies as much as the outer one."""
    rgb, mask = shaded_vessel_from_above(35.0, opening=False, lid_shading=faint)
    fit = fit_revolution(mask)
    rim = find_rim(rgb, mask, fit)
    assert rim is not None and rim.opening is not None and not rim.opening.open
    solid = (tilted_revolution_field(fit, rim, 192, 97)[0] > 0).sum()
    rgb, mask = shaded_vessel_from_above(35.0, opening=True)
    fit = fit_revolution(mask)
    hollow = (tilted_revolution_field(fit, find_rim(rgb, mask, fit), 192, 97)[0] > 0).sum()
    assert hollow < 0.5 * solid


def test_an_unshaded_wall_says_nothing_of_an_opening():
    rgb, mask = can_from_above(35.0)  # flat colours: the wall's shading does not vary across it
    rim = find_rim(rgb, mask, fit_revolution(mask))
    assert rim is not None and rim.opening is None


@pytest.mark.parametrize("elevation", [20.0, 35.0])
def test_the_rim_of_a_can_seen_from_above_gives_the_elevation(elevation):
    rgb, mask = can_from_above(elevation)
    fit = fit_revolution(mask)
    rim = find_rim(rgb, mask, fit)
    assert rim is not None
    assert rim.elevation == pytest.approx(elevation, abs=4.0)
    assert rim.radius == pytest.approx(40.0, abs=3.0)


@pytest.mark.parametrize("size", [96, 192, 320])
def test_the_rim_is_found_at_every_preset_crop_size(size):
    """The presets crop the photo at 96, 192 and 320 px; a soft photo's rim is the same edge at
    each, spread over more pixels the larger the crop."""
    from scipy import ndimage
    from skimage.transform import resize

    rgb, mask = can_from_above(35.0, size=96, radius=20.0, height=35.0)
    lid = np.all(rgb == (0.2, 0.3, 0.8), axis=-1)
    rgb[lid] = (0.75, 0.45, 0.3)  # a lid nearly the wall's colour: a faint rim, as photos show
    rgb = ndimage.gaussian_filter(rgb, (1.0, 1.0, 0.0))  # and not a sharp one
    rgb = np.clip(resize(rgb, (size, size), order=1), 0, 1)
    mask = np.clip(resize(mask, (size, size), order=1), 0, 1)
    rim = find_rim(rgb, mask, fit_revolution(mask))
    assert rim is not None
    assert rim.elevation == pytest.approx(35.0, abs=5.0)


def test_no_rim_without_an_edge_inside_the_outline():
    # the same outline in one colour: a can from above, or a capsule seen level; nothing says which
    rgb, mask = can_from_above(35.0)
    rgb[mask > 0] = (0.9, 0.5, 0.2)
    assert find_rim(rgb, mask, fit_revolution(mask)) is None
    # an egg lying down: an elliptical outline, its lower half the outline's own edge
    rows, cols = np.mgrid[:192, :192]
    mask = ((((cols - 96) / 60.0) ** 2 + ((rows - 96) / 35.0) ** 2) <= 1).astype(np.float64)
    rgb = np.ones((192, 192, 3))
    rgb[mask > 0] = (0.9, 0.8, 0.6)
    assert find_rim(rgb, mask, fit_revolution(mask)) is None
    # a level can whose bands of colour are straight lines, not ellipses
    rgb, mask = can_from_above(0.0)
    rows = np.arange(192)[:, None]
    rgb[(mask > 0) & ((rows // 12) % 2 == 0)] = (0.2, 0.3, 0.8)
    assert find_rim(rgb, mask, fit_revolution(mask)) is None


def test_the_tilted_solid_is_a_can_of_the_true_height_that_casts_the_outline():
    elevation, size, grid = 35.0, 192, 97
    rgb, mask = can_from_above(elevation)
    fit = fit_revolution(mask)
    rim = find_rim(rgb, mask, fit)
    field, lo, hi = tilted_revolution_field(fit, rim, size, grid)
    assert seen_iou(field, mask, grid) > 0.93  # seen along the depth axis, it covers the outline
    # turned upright, it is a cylinder: its height along the axis is the can's (70 px), not the
    # outline's (70 cos e + 2 * 40 sin e), and its top is flat
    heights, radial = (nodes[field > 0] for nodes in upright_nodes(field, lo, hi, rim.elevation))
    assert np.ptp(heights) == pytest.approx(70.0, rel=0.1)
    top = heights > heights.max() - 3
    assert np.percentile(radial[top], 95) == pytest.approx(40.0, abs=4.0)


def test_a_dish_seen_from_above_is_a_slab_the_grid_resolves():
    # no wall: its base hides behind the rim's near half; the rim is a band round a darker well
    rgb, mask = can_from_above(40.0, height=0.0)
    rows, cols = np.mgrid[:192, :192]
    radius, sine = 40.0 * 0.9, np.sin(np.radians(40.0))
    rgb[((cols - 96) / radius) ** 2 + ((rows - 96) / (radius * sine)) ** 2 <= 1] = (0.5, 0.5, 0.4)
    fit = fit_revolution(mask)
    rim = find_rim(rgb, mask, fit)
    assert rim is not None
    grid = 97
    field, lo, hi = tilted_revolution_field(fit, rim, 192, grid)
    assert seen_iou(field, mask, grid) > 0.9
    # every line of sight through the dish, away from its outline, meets at least three grid nodes
    # inside it (no slits)
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask[::2, ::2][::-1].T[:grid - 1, :grid - 1] > 0.5, iterations=2)
    assert (field > 0).sum(axis=1)[:grid - 1, :grid - 1][inner].min() >= 3


def test_the_top_ellipse_of_a_can_is_its_lid():
    """Seen from a known elevation, a flat top's ellipse hangs under the outline's top row by its
    radius times sin e, and spans the body's width."""
    from backend.geometry.outline import top_ellipse

    rgb, mask = can_from_above(35.0)
    ellipse = top_ellipse(fit_revolution(mask), 35.0)
    assert ellipse.elevation == 35.0 and ellipse.contrast == 0.0
    assert ellipse.row == pytest.approx(192 / 2 - 70 * np.cos(np.radians(35.0)) / 2, abs=2.0)
    assert ellipse.radius == pytest.approx(40.0, abs=3.0)


def test_ellipse_iou_is_one_for_an_ellipse_at_any_angle_and_lower_for_corners_and_limbs():
    rows, cols = np.mgrid[:S, :S] + 0.5
    for turn in (0.0, 30.0, 90.0):
        t = np.radians(turn)
        u = (cols - 64) * np.cos(t) + (rows - 60) * np.sin(t)
        v = -(cols - 64) * np.sin(t) + (rows - 60) * np.cos(t)
        assert ellipse_iou((u / 50) ** 2 + (v / 28) ** 2 <= 1) > 0.98
    square = np.zeros((S, S), bool)
    square[24:104, 24:104] = True
    assert ellipse_iou(square) < 0.85
    # a round body with a handle: the handle's pixels and the ellipse they pull out both count
    body = (cols - 60) ** 2 + (rows - 64) ** 2 <= 36 ** 2
    handle = (np.abs(np.hypot(cols - 98, rows - 64) - 14) < 4) & (cols > 96)
    assert ellipse_iou(body) > 0.98 and ellipse_iou(body | handle) < 0.95
    assert ellipse_iou(np.zeros((S, S), bool)) == 0.0


def test_an_open_frame_is_seen_through_in_several_places_and_a_handle_is_not_one():
    from backend.geometry.outline import is_frame, see_through

    frame = np.zeros((96, 96), bool)
    frame[12:88, 18:26] = frame[12:88, 70:78] = frame[12:22, 18:78] = frame[60:66, 18:78] = True
    for left in (34, 44, 54, 64):
        frame[22:60, left:left + 3] = True
    holes, share = see_through(frame)
    assert holes == 5 and 0.3 < share < 0.7 and is_frame(holes, share)
    # a mug: one loop through its handle
    mug = vase_mask() >= 0.5
    rows, cols = np.mgrid[:mug.shape[0], :mug.shape[1]]
    loop = (np.hypot(rows - 60, cols - 95) < 14) & (np.hypot(rows - 60, cols - 95) > 8)
    assert see_through(mug | loop)[0] <= 1 and not is_frame(*see_through(mug | loop))
    # specks of segmentation are not holes
    speckled = np.ones((96, 96), bool)
    speckled[10:80:7, 10:80:7] = False
    assert see_through(speckled) == (0, 0.0) and not is_frame(*see_through(speckled))


def table_mask(size: int = S) -> np.ndarray:
    """A table seen square-on: its top and two legs, in the crop's frame at any ``size``."""
    scale = size / S
    mask = np.zeros((size, size))
    mask[int(30 * scale):int(42 * scale), int(14 * scale):int(114 * scale)] = 1.0
    for left in (20, 98):
        mask[int(42 * scale):int(100 * scale), int(left * scale):int((left + 10) * scale)] = 1.0
    return mask


def test_a_tables_outline_is_plain_and_an_animals_is_not():
    from backend.geometry.outline import PLAIN, long_side_share

    # all but the legs' feet and the top's ends, shorter than `LONG_SIDE`
    table = long_side_share(table_mask())
    assert PLAIN < table < 0.95
    # the same at the preview's and the high preset's crops
    assert long_side_share(table_mask(96)) == pytest.approx(table, abs=0.02)
    assert long_side_share(table_mask(320)) == pytest.approx(table, abs=0.02)
    # gently curved sides are long ones: a disc is plain (a rounded outline is a fruit's, and
    # `auto` leaves it to the inflation)
    rows, cols = np.mgrid[:S, :S] + 0.5
    assert long_side_share(np.clip(50 - np.hypot(cols - 64, rows - 64) + 0.5, 0, 1)) > PLAIN
    # an outline that turns every few pixels, as an animal's does at its legs, ears and tail
    angle = np.arctan2(rows - 64, cols - 64)
    shaggy = np.clip(44 + 7 * np.sin(9 * angle) + 3 * np.sin(23 * angle) - np.hypot(cols - 64, rows - 64) + 0.5, 0, 1)
    assert long_side_share(shaggy) < 0.3 < PLAIN
    assert long_side_share(np.zeros((S, S))) == 0.0
