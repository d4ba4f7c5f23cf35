import io

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy import ndimage
from skimage import draw

from backend.config import ServiceLimits
from backend.errors import JobCancelled
from backend.geometry.fidelity import mask_iou, silhouette
from backend.geometry.mesh_ops import clean_mesh, extract_surface, normalise_unit
from backend.images import decode_image
from backend.pipelines.reconstruct.silhouette import (
    OutlineReconstructPipeline,
    SilhouetteReconstructPipeline,
    crop_camera,
    inflate_field,
)
from backend.requests import CommonParams, ReconstructRequest
from conftest import encoded_png
from doubles import recording_context




def disc_png(size=128):
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size * 0.35) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[disc] = (40, 160, 60, 255)
    rgba[disc & (xx < size / 2)] = (200, 30, 30, 255)   # left half red, right half green
    return encoded_png(rgba)


def request_for(data, quality="preview", texture="uv"):
    image = decode_image(data, max_pixels=ServiceLimits().max_image_pixels)
    return ReconstructRequest([image], CommonParams(quality=quality), texture=texture)


def test_inflating_a_disc_gives_a_sphere_like_field():
    size = 101
    yy, xx = np.mgrid[0:size, 0:size]
    mask = ((xx - 50) ** 2 + (yy - 50) ** 2 < 40 ** 2).astype(np.float32)
    field, half_depth = inflate_field(mask, grid=41)
    assert abs(half_depth - 40 / size) < 0.02
    centre = field[20, 20, 20]
    assert centre == pytest.approx(half_depth, abs=0.02)
    assert field[0, 20, 20] < 0 and field[20, 0, 20] < 0 and field[20, 20, 0] < 0


@pytest.mark.parametrize("centre, radius", [(0.0, 0.35), (-0.3, 0.15)])
def test_the_inflation_lies_where_its_outline_does(centre, radius):
    # the grid's nodes span the crop edge to edge and the pixels' centres lie half a pixel in:
    # sampled as an image resized to the grid, the solid came out stretched by up to 0.8 voxel
    size, grid = 192, 96
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.hypot((xx + 0.5) / size - 0.5 - centre, (yy + 0.5) / size - 0.5) <= radius
    field, _ = inflate_field(mask.astype(np.float64), grid)
    vertices, _ = extract_surface(field, np.full(3, -0.5), np.full(3, 0.5))
    voxel = 1 / (grid - 1)
    assert vertices[:, 0].min() == pytest.approx(centre - radius, abs=0.4 * voxel)
    assert vertices[:, 0].max() == pytest.approx(centre + radius, abs=0.4 * voxel)
    assert vertices[:, 2].max() == pytest.approx(radius, abs=0.4 * voxel)


def test_the_inflation_keeps_the_gaps_of_a_comb_open():
    # teeth 3 voxels wide, gaps 2: the inflation's steep profile used to put the walls next to the
    # outer grid node, widening every tooth by up to a voxel a side and closing the gaps (IoU 0.905)
    size, grid = 192, 96
    mask = np.zeros((size, size), bool)
    mask[40:70, 30:162] = True
    for x in range(30, 160, 10):
        mask[70:150, x:x + 6] = True
    field, _ = inflate_field(mask.astype(np.float64), grid)
    vertices, faces = extract_surface(field, np.full(3, -0.5), np.full(3, 0.5))
    vertices, scale, centre = normalise_unit(vertices)
    seen = silhouette(vertices, faces, crop_camera(scale, centre), size)
    assert mask_iou(seen, mask) > 0.97
    assert ndimage.label(seen[110])[1] == 13


def test_parts_about_a_voxel_wide_stay_attached():
    # antennae three pixels (a voxel and a half) wide round a body: narrower than the grid can
    # hold everywhere, they came apart in pieces unless their walls stand further out
    size, grid = 192, 96
    yy, xx = np.mgrid[0:size, 0:size]
    antennae = np.zeros((size, size), bool)
    for angle in np.radians(np.arange(5, 180, 12)):
        rows, columns = draw.line(int(110 - 38 * np.sin(angle)), int(96 + 38 * np.cos(angle)),
                                  int(110 - 95 * np.sin(angle)), int(96 + 90 * np.cos(angle)))
        antennae[rows, columns] = True
    mask = (np.hypot(xx - 96, yy - 110) < 40) | (ndimage.distance_transform_edt(~antennae) <= 1)
    field, _ = inflate_field(mask.astype(np.float64), grid)
    vertices, faces = clean_mesh(*extract_surface(field, np.full(3, -0.5), np.full(3, 0.5)), keep_fraction=0.0)
    assert len(trimesh.Trimesh(vertices, faces, process=False).split(only_watertight=False)) == 1


