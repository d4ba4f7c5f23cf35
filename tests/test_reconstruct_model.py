"""The learned reconstruction pipeline on a tiny randomly initialised checkpoint made here."""

import dataclasses
import io
import math

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from backend.config import ServiceLimits
from backend.errors import JobCancelled, PipelineError
from backend.geometry.fidelity import camera_position, covered_image, mask_iou
from backend.images import decode_image
from backend.models.checkpoint import save_shape_model
from backend.models.encoders import EncoderConfig
from backend.models.shape_model import ColorNetConfig, SDFNetConfig, ShapeModel, ShapeModelConfig
from backend.pipelines.reconstruct import fitting, presets
from backend.pipelines.reconstruct.dispatch import OUTLINE_FIRST_SHARE, ReconstructPipeline
from backend.pipelines.reconstruct.model import ModelReconstructPipeline
from backend.pipelines.reconstruct.silhouette import OutlineReconstructPipeline
from backend.protocol import ErrorCode, MeshPayload
from backend.render.losses import mirror_asymmetry
from backend.requests import CommonParams, ReconstructRequest
from conftest import encoded_png
from doubles import recording_context

TINY = ShapeModelConfig(
    shape_dim=8, color_dim=8,
    encoder=EncoderConfig(small_channels=(8, 16), head_hidden=16, image_size=32),
    sdf=SDFNetConfig(hidden=16, layers=3, skip_layers=(1,), pe_freqs=2),
    color=ColorNetConfig(hidden=16, layers=2, pe_freqs=2),
)

SHIPPED_PRESETS = dict(presets.PRESETS)  # before the fixture below swaps in FAST

# small enough for the test budget, large enough to exercise every stage
FAST = presets.ModelPreset(refine_steps=6, refine_rays=64, refine_samples=12, target_size=32,
                           preview_every=2, preview_resolution=16, mesh_resolution=32,
                           max_faces=1500, texture_size=64, lr_shape=0.02)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny_shape_model"
    save_shape_model(path, ShapeModel(TINY), {"step": 0, "beta": 0.05})
    return path


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(autouse=True)
def fast_presets(monkeypatch):
    monkeypatch.setitem(presets.PRESETS, "preview", FAST)
    monkeypatch.setitem(presets.PRESETS, "default", dataclasses.replace(FAST, refine_steps=8))




def test_higher_presets_add_detail_without_refining_the_shape_longer():
    """Longer refinement fits the one mask at the shape's cost (high with 100 steps: F@5% 0.786
    against default's 0.813, docs/reconstruction.md), so high spends its time on detail."""
    preview, default, high = (SHIPPED_PRESETS[q] for q in ("preview", "default", "high"))
    for field in ("mesh_resolution", "max_faces", "texture_size"):
        assert getattr(preview, field) <= getattr(default, field) <= getattr(high, field)
    assert high.mesh_resolution > default.mesh_resolution and high.texture_size > default.texture_size
    assert high.refine_steps * high.lr_shape <= default.refine_steps * default.lr_shape


def disc(size=96, alpha=True, offset=0):
    yy, xx = np.mgrid[0:size, 0:size]
    inside = (xx - size / 2 - offset) ** 2 + (yy - size / 2) ** 2 < (size * 0.3) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = 0 if alpha else 255
    rgba[inside] = (200, 40, 40, 255)
    return encoded_png(rgba)


