"""The reconstructed surface's colour: the input views where a point is visible, the refined
colour field elsewhere, carried into the photos' palette.

The colour field was trained on procedural shapes' colours, so on a real photo it paints the
hidden side in colours the object does not have (a dark oak chair came out beige). Its pattern
is kept (where one part differs from another), but its colours are moved to the palette of the
object's own pixels in the photos: in CIELAB, the field's mean over the surface becomes the
photos' mean and its spread shrinks to theirs, never grows (a flat field stays flat rather than
have its noise amplified into a pattern)."""

from __future__ import annotations

import warnings

import numpy as np

from backend.geometry.texture import ColorFn
from backend.pipelines.reconstruct.fitting import fitted_cameras
from backend.pipelines.reconstruct.inputs import PreparedView

ZBUFFER_SAMPLES = 60_000
"""Surface samples splatted into each view's z-buffer."""


def view_colour_function(model, vertices: np.ndarray, faces: np.ndarray, refined: dict,
                         views: list[PreparedView]) -> ColorFn:
    """(points, normals) -> RGB: the input views where the point is visible (weighted by how
    squarely the view sees it), the refined colour field elsewhere. ``refined`` is the result of
    `fitting.refine`; ``vertices``/``faces`` the surface, for the views' z-buffers."""
    import torch

    from backend.geometry.metrics import sample_surface

    dev = refined["shape"].device
    cams = fitted_cameras(refined["angles"], refined["log_focal"], refined["offset"], refined["size"])
    size = refined["size"]
    # z-buffer of each view from dense surface samples: a point is visible when it is not
    # behind the nearest sample that projects to its pixel
    dense = torch.from_numpy(sample_surface(vertices, faces, ZBUFFER_SAMPLES)).float().to(dev)
    zbuffers = []
    for i in range(len(views)):
        uv, z = cams[i].project(dense.unsqueeze(0))
        zbuffers.append(zbuffer(uv[0].cpu().numpy(), z[0].cpu().numpy(), size))
    images = [v.rgb for v in views]
    masks = [v.mask for v in views]
    centres = cams.centers.cpu().numpy()
    extent = float(np.linalg.norm(vertices.max(0) - vertices.min(0)))
    with torch.no_grad():
        surface_field = model.color(dense.unsqueeze(0), refined["color"].unsqueeze(0))[0].cpu().numpy()
    palette = PaletteTransfer.fit(surface_field, np.concatenate([v.rgb[v.mask > 0.5] for v in views]))

    def colour(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        pts = torch.from_numpy(points).float().to(dev)
        with torch.no_grad():
            field = palette(model.color(pts.unsqueeze(0), refined["color"].unsqueeze(0))[0].cpu().numpy())
        total = np.zeros_like(points)
        weight = np.zeros(len(points))
        for i in range(len(views)):
            uv, z = cams[i].project(pts.unsqueeze(0))
            uv, z = uv[0].cpu().numpy(), z[0].cpu().numpy()
            col = np.clip(np.floor(uv[:, 0]).astype(int), 0, size - 1)
            row = np.clip(np.floor(uv[:, 1]).astype(int), 0, size - 1)
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < size) & (uv[:, 1] >= 0) & (uv[:, 1] < size) & (z > 0)
            visible = inside & (z <= zbuffers[i][row, col] + 0.02 * extent) & (masks[i][row, col] > 0.5)
            to_camera = centres[i] - points
            to_camera /= np.maximum(np.linalg.norm(to_camera, axis=1, keepdims=True), 1e-9)
            facing = np.clip((normals * to_camera).sum(1), 0.0, 1.0)
            w = np.where(visible, facing, 0.0) ** 2
            total += w[:, None] * sample_bilinear(images[i], uv)
            weight += w
        blend = np.clip(weight * 4.0, 0.0, 1.0)[:, None]
        seen = total / np.maximum(weight, 1e-9)[:, None]
        return blend * seen + (1.0 - blend) * field

    return colour


class PaletteTransfer:
    """Colours [N, 3] (RGB 0..1) moved, in CIELAB, from one palette's mean and spread to another's."""

    def __init__(self, source_mean: np.ndarray, target_mean: np.ndarray, gain: np.ndarray):
        self.source_mean, self.target_mean, self.gain = source_mean, target_mean, gain

    @classmethod
    def fit(cls, source: np.ndarray, target: np.ndarray) -> "PaletteTransfer":
        """From the colours ``source`` [N, 3] to the palette of ``target`` [M, 3]; with no
        target colours, the identity."""
        source_lab = _lab(source)
        if len(target) == 0:
            return cls(source_lab.mean(0), source_lab.mean(0), np.ones(3))
        target_lab = _lab(target)
        spread = source_lab.std(0)
        gain = np.minimum(1.0, target_lab.std(0) / np.maximum(spread, 1e-6))
        return cls(source_lab.mean(0), target_lab.mean(0), gain)

    def __call__(self, colours: np.ndarray) -> np.ndarray:
        from skimage.color import lab2rgb

        lab = (_lab(colours) - self.source_mean) * self.gain + self.target_mean
        with warnings.catch_warnings():  # colours outside the RGB gamut are clipped to it, as meant
            warnings.simplefilter("ignore")
            rgb = lab2rgb(lab[:, None, :])[:, 0, :]
        return np.clip(rgb, 0.0, 1.0)


def _lab(colours: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(np.clip(colours, 0.0, 1.0)[:, None, :].astype(np.float64))[:, 0, :]


def zbuffer(uv: np.ndarray, z: np.ndarray, size: int) -> np.ndarray:
    """[size, size] nearest depth of points splatted to their pixel and its 4 neighbours."""
    buffer = np.full((size, size), np.inf)
    ok = (z > 0) & np.isfinite(uv).all(1)
    col = np.floor(uv[ok, 0]).astype(int)
    row = np.floor(uv[ok, 1]).astype(int)
    depth = z[ok]
    for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        r, c = row + dr, col + dc
        inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        np.minimum.at(buffer, (r[inside], c[inside]), depth[inside])
    return buffer


def sample_bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample [T, T, 3] at pixel positions uv [K, 2] (pixel centres at +0.5), clamped to the edges."""
    size = image.shape[0]
    x = np.clip(uv[:, 0] - 0.5, 0, size - 1)
    y = np.clip(uv[:, 1] - 0.5, 0, size - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, size - 1), np.minimum(y0 + 1, size - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
