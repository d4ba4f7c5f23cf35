"""Text-guided stylization of arbitrary meshes: rasteriser, geometry preservation, texture change,
texture+shape staying near the surface, cancel, availability. Tiny random CLIP, CPU."""

from __future__ import annotations

import io
import math
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from backend import protocol
from backend.errors import JobCancelled
from backend.models.clip import ClipConfig
from backend.models.clip_testing import load_tiny_clip
from backend.pipelines.base import JobContext
from backend.pipelines.stylize import (
    StylizePipeline,
    StylizePreset,
    stylize_mesh,
    stylize_preset,
)
from backend.pipelines.stylize_core import StylizeConfig
from backend.pipelines.stylize_raster import interpolate, rasterize
from backend.protocol import MeshPayload
from backend.render.cameras import focal_from_fov, orbit_cameras
from backend.requests import CommonParams, StylizeRequest


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def clip():
    return load_tiny_clip()


SMALL = StylizePreset(StylizeConfig(steps=6, views=2, resolution=32, color_lr=2e-2, shape_lr=1e-2), 5_000, 64, 3)


def blender_mesh(with_uvs: bool = False) -> MeshPayload:
    """A lumpy sphere in Blender units, off the origin and not unit size (as an artist's object)."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    v = sphere.vertices * (1.0 + 0.15 * np.sin(3 * sphere.vertices[:, :1]))
    v = (v * [1.2, 0.8, 1.5] + [3.0, -1.0, 0.5]).astype(np.float32)
    uvs = None
    if with_uvs:
        uvs = np.stack([np.arctan2(v[:, 1] + 1.0, v[:, 0] - 3.0) / (2 * math.pi) + 0.5, (v[:, 2] - 0.5) / 3.0 + 0.5], 1)
        uvs = np.clip(uvs, 0, 1).astype(np.float32)
    return MeshPayload(v, sphere.faces.astype(np.int32), uvs=uvs)


def context(cancel_after: int | None = None, events: list | None = None) -> JobContext:
    events = [] if events is None else events
    state = {"cancelled": False}

    def progress(stage, fraction, message, eta):
        events.append(stage)
        if cancel_after is not None and events.count("stylize") >= cancel_after:
            state["cancelled"] = True

    return JobContext("job", "cpu", emit_progress=progress, emit_preview_mesh=lambda m, s: events.append("preview"),
                      emit_preview_points=lambda *a: None, is_cancelled=lambda: state["cancelled"],
                      deadline=time.monotonic() + 600)


def texture_pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def test_rasterizer_sees_the_front_face_of_a_cube_from_the_front():
    import trimesh

    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    vertices = torch.tensor(cube.vertices, dtype=torch.float32)
    size, fov = 32, 40.0
    camera = orbit_cameras(torch.zeros(1), torch.zeros(1), 3.0, focal=focal_from_fov(fov, size), height=size, width=size)
    fragments = rasterize(vertices, cube.faces, camera)
    points = interpolate(vertices, torch.as_tensor(cube.faces), fragments)[0]
    mask = fragments.mask[0]
    # The front face (y = −0.5, at distance 2.5) spans ±0.5 → ±atan(0.5/2.5) of the ±20° view.
    half = 0.5 / 2.5 / math.tan(math.radians(fov / 2)) * size / 2
    expected = 4 * half * half
    assert abs(int(mask.sum()) - expected) <= 4 * 2 * half + 4
    assert torch.allclose(points[mask][:, 1], torch.tensor(-0.5), atol=1e-4)
    assert mask[size // 2, size // 2] and not mask[0, 0]
    assert torch.allclose(fragments.bary[0][mask].sum(-1), torch.tensor(1.0, dtype=torch.float32), atol=1e-5)


@pytest.mark.parametrize("with_uvs", [False, True])
def test_texture_mode_keeps_the_geometry_exactly_and_changes_the_texture(clip, with_uvs):
    mesh = blender_mesh(with_uvs)
    result = stylize_mesh(mesh, "a marble statue", clip, SMALL, context(), mode="texture", seed=1)
    out = result.mesh
    protocol.mesh_from_blobs(protocol.mesh_blobs(out))
    if with_uvs:
        assert np.array_equal(out.vertices, mesh.vertices) and np.array_equal(out.faces, mesh.faces)
        assert np.array_equal(out.uvs, mesh.uvs)
    # Same triangles in the same order, corner for corner (the UV charts only split vertices at seams).
    assert np.array_equal(out.vertices[out.faces], mesh.vertices[mesh.faces])
    assert out.uvs.shape == (len(out.vertices), 2)
    pixels = texture_pixels(out.texture_png)
    # The colour field starts uniform grey (128); training moves it and not uniformly.
    assert np.abs(pixels - 128).mean() > 1.0 and pixels.std() > 0.5
    assert result.max_offset == 0.0 and result.history[-1].surface == 0.0


def test_texture_shape_mode_moves_the_surface_but_stays_near_it(clip):
    mesh = blender_mesh()
    preset = replace(SMALL, config=replace(SMALL.config, steps=8))
    result = stylize_mesh(mesh, "a spiky cactus", clip, preset, context(), mode="texture_shape", texture="vertex", seed=2)
    out = result.mesh
    assert np.array_equal(out.faces, mesh.faces)
    size = float((mesh.vertices.max(0) - mesh.vertices.min(0)).max())
    moved = np.linalg.norm(out.vertices - mesh.vertices, axis=1)
    assert moved.max() > 1e-5 * size  # the geometry did move
    assert moved.max() <= preset.config.max_offset * size * 1.001
    assert result.max_offset == pytest.approx(moved.max(), rel=1e-3)
    assert out.colors.shape == (len(out.vertices), 4) and np.isfinite(out.vertices).all()
    assert result.history[-1].surface > 0


def test_large_meshes_are_optimised_on_a_proxy_and_still_returned_whole(clip):
    mesh = blender_mesh()
    preset = replace(SMALL, proxy_faces=300, config=replace(SMALL.config, steps=2))
    result = stylize_mesh(mesh, "a wooden bowl", clip, preset, context(), seed=0)
    assert result.proxy_faces <= 300 < len(mesh.faces)
    assert np.array_equal(result.mesh.vertices[result.mesh.faces], mesh.vertices[mesh.faces])


def test_cancel_stops_within_one_step(clip):
    events: list = []
    with pytest.raises(JobCancelled):
        stylize_mesh(blender_mesh(), "a red car", clip, replace(SMALL, preview_every=100), context(2, events))
    assert events.count("stylize") == 2


def test_pipeline_runs_a_request_and_reports_metadata(clip):
    request = StylizeRequest(mesh=blender_mesh(), prompt="a golden cup", common=CommonParams(quality="preview", seed=4))
    pipeline = StylizePipeline("cpu", clip=clip)
    assert pipeline.unavailable_reason() is None
    fast = {("cpu", "preview"): SMALL}
    from backend.pipelines import stylize as stylize_module

    original = dict(stylize_module.PRESETS)
    stylize_module.PRESETS.update(fast)
    try:
        output = pipeline.run(request, context())
    finally:
        stylize_module.PRESETS.update(original)
    assert output.metadata["geometry"] == "unchanged" and output.metadata["steps"] == SMALL.config.steps
    assert output.mesh.texture_png is not None


def test_presets_and_unavailable_reason(tmp_path, monkeypatch):
    assert stylize_preset("cuda", "default").config.views == 3
    monkeypatch.delenv("STEPSTONE_CLIP_CHECKPOINT", raising=False)
    reason = StylizePipeline("cpu", ClipConfig(cache_dir=str(tmp_path), allow_download=False),
                             offline_model=None).unavailable_reason()  # the CLIP path alone
    for needed in ("ViT-B-32", "laion2b_s34b_b79k", str(tmp_path), "STEPSTONE_CLIP_CHECKPOINT", "--download-clip"):
        assert needed in reason, needed
