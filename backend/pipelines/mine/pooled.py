"""One shape from all the photos of a cluster, their cameras fitted together.

No photo says where it was taken from, and no single photo says what its object's hidden side
looks like; but other photos of the cluster do. So:

1. **Candidates.** Each confidently segmented photo of the cluster (`carving_photos`; at most
   `CANDIDATES`, the most confident and largest first) becomes the outline solid
   (`backend.pipelines.reconstruct.silhouette.OutlineReconstructPipeline.solid`: a surface of
   revolution or an inflation of its outline), upright (a vessel whose rim shows is built about
   an axis tilted by the elevation the rim gives), its photo at azimuth 0 (from an elevation
   searched with the cameras); and the shape model's clean reconstructions
   (`backend.pipelines.mine.pipeline`).
2. **Cameras.** For a candidate, every photo of the cluster gets the viewpoint (azimuth every 10
   degrees, six elevations, no roll: photos are upright) from which the candidate's silhouette best
   matches its outline (`views.best_views`), then a finer search round it, framed as its crop
   frames the object.
3. **Choice.** The candidate whose silhouettes best explain the outlines of all the confident
   photos (mean IoU) is the cluster's shape: a solid that is right from its own side and wrong from
   the others (a cow's inflated side view, too thin seen from the front) loses to one that is right
   from every side. This is where pooling beats single-photo reconstruction: the other photos judge.
4. **Carving.** The chosen solid is cut by the outlines of the photos it explains well (a visual
   hull through their fitted cameras), and the cut is kept only when it explains the confident
   outlines better still (on the mining benchmark the cut mostly did not: the fitted cameras are
   too rough for a hull, and a hull of a few views is loose; docs/mining.md).

The fit of the final shape to each photo (silhouette IoU) is returned; the result's colour comes
from the photos that see each point (`colour`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from backend.pipelines.base import JobContext
from backend.pipelines.mine.views import (
    VOLUME_BOUND,
    DistantView,
    PoseGrid,
    best_views,
    crop_silhouettes,
    refine_views,
    silhouettes,
    soft_iou,
    view_axes,
)

CARVE_SIZE = 128
"""Side of the outline crops the hull is cut from."""

SEARCH_GRID = 40
"""Occupancy grid of the shapes the cameras are searched against."""

GUESS_SCALE = 0.75
"""Candidates are shrunk by this much so that they stay inside the volume's box whichever way the
search turns them (a unit box's diagonal is 1.7)."""

CANDIDATES = 6
"""Photos whose outline solids are tried as the cluster's shape (the most confidently segmented,
largest first)."""

WELL_EXPLAINED = 0.8
"""Silhouette IoU (at `SILHOUETTE_SIZE`) above which a photo's fitted camera is trusted to cut the
shape."""

CARVE_GAIN = 0.005
"""Carving is kept when it raises the mean IoU of the confident outlines by at least this."""

CARVE_CONFIDENCE = 0.9
"""Only photos whose object was found at least this confidently cut the shape (a transparent
background: 1; a plain backdrop: 0.9-1). Below it, segmentation on a busy background often takes
a shadow, the floor or half the object (on the mining benchmark a third of such masks overlap
the true object by under 0.6), and one wrong outline cuts away what every other photo shows.
The other photos still get a camera and say where the shape is seen (`carving_photos`)."""


@dataclass
class ClusterPhoto:
    """One photo of a cluster, cropped round its object."""

    name: str
    small_mask: np.ndarray
    """[S, S] float32 coverage at `SILHOUETTE_SIZE` (the camera search)."""
    carve_mask: np.ndarray
    """[C, C] float32 coverage at `CARVE_SIZE` (the hull)."""
    rgb: np.ndarray
    """[T, T, 3] float32 colours of the crop, the object's own pixels carried out past its outline."""
    solid_rgb: np.ndarray
    """[O, O, 3] crop the outline solid is built from."""
    solid_mask: np.ndarray
    """[O, O] its coverage."""
    colour_mask: np.ndarray
    """[T, T] coverage of the colour crop."""
    confidence: float
    """Segmentation confidence."""


@dataclass
class ClusterFit:
    """Cameras and shape of one cluster."""

    views: list[DistantView]
    """One per photo, in the photos' order."""
    ious: np.ndarray
    """[K] silhouette IoU of the shape from each photo's camera, at `SILHOUETTE_SIZE`."""
    used: np.ndarray
    """[K] bool: the photo's outline cut the shape."""
    reference: int
    """The photo whose candidate the shape is (seen by it from azimuth 0)."""
    elevation: float
    """Elevation of the reference photo's camera."""
    score: float
    """Mean IoU over the confident photos: how well the shape explains the cluster's outlines."""


@dataclass
class PooledShape:
    vertices: np.ndarray
    faces: np.ndarray
    fit: ClusterFit
    colour_weights: np.ndarray
    """[K] how much each photo's colours count (its outline's confidence; 0 for photos the shape
    explains badly: their camera is wrong)."""
    shape_from: str
    """What the shape is, in words (for the metadata)."""


def carving_photos(photos: list[ClusterPhoto]) -> list[int]:
    """Indices of the photos whose outlines judge and cut the shape: those at `CARVE_CONFIDENCE`
    (a single one is enough: an outline that is wrong judges worse than none), or the most
    confident photo when none reaches it."""
    sure = [i for i, p in enumerate(photos) if p.confidence >= CARVE_CONFIDENCE]
    return sure or [max(range(len(photos)), key=lambda i: photos[i].confidence)]


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """[C, C] float32 pixels from each pixel centre to the outline: negative inside."""
    from scipy.ndimage import distance_transform_edt

    inside = mask >= 0.5
    if not inside.any():
        return np.full(mask.shape, 10.0 * mask.shape[0], np.float32)
    return (distance_transform_edt(~inside) - distance_transform_edt(inside)).astype(np.float32)


def grid_points(grid: int) -> torch.Tensor:
    axis = torch.linspace(-VOLUME_BOUND, VOLUME_BOUND, grid)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def hull_field(views: list[DistantView], distances: list[torch.Tensor], points: torch.Tensor, margin_px: float,
               tolerated: int) -> torch.Tensor:
    """[N] inside-positive distance (world units, a bound) of ``points`` [N, 3] to the hull of
    the outlines (signed distance maps ``distances``, one per view), each widened by
    ``margin_px``: per point, the (``tolerated`` + 1)-th largest outside-distance over the views."""
    per_view = []
    for view, dist in zip(views, distances):
        size = dist.shape[-1]
        axes = torch.as_tensor(view.axes(), dtype=points.dtype)
        u = ((points @ axes[0] - view.centre[0]) / view.side + 0.5) * size
        v = ((points @ axes[1] - view.centre[1]) / view.side + 0.5) * size
        # bilinear between pixel centres; beyond the crop, the distance keeps growing
        col, row = (u - 0.5).clamp(0, size - 1), (v - 0.5).clamp(0, size - 1)
        beyond = torch.hypot(u - 0.5 - col, v - 0.5 - row)
        grid = torch.stack([col, row], -1) / (size - 1) * 2 - 1
        inside = torch.nn.functional.grid_sample(dist[None, None], grid[None, None], mode="bilinear",
                                                 align_corners=True)[0, 0, 0]
        per_view.append((inside + beyond - margin_px) * view.side / size)
    stacked = torch.stack(per_view)
    k = min(tolerated, len(views) - 1)
    outside = stacked.topk(k + 1, dim=0).values[-1]
    return -outside


def occupancy(field: torch.Tensor, grid: int) -> torch.Tensor:
    """Soft occupancy [G, G, G] of an inside-positive field sampled on the grid (a voxel's width
    of ramp at the surface, so silhouettes are not stepped)."""
    voxel = 2 * VOLUME_BOUND / (grid - 1)
    return (0.5 + field.reshape(grid, grid, grid) / voxel).clamp(0, 1)


def guess_field(photo: ClusterPhoto, points: torch.Tensor, grid: int = 64) -> torch.Tensor:
    """[N] inside-positive field (world units) at ``points`` [N, 3] of the photo's outline
    solid, shrunk by `GUESS_SCALE`, upright: seen from azimuth 0 at the elevation the solid was
    built for (0 unless its photo shows a vessel's rim from above)."""
    from backend.pipelines.reconstruct.silhouette import OutlineReconstructPipeline

    solid = OutlineReconstructPipeline("cpu").solid(photo.solid_rgb, photo.solid_mask, grid, 1.0)
    field_t = torch.as_tensor(solid.field, dtype=torch.float32)
    right, down, forward = (torch.as_tensor(a, dtype=torch.float32)
                            for a in view_axes(np.array([0.0]), np.array([solid.elevation]))[0])
    # the solid's frame: x image right, y away from the camera, z image up
    local = torch.stack([points @ right, points @ forward, -(points @ down)], -1) / GUESS_SCALE
    lo, hi = (torch.as_tensor(b, dtype=torch.float32) for b in (solid.lo, solid.hi))
    sample = ((local - lo) / (hi - lo) * 2 - 1).flip(-1)
    values = torch.nn.functional.grid_sample(field_t[None, None], sample.reshape(1, 1, 1, -1, 3), mode="bilinear",
                                             padding_mode="border", align_corners=True).reshape(-1)
    # the solid's field is in units of its own box; a point outside it is outside the object
    outside = torch.maximum(lo - local, local - hi).clamp_min(0).norm(dim=-1)
    return (values - outside) * GUESS_SCALE


def reference_view(volume: torch.Tensor, elevation: float) -> DistantView:
    """The reference photo's camera: azimuth 0 at ``elevation``, framed on the volume."""
    _, centres, sides = crop_silhouettes(silhouettes(volume, view_axes(np.array([0.0]), np.array([elevation]))))
    return DistantView(0.0, elevation, (float(centres[0, 0]), float(centres[0, 1])), float(sides[0]))


def frame(volume: torch.Tensor, views: list[DistantView], size: int = 96) -> list[DistantView]:
    """The views re-framed on a finer silhouette (the search frames them on a 32 px one)."""
    axes = np.stack([v.axes() for v in views])
    _, centres, sides = crop_silhouettes(silhouettes(volume, axes, size=size, depth=64), size)
    return [DistantView(v.azimuth, v.elevation, (float(c[0]), float(c[1])), float(s))
            for v, c, s in zip(views, centres, sides)]


def carve(views: list[DistantView], distances: dict, chosen: list[int], points: torch.Tensor, margin_px: float
          ) -> torch.Tensor:
    """`hull_field` of the ``chosen`` photos' outlines, tolerating one in six that disagrees."""
    return hull_field([views[i] for i in chosen], [distances[i] for i in chosen], points, margin_px,
                      len(chosen) // 6)


def fit_candidate(photos: list[ClusterPhoto], masks: torch.Tensor, reference: int, elevation: float | None,
                  field: torch.Tensor, confident: list[int], pose_grid: PoseGrid) -> ClusterFit:
    """Cameras of every photo for the shape ``field`` (at the `SEARCH_GRID` points) whose
    reference photo is seen from azimuth 0 at ``elevation`` (None: the elevation that explains
    it best), and how well it explains them."""
    volume = occupancy(field, SEARCH_GRID)
    azimuths, elevations = pose_grid.angles()
    views, _ = best_views(volume, masks, azimuths, elevations)
    views, _ = refine_views(volume, masks, views)
    if elevation is None:  # the reference photo looks at the front; from how high is searched
        levels = np.asarray(pose_grid.elevations)
        (found,), _ = best_views(volume, masks[reference:reference + 1], np.zeros_like(levels), levels)
        elevation = found.elevation
    views[reference] = reference_view(volume, elevation)
    views = frame(volume, views)
    axes = np.stack([v.axes() for v in views])
    crops, _, _ = crop_silhouettes(silhouettes(volume, axes))
    ious = soft_iou(crops, masks).diagonal().numpy()
    used = np.zeros(len(photos), bool)
    return ClusterFit(views, ious, used, reference, elevation, float(np.mean(ious[confident])))


@dataclass
class Candidate:
    """A guess at the cluster's shape: a field over the volume, upright, whose ``reference`` photo
    sees it from azimuth 0 at ``elevation``."""

    reference: int
    elevation: float | None
    """None: unknown, searched with the other cameras."""
    field: Callable[[torch.Tensor], torch.Tensor]
    """points [N, 3] -> [N] inside-positive field (world units)."""
    label: str
    """What it is, in words."""


def outline_candidates(photos: list[ClusterPhoto], confident: list[int]) -> list[Candidate]:
    """The outline solids of the most confident photos, upright (`guess_field`); the photo's own
    camera is then searched like the others'."""
    ranked = sorted(confident, key=lambda i: (-round(photos[i].confidence, 1), -float(photos[i].small_mask.sum())))
    return [Candidate(r, None, lambda points, r=r: guess_field(photos[r], points),
                      f"the outline solid of {photos[r].name}")
            for r in ranked[:CANDIDATES]]


def pool_cluster(photos: list[ClusterPhoto], candidates: list[Candidate], confident: list[int], grid: int,
                 max_faces: int, ctx: JobContext, pose_grid: PoseGrid = PoseGrid(), on_step=None) -> PooledShape:
    """The cluster's shape and cameras (see the module's docstring) from ``candidates``, judged by
    the ``confident`` photos (`carving_photos`), meshed on a ``grid``^3 grid and decimated to
    ``max_faces``."""
    from backend.geometry.mesh_ops import clean_mesh, decimate, extract_surface

    masks = torch.as_tensor(np.stack([p.small_mask for p in photos]), dtype=torch.float32)
    points = grid_points(SEARCH_GRID)
    best: ClusterFit | None = None
    chosen: Candidate | None = None
    for number, candidate in enumerate(candidates):
        ctx.check()
        field = candidate.field(points)
        fit = fit_candidate(photos, masks, candidate.reference, candidate.elevation, field, confident, pose_grid)
        if best is None or fit.score > best.score:
            best, chosen, guess = fit, candidate, field
        if on_step is not None:
            on_step((number + 1) / (len(candidates) + 1), f"candidate {number + 1}/{len(candidates)}")
    ctx.check()
    cutting = [i for i in confident if best.ious[i] >= WELL_EXPLAINED or i == best.reference]
    distances = {i: torch.as_tensor(signed_distance(photos[i].carve_mask)) for i in cutting}
    carved = fit_candidate(photos, masks, best.reference, best.elevation,
                           torch.minimum(guess, carve(best.views, distances, cutting, points, 2.0)), confident,
                           pose_grid)
    ctx.check()
    use_carve = len(cutting) > 1 and carved.score >= best.score + CARVE_GAIN
    fit = carved if use_carve else best
    if use_carve:
        fit.used[cutting] = True
    fine = grid_points(grid)
    field = chosen.field(fine)
    if use_carve:
        field = torch.minimum(field, carve(best.views, distances, cutting, fine, 2.0))
    vertices, faces = extract_surface(field.reshape(grid, grid, grid).numpy(), np.full(3, -VOLUME_BOUND),
                                      np.full(3, VOLUME_BOUND))
    vertices, faces = clean_mesh(vertices, faces)
    vertices, faces = decimate(vertices, faces, max_faces)
    weights = np.array([p.confidence for p in photos]) * (fit.ious >= min(0.6, float(np.median(fit.ious))))
    weights[fit.reference] = max(weights[fit.reference], 1.0)
    shape_from = (chosen.label
                  + (f", cut by the outlines of {len(cutting) - 1} other photo(s)" if use_carve else "")
                  + f"; chosen among {len(candidates)} candidates by how well it explains {len(confident)} photos")
    return PooledShape(vertices, faces, fit, weights, shape_from)
