"""Shape mining (backend/pipelines/mine): cameras and silhouettes, grouping, the pooled shape, the
wire format of a mine job, the pipeline and the CLI on synthetic photo collections."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from script_modules import load_script

from backend import protocol
from backend.config import ServiceLimits
from backend.errors import InputError
from backend.images import encode_png
from backend.pipelines.mine import pooled, views
from backend.pipelines.mine.clusters import colour_histogram, group_photos, photo_distances
from backend.protocol import MeshPayload, ProtocolError
from backend.requests import MAX_MINE_IMAGES, MineRequest, parse_submit

GRID = 40


def box_volume(lo, hi, grid: int = GRID) -> torch.Tensor:
    """Occupancy of an axis-aligned box [lo, hi] on the views' volume grid."""
    points = pooled.grid_points(grid).reshape(grid, grid, grid, 3)
    inside = ((points >= torch.tensor(lo)) & (points <= torch.tensor(hi))).all(-1)
    return inside.float()


def l_shape(grid: int = GRID) -> torch.Tensor:
    """A post with an arm towards +X at the top: no two sides look alike."""
    return torch.maximum(box_volume((-0.1, -0.1, -0.4), (0.1, 0.1, 0.4), grid),
                         box_volume((0.0, -0.08, 0.2), (0.35, 0.08, 0.35), grid))


def ball(grid: int = GRID) -> torch.Tensor:
    points = pooled.grid_points(grid).reshape(grid, grid, grid, 3)
    return ((points / torch.tensor([0.35, 0.25, 0.3])).norm(dim=-1) <= 1.0).float()


def photo(volume: torch.Tensor, azimuth: float, elevation: float, rgb, size: int = 96, pad: int = 12) -> bytes:
    """A PNG with alpha of the volume seen from (azimuth, elevation), flat-coloured, shaded by
    nothing but a darker rim, on a transparent canvas."""
    axes = views.view_axes(np.array([azimuth]), np.array([elevation]))
    mask = views.silhouettes(volume, axes, size=size, depth=64)[0].numpy() > 0.5
    canvas = np.zeros((size + 2 * pad, size + 2 * pad, 4), np.uint8)
    colour = np.array(rgb, np.float32)
    canvas[pad:-pad, pad:-pad, :3] = np.where(mask[..., None], colour, 0).astype(np.uint8)
    canvas[pad:-pad, pad:-pad, 3] = mask * 255
    return encode_png(canvas)


# ------------------------------------------------------------------ views


def test_view_axes_are_orthonormal_and_follow_the_camera_convention():
    axes = views.view_axes(np.array([0.0, 90.0, 30.0]), np.array([0.0, 0.0, 45.0]))
    for frame in axes:
        assert np.allclose(frame @ frame.T, np.eye(3), atol=1e-9)
    # azimuth 0: looking along +Y from -Y, image right is +X; azimuth 90: looking from +X along -X
    assert np.allclose(axes[0][2], [0, 1, 0]) and np.allclose(axes[0][0], [1, 0, 0])
    assert np.allclose(axes[1][2], [-1, 0, 0], atol=1e-9)
    # from above, the view looks down
    assert axes[2][2][2] < -0.6


def test_silhouette_puts_the_arm_on_the_side_it_is():
    front = views.silhouettes(l_shape(), views.view_axes(np.array([0.0]), np.array([0.0])), size=64)[0].numpy()
    back = views.silhouettes(l_shape(), views.view_axes(np.array([180.0]), np.array([0.0])), size=64)[0].numpy()
    top_rows = slice(0, 32)  # the arm is at the top (+Z up = rows up)
    assert front[top_rows, 40:].sum() > 10 and front[top_rows, :24].sum() == 0  # +X on the right from the front
    assert back[top_rows, :24].sum() > 10  # and on the left from behind


