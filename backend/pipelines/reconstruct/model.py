"""Single- or multi-view reconstruction with the learned shape model (ShapeClipper-style).

Steps: find the object and crop it the way the encoder was trained (`inputs`), encode every view
into shape + colour codes and a viewpoint, fit one shared shape/colour code and one camera per
view to the views (`fitting`; the field is evaluated through the blurred positional encoding
`weights.ENCODING_BLUR` throughout), mesh the refined field cut by the input silhouettes as the
refined cameras see them (`backend.render.hull`) by coarse-to-fine marching cubes, clean it (small pieces
dropped, NaN rejected), decimate it to the face budget, smooth away the faint stripes the
committed weights leave (`ModelPreset.smoothing_steps`) and finish it (`backend.geometry.finish`)
with the input views' colours where they see the surface and the colour field elsewhere
(`colour`).

Output: Z up, turned about Z so that the first photo's fitted camera sits at azimuth 0 (Blender's
front view shows the object as the photo does; ``metadata["turned_deg"]`` is the turn from the
model's own object frame, whose front is -Y), centred, longest side 1.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import PipelineError
from backend.geometry.fidelity import POOR_FIDELITY, silhouette_fidelity
from backend.geometry.mesh_ops import smooth_over_distance
from backend.pipelines.base import JobContext, Pipeline, PipelineOutput
from backend.pipelines.reconstruct import fitting
from backend.pipelines.reconstruct.inputs import CARVE_MASK_SIZE, PreparedView, prepare_view
from backend.pipelines.reconstruct.presets import PRESETS, ModelPreset, point_count
from backend.pipelines.reconstruct.weights import DEFAULT_WEIGHTS, check_weights, load_model, resolve_weights
from backend.protocol import ErrorCode, MeshPayload
from backend.requests import ReconstructRequest

TEXTURE_STEPS = {"unwrap": (0.85, "unwrapping UVs"), "bake": (0.92, "baking the texture")}
"""Progress reported at each step of `finish_mesh`."""


@dataclass
class ModelShape:
    """The model's decimated surface before texturing, and what finishing it needs."""

    vertices: np.ndarray
    faces: np.ndarray
    carved: bool
    refined: dict
    views: list[PreparedView]
    images: list
    preset: ModelPreset
    timings: dict[str, float]

    @property
    def elevation(self) -> float | None:
        """Degrees by which the camera fitted to the first photo looks down on the object (None
        without fitted cameras)."""
        angles = (self.refined or {}).get("angles")
        return None if angles is None else float(np.degrees(float(angles[0, 1])))


