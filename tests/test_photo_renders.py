"""Photo-like Blender renders of a mesh (the real split) and the review sheets drawn from results."""

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from script_modules import load_script


def red_box_glb(path: Path) -> Path:
    box = trimesh.creation.box((0.6, 0.4, 1.0))  # tall along z; glTF is Y-up on disk
    box.visual.face_colors = [200, 40, 40, 255]
    box.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    box.export(path)
    return path


@pytest.mark.slow
def test_photos_with_and_without_alpha_and_their_true_masks(tmp_path):
    from backend.data.render_photos import PhotoConfig, render_object, sample_views

    glb = red_box_glb(tmp_path / "box.glb")
    rng = np.random.default_rng(0)
    views = sample_views(rng, 1, "alpha") + sample_views(rng, 1, "textured")
    record = render_object(glb, views, tmp_path / "out", PhotoConfig(resolution=64, samples=4, denoise=False))
    out = tmp_path / "out"
    with np.load(out / "reference.npz") as ref:
        v = ref["vertices"]
    # the reference as rendered: upright (z the longest side), centred, longest side 1
    extent = v.max(0) - v.min(0)
    assert extent.max() == pytest.approx(1.0, abs=1e-5) and np.argmax(extent) == 2
    assert np.allclose((v.max(0) + v.min(0)) / 2, 0, atol=1e-5)
    alpha_photo = np.asarray(Image.open(out / "view_0.png"))
    backdrop_photo = np.asarray(Image.open(out / "view_1.png"))
    assert alpha_photo.shape == (64, 64, 4) and backdrop_photo.shape == (64, 64, 3)
    for k, photo in ((0, alpha_photo), (1, backdrop_photo)):
        mask = np.asarray(Image.open(out / f"mask_{k}.png")) > 127
        assert 0.02 < mask.mean() < 0.8
        red = photo[..., 0].astype(int) - photo[..., 1]
        assert red[mask].mean() > 60  # the object is where its mask says
    # with alpha, the alpha channel is the mask; without, the backdrop fills the frame
    assert ((alpha_photo[..., 3] > 127) == (np.asarray(Image.open(out / "mask_0.png")) > 127)).mean() > 0.97
    assert record["views"][1]["background"] == "textured"


@pytest.mark.slow
def test_review_sheet_shows_the_input_and_four_renders(tmp_path):
    review = load_script("review_reconstruct")

    yy, xx = np.mgrid[:96, :96]
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[(yy - 48) ** 2 + (xx - 48) ** 2 < 30 ** 2] = (40, 160, 60, 255)
    photo = tmp_path / "ball.png"
    Image.fromarray(rgba).save(photo)
    out = tmp_path / "review"
    assert review.main(["--images", str(photo), "--method", "outline", "--quality", "preview", "--out", str(out)]) == 0
    sheet = np.asarray(Image.open(out / "ball.png").convert("RGB")).astype(int)
    assert sheet.shape[1] == 5 * review.PANEL
    assert (out / "ball.glb").exists() and (out / "ball.json").exists()
    # every render panel shows the green object on the grey ground
    for k in range(1, 5):
        panel = sheet[22:22 + review.PANEL, k * review.PANEL:(k + 1) * review.PANEL]
        assert ((panel[..., 1] - panel[..., 0]) > 40).mean() > 0.05


@pytest.mark.slow
def test_a_result_camera_off_its_axis_renders_what_the_fidelity_check_sees(tmp_path):
    from backend.data.render_photos import ResultCamera, render_result
    from backend.geometry.fidelity import mask_iou, silhouette
    from backend.geometry.mesh_files import load_mesh

    glb = red_box_glb(tmp_path / "box.glb")
    mesh = load_mesh(glb, max_triangles=100)
    # a near camera whose axis meets the image off its centre, as a box's fitted camera does
    camera = {"azimuth": 30.0, "elevation": 25.0, "fov": 40.0, "distance": 2.5, "target": [0.05, 0.0, 0.1],
              "principal_offset": [0.12, -0.08]}
    seen = silhouette(mesh.vertices, mesh.faces, camera, 64)
    render = render_result(glb, [ResultCamera(30.0, 25.0, 40.0, 2.5, (0.05, 0.0, 0.1), (0.12, -0.08))],
                           resolution=64, samples=1)[0]
    assert mask_iou(render[..., 3] > 0.5, seen) > 0.95