def test_best_views_recovers_the_viewpoint_of_an_asymmetric_shape():
    volume = l_shape()
    truth = [(0.0, 5.0), (120.0, 20.0), (250.0, 35.0)]
    axes = views.view_axes(np.array([a for a, _ in truth]), np.array([e for _, e in truth]))
    masks, _, _ = views.crop_silhouettes(views.silhouettes(volume, axes))
    azimuths, elevations = views.PoseGrid().angles()
    found, ious = views.best_views(volume, masks, azimuths, elevations)
    assert (ious > 0.9).all()
    for view, (azimuth, _) in zip(found, truth):
        error = abs((view.azimuth - azimuth + 180) % 360 - 180)
        assert error <= 10.0


def test_distant_view_projects_into_its_crop():
    volume = l_shape()
    view = pooled.frame(volume, [views.DistantView(30.0, 20.0, (0.0, 0.0), 1.0)])[0]
    inside = pooled.grid_points(GRID).numpy()[volume.reshape(-1).numpy() > 0.5]
    uv, _ = view.project(inside, 100)
    # the crop is the outline's box plus a 10 % margin each side: the longer side spans ~83 px
    extent = uv.max(0) - uv.min(0)
    assert uv.min() > 3 and uv.max() < 97
    assert 70 < extent.max() < 90


# ------------------------------------------------------------------ grouping


def test_model_field_keeps_the_networks_inside_and_nothing_beyond_its_box():
    from backend.pipelines.mine.pipeline import MODEL_BOUND, model_field

    class Ball:  # an SDF network's stand-in: a ball of radius 0.3 in the model's frame
        def sdf_field(self, shape):
            return lambda points: points.norm(dim=-1) - 0.3

    refined = {"angles": torch.zeros(1, 3), "shape": torch.zeros(1, 4)}
    field = model_field(Ball(), refined)
    scale = pooled.GUESS_SCALE
    centre, rim, far = torch.tensor([[0.0, 0, 0], [0.3 * scale, 0, 0], [0.49, 0.49, 0.49]])
    values = field(torch.stack([centre, rim, far]))
    assert values[0] == pytest.approx(0.3 * scale, abs=1e-5)  # inside is positive, in world units
    assert abs(float(values[1])) < 1e-5
    assert values[2] < -(0.49 / scale - MODEL_BOUND) * scale + 1e-5  # outside the trusted box


def test_group_photos_finds_groups_and_sets_a_loner_apart():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 0.05, (5, 4)), rng.normal(3, 0.05, (4, 4)), [[10.0, -10, 10, 0]]])
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    distances /= np.median(distances[np.triu_indices(len(points), 1)])
    grouping = group_photos(distances, min_photos=2)
    assert grouping.clusters == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    assert grouping.outliers == [9]
    assert group_photos(distances[:1, :1], 2).outliers == [0]


def test_photo_distances_weigh_embedding_and_colour_alike():
    embeddings = np.eye(4)[[0, 0, 1, 1]]
    histograms = np.eye(4)[[0, 0, 0, 0]] * 10  # colour says nothing here
    d = photo_distances([(embeddings, 1.0)], histograms)
    assert d[0, 1] < d[0, 2] and np.allclose(d, d.T) and np.allclose(np.diag(d), 0)


def test_photo_distances_follow_the_heavier_descriptor_where_two_disagree():
    # one descriptor pairs photo 0 with 1, the other pairs it with 2; colour is silent
    pairs_01 = np.eye(4)[[0, 0, 1, 2]]
    pairs_02 = np.eye(4)[[0, 1, 0, 3]]
    histograms = np.zeros((4, 4))
    first_heavier = photo_distances([(pairs_01, 2.0), (pairs_02, 1.0)], histograms, colour_weight=0.0)
    second_heavier = photo_distances([(pairs_01, 1.0), (pairs_02, 2.0)], histograms, colour_weight=0.0)
    assert first_heavier[0, 1] < first_heavier[0, 2]
    assert second_heavier[0, 2] < second_heavier[0, 1]


