"""Single-view reconstruction from the object's outline: the silhouette baseline and the
outline solid.

**Silhouette inflation** (the classical baseline): the silhouette is inflated into a solid whose
half-thickness at a pixel follows a circular profile of that pixel's distance to the outline (as
in sketch-based modelling: a disc becomes a sphere, a bar a cylinder). It knows nothing about
object categories, so it cannot recover concavities (the inside of a mug) or parts hidden from
view; it is the "visual hull of the input view" baseline in the reconstruction benchmark.

**Outline solid** (the default): the same, except that an outline which is that of a surface of
revolution (a vessel, a bottle, a can, a lamp: `backend.geometry.outline`) becomes that surface,
with parts outside its body (a handle, a spout) inflated on their own; an outline that is an
ellipse and shows no rim (a fruit, a pebble) stays inflated (`ROUNDED_OUTLINE`).

Both build the object in the photo's camera frame (x right, y away from the camera, z up), so
the result seen from the front (Blender's numpad 1) is the photo's view, and both report that
camera in ``metadata["camera"]`` (`backend.geometry.fidelity`) with how well the result explains
the photo's outline from it (``metadata["fidelity"]``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np

from backend.geometry.cuboid import Cuboid, box_mesh, cuboid_field, fit_cuboid, fold_hidden, project
from backend.geometry.fidelity import POOR_FIDELITY, silhouette_fidelity
from backend.geometry.finish import baked_texture_error, finish_mesh
from backend.geometry.layers import image_to_grid, inflation_profile
from backend.geometry.mesh_ops import clean_mesh, decimate, extract_surface, normalise_unit
from backend.geometry.outline import (
    RevolutionFit,
    Rim,
    body_aspect,
    ellipse_iou,
    find_rim,
    fit_revolution,
    revolution_field,
    tilted_revolution_field,
    top_ellipse,
)
from backend.geometry.texture import ColorFn
from backend.pipelines.base import JobContext, Pipeline, PipelineOutput
from backend.pipelines.reconstruct.colour import sample_bilinear
from backend.pipelines.reconstruct.inputs import find_object
from backend.pipelines.reconstruct.presets import point_count
from backend.protocol import MeshPayload
from backend.requests import ReconstructRequest
from backend.segmentation import crop_square, crop_to_object


@dataclass(frozen=True)
class SilhouettePreset:
    image_size: int
    """Side of the square crop the silhouette is measured on."""
    grid: int
    """Marching-cubes grid resolution per axis."""
    max_faces: int
    """Faces kept after decimation (before UV unwrapping)."""
    texture_size: int
    """Side of the baked texture (1.25 times a power of two: see `ModelPreset.texture_size`)."""
    thickness: float = 1.0
    """Depth of the inflation relative to a circular cross-section."""


PRESETS = {
    "preview": SilhouettePreset(image_size=96, grid=48, max_faces=4_000, texture_size=320),
    "default": SilhouettePreset(image_size=192, grid=96, max_faces=10_000, texture_size=640),
    "high": SilhouettePreset(image_size=320, grid=160, max_faces=60_000, texture_size=1280),
}

CAMERA_FOV = 1.0
"""Field of view (degrees) reported for the camera: the outline solids extrude the outline straight
back, as a distant camera sees it, so the reported camera is a long lens framing the crop (long
enough that a layered solid deeper than it is wide shows no perspective from it)."""

ROUNDED_OUTLINE = 0.96
"""IoU with its own ellipse (`ellipse_iou`) from which an outline that shows no rim is a rounded
body's (a fruit, a pebble, a tree's crown): its depth, which one view cannot show, is taken as
the inflation's, as deep as the outline is thick, rather than as a surface of revolution's, as
deep as each row is wide (default preset: the real split's lemon, 0.98-0.99, F@2 % 0.90 -> 0.95
with F@5 % 1.0 either way; on the held-in procedural split, a pebble 0.52 -> 0.58 F@5 %, a
fruit 1.0 either way). Just under it: a cupcake seen from 38-44 degrees above
(0.952-0.956, the real split and a mining photo), whose revolved solid scored 0.90 F@5 % against
0.87 inflated, and the real asteroid seen from the side (0.954), 0.94 revolved and 0.99
inflated; nothing else of the real, box or mining photos reaches 0.95 at the default crop."""

MAX_LEVEL_DISC = 5.0
"""Widest body (its width over its height) that an outline showing no rim is taken as a surface
of revolution for; a wider one is inflated. Revolved, it would be a disc thinner than a fifth of
its width seen within about 11 degrees of level (seen from higher, its top would show, and its
outline would be at most 1 / sin(elevation) as wide as tall): a plate or a coin, which few photos
show so level. The same outline is far more often an elongated object's seen from its side, and
that disc is a flying saucer (a baguette or a rolling pin lying down). On the benchmarks only one
photo is so wide, the real split's level airplane whose mask is a band of floor below it (6.5
times as wide as tall): 0.71 F@5 % revolved, 0.79 inflated (default preset, 2026-12-07). The
widest bodies read as surfaces of revolution below it: a sofa's back, a bowl and a gear seen
level, and a mushroom's cap (3.4-3.8 times as wide as tall, held-in and real photos), whose
revolved solids are right."""

MIN_TILT = 3.0
"""Degrees: a surface of revolution seen from less high than this is built level."""

TEXTURE_STEPS = {"unwrap": (0.7, "unwrapping UVs"), "bake": (0.85, "baking the texture")}
"""Progress reported at each step of `finish_mesh`."""


def inflate_field(mask: np.ndarray, grid: int, thickness: float = 1.0, depth: np.ndarray | None = None,
                  middle: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Silhouette mask [S,S] (float 0..1) → inside-positive field [G,D,G] over [-0.5,0.5] in x and z
    and the ``depth`` nodes in y (default: G nodes over [-0.5,0.5]).

    The inflation is symmetric about the depth ``middle`` [G, G] at each (x, z) grid column
    (default 0: the image plane). Returns the field and the largest half-thickness.
    """
    from scipy import ndimage

    size = mask.shape[0]
    smooth = ndimage.gaussian_filter(mask.astype(np.float64), sigma=max(0.5, size / 160.0)) >= 0.5
    outside = ndimage.distance_transform_edt(~smooth) / size
    profile = inflation_profile(smooth) * thickness
    height = np.where(smooth, profile, -outside)  # [row (down), col (right)]
    height_xz = image_to_grid(height, grid)
    depth = np.linspace(-0.5, 0.5, grid) if depth is None else np.asarray(depth)
    middle = np.zeros((grid, grid)) if middle is None else np.asarray(middle)
    field = height_xz[:, None, :] - np.abs(depth[None, :, None] - middle[:, None, :])
    # The profile rises steeply from the outline, so between a node inside and one outside the
    # field crosses zero next to the outer node: the silhouette came out up to a voxel too wide
    # all round and narrow gaps closed. The outline's own distance crosses zero where the outline
    # is; taking the smaller of the two puts the side walls there, and leaves the inflation as it
    # was everywhere else.
    return np.minimum(field, outline_distance(smooth, grid)[:, None, :]), float(profile.max())