def lumpy(size=96):
    """A red body whose outline is no ellipse, no surface of revolution's and not plain (it turns
    every few pixels): `auto` runs the model on it and judges its result by the usual limits."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    radius, angle = np.hypot(xx - size / 2, yy - size / 2), np.arctan2(yy - size / 2, xx - size / 2)
    inside = radius < size * 0.3 + 3 * np.sin(7 * angle + 0.4) + 2 * np.sin(11 * angle + 1.0)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[inside] = (200, 40, 40, 255)
    return encoded_png(rgba)


def request(*images, quality="preview", texture="uv", face_budget=None):
    decoded = [decode_image(d, max_pixels=ServiceLimits().max_image_pixels) for d in images]
    return ReconstructRequest(decoded, CommonParams(quality=quality), texture=texture, face_budget=face_budget)


def test_single_view_gives_a_valid_unit_textured_mesh_and_streams_previews(weights):
    events = []
    pipe = ModelReconstructPipeline("cpu", weights)
    out = pipe.run(request(disc()), recording_context(events=events))
    mesh = out.mesh
    assert np.isfinite(mesh.vertices).all() and len(mesh.faces) > 50
    extents = mesh.vertices.max(0) - mesh.vertices.min(0)
    assert extents.max() == pytest.approx(1.0, abs=1e-5)
    assert np.abs((mesh.vertices.max(0) + mesh.vertices.min(0)) / 2).max() < 1e-5
    assert mesh.faces.max() < len(mesh.vertices)
    assert mesh.uvs is not None and mesh.texture_png.startswith(b"\x89PNG")
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    assert tm.volume > 0  # outward faces
    kinds = [e[0] for e in events]
    assert kinds.count("preview") >= 2  # the initial prediction and during refinement
    meta = out.metadata
    assert meta["method"] == ModelReconstructPipeline.method
    assert meta["weights"]["id"].startswith("shape_model:")
    assert meta["refinement"]["steps"] == FAST.refine_steps
    assert meta["segmentation"][0]["confidence"] == 1.0
    assert set(meta["timings_s"]) >= {"segment_s", "encode_s", "refine_s", "mesh_s", "texture_s", "total_s"}


def test_served_field_is_blurred_and_its_unblurred_twin_is_meshed_alike(weights):
    from backend.pipelines.reconstruct.weights import ENCODING_BLUR

    pipe = ModelReconstructPipeline("cpu", weights)
    shaped = pipe.shape(request(disc()), recording_context())
    assert pipe.model.sdf_net.encoding_blur == ENCODING_BLUR > 0
    vertices, faces = pipe.unblurred_surface(shaped, recording_context())
    assert np.isfinite(vertices).all() and 0 < len(faces) <= len(shaped.faces)
    # the same refined code: the two surfaces differ only by the encoding's high octaves
    blurred = trimesh.Trimesh(shaped.vertices, shaped.faces)
    plain = trimesh.Trimesh(vertices, faces)
    assert np.abs(blurred.bounds - plain.bounds).max() < 0.1
    # with no blur served, the unblurred surface is the result itself
    pipe.model.sdf_net.encoding_blur = 0.0
    plain_shaped = pipe.shape(request(disc()), recording_context())
    same_vertices, same_faces = pipe.unblurred_surface(plain_shaped, recording_context())
    assert len(same_faces) == len(plain_shaped.faces)
    assert np.allclose(np.sort(same_vertices, 0), np.sort(plain_shaped.vertices, 0), atol=1e-5)


def test_refinement_repairs_a_badly_framed_camera(weights, monkeypatch):
    # start with a focal length 35 % too short: the rendered object is far smaller than the mask,
    # and only the gradient through the renderer into the camera can fix it
    fit = fitting.fit_framing

    def short_focal(*args):
        log_focal, offset = fit(*args)
        return log_focal + np.log(0.65), offset

    monkeypatch.setattr(fitting, "fit_framing", short_focal)
    monkeypatch.setitem(presets.PRESETS, "default", dataclasses.replace(FAST, refine_steps=25))
    out = ModelReconstructPipeline("cpu", weights).run(request(disc(), quality="default", texture="none"), recording_context())
    iou = out.metadata["refinement"]["mask_iou"]
    assert iou["before"][0] < 0.6
    assert iou["after"][0] > iou["before"][0] + 0.15


def test_a_zero_shape_step_keeps_the_encoders_shape_and_still_fits_the_camera(weights, monkeypatch):
    fit, refine = fitting.fit_framing, ModelReconstructPipeline._refine
    seen = {}

    def short_focal(*args):
        log_focal, offset = fit(*args)
        return log_focal + np.log(0.65), offset

    def recording_refine(self, views, codes, preset, ctx):
        seen["codes"], seen["result"] = codes, refine(self, views, codes, preset, ctx)
        return seen["result"]

    monkeypatch.setattr(fitting, "fit_framing", short_focal)
    monkeypatch.setattr(ModelReconstructPipeline, "_refine", recording_refine)
    monkeypatch.setitem(presets.PRESETS, "default",
                        dataclasses.replace(FAST, refine_steps=25, lr_shape=0.0))
    out = ModelReconstructPipeline("cpu", weights).run(request(disc(), quality="default", texture="none"), recording_context())
    assert torch.equal(seen["result"]["shape"], seen["codes"].shape.mean(0))
    assert not torch.equal(seen["result"]["color"], seen["codes"].color.mean(0))  # the colour code is still fitted
    iou = out.metadata["refinement"]["mask_iou"]
    assert iou["after"][0] > iou["before"][0] + 0.15


def test_carving_cuts_the_surface_to_the_input_silhouette(weights, monkeypatch):
    # the untrained model predicts a round blob; a thin upright bar's silhouette must cut it into
    # a slab that is thin across the view (measured as the narrowest horizontal width)
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[19:77, 43:53] = (40, 40, 200, 255)

    def narrowest_width_over_height(v):
        widths = [np.ptp(v[:, 0] * np.cos(a) + v[:, 1] * np.sin(a)) for a in np.linspace(0, np.pi, 90)]
        return min(widths) / np.ptp(v[:, 2])

    ratios, fidelity = {}, {}
    for margin in (None, 0.02):
        monkeypatch.setitem(presets.PRESETS, "preview", dataclasses.replace(FAST, carve_margin=margin))
        out = ModelReconstructPipeline("cpu", weights).run(request(encoded_png(rgba), texture="none"), recording_context())
        assert np.isfinite(out.mesh.vertices).all()
        ratios[margin] = narrowest_width_over_height(out.mesh.vertices)
        assert out.metadata["carved"] is (margin is not None)
        fidelity[margin] = out.metadata["fidelity"]["silhouette_iou"]
    assert ratios[None] > 0.8 and ratios[0.02] < 0.55
    # seen from the camera its metadata reports, the carved result covers the bar (widened by the
    # carving margin, a third of this thin bar's width); the uncut blob does not
    assert fidelity[0.02] > 0.65 and fidelity[None] < 0.4


def test_carving_that_leaves_nothing_falls_back_to_the_uncut_shape_with_a_warning(weights, monkeypatch):
    from backend.render import hull

    monkeypatch.setattr(hull, "hull_field", lambda *args: lambda points: torch.ones(len(points)))
    monkeypatch.setitem(presets.PRESETS, "preview", dataclasses.replace(FAST, carve_margin=0.02))
    ctx = recording_context()
    out = ModelReconstructPipeline("cpu", weights).run(request(disc(), texture="none"), ctx)
    assert len(out.mesh.faces) > 50 and out.metadata["carved"] is False
    assert any("silhouette left nothing" in w for w in ctx.warnings)


def test_refinement_keeps_a_non_symmetric_model_mirror_symmetric(tmp_path, monkeypatch):
    config = dataclasses.replace(TINY, sdf=dataclasses.replace(TINY.sdf, symmetric=False))
    torch.manual_seed(1)
    model = ShapeModel(config)
    with torch.no_grad():  # an untrained net ignores its code (zero code weights): give it some say
        first = model.sdf_net.hidden[0].weight
        first[:, -config.shape_dim:].normal_(0.0, 0.5)
        first[:, 3:-config.shape_dim].normal_(0.0, 0.2)
    save_shape_model(tmp_path / "asym", model, {"step": 0, "beta": 0.05})
    pipe = ModelReconstructPipeline("cpu", tmp_path / "asym")
    refined_codes = []

    class Refined(Exception):
        pass

    def capture(self, refined, *args):  # the refined code is all this test needs
        refined_codes.append(refined["shape"].unsqueeze(0))
        raise Refined

    monkeypatch.setattr(ModelReconstructPipeline, "_mesh", capture)
    probe = (torch.rand(4096, 3, generator=torch.Generator().manual_seed(5)) - 0.5) * 1.2
    asymmetry = {}
    for weight in (0.0, 5.0):
        # the mask and colours pull the code anywhere; only the symmetry term cares about mirror images
        preset = dataclasses.replace(FAST, refine_steps=20, symmetry=weight, carve_margin=None)
        monkeypatch.setitem(presets.PRESETS, "preview", preset)
        with pytest.raises(Refined):
            pipe.run(request(disc(), texture="none"), recording_context())
        with torch.no_grad():
            asymmetry[weight] = float(mirror_asymmetry(pipe.model.sdf_field(refined_codes[-1][0]), probe))
    assert asymmetry[5.0] < 0.7 * asymmetry[0.0]


def towards_fitted_camera(metadata: dict) -> np.ndarray:
    """Unit vector from the object towards the first view's fitted camera (the reported one)."""
    camera = metadata["camera"]
    towards = camera_position(camera) - np.asarray(camera["target"])
    return towards / np.linalg.norm(towards)


