"""Single- or multi-view reconstruction with the learned shape model (ShapeClipper-style).

Steps: find the object (alpha or the border-colour model of `backend.segmentation`), crop it the
way the encoder was trained (`backend.train.inputs.object_crop`), encode every view into shape +
colour codes and a viewpoint, then **refine** one shared shape/colour code and one camera per
view against the views' masks and colours by VolSDF rendering at low resolution (network
weights stay fixed), streaming a preview mesh every few steps. The refined field, cut by the
input silhouettes as the refined cameras see them (`backend.render.hull`), gives a mesh by
coarse-to-fine marching cubes, cleaned (small pieces dropped, NaN rejected), decimated to the
face budget and textured: UV atlas (xatlas) baked from the input views where a surface point is
visible in one, from the colour field elsewhere; vertex colours for ``texture="vertex"``.

Output: the model's object frame (Z up, front -Y), centred, longest side 1.

`ReconstructPipeline` serves the task: the model, or the silhouette baseline when a request asks
for it or when the weights are missing or unreadable — then the result says so (see
docs/reconstruction.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import PipelineError
from backend.pipelines.base import JobContext, Pipeline, PipelineOutput
from backend.protocol import ErrorCode, MeshPayload
from backend.requests import ReconstructRequest

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "shape_model_cpu"
"""The committed default checkpoint (``.safetensors`` + ``.json``)."""

CARVE_MASK_SIZE = 128
"""Side of the silhouette crop that carving uses: finer than the refinement targets (48-96 px),
so the cut follows the outline more closely than the renders could be compared with."""

SYMMETRY_POINTS = 1024
"""Random points in the field's box at which refinement compares the SDF with its mirror image."""

CAMERA_DISTANCE = 2.0
"""Assumed camera distance (object units); focal length and image offset are fitted instead.
The training renders sit at 1.8-3.4, so 2 keeps a similar perspective."""


@dataclass(frozen=True)
class ModelPreset:
    """Effort of one quality level (times measured on the 2-core CPU: docs/reconstruction.md)."""

    refine_steps: int
    """Test-time refinement iterations (0 = the encoder's prediction as it is)."""
    refine_rays: int
    """Rays per view per refinement step."""
    refine_samples: int
    """VolSDF samples per ray while refining."""
    target_size: int
    """Side of the mask/colour crop the renders are compared with."""
    preview_every: int
    """Stream a preview mesh every this many refinement steps."""
    preview_resolution: int
    """Marching-cubes grid of preview meshes."""
    mesh_resolution: int
    """Marching-cubes grid of the result (coarse-to-fine)."""
    max_faces: int
    """Faces kept after decimation when the request sets no budget."""
    texture_size: int
    """Side of the baked texture."""
    lr_shape: float = 0.005
    """Adam step of the shape code (0 keeps the encoder's shape; the camera is still fitted).
    Small: one silhouette, seen by a camera that is itself being fitted, says little about the
    depth: with the seventh session's encoder, 10 steps of 0.02 lost 0.044 F@5% where 0.005
    gained 0.007-0.009 (docs/training.md)."""
    lr_color: float = 0.02
    """Adam step of the colour code."""
    lr_camera: float = 0.02
    """Adam step of the camera angles (radians) and log focal length."""
    code_prior: float = 0.01
    """Weight of the squared distance of the codes from the encoder's prediction (keeps them
    on the learned shape space while the mask pulls)."""
    symmetry: float = 1.0
    """Weight of mean |SDF(x, y, z) - SDF(-x, y, z)| at random points, for a model whose SDF is
    not mirror-symmetric by construction: fitting one silhouette, possibly from a wrong camera,
    otherwise bends the shape out of the symmetry training taught it (measured with the 6x128
    model: docs/training.md). A model that is symmetric by construction skips it."""
    azimuth_hypotheses: int = 4
    """Azimuths tried before refining (`Viewpoint.azimuth_candidates`: the azimuth classifier's
    best sectors, or without one the predicted azimuth and more spread round the circle); the
    one whose silhouette best matches the mask wins. Refinement is local, and a wrong front/back or
    side guess of the viewpoint head is the commonest failure it cannot undo."""
    carve_margin: float | None = None
    """Cut the final surface by the input masks as the refined cameras see them (the visual-hull
    intersection, `backend.render.hull`), each mask widened by this share of the crop's side so a
    slightly-off camera does not shave the object; None keeps the model's surface as it is."""