OUTLINE_MARGIN = 0.25
"""Voxels by which the side walls stand outside the outline. Real split, silhouette IoU from the
reported camera (the true masks inflated): 0.961 without the outline's own walls, 0.973 with them
at the outline, 0.977 a quarter voxel out (74 of 81 photos at 0.95 or more), 0.976 half a voxel
out."""

THIN_MARGIN = 1.0
"""Voxels by which the walls of parts under two voxels wide (`thin_parts`) stand outside them: a
part narrower than a voxel may hold no grid node at all, and an ant's antennae came apart in
scraps (the real split's inflated true masks: 25 mesh pieces more than outline pieces with
`OUTLINE_MARGIN` alone, 13 before the outline's walls, 14 with this, at the same IoU)."""


def outline_distance(inside: np.ndarray, grid: int) -> np.ndarray:
    """The signed distance to the outline of the bool mask ``inside`` [S, S] (positive inside, in
    crop sides) plus `OUTLINE_MARGIN` voxels, or, near its parts under two voxels wide, the
    distance to those plus `THIN_MARGIN` voxels, at the nodes of a grid of ``grid`` per side ->
    [G, G] indexed (x, z)."""
    voxel = 1.0 / (grid - 1)
    walls = image_to_grid(signed_distance(inside), grid) + OUTLINE_MARGIN * voxel
    thin = thin_parts(inside, grid)
    if thin.any():
        walls = np.maximum(walls, image_to_grid(signed_distance(thin), grid) + THIN_MARGIN * voxel)
    return walls