def test_the_result_faces_its_photo_whichever_way_the_model_turned_it(weights, monkeypatch):
    # the model's own front (-Y) may face anywhere: with the first camera fitted at azimuth 86°
    # (the model's right), the result is still turned so that Blender's front view shows the photo, its left half red
    # on the left and its right half green on the right
    refine = ModelReconstructPipeline._refine

    def turned(self, *args):
        refined = refine(self, *args)
        refined["angles"] = torch.tensor([[1.5, 0.0, 0.0]])  # level, from the model's right
        return refined

    monkeypatch.setattr(ModelReconstructPipeline, "_refine", turned)
    monkeypatch.setitem(presets.PRESETS, "preview", dataclasses.replace(FAST, carve_margin=None))
    size = 96
    yy, xx = np.mgrid[0:size, 0:size]
    rgba = np.zeros((size, size, 4), np.uint8)
    inside = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size * 0.3) ** 2
    rgba[inside] = (200, 40, 40, 255)
    rgba[inside & (xx >= size / 2)] = (40, 160, 40, 255)
    out = ModelReconstructPipeline("cpu", weights).run(request(encoded_png(rgba), texture="vertex"), recording_context())
    camera, mesh = out.metadata["camera"], out.mesh
    assert camera["azimuth"] == 0.0
    assert out.metadata["turned_deg"] == pytest.approx(-math.degrees(1.5), abs=1e-3)
    front = mesh.vertices @ towards_fitted_camera(out.metadata) > 0.2
    assert abs(towards_fitted_camera(out.metadata)[0]) < 1e-6  # the camera looks along +Y
    colours = mesh.colors[:, :3].astype(float)
    left, right = colours[front & (mesh.vertices[:, 0] < -0.15)], colours[front & (mesh.vertices[:, 0] > 0.15)]
    assert len(left) > 10 and len(right) > 10
    redness = left[:, 0].mean() - left[:, 1].mean(), right[:, 0].mean() - right[:, 1].mean()
    assert redness[0] > 40 and redness[1] < redness[0] - 40


def test_vertex_colours_follow_the_red_image(weights):
    pipe = ModelReconstructPipeline("cpu", weights)
    out = pipe.run(request(disc(), texture="vertex"), recording_context())
    mesh = out.mesh
    assert mesh.colors.shape == (len(mesh.vertices), 4)
    # the side facing the fitted camera (a random model predicts any viewpoint)
    seen = mesh.vertices @ towards_fitted_camera(out.metadata) > 0.25
    assert seen.sum() > 10
    red = mesh.colors[seen, :3].astype(float).mean(0)
    assert red[0] > red[1] + 60 and red[0] > red[2] + 60


def test_face_budget_is_respected(weights):
    out = ModelReconstructPipeline("cpu", weights).run(request(disc(), texture="none", face_budget=300), recording_context())
    assert len(out.mesh.faces) <= 300


def test_multi_view_uses_every_view(weights):
    pipe = ModelReconstructPipeline("cpu", weights)
    out = pipe.run(request(disc(), disc(offset=5)), recording_context())
    assert out.metadata["views"] == 2
    assert len(out.metadata["viewpoint_deg"]) == 2
    assert len(out.metadata["segmentation"]) == 2


def test_cancel_stops_within_one_step(weights):
    pipe = ModelReconstructPipeline("cpu", weights)
    events = []
    with pytest.raises(JobCancelled):
        pipe.run(request(disc()), recording_context(cancel_after=4, events=events))
    refine_steps = [e for e in events if e[0] == "progress" and e[1][0] == "refine"]
    assert len(refine_steps) <= 1


def test_fully_transparent_image_is_a_named_error(weights):
    rgba = np.zeros((64, 64, 4), np.uint8)
    with pytest.raises(PipelineError) as info:
        ModelReconstructPipeline("cpu", weights).run(request(encoded_png(rgba)), recording_context())
    assert info.value.code == ErrorCode.NO_OBJECT


