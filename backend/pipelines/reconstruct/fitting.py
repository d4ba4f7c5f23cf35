"""Fitting the shape model to the input views at test time (network weights stay fixed).

The encoder's codes and viewpoint are the start; each view's azimuth is then chosen among a few
hypotheses by how well the predicted shape's silhouette matches the mask; the camera is framed
so the shape fills the crop like the object fills the input; finally one shared shape/colour code
and one camera per view are refined against the views' masks and colours by VolSDF rendering at
low resolution, streaming a preview mesh every few steps.
"""

from __future__ import annotations

import math

import numpy as np

from backend.pipelines.base import JobContext
from backend.pipelines.reconstruct.inputs import CROP_MARGIN, PreparedView
from backend.pipelines.reconstruct.presets import ModelPreset
from backend.protocol import MeshPayload

SYMMETRY_POINTS = 1024
"""Random points in the field's box at which refinement compares the SDF with its mirror image."""

CAMERA_DISTANCE = 2.0
"""Assumed camera distance (object units); focal length and image offset are fitted instead.
The training renders sit at 1.8-3.4, so 2 keeps a similar perspective."""


class FieldCodes:
    """The two code tensors `ShapeModel.fields` reads."""

    def __init__(self, shape, color):
        self.shape, self.color = shape, color


def fitted_cameras(angles, log_focal, offset, size: int):
    """Orbit cameras at `CAMERA_DISTANCE` from angles [n, 3] (azimuth, elevation, roll), log
    focal length [n] and principal-point offset [n, 2] (pixels), for a square crop of ``size``."""
    from backend.render.cameras import Cameras, orbit_cameras

    base = orbit_cameras(angles[:, 0], angles[:, 1], CAMERA_DISTANCE, focal=log_focal.exp(), height=size,
                         width=size, roll=angles[:, 2])
    return Cameras(base.focal, base.principal + offset, base.rotation, base.translation, size, size)


def first_view_turn(refined: dict) -> np.ndarray:
    """[3, 3] rotation about Z from the model's object frame to the output frame, in which the first
    view's fitted camera sits at azimuth 0: Blender's front view (numpad 1) then shows the object
    as the first photo does, whichever way the model's own front (-Y) faces."""
    return turn_about_z(first_view_turn_deg(refined))


def first_view_turn_deg(refined: dict) -> float:
    """Degrees of `first_view_turn` about Z: minus the first view's fitted azimuth."""
    return -math.degrees(float(refined["angles"][0][0]))


def turn_about_z(degrees: float) -> np.ndarray:
    """[3, 3] rotation by ``degrees`` about +Z (counter-clockwise seen from above); points turn
    as ``points @ turn_about_z(a).T``."""
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def output_camera(refined: dict, scale: float, centre, view: int = 0) -> dict:
    """The fitted camera of input ``view`` in the output frame (the object turned by
    `first_view_turn`, then moved by -``centre`` and scaled by ``scale``), in the metadata
    convention of `backend.geometry.fidelity`."""
    azimuth, elevation, roll = (math.degrees(float(v)) for v in refined["angles"][view])
    azimuth += first_view_turn_deg(refined)
    size = refined["size"]
    focal = float(refined["log_focal"][view].exp().reshape(-1)[0])
    offset = refined["offset"][view].reshape(-1)
    return {"azimuth": round((azimuth + 180) % 360 - 180, 3), "elevation": round(elevation, 3), "roll": round(roll, 3),
            "fov": round(math.degrees(2 * math.atan(size / 2 / focal)), 4),
            "distance": round(CAMERA_DISTANCE * scale, 5),
            "target": [round(float(-c * scale), 5) for c in centre],
            "principal_offset": [round(float(o) / size, 5) for o in offset[:2]]}