def span_discs_field(parts: np.ndarray, grid: int, depth: np.ndarray) -> np.ndarray:
    """Inside-positive field [G, D, G] over the ``depth`` nodes of the bool mask ``parts`` [S, S]
    as solids as deep as they are wide: each row's span a disc across it (a stud a cylinder, a
    knob a solid of revolution), its walls at the outline as the inflation's. For parts standing on
    a box, whose depth is guessed the same way; inflated instead, a stud wider than it is tall came
    out a flattened pill."""
    from scipy import ndimage

    size = parts.shape[0]
    spans, count = ndimage.label(parts, structure=[[0, 0, 0], [1, 1, 1], [0, 0, 0]])
    if count == 0:
        return np.full((grid, len(depth), grid), -1.0)
    columns = np.broadcast_to(np.arange(size)[None, :], parts.shape)
    index = np.arange(1, count + 1)
    first = np.asarray(ndimage.minimum(columns, spans, index))
    last = np.asarray(ndimage.maximum(columns, spans, index)) + 1
    # every pixel takes the disc of the span nearest to it, so the field runs on smoothly outside
    _, (rows, cols) = ndimage.distance_transform_edt(spans == 0, return_indices=True)
    nearest = spans[rows, cols] - 1
    centre = image_to_grid((first + last)[nearest] / (2 * size) - 0.5, grid)
    radius = image_to_grid((last - first)[nearest] / (2 * size), grid)
    x = np.linspace(-0.5, 0.5, grid)[:, None, None]
    field = radius[:, None, :] - np.hypot(x - centre[:, None, :], np.asarray(depth)[None, :, None])
    return np.minimum(field, outline_distance(parts, grid)[:, None, :])


def signed_distance(inside: np.ndarray) -> np.ndarray:
    """[S, S] distance to the outline of the bool mask, positive inside, in units of its side: the
    outline lies half a pixel beyond the centre of the last pixel in."""
    from scipy import ndimage

    return np.where(inside, ndimage.distance_transform_edt(inside) - 0.5,
                    0.5 - ndimage.distance_transform_edt(~inside)) / inside.shape[0]


def thin_parts(inside: np.ndarray, grid: int) -> np.ndarray:
    """The pixels of the bool mask that a disc a voxel in radius cannot reach from inside it: the
    parts under about two voxels wide."""
    from scipy import ndimage
    from skimage.morphology import disk

    radius = max(1, round(inside.shape[0] / (grid - 1)))
    return inside & ~ndimage.binary_opening(inside, structure=disk(radius))


@dataclass
class OutlineSolid:
    """A solid built from one crop, in the crop's frame (x right, y away from the camera, z up;
    the crop is [-0.5, 0.5] in x and z)."""

    field: np.ndarray
    """[X, Y, Z] inside-positive values on grid nodes spanning ``lo``..``hi``."""
    metadata: dict
    object_mask: np.ndarray
    """The mask of what it took for the object (a vessel's cast shadow is not)."""
    lo: np.ndarray = dataclasses.field(default_factory=lambda: np.full(3, -0.5))
    hi: np.ndarray = dataclasses.field(default_factory=lambda: np.full(3, 0.5))
    elevation: float = 0.0
    """Degrees by which the photo looks down on the solid; the result is turned upright by it."""
    box: Cuboid | None = None
    """The box the solid is, when it is one: its exact surface replaces marching cubes over
    ``field``, it is seen through the near camera fitted with it rather than a distant one, and
    its hidden faces wear the visible ones opposite them. A box with parts on its top
    (`Cuboid.parts`) is meshed from ``field``, box and parts together."""