def test_colour_histogram_tells_red_from_blue_and_ignores_the_background():
    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 8:24] = 1
    red = np.ones((32, 32, 3), np.float32)
    red[mask > 0] = (0.8, 0.1, 0.1)
    blue = red.copy()
    blue[mask > 0] = (0.1, 0.1, 0.8)
    green_background = red.copy()
    green_background[mask == 0] = (0.1, 0.8, 0.1)
    h_red, h_blue, h_red2 = (colour_histogram(x, mask) for x in (red, blue, green_background))
    assert np.linalg.norm(h_red - h_red2) < 1e-6
    assert np.linalg.norm(h_red - h_blue) > 0.5


# ------------------------------------------------------------------ wire format


def mined_result(texture: bool = True):
    """A mine result with two clusters the way the pipeline assembles it."""
    from backend.pipelines.mine.pipeline import combine

    def part(n: int, colour):
        vertices = np.random.default_rng(n).random((n, 3)).astype(np.float32) - 0.5
        faces = np.array([[0, 1, 2], [1, 2, 3]], np.int32)
        uvs = np.random.default_rng(n + 1).random((n, 2)).astype(np.float32)
        png = encode_png(np.full((8, 8, 3), colour, np.uint8)) if texture else None
        return MeshPayload(vertices, faces, np.zeros((n, 3), np.float32), uvs if texture else None, None, png)

    meshes = [part(4, (255, 0, 0)), part(5, (0, 0, 255))]
    entries = [{"name": "cluster_01", "images": ["a.png", "b.png"]}, {"name": "cluster_02", "images": ["c.png", "d.png"]}]
    combined = combine(meshes, entries, "uv" if texture else "none")
    return meshes, combined, {"clusters": entries, "outliers": [], "rejected": []}


def test_split_mined_gives_back_each_cluster_in_its_own_frame():
    meshes, combined, metadata = mined_result()
    parts = protocol.split_mined(combined, metadata)
    assert [c["name"] for c, _ in parts] == ["cluster_01", "cluster_02"]
    for original, (cluster, mesh) in zip(meshes, parts):
        assert np.allclose(mesh.vertices, original.vertices, atol=1e-6)
        assert np.array_equal(mesh.faces, original.faces)
        u0, v0, u1, v1 = cluster["uv_tile"]
        assert (mesh.uvs[:, 0] >= u0 - 1e-6).all() and (mesh.uvs[:, 0] <= u1 + 1e-6).all()
        assert (mesh.uvs[:, 1] >= v0 - 1e-6).all() and (mesh.uvs[:, 1] <= v1 + 1e-6).all()
    # side by side, not on top of each other
    first, second = (combined.vertices[slice(*c["vertices"])] for c in metadata["clusters"])
    assert first[:, 0].max() < second[:, 0].min()


def test_own_texture_cuts_the_tile_back_out():
    from PIL import Image

    from backend.result_files import own_texture

    meshes, combined, metadata = mined_result()
    for (cluster, mesh), colour in zip(protocol.split_mined(combined, metadata), ((255, 0, 0), (0, 0, 255))):
        alone = own_texture(mesh, cluster["uv_tile"])
        pixels = np.asarray(Image.open(io.BytesIO(alone.texture_png)).convert("RGB"))
        assert (np.abs(pixels.astype(int) - colour).max(-1) < 30).mean() > 0.95
        assert (alone.uvs >= -1e-5).all() and (alone.uvs <= 1 + 1e-5).all()


def test_split_mined_refuses_ranges_outside_the_mesh():
    _, combined, metadata = mined_result(texture=False)
    metadata["clusters"][1]["vertices"] = [4, 99]
    with pytest.raises(ProtocolError):
        protocol.split_mined(combined, metadata)