def test_disc_becomes_a_closed_round_textured_mesh():
    events = []
    output = SilhouetteReconstructPipeline("cpu").run(request_for(disc_png()), recording_context(events=events))
    mesh = output.mesh
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    assert tm.is_watertight and tm.volume > 0
    extents = mesh.vertices.max(0) - mesh.vertices.min(0)
    assert extents.max() == pytest.approx(1.0, abs=1e-5)           # unit size
    assert np.abs((mesh.vertices.max(0) + mesh.vertices.min(0)) / 2).max() < 1e-5  # centred
    assert extents[0] == pytest.approx(extents[2], rel=0.05)       # round silhouette in x-z
    assert extents[1] == pytest.approx(extents[0], rel=0.15)       # inflated to about a sphere in depth
    assert mesh.uvs is not None and mesh.texture_png.startswith(b"\x89PNG")
    assert mesh.uvs.min() >= 0 and mesh.uvs.max() <= 1
    kinds = [e[0] for e in events]
    assert "preview" in kinds and kinds.count("progress") >= 4
    assert output.metadata["segmentation"]["method"] == "alpha channel"


def test_texture_follows_the_image_left_red_right_green():
    output = SilhouetteReconstructPipeline("cpu").run(request_for(disc_png(), texture="vertex"), recording_context())
    mesh = output.mesh
    left, right = mesh.vertices[:, 0] < -0.2, mesh.vertices[:, 0] > 0.2
    assert mesh.colors[left, 0].mean() > 150 and mesh.colors[left, 1].mean() < 80
    assert mesh.colors[right, 1].mean() > 120 and mesh.colors[right, 0].mean() < 80


def test_front_of_the_object_faces_minus_y():
    # A shape wider at the top: image top must become +Z.
    size = 128
    yy, xx = np.mgrid[0:size, 0:size]
    half_width = 10 + (size - yy) * 0.35
    mask = (np.abs(xx - size / 2) < half_width) & (yy > 15) & (yy < 113)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[mask] = (90, 90, 200, 255)
    photo = encoded_png(rgba)
    mesh = SilhouetteReconstructPipeline("cpu").run(request_for(photo, texture="none"), recording_context()).mesh
    top = mesh.vertices[mesh.vertices[:, 2] > 0.3]
    bottom = mesh.vertices[mesh.vertices[:, 2] < -0.3]
    assert np.ptp(top[:, 0]) > 1.5 * np.ptp(bottom[:, 0])


def test_cancel_is_honoured_between_steps():
    with pytest.raises(JobCancelled):
        SilhouetteReconstructPipeline("cpu").run(request_for(disc_png()), recording_context(cancel_after=2))


def test_example_mug_default_quality():
    data = open("examples/mug.png", "rb").read()
    output = SilhouetteReconstructPipeline("cpu").run(request_for(data, quality="default"), recording_context())
    assert 1000 < output.mesh.n_triangles <= 20_000
    texture = np.asarray(Image.open(io.BytesIO(output.mesh.texture_png)))
    assert texture.shape == (640, 640, 3)  # the default preset's texture_size
    # the mug is blue: its texture is mostly blue
    assert texture[..., 2].mean() > texture[..., 0].mean()


# ---------------------------------------------------------------------- the outline solid


