"""Text → shape and stylize with the shipped offline text model: no CLIP, no download, CPU."""

import time
from pathlib import Path

import numpy as np
import pytest

from backend.errors import PipelineError
from backend.pipelines.base import JobContext
from backend.pipelines.generate import GeneratePipeline
from backend.pipelines.generate_offline import TEXT_MODEL, OfflineTextModel, offline_missing_reason
from backend.pipelines.stylize import StylizePipeline
from backend.protocol import ErrorCode, MeshPayload
from backend.requests import CommonParams, GenerateRequest, StylizeRequest
from backend.text.vocab import UnknownPromptError


@pytest.fixture(scope="module")
def text_model():
    return OfflineTextModel.load("cpu")


def context(warnings=None):
    return JobContext("job", "cpu", emit_progress=lambda *a: None, emit_preview_mesh=lambda *a: None,
                      emit_preview_points=lambda *a: None, is_cancelled=lambda: False,
                      deadline=time.monotonic() + 600)


def mean_colour(mesh: MeshPayload) -> np.ndarray:
    if mesh.colors is not None:
        return mesh.colors[:, :3].astype(float).mean(0)
    return mesh.texture[..., :3].reshape(-1, 3).astype(float).mean(0)


def test_the_shipped_text_model_fits_the_shipped_shape_model_and_is_small():
    assert offline_missing_reason() is None
    size = sum(p.stat().st_size for p in Path(TEXT_MODEL).parent.glob(f"{Path(TEXT_MODEL).name}.*"))
    assert size < 20e6


def test_the_text_path_decodes_through_the_plain_encoding_and_reconstruction_through_the_blur(text_model):
    from backend.pipelines.generate_offline import TEXT_ENCODING_BLUR
    from backend.pipelines.reconstruct.model import ModelReconstructPipeline
    from backend.pipelines.reconstruct.weights import ENCODING_BLUR

    assert text_model.shape_model.sdf_net.encoding_blur == TEXT_ENCODING_BLUR == 0.0
    reconstruct = ModelReconstructPipeline("cpu")
    reconstruct.load()
    assert reconstruct.model.sdf_net.encoding_blur == ENCODING_BLUR > 0


def test_missing_or_mismatched_files_say_what_to_do(tmp_path):
    assert "is missing" in offline_missing_reason(tmp_path / "text_model")
    other = tmp_path / "text_model"
    for suffix in (".json", ".safetensors"):
        (tmp_path / f"text_model{suffix}").write_bytes(Path(f"{TEXT_MODEL}{suffix}").read_bytes())
    manifest = other.with_suffix(".json")
    manifest.write_text(manifest.read_text().replace('"shape_model_id": "shape_model:', '"shape_model_id": "shape_model:0'))
    assert "retrain it with scripts/train_text.py" in offline_missing_reason(other)


def test_prompts_land_on_different_codes_and_seeds_vary_them(text_model):
    chair, _, _, analysis = text_model.codes("a wooden chair")
    car, _, _, _ = text_model.codes("a red car")
    assert analysis.known == ("wooden", "chair") and not analysis.warning
    assert float((chair - car).abs().mean()) > 0.05
    again, _, _, _ = text_model.codes("a wooden chair")
    seeded, _, _, _ = text_model.codes("a wooden chair", seed=7)
    assert np.allclose(chair.numpy(), again.numpy()) and not np.allclose(chair.numpy(), seeded.numpy())


def test_colour_words_set_the_colour(text_model):
    import torch

    points = torch.rand(2000, 3) - 0.5
    for prompt, channel in (("a red vase", 0), ("a green vase", 1), ("a blue vase", 2)):
        _, color_code, rgb, _ = text_model.codes(prompt)
        assert int(rgb.argmax()) == channel, (prompt, rgb)
        field = text_model.color_field(color_code, rgb, points)
        with torch.no_grad():
            assert torch.allclose(field(points).mean(0), rgb, atol=0.05)  # clamping may shift it a little


def test_generate_offline_makes_a_textured_mesh_on_cpu():
    pipeline = GeneratePipeline("cpu")
    assert pipeline.unavailable_reason() is None  # no CLIP in this environment: the offline model
    ctx = context()
    request = GenerateRequest(prompt="a tall wooden zebra chair", common=CommonParams(quality="preview"))
    started = time.monotonic()
    out = pipeline.run(request, ctx)
    assert time.monotonic() - started < 60
    assert len(out.mesh.faces) > 200 and out.metadata["method"].startswith("offline text model")
    assert out.metadata["known_words"] == ["tall", "wooden", "chair"] and out.metadata["ignored_words"] == ["zebra"]
    assert any("'zebra'" in w for w in ctx.warnings)
    extent = out.mesh.vertices.max(0) - out.mesh.vertices.min(0)
    assert extent.max() == pytest.approx(1.0, abs=0.02)


def test_a_prompt_with_no_known_word_is_refused_by_name():
    with pytest.raises(UnknownPromptError) as refused:
        GeneratePipeline("cpu").run(GenerateRequest(prompt="a zebra", common=CommonParams(quality="preview")), context())
    assert refused.value.code == ErrorCode.INVALID_PROMPT and "'zebra'" in refused.value.message


def test_stylize_offline_recolours_a_mesh_keeping_its_geometry():
    import trimesh

    box = trimesh.creation.box((1.0, 0.6, 0.4))
    mesh = MeshPayload(box.vertices.astype(np.float32), box.faces.astype(np.int32))
    pipeline = StylizePipeline("cpu")
    assert pipeline.unavailable_reason() is None
    ctx = context()
    red = pipeline.run(StylizeRequest(mesh=mesh, prompt="red", common=CommonParams(quality="preview"), texture="vertex"), ctx)
    blue = pipeline.run(StylizeRequest(mesh=mesh, prompt="blue", common=CommonParams(quality="preview"), texture="vertex"), ctx)
    assert red.metadata["method"].startswith("offline text model") and red.metadata["geometry"] == "unchanged"
    r, b = mean_colour(red.mesh), mean_colour(blue.mesh)
    assert r[0] > r[2] and b[2] > b[0]
    assert np.allclose(np.sort(red.mesh.vertices, 0)[[0, -1]], np.sort(mesh.vertices, 0)[[0, -1]], atol=1e-5)


def test_without_the_text_model_the_clip_path_message_remains(tmp_path):
    pipeline = GeneratePipeline("cpu", offline_model=tmp_path / "text_model")
    reason = pipeline.unavailable_reason()
    assert "offline text model" in reason and "is missing" in reason and "CLIP" in reason
    with pytest.raises(PipelineError) as info:
        pipeline.run(GenerateRequest(prompt="a chair", common=CommonParams(quality="preview")), context())
    assert info.value.code == ErrorCode.PIPELINE_UNAVAILABLE