def refine(model, views: list[PreparedView], codes, preset: ModelPreset, beta: float, ctx: JobContext) -> dict:
    """Fit one shape/colour code and per-view cameras to the views; returns the result dict:
    ``shape``/``color`` codes, the cameras (``angles``, ``log_focal``, ``offset`` at crop
    ``size``), and what the run's metadata reports (``steps``, ``losses``, ``mask_iou``,
    ``azimuth_hypotheses``, ``viewpoint_deg``)."""
    import torch

    from backend.models.encoders import spread_azimuths
    from backend.render.losses import mirror_asymmetry, soft_iou_loss
    from backend.render.volsdf import VolSDFConfig, volsdf_render

    dev = codes.shape.device
    n = len(views)
    shape0 = codes.shape.mean(0, keepdim=True).detach()
    color0 = codes.color.mean(0, keepdim=True).detach()
    shape = shape0.clone().requires_grad_(True)
    color = color0.clone().requires_grad_(True)
    count = max(1, preset.azimuth_hypotheses)
    if codes.viewpoint is not None:
        angles = torch.stack([codes.viewpoint.azimuth, codes.viewpoint.elevation, codes.viewpoint.roll], -1)
        azimuths = codes.viewpoint.azimuth_candidates(count)
    else:
        angles = torch.tensor([[0.0, math.radians(15.0), 0.0]], device=dev).expand(n, 3)
        azimuths = spread_azimuths(angles[:, 0], count)
    angles = angles.detach().clone()
    size = preset.target_size
    target_mask = torch.from_numpy(np.stack([v.mask for v in views])).to(dev).reshape(n, -1)
    points = framing_points(model, shape0)
    config = VolSDFConfig(n_samples=preset.refine_samples, compute_normals=False, chunk_rays=8192)
    beta = torch.tensor(beta, device=dev)
    angles, log_focal, offset, hypotheses = choose_azimuth(
        model, shape0, points, angles, azimuths.detach(), target_mask, size, beta, config, ctx)
    angles.requires_grad_(True)
    log_focal.requires_grad_(True)
    offset.requires_grad_(True)
    optimizer = torch.optim.Adam([
        {"params": [shape], "lr": preset.lr_shape},
        {"params": [color], "lr": preset.lr_color},
        {"params": [angles, log_focal], "lr": preset.lr_camera},
        {"params": [offset], "lr": 0.5},
    ])
    target_rgb = torch.from_numpy(np.stack([v.rgb for v in views])).to(dev).reshape(n, -1, 3)
    fg = [torch.nonzero(m > 0.5).squeeze(-1) for m in target_mask]
    generator = torch.Generator(device="cpu").manual_seed(0)
    symmetry_points = None
    if preset.symmetry > 0 and not model.config.sdf.symmetric:
        symmetry_points = ((torch.rand(SYMMETRY_POINTS, 3, generator=generator) - 0.5) * 1.2).to(dev)
    losses: list[dict] = []
    stream_preview(model, shape, preset.preview_resolution, ctx)
    iou_before = [h["iou"] for h in hypotheses]
    for step in range(preset.refine_steps):
        ctx.check()
        pix = sample_pixels(fg, size, preset.refine_rays, generator).to(dev)  # [n, R]
        cams = fitted_cameras(angles, log_focal, offset, size)
        uv = torch.stack([pix % size, torch.div(pix, size, rounding_mode="floor")], -1).to(angles.dtype) + 0.5
        origins, dirs = cams.generate_rays(uv)
        # one shared code for every view: the views are rendered as a batch of n entries
        codes_view = FieldCodes(shape.expand(n, -1), color.expand(n, -1))
        sdf_fn, color_fn = model.fields(codes_view)
        out = volsdf_render(origins, dirs, sdf_fn, color_fn, beta, config, background="white")
        gt_mask = torch.gather(target_mask, 1, pix)
        gt_rgb = torch.gather(target_rgb, 1, pix.unsqueeze(-1).expand(-1, -1, 3))
        mask_loss = soft_iou_loss(out.mask, gt_mask)
        rgb_loss = ((out.rgb - gt_rgb) ** 2).mean()
        prior = ((shape - shape0) ** 2).mean() + ((color - color0) ** 2).mean()
        loss = mask_loss + rgb_loss + preset.code_prior * prior
        if symmetry_points is not None:
            loss = loss + preset.symmetry * mirror_asymmetry(model.sdf_field(shape[0]), symmetry_points)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            angles[:, 1].clamp_(-math.radians(80), math.radians(80))
        losses.append({"step": step + 1, "mask": round(float(mask_loss.detach()), 5),
                       "rgb": round(float(rgb_loss.detach()), 5)})
        ctx.progress("refine", 0.15 + 0.5 * (step + 1) / preset.refine_steps,
                     f"step {step + 1}/{preset.refine_steps}: mask {losses[-1]['mask']:.3f}")
        if (step + 1) % preset.preview_every == 0 and step + 1 < preset.refine_steps:
            stream_preview(model, shape, preset.preview_resolution, ctx)
    iou_after = (mask_iou(model, shape, angles, log_focal, offset, target_mask, size, beta, config)
                 if preset.refine_steps else iou_before)
    kept = losses if len(losses) <= 6 else [losses[0], *losses[len(losses) // 4:: max(1, len(losses) // 4)], losses[-1]]
    return {
        "shape": shape.detach()[0], "color": color.detach()[0], "angles": angles.detach(),
        "log_focal": log_focal.detach(), "offset": offset.detach(), "size": size, "steps": preset.refine_steps,
        "losses": kept, "mask_iou": {"before": iou_before, "after": iou_after},
        "azimuth_hypotheses": hypotheses,
        "viewpoint_deg": [[round(math.degrees(math.atan2(math.sin(float(a)), math.cos(float(a)))), 1) for a in row]
                          for row in angles.detach()],
    }


def mask_iou(model, shape, angles, log_focal, offset, target_mask, size, beta, config, stride: int = 1
             ) -> list[float]:
    """IoU per view of the rendered opacity (> 0.5) and the target mask (> 0.5), on every
    ``stride``-th pixel of each row and column."""
    import torch

    from backend.render.volsdf import volsdf_render

    n = angles.shape[0]
    with torch.no_grad():
        cams = fitted_cameras(angles, log_focal, offset, size)
        centres = torch.arange(0, size, stride, dtype=angles.dtype, device=angles.device) + 0.5
        v, u = torch.meshgrid(centres, centres, indexing="ij")
        origins, dirs = cams.generate_rays(torch.stack([u, v], -1).reshape(-1, 2))
        sdf_fn, color_fn = model.fields(FieldCodes(shape.expand(n, -1), shape.new_zeros(n, model.config.color_dim)))
        out = volsdf_render(origins, dirs, sdf_fn, color_fn, beta, config)
        target_mask = target_mask.reshape(n, size, size)[:, ::stride, ::stride].reshape(n, -1)
        pred, true = out.mask > 0.5, target_mask > 0.5
        iou = (pred & true).sum(-1).float() / (pred | true).sum(-1).clamp_min(1).float()
    return [round(float(v), 4) for v in iou]


def choose_azimuth(model, shape, points, angles, azimuths, target_mask, size, beta, config, ctx: JobContext):
    """Per view, the best of its candidate ``azimuths`` [n, K] (`Viewpoint.azimuth_candidates`)
    by full-mask IoU, with the predicted elevation and roll.

    Returns (angles, log_focal, offset, [{"azimuth_deg", "iou"} of the chosen one per view])."""
    import dataclasses

    import torch

    config = dataclasses.replace(config, n_samples=min(config.n_samples, 16))  # a coarse look suffices
    n = angles.shape[0]
    best = [(-1.0, None)] * n
    for k in range(azimuths.shape[1]):
        ctx.check()
        trial = angles.clone()
        trial[:, 0] = azimuths[:, k]
        log_focal, offset = fit_framing(points, trial, size)
        iou = mask_iou(model, shape, trial, log_focal, offset, target_mask, size, beta, config,
                       stride=2 if size >= 64 else 1)
        best = [(iou[i], (trial[i], log_focal[i], offset[i])) if iou[i] > best[i][0] else best[i]
                for i in range(n)]
    chosen = [b[1] for b in best]
    angles = torch.stack([c[0] for c in chosen])
    angles[:, 0] = torch.atan2(torch.sin(angles[:, 0]), torch.cos(angles[:, 0]))
    info = [{"azimuth_deg": round(math.degrees(float(angles[i, 0])), 1), "iou": b[0]} for i, b in enumerate(best)]
    return (angles.detach().clone(), torch.stack([c[1] for c in chosen]).detach().clone(),
            torch.stack([c[2] for c in chosen]).detach().clone(), info)


def framing_points(model, shape_code):
    """[P, 3] vertices of a coarse mesh of the predicted shape (a box's corners if it has none)."""
    import torch

    from backend.render.extract import NoSurfaceError

    try:
        mesh = model.extract_mesh(shape_code[0], resolution=24)
        return torch.from_numpy(mesh.vertices).to(shape_code)
    except NoSurfaceError:
        return torch.tensor([[x, y, z] for x in (-0.4, 0.4) for y in (-0.4, 0.4) for z in (-0.4, 0.4)]).to(shape_code)


def fit_framing(points, angles, size: int):
    """Initial log focal [n] and principal offset [n, 2] so the shape's ``points`` fill the crop
    like the object fills the input crop (the mask's box is 1 / (1 + 2 margin) of the side)."""
    from backend.render.cameras import orbit_cameras

    n = angles.shape[0]
    cams = orbit_cameras(angles[:, 0], angles[:, 1], CAMERA_DISTANCE, focal=1.0, height=size, width=size,
                         roll=angles[:, 2])
    cam = cams.world_to_camera(points.unsqueeze(0).expand(n, -1, -1))
    xy = cam[..., :2] / cam[..., 2:3]
    lo, hi = xy.min(1).values, xy.max(1).values
    extent = (hi - lo).max(-1).values.clamp_min(1e-3)
    focal = size / (1.0 + 2.0 * CROP_MARGIN) / extent
    offset = -(lo + hi) / 2.0 * focal.unsqueeze(-1)
    return focal.log().detach(), offset.detach()


FRAMING_ROUNDS = 3
"""Rounds of `frame_to_mesh`'s moment matching (each: one silhouette of the mesh per view)."""


def frame_to_mesh(vertices: np.ndarray, faces: np.ndarray, refined: dict, masks: list[np.ndarray]) -> dict:
    """``refined`` with each view's focal length and principal offset refitted so that the meshed
    surface's silhouette matches that view's mask (square, any size) in area and centroid; a view
    whose silhouette that does not bring closer to its mask keeps its camera.

    The refinement fits the cameras to the soft VolSDF rendering, whose edge lies outside the zero
    level set, and the mesh is then carved and smoothed: through those cameras the delivered
    surface came out some 5 % smaller than the photo's object (real split: the lemons' silhouette
    IoU 0.84-0.87 from the reported camera, 0.97 once zoomed by 8 %). Zooming and shifting the
    image is a change of focal length and principal point, so the angles and the shape stay."""
    import torch

    from backend.geometry.fidelity import covered_image, mask_iou

    refined = dict(refined)
    log_focal, offset = refined["log_focal"].detach().clone(), refined["offset"].detach().clone()
    points = torch.as_tensor(vertices, dtype=log_focal.dtype, device=log_focal.device).unsqueeze(0)
    for i, mask in enumerate(masks):
        target = np.asarray(mask) >= 0.5
        if not target.any():
            continue
        size = mask.shape[0]
        scale = size / refined["size"]
        focal, shift = float(log_focal[i].reshape(-1)[0].exp()) * scale, offset[i].reshape(-1)[:2].cpu().numpy() * scale

        def silhouette(focal: float, shift: np.ndarray) -> np.ndarray:
            cams = fitted_cameras(refined["angles"][i:i + 1], log_focal.new_tensor([math.log(focal)]),
                                  offset.new_tensor(shift[None]), size)
            with torch.no_grad():
                uv, z = cams.project(points)
            return covered_image(uv[0].cpu().numpy().astype(np.float64) - 0.5, z[0].cpu().numpy(), faces, size)

        target_centroid = centroid(target)
        seen = silhouette(focal, shift)
        best = (mask_iou(seen, target), focal, shift)
        centre = size / 2 + shift  # the principal point, in pixels
        for _ in range(FRAMING_ROUNDS):
            if not seen.any():
                break
            zoom = math.sqrt(target.sum() / seen.sum())
            seen_centroid = centroid(seen)
            # u -> centre + zoom (u - centre) + move: focal times zoom, principal point moved
            move = target_centroid - (centre + zoom * (seen_centroid - centre))
            focal, shift, centre = focal * zoom, shift + move, centre + move
            seen = silhouette(focal, shift)
            iou = mask_iou(seen, target)
            if iou > best[0]:
                best = (iou, focal, shift)
        _, focal, shift = best
        log_focal[i] = math.log(focal / scale)
        offset[i] = offset.new_tensor(shift / scale).reshape(offset[i].shape)
    refined["log_focal"], refined["offset"] = log_focal, offset
    return refined


def centroid(image: np.ndarray) -> np.ndarray:
    """(column, row) of a bool image's pixels' mean, in the cameras' pixel units (pixel j spans
    j..j+1)."""
    rows, columns = np.nonzero(image)
    return np.array([columns.mean(), rows.mean()]) + 0.5


def sample_pixels(foreground, size: int, rays: int, generator):
    """[n, rays] flat pixel indices per view: half on the object, half anywhere."""
    import torch

    rows = []
    for fg in foreground:
        n_fg = rays // 2 if len(fg) else 0
        pick = fg.cpu()[torch.randint(len(fg), (n_fg,), generator=generator)] if n_fg else torch.zeros(0, dtype=torch.long)
        rows.append(torch.cat([pick, torch.randint(size * size, (rays - n_fg,), generator=generator)]))
    return torch.stack(rows)


def stream_preview(model, shape, resolution: int, ctx: JobContext) -> None:
    """Send the current shape as a preview mesh (nothing when it has no surface yet)."""
    from backend.render.extract import NoSurfaceError

    try:
        mesh = model.extract_mesh(shape.detach()[0], resolution=resolution)
    except (NoSurfaceError, ValueError):
        return  # nothing to show yet; the final extraction reports real failures
    if len(mesh.faces):
        ctx.preview_mesh(MeshPayload(mesh.vertices.copy(), mesh.faces.copy()))


POINT_PREVIEW_GRID = 32
"""Grid the first point preview samples the encoder's shape on: 32^3 field values and two
gradient steps on the few thousand cells at the surface, ~0.1 s on a 2-core CPU."""


def stream_point_preview(model, shape_code, color_code, ctx: JobContext, grid: int = POINT_PREVIEW_GRID) -> None:
    """The encoder's first guess, before any refinement, as coloured points on its surface: the
    first thing the user sees, in the same frame as the preview meshes that follow. The points
    are the grid cells the surface passes through, jittered, each moved onto the surface along
    the field's gradient (two Newton steps), coloured by the colour field."""
    import torch

    bound = 0.6
    axis = torch.linspace(-bound, bound, grid, device=shape_code.device)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    with torch.no_grad():
        sdf = model.sdf(points.unsqueeze(0), shape_code[:1]).reshape(grid, grid, grid)
    inside = sdf < 0
    # a cell on the surface: inside, with a neighbour outside (or the other way round)
    boundary = torch.zeros_like(inside)
    for axis_index in range(3):
        changed = inside.narrow(axis_index, 0, grid - 1) != inside.narrow(axis_index, 1, grid - 1)
        boundary.narrow(axis_index, 0, grid - 1).logical_or_(changed)
        boundary.narrow(axis_index, 1, grid - 1).logical_or_(changed)
    near = points[boundary.reshape(-1)]
    if len(near) == 0:
        return
    # jittered within its cell, so the points do not line up in the grid's rows once projected
    cell = 2 * bound / (grid - 1)
    generator = torch.Generator(device="cpu").manual_seed(0)
    surface = near + ((torch.rand(near.shape, generator=generator) - 0.5) * cell).to(near.device)
    for _ in range(2):
        surface = surface.detach().requires_grad_(True)
        with torch.enable_grad():
            value = model.sdf(surface.unsqueeze(0), shape_code[:1]).squeeze(0)
            (gradient,) = torch.autograd.grad(value.sum(), surface)
        with torch.no_grad():
            step = (value / gradient.pow(2).sum(-1).clamp_min(1e-6)).unsqueeze(-1) * gradient
            # a step longer than a cell means the gradient is unreliable there: stay
            surface = torch.where(step.norm(dim=-1, keepdim=True) < cell, surface - step, surface)
    with torch.no_grad():
        surface = surface.detach()
        rgb = model.color(surface.unsqueeze(0), color_code[:1]).squeeze(0)
    ctx.preview_points(surface.cpu().numpy().astype(np.float32),
                       (rgb.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8))
