import io
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from backend.errors import InputError
from backend.images import decode_image
from backend.protocol import ErrorCode

LIMIT = 10_000_000


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def gradient(mode="RGB", size=(40, 30)):
    array = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3).astype(np.uint8)
    return Image.fromarray(array, "RGB").convert(mode)


def test_rgba_png_keeps_alpha():
    image = gradient("RGBA")
    image.putalpha(Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 6, (30, 1))))
    decoded = decode_image(encode(image, "PNG"), max_pixels=LIMIT)
    assert decoded.rgba.shape == (30, 40, 4) and decoded.has_alpha
    assert decoded.rgba[0, 0, 3] == 0 and decoded.rgba[0, -1, 3] == 234


def test_opaque_jpeg_has_no_alpha():
    decoded = decode_image(encode(gradient(), "JPEG"), max_pixels=LIMIT)
    assert not decoded.has_alpha and decoded.source_format == "JPEG"


def test_webp_is_accepted():
    decoded = decode_image(encode(gradient(), "WEBP"), max_pixels=LIMIT)
    assert decoded.source_format == "WEBP" and decoded.size == (40, 30)


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (32, 1))
    decoded = decode_image(encode(Image.fromarray(values), "PNG"), max_pixels=LIMIT)
    row = decoded.rgba[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and 120 < row[16] < 136  # mid-grey stays mid-grey
    assert any("16-bit" in w for w in decoded.warnings)


def test_palette_png_with_transparency():
    image = gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    image.info["transparency"] = 0
    decoded = decode_image(encode(image, "PNG", transparency=0), max_pixels=LIMIT)
    assert decoded.rgba.shape[2] == 4


def test_cmyk_jpeg_is_converted():
    decoded = decode_image(encode(gradient("CMYK"), "JPEG"), max_pixels=LIMIT)
    assert decoded.rgba.shape == (30, 40, 4) and any("CMYK" in w for w in decoded.warnings)


@pytest.mark.parametrize("data, code, text", [
    (b"", ErrorCode.INVALID_IMAGE, "empty"),
    (b"GIF89a" + b"\0" * 40, ErrorCode.INVALID_IMAGE, "not a PNG, JPEG or WebP"),
    (None, ErrorCode.INVALID_IMAGE, "1×1"),
    ("truncated", ErrorCode.INVALID_IMAGE, "truncated"),
])
def test_unusable_images(data, code, text):
    if data is None:
        data = encode(Image.new("RGB", (1, 1)), "PNG")
    elif data == "truncated":
        data = encode(gradient(size=(200, 200)), "PNG")[:400]
    with pytest.raises(InputError) as info:
        decode_image(data, max_pixels=LIMIT)
    assert info.value.code == code and text in info.value.message


def test_pixel_limit_checked_from_header():
    with pytest.raises(InputError) as info:
        decode_image(encode(gradient(size=(100, 100)), "PNG"), max_pixels=9_999)
    assert info.value.code == ErrorCode.IMAGE_TOO_LARGE


# ------------------------------------------------------------------------------------ hostile files
def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        chunks.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")


def build_png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(kind, body) for kind, body in chunks)


def refused(data: bytes, code=ErrorCode.INVALID_IMAGE, max_pixels=LIMIT) -> str:
    with pytest.raises(InputError) as info:
        decode_image(data, max_pixels=max_pixels)
    assert info.value.code == code, info.value.message
    return info.value.message


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """6000×6000 of one colour: a complete file of ~0.5 MB whose header promises 36 M pixels."""
    return encode(Image.new("RGB", (6000, 6000), (120, 50, 30)), "JPEG", quality=10)