def test_uniform_image_without_object_is_a_named_error(weights):
    rgba = np.full((64, 64, 4), 255, np.uint8)
    with pytest.raises(PipelineError) as info:
        ModelReconstructPipeline("cpu", weights).run(request(encoded_png(rgba)), recording_context())
    assert info.value.code == ErrorCode.NO_OBJECT


def test_missing_weights_give_the_outline_solid_and_say_why(tmp_path):
    pipe = ReconstructPipeline("cpu", tmp_path / "nothing_here")
    assert pipe.model is None
    out = pipe.run(request(disc()), recording_context())
    assert out.metadata["method"] == OutlineReconstructPipeline.method
    assert out.metadata["auto"]["chose"] == "outline" and "nothing_here" in out.metadata["auto"]["reason"]
    assert np.isfinite(out.mesh.vertices).all()


def test_corrupt_weights_fall_back_too(tmp_path, weights):
    bad = tmp_path / "bad"
    bad.with_name("bad.json").write_text(weights.with_name(weights.name + ".json").read_text())
    bad.with_name("bad.safetensors").write_bytes(b"not a safetensors file")
    pipe = ReconstructPipeline("cpu", bad)
    assert pipe.model is None and "bad" in pipe.model_problem


def test_weights_that_do_not_fit_the_code_are_a_named_error(tmp_path, weights):
    import json

    odd = tmp_path / "odd"
    manifest = json.loads(weights.with_name(weights.name + ".json").read_text())
    manifest["config"]["sdf"]["hidden"] = 17  # the tensors were saved for 16
    odd.with_name("odd.json").write_text(json.dumps(manifest))
    odd.with_name("odd.safetensors").write_bytes(weights.with_name(weights.name + ".safetensors").read_bytes())
    pipe = ReconstructPipeline("cpu", odd)
    assert pipe.model is not None  # the files are consistent...
    with pytest.raises(PipelineError) as info:  # ...but the network does not fit them
        pipe.run(request(lumpy()), recording_context())
    assert info.value.code == ErrorCode.PIPELINE_UNAVAILABLE and "train.py --export" in info.value.message


def test_loadable_weights_give_the_model_pipeline(weights):
    assert isinstance(ReconstructPipeline("cpu", weights).model, ModelReconstructPipeline)


def test_method_picks_the_model_or_the_baseline(tmp_path, weights):
    with_model = ReconstructPipeline("cpu", weights)
    asked = request(disc())
    asked.method = "silhouette"
    assert with_model.run(asked, recording_context()).metadata["method"] == "silhouette inflation (baseline)"
    asked.method = "model"
    assert with_model.run(asked, recording_context()).metadata["method"] == ModelReconstructPipeline.method
    with pytest.raises(PipelineError) as info:       # insisting on a model that is not installed
        ReconstructPipeline("cpu", tmp_path / "nothing_here").run(asked, recording_context())
    assert info.value.code == ErrorCode.PIPELINE_UNAVAILABLE and "outline" in info.value.message
    asked.method = "outline"
    assert with_model.run(asked, recording_context()).metadata["method"] == OutlineReconstructPipeline.method


def _scraps() -> MeshPayload:
    """What a field decoded far from its training data looks like: dozens of separate pieces."""
    parts = [trimesh.creation.box((0.05, 0.3, 0.05)) for _ in range(30)]
    for k, part in enumerate(parts):
        part.apply_translation([0.06 * k - 0.9, 0.0, 0.0])
    mesh = trimesh.util.concatenate(parts)
    return MeshPayload(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32))


def test_auto_keeps_a_clean_model_result_and_replaces_a_shredded_one_untextured(weights, monkeypatch):
    from backend.pipelines.base import PipelineOutput
    from backend.pipelines.reconstruct.model import ModelShape

    pipe = ReconstructPipeline("cpu", weights)
    finished = []

    def shape_of(mesh, warning=None):
        def shape(req, ctx):
            if warning:
                ctx.warn(warning)
            return ModelShape(mesh.vertices, mesh.faces, False, {}, [], [], None, {"mesh_s": 0.5})
        return shape

    def finish(shaped, req, ctx):
        finished.append(len(shaped.faces))
        return PipelineOutput(MeshPayload(shaped.vertices, shaped.faces), {"method": "model"})

    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    monkeypatch.setattr(pipe.model, "shape", shape_of(
        MeshPayload(np.asarray(ball.vertices, np.float32), np.asarray(ball.faces, np.int32))))
    monkeypatch.setattr(pipe.model, "finish", finish)
    monkeypatch.setattr(pipe.model, "unblurred_surface", lambda shaped, ctx: (shaped.vertices, shaped.faces))
    outline_shape = pipe.outline.shape

    def warned_outline(req, ctx):  # auto builds the outline solid first, whichever it keeps
        ctx.warn("about the outline solid")
        return outline_shape(req, ctx)

    monkeypatch.setattr(pipe.outline, "shape", warned_outline)
    ctx = recording_context()
    kept = pipe.run(request(lumpy()), ctx)
    assert ctx.warnings == []  # the outline solid's warning is not about the mesh the user gets
    assert kept.metadata["method"] == "model" and kept.metadata["auto"]["chose"] == "model"
    assert kept.metadata["auto"]["surface"]["unblurred"]["ripple_share"] < 0.01
    assert finished == [len(ball.faces)]

    monkeypatch.setattr(pipe.model, "shape", shape_of(_scraps(), "about the model's mesh"))
    ctx = recording_context()
    replaced = pipe.run(request(lumpy()), ctx)
    assert finished == [len(ball.faces)]  # the shredded surface was never textured
    assert replaced.metadata["method"] == OutlineReconstructPipeline.method
    # warnings about the discarded mesh are not the result's
    assert ctx.warnings == ["about the outline solid"]
    assert replaced.metadata["auto"]["model_warnings"] == ["about the model's mesh"]
    assert "30 pieces" in replaced.metadata["auto"]["reason"]
    assert replaced.metadata["auto"]["model_surface"]["pieces"] == 30
    # the time spent on the discarded model is in the result's timings, and in the total
    timings = replaced.metadata["timings_s"]
    assert timings["model_mesh_s"] == 0.5 and {"segment_s", "mesh_s", "texture_s"} <= set(timings)
    assert timings["total_s"] == pytest.approx(sum(v for k, v in timings.items() if k != "total_s"), abs=0.01)


