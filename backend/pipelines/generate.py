"""Text → textured mesh with ISS ("Image as Stepping Stone"): the ``generate`` task.

1. The prompt's unit CLIP text feature goes through the stage-1 CLIP2Shape mapper, which outputs
   ``[shape code | colour code]`` of the shape model (one mapper for both: a prompt says "red"
   as readily as "round", and stage 2 can then correct colour and shape together).
2. Stage 2 (``generate_align``): a copy of the mapper is fine-tuned for this prompt only, with
   CLIP consistency between the prompt and VolSDF renders from random views plus the background
   term; a negative prompt is pushed away. Several candidates (different seeds, the later ones
   with a little noise on the text feature) can be run; the best by CLIP score on fixed views
   wins.
3. Marching cubes of the winner's SDF, cleanup, decimation, then UVs + a texture baked from the
   colour field (or vertex colours). With ``stylize``, the colour head is first stylized on the
   mesh (a copy of it, trained with CLIP; ``stylize_core``).
4. Z up, front −Y (the shape model's frame), bounding box centred with longest side 1.

Without CLIP weights and a trained mapper, the shipped offline text model replaces steps 1–2
(``generate_offline``: its vocabulary only, no alignment); steps 3–4 are the same code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backend.errors import PipelineError
from backend.pipelines.base import JobContext, Pipeline, PipelineOutput, preset_for
from backend.pipelines.generate_align import AlignConfig, TextShapeAligner, fixed_views
from backend.pipelines.generate_assets import IssAssets, TextAssetsConfig
from backend.pipelines.generate_offline import TEXT_MODEL
from backend.pipelines.stylize_core import StylizeConfig
from backend.protocol import ErrorCode, MeshPayload

if TYPE_CHECKING:
    from backend.requests import GenerateRequest


@dataclass(frozen=True)
class GeneratePreset:
    """One device/quality setting of text → shape."""

    align: AlignConfig
    """Stage-2 settings."""
    score_views: int = 4
    """Fixed views on which candidates are scored with CLIP."""
    preview_every: int = 5
    """Steps between preview meshes."""
    preview_resolution: int = 32
    """Marching-cubes grid of the preview meshes."""
    mesh_resolution: int = 96
    """Marching-cubes grid of the result (coarse-to-fine)."""
    smoothing_iterations: int = 20
    """Taubin smoothing of the extracted surface: the shape model's decoder leaves ripples and fins
    (docs/text_to_shape.md); 0 keeps the raw surface."""
    max_faces: int = 20_000
    """Decimation target when the request gives no face budget."""
    texture_size: int = 1024
    stylize: StylizeConfig = field(default_factory=StylizeConfig)
    """Stylization run after generation when the request asks for it."""


_CPU_ALIGN = AlignConfig(steps=15, views=3, resolution=32, samples=32)
_GPU_ALIGN = AlignConfig(steps=20, views=10, resolution=90, samples=64, backward_chunk_rays=2048)
_CPU_STYLE = StylizeConfig(steps=20, views=3, resolution=64)
_GPU_STYLE = StylizeConfig(steps=100, views=3, resolution=112)

PRESETS: dict[tuple[str, str], GeneratePreset] = {
    ("cpu", "preview"): GeneratePreset(
        replace(_CPU_ALIGN, steps=8), mesh_resolution=64, max_faces=5_000, texture_size=512,
        stylize=replace(_CPU_STYLE, steps=10, resolution=48),
    ),
    ("cpu", "default"): GeneratePreset(_CPU_ALIGN, max_faces=10_000, stylize=_CPU_STYLE),
    ("cpu", "high"): GeneratePreset(
        replace(_CPU_ALIGN, steps=30, views=4, resolution=40), mesh_resolution=128, max_faces=30_000, texture_size=2048,
        stylize=replace(_CPU_STYLE, steps=40, resolution=80),
    ),
    # The paper's stage-2 setting: 10 views of 90×90, 20 steps.
    ("gpu", "preview"): GeneratePreset(replace(_GPU_ALIGN, steps=10), mesh_resolution=96, stylize=replace(_GPU_STYLE, steps=40)),
    ("gpu", "default"): GeneratePreset(_GPU_ALIGN, mesh_resolution=160, max_faces=50_000, texture_size=2048, stylize=_GPU_STYLE),
    ("gpu", "high"): GeneratePreset(
        replace(_GPU_ALIGN, steps=60), mesh_resolution=256, max_faces=200_000, texture_size=2048,
        stylize=replace(_GPU_STYLE, steps=200, resolution=128),
    ),
}


def generate_preset(device: str, quality: str) -> GeneratePreset:
    """The preset for a device (``cpu`` / ``cuda…``) and a quality (``preview``/``default``/``high``)."""
    return preset_for(PRESETS, device, quality)


@dataclass
class Candidate:
    """One aligned candidate."""

    index: int
    seed: int
    score: float
    """Mean cosine between CLIP of fixed-view renders and the prompt."""
    losses: list[float]
    shape_code: object
    color_code: object


def generate_mesh(
    request: GenerateRequest, assets: IssAssets, preset: GeneratePreset, ctx: JobContext
) -> PipelineOutput:
    """Run stages 2–4 with loaded ``assets``; see the module docstring."""
    import torch

    from backend.pipelines.stylize import encode_prompt
    from backend.pipelines.stylize_core import MeshStylizer
    from backend.pipelines.stylize_fields import ShapeModelColorField

    started = time.monotonic()
    clip, shape_model = assets.clip, assets.shape_model
    text = encode_prompt(clip, request.prompt)
    negative = encode_prompt(clip, request.negative_prompt) if request.negative_prompt else None
    align = preset.align
    score_cameras = fixed_views(preset.score_views, align.resolution, align.sampling, text.device)
    total_steps = request.candidates * align.steps

    candidates: list[Candidate] = []
    for k in range(request.candidates):
        seed = request.common.seed + 1000 * k
        torch.manual_seed(seed)
        aligner = TextShapeAligner(
            shape_model, assets.mapper, clip, text, align,
            seed=seed, negative_features=negative, input_noise=0.0 if k == 0 else align.candidate_noise,
        )
        losses = []
        for i in range(align.steps):
            ctx.check()
            terms = aligner.step()
            losses.append(terms.total)
            done = k * align.steps + i + 1
            ctx.progress(
                "align", 0.05 + 0.7 * done / total_steps,
                f"candidate {k + 1}/{request.candidates}, step {i + 1}/{align.steps}: "
                f"CLIP {terms.clip:.3f}, background {terms.background:.3f}",
            )
            if (i + 1) % preset.preview_every == 0:
                preview = _preview_mesh(shape_model, aligner.codes().shape[0].detach(), preset.preview_resolution)
                if preview is not None:
                    ctx.preview_mesh(preview)
        ctx.check()
        with torch.no_grad():
            codes = aligner.codes()
        candidates.append(Candidate(
            k, seed, aligner.clip_score(score_cameras), losses, codes.shape[0].detach(), codes.color[0].detach()
        ))
    best = max(candidates, key=lambda c: c.score)

    vertices, faces = surface_of(shape_model, best.shape_code, request, preset, ctx)
    color_field = ShapeModelColorField(shape_model, best.color_code)
    stylize_losses: list[float] = []
    if request.stylize:
        stylizer = MeshStylizer(vertices, faces, clip, text, color_field, preset.stylize, mode="texture", seed=best.seed)
        steps = preset.stylize.steps

        def on_step(i, terms):
            stylize_losses.append(terms.clip)
            ctx.progress("stylize", 0.8 + 0.1 * (i + 1) / steps, f"stylize step {i + 1}/{steps}: CLIP {terms.clip:.3f}")

        stylizer.run(on_step)

    mesh = textured(vertices, faces, color_field, request, preset, ctx)
    metadata = {
        "method": "ISS text → shape (CLIP2Shape mapper + test-time alignment)",
        "clip": clip.model_id,
        "shape_model": assets.shape_model_id,
        "candidates": [
            {"seed": c.seed, "clip_score": round(c.score, 4), "loss_first": round(c.losses[0], 4),
             "loss_last": round(c.losses[-1], 4)}
            for c in candidates
        ],
        "chosen": best.index,
        "steps": align.steps,
        "views": align.views,
        "resolution": align.resolution,
        "negative_prompt": request.negative_prompt is not None,
        "stylized": request.stylize,
        "stylize_clip_loss": [round(stylize_losses[0], 4), round(stylize_losses[-1], 4)] if stylize_losses else None,
        "faces": len(mesh.faces),
        "elapsed_s": round(time.monotonic() - started, 2),
    }
    return PipelineOutput(mesh, metadata)


def surface_of(shape_model, shape_code, request: GenerateRequest, preset: GeneratePreset, ctx: JobContext):
    """(vertices, faces) of a shape code: marching cubes, cleanup, smoothing, decimation to the face budget."""
    from backend.geometry.mesh_ops import clean_mesh, decimate, smooth_taubin
    from backend.render.extract import NoSurfaceError

    ctx.progress("mesh", 0.78, "extracting the surface")
    try:
        extracted = shape_model.extract_mesh(shape_code, resolution=preset.mesh_resolution, coarse_to_fine=True)
    except NoSurfaceError as exc:
        raise PipelineError(ErrorCode.INVALID_RESULT, f"the shape for this prompt has no surface ({exc})") from exc
    vertices, faces = clean_mesh(extracted.vertices, extracted.faces)
    ctx.check()
    if preset.smoothing_iterations:
        vertices = smooth_taubin(vertices, faces, preset.smoothing_iterations)
    return decimate(vertices, faces, request.face_budget or preset.max_faces)


def textured(vertices, faces, color_field, request: GenerateRequest, preset: GeneratePreset, ctx: JobContext):
    """The finished mesh (unit size, UVs and texture or vertex colours) coloured by ``color_field``."""
    from backend.geometry.finish import finish_mesh
    from backend.geometry.mesh_ops import normalise_unit
    from backend.pipelines.stylize_fields import numpy_color_fn

    ctx.progress("texture", 0.92, "UVs and texture" if request.texture == "uv" else "colours")
    unit, _, _ = normalise_unit(vertices)
    return finish_mesh(vertices, faces, numpy_color_fn(color_field), out_vertices=unit, texture=request.texture,
                       texture_size=preset.texture_size)


def generate_offline(request: GenerateRequest, text_model, preset: GeneratePreset, ctx: JobContext) -> PipelineOutput:
    """The prompt through the offline text model, then the same surface and texture steps."""
    started = time.monotonic()
    ctx.progress("encode", 0.1, "reading the prompt")
    shape_code, color_code, rgb, analysis = text_model.codes(request.prompt, request.common.seed)
    if analysis.warning:
        ctx.warn(analysis.warning)
    if request.negative_prompt:
        ctx.warn("the negative prompt was ignored: it needs the CLIP path (docs/text_to_shape.md)")
    preview = _preview_mesh(text_model.shape_model, shape_code, preset.preview_resolution)
    if preview is not None:
        ctx.preview_mesh(preview)
    ctx.check()
    vertices, faces = surface_of(text_model.shape_model, shape_code, request, preset, ctx)
    mesh = textured(vertices, faces, text_model.color_field(color_code, rgb, vertices), request, preset, ctx)
    metadata = {
        "method": "offline text model → shape model decoder (no CLIP, no test-time alignment)",
        "text_model": text_model.metadata.get("text_model_id", "text_model"),
        "shape_model": text_model.shape_model_id,
        "known_words": list(analysis.known),
        "main_colour": [round(float(c), 3) for c in rgb],
        "ignored_words": list(analysis.unknown),
        "candidates": 1,
        "stylized": "by the prompt's colour and material words" if request.stylize else False,
        "faces": len(mesh.faces),
        "elapsed_s": round(time.monotonic() - started, 2),
    }
    return PipelineOutput(mesh, metadata)


def _preview_mesh(shape_model, shape_code, resolution: int) -> MeshPayload | None:
    from backend.geometry.mesh_ops import normalise_unit
    from backend.render.extract import NoSurfaceError

    try:
        extracted = shape_model.extract_mesh(shape_code, resolution=resolution)
    except NoSurfaceError:
        return None
    vertices, _, _ = normalise_unit(extracted.vertices)
    return MeshPayload(vertices, extracted.faces.astype(np.int32))


class GeneratePipeline(Pipeline):
    """The ``generate`` task. Loads CLIP, the ISS shape model and mapper on first use."""

    task = "generate"

    def __init__(self, device: str, assets_config: TextAssetsConfig | None = None, *, assets: IssAssets | None = None,
                 offline_model: Path | None = TEXT_MODEL):
        """``assets``: already loaded models (tests, benchmarks); otherwise ``assets_config``
        (default: ViT-B-32 and ``STEPSTONE_ISS_DIR`` / ``backend/weights/iss``). Without them the
        offline text model ``offline_model`` runs (None: the CLIP path or nothing)."""
        super().__init__(device)
        self.assets_config = assets_config or TextAssetsConfig()
        self._assets = assets
        self._offline_model = offline_model
        self._offline = None
        self._restarted_preparation = False

    def _iss_ready(self) -> bool:
        """Whether the CLIP path can run; switches to the first-use mapper once it is done."""
        return self._clip_path_pending(start=False) is None

    def _clip_path_pending(self, start: bool) -> str | None:
        """None when the CLIP path can run (switching to the first-use mapper once it is done);
        otherwise why not yet: "" with no CLIP to prepare for (or the explicit ISS folder in use),
        else the line saying how far the preparation is. With ``start``, a preparation that is not
        going is started: a failed one again once per backend start, then reported."""
        from backend.pipelines.generate_assets import first_use, iss_missing_reason

        if self._assets is not None or iss_missing_reason(self.assets_config) is None:
            return None
        prepared = first_use(self.assets_config)
        if prepared is None:
            return ""
        if prepared.ready:
            self.assets_config = prepared.config
            return None
        state = prepared.status.state
        if start and (state in ("absent", "done") or (state == "failed" and not self._restarted_preparation)):
            # "done" but not ready: its files have gone
            self._restarted_preparation = state == "failed"
            try:
                prepared.start(self.device)
            except OSError as exc:  # an unwritable cache or no interpreter: the job itself goes on
                return f"the CLIP text path could not be prepared ({exc})"
        return prepared.status.describe()

    def unavailable_reason(self) -> str | None:
        if self._iss_ready():
            return None
        from backend.pipelines.generate_assets import iss_missing_reason

        from backend.pipelines.generate_offline import offline_unavailable

        offline = offline_unavailable(self._offline_model, self._offline is not None)
        return None if offline is None else f"{offline}; the CLIP path: {iss_missing_reason(self.assets_config)}"

    def _load(self) -> IssAssets:
        if self._assets is None:
            from backend.models.checkpoint import CheckpointError
            from backend.models.clip import ClipWeightsUnavailable
            from backend.models.mapper import MapperFileError
            from backend.pipelines.generate_assets import (
                TextAssetsError,
                load_iss_assets,
            )

            try:
                self._assets = load_iss_assets(self.assets_config, self.device)
            except (ClipWeightsUnavailable, TextAssetsError, MapperFileError, CheckpointError) as exc:
                raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE, str(exc)) from exc
        return self._assets

    def run(self, request: GenerateRequest, ctx: JobContext) -> PipelineOutput:
        # one look at the CLIP path per job (it hashes the shape model's weights to find its mapper)
        pending = self._clip_path_pending(start=self._offline_model is not None)
        if pending is not None and self._offline_model is not None:
            if self._offline is None:
                from backend.pipelines.generate_offline import load_offline_model

                self._offline = load_offline_model(self._offline_model, self.device, self.unavailable_reason(), ctx)
            if pending:
                ctx.warn(f"{pending}; until then the offline text model answers")
            preset = generate_preset(str(self._offline.device.type), request.common.quality)
            return generate_offline(request, self._offline, preset, ctx)
        ctx.progress("load", 0.0, "loading CLIP and the ISS mapper")
        assets = self._load()
        preset = generate_preset(str(assets.clip.device.type), request.common.quality)
        return generate_mesh(request, assets, preset, ctx)