def test_parse_mine_sets_an_unreadable_photo_apart_and_keeps_the_names():
    good = photo(ball(), 0.0, 10.0, (200, 40, 40))
    message = protocol.submit_mine("m1", [good, b"not an image", good], ["a.png", "b.png", "c.png"],
                                   {"min_photos": 3, "quality": "preview"})
    request = parse_submit(message, ServiceLimits())
    assert isinstance(request, MineRequest)
    assert request.names == ["a.png", "c.png"] and request.min_photos == 3
    assert list(request.unreadable) == ["b.png"]


@pytest.mark.parametrize("images, names, params, words", [
    ([b"junk", b"more junk"], None, {}, "none of the 2 photos can be read"),
    ([b"x"] * (MAX_MINE_IMAGES + 1), None, {}, "exceed the limit"),
    ([b"x", b"y"], ["same.png", "same.png"], {}, "distinct file names"),
    (["good"], ["a.png"], {"min_photos": 1}, "min_photos"),
])
def test_parse_mine_refuses_what_it_cannot_mine(images, names, params, words):
    images = [photo(ball(), 0.0, 10.0, (200, 40, 40)) if i == "good" else i for i in images]
    with pytest.raises(InputError) as caught:
        parse_submit(protocol.submit_mine("m2", images, names, params), ServiceLimits())
    assert words in caught.value.message


# ------------------------------------------------------------------ the pipeline and the CLI

def _embedding_installed() -> bool:
    from backend.pipelines.mine.pipeline import DEFAULT_EMBEDDING

    return DEFAULT_EMBEDDING.with_name(DEFAULT_EMBEDDING.name + ".safetensors").exists()


needs_embedding = pytest.mark.skipif(not _embedding_installed(),
                                     reason="backend/weights/photo_embedding.* is missing (scripts/train_photo_embedding.py)")

VIEWS = [(0.0, 10.0), (70.0, 25.0), (150.0, 5.0), (230.0, 35.0)]


def collection(folder, extra: bool = True) -> dict[str, str]:
    """Four photos each of a red L-shaped post and a blue ball, plus (``extra``) a photo of
    nothing and a file that is no photo. Returns file name -> what it shows."""
    folder.mkdir(parents=True, exist_ok=True)
    shows = {}
    for k, (azimuth, elevation) in enumerate(VIEWS):
        (folder / f"post_{k}.png").write_bytes(photo(l_shape(), azimuth, elevation, (200, 40, 30)))
        (folder / f"ball_{k}.png").write_bytes(photo(ball(), azimuth + 40, elevation, (40, 60, 210)))
        shows[f"post_{k}.png"], shows[f"ball_{k}.png"] = "post", "ball"
    if extra:
        from PIL import Image

        (folder / "empty.png").write_bytes(encode_png(np.zeros((64, 64, 4), np.uint8)))
        (folder / "notes.txt").write_text("not a photo")
        # mixed formats and sizes: a post on white as a JPEG, a ball photo twice as large
        post = Image.open(io.BytesIO(photo(l_shape(), 80.0, 20.0, (200, 40, 30)))).convert("RGBA")
        white = Image.new("RGBA", post.size, (255, 255, 255, 255))
        Image.alpha_composite(white, post).convert("RGB").save(folder / "post_4.jpg", quality=92)
        big = Image.open(io.BytesIO(photo(ball(), 320.0, 20.0, (40, 60, 210))))
        big.resize((big.width * 2, big.height * 2)).save(folder / "ball_4.png")
        shows["post_4.jpg"], shows["ball_4.png"] = "post", "ball"
    return shows