class SilhouetteReconstructPipeline(Pipeline):
    task = "reconstruct"
    method = "silhouette inflation (baseline)"

    def read(self, rgb: np.ndarray, mask: np.ndarray, principal: tuple[float, float]) -> OutlineReading | None:
        """What the outline shows, whatever the grid its solid is built on (the baseline reads
        nothing: it inflates every outline)."""
        return None

    def solid(self, rgb: np.ndarray, mask: np.ndarray, grid: int, thickness: float,
              principal: tuple[float, float] = (0.0, 0.0), elevation: float = 0.0,
              reading: OutlineReading | None = None) -> OutlineSolid:
        """The object's solid from the crop (colours and mask); ``principal``: the photo's centre
        in the crop's frame (x, z crop sides), for a solid seen through a near camera;
        ``elevation``: degrees the photo is known to look down by (the baseline: always level);
        ``reading``: `read`'s of this crop, when it was already read for a solid on another grid."""
        values, half_depth = inflate_field(mask, grid, thickness)
        return OutlineSolid(values, {"half_depth": round(half_depth, 4)}, mask)

    def run(self, request: ReconstructRequest, ctx: JobContext) -> PipelineOutput:
        return self.finish(self.shape(request, ctx), request, ctx)

    def shape(self, request: ReconstructRequest, ctx: JobContext) -> "SolidShape":
        """The decimated solid before texturing (level, unless the outline itself gives the
        elevation: `lifted` builds it for an elevation known from elsewhere)."""
        preset = PRESETS[request.common.quality]
        t0 = time.perf_counter()
        if len(request.images) > 1:
            ctx.warn(f"{self.method} uses the first of {len(request.images)} views only")
        image = request.images[0]
        ctx.progress("segment", 0.05, "finding the object")
        seg = find_object(image, ctx)
        rgb, mask = crop_to_object(image.rgba, seg.mask, preset.image_size)
        principal = photo_centre(seg.mask)
        timings = {"segment_s": time.perf_counter() - t0}
        return self._build(image, seg, rgb, mask, principal, preset, request, ctx, timings, 0.0)

    def lifted(self, shaped: "SolidShape", request: ReconstructRequest, ctx: JobContext, elevation: float,
               source: str) -> "SolidShape":
        """``shaped``'s photo built again for a camera looking down by ``elevation`` degrees, as
        ``source`` (words, for the metadata) estimates it."""
        lifted = self._build(shaped.image, shaped.segmentation, shaped.rgb, shaped.mask, shaped.principal,
                             shaped.preset, request, ctx, {"segment_s": shaped.timings["segment_s"]}, elevation)
        if lifted.elevation:
            lifted.solid_metadata["elevation_from"] = source
        return lifted

    def _build(self, image, seg, rgb: np.ndarray, mask: np.ndarray, principal: tuple[float, float], preset,
               request: ReconstructRequest, ctx: JobContext, timings: dict[str, float],
               elevation: float) -> "SolidShape":
        ctx.progress("inflate", 0.2, "building the solid from the outline")
        t1 = time.perf_counter()
        # the preview's solid and the result's read the same outline: once
        reading = self.read(rgb, mask, principal)
        coarse = self.solid(rgb, mask, max(24, preset.grid // 3), preset.thickness, principal, elevation, reading)
        vertices, faces = (box_mesh(coarse.box, 4) if coarse.box is not None and coarse.box.parts is None else
                           extract_surface(coarse.field, coarse.lo, coarse.hi))
        # upright like the result it previews
        ctx.preview_mesh(MeshPayload((vertices @ upright_rotation(coarse.elevation).T).astype(np.float32), faces))

        solid = self.solid(rgb, mask, preset.grid, preset.thickness, principal, elevation, reading)
        timings["solid_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        ctx.progress("mesh", 0.4, "extracting the surface")
        budget = request.face_budget or preset.max_faces
        if solid.box is not None and solid.box.parts is None:
            # flat faces, sharp edges: a grid on each face, enough for vertex colours
            vertices, faces = box_mesh(solid.box, int(np.clip(np.sqrt(budget / 12), 1, 32)))
        else:
            vertices, faces = extract_surface(solid.field, solid.lo, solid.hi)
            vertices, faces = clean_mesh(vertices, faces)
            ctx.check()
            vertices, faces = decimate(vertices, faces, budget)
        timings["mesh_s"] = time.perf_counter() - t2
        ctx.progress("mesh", 0.6, f"{len(faces)} triangles")
        return SolidShape(vertices, faces, rgb, mask, solid.object_mask, image, seg, preset, solid.metadata, timings,
                          principal, solid.elevation, solid.box)

    def finish(self, shaped: "SolidShape", request: ReconstructRequest, ctx: JobContext) -> PipelineOutput:
        timings, image, seg = shaped.timings, shaped.image, shaped.segmentation
        t3 = time.perf_counter()
        points = point_count(request, shaped.preset.max_faces)
        box = shaped.box
        perspective, principal = (box.perspective, box.principal) if box is not None else (0.0, (0.0, 0.0))
        colour = front_view_colour(shaped.rgb, shaped.mask, perspective, principal,
                                   None if box is None else partial(fold_hidden, box))
        mesh = finish_mesh(shaped.vertices, shaped.faces, colour, texture=request.texture,
                           texture_size=shaped.preset.texture_size,
                           on_step=lambda step: ctx.progress("texture", *TEXTURE_STEPS[step]), points=points)
        if box is not None and box.parts is None and not points:
            mesh.shading = "flat"
        texture_error = baked_texture_error(mesh, colour)
        upright = upright_rotation(shaped.elevation)
        mesh.vertices = (mesh.vertices @ upright.T).astype(np.float32)
        if mesh.normals is not None:
            mesh.normals = (mesh.normals @ upright.T).astype(np.float32)
        mesh.vertices, scale, centre = normalise_unit(mesh.vertices)
        camera = crop_camera(scale, centre, shaped.elevation, perspective, principal,
                             shaped.solid_metadata.get("elevation_from"))
        # a point cloud is judged by the surface it was sampled on
        surface = (shaped.vertices @ upright.T - centre) * scale if points else mesh.vertices
        fidelity = silhouette_fidelity(surface, shaped.faces if points else mesh.faces, camera, shaped.object_mask)
        if fidelity["silhouette_iou"] < POOR_FIDELITY:
            ctx.warn(f"the result explains the photo's outline poorly (silhouette IoU {fidelity['silhouette_iou']:.2f} "
                     "from the reported camera)")
        timings["texture_s"] = time.perf_counter() - t3
        timings["total_s"] = sum(timings.values())
        metadata = {
            "method": self.method,
            "segmentation": {"method": seg.method, "confidence": seg.confidence, "notes": seg.notes},
            "input": {"width": image.size[0], "height": image.size[1], "format": image.source_format,
                      "notes": image.warnings},
            "grid": shaped.preset.grid,
            "camera": camera,
            "fidelity": fidelity,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            **({"texture_error": round(texture_error, 2)} if texture_error is not None else {}),
            **shaped.solid_metadata,
        }
        return PipelineOutput(mesh, metadata)


@dataclass
class SolidShape:
    """An outline solid's decimated surface before texturing, and what finishing it needs."""

    vertices: np.ndarray
    faces: np.ndarray
    rgb: np.ndarray
    mask: np.ndarray
    object_mask: np.ndarray
    image: Any
    segmentation: Any
    preset: Any
    solid_metadata: dict
    timings: dict[str, float]
    principal: tuple[float, float] = (0.0, 0.0)
    """The photo's centre in the crop's frame (`photo_centre`)."""
    elevation: float = 0.0
    """See `OutlineSolid.elevation`."""
    box: Cuboid | None = None
    """See `OutlineSolid.box`."""


@dataclass(frozen=True)
class OutlineReading:
    """What the outline solid reads from a crop before it builds anything (`OutlineReconstructPipeline.read`)."""
    box: Cuboid | None
    """The box the outline and its creases show, or None; then the rest is read."""
    fit: RevolutionFit | None = None
    """The outline as a surface of revolution, or None."""
    rim: Rim | None = None
    """That surface's rim, when the photo shows it."""
    rounded: float = 0.0
    """The outline's IoU with its own ellipse (`ellipse_iou`), read when no rim shows."""


class OutlineReconstructPipeline(SilhouetteReconstructPipeline):
    """The outline solid: a box when the outline and its creases are a box's, else a surface of
    revolution when the outline is one (tilted by its rim's elevation when the photo shows the
    rim), else the inflation, which also takes an outline that is an ellipse without a rim
    (`ROUNDED_OUTLINE`) and one far wider than tall without a rim (`MAX_LEVEL_DISC`). The box
    comes first because its test is the stricter: six straight sides met by a box's corners seen
    through a fitted camera to a pixel and a half, and creases between its faces, where a rim's
    ellipse need only follow the outline to 8 % of its radius (a box's top face seen from above
    passed for one) and a level surface of revolution only needs a mirror-symmetric outline (a
    box seen corner-on)."""

    method = "outline solid (surface of revolution, box or inflation)"

    def read(self, rgb: np.ndarray, mask: np.ndarray, principal: tuple[float, float]) -> OutlineReading:
        box = fit_cuboid(rgb, mask, principal)
        if box is not None:
            return OutlineReading(box)
        fit = fit_revolution(mask)
        rim = find_rim(rgb, mask, fit) if fit is not None else None
        return OutlineReading(None, fit, rim, ellipse_iou(mask >= 0.5) if rim is None else 0.0)

    def solid(self, rgb: np.ndarray, mask: np.ndarray, grid: int, thickness: float,
              principal: tuple[float, float] = (0.0, 0.0), elevation: float = 0.0,
              reading: OutlineReading | None = None) -> OutlineSolid:
        """As the baseline's; a box's or a rim's own elevation overrides ``elevation``."""
        reading = reading if reading is not None else self.read(rgb, mask, principal)
        box, fit, rim, rounded = reading.box, reading.fit, reading.rim, reading.rounded
        if box is not None:
            values, lo, hi = cuboid_field(box, grid)
            sides = np.linalg.norm(box.axes, axis=1)
            metadata = {"solid": "box", "box": {"sides": (sides / sides.max()).round(3).tolist(),
                                                "outline_iou": round(box.outline_iou, 3),
                                                "corner_error": round(box.corner_error, 4),
                                                "crease_contrast": round(box.crease_contrast, 3),
                                                "other_reading_contrast": round(box.other_contrast, 3),
                                                "elevation": round(box.elevation, 1),
                                                **({} if box.depth_seen else {
                                                    "depth": "guessed: the photo shows one face square-on; "
                                                             "the box is as deep as it is wide"})}}
            if box.parts is not None:
                from scipy import ndimage

                # the parts as deep as they are wide, as the box is; the whole is meshed from the
                # field, as a box with studs or a knob is no longer one exact box
                parts = span_discs_field(box.parts, grid, np.linspace(lo[1], hi[1], values.shape[1]))
                metadata["box"]["parts"] = int(ndimage.label(box.parts)[1])
                return OutlineSolid(np.maximum(values, parts), metadata, mask, lo, hi, box.elevation, box)
            return OutlineSolid(values, metadata, mask, lo, hi, box.elevation, box)
        aspect = body_aspect(fit) if fit is not None and rim is None else 0.0
        wide = aspect > MAX_LEVEL_DISC
        if fit is None or rounded >= ROUNDED_OUTLINE or wide:
            inflated = super().solid(rgb, mask, grid, thickness)
            inflated.metadata["solid"] = "inflation"
            if rounded >= ROUNDED_OUTLINE:
                inflated.metadata["rounded"] = round(rounded, 3)
            if wide:
                inflated.metadata["too_wide_to_revolve"] = round(aspect, 2)
            # the outline extruded straight back is what a distant camera sees from any height
            inflated.elevation = elevation
            return inflated
        top = rim if rim is not None else top_ellipse(fit, elevation) if elevation >= MIN_TILT else None
        if top is None:
            values = revolution_field(fit, mask.shape[0], grid)
            lo, hi, elevation = np.full(3, -0.5), np.full(3, 0.5), 0.0
        else:
            values, lo, hi = tilted_revolution_field(fit, top, mask.shape[0], grid)
            elevation = top.elevation
        parts, shadows = attached_parts(rgb, fit)
        if parts.any():
            depth = np.linspace(lo[1], hi[1], values.shape[1])
            inflated, _ = inflate_field(parts.astype(np.float64), grid, thickness, depth,
                                        parts_middle(parts, values, depth, elevation))
            values = np.maximum(values, inflated)
        metadata = {"solid": "surface of revolution", "symmetry_iou": round(fit.symmetry_iou, 3),
                    "attached_parts": bool(parts.any()), "cast_shadows_dropped": shadows,
                    "rim": None if rim is None else {"elevation": round(rim.elevation, 1),
                                                     "contrast": round(rim.contrast, 3),
                                                     "opening": rim_opening(rim)}}
        return OutlineSolid(values, metadata, np.where(fit.attached & ~parts, 0.0, mask), lo, hi, elevation)


def rim_opening(rim: Rim) -> dict | None:
    """The metadata of what shows inside a rim: whether it was taken for an opening (the solid
    hollow) and the shading that said so."""
    if rim.opening is None:
        return None
    return {"open": rim.opening.open, "mirrored": round(rim.opening.mirrored, 3),
            "amplitude": round(rim.opening.amplitude, 3)}


def parts_middle(parts: np.ndarray, body: np.ndarray, depth: np.ndarray, elevation: float) -> np.ndarray:
    """[G, G] (x, z) depth of the attached parts' (bool [S,S]) mid-surface, for the ``body`` field
    [G,D,G] sampled at ``depth``: the image plane for a body seen level; seen from above, for each
    part, a plane through the body's middle where the part meets it, parallel to the body's axis
    (a handle's plane holds the axis, which leans towards the camera, and a spout at the rim meets
    the body behind the image plane). Each grid column takes the plane of the part nearest to it,
    so the field stays continuous between the parts."""
    from scipy import ndimage

    grid = body.shape[0]
    if not elevation:
        return np.zeros((grid, grid))
    size = parts.shape[0]
    g = np.linspace(-0.5, 0.5, grid)
    lean = np.tan(np.radians(elevation))
    inside = body > 0
    labels, count = ndimage.label(parts)
    planes = np.tile(-lean * g, (count + 1, 1))  # [label, z]
    for index in range(1, count + 1):
        part = labels == index
        rows, cols = np.nonzero(ndimage.binary_dilation(part, iterations=4) & ~part)
        ix = np.clip(np.round((cols + 0.5) / size * (grid - 1)).astype(int), 0, grid - 1)
        iz = np.clip(np.round((1 - (rows + 0.5) / size) * (grid - 1)).astype(int), 0, grid - 1)
        touching = inside[ix, :, iz]  # [pixels, D]
        met = touching.any(1)
        if met.any():
            centres = (touching[met] * depth).sum(1) / touching[met].sum(1)
            planes[index] = float(centres.mean()) - lean * (g - float(g[iz[met]].mean()))
    _, (near_row, near_col) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    nearest = labels[near_row, near_col]  # [S, S] the label of the nearest part's pixel
    node = np.clip(np.round((g + 0.5) * size - 0.5).astype(int), 0, size - 1)
    label_xz = nearest[node[::-1][None, :], node[:, None]]  # [x, z]: rows run down, z up
    return planes[label_xz, np.arange(grid)[None, :]]


SHADOW_DARKNESS = 0.7
"""A part lying on the ground line beside the body is taken for its cast shadow when it is darker
than this share of the body's median brightness."""


def attached_parts(rgb: np.ndarray, fit) -> tuple[np.ndarray, int]:
    """The parts outside a surface of revolution's body that belong to the object -> (bool mask,
    number of pieces dropped as cast shadows). Segmentation without alpha keeps the shadow a
    vessel casts on the floor; it is a low, dark piece at the foot of the body, where a handle or a
    spout is neither."""
    from scipy import ndimage

    labels, count = ndimage.label(fit.attached)
    if count == 0:
        return fit.attached, 0
    body_rows = np.nonzero(fit.radius > 0)[0]
    top, bottom = body_rows.min(), body_rows.max()
    height = bottom - top
    brightness = rgb.mean(axis=-1)
    # the body itself: within its radius of the axis, row by row (not the background beside it)
    columns = np.arange(fit.attached.shape[1])[None, :]
    body = np.abs(columns - fit.axis) < fit.radius[:, None]
    body_level = float(np.median(brightness[body]))
    keep = np.zeros_like(fit.attached)
    dropped = 0
    for index in range(1, count + 1):
        part = labels == index
        if part.sum() < 1e-3 * fit.attached.size:  # specks of segmentation noise
            continue
        rows = np.nonzero(part.any(1))[0]
        low = rows.min() > bottom - 0.3 * height and rows.max() >= bottom - 0.05 * height
        if low and float(np.median(brightness[part])) < SHADOW_DARKNESS * body_level:
            dropped += 1
            continue
        keep |= part
    return keep, dropped


def photo_centre(mask: np.ndarray) -> tuple[float, float]:
    """The photo's centre in the frame of the crop `crop_to_object` cuts round ``mask`` (the
    whole photo's mask): (x right, z up) in crop sides from the crop's centre."""
    top, left, side = crop_square(mask)
    height, width = mask.shape
    return (width / 2 - left) / side - 0.5, 0.5 - (height / 2 - top) / side


def upright_rotation(elevation: float) -> np.ndarray:
    """[3,3] from the crop's frame (x right, y away from the camera, z image up) to the output
    frame of a camera looking down by ``elevation`` degrees: there the camera's forward is
    (0, cos e, -sin e) and its up (0, sin e, cos e), so the object stands on the XY plane."""
    e = np.radians(elevation)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(e), np.sin(e)], [0.0, -np.sin(e), np.cos(e)]])