def test_auto_keeps_the_outline_solid_of_a_rim_seen_from_above_without_running_the_model(weights, monkeypatch):
    from test_outline import can_from_above

    rgb, mask = can_from_above(35.0)
    rgba = np.concatenate([rgb * 255, (mask > 0.5)[..., None] * 255.0], -1).astype(np.uint8)
    pipe = ReconstructPipeline("cpu", weights)

    def no_model(req, ctx):
        raise AssertionError("the model ran on a photo whose outline shows a rim")

    monkeypatch.setattr(pipe.model, "shape", no_model)
    events = []
    output = pipe.run(request(encoded_png(rgba), quality="default", texture="none"), recording_context(events=events))
    assert output.metadata["method"] == OutlineReconstructPipeline.method
    # built first, the outline solid reports into the bar's first sliver, where the model would start
    fractions = [args[1] for kind, args in events if kind == "progress"]
    assert fractions and max(fractions) <= OUTLINE_FIRST_SHARE
    assert any(kind == "preview" for kind, _ in events)
    assert output.metadata["auto"]["chose"] == "outline"
    assert output.metadata["auto"]["reason"].startswith("the outline shows the rim of a turned object seen from 3")
    assert output.metadata["camera"]["elevation"] == pytest.approx(35.0, abs=4.0)

    # several photos are the model's to fit together, rim or not
    class ModelRan(Exception):
        pass

    def model_ran(req, ctx):
        raise ModelRan(len(req.images))

    monkeypatch.setattr(pipe.model, "shape", model_ran)
    outlines = []
    monkeypatch.setattr(pipe.outline, "shape", lambda req, ctx: outlines.append(req))
    with pytest.raises(ModelRan):
        pipe.run(request(encoded_png(rgba), encoded_png(rgba), quality="default", texture="none"), recording_context())
    assert outlines == []  # no outline solid built ahead of the model for several photos


def test_auto_inflates_a_rounded_outline_without_running_the_model(weights, monkeypatch):
    """An ellipse is a fruit's or a pebble's outline: the inflation is that body, and the model's
    guess of its depth was the worse one on real photos."""
    pipe = ReconstructPipeline("cpu", weights)

    def no_model(req, ctx):
        raise AssertionError("the model ran on a rounded outline")

    monkeypatch.setattr(pipe.model, "shape", no_model)
    output = pipe.run(request(disc(), texture="vertex"), recording_context())
    assert output.metadata["method"] == OutlineReconstructPipeline.method and output.metadata["solid"] == "inflation"
    assert output.metadata["auto"]["chose"] == "outline"
    assert output.metadata["auto"]["reason"].startswith("the outline is an ellipse (IoU 0.9")
    red = output.mesh.colors[:, :3].astype(float).mean(0)
    assert red[0] > red[1] + 60  # the photo's red, all round
    with pytest.raises(AssertionError, match="the model ran"):  # a lumpy outline is the model's to try
        pipe.run(request(lumpy(), texture="vertex"), recording_context())


def test_auto_keeps_a_box_without_running_the_model(weights, monkeypatch):
    from test_cuboid import box_photo

    rgba, _ = box_photo(yaw=40.0, elevation=30.0, fov=40.0)
    pipe = ReconstructPipeline("cpu", weights)

    def no_model(req, ctx):
        raise AssertionError("the model ran on a photo of a box")

    monkeypatch.setattr(pipe.model, "shape", no_model)
    output = pipe.run(request(encoded_png(rgba), quality="default", texture="none"), recording_context())
    assert output.metadata["solid"] == "box" and output.metadata["auto"]["chose"] == "outline"
    assert output.metadata["auto"]["reason"].startswith("the outline and its creases are a box's, seen from 3")
    # seen square-on with studs on its top, no creases show: the reason says what was seen
    from test_cuboid import studded_box_photo

    output = pipe.run(request(encoded_png(studded_box_photo()), quality="default", texture="none"), recording_context())
    assert output.metadata["solid"] == "box" and output.metadata["auto"]["chose"] == "outline"
    assert output.metadata["auto"]["reason"] == (
        "the outline is a box's seen square-on to a face that the photo shows flat, with 2 parts on its top: "
        "the outline solid is that box, as deep as it is wide")