PRESETS = {
    "preview": ModelPreset(refine_steps=4, refine_rays=192, refine_samples=24, target_size=48, preview_every=4,
                           preview_resolution=32, mesh_resolution=48, max_faces=4_000, texture_size=256,
                           azimuth_hypotheses=2, carve_margin=0.02),
    "default": ModelPreset(refine_steps=10, refine_rays=384, refine_samples=32, target_size=64, preview_every=5,
                           preview_resolution=40, mesh_resolution=96, max_faces=20_000, texture_size=512,
                           azimuth_hypotheses=2, carve_margin=0.02),
    # high refines as default does: 100 steps of 768 rays scored F@5% 0.786 against default's
    # 0.813 on 21 held-in shapes (the shape drifts to fit one mask); it adds mesh and texture detail
    "high": ModelPreset(refine_steps=10, refine_rays=384, refine_samples=32, target_size=64, preview_every=5,
                        preview_resolution=48, mesh_resolution=128, max_faces=60_000, texture_size=1024,
                        azimuth_hypotheses=2, carve_margin=0.02),
}


@dataclass
class PreparedView:
    """One input image as the refinement sees it."""

    encoder_image: np.ndarray
    """[3, S, S] float32 encoder input."""
    rgb: np.ndarray
    """[T, T, 3] float32 target colours over white (T = preset.target_size)."""
    mask: np.ndarray
    """[T, T] float32 target coverage."""
    carve_mask: np.ndarray
    """[C, C] float32 coverage of the same crop at ``CARVE_MASK_SIZE``."""
    confidence: float
    method: str
    notes: list[str]