def striped_bottle_png(size=160):
    """A bottle-like outline (a surface of revolution) in red and blue bands, on transparency."""
    yy, xx = np.mgrid[0:size, 0:size]
    t = (yy - 20) / (size - 40)
    radius = np.where(t < 0.35, 14, 14 + 34 * np.clip((t - 0.35) / 0.2, 0, 1))
    body = (np.abs(xx - size / 2 + 0.5) < radius) & (t >= 0) & (t <= 1)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[body] = (40, 60, 210, 255)
    rgba[body & ((yy // 12) % 2 == 0)] = (210, 40, 40, 255)
    return encoded_png(rgba), rgba


def test_outline_of_a_bottle_is_a_surface_of_revolution():
    data, _ = striped_bottle_png()
    output = OutlineReconstructPipeline("cpu").run(request_for(data, quality="default", texture="none"),
                                                   recording_context())
    assert output.metadata["solid"] == "surface of revolution"
    v = output.mesh.vertices
    # round in plan: as deep as it is wide at every height of the body
    for z in (-0.3, 0.0, 0.3):
        ring = v[np.abs(v[:, 2] - z) < 0.02]
        assert np.ptp(ring[:, 1]) == pytest.approx(np.ptp(ring[:, 0]), rel=0.06)


def shaded_oval_png(size=160, half_width=60, half_height=34):
    """A pebble-like oval nearly twice as wide as it is tall, shaded top-lit, without a rim, on
    transparency."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    u, v = (xx - size / 2) / half_width, (yy - size / 2) / half_height
    inside = u ** 2 + v ** 2 <= 1
    rgba = np.zeros((size, size, 4), np.uint8)
    shade = np.clip(200 - 80 * v, 0, 255)
    rgba[inside] = np.stack([shade, shade * 0.9, shade * 0.7, np.full_like(shade, 255)], -1)[inside]
    return encoded_png(rgba)


def test_a_rounded_outline_without_a_rim_is_inflated_as_deep_as_it_is_thick():
    """An oval's outline is mirror-symmetric, so it passes for a surface of revolution, which would
    make it a disc as deep as it is wide; a pebble or a lemon is as deep as it is thick."""
    output = OutlineReconstructPipeline("cpu").run(request_for(shaded_oval_png(), quality="default", texture="none"),
                                                   recording_context())
    assert output.metadata["solid"] == "inflation" and output.metadata["rounded"] > 0.98
    width, depth, height = np.ptp(output.mesh.vertices, axis=0)
    assert height == pytest.approx(34 / 60 * width, rel=0.05)
    assert depth == pytest.approx(height, rel=0.15)


def capsule_png(length: int, thickness: int, size=160):
    """A bar with rounded ends, ``length`` by ``thickness`` pixels, level, shaded round (lit from
    above: not a box's flat face), on transparency."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    half = (length - thickness) / 2
    along = np.clip(np.abs(xx - size / 2), 0, half)
    inside = np.hypot(np.abs(xx - size / 2) - along, yy - size / 2) <= thickness / 2
    rgba = np.zeros((size, size, 4), np.uint8)
    shade = np.clip(230 - 160 * (yy - size / 2 + thickness / 2) / thickness, 0, 255)
    rgba[inside] = np.stack([shade, shade, shade * 0.9, np.full_like(shade, 255)], -1)[inside]
    return encoded_png(rgba)


def test_an_outline_far_wider_than_tall_is_inflated_not_revolved_into_a_disc():
    """An airplane, a pen or a car seen from its side has a mirror-symmetric outline; revolved, it
    would be a flying saucer as deep as it is wide."""
    def run(data):
        return OutlineReconstructPipeline("cpu").run(request_for(data, quality="default", texture="none"),
                                                     recording_context())

    bar = run(capsule_png(144, 22))
    assert bar.metadata["solid"] == "inflation" and bar.metadata["too_wide_to_revolve"] > 5
    width, depth, height = np.ptp(bar.mesh.vertices, axis=0)
    assert depth < 2 * height < 0.5 * width
    # three times as wide as tall it may be a turned object seen level (a mushroom's cap, a bowl)
    stub = run(capsule_png(120, 40))
    assert stub.metadata["solid"] == "surface of revolution" and "too_wide_to_revolve" not in stub.metadata


def test_a_portrait_photo_stored_on_its_side_comes_back_upright():
    """A phone held upright stores the bottle lying on its side, with EXIF orientation 6 (turn
    90° clockwise to show): the result is the upright bottle, a surface of revolution."""
    _, rgba = striped_bottle_png()
    lying = np.ascontiguousarray(np.rot90(rgba, 1))  # what the sensor recorded
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = encoded_png(lying, exif=exif.tobytes())
    output = OutlineReconstructPipeline("cpu").run(request_for(photo, quality="default", texture="none"),
                                                   recording_context())
    assert output.metadata["solid"] == "surface of revolution"
    extents = np.ptp(output.mesh.vertices, axis=0)
    assert extents[2] == pytest.approx(1.0, abs=1e-5) and extents[0] < 0.8  # tall, upright along Z
    assert any("EXIF orientation (6)" in note for note in output.metadata["input"]["notes"])


def test_result_seen_from_its_camera_is_the_photo():
    from backend.geometry.fidelity import mask_iou, project, silhouette
    from backend.segmentation import crop_to_object

    data, rgba = striped_bottle_png()
    output = OutlineReconstructPipeline("cpu").run(request_for(data, quality="default", texture="vertex"),
                                                   recording_context())
    camera, mesh = output.metadata["camera"], output.mesh
    assert camera["azimuth"] == 0.0 and camera["elevation"] == 0.0  # Blender's front view
    size = 128
    crop_rgb, crop_mask = crop_to_object(rgba, rgba[..., 3] >= 128, size)
    seen = silhouette(mesh.vertices, mesh.faces, camera, size)
    assert mask_iou(seen, crop_mask >= 0.5) >= 0.95
    assert output.metadata["fidelity"]["silhouette_iou"] >= 0.95
    # the side facing the camera wears the photo's own pixels
    pixels, _ = project(mesh.vertices, camera, size)
    facing = (mesh.normals[:, 1] < -0.7) & (crop_mask[np.clip(pixels[:, 1].round().astype(int), 0, size - 1),
                                                       np.clip(pixels[:, 0].round().astype(int), 0, size - 1)] > 0.99)
    cols, rows = np.clip(pixels[facing].round().astype(int), 0, size - 1).T
    photo = crop_rgb[rows, cols] * 255
    assert np.abs(mesh.colors[facing, :3].astype(float) - photo).mean() < 25


def test_hidden_side_continues_the_visible_colours():
    data = open("examples/mug.png", "rb").read()
    output = OutlineReconstructPipeline("cpu").run(request_for(data, quality="preview", texture="vertex"),
                                                   recording_context())
    mesh = output.mesh
    back = mesh.normals[:, 1] > 0.5  # facing away from the camera
    colours = mesh.colors[back, :3].astype(float)
    # a blue mug is blue all round: no grey or pink default on the side the photo never showed
    assert (colours[:, 2] > colours[:, 0] + 20).mean() > 0.9


def test_outline_surface_is_clean():
    from backend.geometry.surface_quality import surface_quality

    data = open("examples/mug.png", "rb").read()
    output = OutlineReconstructPipeline("cpu").run(request_for(data, quality="default", texture="none"),
                                                   recording_context())
    quality = surface_quality(output.mesh.vertices, output.mesh.faces)
    assert output.metadata["solid"] == "surface of revolution" and output.metadata["attached_parts"]
    assert quality.smallest_piece_share >= 0.002  # no scraps
    assert quality.sharp_edge_share < 0.02  # no fins or terraces


def test_a_vessels_cast_shadow_is_dropped_and_its_handle_kept():
    def solid_of(path):
        data = open(path, "rb").read()
        return OutlineReconstructPipeline("cpu").run(request_for(data, texture="none"), recording_context()).metadata

    vase, mug = solid_of("examples/vase_on_grey.jpg"), solid_of("examples/mug.png")
    assert vase["solid"] == "surface of revolution" and vase["cast_shadows_dropped"] == 1
    assert not vase["attached_parts"] and vase["fidelity"]["silhouette_iou"] >= 0.95
    assert mug["attached_parts"] and mug["cast_shadows_dropped"] == 0


def test_points_output_samples_the_same_solid_in_the_same_frame_with_the_photos_colours():
    request = request_for(disc_png())
    mesh = OutlineReconstructPipeline("cpu").run(request, recording_context()).mesh
    request.output = "points"
    output = OutlineReconstructPipeline("cpu").run(request, recording_context())
    cloud = output.mesh
    assert cloud.is_points and len(cloud.vertices) == 2 * 4_000  # twice the preview's face budget
    # the same surface: every point lies on the mesh, and the two fill the same box
    from scipy.spatial import cKDTree

    dense, _ = trimesh.sample.sample_surface(trimesh.Trimesh(mesh.vertices, mesh.faces), 60_000, seed=1)
    distance, _ = cKDTree(dense).query(cloud.vertices)
    assert np.percentile(distance, 99) < 0.015
    assert np.abs((cloud.vertices.max(0) - cloud.vertices.min(0)) - (mesh.vertices.max(0) - mesh.vertices.min(0))).max() < 0.03
    # left half red, right half green, as in the photo
    left, right = cloud.colors[cloud.vertices[:, 0] < -0.2, :3], cloud.colors[cloud.vertices[:, 0] > 0.2, :3]
    assert left[:, 0].mean() > 150 > left[:, 1].mean() and right[:, 1].mean() > 120 > right[:, 0].mean()
    assert output.metadata["fidelity"]["silhouette_iou"] > 0.9
    assert {"segment_s", "solid_s", "mesh_s", "texture_s", "total_s"} <= set(output.metadata["timings_s"])


def test_a_can_photographed_from_above_comes_back_upright_and_seen_from_above():
    from backend.geometry.fidelity import mask_iou, silhouette
    from backend.segmentation import crop_to_object
    from test_outline import can_from_above

    rgb, mask = can_from_above(35.0)
    rgba = np.concatenate([rgb * 255, (mask > 0.5)[..., None] * 255.0], -1).astype(np.uint8)
    photo = encoded_png(rgba)
    events = []
    output = OutlineReconstructPipeline("cpu").run(request_for(photo, quality="default", texture="none"),
                                                   recording_context(events=events))
    camera, v = output.metadata["camera"], output.mesh.vertices
    assert output.metadata["rim"]["elevation"] == pytest.approx(35.0, abs=4.0)
    assert camera["elevation"] == pytest.approx(35.0, abs=4.0)
    # seen from the reported camera it is the photo
    _, crop_mask = crop_to_object(rgba, rgba[..., 3] >= 128, 128)
    assert mask_iou(silhouette(v, output.mesh.faces, camera, 128), crop_mask >= 0.5) >= 0.95
    assert output.metadata["fidelity"]["silhouette_iou"] >= 0.95
    # upright: a cylinder 70 high and 80 across stands on Blender's floor (Z up), as round in
    # plan as it is wide
    width, depth, height = np.ptp(v, axis=0)
    assert height / width == pytest.approx(70 / 80, rel=0.1)
    assert depth == pytest.approx(width, rel=0.06)
    # and so is the preview that came before it
    preview = [mesh for kind, mesh in events if kind == "preview"][0].vertices
    width, depth, height = np.ptp(preview, axis=0)
    assert height / width == pytest.approx(70 / 80, rel=0.15)


def test_an_open_vessel_photographed_from_above_comes_back_hollow_and_a_closed_one_solid():
    from test_outline import shaded_vessel_from_above

    volumes = {}
    for opening in (True, False):
        rgb, mask = shaded_vessel_from_above(30.0, opening=opening)
        rgba = np.concatenate([rgb * 255, (mask > 0.5)[..., None] * 255.0], -1).astype(np.uint8)
        photo = encoded_png(rgba)
        output = OutlineReconstructPipeline("cpu").run(request_for(photo, quality="default", texture="none"),
                                                       recording_context())
        assert output.metadata["rim"]["opening"]["open"] is opening
        assert output.metadata["fidelity"]["silhouette_iou"] >= 0.95
        mesh = trimesh.Trimesh(output.mesh.vertices, output.mesh.faces)
        volumes[opening] = mesh.volume / mesh.convex_hull.volume
    assert volumes[False] > 0.9 and volumes[True] < 0.5


def test_the_parts_of_a_vessel_seen_level_are_inflated_as_one_outline():
    # a body with a big lug on the left and a small one on the right, lower: the small one is as
    # thick as the one inflation of both parts makes it, not as its own inflation would
    from backend.geometry.outline import fit_revolution, revolution_field

    size, grid = 128, 64
    mask = np.zeros((size, size))
    mask[20:110, 44:84] = 1.0
    mask[45:65, 30:44] = 1.0
    mask[85:91, 84:94] = 1.0
    rgb = np.full((size, size, 3), 0.6)
    solid = OutlineReconstructPipeline("cpu").solid(rgb, mask, grid, 1.0)
    fit = fit_revolution(mask)
    parts = fit.attached
    assert solid.metadata["attached_parts"] and solid.metadata["rim"] is None
    joint, _ = inflate_field(parts.astype(np.float64), grid, 1.0)
    assert np.allclose(solid.field, np.maximum(revolution_field(fit, size, grid), joint))


def test_a_box_comes_back_as_a_box_upright_and_seen_through_its_camera():
    from backend.geometry.fidelity import camera_position, mask_iou, project, silhouette
    from backend.segmentation import crop_to_object
    from test_cuboid import box_photo

    dims = np.array([1.0, 0.6, 0.45])
    rgba, _ = box_photo(dims, yaw=35.0, elevation=25.0, fov=45.0)
    photo = encoded_png(rgba)
    events = []
    output = OutlineReconstructPipeline("cpu").run(request_for(photo, quality="default", texture="vertex"),
                                                   recording_context(events=events))
    meta, mesh = output.metadata, output.mesh
    assert meta["solid"] == "box"
    camera = meta["camera"]
    assert camera["elevation"] == pytest.approx(25.0, abs=1.5)
    assert camera["fov"] > 10  # the near camera it was fitted through, not a distant one
    # seen from the reported camera it is the photo's outline, and the faces it sees wear the
    # photo's own pixels
    size = 128
    crop_rgb, crop_mask = crop_to_object(rgba, rgba[..., 3] >= 128, size)
    assert mask_iou(silhouette(mesh.vertices, mesh.faces, camera, size), crop_mask >= 0.5) >= 0.95
    assert meta["fidelity"]["silhouette_iou"] >= 0.95
    pixels, _ = project(mesh.vertices, camera, size)
    cols, rows = np.clip(pixels.round().astype(int), 0, size - 1).T
    towards_camera = np.einsum("ij,ij->i", mesh.normals, camera_position(camera) - mesh.vertices)
    facing = (crop_mask[rows, cols] > 0.99) & (towards_camera > 0.3 * np.linalg.norm(camera_position(camera) - mesh.vertices, axis=1))
    assert facing.sum() > 50
    assert np.abs(mesh.colors[facing, :3].astype(float) - crop_rgb[rows[facing], cols[facing]] * 255).mean() < 20
    # upright on Blender's floor: turned about Z only, its footprint and height in proportion
    from scipy.spatial import ConvexHull

    v = mesh.vertices.astype(np.float64)
    height = np.ptp(v[:, 2])
    footprint = ConvexHull(v[:, :2]).volume
    assert height / np.sqrt(footprint) == pytest.approx(dims[2] / np.sqrt(dims[0] * dims[1]), rel=0.08)
    top = v[:, 2] > v[:, 2].max() - 0.01 * height
    assert ConvexHull(v[top][:, :2]).volume == pytest.approx(footprint, rel=0.1)  # a flat top as big as its base


def test_a_box_with_studs_is_one_closed_piece_with_the_studs_on_its_top():
    """Seen square-on, a brick's outline is its front face with its studs on top: the box as deep
    as it is wide, and the studs built on their own, each as deep as it is wide, standing on its
    top in one piece with it."""
    import trimesh

    from backend.geometry.fidelity import mask_iou, silhouette
    from backend.segmentation import crop_to_object
    from test_cuboid import studded_box_photo

    rgba = studded_box_photo()
    photo = encoded_png(rgba)
    output = OutlineReconstructPipeline("cpu").run(request_for(photo, quality="default", texture="none"),
                                                   recording_context())
    meta, mesh = output.metadata, output.mesh
    assert meta["solid"] == "box" and meta["box"]["parts"] == 2
    size = 128
    _, crop_mask = crop_to_object(rgba, rgba[..., 3] >= 128, size)
    assert mask_iou(silhouette(mesh.vertices, mesh.faces, meta["camera"], size), crop_mask >= 0.5) >= 0.95
    surface = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    assert len(surface.split(only_watertight=False)) == 1
    v = mesh.vertices.astype(np.float64)
    height = np.ptp(v[:, 2])
    box_top = v[:, 2].min() + height / (1 + 0.08 / 0.45)  # the studs stand 0.08 of the width on 0.45
    studs = v[v[:, 2] > box_top + 0.3 * (v[:, 2].max() - box_top)]
    # two studs, each as deep as a good share of its width where it stands on the top
    assert np.ptp(studs[:, 1]) > 0.5 * 0.2 * np.ptp(v[:, 0])
    assert np.ptp(studs[:, 1]) < 0.5 * np.ptp(v[:, 1])


def test_a_box_with_studs_wears_the_studs_own_colours_and_its_unseen_top_the_front_s():
    """The studs are in the photo: their front wears their own pixels. The box's top is not (seen
    level): it wears the front's, mirrored across their edge, as a plain box's does, not the
    studs' colours smeared through it."""
    from test_cuboid import studded_box_photo

    rgba = studded_box_photo(stud_colour=(200, 30, 30))
    photo = encoded_png(rgba)
    output = OutlineReconstructPipeline("cpu").run(request_for(photo, quality="default", texture="vertex"),
                                                   recording_context())
    mesh = output.mesh
    assert output.metadata["box"]["parts"] == 2
    v, colours = mesh.vertices.astype(np.float64), mesh.colors[:, :3].astype(np.float64)
    red = (colours[:, 0] > 150) & (colours[:, 1] < 90)
    up = mesh.normals[:, 2] > 0.9
    box_top = np.median(v[up & (v[:, 2] < v[:, 2].max() - 0.02), 2])
    studs = v[:, 2] > box_top + 0.4 * (v[:, 2].max() - box_top)
    facing = studs & (mesh.normals[:, 1] < -0.5)  # the studs' fronts, towards the camera (-y)
    assert facing.sum() > 10 and red[facing].mean() > 0.9
    top = up & (np.abs(v[:, 2] - box_top) < 0.005)
    assert top.sum() > 100 and red[top].mean() < 0.05


def test_a_box_whose_top_passes_for_a_rim_is_still_a_box():
    from backend.geometry.outline import find_rim, fit_revolution
    from backend.segmentation import crop_to_object, segment

    data = open("tests/data/box_on_a_floor.jpg", "rb").read()
    image = decode_image(data, max_pixels=ServiceLimits().max_image_pixels)
    rgb, mask = crop_to_object(image.rgba, segment(image.rgba, image.has_alpha).mask, 192)
    assert find_rim(rgb, mask, fit_revolution(mask)) is not None  # what a vessel's test sees in it
    output = OutlineReconstructPipeline("cpu").run(request_for(data, quality="default", texture="none"),
                                                   recording_context())
    assert output.metadata["solid"] == "box"
    assert output.metadata["camera"]["elevation"] == pytest.approx(21.7, abs=3.0)  # rendered from 21.7°


def test_a_can_whose_rim_does_not_show_stands_upright_when_its_elevation_is_known():
    """A can whose lid is the wall's colour shows no rim: built level, its axis would lean towards
    the camera. Given the elevation (`auto` passes the model's estimate), it is the tilted surface
    of revolution, upright, and still the photo from the reported camera."""
    from test_outline import can_from_above

    rgb, mask = can_from_above(35.0)
    rgb[mask > 0.5] = (0.9, 0.5, 0.2)
    rgba = np.concatenate([rgb * 255, (mask > 0.5)[..., None] * 255.0], -1).astype(np.uint8)
    photo = encoded_png(rgba)
    pipe = OutlineReconstructPipeline("cpu")
    req = request_for(photo, quality="default", texture="none")
    level = pipe.shape(req, recording_context())
    assert level.elevation == 0.0 and level.solid_metadata["rim"] is None
    lifted = pipe.lifted(level, req, recording_context(), 35.0, "a test's estimate")
    assert lifted.elevation == 35.0 and lifted.solid_metadata["elevation_from"] == "a test's estimate"
    output = pipe.finish(lifted, req, recording_context())
    assert output.metadata["camera"]["elevation"] == pytest.approx(35.0)
    assert "a test's estimate" in output.metadata["camera"]["note"]
    assert output.metadata["fidelity"]["silhouette_iou"] >= 0.95
    width, depth, height = np.ptp(output.mesh.vertices, axis=0)
    assert height / width == pytest.approx(70 / 80, rel=0.1)
    assert depth == pytest.approx(width, rel=0.06)
    # an outline that is no surface of revolution is extruded straight back, whatever the height
    ell = np.zeros((128, 128, 4), np.uint8)
    ell[20:110, 30:60] = ell[80:110, 30:100] = (120, 90, 200, 255)
    photo = encoded_png(ell)
    req = request_for(photo, texture="none")
    flat = pipe.shape(req, recording_context())
    inflated = pipe.lifted(flat, req, recording_context(), 20.0, "a test's estimate")
    assert inflated.solid_metadata["solid"] == "inflation" and inflated.elevation == 20.0
    assert np.allclose(inflated.vertices, flat.vertices)