def test_auto_without_an_outline_solid_keeps_a_clean_model_result_or_says_why_it_has_none(weights, monkeypatch):
    from backend.pipelines.base import PipelineOutput
    from backend.pipelines.reconstruct.model import ModelShape

    pipe = ReconstructPipeline("cpu", weights)

    def no_outline(req, ctx):
        raise PipelineError(ErrorCode.NO_OBJECT, "the shape field has no surface inside the grid")

    def shape_of(mesh):
        return lambda req, ctx: ModelShape(mesh.vertices, mesh.faces, False, {}, [], [], None, {})

    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    monkeypatch.setattr(pipe.outline, "shape", no_outline)
    monkeypatch.setattr(pipe.model, "shape", shape_of(
        MeshPayload(np.asarray(ball.vertices, np.float32), np.asarray(ball.faces, np.int32))))
    monkeypatch.setattr(pipe.model, "finish", lambda shaped, req, ctx: PipelineOutput(
        MeshPayload(shaped.vertices, shaped.faces), {"method": "model"}))
    monkeypatch.setattr(pipe.model, "unblurred_surface", lambda shaped, ctx: (shaped.vertices, shaped.faces))
    assert pipe.run(request(disc()), recording_context()).metadata["auto"]["chose"] == "model"

    monkeypatch.setattr(pipe.model, "shape", shape_of(_scraps()))
    with pytest.raises(PipelineError) as info:
        pipe.run(request(disc()), recording_context())
    assert info.value.code == ErrorCode.NO_OBJECT and "no surface" in info.value.message


def test_auto_replaces_a_ribbed_model_result(weights, monkeypatch):
    """One piece, no sharp edge, but rounded ridges all over: what the committed weights make of
    most photos unlike their training renders."""
    from backend.pipelines.reconstruct.model import ModelShape

    _, ribbed = smooth_and_ribbed()
    pipe = ReconstructPipeline("cpu", weights)
    monkeypatch.setattr(pipe.model, "shape", lambda req, ctx: ModelShape(*ribbed, False, {}, [], [], None, {}))
    replaced = pipe.run(request(lumpy()), recording_context())
    assert replaced.metadata["method"] == OutlineReconstructPipeline.method
    assert replaced.metadata["auto"]["reason"].startswith("the shape model's surface is rippled over")
    assert replaced.metadata["auto"]["model_surface"]["pieces"] == 1

    # smooth as served (the encoding blur), but ribbed in the network's own field: still turned away
    clean_over_ribs(pipe, monkeypatch)
    replaced = pipe.run(request(lumpy()), recording_context())
    assert replaced.metadata["method"] == OutlineReconstructPipeline.method
    assert "before the encoding blur" in replaced.metadata["auto"]["reason"]
    surface = replaced.metadata["auto"]["model_surface"]
    assert surface["ripple_share"] < 0.01 and surface["unblurred"]["ripple_share"] > 0.3


def test_registry_uses_the_dispatching_pipeline_for_reconstruct():
    from backend.pipelines.registry import default_registry

    assert isinstance(default_registry().create("reconstruct", "cpu"), ReconstructPipeline)


def test_the_model_loads_when_the_pipeline_is_probed_not_in_the_first_job(weights):
    from backend.pipeline_process import availability

    pipe = ReconstructPipeline("cpu", weights)
    assert pipe.model._loaded is None
    assert availability(lambda task: pipe, "reconstruct") is None
    assert pipe.model._loaded is not None


def test_the_first_preview_is_coloured_points_on_the_encoders_surface_before_any_mesh(weights):
    events: list = []
    ModelReconstructPipeline("cpu", weights).run(request(disc(), quality="preview"), recording_context(events=events))
    previews = [e for e in events if e[0] in ("points", "preview")]
    assert previews[0][0] == "points" and any(e[0] == "preview" for e in previews[1:])
    points, colors, _ = previews[0][1]
    assert points.dtype == np.float32 and points.ndim == 2 and points.shape[1] == 3 and len(points) > 50
    assert colors.dtype == np.uint8 and colors.shape == points.shape
    assert np.abs(points).max() <= 0.6 + 1e-3  # inside the field's sampled cube


def test_palette_transfer_moves_the_mean_and_never_widens_the_spread():
    from backend.pipelines.reconstruct.colour import PaletteTransfer, _lab

    rng = np.random.default_rng(0)
    beige = np.clip(np.array([0.8, 0.7, 0.55]) + rng.normal(0, 0.05, (500, 3)), 0, 1)
    dark_brown = np.clip(np.array([0.3, 0.15, 0.08]) + rng.normal(0, 0.01, (400, 3)), 0, 1)
    moved = PaletteTransfer.fit(beige, dark_brown)(beige)
    assert np.abs(_lab(moved).mean(0) - _lab(dark_brown).mean(0)).max() < 3.0
    assert (_lab(moved).std(0) <= _lab(beige).std(0) + 1e-6).all()
    # a flat field's noise is not amplified into a pattern by a varied photo
    flat = np.clip(np.array([0.5, 0.5, 0.5]) + rng.normal(0, 0.002, (300, 3)), 0, 1)
    varied = rng.uniform(0, 1, (300, 3))
    assert _lab(PaletteTransfer.fit(flat, varied)(flat)).std(0).max() < 1.0
    # nothing to learn from: the colours stay
    assert np.allclose(PaletteTransfer.fit(beige, np.zeros((0, 3)))(beige), beige, atol=1e-3)


def test_the_side_turned_away_from_the_camera_continues_the_red_image(weights):
    pipe = ModelReconstructPipeline("cpu", weights)
    out = pipe.run(request(disc(), texture="vertex"), recording_context())
    mesh = out.mesh
    hidden = mesh.vertices @ towards_fitted_camera(out.metadata) < -0.25
    assert hidden.sum() > 10
    red = mesh.colors[hidden, :3].astype(float).mean(0)
    assert red[0] > red[1] + 60 and red[0] > red[2] + 60


