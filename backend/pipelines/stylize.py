"""Text-guided stylization of any mesh (e.g. one sent from Blender): the ``stylize`` task.

The mesh is moved to a working frame (bounding box centred, longest side 1; Z up and front −Y
as sent), a large mesh gets a decimated proxy for the optimisation, and a colour field — plus, in
``texture_shape`` mode, a displacement along the normals — is optimised with CLIP from random
views (``backend.pipelines.stylize_core``). Both fields are functions of position, so they are
then evaluated on the full mesh:

- ``texture``: the returned vertices and faces are the input's, unchanged (and its UVs when it
  has some; otherwise projection-chart UVs, which only duplicate vertices along seams). The new texture is
  baked into the UVs.
- ``texture_shape``: every vertex moved by at most ``max_offset`` along its normal, same faces.

The result is in the input's own coordinates (not resized), so it replaces the artist's object in
place. Needs CLIP weights only (no mapper, no shape model).

Without CLIP the shipped offline text model colours the mesh instead (``stylize_offline``): the
prompt's colour and material words give a colour code, and the shape model's colour network paints
the mesh in the working frame (texture only; reshaping needs CLIP).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backend.errors import InputError, PipelineError
from backend.geometry.finish import finish_mesh
from backend.models.clip import ClipConfig
from backend.pipelines.base import JobContext, Pipeline, PipelineOutput, preset_for
from backend.pipelines.generate_offline import TEXT_MODEL
from backend.pipelines.stylize_core import MeshStylizer, StylizeConfig, StylizeStep
from backend.pipelines.stylize_fields import ColorField, numpy_color_fn
from backend.protocol import ErrorCode, MeshPayload

if TYPE_CHECKING:
    import torch

    from backend.models.clip import ClipModel
    from backend.requests import StylizeRequest


@dataclass(frozen=True)
class StylizePreset:
    """One device/quality setting of stylization."""

    config: StylizeConfig
    proxy_faces: int
    """Meshes above this many triangles are optimised on a decimated proxy."""
    texture_size: int
    """Side of the baked texture."""
    preview_every: int = 5
    """Steps between preview meshes."""


_CPU = StylizeConfig(steps=25, views=3, resolution=64)
_GPU = StylizeConfig(steps=100, views=3, resolution=112)

PRESETS: dict[tuple[str, str], StylizePreset] = {
    ("cpu", "preview"): StylizePreset(replace(_CPU, steps=12, resolution=48), 5_000, 512),
    ("cpu", "default"): StylizePreset(_CPU, 10_000, 1024),
    ("cpu", "high"): StylizePreset(replace(_CPU, steps=50, resolution=80), 20_000, 2048),
    ("gpu", "preview"): StylizePreset(replace(_GPU, steps=40), 20_000, 1024, 10),
    ("gpu", "default"): StylizePreset(_GPU, 50_000, 2048, 10),
    ("gpu", "high"): StylizePreset(replace(_GPU, steps=200, resolution=128), 100_000, 2048, 20),
}


def stylize_preset(device: str, quality: str) -> StylizePreset:
    """The preset for a device (``cpu`` / ``cuda…``) and a quality (``preview``/``default``/``high``)."""
    return preset_for(PRESETS, device, quality)


@dataclass
class StylizeResult:
    """What ``stylize_mesh`` made."""

    mesh: MeshPayload
    history: list[StylizeStep] = field(default_factory=list)
    proxy_faces: int = 0
    max_offset: float = 0.0
    """Largest displacement applied, in the input's units (0 in ``texture`` mode)."""


def encode_prompt(clip: ClipModel, prompt: str) -> torch.Tensor:
    """``[1, D]`` text feature; a prompt over CLIP's context is a PROMPT_TOO_LONG input error."""
    from backend.models.clip_tokens import ClipPromptTooLong

    try:
        return clip.encode_text([prompt])
    except ClipPromptTooLong as exc:
        raise InputError(ErrorCode.PROMPT_TOO_LONG, str(exc)) from None


