"""Surfaces of revolution from an outline (backend/geometry/outline.py)."""

import numpy as np
import pytest

from backend.geometry.outline import fit_revolution, mirror_axis, revolution_field

S = 128


def vase_mask(axis: float = 60.0) -> np.ndarray:
    """A soft vase outline: radius 12 px at the neck to 30 px at the belly, rows 20..110."""
    rows, cols = np.mgrid[:S, :S].astype(np.float64)
    t = (rows - 20) / 90
    radius = 12 + 18 * np.sin(np.pi * np.clip(t, 0, 1)) ** 2
    inside = (rows >= 20) & (rows < 110)
    # soft edge one pixel wide, as a resized crop has
    return np.clip(radius - np.abs(cols - axis) + 0.5, 0, 1) * inside


def test_mirror_axis_of_a_symmetric_outline():
    axis, iou = mirror_axis(vase_mask(60.0) >= 0.5)
    assert axis == pytest.approx(60.0, abs=0.5)
    assert iou > 0.97


def test_vase_is_a_surface_of_revolution_with_its_radius_per_row():
    fit = fit_revolution(vase_mask())
    assert fit is not None
    t = (np.arange(S) - 20) / 90
    expected = 12 + 18 * np.sin(np.pi * t) ** 2
    rows = np.arange(30, 100)  # away from the rims, where smoothing rounds the ends
    assert np.abs(fit.radius[rows] - expected[rows]).max() < 1.0
    assert fit.radius[:15].max() == 0 and fit.radius[115:].max() == 0
    assert not fit.attached.any()


def test_a_handle_is_attached_and_does_not_widen_the_body():
    mask = np.zeros((S, S))
    mask[30:100, 40:80] = 1.0  # the body: half-width 20 about column 59.5
    rows, cols = np.mgrid[:S, :S]
    ring = np.hypot(rows - 65, cols - 80)
    mask[(ring > 14) & (ring < 20) & (cols >= 80)] = 1.0  # a handle on the right
    fit = fit_revolution(mask)
    assert fit is not None
    assert fit.axis == pytest.approx(59.5, abs=1.0)
    assert np.abs(fit.radius[40:90] - 20).max() < 1.0
    assert fit.attached[65, 96:99].all() and not fit.attached[65, 50:70].any()


@pytest.mark.parametrize("shape", ["two_legs", "lopsided"])
def test_outlines_that_are_not_of_revolution(shape):
    mask = np.zeros((S, S))
    if shape == "two_legs":  # a table from the front: two spans in most rows
        mask[20:35, 20:108] = 1
        mask[35:110, 20:35] = 1
        mask[35:110, 93:108] = 1
    else:  # an animal from the side
        mask[40:80, 20:100] = 1
        mask[20:50, 90:120] = 1
        mask[80:110, 25:32] = 1
    assert fit_revolution(mask) is None


def test_revolution_field_is_a_solid_of_the_fitted_radius():
    fit = fit_revolution(vase_mask(64.0))
    grid = 65
    field = revolution_field(fit, S, grid)
    g = np.linspace(-0.5, 0.5, grid)
    z = 32  # the grid's middle row: z = 0, image row 63.5
    radius = np.interp(63.5, np.arange(S), fit.radius) / S
    axis_x = (fit.axis + 0.5) / S - 0.5
    # along x through the axis at y = 0, and along depth y at the axis: the same radius
    inside_x = g[field[:, grid // 2, z] > 0]
    inside_y = g[field[np.argmin(np.abs(g - axis_x)), :, z] > 0]
    step = g[1] - g[0]
    assert (inside_x.max() - inside_x.min()) / 2 == pytest.approx(radius, abs=step)
    assert (inside_y.max() - inside_y.min()) / 2 == pytest.approx(radius, abs=step)
    # nothing above or below the outline's rows
    assert (field[:, :, g > 0.5 - 15 / S] < 0).all()
