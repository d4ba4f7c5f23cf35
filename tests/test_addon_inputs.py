"""Batch inputs (prompt lists, CSV, image folders) and reference image files (no bpy)."""

import pytest

from addon_support.package import core
from conftest import png_bytes

batch = core("batch")
images = core("images")


def test_prompt_lines_skip_blanks_and_comments():
    items = batch.parse_prompt_lines("a red chair\n\n# not this\n  a blue mug  \n")
    assert [i.prompt for i in items] == ["a red chair", "a blue mug"]
    with pytest.raises(batch.BatchInputError, match="no prompts"):
        batch.parse_prompt_lines("\n# only a comment\n", "Prompts")


def test_csv_with_header_reads_all_columns():
    text = "name,prompt,seed,negative_prompt\nChair,a wooden chair,7,blurry\n,a mug,,\n"
    items = batch.parse_prompt_csv(text)
    assert items[0] == batch.PromptItem("a wooden chair", "blurry", 7, "Chair")
    assert items[1] == batch.PromptItem("a mug", None, None, None)


def test_csv_without_header_uses_first_column():
    items = batch.parse_prompt_csv('"a chair, wooden",x\na lamp\n')
    assert [i.prompt for i in items] == ["a chair, wooden", "a lamp"]


@pytest.mark.parametrize("text,match", [
    ("prompt,seed\na chair,abc\n", "row 2: seed 'abc' is not a whole number"),
    ("prompt,seed\na chair,-1\n", "outside"),
    ("prompt\n\"\"\n,\n", "no rows|empty|no prompts"),
    ("prompt,colour\na chair,red\n", "unknown column"),
    ("", "no rows"),
])
def test_csv_errors_name_the_row(text, match):
    with pytest.raises(batch.BatchInputError, match=match):
        batch.parse_prompt_csv(text)


def test_read_prompt_file_by_suffix(tmp_path):
    (tmp_path / "p.txt").write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "p.csv").write_text("\ufeffprompt\nthree\n", encoding="utf-8")
    (tmp_path / "p.json").write_text("[]")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    assert [i.prompt for i in batch.read_prompt_file(tmp_path / "p.txt")] == ["one", "two"]
    assert [i.prompt for i in batch.read_prompt_file(tmp_path / "p.csv")] == ["three"]
    with pytest.raises(batch.BatchInputError, match="must be .txt or .csv"):
        batch.read_prompt_file(tmp_path / "p.json")
    with pytest.raises(batch.BatchInputError, match="not UTF-8"):
        batch.read_prompt_file(tmp_path / "bad.txt")
    with pytest.raises(batch.BatchInputError, match="does not exist"):
        batch.read_prompt_file(tmp_path / "missing.txt")


def test_image_folder_lists_supported_images_sorted(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.webp", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in batch.list_image_folder(tmp_path)] == ["a.jpg", "b.PNG", "c.webp"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(batch.BatchInputError, match="holds no PNG"):
        batch.list_image_folder(empty)


def test_object_name_for_long_prompts():
    assert batch.object_name_for("a   red chair") == "a red chair"
    assert len(batch.object_name_for("word " * 40)) <= 40


def test_read_image_file_reports_every_problem(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes())
    assert images.read_image_file(good).startswith(b"\x89PNG")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    cases = [(tmp_path / "missing.png", "does not exist"), (tmp_path, "is a folder"),
             (tmp_path / "empty.png", "empty"), (tmp_path / "text.png", "not a PNG, JPEG or WebP"), ("", "no image")]
    for path, match in cases:
        with pytest.raises(images.ImageSourceError, match=match):
            images.read_image_file(path)


def test_sniff_format():
    assert images.sniff_format(png_bytes()) == "PNG"
    assert images.sniff_format(b"\xff\xd8\xff\xe0") == "JPEG"
    assert images.sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert images.sniff_format(b"GIF89a") is None


def test_encode_png_round_trips_through_pillow():
    import io

    import numpy as np
    from PIL import Image

    png = core("png")
    rgba = np.random.default_rng(0).integers(0, 256, (7, 5, 4), dtype=np.uint8)
    data = png.encode_png(rgba)
    assert images.sniff_format(data) == "PNG"
    back = np.asarray(Image.open(io.BytesIO(data)))
    np.testing.assert_array_equal(back, rgba)
    with pytest.raises(ValueError):
        png.encode_png(np.zeros((0, 3, 4), np.uint8))


def test_photos_in_formats_the_backend_does_not_take_say_what_they_are_and_what_to_do(tmp_path):
    """An iPhone saves HEIC by default; a folder of them, or one of them, is named as such with
    the way out, not only refused."""
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
    (tmp_path / "IMG_0001.HEIC").write_bytes(heic)
    (tmp_path / "IMG_0002.heic").write_bytes(heic)
    with pytest.raises(batch.BatchInputError, match=r"holds 2 HEIC/HEIF photo\(s\).*export them as JPEG"):
        batch.list_image_folder(tmp_path)
    renamed = tmp_path / "IMG_0001.jpg"  # a HEIC file given a .jpg name
    renamed.write_bytes(heic)
    with pytest.raises(images.ImageSourceError, match="it is a HEIC photo.*export it as JPEG"):
        images.read_image_file(renamed)
    (tmp_path / "scan.png").write_bytes(b"II*\x00" + b"\x00" * 16)
    with pytest.raises(images.ImageSourceError, match="it is a TIFF file; save it as PNG or JPEG"):
        images.read_image_file(tmp_path / "scan.png")
    assert images.folder_hint([tmp_path / "a.txt"]) == ""