def working_frame(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(vertices centred with longest side 1, centre, size)``; bad meshes are INVALID_MESH."""
    vertices = np.asarray(vertices, dtype=np.float64)
    if len(vertices) == 0 or not np.isfinite(vertices).all():
        raise InputError(ErrorCode.INVALID_MESH, "the mesh is empty or has non-finite vertex positions")
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    size = float((hi - lo).max())
    if not size > 0:
        raise InputError(ErrorCode.INVALID_MESH, "the mesh has no extent (all vertices coincide)")
    centre = (lo + hi) / 2.0
    return ((vertices - centre) / size).astype(np.float32), centre, size


def stylize_mesh(
    mesh: MeshPayload,
    prompt: str,
    clip: ClipModel,
    preset: StylizePreset,
    ctx: JobContext,
    *,
    mode: str = "texture",
    texture: str = "uv",
    seed: int = 0,
) -> StylizeResult:
    """Stylize ``mesh`` (any coordinates) with ``prompt``; see the module docstring."""
    import torch

    from backend.geometry.mesh_ops import decimate

    text = encode_prompt(clip, prompt)
    work, centre, size = working_frame(mesh.vertices)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    proxy_v, proxy_f = work, faces
    if len(faces) > preset.proxy_faces:
        ctx.progress("stylize", 0.02, f"decimating {len(faces)} triangles to a {preset.proxy_faces}-triangle proxy")
        proxy_v, proxy_f = decimate(work, faces.astype(np.int32), preset.proxy_faces)
    torch.manual_seed(seed)
    stylizer = MeshStylizer(
        proxy_v, proxy_f, clip, text, ColorField().to(clip.device), preset.config, mode=mode, seed=seed
    )
    steps = preset.config.steps

    def on_step(i: int, terms: StylizeStep) -> None:
        ctx.progress("stylize", 0.05 + 0.8 * (i + 1) / steps, f"step {i + 1}/{steps}: CLIP loss {terms.clip:.3f}")
        if (i + 1) % preset.preview_every == 0 or i + 1 == steps:
            ctx.preview_mesh(_preview(stylizer, proxy_v, proxy_f, centre, size))

    history = stylizer.run(on_step)
    ctx.progress("texture", 0.9, "baking the texture")
    moved = stylizer.apply_displacement(work, faces)
    out_vertices = (
        np.asarray(mesh.vertices, np.float32) if mode == "texture" else (moved * size + centre).astype(np.float32)
    )
    normals = mesh.normals if mode == "texture" else None
    finished = finish_mesh(
        work, faces, numpy_color_fn(stylizer.color_field), out_vertices=out_vertices,
        texture=texture, texture_size=preset.texture_size, uvs=mesh.uvs, normals=normals,
    )
    max_offset = float(np.linalg.norm(moved - work, axis=1).max()) * size if mode == "texture_shape" else 0.0
    return StylizeResult(mesh=finished, history=history, proxy_faces=len(proxy_f), max_offset=max_offset)


def stylize_offline(mesh: MeshPayload, prompt: str, text_model, preset: StylizePreset, ctx: JobContext, *,
                    texture: str = "uv", seed: int = 0) -> tuple[MeshPayload, list[str]]:
    """The mesh, retextured by the offline text model's colour for ``prompt``; and the known words."""
    ctx.progress("stylize", 0.1, "reading the prompt")
    _, color_code, rgb, analysis = text_model.codes(prompt, seed)
    if analysis.warning:
        ctx.warn(analysis.warning)
    work, _, _ = working_frame(mesh.vertices)
    ctx.progress("texture", 0.5, "baking the texture")
    finished = finish_mesh(
        work, np.asarray(mesh.faces, dtype=np.int64), numpy_color_fn(text_model.color_field(color_code, rgb, work)),
        out_vertices=np.asarray(mesh.vertices, np.float32), texture=texture, texture_size=preset.texture_size,
        uvs=mesh.uvs, normals=mesh.normals,
    )
    return finished, list(analysis.known)


def _preview(stylizer: MeshStylizer, vertices, faces, centre, size) -> MeshPayload:
    import torch

    with torch.no_grad():
        moved = stylizer.apply_displacement(vertices, faces)
        rgb = stylizer.color_field(torch.as_tensor(vertices, dtype=torch.float32, device=stylizer.device))
    colors = np.concatenate(
        [(rgb.cpu().numpy() * 255 + 0.5).astype(np.uint8), np.full((len(rgb), 1), 255, np.uint8)], axis=1
    )
    return MeshPayload((moved * size + centre).astype(np.float32), np.asarray(faces, np.int32), colors=colors)


class StylizePipeline(Pipeline):
    """The ``stylize`` task. Loads CLIP on first use and keeps it."""

    task = "stylize"
    method = "CLIP-guided stylization (ISS) on the mesh surface"

    def __init__(self, device: str, clip_config: ClipConfig | None = None, *, clip: ClipModel | None = None,
                 offline_model: Path | None = TEXT_MODEL):
        """``clip``: an already loaded model (tests); otherwise ``clip_config`` (default: ViT-B-32,
        no download from inside the service) is loaded on the first job. Without CLIP the offline
        text model ``offline_model`` colours the mesh (None: CLIP or nothing)."""
        super().__init__(device)
        self.clip_config = clip_config or ClipConfig(allow_download=False)
        self._clip = clip
        self._offline_model = offline_model
        self._offline = None

    def _clip_ready(self) -> bool:
        from backend.pipelines.generate_assets import clip_missing_reason

        return self._clip is not None or clip_missing_reason(self.clip_config) is None

    def unavailable_reason(self) -> str | None:
        if self._clip_ready():
            return None
        from backend.pipelines.generate_assets import clip_missing_reason
        from backend.pipelines.generate_offline import offline_unavailable

        offline = offline_unavailable(self._offline_model, self._offline is not None)
        return None if offline is None else (f"stylization is unavailable: {offline}; the CLIP path: "
                                             f"{clip_missing_reason(self.clip_config)}")

    def _run_offline(self, request: StylizeRequest, ctx: JobContext) -> PipelineOutput:
        from backend.pipelines.generate_offline import load_offline_model

        started = time.monotonic()
        if self._offline is None:
            self._offline = load_offline_model(self._offline_model, self.device, self.unavailable_reason(), ctx)
        preset = stylize_preset(str(self._offline.device.type), request.common.quality)
        if request.mode != "texture":
            ctx.warn("without CLIP, stylization changes the texture only; the shape is kept")
        texture = "uv" if request.texture == "none" else request.texture
        mesh, known = stylize_offline(request.mesh, request.prompt, self._offline, preset, ctx, texture=texture,
                                      seed=request.common.seed)
        metadata = {"method": "offline text model colour → shape model colour network (no CLIP)", "mode": "texture",
                    "known_words": known, "geometry": "unchanged", "optimise_s": round(time.monotonic() - started, 2)}
        return PipelineOutput(mesh, metadata)

    def _load_clip(self) -> ClipModel:
        if self._clip is None:
            from backend.models.clip import ClipWeightsUnavailable, load_clip

            try:
                self._clip = load_clip(replace(self.clip_config, device=self.device))
            except ClipWeightsUnavailable as exc:
                raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE, str(exc)) from exc
        return self._clip

    def run(self, request: StylizeRequest, ctx: JobContext) -> PipelineOutput:
        if not self._clip_ready() and self._offline_model is not None:
            return self._run_offline(request, ctx)
        started = time.monotonic()
        ctx.progress("load", 0.0, "loading CLIP")
        clip = self._load_clip()
        preset = stylize_preset(str(clip.device.type), request.common.quality)
        texture = request.texture
        if texture == "none":
            ctx.warn("stylization makes colour; texture 'none' returns it as a baked UV texture")
            texture = "uv"
        if request.face_budget is not None and request.face_budget < request.mesh.n_triangles:
            ctx.warn("stylization keeps the input's triangles; the face budget is not applied")
        result = stylize_mesh(
            request.mesh, request.prompt, clip, preset, ctx, mode=request.mode, texture=texture, seed=request.common.seed
        )
        metadata = {
            "method": self.method,
            "mode": request.mode,
            "clip": clip.model_id,
            "steps": len(result.history),
            "views": preset.config.views,
            "resolution": preset.config.resolution,
            "proxy_faces": result.proxy_faces,
            "clip_loss_first": round(result.history[0].clip, 4) if result.history else None,
            "clip_loss_last": round(result.history[-1].clip, 4) if result.history else None,
            "max_offset": round(result.max_offset, 6),
            "geometry": "unchanged" if request.mode == "texture" else "displaced along normals",
            "optimise_s": round(time.monotonic() - started, 2),
        }
        return PipelineOutput(result.mesh, metadata)
