import numpy as np
import pytest

from backend.errors import PipelineError
from backend.protocol import ErrorCode
from backend.segmentation import crop_to_object, segment


def disc_image(background=(235, 235, 228), colour=(180, 40, 30), size=160, noise=4.0, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (xx - 80) ** 2 + (yy - 90) ** 2 < 45 ** 2
    rgb = np.empty((size, size, 3))
    rgb[:] = background
    rgb[disc] = colour
    rgb += rng.normal(0, noise, rgb.shape)
    rgba = np.concatenate([np.clip(rgb, 0, 255), np.full((size, size, 1), 255)], axis=2).astype(np.uint8)
    return rgba, disc


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_alpha_channel_is_used_when_present():
    rgba, disc = disc_image()
    rgba[..., 3] = np.where(disc, 255, 0)
    seg = segment(rgba, has_alpha=True)
    assert seg.method == "alpha channel" and iou(seg.mask, disc) > 0.99


def test_border_model_finds_an_object_on_a_plain_background():
    rgba, disc = disc_image()
    seg = segment(rgba, has_alpha=False)
    assert iou(seg.mask, disc) > 0.95
    assert seg.confidence > 0.8 and not seg.notes


def test_object_cut_by_the_border_lowers_confidence():
    rgba, _ = disc_image()
    shifted = np.roll(rgba, 45, axis=1)  # the disc now runs off the right edge
    seg = segment(shifted, has_alpha=False)
    assert seg.confidence < 0.5 and any("border" in note for note in seg.notes)


@pytest.mark.parametrize("make", [
    lambda: np.concatenate([np.full((64, 64, 3), 128), np.zeros((64, 64, 1))], 2).astype(np.uint8),  # transparent
    lambda: np.full((64, 64, 4), 200, np.uint8),                            # uniform, alpha 200 everywhere
    lambda: np.full((64, 64, 4), 255, np.uint8),                            # uniform, opaque
])
def test_no_object(make):
    rgba = make()
    with pytest.raises(PipelineError) as info:
        segment(rgba, has_alpha=bool((rgba[..., 3] < 255).any()))
    assert info.value.code == ErrorCode.NO_OBJECT


def test_crop_centres_the_object_with_a_margin():
    rgba, disc = disc_image()
    rgb, mask = crop_to_object(rgba, disc, 100, margin=0.1)
    assert rgb.shape == (100, 100, 3) and mask.shape == (100, 100)
    ys, xs = np.nonzero(mask > 0.5)
    assert abs(ys.mean() - 49.5) < 1.5 and abs(xs.mean() - 49.5) < 1.5
    assert 78 < ys.max() - ys.min() + 1 < 86  # 90 px disc in a 1.2 × 90 px crop → ~83 of 100


def test_object_on_a_patterned_floor_is_cut_out():
    """A photo of a real object on a textured floor (tests/data/README.md): the border-colour model
    alone takes pieces of floor for the object; refined by GrabCut the mask matches the truth."""
    from pathlib import Path

    from PIL import Image

    from backend.segmentation import _border_model

    data = Path(__file__).parent / "data"
    rgb = np.asarray(Image.open(data / "soda_can_on_floor.png").convert("RGB"))
    truth = np.asarray(Image.open(data / "soda_can_on_floor_mask.png").convert("L")) > 127
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)

    def iou(mask):
        return (mask & truth).sum() / (mask | truth).sum()

    assert iou(_border_model(rgb).mask) < 0.8
    seg = segment(rgba, has_alpha=False)
    assert iou(seg.mask) > 0.95 and "GrabCut" in seg.method
    assert np.array_equal(segment(rgba, has_alpha=False).mask, seg.mask)  # reproducible