class ModelReconstructPipeline(Pipeline):
    """Reconstruction with a trained `ShapeModel` checkpoint (default: `DEFAULT_WEIGHTS`)."""

    task = "reconstruct"
    method = "shape model + test-time refinement"

    def __init__(self, device: str, weights: str | Path = DEFAULT_WEIGHTS):
        super().__init__(device)
        self.weights = Path(weights)
        # Only the files are checked here (no torch): the engine builds pipelines on a daemon
        # thread at start-up, and a process that exits while that thread is inside torch's import
        # aborts. The network is loaded on first use (`load`).
        self.weights_id = check_weights(self.weights)
        self._lock = threading.Lock()
        self._loaded: tuple | None = None

    def load(self) -> None:
        """Load the network (once); a checkpoint that passed `check_weights` but does not fit the
        code gives ``PIPELINE_UNAVAILABLE`` with what to do."""
        with self._lock:
            if self._loaded is not None:
                return
            import torch

            from backend.models.checkpoint import CheckpointError, load_shape_model

            device = _torch_device(self.device)
            try:
                model, metadata = load_shape_model(self.weights, device=device)
            except CheckpointError as exc:
                raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE,
                                    f"the shape model weights {self.weights} cannot be used: {exc}. Re-export them "
                                    "with scripts/train_shape.py --export (docs/training.md).") from exc
            model.eval().requires_grad_(False)
            # The first optimiser built in a process imports torch._dynamo (seconds on a small
            # CPU): pay it here, not in the middle of the first refinement.
            torch.optim.Adam([torch.zeros(1, requires_grad=True)])
            self._loaded = (model, metadata, device)

    @property
    def model(self):
        self.load()
        return self._loaded[0]

    @property
    def weights_metadata(self) -> dict:
        self.load()
        return self._loaded[1]

    @property
    def torch_device(self):
        self.load()
        return self._loaded[2]

    @property
    def beta(self) -> float:
        """VolSDF scale the model was trained with (refinement renders with it)."""
        return float(self.weights_metadata.get("beta", 0.05))

    # ------------------------------------------------------------------ run

    def run(self, request: ReconstructRequest, ctx: JobContext) -> PipelineOutput:
        import torch

        self.load()
        preset = PRESETS[request.common.quality]
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        images = request.images if request.multiview else request.images[:1]
        if len(request.images) > 1 and not request.multiview:
            ctx.warn(f"multiview is off: only the first of {len(request.images)} images was used")
        ctx.progress("segment", 0.02, "finding the object")
        views = [self._prepare(image, preset, ctx) for image in images]
        timings["segment_s"] = time.perf_counter() - t0

        torch.manual_seed(request.common.seed)
        t1 = time.perf_counter()
        ctx.progress("encode", 0.1, f"encoding {len(views)} view(s)")
        with torch.no_grad():
            batch = torch.from_numpy(np.stack([v.encoder_image for v in views])).to(self.torch_device)
            codes = self.model.encode(batch)
        timings["encode_s"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        refined = self._refine(views, codes, preset, ctx)
        timings["refine_s"] = time.perf_counter() - t2

        t3 = time.perf_counter()
        ctx.progress("mesh", 0.7, "extracting the surface")
        vertices, faces, carved = self._mesh(refined, views, preset, ctx)
        vertices, faces = _decimate(vertices, faces, request.face_budget or preset.max_faces)
        timings["mesh_s"] = time.perf_counter() - t3
        ctx.progress("mesh", 0.8, f"{len(faces)} triangles")

        t4 = time.perf_counter()
        mesh = self._texture(vertices, faces, refined, views, request.texture, preset, ctx)
        timings["texture_s"] = time.perf_counter() - t4
        timings["total_s"] = time.perf_counter() - t0

        metadata = {
            "method": self.method,
            "weights": {"id": self.weights_id, "path": self.weights.name,
                        "step": self.weights_metadata.get("step")},
            "views": len(views),
            "segmentation": [{"method": v.method, "confidence": v.confidence, "notes": v.notes} for v in views],
            "viewpoint_deg": refined["viewpoint_deg"],
            "refinement": {"steps": refined["steps"], "losses": refined["losses"],
                           "mask_iou": refined["mask_iou"], "azimuth_hypotheses": refined["azimuth_hypotheses"]},
            "carved": carved,
            "mesh_resolution": preset.mesh_resolution,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "input": [{"width": im.size[0], "height": im.size[1], "format": im.source_format, "notes": im.warnings}
                      for im in images],
        }
        return PipelineOutput(mesh, metadata)

    # ------------------------------------------------------------------ stages

    def _prepare(self, image, preset: ModelPreset, ctx: JobContext) -> PreparedView:
        from backend.segmentation import LOW_CONFIDENCE, segment
        from backend.train.inputs import object_crop

        seg = segment(image.rgba, image.has_alpha)
        if seg.confidence < LOW_CONFIDENCE:
            ctx.warn(f"low confidence ({seg.confidence:.2f}) in separating the object from the background"
                     + (f": {'; '.join(seg.notes)}" if seg.notes else "")
                     + ". An image with a transparent background gives the best result.")
        size = self.model.config.encoder.image_size
        encoder_rgb, _ = object_crop(image.rgba, seg.mask, size)
        rgb, mask = object_crop(image.rgba, seg.mask, preset.target_size)
        _, carve_mask = object_crop(image.rgba, seg.mask, CARVE_MASK_SIZE)
        ctx.check()
        return PreparedView(encoder_rgb.transpose(2, 0, 1).copy(), rgb, mask, carve_mask, seg.confidence, seg.method,
                            seg.notes)

    def _refine(self, views: list[PreparedView], codes, preset: ModelPreset, ctx: JobContext) -> dict:
        """Fit one shape/colour code and per-view cameras to the views; returns the result dict."""
        import torch

        from backend.models.encoders import spread_azimuths
        from backend.render.volsdf import VolSDFConfig, volsdf_render
        from backend.train.losses import mirror_asymmetry, soft_iou_loss

        dev = self.torch_device
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
        points = self._framing_points(shape0)
        config = VolSDFConfig(n_samples=preset.refine_samples, compute_normals=False, chunk_rays=8192)
        beta = torch.tensor(self.beta, device=dev)
        angles, log_focal, offset, hypotheses = self._choose_azimuth(
            shape0, points, angles, azimuths.detach(), target_mask, size, beta, config, ctx)
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
        if preset.symmetry > 0 and not self.model.config.sdf.symmetric:
            symmetry_points = ((torch.rand(SYMMETRY_POINTS, 3, generator=generator) - 0.5) * 1.2).to(dev)
        losses: list[dict] = []
        self._preview(shape, preset.preview_resolution, ctx)
        iou_before = [h["iou"] for h in hypotheses]
        for step in range(preset.refine_steps):
            ctx.check()
            pix = _sample_pixels(fg, size, preset.refine_rays, generator).to(dev)  # [n, R]
            cams = _cameras(angles, log_focal, offset, size)
            uv = torch.stack([pix % size, torch.div(pix, size, rounding_mode="floor")], -1).to(angles.dtype) + 0.5
            origins, dirs = cams.generate_rays(uv)
            # one shared code for every view: the views are rendered as a batch of n entries
            codes_view = _Codes(shape.expand(n, -1), color.expand(n, -1))
            sdf_fn, color_fn = self.model.fields(codes_view)
            out = volsdf_render(origins, dirs, sdf_fn, color_fn, beta, config, background="white")
            gt_mask = torch.gather(target_mask, 1, pix)
            gt_rgb = torch.gather(target_rgb, 1, pix.unsqueeze(-1).expand(-1, -1, 3))
            mask_loss = soft_iou_loss(out.mask, gt_mask)
            rgb_loss = ((out.rgb - gt_rgb) ** 2).mean()
            prior = ((shape - shape0) ** 2).mean() + ((color - color0) ** 2).mean()
            loss = mask_loss + rgb_loss + preset.code_prior * prior
            if symmetry_points is not None:
                loss = loss + preset.symmetry * mirror_asymmetry(self.model.sdf_field(shape[0]), symmetry_points)
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
                self._preview(shape, preset.preview_resolution, ctx)
        iou_after = (self._mask_iou(shape, angles, log_focal, offset, target_mask, size, beta, config)
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

    def _mask_iou(self, shape, angles, log_focal, offset, target_mask, size, beta, config, stride: int = 1
                  ) -> list[float]:
        """IoU per view of the rendered opacity (> 0.5) and the target mask (> 0.5), on every
        ``stride``-th pixel of each row and column."""
        import torch

        from backend.render.volsdf import volsdf_render

        n = angles.shape[0]
        with torch.no_grad():
            cams = _cameras(angles, log_focal, offset, size)
            centres = torch.arange(0, size, stride, dtype=angles.dtype, device=angles.device) + 0.5
            v, u = torch.meshgrid(centres, centres, indexing="ij")
            origins, dirs = cams.generate_rays(torch.stack([u, v], -1).reshape(-1, 2))
            sdf_fn, color_fn = self.model.fields(_Codes(shape.expand(n, -1), shape.new_zeros(n, self.model.config.color_dim)))
            out = volsdf_render(origins, dirs, sdf_fn, color_fn, beta, config)
            target_mask = target_mask.reshape(n, size, size)[:, ::stride, ::stride].reshape(n, -1)
            pred, true = out.mask > 0.5, target_mask > 0.5
            iou = (pred & true).sum(-1).float() / (pred | true).sum(-1).clamp_min(1).float()
        return [round(float(v), 4) for v in iou]

    def _choose_azimuth(self, shape, points, angles, azimuths, target_mask, size, beta, config, ctx):
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
            log_focal, offset = self._fit_framing(points, trial, size)
            iou = self._mask_iou(shape, trial, log_focal, offset, target_mask, size, beta, config,
                                 stride=2 if size >= 64 else 1)
            best = [(iou[i], (trial[i], log_focal[i], offset[i])) if iou[i] > best[i][0] else best[i]
                    for i in range(n)]
        chosen = [b[1] for b in best]
        angles = torch.stack([c[0] for c in chosen])
        angles[:, 0] = torch.atan2(torch.sin(angles[:, 0]), torch.cos(angles[:, 0]))
        info = [{"azimuth_deg": round(math.degrees(float(angles[i, 0])), 1), "iou": b[0]} for i, b in enumerate(best)]
        return (angles.detach().clone(), torch.stack([c[1] for c in chosen]).detach().clone(),
                torch.stack([c[2] for c in chosen]).detach().clone(), info)

    def _framing_points(self, shape_code):
        """[P, 3] vertices of a coarse mesh of the predicted shape (a box's corners if it has none)."""
        import torch

        from backend.render.extract import NoSurfaceError

        try:
            mesh = self.model.extract_mesh(shape_code[0], resolution=24)
            return torch.from_numpy(mesh.vertices).to(shape_code)
        except NoSurfaceError:
            return torch.tensor([[x, y, z] for x in (-0.4, 0.4) for y in (-0.4, 0.4) for z in (-0.4, 0.4)]).to(shape_code)

    def _fit_framing(self, points, angles, size: int):
        """Initial log focal [n] and principal offset [n, 2] so the shape's ``points`` fill the crop
        like the object fills the input crop (the mask's box is 1 / (1 + 2 margin) of the side)."""
        from backend.render.cameras import orbit_cameras
        from backend.train.inputs import CROP_MARGIN

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

    def _mesh(self, refined: dict, views: list[PreparedView], preset: ModelPreset, ctx: JobContext
              ) -> tuple[np.ndarray, np.ndarray, bool]:
        """(vertices, faces, carved): the refined surface, carved by the silhouettes when the
        preset asks; if carving leaves nothing (a camera far off), the uncarved one with a warning."""
        import torch

        from backend.geometry.mesh_ops import clean_mesh
        from backend.render.extract import NoSurfaceError, extract_mesh
        from backend.render.hull import hull_field

        model_field = self.model.sdf_field(refined["shape"])
        fields = [(model_field, False)]
        if preset.carve_margin is not None:
            # the refined cameras, scaled from the target crop to the finer carving crop
            scale = CARVE_MASK_SIZE / refined["size"]
            cams = _cameras(refined["angles"], refined["log_focal"] + math.log(scale), refined["offset"] * scale,
                            CARVE_MASK_SIZE)
            hull = hull_field(cams, [v.carve_mask for v in views], preset.carve_margin * CARVE_MASK_SIZE)
            fields.insert(0, (lambda points: torch.maximum(model_field(points), hull(points)), True))

        for field, carved in fields:
            try:
                mesh = extract_mesh(field, resolution=preset.mesh_resolution, coarse_to_fine=True,
                                    device=refined["shape"].device)
            except NoSurfaceError as exc:
                if carved:
                    ctx.warn("cutting the shape by the input silhouette left nothing (the fitted camera is far "
                             "off); the uncut shape is used")
                    continue
                raise PipelineError(ErrorCode.INVALID_RESULT, f"the shape model produced no surface: {exc}") from exc
            except ValueError as exc:  # non-finite field values
                raise PipelineError(ErrorCode.INVALID_RESULT, f"the shape field is not finite: {exc}") from exc
            break
        ctx.check()
        vertices, faces = clean_mesh(mesh.vertices, mesh.faces)
        if not np.isfinite(vertices).all() or len(faces) == 0:
            raise PipelineError(ErrorCode.INVALID_RESULT, "the extracted mesh is empty or not finite")
        return vertices, faces, carved

    def _preview(self, shape, resolution: int, ctx: JobContext) -> None:
        from backend.render.extract import NoSurfaceError

        try:
            mesh = self.model.extract_mesh(shape.detach()[0], resolution=resolution)
        except (NoSurfaceError, ValueError):
            return  # nothing to show yet; the final extraction reports real failures
        if len(mesh.faces):
            ctx.preview_mesh(MeshPayload(mesh.vertices.copy(), mesh.faces.copy()))

    def _texture(self, vertices, faces, refined, views, texture: str, preset: ModelPreset,
                 ctx: JobContext) -> MeshPayload:
        from backend.geometry.mesh_ops import normalise_unit, vertex_normals
        from backend.geometry.texture import bake, unwrap
        from backend.images import encode_png

        colour = self._colour_function(vertices, faces, refined, views)
        uvs = colors = png = None
        if texture == "uv":
            ctx.progress("texture", 0.85, "unwrapping UVs")
            vertices, faces, uvs = unwrap(vertices, faces)
            ctx.check()
            ctx.progress("texture", 0.92, "baking the texture")
            normals = vertex_normals(vertices, faces)
            png = encode_png(bake(vertices, faces, uvs, normals, colour, preset.texture_size))
        else:
            normals = vertex_normals(vertices, faces)
            if texture == "vertex":
                rgb = colour(vertices.astype(np.float64), normals.astype(np.float64))
                colors = np.concatenate([(np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8),
                                         np.full((len(vertices), 1), 255, np.uint8)], axis=1)
        vertices, _, _ = normalise_unit(vertices)
        if not np.isfinite(vertices).all():
            raise PipelineError(ErrorCode.INVALID_RESULT, "the mesh has non-finite vertices")
        return MeshPayload(vertices, faces, normals, uvs, colors, png, "smooth")

    def _colour_function(self, vertices, faces, refined, views):
        """(points, normals) -> RGB: the input views where the point is visible (weighted by how
        squarely the view sees it), the refined colour field elsewhere."""
        import torch

        from backend.geometry.metrics import sample_surface

        dev = self.torch_device
        cams = _cameras(refined["angles"], refined["log_focal"], refined["offset"], refined["size"])
        size = refined["size"]
        # z-buffer of each view from dense surface samples: a point is visible when it is not
        # behind the nearest sample that projects to its pixel
        dense = torch.from_numpy(sample_surface(vertices, faces, 60_000)).float().to(dev)
        zbuffers = []
        for i in range(len(views)):
            uv, z = cams[i].project(dense.unsqueeze(0))
            zbuffers.append(_zbuffer(uv[0].cpu().numpy(), z[0].cpu().numpy(), size))
        images = [v.rgb for v in views]
        masks = [v.mask for v in views]
        centres = cams.centers.cpu().numpy()
        extent = float(np.linalg.norm(vertices.max(0) - vertices.min(0)))

        def colour(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
            pts = torch.from_numpy(points).float().to(dev)
            with torch.no_grad():
                field = self.model.color(pts.unsqueeze(0), refined["color"].unsqueeze(0))[0].cpu().numpy()
            total = np.zeros_like(points)
            weight = np.zeros(len(points))
            for i in range(len(views)):
                uv, z = cams[i].project(pts.unsqueeze(0))
                uv, z = uv[0].cpu().numpy(), z[0].cpu().numpy()
                col = np.clip(np.floor(uv[:, 0]).astype(int), 0, size - 1)
                row = np.clip(np.floor(uv[:, 1]).astype(int), 0, size - 1)
                inside = (uv[:, 0] >= 0) & (uv[:, 0] < size) & (uv[:, 1] >= 0) & (uv[:, 1] < size) & (z > 0)
                visible = inside & (z <= zbuffers[i][row, col] + 0.02 * extent) & (masks[i][row, col] > 0.5)
                to_camera = centres[i] - points
                to_camera /= np.maximum(np.linalg.norm(to_camera, axis=1, keepdims=True), 1e-9)
                facing = np.clip((normals * to_camera).sum(1), 0.0, 1.0)
                w = np.where(visible, facing, 0.0) ** 2
                total += w[:, None] * _bilinear(images[i], uv)
                weight += w
            blend = np.clip(weight * 4.0, 0.0, 1.0)[:, None]
            seen = total / np.maximum(weight, 1e-9)[:, None]
            return blend * seen + (1.0 - blend) * field

        return colour


class WeightsUnavailable(RuntimeError):
    """The shape model's checkpoint files are missing or inconsistent."""


def check_weights(path: Path) -> str:
    """Check ``NAME.json`` + ``NAME.safetensors`` without importing torch: the manifest parses, is
    a shape-model checkpoint, and its recorded sha256 matches the weights. Returns the checkpoint
    id (``"shape_model:<sha256 prefix>"``, as `backend.models.checkpoint.checkpoint_id`)."""
    manifest_path, weights_path = path.with_name(path.name + ".json"), path.with_name(path.name + ".safetensors")
    for p in (manifest_path, weights_path):
        if not p.is_file():
            raise WeightsUnavailable(f"{p} is missing")
    try:
        manifest = json.loads(manifest_path.read_text())
        kind, recorded = manifest["kind"], manifest["weights_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise WeightsUnavailable(f"{manifest_path} is not a checkpoint manifest: {exc}") from exc
    if kind != "shape_model":
        raise WeightsUnavailable(f"{manifest_path} holds a {kind!r}, not a shape model")
    digest = hashlib.sha256()
    with weights_path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != recorded:
        raise WeightsUnavailable(f"{weights_path} does not match the sha256 recorded in {manifest_path}")
    return f"{kind}:{recorded[:16]}"


class _Codes:
    """The two code tensors `ShapeModel.fields` reads."""

    def __init__(self, shape, color):
        self.shape, self.color = shape, color


def _torch_device(device: str):
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE, f"device {device!r} was asked for but CUDA is not available")
        return torch.device(device)
    return torch.device("cpu")


def _cameras(angles, log_focal, offset, size: int):
    from backend.render.cameras import Cameras, orbit_cameras

    base = orbit_cameras(angles[:, 0], angles[:, 1], CAMERA_DISTANCE, focal=log_focal.exp(), height=size,
                         width=size, roll=angles[:, 2])
    return Cameras(base.focal, base.principal + offset, base.rotation, base.translation, size, size)


def _sample_pixels(foreground, size: int, rays: int, generator):
    """[n, rays] flat pixel indices per view: half on the object, half anywhere."""
    import torch

    rows = []
    for fg in foreground:
        n_fg = rays // 2 if len(fg) else 0
        pick = fg.cpu()[torch.randint(len(fg), (n_fg,), generator=generator)] if n_fg else torch.zeros(0, dtype=torch.long)
        rows.append(torch.cat([pick, torch.randint(size * size, (rays - n_fg,), generator=generator)]))
    return torch.stack(rows)


def _zbuffer(uv: np.ndarray, z: np.ndarray, size: int) -> np.ndarray:
    """[size, size] nearest depth of points splatted to their pixel and its 4 neighbours."""
    buffer = np.full((size, size), np.inf)
    ok = (z > 0) & np.isfinite(uv).all(1)
    col = np.floor(uv[ok, 0]).astype(int)
    row = np.floor(uv[ok, 1]).astype(int)
    depth = z[ok]
    for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        r, c = row + dr, col + dc
        inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        np.minimum.at(buffer, (r[inside], c[inside]), depth[inside])
    return buffer


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample [T, T, 3] at pixel positions uv [K, 2] (pixel centres at +0.5)."""
    size = image.shape[0]
    x = np.clip(uv[:, 0] - 0.5, 0, size - 1)
    y = np.clip(uv[:, 1] - 0.5, 0, size - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, size - 1), np.minimum(y0 + 1, size - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _decimate(vertices, faces, budget: int):
    from backend.geometry.mesh_ops import decimate

    return decimate(vertices, faces, budget)


class ReconstructPipeline(Pipeline):
    """The "reconstruct" task: per request, the learned shape model or the silhouette baseline.

    ``method="auto"`` (the default) uses the model when its weights load and otherwise the
    baseline, with a warning and ``fallback`` in the metadata naming what is missing;
    ``"model"`` insists on the model (PIPELINE_UNAVAILABLE without it); ``"silhouette"`` always
    runs the baseline, which can look better than an undertrained model on photos far from the
    training data.
    """

    task = "reconstruct"

    def __init__(self, device: str, weights: str | Path = DEFAULT_WEIGHTS):
        super().__init__(device)
        from backend.pipelines.reconstruct_silhouette import SilhouetteReconstructPipeline

        self.silhouette = SilhouetteReconstructPipeline(device)
        weights = Path(weights)
        try:
            self.model: ModelReconstructPipeline | None = ModelReconstructPipeline(device, weights)
            self.model_problem: str | None = None
        except (WeightsUnavailable, OSError) as exc:
            self.model = None
            self.model_problem = f"shape model weights {weights.name} could not be loaded: {exc}"

    def run(self, request: ReconstructRequest, ctx: JobContext) -> PipelineOutput:
        if request.method == "silhouette":
            return self.silhouette.run(request, ctx)
        if self.model is not None:
            return self.model.run(request, ctx)
        if request.method == "model":
            raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE,
                                f"{self.model_problem}. Train or restore the weights (docs/training.md), "
                                "or ask for method 'silhouette'.")
        ctx.warn(f"the learned shape model is not available ({self.model_problem}); used the silhouette-inflation "
                 "baseline instead. Train or restore the weights (docs/training.md).")
        output = self.silhouette.run(request, ctx)
        output.metadata["fallback"] = {"from": ModelReconstructPipeline.method, "reason": self.model_problem}
        return output
