"""ISS stage 2 (text → shape): alignment, gradients, cancel, outputs, seeds, candidates, availability.

Everything runs with the tiny random CLIP and a tiny random shape model on the CPU.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from script_modules import load_script

from backend import protocol
from backend.errors import JobCancelled, PipelineError
from backend.models.clip import ClipConfig
from backend.models.clip_testing import TINY_CLIP_EMBED_DIM, load_tiny_clip
from backend.models.encoders import EncoderConfig
from backend.models.mapper import Clip2ShapeMapper, MapperConfig
from backend.models.shape_model import (
    ColorNetConfig,
    SDFNetConfig,
    ShapeModel,
    ShapeModelConfig,
)
from backend.pipelines.base import JobContext
from backend.pipelines.generate import (
    GeneratePipeline,
    GeneratePreset,
    generate_mesh,
    generate_preset,
)
from backend.pipelines.generate_align import (
    AlignConfig,
    TextShapeAligner,
    fixed_views,
    render_codes,
)
from backend.pipelines.generate_assets import IssAssets, TextAssetsConfig
from backend.pipelines.stylize_core import StylizeConfig
from backend.protocol import ErrorCode
from backend.requests import CommonParams, GenerateRequest


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_shape_model(seed: int = 0) -> ShapeModel:
    torch.manual_seed(seed)
    config = ShapeModelConfig(
        shape_dim=8, color_dim=8,
        encoder=EncoderConfig(small_channels=(8, 16), head_hidden=16, image_size=32),
        sdf=SDFNetConfig(hidden=32, layers=3, skip_layers=(2,)),
        color=ColorNetConfig(hidden=16, layers=2),
    )
    model = ShapeModel(config)
    with torch.no_grad():
        # The sphere init makes the shape nearly independent of the code; give the code a say.
        for i, layer in enumerate(model.sdf_net.hidden):
            if i == 0 or i in model.sdf_net.skips:
                layer.weight[:, -8:].normal_(0.0, 0.05)
    return model.eval()


def tiny_assets(seed: int = 0) -> IssAssets:
    clip = load_tiny_clip()
    torch.manual_seed(seed)
    mapper = Clip2ShapeMapper(MapperConfig(clip_dim=TINY_CLIP_EMBED_DIM, code_dim=16, hidden_dim=32, num_blocks=1))
    return IssAssets(clip=clip, shape_model=tiny_shape_model(seed), mapper=mapper, shape_model_id="shape_model:tiny")


SMALL = GeneratePreset(
    AlignConfig(steps=4, views=2, resolution=16, samples=16, lr=3e-3),
    score_views=2, preview_every=2, preview_resolution=16, mesh_resolution=32, max_faces=1500, texture_size=64,
    stylize=StylizeConfig(steps=3, views=2, resolution=24),
)


class Recorder:
    def __init__(self, cancel_after_align: int | None = None):
        self.progress: list[tuple] = []
        self.previews = []
        self.cancel_after_align = cancel_after_align
        self.cancelled = False

    def context(self) -> JobContext:
        return JobContext("job", "cpu", emit_progress=self._progress, emit_preview_mesh=self._preview,
                          emit_preview_points=lambda *a: None, is_cancelled=lambda: self.cancelled,
                          deadline=time.monotonic() + 600)

    def _progress(self, stage, fraction, message, eta):
        self.progress.append((stage, fraction, message))
        if self.cancel_after_align is not None and sum(p[0] == "align" for p in self.progress) >= self.cancel_after_align:
            self.cancelled = True

    def _preview(self, mesh, step):
        self.previews.append(mesh)


def _params(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_the_chunked_backward_gives_the_plain_backwards_gradient_and_the_same_step():
    """Issue 19, item 3: rendering again a chunk of rays at a time to carry the image gradient
    (what keeps the GPU preset's memory bounded) must change nothing but the memory."""
    assets = tiny_assets()
    text = assets.clip.encode_text(["a tall blue vase"])
    plain = AlignConfig(steps=0, views=3, resolution=16, samples=16, lr=1e-2)
    chunked = replace(plain, backward_chunk_rays=37)  # not a divisor of a view's 256 rays
    cameras = fixed_views(3, 16, plain.sampling)
    grads, terms = [], []
    for config in (plain, chunked):
        aligner = TextShapeAligner(assets.shape_model, assets.mapper, assets.clip, text, config, seed=5)
        terms.append(aligner.step(cameras))  # the same augmentation draws: the same seed
        grads.append([p.grad.clone() for p in aligner.mapper.parameters()])
    assert terms[0] == terms[1]
    assert any(g.abs().sum() > 0 for g in grads[0])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in assets.shape_model.parameters())


