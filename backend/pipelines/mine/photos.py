"""A collection's photos as mining sees them: the object found and cropped once, at the sizes
the camera search, the hull, the first guess and the colours each need."""

from __future__ import annotations

from backend.pipelines.base import JobContext
from backend.pipelines.mine.pooled import CARVE_SIZE, ClusterPhoto
from backend.pipelines.mine.views import SILHOUETTE_SIZE

COLOUR_SIZE = 256
"""Side of the colour crop the texture is taken from."""

SOLID_SIZE = 96
"""Side of the crop the first guess (an outline solid) is built from."""


def crop_photo(image, name: str, ctx: JobContext) -> ClusterPhoto:
    """Find the object in a decoded image (`backend.pipelines.reconstruct.inputs.find_object`,
    which raises NO_OBJECT when there is none) and crop it."""
    from backend.pipelines.reconstruct.inputs import find_object, object_crop
    from backend.pipelines.reconstruct.silhouette import carried_colours
    from backend.segmentation import crop_to_object

    seg = find_object(image, ctx)
    _, small = object_crop(image.rgba, seg.mask, SILHOUETTE_SIZE)
    _, carve = object_crop(image.rgba, seg.mask, CARVE_SIZE)
    rgb, mask = crop_to_object(image.rgba, seg.mask, COLOUR_SIZE)
    solid_rgb, solid_mask = crop_to_object(image.rgba, seg.mask, SOLID_SIZE)
    return ClusterPhoto(name, small, carve, carried_colours(rgb, mask), solid_rgb, solid_mask, mask, seg.confidence)