def ladder_back(size=96):
    """A chair's back seen square-on: two rails, a top rail and four slats, seen through in five
    places, on transparency."""
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = 255
    wood = (120, 70, 30, 255)
    rgba[12:88, 18:26] = wood    # the rails
    rgba[12:88, 70:78] = wood
    rgba[12:22, 18:78] = wood    # the top rail
    rgba[60:66, 18:78] = wood    # the seat's edge
    for left in (34, 44, 54, 64):
        rgba[22:60, left:left + 3] = wood  # slats
    return encoded_png(rgba)


def smooth_and_ribbed():
    """(vertices, faces) of an ellipsoid, and of the same ellipsoid with rounded ridges across it."""
    from backend.geometry.mesh_ops import extract_surface

    g = np.linspace(-0.5, 0.5, 96)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    smooth = 0.42 - np.sqrt(x ** 2 + (y / 0.6) ** 2 + (z / 0.8) ** 2)
    return (extract_surface(smooth, np.full(3, -0.5), np.full(3, 0.5)),
            extract_surface(smooth + 0.02 * np.sin(2 * np.pi * x / 0.08), np.full(3, -0.5), np.full(3, 0.5)))


def clean_over_ribs(pipe: ReconstructPipeline, monkeypatch) -> None:
    """Makes ``pipe``'s model return a clean served surface whose field without the blur is
    ribbed: kept where only the served surface is judged, turned away elsewhere."""
    from backend.pipelines.base import PipelineOutput
    from backend.pipelines.reconstruct.model import ModelShape

    served, ribbed = smooth_and_ribbed()
    monkeypatch.setattr(pipe.model, "shape", lambda req, ctx: ModelShape(*served, False, {}, [], [], None, {}))
    monkeypatch.setattr(pipe.model, "finish", lambda shaped, req, ctx: PipelineOutput(
        MeshPayload(shaped.vertices, shaped.faces), {"method": "model"}))
    monkeypatch.setattr(pipe.model, "unblurred_surface", lambda shaped, ctx: ribbed)


def table_front(size=96):
    """A table seen square-on, its top and two legs, on transparency: a plain outline."""
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = 255
    wood = (150, 90, 40, 255)
    rgba[24:32, 10:86] = wood
    for left in (14, 74):
        rgba[32:78, left:left + 8] = wood
    return encoded_png(rgba)


def test_a_chairs_back_is_an_open_frame_and_a_tables_front_a_plain_inflated_outline():
    from backend.geometry.outline import PLAIN, is_frame, long_side_share, see_through

    chair = np.asarray(Image.open(io.BytesIO(ladder_back())))[..., 3] > 0
    assert is_frame(*see_through(chair))
    table = np.asarray(Image.open(io.BytesIO(table_front())))[..., 3] > 0
    assert long_side_share(table.astype(float)) >= PLAIN and not is_frame(*see_through(table))
    solid = OutlineReconstructPipeline("cpu").run(request(table_front()), recording_context()).metadata["solid"]
    assert solid == "inflation"


@pytest.mark.parametrize("photo, reason", [(ladder_back, "the outline is an open frame (5 holes seen through"),
                                           (table_front, "the outline is plain, ")])
def test_auto_keeps_a_poor_outline_solids_model_result_that_the_usual_limits_turn_away(weights, monkeypatch, photo,
                                                                                      reason):
    """A chair seen through its slats would be a flat cut-out, a table seen square-on an inflated
    pillow: the model's served surface, clean, is kept though its field without the blur is
    ribbed, which turns it away on an outline that is neither; a shredded one is still turned
    away."""
    from backend.pipelines.reconstruct.model import ModelShape

    pipe = ReconstructPipeline("cpu", weights)
    clean_over_ribs(pipe, monkeypatch)
    kept = pipe.run(request(photo()), recording_context())
    assert kept.metadata["auto"]["chose"] == "model" and kept.metadata["auto"]["reason"].startswith(reason)
    replaced = pipe.run(request(lumpy()), recording_context())
    assert replaced.metadata["auto"]["chose"] == "outline"
    assert "before the encoding blur" in replaced.metadata["auto"]["reason"]
    monkeypatch.setattr(pipe.model, "shape", lambda req, ctx: ModelShape(
        _scraps().vertices, _scraps().faces, False, {}, [], [], None, {}))
    replaced = pipe.run(request(photo()), recording_context())
    assert replaced.metadata["auto"]["chose"] == "outline" and "pieces" in replaced.metadata["auto"]["reason"]


def test_a_frames_model_result_may_ripple_more_but_not_without_limit():
    from types import SimpleNamespace

    from backend.pipelines.reconstruct.dispatch import FRAME_MAX_RIPPLES, MAX_RIPPLES, shredded

    def rippled(share):
        return SimpleNamespace(pieces=1, large_pieces=1, sharp_edge_share=0.01, ripple_share=share)

    between = (MAX_RIPPLES + FRAME_MAX_RIPPLES) / 2
    assert "rippled" in shredded(rippled(between))
    assert shredded(rippled(between), max_ripples=FRAME_MAX_RIPPLES) is None
    assert "rippled" in shredded(rippled(FRAME_MAX_RIPPLES + 0.02), max_ripples=FRAME_MAX_RIPPLES)


