"""The reconstruction benchmark script on a tiny dataset made here (tests/test_train_shape.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_shape import make_dataset
from script_modules import load_script

from backend.models.checkpoint import save_shape_model
from backend.models.shape_model import ShapeModel
from backend.train.config import model_config



def load_bench():
    return load_script("bench_reconstruct")


def tiny_weights(tmp_path: Path) -> Path:
    """Untrained tiny-model weights: enough for the benchmark to run the real pipeline."""
    torch.manual_seed(0)
    weights = tmp_path / "w" / "tiny"
    save_shape_model(weights, ShapeModel(model_config("tiny")), {"step": 0, "beta": 0.05})
    return weights


def test_view_frame_axes_map_to_the_camera_axes():
    from backend.render.cameras import orbit_cameras

    bench = load_bench()
    cams = orbit_cameras(torch.tensor([np.pi / 2]), torch.tensor([0.0]), 2.0, focal=50.0, height=32, width=32)
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = cams.rotation[0].numpy(), cams.translation[0].numpy()
    mapped = bench.view_to_object(np.eye(3), w2c)
    # camera on +X looking at the origin: image right is world +Y, image up world +Z, depth along X
    assert np.allclose(mapped[0], [0, 1, 0], atol=1e-6)
    assert np.allclose(np.abs(mapped[1]), [1, 0, 0], atol=1e-6)
    assert np.allclose(mapped[2], [0, 0, 1], atol=1e-6)


def test_results_stood_upright_are_laid_back_into_their_cameras_view_frame():
    bench = load_bench()
    camera = {"azimuth": 0.0, "elevation": 30.0, "fov": 1.0, "distance": 50.0}
    upright = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    view = bench.output_to_view(upright, camera)
    # seen from 30 degrees above, the object's up leans 30 degrees away from the camera's image up
    assert np.allclose(view[0], [0.0, -np.sin(np.radians(30)), np.cos(np.radians(30))], atol=1e-9)
    assert np.allclose(view[1], [1.0, 0.0, 0.0], atol=1e-9)
    level = dict(camera, elevation=0.0)
    assert np.allclose(bench.output_to_view(upright, level), upright)
    assert bench.output_to_view(upright, None) is upright


def test_model_results_are_turned_back_into_the_models_object_frame():
    from backend.pipelines.reconstruct.fitting import first_view_turn

    bench = load_bench()
    refined = {"angles": torch.tensor([[np.radians(70.0), 0.2, 0.0]])}
    shape = np.random.default_rng(0).normal(size=(20, 3))
    turned = shape @ first_view_turn(refined).T  # as the model pipeline turns its result
    assert not np.allclose(turned, shape)
    assert np.allclose(bench.turned_back(turned, -70.0), shape)


@pytest.mark.slow
def test_benchmark_writes_json_and_markdown(tmp_path):
    bench = load_bench()
    root = make_dataset(tmp_path / "ds", {"train": [("crate", 0)], "test": [("ball", 1), ("crate", 1)],
                                          "test_unseen": [("pill", 0)]}, views=2, res=32)
    weights = tiny_weights(tmp_path)
    out = tmp_path / "res" / "reconstruct.json"
    assert bench.main(["--data", str(root), "--weights", str(weights), "--presets", "preview",
                       "--splits", "test", "test_unseen", "--methods", "model", "sphere", "--points", "2000", "--jobs", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    # two workers at a time, results still in task order
    assert [(r["split"], r["method"]) for r in report["runs"]] == [
        ("test", "model:preview"), ("test", "sphere"), ("test_unseen", "model:preview"), ("test_unseen", "sphere")]
    runs = {(r["split"], r["method"]): r for r in report["runs"]}
    test_sphere = runs[("test", "sphere")]
    assert test_sphere["summary"]["shapes"] == 2
    assert set(test_sphere["per_category"]) == {"ball", "crate"}
    # a sphere predicts the ball almost perfectly and the crate clearly worse
    ball, crate = test_sphere["per_category"]["ball"], test_sphere["per_category"]["crate"]
    assert ball["f@0.05"] > 0.95 and ball["f@0.02"] > crate["f@0.02"] + 0.1
    model = runs[("test", "model:preview")]
    assert model["weights_id"].startswith("shape_model:") and model["peak_rss_mb"] > 50
    assert all(0.0 <= model["summary"][k] <= 1.0 for k in ("f@0.01", "f@0.02", "f@0.05"))
    assert model["summary"]["seconds_per_image"] > 0
    # where the time went, per stage, from the results' own timings
    stages = model["stages_s"]
    assert {"segment_s", "encode_s", "refine_s", "mesh_s", "texture_s", "total_s"} <= set(stages)
    assert stages["total_s"] == pytest.approx(sum(v for k, v in stages.items() if k != "total_s"), abs=0.01)
    assert runs[("test", "sphere")]["stages_s"] == {}
    assert 0 <= model["texture_error"] < 60 and runs[("test", "sphere")]["texture_error"] is None
    table = out.with_suffix(".md").read_text()
    assert "| test | sphere | 2 |" in table and "test_unseen" in table and "Alignment" in table
    assert "- test model:preview: segment_s" in table


def test_input_views_spread_round_the_cameras_from_the_chosen_one():
    bench = load_bench()
    cameras = [{"index": i} for i in range(8)]
    assert [c["index"] for c in bench.input_views(cameras, 5, 1)] == [5]
    assert [c["index"] for c in bench.input_views(cameras, 5, 2)] == [5, 1]
    assert [c["index"] for c in bench.input_views(cameras, 6, 3)] == [6, 0, 3]
    with pytest.raises(SystemExit, match="8 views"):
        bench.input_views(cameras, 0, 9)


def test_several_views_leave_out_the_single_view_baseline(tmp_path, capsys):
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.main(["--data", str(tmp_path), "--methods", "model", "silhouette", "--views", "2"])
    assert "outline and layered methods reconstruct from one view" in capsys.readouterr().err


@pytest.mark.slow
def test_benchmark_gives_the_model_several_views(tmp_path):
    bench = load_bench()
    root = make_dataset(tmp_path / "ds", {"train": [("crate", 0)], "test": [("crate", 1)]}, views=2, res=32)
    weights = tiny_weights(tmp_path)
    out = tmp_path / "res" / "reconstruct.json"
    assert bench.main(["--data", str(root), "--weights", str(weights), "--presets", "preview", "--methods", "model",
                       "--splits", "test", "--views", "2", "--points", "2000", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["views_per_shape"] == 2
    (row,) = report["runs"][0]["shapes"]
    assert sorted(row["views"]) == [0, 1] and row["view"] == row["views"][0]
    assert out.with_suffix(".md").read_text().startswith("2 input views per shape.")


def make_real_split(root: Path) -> Path:
    """A real split as scripts/render_real_split.py writes it: one 'object' (a ball of diameter 1),
    two photos (alpha, and a grey backdrop without alpha) and its reference mesh."""
    import trimesh
    from PIL import Image

    obj = root / "ball"
    obj.mkdir(parents=True)
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    np.savez(obj / "reference.npz", vertices=np.asarray(sphere.vertices, np.float32),
             faces=np.asarray(sphere.faces, np.int32))
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 48) ** 2 + (xx - 48) ** 2 < 30 ** 2
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[disc] = (200, 60, 40, 255)
    Image.fromarray(rgba, "RGBA").save(obj / "view_0.png")
    rgb = np.full((96, 96, 3), 120, np.uint8)
    rgb[disc] = (200, 60, 40)
    Image.fromarray(rgb, "RGB").save(obj / "view_1.png")
    views = [{"index": k, "image": f"view_{k}.png", "background": bg, "elevation": 10.0 * k}
             for k, bg in enumerate(("alpha", "plain"))]
    (obj / "views.json").write_text(json.dumps({"name": "ball", "kind": "toy", "views": views}))
    return root


def test_real_split_is_scored_pose_free_per_object(tmp_path):
    bench = load_bench()
    real = make_real_split(tmp_path / "real")
    out = tmp_path / "res" / "real.json"
    assert bench.main(["--splits", "real", "--real-data", str(real), "--methods", "outline", "sphere", "hull",
                       "--points", "3000", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    runs = {r["method"]: r for r in report["runs"]}
    assert set(runs) == {"outline", "sphere", "hull"}
    # two photos of one object: the object counts once
    assert all(r["summary"]["shapes"] == 1 and r["per_object"]["ball"]["cases"] == 2 for r in runs.values())
    # the reference is a ball: its hull and a sphere match it, and so does the outline of a disc
    assert runs["hull"]["summary"]["f@0.05"] > 0.97 and runs["sphere"]["summary"]["f@0.05"] > 0.97
    assert runs["outline"]["summary"]["f@0.05"] > 0.9
    # the disc's outline solid reports a level camera: it leans by the photos' true elevations
    assert [r["elevation_error"] for r in runs["outline"]["shapes"]] == [0.0, 10.0]
    assert runs["outline"]["summary"]["elevation_error_deg"] == 5.0
    assert "elevation_error_deg" not in runs["sphere"]["summary"]
    markdown = out.with_suffix(".md").read_text()
    assert "| ball |" in markdown and "real outline 5.0" in markdown


def test_a_photo_the_pipeline_refuses_scores_nothing_and_the_run_goes_on(tmp_path):
    from PIL import Image

    bench = load_bench()
    real = make_real_split(tmp_path / "real")
    # a third photo with nothing on it: segmentation finds no object
    Image.fromarray(np.full((96, 96, 3), 120, np.uint8), "RGB").save(real / "ball" / "view_2.png")
    record = json.loads((real / "ball" / "views.json").read_text())
    record["views"].append({"index": 2, "image": "view_2.png", "background": "plain"})
    (real / "ball" / "views.json").write_text(json.dumps(record))
    out = tmp_path / "res" / "real.json"
    assert bench.main(["--splits", "real", "--real-data", str(real), "--methods", "outline", "--points", "3000",
                       "--out", str(out)]) == 0
    run = json.loads(out.read_text())["runs"][0]
    refused = [row for row in run["shapes"] if row["chose"].startswith("refused")]
    assert [row["name"] for row in refused] == ["ball/2"] and refused[0]["f@0.05"] == 0.0
    # the object's mean counts the refusal as a miss; its Chamfer is that of the photos it got
    scored = [row["f@0.05"] for row in run["shapes"] if row not in refused]
    assert run["per_object"]["ball"]["f@0.05"] == pytest.approx(sum(scored) / 3)
    assert np.isfinite(run["summary"]["chamfer_x1e3"])
