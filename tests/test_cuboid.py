import numpy as np
import pytest

from backend.geometry.cuboid import cuboid_field, fit_cuboid
from backend.segmentation import crop_to_object

LIGHT = np.array([0.45, -0.65, 0.6]) / np.linalg.norm([0.45, -0.65, 0.6])


def box_photo(dims=(1.0, 0.6, 0.45), yaw=30.0, elevation=30.0, fov=40.0, fill=0.75, size=256,
              colour=(0.8, 0.5, 0.25), faces_alike=False):
    """(rgba uint8 [S,S,4], the camera's distance): a box of ``dims`` (x, y, z; z up) turned by
    ``yaw`` about z, seen by a pinhole camera at azimuth 0 and ``elevation`` with a field of view
    ``fov``, its faces shaded by one light (or all alike), drawn at 4x and averaged."""
    from skimage.draw import polygon

    e, a = np.radians(elevation), np.radians(yaw)
    turn = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    half = np.asarray(dims) / 2
    distance = np.linalg.norm(half) / fill / np.tan(np.radians(fov) / 2)
    eye = distance * np.array([0.0, -np.cos(e), np.sin(e)])
    forward = -eye / distance
    right = np.array([1.0, 0.0, 0.0])
    up = np.cross(right, forward)
    big = 4 * size
    focal = big / 2 / np.tan(np.radians(fov) / 2)
    image = np.zeros((big, big, 4))
    for axis in range(3):
        for sign in (-1.0, 1.0):
            normal = turn[:, axis] * sign
            centre = normal * half[axis]
            if normal @ (eye - centre) <= 0:
                continue  # facing away
            others = [k for k in range(3) if k != axis]
            corners = [centre + su * turn[:, others[0]] * half[others[0]] + sv * turn[:, others[1]] * half[others[1]]
                       for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
            d = np.array(corners) - eye
            cols = big / 2 + focal * (d @ right) / (d @ forward)
            rows = big / 2 - focal * (d @ up) / (d @ forward)
            shade = 1.0 if faces_alike else 0.3 + 0.7 * max(0.0, float(normal @ LIGHT))
            rr, cc = polygon(rows, cols, image.shape[:2])
            image[rr, cc] = (*(np.asarray(colour) * shade), 1.0)
    small = image.reshape(size, 4, size, 4, 4).mean((1, 3))
    return (small * 255).round().astype(np.uint8), distance


def crop_of(rgba, size=192):
    """(crop colours, crop mask, the photo's centre in the crop's frame), as the pipeline cuts them."""
    from backend.pipelines.reconstruct.silhouette import photo_centre

    rgb, mask = crop_to_object(rgba, rgba[..., 3] >= 128, size)
    return rgb, mask, photo_centre(rgba[..., 3] >= 128)


@pytest.mark.parametrize("yaw, elevation, fov", [(30.0, 30.0, 40.0), (55.0, 20.0, 50.0), (20.0, 40.0, 10.0),
                                                  (5.0, 20.0, 50.0)])
def test_a_box_is_recovered_from_its_outline_with_its_elevation(yaw, elevation, fov):
    """The last: nearly square-on to a face through a wide lens, whose perspective makes the
    outline a hexagon whose opposite sides are not the same edges (the distant camera's readings
    start far off; an upright box turned and tipped every few degrees does not)."""
    dims = np.array([1.0, 0.6, 0.45])
    rgba, _ = box_photo(dims, yaw, elevation, fov)
    box = fit_cuboid(*crop_of(rgba))
    assert box is not None
    assert box.elevation == pytest.approx(elevation, abs=1.5)
    # its sides in proportion: the one nearest the image's vertical is the height
    lengths = np.linalg.norm(box.axes, axis=1)
    height = lengths[np.argmax(np.abs(box.axes[:, 2]) / lengths)]
    widths = np.sort(lengths[lengths != height])
    assert widths / widths[1] == pytest.approx(np.sort(dims[:2]) / dims[0], abs=0.06)
    assert height / widths[1] == pytest.approx(dims[2] / dims[0], abs=0.06)
    # the perspective: the crop's side over the camera's distance, both in the photo's pixels
    from backend.segmentation import crop_square

    side = crop_square(rgba[..., 3] >= 128)[2]
    focal = rgba.shape[1] / 2 / np.tan(np.radians(fov) / 2)
    assert box.perspective == pytest.approx(side / focal, abs=0.03)


@pytest.mark.parametrize("yaw, elevation, fov, dims", [(60.0, 6.0, 30.0, (1.0, 0.6, 0.45)),
                                                        (20.0, 5.0, 45.0, (1.0, 0.6, 0.45)),
                                                        (45.0, 8.0, 20.0, (0.5, 0.5, 1.0))])
def test_a_box_seen_nearly_level_is_recovered_from_five_corners(yaw, elevation, fov, dims):
    """Seen from a few degrees above, the top is a sliver too thin to bend the outline at its far
    corner: the outline has five corners, the near edge's foot the lowest."""
    dims = np.array(dims)
    rgba, _ = box_photo(dims, yaw, elevation, fov)
    box = fit_cuboid(*crop_of(rgba))
    assert box is not None
    assert box.elevation == pytest.approx(elevation, abs=2.0)
    lengths = np.linalg.norm(box.axes, axis=1)
    assert np.sort(lengths) / lengths.max() == pytest.approx(np.sort(dims) / dims.max(), abs=0.06)
    from backend.segmentation import crop_square

    side = crop_square(rgba[..., 3] >= 128)[2]
    focal = rgba.shape[1] / 2 / np.tan(np.radians(fov) / 2)
    assert box.perspective == pytest.approx(side / focal, abs=0.1)


def can_photo(foot: float, lid: float, label_edge: float, size: int = 192):
    """(rgb, soft mask) of a tall can seen from a little above, near-orthographic: its foot's and
    its lid's ellipses ``foot`` and ``lid`` pixels deep, its wall shaded by a light from the right,
    white left of a label's vertical edge ``label_edge`` pixels right of its axis and red beyond."""
    from scipy import ndimage

    rows, cols = np.mgrid[:size, :size].astype(np.float64)
    dx, radius = cols - size / 2, 40.0
    top, base = size / 2 - 70.0, size / 2 + 70.0
    lid_area = (dx / radius) ** 2 + ((rows - top) / lid) ** 2 <= 1
    mask = ((np.abs(dx) <= radius) & (rows >= top) & (rows <= base)) | lid_area
    mask |= (dx / radius) ** 2 + ((rows - base) / foot) ** 2 <= 1
    across = np.clip(dx / radius, -1, 1)
    shade = 0.45 + 0.27 * np.sqrt(1 - across ** 2) + 0.25 * across
    colour = np.where((dx >= label_edge)[..., None], [0.8, 0.1, 0.1], [0.9, 0.9, 0.9])
    rgb = np.ones((size, size, 3))
    rgb[mask] = (colour * shade[..., None])[mask]
    rgb[lid_area] = (0.7, 0.7, 0.75)
    return ndimage.gaussian_filter(rgb, (0.7, 0.7, 0.0)), ndimage.gaussian_filter(mask.astype(np.float64), 0.7)


@pytest.mark.parametrize("foot, lid, label_edge", [(4.0, 4.0, 0.0), (6.0, 4.0, -9.0), (8.0, 4.0, -18.0),
                                                   (4.0, 2.0, -24.0)])
def test_a_can_with_a_labels_edge_is_not_a_box(foot, lid, label_edge):
    """Its outline is nearly a box's, seen from above (the first two: six corners) or nearly level
    (five), and the label's edge passes for a crease; but its outline is its own mirror image, and
    a box's would be so only seen square-on to a face or with its nearest corner on the axis."""
    assert fit_cuboid(*can_photo(foot, lid, label_edge)) is None


def test_the_solid_is_the_box_seen_through_its_camera():
    from backend.geometry.cuboid import project
    from backend.geometry.mesh_ops import extract_surface

    rgb, mask, principal = crop_of(box_photo()[0])
    box = fit_cuboid(rgb, mask, principal)
    field, lo, hi = cuboid_field(box, 96)
    vertices, _ = extract_surface(field, lo, hi)
    seen = project(vertices, box.perspective, principal)
    cols, rows = ((seen[:, 0] + 0.5) * 192 - 0.5), ((0.5 - seen[:, 1]) * 192 - 0.5)
    # every surface point falls inside the photo's outline (a pixel of tolerance), and the
    # outline's corners are reached
    inside = mask[np.clip(np.round(rows).astype(int), 0, 191), np.clip(np.round(cols).astype(int), 0, 191)]
    assert (inside > 0.02).mean() > 0.99
    ys, xs = np.nonzero(mask >= 0.5)
    assert abs(cols.min() - xs.min()) < 2.5 and abs(cols.max() - xs.max()) < 2.5
    assert abs(rows.min() - ys.min()) < 2.5 and abs(rows.max() - ys.max()) < 2.5


def test_a_dark_box_whose_faces_differ_faintly_is_a_box():
    # a near-black box under the one light: its faces step by about 0.025 (RGB 0..1), as a box's
    # sides of nearly one shade do in a photo, where no other outline fitted by a box steps by more
    # than 0.001
    box = fit_cuboid(*crop_of(box_photo(colour=(0.11, 0.11, 0.11))[0]))
    assert box is not None
    assert box.crease_contrast < 0.03


def test_a_hexagon_without_creases_is_not_a_box():
    # the same outline in one flat colour: a hexagonal tile or a cushion as much as a box
    rgba, _ = box_photo(faces_alike=True)
    assert fit_cuboid(*crop_of(rgba)) is None


def test_round_outlines_are_not_boxes():
    from test_outline import can_from_above

    rgb, mask = can_from_above(30.0)
    assert fit_cuboid(rgb, mask) is None
    yy, xx = np.mgrid[0:192, 0:192]
    egg = (((xx - 96) / 70.0) ** 2 + ((yy - 96) / 45.0) ** 2 <= 1).astype(np.float32)
    shaded = np.clip(0.4 + 0.5 * (xx / 192.0), 0, 1)[..., None] * np.array([0.9, 0.8, 0.2]) * egg[..., None]
    assert fit_cuboid(shaded + (1 - egg[..., None]), egg) is None


def test_a_box_seen_square_on_to_a_face_is_a_box_as_deep_as_it_is_wide():
    """A rectangle the photo shows flat: its depth is not in the photo, and is guessed."""
    dims = np.array([1.0, 0.6, 0.45])
    rgba, _ = box_photo(dims, yaw=0.0, elevation=0.0, fov=10.0)
    box = fit_cuboid(*crop_of(rgba))
    assert box is not None and not box.depth_seen
    width, depth, height = np.linalg.norm(box.axes, axis=1)
    assert height / width == pytest.approx(dims[2] / dims[0], abs=0.03)
    assert depth == pytest.approx(width)
    assert box.elevation == 0.0


def studded_box_photo(studs=((0.2, 0.2), (0.6, 0.2)), stud_height=0.08, elevation=0.0, stud_colour=None, yaw=0.0,
                      fov=10.0):
    """(rgba uint8 [S,S,4]): the square-on box of the test above, seen from ``elevation`` (and
    turned by ``yaw``, through ``fov``), with pieces standing on its top, each (start, width)
    along the top as shares of its width, ``stud_height`` of it tall, in the front face's colour
    or ``stud_colour`` (RGB 0..255)."""
    rgba, _ = box_photo(np.array([1.0, 0.6, 0.45]), yaw=yaw, elevation=elevation, fov=fov)
    rows, cols = np.nonzero(rgba[..., 3] >= 128)
    top, left, width = rows.min(), cols.min(), cols.max() + 1 - cols.min()
    face = rgba[top + 5, left + width // 2] if stud_colour is None else np.array([*stud_colour, 255], np.uint8)
    for start, share in studs:
        first = left + round(start * width)
        rgba[top - round(stud_height * width):top, first:first + round(share * width)] = face
    return rgba


@pytest.mark.parametrize("elevation, crop", [(0.0, 192), (5.0, 192), (5.0, 96)])
def test_a_box_seen_square_on_with_studs_on_top_is_that_box_and_its_parts(elevation, crop):
    """A brick's studs make its outline no rectangle: the box is the outline without them, and
    they are kept as its parts, to be built on their own. From a little above, the top face's
    sliver joins the studs across the width: it is neither the studs' nor a part."""
    rgba = studded_box_photo(elevation=elevation)
    box = fit_cuboid(*crop_of(rgba, crop))
    assert box is not None and not box.depth_seen and box.parts is not None
    # the box the same photo shows without its studs
    plain = fit_cuboid(*crop_of(box_photo(np.array([1.0, 0.6, 0.45]), yaw=0.0, elevation=elevation, fov=10.0)[0], crop))
    assert plain.parts is None and not plain.depth_seen
    width, _, height = np.linalg.norm(box.axes, axis=1)
    plain_width, _, plain_height = np.linalg.norm(plain.axes, axis=1)
    assert height / width == pytest.approx(plain_height / plain_width, abs=0.02)
    assert plain_height / plain_width == pytest.approx(0.45, abs=0.05)
    from scipy import ndimage

    labels, count = ndimage.label(box.parts)
    assert count == 2
    # each stud whole: 0.2 x 0.08 of the box's width, which spans 0.75 of the crop's side at most
    areas = ndimage.sum(box.parts, labels, [1, 2]) / (width * crop) ** 2
    assert areas == pytest.approx([0.016, 0.016], rel=0.25)


def test_the_preview_s_and_mining_s_small_crops_find_the_box_with_parts_the_default_finds():
    """Turned 9° off square-on through a wide lens, the box's bottom edge slopes a few pixels: its
    edge at 192 px, within the limit there; read on a 96 px crop as it is, it rounds to over the
    limit, so the limits are read on the crop enlarged to 192."""
    rgba = studded_box_photo(elevation=8.0, yaw=9.0, fov=45.0)
    for crop in (192, 96):
        box = fit_cuboid(*crop_of(rgba, crop))
        assert box is not None and box.parts is not None


def test_legs_under_a_top_are_not_a_boxs_parts():
    """A table's legs take half its outline or more: it is no box with studs (`MAX_PARTS_SHARE`)."""
    rgba = studded_box_photo(studs=((0.0, 0.15), (0.85, 0.15)), stud_height=0.35)
    assert fit_cuboid(*crop_of(rgba[::-1].copy())) is None


def test_a_wide_step_under_a_part_is_the_objects_own_shape():
    """A sofa seen from its side: its back rises over most of the seat's width and narrows
    higher up. Rows across most of the width above the rectangle are a box's top face only as a
    sliver; this step is no sliver, and the outline no box with a part on it."""
    rgba = studded_box_photo(studs=((0.0, 0.7),), stud_height=0.12)
    rows, cols = np.nonzero(rgba[..., 3] >= 128)
    top, left, width = rows.min(), cols.min(), cols.max() + 1 - cols.min()
    rgba[top - round(0.1 * width):top, left:left + round(0.3 * width)] = rgba[top + 2, left + 2]
    assert fit_cuboid(*crop_of(rgba)) is None


def test_a_can_seen_level_is_not_a_box():
    # its outline is a rectangle too, but its wall's shade changes across it
    rgb, mask = can_photo(0.3, 0.3, 100.0)
    assert fit_cuboid(rgb, mask) is None


def test_the_box_mesh_is_closed_and_its_hidden_faces_fold_onto_the_visible_ones():
    import trimesh

    from backend.geometry.cuboid import box_mesh, fold_hidden

    rgb, mask, principal = crop_of(box_photo(yaw=25.0, elevation=35.0)[0])
    box = fit_cuboid(rgb, mask, principal)
    vertices, faces = box_mesh(box, 6)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(abs(np.linalg.det(box.axes)), rel=1e-6)  # wound outwards
    units = box.axes / np.linalg.norm(box.axes, axis=1)[:, None]
    centres = np.concatenate([box.centre + sign * box.axes / 2 for sign in (1.0, -1.0)])  # the six faces' middles
    moved = fold_hidden(box, centres)
    stayed = np.all(np.isclose(moved, centres), axis=1)
    assert stayed.sum() == 3  # three faces seen, three hidden
    for face in np.nonzero(~stayed)[0]:
        opposite = (face + 3) % 6
        np.testing.assert_allclose(moved[face], centres[opposite], atol=1e-9)
        assert stayed[opposite]
    # seen from 35° above, the top is among the faces shown and the bottom among those hidden
    top = int(np.argmax(centres[:, 2] - box.centre[2]))
    assert stayed[top] and not stayed[(top + 3) % 6]
    assert np.abs(units[top % 3, 2]) > 0.5


@pytest.mark.parametrize("kind", ["plain", "faces"])
def test_the_box_check_splits_meshes_stand_up_with_the_sides_recorded(tmp_path, kind):
    from backend.geometry.mesh_files import load_mesh
    from script_modules import load_script

    split = load_script("render_box_split")
    sides = np.array([1.0, 0.3, 0.6])
    split.box_mesh_file(tmp_path / "box.glb", sides, kind, 0.0, np.random.default_rng(0))
    mesh = load_mesh(tmp_path / "box.glb", max_triangles=100)  # Z up, as Blender imports it
    np.testing.assert_allclose(np.ptp(mesh.vertices, axis=0), sides, atol=1e-6)
    assert len(mesh.faces) == 12


def test_sides_that_neither_face_the_camera_take_the_colours_across_their_edge():
    """A box square-on to its front, seen from above: neither side faces the camera, so folding
    each onto the other found nothing shown, and the photo carried straight through the box
    crossed both sides with the front's and the top's colours in a diagonal. Each side now takes
    the mirror image across its edge with the face seen most squarely."""
    from backend.geometry.cuboid import Cuboid, face_views, fold_hidden

    tilt = np.radians(30.0)  # the camera 30° above: the top tips towards it
    up = np.array([0.0, -np.sin(tilt), np.cos(tilt)])
    front = np.array([0.0, -np.cos(tilt), -np.sin(tilt)])
    axes = np.stack([[0.8, 0.0, 0.0], -0.5 * front, 0.4 * up])
    box = Cuboid(centre=np.zeros(3), axes=axes, outline_iou=1.0, crease_contrast=0.1, other_contrast=0.0,
                 elevation=30.0, perspective=0.5, principal=(0.0, 0.0), corner_error=0.0)
    views = face_views(box)
    assert (views[0] <= 0).all() and views[1, 0] > views[2, 1] > 0  # sides away; the front, then the top, shown
    half = np.linalg.norm(axes, axis=1) / 2
    units = axes / (2 * half)[:, None]
    # points on the right side, 0.1 and 0.2 in from the front edge
    points = np.array([half[0] * units[0] - (half[1] - d) * units[1] for d in (0.1, 0.2)])
    moved = fold_hidden(box, points)
    along = moved @ units.T
    np.testing.assert_allclose(along[:, 1], -half[1])  # on the front face
    np.testing.assert_allclose(half[0] - along[:, 0], [0.1, 0.2])  # as far in from the shared edge
    # a face the camera sees stays; a hidden one with a shown opposite still folds onto it
    seen = np.array([[0.1, -half[1], 0.05]]) @ units
    np.testing.assert_allclose(fold_hidden(box, seen), seen)
    back = np.array([[0.1, half[1], 0.05]]) @ units
    np.testing.assert_allclose(fold_hidden(box, back) @ units.T, [[0.1, -half[1], 0.05]], atol=1e-12)


def test_a_top_seen_as_a_sliver_takes_its_colours_from_a_side():
    """Seen 6° above, the top shows as a sliver a pixel or two deep, whose colours are the sides'
    edges and the background's: carried onto the whole top, they smeared it in streaks. It counts
    as not shown, and takes the mirror image of the side seen most squarely across their edge."""
    from backend.geometry.cuboid import face_views, fold_hidden

    box = fit_cuboid(*crop_of(box_photo(yaw=60.0, elevation=6.0, fov=30.0)[0]))
    units, half = box.units, box.half
    up = int(np.argmax(np.abs(units[:, 2])))
    sign = np.sign(units[up, 2])
    assert face_views(box)[up, int(sign > 0)] > 0  # the camera is above the top's plane
    # points across the top
    offsets = np.array([[0.3, -0.2], [-0.4, 0.5], [0.0, 0.0]])
    others = [k for k in range(3) if k != up]
    along = np.zeros((len(offsets), 3))
    along[:, up] = sign * half[up]
    along[:, others] = offsets * half[others]
    moved = (fold_hidden(box, box.centre + along @ units) - box.centre) @ units.T
    on_top = np.isclose(moved[:, up], sign * half[up]) & (np.abs(moved[:, others]) < half[others] - 1e-9).all(1)
    assert not on_top.any()