@needs_embedding
@pytest.mark.slow
def test_mine_cli_writes_one_mesh_per_object_and_the_clusters(tmp_path, capsys):
    from backend.cli import EXIT_OK, main
    from backend.geometry.mesh_files import load_mesh

    shows = collection(tmp_path / "photos")
    assert main(["mine", str(tmp_path / "photos"), "--out", str(tmp_path / "out"), "--quality", "preview",
                 "--device", "cpu"]) == EXIT_OK
    index = json.loads((tmp_path / "out" / "clusters.json").read_text())
    accounted = [n for c in index["clusters"] for n in c["images"]] + [o["image"] for o in index["outliers"]]
    assert sorted(accounted + [r["image"] for r in index["rejected"]]) == sorted([*shows, "empty.png"])
    groups = sorted(sorted(c["images"]) for c in index["clusters"])
    assert groups == [sorted(n for n, s in shows.items() if s == "ball"), sorted(n for n, s in shows.items() if s == "post")]
    for cluster in index["clusters"]:
        mesh = load_mesh(tmp_path / "out" / cluster["mesh"], 10**6)
        assert len(mesh.faces) > 100
        assert b'"images"' in (tmp_path / "out" / cluster["mesh"]).read_bytes()[:20_000]  # its own texture
        assert set(cluster["cameras"]) == set(cluster["images"])
        for camera in cluster["cameras"].values():
            assert {"azimuth", "elevation", "fov", "distance", "target"} <= set(camera)
        # the pooled shape explains every photo's outline from its fitted camera
        assert min(cluster["fidelity"].values()) > 0.7
    assert [r["image"] for r in index["rejected"]] == ["empty.png"]
    assert "transparent" in index["rejected"][0]["reason"]
    assert index["skipped"] == ["notes.txt"]
    out = capsys.readouterr()
    assert "skipped 1 file(s) that are not photos: notes.txt" in out.err


@needs_embedding
def test_mine_pipeline_with_one_photo_reconstructs_it_and_says_so(tmp_path):
    from backend.pipelines.base import JobContext
    from backend.pipelines.mine.pipeline import MinePipeline
    from backend.requests import CommonParams, EncodedImage

    data = photo(ball(), 20.0, 15.0, (40, 60, 210))
    request = MineRequest(["ball.png"], CommonParams(quality="preview"),
                          encoded=[EncodedImage(data, "ball.png", 10**7, 16)])
    warnings = []
    ctx = JobContext("t", "cpu", emit_progress=lambda *a: None, emit_preview_mesh=lambda *a: None,
                     emit_preview_points=lambda *a: None, is_cancelled=lambda: False, deadline=float("inf"))
    ctx.warn = warnings.append
    output = MinePipeline("cpu").run(request, ctx)
    assert [c["images"] for c in output.metadata["clusters"]] == [["ball.png"]]
    assert any("only one photo" in w for w in warnings)


@needs_embedding
def test_mine_pipeline_without_any_object_fails_with_the_reason():
    from backend.errors import PipelineError
    from backend.pipelines.base import JobContext
    from backend.pipelines.mine.pipeline import MinePipeline
    from backend.requests import CommonParams, EncodedImage

    empty = encode_png(np.zeros((64, 64, 4), np.uint8))
    request = MineRequest(["a.png", "b.png"], CommonParams(quality="preview"),
                          encoded=[EncodedImage(empty, n, 10**7, 16) for n in ("a.png", "b.png")])
    ctx = JobContext("t", "cpu", emit_progress=lambda *a: None, emit_preview_mesh=lambda *a: None,
                     emit_preview_points=lambda *a: None, is_cancelled=lambda: False, deadline=float("inf"))
    with pytest.raises(PipelineError) as caught:
        MinePipeline("cpu").run(request, ctx)
    assert caught.value.code == protocol.ErrorCode.NO_OBJECT and "any of the 2 photos" in caught.value.message


def test_mine_pipeline_without_its_embedding_is_unavailable_and_says_how_to_get_it(tmp_path):
    from backend.pipelines.mine.pipeline import MinePipeline

    reason = MinePipeline("cpu", tmp_path / "photo_embedding").unavailable_reason()
    assert "scripts/train_photo_embedding.py" in reason and "missing" in reason


