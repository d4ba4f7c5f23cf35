import json

import numpy as np
from PIL import Image

from script_modules import load_script

bench = load_script("bench_segmentation")


def _disc_photo(size=96, centre=(48, 52), radius=22, alpha=False):
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (xx - centre[1]) ** 2 + (yy - centre[0]) ** 2 < radius ** 2
    rgb = np.full((size, size, 3), (230, 232, 225), dtype=np.uint8)
    rgb[disc] = (170, 40, 30)
    if alpha:
        return Image.fromarray(np.dstack([rgb, disc.astype(np.uint8) * 255])), disc
    return Image.fromarray(rgb), disc


def test_scores_every_photo_without_alpha_against_its_true_mask(tmp_path):
    real = tmp_path / "real" / "disc"
    real.mkdir(parents=True)
    photo, disc = _disc_photo()
    photo.save(real / "view_0.png")
    Image.fromarray(disc.astype(np.uint8) * 255).save(real / "mask_0.png")
    wrong = np.zeros_like(disc)
    wrong[:20, :20] = True  # a true mask elsewhere: the found disc scores 0
    photo.save(real / "view_1.png")
    Image.fromarray(wrong.astype(np.uint8) * 255).save(real / "mask_1.png")
    with_alpha, _ = _disc_photo(alpha=True)
    with_alpha.save(real / "view_2.png")  # carries its mask: not a segmentation case
    Image.fromarray(disc.astype(np.uint8) * 255).save(real / "mask_2.png")

    mining = tmp_path / "mining"
    (mining / "shop" / "photos").mkdir(parents=True)
    (mining / "objects" / "disc").mkdir(parents=True)
    small, small_disc = _disc_photo()
    small.resize((64, 64)).save(mining / "shop" / "photos" / "photo_000.jpg")  # resized after rendering
    Image.fromarray(small_disc.astype(np.uint8) * 255).save(mining / "objects" / "disc" / "mask_3.png")
    (mining / "shop" / "truth.json").write_text(json.dumps(
        {"photos": {"photo_000.jpg": {"object": "disc", "shows": "disc", "view": 3, "background": "plain"}}}))

    out = tmp_path / "result"
    assert bench.main(["--real-data", str(tmp_path / "real"), "--box-data", str(tmp_path / "none"),
                       "--mining-data", str(mining), "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    by_name = {row["name"]: row for row in result["photos"]}
    assert set(by_name) == {"disc/0", "disc/1", "shop/photo_000.jpg"}
    assert by_name["disc/0"]["iou"] > 0.95 and by_name["disc/1"]["iou"] == 0.0
    assert by_name["shop/photo_000.jpg"]["iou"] > 0.9
    assert result["summary"]["real"] == {"photos": 2, "mean_iou": round((by_name["disc/0"]["iou"]) / 2, 4),
                                         "poor": 1, "doubted": 0, "doubted_but_right": 0}
    assert "| real | 2 |" in out.with_suffix(".md").read_text()