def crop_camera(scale: float, centre: np.ndarray, elevation: float = 0.0, perspective: float = 0.0,
                principal: tuple[float, float] = (0.0, 0.0), elevation_from: str | None = None) -> dict:
    """The camera that sees the crop (the square [-0.5,0.5] in x and z of the solid's frame) as
    the photo's crop, in the output frame (the solid turned upright by `upright_rotation`, then
    moved by -``centre`` and scaled by ``scale``): a distant one, or the near one of
    ``perspective`` and ``principal`` (`backend.geometry.cuboid.project`: a box's)."""
    side = scale  # the crop's side, 1 in the solid's frame
    fov = max(CAMERA_FOV, float(np.degrees(2 * np.arctan(perspective / 2))))
    near = fov > CAMERA_FOV
    axis = np.array([principal[0], 0.0, principal[1]]) if near else np.zeros(3)  # where it looks
    target = ((upright_rotation(elevation) @ axis - np.asarray(centre, dtype=np.float64)) * scale).tolist()
    distance = side / 2 / np.tan(np.radians(fov) / 2)
    how_high = (f"elevation from {elevation_from}" if elevation_from else
                "elevation from the rim's ellipse" if elevation else
                "elevation 0 unless a rim's ellipse shows how far above the camera was")
    note = ("the box's camera, fitted to its corners" if near else
            f"a distant camera: the solid extrudes the outline straight back; {how_high}")
    camera = {"azimuth": 0.0, "elevation": round(float(elevation), 2), "fov": round(fov, 3),
              "distance": round(float(distance), 4), "target": [round(float(t), 5) for t in target], "note": note}
    if near:  # the crop's centre, off the camera's axis
        camera["principal_offset"] = [round(float(principal[0]), 5), round(-float(principal[1]), 5)]
    return camera