@pytest.fixture(params=[False, True], ids=["pillow-default", "load-truncated-on"])
def truncated_switch(request, monkeypatch):
    """Some libraries switch Pillow's LOAD_TRUNCATED_IMAGES on for the whole process."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", request.param)


def test_cut_jpeg_claiming_36_megapixels_is_refused(big_jpeg, truncated_switch):
    message = refused(big_jpeg[:1310], max_pixels=40_000_000)
    assert "truncated" in message


def test_cut_jpeg_with_an_end_marker_pasted_on_is_refused(big_jpeg, truncated_switch):
    message = refused(big_jpeg[:1310] + b"\xff\xd9", max_pixels=40_000_000)
    assert "truncated" in message and "6000×6000" in message


def test_cut_png_is_refused_whatever_pillow_is_told(truncated_switch):
    data = encode(gradient(size=(200, 200)), "PNG")
    assert "without IEND" in refused(data[: len(data) * 2 // 3])


def test_png_whose_compressed_pixels_end_early_is_refused(truncated_switch):
    # every chunk and CRC intact: only the decoder can tell that rows are missing
    chunks = png_chunks(encode(gradient(size=(200, 200)), "PNG", compress_level=0))
    first_idat = [kind for kind, _ in chunks].index(b"IDAT")
    kept = chunks[:first_idat + 1] + [chunks[-1]]
    assert len(kept) < len(chunks)
    assert "ends early" in refused(build_png(kept))


def test_png_with_flipped_pixel_bits_is_refused():
    # stored (uncompressed) deflate blocks: the flips change pixels and nothing else notices
    data = bytearray(encode(gradient(size=(64, 64)), "PNG", compress_level=0))
    raw = data.index(b"IDAT") + 4 + 2 + 5  # past the zlib header and the stored block's header
    for offset in (1000, 2000, 3000):  # none is a row's filter byte (rows are 193 bytes)
        data[raw + offset] ^= 0x01
    message = refused(bytes(data))
    assert "'IDAT'" in message and "CRC" in message


def test_png_with_a_bad_crc_after_the_pixels_is_refused():
    chunks = png_chunks(encode(gradient(), "PNG"))
    body = png_chunk(b"tEXt", b"Comment\0hello", crc=0)
    data = b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(k, b) for k, b in chunks[:-1]) + body + png_chunk(b"IEND", b"")
    message = refused(data)
    assert "'tEXt'" in message and "CRC" in message


@pytest.mark.parametrize("tail", [b"", b"garbage after the last chunk"], ids=["no-iend", "garbage"])
def test_png_without_iend_is_refused(tail):
    chunks = png_chunks(encode(gradient(), "PNG"))
    assert "without IEND" in refused(build_png(chunks[:-1]) + tail)


def test_png_bomb_quotes_the_configured_limit_before_decoding():
    # 20000×20000 in a few kB: Pillow's own cap (179 M pixels) would answer first if asked
    header = (20000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    rows = zlib.compress(b"\0" * (1 + 20000 * 3) * 50)
    data = build_png([(b"IHDR", header), (b"IDAT", rows), (b"IEND", b"")])
    message = refused(data, ErrorCode.IMAGE_TOO_LARGE, max_pixels=40_000_000)
    assert "the limit is 40000000" in message and "20000×20000" in message


def test_decoding_leaves_pillows_pixel_cap_alone(monkeypatch):
    # the cap is process-wide: changing it around a decode races with every other thread
    seen = []
    original = ImageFile.ImageFile.load

    def spy(self):
        seen.append(Image.MAX_IMAGE_PIXELS)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    decode_image(encode(gradient(), "PNG"), max_pixels=LIMIT)
    assert seen and all(cap == Image.MAX_IMAGE_PIXELS is not None for cap in seen)


@pytest.mark.parametrize("change", ["cut", "trailing"])
def test_webp_whose_size_disagrees_with_its_riff_header_is_refused(change):
    data = encode(gradient(size=(64, 64)), "WEBP")
    data = data[:-1] if change == "cut" else data + b"garbage!"
    assert "RIFF" in refused(data)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animation_decodes_only_its_first_frame(fmt):
    first, second = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    data = encode(first, fmt, save_all=True, append_images=[second], lossless=True)
    decoded = decode_image(data, max_pixels=LIMIT)
    assert tuple(decoded.rgba[0, 0]) == (255, 0, 0, 255)
    assert any("first" in w for w in decoded.warnings)


def test_large_image_converts_exactly():
    # several conversion strips, and a width that does not divide the strip size
    array = np.random.default_rng(1).integers(0, 256, (700, 1001, 3), dtype=np.uint8)
    decoded = decode_image(encode(Image.fromarray(array), "PNG"), max_pixels=LIMIT)
    assert np.array_equal(decoded.rgba[..., :3], array) and (decoded.rgba[..., 3] == 255).all()


def _with_orientation(rgb, fmt, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {"quality": 95}
    Image.fromarray(rgb).save(buffer, format=fmt, exif=exif.tobytes(), **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_turns_the_image_upright_as_pillow_shows_it(fmt, orientation):
    """A phone held upright stores its photo on its side and says so in EXIF; Pillow's
    `ImageOps.exif_transpose` is the reference for all eight orientations."""
    from PIL import ImageOps

    rgb = np.random.default_rng(orientation).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    data = _with_orientation(rgb, fmt, orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGBA"))
    image = decode_image(data, max_pixels=10_000)
    assert image.rgba.shape == expected.shape and np.array_equal(image.rgba, expected)
    assert image.rgba.shape[:2] == ((50, 30) if orientation >= 5 else (30, 50))
    assert any("EXIF orientation" in note for note in image.warnings) == (orientation != 1)


def test_a_jpeg_over_the_pixel_limit_is_decoded_reduced_not_refused(big_jpeg):
    """A 48 or 50 MP phone photo: JPEG's own reduced decoding brings it under the limit."""
    image = decode_image(big_jpeg, max_pixels=10_000_000)  # 36 M pixels: half the size fits
    assert image.size == (3000, 3000)
    assert np.abs(image.rgba[1500, 1500, :3].astype(int) - (120, 50, 30)).max() <= 12  # saved at quality 10
    assert any("1/2 of its 6000×6000 pixels" in note for note in image.warnings)
    image = decode_image(big_jpeg, max_pixels=1_000_000)  # a quarter of 6000 is too many: an eighth
    assert image.size == (750, 750)
    message = refused(big_jpeg, ErrorCode.IMAGE_TOO_LARGE, max_pixels=500_000)  # not even at 1/8
    assert "even decoded at 1/8" in message


def test_a_cut_jpeg_over_the_limit_is_still_refused_as_truncated(big_jpeg):
    assert "truncated" in refused(big_jpeg[:1310], max_pixels=10_000_000)


def test_a_png_over_the_limit_is_refused_as_before():
    message = refused(encode(gradient(size=(100, 100)), "PNG"), ErrorCode.IMAGE_TOO_LARGE, max_pixels=9_999)
    assert "even" not in message


def test_a_heic_photo_is_refused_by_name_with_the_way_out():
    message = refused(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    assert "HEIC photo" in message and "export it as JPEG" in message
