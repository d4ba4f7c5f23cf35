"""Reference images inside Blender (image empties, Image Editor images) → encoded image bytes."""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from ..core.images import ImageSourceError, check_image_bytes, read_image_file, sniff_format
from ..core.png import encode_png


@dataclass
class SourceImage:
    data: bytes
    """PNG, JPEG or WebP file bytes, as the backend takes them."""
    name: str
    """For labels and the object's ``stepstone_source_image`` property."""
    path: str = ""
    """The file on disk, when there is one."""


def is_image_empty(obj: bpy.types.Object) -> bool:
    return obj.type == "EMPTY" and obj.empty_display_type == "IMAGE" and obj.data is not None


def image_source(image: bpy.types.Image) -> SourceImage:
    """The bytes of a Blender image: its packed or on-disk file when the backend can read that
    format, otherwise its pixels encoded as PNG (generated, painted, EXR, TIFF, ...)."""
    if image.packed_file is not None:
        data = bytes(image.packed_file.data)
        if sniff_format(data):
            return SourceImage(data, image.name, image.filepath)
    elif image.source == "FILE" and image.filepath:
        path = bpy.path.abspath(image.filepath, library=image.library)
        data = read_image_file(path)
        return SourceImage(data, image.name, path)
    return SourceImage(pixels_png(image), image.name, "")


def pixels_png(image: bpy.types.Image) -> bytes:
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageSourceError(f"image {image.name!r} has no pixels (is its file missing?)")
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    # Blender stores rows bottom-up; PNG wants them top-down.
    rgba = np.clip(pixels.reshape(height, width, 4)[::-1] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return check_image_bytes(encode_png(rgba), image.name)


def selected_image_empties(context) -> list[bpy.types.Object]:
    return sorted((obj for obj in context.selected_objects if is_image_empty(obj)), key=lambda o: o.name)


def image_editor_image(context) -> bpy.types.Image | None:
    """The image shown in the Image Editor the operator runs in, or in the first one on screen."""
    space = getattr(context, "space_data", None)
    if space is not None and space.type == "IMAGE_EDITOR" and space.image is not None:
        return space.image
    screen = getattr(context, "screen", None)
    for area in screen.areas if screen else ():
        if area.type == "IMAGE_EDITOR" and area.spaces.active.image is not None:
            return area.spaces.active.image
    return None