def test_auto_judges_the_unblurred_field_by_its_large_pieces_not_its_crumbs(weights, monkeypatch):
    from backend.pipelines.base import PipelineOutput
    from backend.pipelines.reconstruct.model import ModelShape

    def spheres(radii_and_centres):
        parts = [trimesh.creation.icosphere(subdivisions=3, radius=r).apply_translation(c) for r, c in radii_and_centres]
        mesh = trimesh.util.concatenate(parts)
        return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32)

    served = spheres([(0.5, (0, 0, 0))])
    pipe = ReconstructPipeline("cpu", weights)
    monkeypatch.setattr(pipe.model, "shape", lambda req, ctx: ModelShape(*served, False, {}, [], [], None, {}))
    monkeypatch.setattr(pipe.model, "finish", lambda shaped, req, ctx: PipelineOutput(
        MeshPayload(shaped.vertices, shaped.faces), {"method": "model"}))
    crumbs = spheres([(0.5, (0, 0, 0)), (0.02, (0.8, 0, 0)), (0.02, (-0.8, 0, 0)), (0.02, (0, 0.8, 0))])
    monkeypatch.setattr(pipe.model, "unblurred_surface", lambda shaped, ctx: crumbs)
    kept = pipe.run(request(lumpy()), recording_context())
    assert kept.metadata["auto"]["chose"] == "model"
    assert kept.metadata["auto"]["surface"]["unblurred"]["pieces"] == 4
    assert kept.metadata["auto"]["surface"]["unblurred"]["large_pieces"] == 1

    parts = spheres([(0.5, (0, 0, 0)), (0.2, (0.8, 0, 0)), (0.2, (-0.8, 0, 0))])
    monkeypatch.setattr(pipe.model, "unblurred_surface", lambda shaped, ctx: parts)
    replaced = pipe.run(request(lumpy()), recording_context())
    assert replaced.metadata["method"] == OutlineReconstructPipeline.method
    assert replaced.metadata["auto"]["reason"] == ("the shape model's surface is in 3 large pieces before the "
                                                   "encoding blur")


def test_an_uncut_fallback_warns_only_for_the_surface_the_user_gets(weights, monkeypatch):
    import backend.render.extract as extract

    monkeypatch.setitem(presets.PRESETS, "preview", dataclasses.replace(FAST, carve_margin=0.02))
    pipe = ModelReconstructPipeline("cpu", weights)
    shaped = pipe.shape(request(disc()), recording_context())
    real_extract = extract.extract_mesh
    calls = []

    def carving_leaves_nothing(field, **options):
        calls.append(1)
        if len(calls) % 2 == 1:  # the first field tried is the carved one
            raise extract.NoSurfaceError("nothing left")
        return real_extract(field, **options)

    monkeypatch.setattr(extract, "extract_mesh", carving_leaves_nothing)
    told = recording_context()
    assert not pipe._mesh(shaped.refined, shaped.views, shaped.preset, told)[2]
    assert len(told.warnings) == 1 and "uncut shape" in told.warnings[0]
    quiet = recording_context()
    pipe._mesh(shaped.refined, shaped.views, shaped.preset, quiet, encoding_blur=0.0, warn=False)
    assert quiet.warnings == []


@pytest.mark.parametrize("model_elevation, expected", [(25.0, 25.0), (-8.0, 0.0)])
def test_auto_stands_the_outline_solid_up_by_the_turned_away_models_camera(weights, monkeypatch, model_elevation,
                                                                             expected):
    """Without a rim or a box nothing in the outline says how high the camera was; the model's
    fitted camera does, even when its surface is turned away. A camera below the object is taken
    as level."""
    from backend.pipelines.reconstruct.model import ModelShape

    pipe = ReconstructPipeline("cpu", weights)
    scraps = _scraps()
    angles = torch.tensor([[0.3, np.radians(model_elevation), 0.0]])
    monkeypatch.setattr(pipe.model, "shape", lambda req, ctx: ModelShape(
        scraps.vertices, scraps.faces, False, {"angles": angles}, [], [], None, {"mesh_s": 0.5}))
    output = pipe.run(request(lumpy(), texture="none"), recording_context())
    assert output.metadata["auto"]["chose"] == "outline"
    assert output.metadata["camera"]["elevation"] == pytest.approx(expected, abs=0.01)
    if expected:
        assert "shape model" in output.metadata["elevation_from"]
        assert "shape model" in output.metadata["camera"]["note"]
    else:
        assert "elevation_from" not in output.metadata
    # the inflation still shows the photo's outline from the reported camera
    assert output.metadata["fidelity"]["silhouette_iou"] >= 0.9


def test_the_cameras_are_framed_to_the_delivered_surface():
    # a sphere seen through a camera zoomed out by 10 % and shifted: the framing finds the
    # camera under which its silhouette is the mask again, without turning it
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
    angles = torch.tensor([[0.6, 0.3, 0.0]])
    size = 64
    true_focal, true_offset = torch.tensor([math.log(90.0)]), torch.tensor([[3.0, -2.0]])
    seen = silhouette_through(sphere, fitting.fitted_cameras(angles, true_focal, true_offset, size))
    refined = {"angles": angles, "log_focal": true_focal - math.log(1.1), "offset": torch.zeros(1, 2), "size": size}

    before = silhouette_through(sphere, fitting.fitted_cameras(angles, refined["log_focal"], refined["offset"], size))
    framed = fitting.frame_to_mesh(sphere.vertices, sphere.faces, refined, [seen.astype(np.float32)])
    after = silhouette_through(sphere, fitting.fitted_cameras(framed["angles"], framed["log_focal"],
                                                                framed["offset"], size))
    assert mask_iou(before, seen) < 0.8 and mask_iou(after, seen) > 0.97
    assert float(framed["log_focal"][0].exp()) == pytest.approx(90.0, rel=0.03)
    assert framed["offset"][0].tolist() == pytest.approx([3.0, -2.0], abs=0.5)
    assert torch.equal(framed["angles"], angles) and refined["log_focal"] is not framed["log_focal"]


def silhouette_through(mesh, cams):
    uv, z = cams.project(torch.as_tensor(mesh.vertices, dtype=torch.float32)[None])
    return covered_image(uv[0].numpy() - 0.5, z[0].numpy(), mesh.faces, cams.height)