def test_stage2_loss_decreases_and_only_the_mapper_copy_learns():
    assets = tiny_assets()
    original_mapper = _params(assets.mapper)
    shape_before = _params(assets.shape_model)
    clip_before = [p.detach().clone() for p in assets.clip.parameters()]
    config = AlignConfig(steps=0, views=3, resolution=16, samples=16, lr=1e-2, augment=None)
    text = assets.clip.encode_text(["a red wooden chair"])
    aligner = TextShapeAligner(assets.shape_model, assets.mapper, assets.clip, text, config, seed=3)
    cameras = fixed_views(3, 16, config.sampling)
    with torch.no_grad():
        first, first_terms = aligner.loss(cameras, augment=False)
    for _ in range(15):
        aligner.step(cameras)
    with torch.no_grad():
        last, last_terms = aligner.loss(cameras, augment=False)
    assert float(last) < float(first) - 1e-2, (float(first), float(last))
    # The CLIP term itself improves (not only the background term, e.g. by the shape vanishing).
    assert last_terms.clip < first_terms.clip - 5e-3
    with torch.no_grad():
        _, alpha = render_codes(assets.shape_model, aligner.codes(), cameras, config)
    assert float(alpha.mean()) > 0.05

    assert all(p.grad is None for p in assets.shape_model.parameters())
    assert all(p.grad is None for p in assets.clip.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in aligner.mapper.parameters())
    for name, value in _params(assets.shape_model).items():
        assert torch.equal(value, shape_before[name]), name
    assert all(torch.equal(a, b) for a, b in zip(clip_before, (p.detach() for p in assets.clip.parameters())))
    # The loaded mapper is shared by jobs: only the per-prompt copy moves.
    for name, value in _params(assets.mapper).items():
        assert torch.equal(value, original_mapper[name]), name
    assert any(not torch.equal(v, original_mapper[k]) for k, v in _params(aligner.mapper).items())


def test_generate_outputs_a_valid_unit_mesh_with_texture_and_previews():
    assets = tiny_assets()
    recorder = Recorder()
    request = GenerateRequest(prompt="a blue vase", candidates=2, negative_prompt="a cup")
    out = generate_mesh(request, assets, SMALL, recorder.context())
    mesh = out.mesh
    # What the server checks before sending a result (dtypes, index range, finiteness).
    protocol.mesh_from_blobs(protocol.mesh_blobs(mesh))
    assert np.isfinite(mesh.vertices).all() and mesh.vertices.dtype == np.float32
    extent = mesh.vertices.max(0) - mesh.vertices.min(0)
    assert extent.max() == pytest.approx(1.0, abs=1e-5)
    assert np.allclose((mesh.vertices.max(0) + mesh.vertices.min(0)) / 2, 0.0, atol=1e-5)
    assert mesh.faces.min() >= 0 and mesh.faces.max() < len(mesh.vertices)
    assert len(mesh.faces) <= SMALL.max_faces
    assert mesh.uvs.shape == (len(mesh.vertices), 2) and (mesh.uvs >= 0).all() and (mesh.uvs <= 1).all()
    from PIL import Image

    assert Image.open(io.BytesIO(mesh.texture_png)).size == (64, 64)
    assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-4)
    scores = [c["clip_score"] for c in out.metadata["candidates"]]
    assert len(scores) == 2 and out.metadata["chosen"] == int(np.argmax(scores))
    assert out.metadata["negative_prompt"] is True
    assert len(recorder.previews) == 4  # every 2 steps, 4 steps, 2 candidates
    assert all(np.isfinite(p.vertices).all() and len(p.faces) > 0 for p in recorder.previews)


def test_seed_reproduces_the_result_and_another_seed_differs():
    assets = tiny_assets()
    preset = replace(SMALL, preview_every=100)
    runs = [
        generate_mesh(GenerateRequest(prompt="a lamp", common=CommonParams(seed=s), texture="vertex"),
                      assets, preset, Recorder().context())
        for s in (5, 5, 6)
    ]
    a, b, _ = (r.mesh for r in runs)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    assert np.array_equal(a.colors, b.colors)
    assert a.colors.shape == (len(a.vertices), 4)
    assert runs[0].metadata["candidates"] == runs[1].metadata["candidates"]
    assert runs[0].metadata["candidates"] != runs[2].metadata["candidates"]