def front_view_colour(rgb: np.ndarray, mask: np.ndarray, perspective: float = 0.0,
                      principal: tuple[float, float] = (0.0, 0.0),
                      fold: Callable[[np.ndarray], np.ndarray] | None = None) -> ColorFn:
    """Colour function that projects surface points onto the (front) input view, through the
    camera of ``perspective`` and ``principal`` (`backend.geometry.cuboid.project`; perspective 0:
    a distant one), after ``fold`` has moved them (a box's hidden faces onto the visible ones).

    Pixels outside the silhouette, and the outline's own pixels (blends of object and background
    in an anti-aliased photo), take the colour of the nearest pixel well inside it, so the
    background never bleeds onto the rim of the shape, which the sides see edge-on.
    """
    size = rgb.shape[0]
    filled = carried_colours(rgb, mask)

    def colour(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        # x runs along the image's columns, z up its rows (top row = z 0.5)
        seen = project(points if fold is None else fold(points), perspective, principal)
        uv = np.stack([(seen[:, 0] + 0.5) * size, (0.5 - seen[:, 1]) * size], axis=1)
        return sample_bilinear(filled, uv)

    return colour


def carried_colours(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[S, S, 3] the crop with every pixel outside the outline, and the outline's own pixels,
    given the colour of the nearest pixel well inside it."""
    from scipy import ndimage

    inside = ndimage.binary_erosion(mask >= 0.5, iterations=2)
    if not inside.any():  # a sliver thinner than the margin: keep what there is
        inside = mask >= 0.5
    _, (iy, ix) = ndimage.distance_transform_edt(~inside, return_indices=True)
    return rgb[iy, ix]