class ModelReconstructPipeline(Pipeline):
    """Reconstruction with a trained `ShapeModel` checkpoint (default: `DEFAULT_WEIGHTS`)."""

    task = "reconstruct"
    method = "shape model + test-time refinement"

    def __init__(self, device: str, weights: str | Path = DEFAULT_WEIGHTS):
        super().__init__(device)
        self.weights = resolve_weights(weights)
        # Only the files are checked here (no torch): building a pipeline must stay cheap. The
        # network loads in `warm_up` (the pipeline process calls it once the pipeline is
        # available, at start-up) or on first use.
        self.weights_id = check_weights(self.weights)
        self._lock = threading.Lock()
        self._loaded: tuple | None = None

    def warm_up(self) -> None:
        self.load()

    def load(self) -> None:
        """Load the network (once); see `weights.load_model`."""
        with self._lock:
            if self._loaded is not None:
                return
            import torch

            loaded = load_model(self.weights, self.device)
            # The first optimiser built in a process imports torch._dynamo (seconds on a small
            # CPU): pay it here, not in the middle of the first refinement.
            torch.optim.Adam([torch.zeros(1, requires_grad=True)])
            self._loaded = loaded

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
        return self.finish(self.shape(request, ctx), request, ctx)

    def shape(self, request: ReconstructRequest, ctx: JobContext) -> "ModelShape":
        """Everything up to the decimated surface: `auto` looks at it before paying for texture."""
        import torch

        from backend.geometry.mesh_ops import decimate

        self.load()
        preset = PRESETS[request.common.quality]
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        images = request.images if request.multiview else request.images[:1]
        if len(request.images) > 1 and not request.multiview:
            ctx.warn(f"multiview is off: only the first of {len(request.images)} images was used")
        ctx.progress("segment", 0.02, "finding the object")
        views = [prepare_view(image, self.model.config.encoder.image_size, preset.target_size, ctx)
                 for image in images]
        timings["segment_s"] = time.perf_counter() - t0

        torch.manual_seed(request.common.seed)
        t1 = time.perf_counter()
        ctx.progress("encode", 0.1, f"encoding {len(views)} view(s)")
        with torch.no_grad():
            batch = torch.from_numpy(np.stack([v.encoder_image for v in views])).to(self.torch_device)
            codes = self.model.encode(batch)
        fitting.stream_point_preview(self.model, codes.shape.mean(0, keepdim=True), codes.color.mean(0, keepdim=True),
                                     ctx)
        timings["encode_s"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        refined = self._refine(views, codes, preset, ctx)
        timings["refine_s"] = time.perf_counter() - t2

        t3 = time.perf_counter()
        ctx.progress("mesh", 0.7, "extracting the surface")
        vertices, faces, carved = self._mesh(refined, views, preset, ctx)
        vertices, faces = decimate(vertices, faces, request.face_budget or preset.max_faces)
        timings["mesh_s"] = time.perf_counter() - t3
        ctx.progress("mesh", 0.8, f"{len(faces)} triangles")
        return ModelShape(vertices, faces, carved, refined, views, images, preset, timings)

    def finish(self, shaped: "ModelShape", request: ReconstructRequest, ctx: JobContext) -> PipelineOutput:
        """Texture, the output camera, the fidelity check and the metadata of a `shape` result."""
        refined, views, preset, timings = shaped.refined, shaped.views, shaped.preset, shaped.timings
        t4 = time.perf_counter()
        points = point_count(request, preset.max_faces)
        vertices = smooth_over_distance(shaped.vertices, shaped.faces, preset.smoothing_steps)
        # the cameras the photos are seen through from here on (texture, report): the surface's own
        refined = fitting.frame_to_mesh(vertices, shaped.faces, refined, [v.carve_mask for v in views])
        mesh, scale, centre, texture_error = self._finish(vertices, shaped.faces, refined, views,
                                                          request.texture, preset, ctx, points)
        camera = fitting.output_camera(refined, scale, centre)
        # a point cloud is judged by the surface it was sampled on
        surface = (vertices @ fitting.first_view_turn(refined).T - centre) * scale if points else mesh.vertices
        fidelity = silhouette_fidelity(surface, shaped.faces if points else mesh.faces, camera, views[0].carve_mask)
        if fidelity["silhouette_iou"] < POOR_FIDELITY:
            ctx.warn(f"the result explains the photo's outline poorly (silhouette IoU {fidelity['silhouette_iou']:.2f} "
                     "from its fitted camera)")
        timings["texture_s"] = time.perf_counter() - t4
        timings["total_s"] = sum(timings.values())

        metadata = {
            "method": self.method,
            "weights": {"id": self.weights_id, "path": self.weights.name,
                        "step": self.weights_metadata.get("step")},
            "views": len(views),
            "segmentation": [{"method": v.method, "confidence": v.confidence, "notes": v.notes} for v in views],
            "viewpoint_deg": refined["viewpoint_deg"],
            "turned_deg": round(fitting.first_view_turn_deg(refined), 3),
            "camera": camera,
            "fidelity": fidelity,
            "refinement": {"steps": refined["steps"], "losses": refined["losses"],
                           "mask_iou": refined["mask_iou"], "azimuth_hypotheses": refined["azimuth_hypotheses"]},
            "carved": shaped.carved,
            **({"texture_error": round(texture_error, 2)} if texture_error is not None else {}),
            "mesh_resolution": preset.mesh_resolution,
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
            "input": [{"width": im.size[0], "height": im.size[1], "format": im.source_format, "notes": im.warnings}
                      for im in shaped.images],
        }
        return PipelineOutput(mesh, metadata)

    # ------------------------------------------------------------------ stages

    def _refine(self, views: list[PreparedView], codes, preset: ModelPreset, ctx: JobContext) -> dict:
        """Fit one shape/colour code and per-view cameras to the views (`fitting.refine`)."""
        return fitting.refine(self.model, views, codes, preset, self.beta, ctx)

    def unblurred_surface(self, shaped: "ModelShape", ctx: JobContext) -> tuple[np.ndarray, np.ndarray]:
        """The same refined code's surface with the plain positional encoding (no
        `weights.ENCODING_BLUR`), carved and decimated as ``shaped`` was: how ribbed the network's
        own field is, which `auto` reads as a sign that the photo is unlike its training renders."""
        from backend.geometry.mesh_ops import decimate

        vertices, faces, _ = self._mesh(shaped.refined, shaped.views, shaped.preset, ctx, encoding_blur=0.0,
                                        carve=shaped.carved, warn=False)
        return decimate(vertices, faces, max(len(shaped.faces), 1))

    def _mesh(self, refined: dict, views: list[PreparedView], preset: ModelPreset, ctx: JobContext,
              encoding_blur: float | None = None, carve: bool = True, warn: bool = True
              ) -> tuple[np.ndarray, np.ndarray, bool]:
        """(vertices, faces, carved): the refined surface, carved by the silhouettes when the
        preset asks (and ``carve``); if carving leaves nothing (a camera far off), the uncarved one
        with a warning (unless not ``warn``: a surface the user never gets). ``encoding_blur``
        overrides the network's (`SDFNetwork.forward`)."""
        import torch

        from backend.geometry.mesh_ops import clean_mesh
        from backend.render.extract import NoSurfaceError, extract_mesh
        from backend.render.hull import hull_field

        model_field = self.model.sdf_field(refined["shape"], encoding_blur)
        fields = [(model_field, False)]
        if carve and preset.carve_margin is not None:
            # the refined cameras, scaled from the target crop to the finer carving crop
            scale = CARVE_MASK_SIZE / refined["size"]
            cams = fitting.fitted_cameras(refined["angles"], refined["log_focal"] + math.log(scale),
                                          refined["offset"] * scale, CARVE_MASK_SIZE)
            hull = hull_field(cams, [v.carve_mask for v in views], preset.carve_margin * CARVE_MASK_SIZE)
            fields.insert(0, (lambda points: torch.maximum(model_field(points), hull(points)), True))

        for field, carved in fields:
            try:
                mesh = extract_mesh(field, resolution=preset.mesh_resolution, coarse_to_fine=True,
                                    device=refined["shape"].device)
            except NoSurfaceError as exc:
                if carved:
                    if warn:
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

    def _finish(self, vertices, faces, refined: dict, views: list[PreparedView], texture: str, preset: ModelPreset,
                ctx: JobContext, points: int | None = None) -> tuple[MeshPayload, float, np.ndarray, float | None]:
        """The client's mesh (`finish_mesh`; ``points``: a point cloud of that many points),
        coloured by `colour.view_colour_function`, turned to face the first photo
        (`fitting.first_view_turn`) and scaled to unit size -> (mesh, the scale and the centre it
        was normalised by, `baked_texture_error`)."""
        from backend.geometry.finish import baked_texture_error, finish_mesh
        from backend.geometry.mesh_ops import normalise_unit
        from backend.pipelines.reconstruct.colour import view_colour_function

        colour = view_colour_function(self.model, vertices, faces, refined, views)
        mesh = finish_mesh(vertices, faces, colour, texture=texture, texture_size=preset.texture_size,
                           on_step=lambda step: ctx.progress("texture", *TEXTURE_STEPS[step]), points=points)
        error = baked_texture_error(mesh, colour)
        turn = fitting.first_view_turn(refined)
        mesh.vertices = mesh.vertices @ turn.T
        if mesh.normals is not None:
            mesh.normals = (mesh.normals @ turn.T).astype(np.float32)
        mesh.vertices, scale, centre = normalise_unit(mesh.vertices)
        if not np.isfinite(mesh.vertices).all():
            raise PipelineError(ErrorCode.INVALID_RESULT, "the mesh has non-finite vertices")
        return mesh, scale, centre, error