def test_cancel_stops_within_one_step():
    assets = tiny_assets()
    recorder = Recorder(cancel_after_align=2)
    with pytest.raises(JobCancelled):
        generate_mesh(GenerateRequest(prompt="a chair"), assets, replace(SMALL, preview_every=100), recorder.context())
    assert sum(p[0] == "align" for p in recorder.progress) == 2


def test_stylize_after_generation_trains_a_copy_of_the_colour_head():
    assets = tiny_assets()
    color_before = _params(assets.shape_model.color_net)
    out = generate_mesh(GenerateRequest(prompt="a golden statue", stylize=True, texture="vertex"),
                        assets, replace(SMALL, preview_every=100), Recorder().context())
    plain = generate_mesh(GenerateRequest(prompt="a golden statue", texture="vertex"),
                          assets, replace(SMALL, preview_every=100), Recorder().context())
    assert out.metadata["stylized"] and out.metadata["stylize_clip_loss"] is not None
    assert np.array_equal(out.mesh.vertices, plain.mesh.vertices)
    assert not np.array_equal(out.mesh.colors, plain.mesh.colors)
    for name, value in _params(assets.shape_model.color_net).items():
        assert torch.equal(value, color_before[name])


def test_presets_follow_the_paper_on_gpu():
    gpu = generate_preset("cuda", "default").align
    assert (gpu.views, gpu.resolution, gpu.steps) == (10, 90, 20)
    cpu = generate_preset("cpu", "default").align
    assert cpu.views * cpu.resolution**2 < gpu.views * gpu.resolution**2
    with pytest.raises(ValueError):
        generate_preset("cpu", "ultra")


def test_unavailable_reason_names_clip_mapper_and_the_command(tmp_path, monkeypatch):
    monkeypatch.delenv("STEPSTONE_CLIP_CHECKPOINT", raising=False)
    monkeypatch.delenv("STEPSTONE_ISS_DIR", raising=False)
    cache = tmp_path / "empty-cache"
    config = TextAssetsConfig(clip=ClipConfig(cache_dir=str(cache), allow_download=False), iss_dir=str(tmp_path / "iss"))
    pipeline = GeneratePipeline("cpu", config, offline_model=None)  # the CLIP path alone
    reason = pipeline.unavailable_reason()
    assert reason is not None
    for needed in ("ViT-B-32", "laion2b_s34b_b79k", str(cache), "STEPSTONE_CLIP_CHECKPOINT",
                   str(tmp_path / "iss" / "mapper.safetensors"), "scripts/train_mapper.py", "STEPSTONE_ISS_DIR"):
        assert needed in reason, needed
    with pytest.raises(PipelineError) as info:
        pipeline.run(GenerateRequest(prompt="a chair"), Recorder().context())
    assert info.value.code == ErrorCode.PIPELINE_UNAVAILABLE

    monkeypatch.setenv("STEPSTONE_CLIP_CHECKPOINT", str(tmp_path / "nope.safetensors"))
    reason = GeneratePipeline("cpu", config, offline_model=None).unavailable_reason()
    assert str(tmp_path / "nope.safetensors") in reason and "mapper" in reason


def test_registry_has_the_text_tasks():
    from backend.pipelines.registry import default_registry

    registry = default_registry()
    assert registry.has("generate") and registry.has("stylize")
    assert GeneratePipeline("cpu", assets=tiny_assets()).unavailable_reason() is None


def test_benchmark_r_precision_scores_results_with_another_clip():
    from backend.models.clip_testing import tiny_clip_config

    bench = load_script("bench_generate")
    assets = tiny_assets()
    prompts = ["a chair", "a vase"]
    outputs = [generate_mesh(GenerateRequest(prompt=p, texture=t), assets, replace(SMALL, preview_every=100),
                             Recorder().context()) for p, t in zip(prompts, ("uv", "vertex"))]
    value = bench.score_r_precision(outputs, tiny_clip_config(seed=1), prompts)
    assert value in (0.0, 0.5, 1.0)
