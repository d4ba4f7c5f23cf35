import io

import numpy as np
import pytest
from PIL import Image

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
    ("truncated", ErrorCode.INVALID_IMAGE, "corrupt or truncated"),
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