@pytest.mark.parametrize("setup, words", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "holds no photos"),
    (lambda p: (p.mkdir(), *[(p / f"{i}.png").write_bytes(b"x") for i in range(MAX_MINE_IMAGES + 1)]), "split the folder"),
])
def test_mine_cli_refuses_folders_it_cannot_mine(tmp_path, capsys, setup, words):
    from backend.cli import EXIT_USAGE, main

    setup(tmp_path / "photos")
    assert main(["mine", str(tmp_path / "photos"), "--out", str(tmp_path / "out")]) == EXIT_USAGE
    assert words in capsys.readouterr().err


@needs_embedding
def test_mine_pipeline_stops_when_cancelled():
    from backend.errors import JobCancelled
    from backend.pipelines.base import JobContext
    from backend.pipelines.mine.pipeline import MinePipeline
    from backend.requests import CommonParams, EncodedImage

    images = [photo(ball(), a, 10.0, (40, 60, 210)) for a in (0.0, 90.0, 180.0)]
    request = MineRequest([f"b{k}.png" for k in range(3)], CommonParams(quality="preview"),
                          encoded=[EncodedImage(d, f"b{k}.png", 10**7, 16) for k, d in enumerate(images)])
    stages = []
    ctx = JobContext("t", "cpu", emit_progress=lambda stage, *a: stages.append(stage),
                     emit_preview_mesh=lambda *a: None, emit_preview_points=lambda *a: None,
                     is_cancelled=lambda: "reconstruct" in stages, deadline=float("inf"))
    with pytest.raises(JobCancelled):
        MinePipeline("cpu").run(request, ctx)
    assert stages[0] == "features" and "cluster" in stages and "texture" not in stages


@needs_embedding
def test_mine_pipeline_with_nothing_in_common_says_so():
    from backend.errors import PipelineError
    from backend.pipelines.base import JobContext
    from backend.pipelines.mine.pipeline import MinePipeline
    from backend.requests import CommonParams, EncodedImage

    images = {"post.png": photo(l_shape(), 30.0, 10.0, (200, 40, 30)), "ball.png": photo(ball(), 0.0, 10.0, (40, 60, 210))}
    request = MineRequest(list(images), CommonParams(quality="preview"),
                          encoded=[EncodedImage(d, n, 10**7, 16) for n, d in images.items()])
    ctx = JobContext("t", "cpu", emit_progress=lambda *a: None, emit_preview_mesh=lambda *a: None,
                     emit_preview_points=lambda *a: None, is_cancelled=lambda: False, deadline=float("inf"))
    with pytest.raises(PipelineError) as caught:
        MinePipeline("cpu").run(request, ctx)
    assert caught.value.code == protocol.ErrorCode.NO_OBJECT
    assert "no 2 photos look like the same object" in caught.value.message and "post.png" in caught.value.message


@needs_embedding
@pytest.mark.slow
def test_review_sheet_has_a_row_per_mined_object(tmp_path):
    from PIL import Image

    collection(tmp_path / "photos", extra=False)
    assert load_script("review_mining").main(["--photos", str(tmp_path / "photos"),
                                              "--out", str(tmp_path / "review")]) == 0
    PANEL = load_script("review_reconstruct").PANEL

    index = json.loads((tmp_path / "review" / "mined" / "clusters.json").read_text())
    sheet = np.asarray(Image.open(tmp_path / "review" / "mining.png").convert("RGB")).astype(int)
    assert sheet.shape == ((PANEL + 22) * len(index["clusters"]), 7 * PANEL, 3)
    for row, cluster in enumerate(index["clusters"]):
        renders = sheet[row * (PANEL + 22) + 22:(row + 1) * (PANEL + 22), 3 * PANEL:]
        # the mined object shows in its renders: red (the post) or blue (the ball) on grey
        colour = np.abs(renders[..., 0] - renders[..., 2])
        assert (colour > 40).mean() > 0.02, cluster["name"]
