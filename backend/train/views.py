"""Training views rendered on the fly: sphere tracing of baked shapes, shaded and degraded like photos.

Every view is made on the training device from a `ShapeBank` and a camera drawn at random, and
nothing touches disk. Per view:

* a **clean** render (object shaded over white, with true alpha, depth and world normals) — the
  targets of the rendering losses;
* a **photo**: the same object over a random background (plain, gradient, noise, clutter), with a
  random exposure and white balance, blur, resampling, sensor noise and JPEG-like block
  quantisation;
* the **encoder input** made from the photo the way the pipeline makes it from a user's photo
  (`object_crop`: square around the mask, 10 % margin, over white) — but with the mask a
  segmentation would give, not the true one: grown or shrunk by a pixel or two and soft at the
  edge, so edge fringes of the background reach the encoder as they do in use.

Shading: per-part base colours and roughness/metallic from the generator's materials, modulated by a
random 3D noise texture; a key light with soft self-shadows (traced in the same grid), a sky/ground
ambient term and a Blinn-Phong highlight. It is not Cycles — which is the point: the encoder should
learn what photos of objects look like, not one renderer's look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from backend.pipelines.reconstruct.inputs import CROP_MARGIN
from backend.render.cameras import Cameras, orbit_cameras
from backend.train.shape_bank import GRID_LIMIT, grid_lookup, grid_sdf_and_gradient, voxel

BACKGROUNDS = ("white", "plain", "gradient", "noise", "clutter")

OUTLINE_POINTS = 384
"""Surface samples projected to find the object's extent in a photo (the window to render)."""

FRAMED_RADIUS = 0.6
"""Radius the camera distance frames in the full (virtual) photo."""


@dataclass
class ViewConfig:
    """Camera, light, background and degradation ranges of the training views."""

    render_size: int = 80
    """Side of the rendered window around the object (see `random_cameras`); the encoder crop
    is resampled from it, so about 1.25x the encoder input is enough."""
    fov_deg: tuple[float, float] = (15.0, 60.0)
    """Vertical field of view range (phone wide-angle to short tele)."""
    elevation_deg: tuple[float, float] = (-10.0, 60.0)
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    roll_deg: float = 6.0
    """Largest camera roll either way."""
    fill: tuple[float, float] = (0.6, 0.95)
    """Share of the full frame's height a sphere of radius `FRAMED_RADIUS` spans (sets the distance)."""
    supervise_size: int = 48
    """Side of the extra (clean) views whose pixels only feed the rendering losses' rays."""
    window_margin: float = 0.15
    """Margin around the projected bounding box of the object in the rendered window (each side,
    share of its longer side): a little more than the encoder crop's 10 %."""
    target_jitter: float = 0.08
    """Largest offset of the look-at point from the object centre (off-centre perspective)."""
    trace_steps: int = 56
    """Sphere-tracing iterations per ray."""
    shadow_steps: int = 14
    """Self-shadow iterations per lit point (0 = no shadows)."""
    background_weights: tuple[float, ...] = (0.15, 0.25, 0.2, 0.2, 0.2)
    """Chance of each of `BACKGROUNDS`."""
    plain_share: float = 0.2
    """Chance that an object is shown in one light grey / off-white for all its parts, as
    unpainted, ceramic, plaster or 3D-printed things are (and scanned or downloaded meshes that
    come without materials)."""
    texture_amplitude: float = 0.35
    """Largest relative modulation of the base colour by the noise texture."""
    degrade: float = 0.8
    """Chance that a photo gets each of blur, noise and JPEG-like artefacts (each drawn separately)."""
    mask_exact: float = 0.5
    """Chance that the simulated segmentation is exact (an alpha channel, a clean backdrop)."""
    mask_grow: float = 0.025
    """Largest growth of the simulated segmentation mask, as a share of the window side."""
    mask_shrink: float = 0.0125
    """Largest shrinkage of the simulated segmentation mask (less: thin legs would vanish)."""


@dataclass
class Views:
    """A batch of rendered views (B views, H = W = render_size)."""

    cameras: Cameras
    viewpoint: torch.Tensor
    """[B, 3] (azimuth, elevation, roll) radians, orbit-camera conventions."""
    clean: torch.Tensor
    """[B, H, W, 3] shaded object over white."""
    alpha: torch.Tensor
    """[B, H, W] coverage (anti-aliased)."""
    depth: torch.Tensor
    """[B, H, W] ray distance to the surface (0 where missed)."""
    normals: torch.Tensor
    """[B, H, W, 3] world normals (0 where missed)."""
    photo: torch.Tensor | None = None
    """[B, H, W, 3] the photo (background, degradations)."""
    seg_mask: torch.Tensor | None = None
    """[B, H, W] the simulated segmentation's soft mask."""
    crops: torch.Tensor | None = None
    """[B, 3, S, S] encoder inputs."""


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055).clamp_min(0) ** 2.4)


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0.0, 1.0)
    return torch.where(c <= 0.0031308, c * 12.92, 1.055 * c.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float, device) -> torch.Tensor:
    return (torch.rand(n, generator=gen, device=gen.device) * (hi - lo) + lo).to(device)


def random_cameras(n: int, config: ViewConfig, gen: torch.Generator, device,
                   outline: torch.Tensor | None = None, size: int | None = None) -> tuple[Cameras, torch.Tensor]:
    """Orbit cameras looking at (about) the object centre; returns them and their viewpoints.

    Perspective comes from a full photo of random field of view and distance; with points on
    the objects' surfaces (``outline`` [B, P, 3]) only a window of that photo around the object is
    rendered (``size`` or ``config.render_size`` pixels square): the encoder crop keeps just that part of a
    photo anyway, and the background pixels it skips are most of the frame.
    """
    rad = math.pi / 180.0
    az = _uniform(gen, n, *config.azimuth_deg, device) * rad
    el = _uniform(gen, n, *config.elevation_deg, device) * rad
    roll = _uniform(gen, n, -config.roll_deg, config.roll_deg, device) * rad
    fov = _uniform(gen, n, *config.fov_deg, device) * rad
    fill = _uniform(gen, n, *config.fill, device)
    distance = FRAMED_RADIUS / torch.sin(0.5 * fov * fill)
    size = size or config.render_size
    focal = 0.5 * size / torch.tan(0.5 * fov)
    target = (torch.rand(n, 3, generator=gen, device=gen.device).to(device) * 2 - 1) * config.target_jitter
    cams = orbit_cameras(az, el, distance, focal=focal, height=size, width=size, roll=roll, target=target)
    if outline is not None:
        cams = object_window(cams, outline, size, config.window_margin)
    return cams, torch.stack([az, el, roll], dim=-1)


def object_window(cams: Cameras, points: torch.Tensor, size: int, margin: float) -> Cameras:
    """The same cameras with intrinsics changed to render only a ``size``-pixel square around the
    projection of each object's surface ``points`` [B, P, 3], with ``margin`` of its longer side
    each side."""
    uv, _ = cams.project(points.to(cams.dtype))
    u0, u1 = uv[..., 0].amin(1), uv[..., 0].amax(1)
    v0, v1 = uv[..., 1].amin(1), uv[..., 1].amax(1)
    side = torch.maximum(u1 - u0, v1 - v0).clamp_min(1e-3) * (1 + 2 * margin)
    scale = size / side
    centre = torch.stack([(u0 + u1) / 2, (v0 + v1) / 2], dim=-1)
    principal = (cams.principal - centre) * scale[:, None] + size / 2
    return Cameras(cams.focal * scale[:, None], principal, cams.rotation, cams.translation, size, size)


def _box_interval(o: torch.Tensor, d: torch.Tensor, lim: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t0 = (-lim - o) * inv
    t1 = (lim - o) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far


def atlas_lookup(sdf: torch.Tensor, points: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """SDF values [M] at points [M, 3], point i read from grid ``owner[i]`` of [B, 1, G, G, G]
    (clamped to the grid box, as `grid_lookup` does): the grids are seen as one tall volume, so any
    subset of a batch's rays can be traced together."""
    b, _, g = sdf.shape[:3]
    q = ((points / GRID_LIMIT).clamp(-1.0, 1.0) + 1.0) * (0.5 * (g - 1))  # voxel coordinates (x, y, z)
    depth = owner.to(q.dtype) * g + q[:, 0]
    coords = torch.stack([q[:, 2] / (g - 1), q[:, 1] / (g - 1), depth / (b * g - 1)], dim=-1) * 2.0 - 1.0
    atlas = sdf.reshape(1, 1, b * g, g, g)
    out = F.grid_sample(atlas, coords.to(sdf.dtype)[None, None, None], mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out.reshape(-1).float()


TRACE_ROUND = 8
"""Sphere-tracing steps between compactions (rays that finished are dropped then)."""


def trace(sdf: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor, steps: int, pixel_angle: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sphere tracing in SDF grids [B, 1, G, G, G] of rays [B, N, 3].

    Returns (t [B, N] distance to the surface, hit [B, N] bool, coverage [B, N] in [0, 1]): the
    coverage is anti-aliased from the closest approach of each ray to the surface measured in
    pixel footprints (``pixel_angle`` [B] radians per pixel), so edges come out soft as in a photo.
    Every `TRACE_ROUND` steps the rays that have converged or left the box are dropped: most
    finish in the first rounds, so the later ones cost little.
    """
    b, n = origins.shape[:2]
    near, far = _box_interval(origins, dirs, GRID_LIMIT - 1e-4)
    h = voxel(sdf.shape[-1])
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    t, far_flat = near.reshape(-1).clone(), far.reshape(-1)
    owner = torch.arange(b, device=o.device).repeat_interleave(n)
    angle = pixel_angle.float()[owner]
    closest = torch.full_like(t, float("inf"))
    live = torch.nonzero(far_flat > t).squeeze(1)
    for start in range(0, steps, TRACE_ROUND):
        if live.numel() == 0:
            break
        ol, dl, tl, cl, wl = o[live], d[live], t[live], closest[live], owner[live]
        fl, al = far_flat[live], angle[live]
        active = torch.ones_like(tl, dtype=torch.bool)
        for _ in range(min(TRACE_ROUND, steps - start)):
            s = atlas_lookup(sdf, ol + tl[:, None] * dl, wl)
            cl = torch.where(active, torch.minimum(cl, s / (tl.clamp_min(1e-3) * al)), cl)
            tl = torch.where(active, tl + 0.85 * s, tl)
            # rays keep converging until very close: stopping a voxel short would call grazing
            # rays hits and grow every silhouette
            active = active & (tl < fl) & (s > 0.02 * h)
        t[live], closest[live] = tl, cl
        live = live[active]
    s = atlas_lookup(sdf, o + t[:, None] * d, owner)
    hit = (far_flat > near.reshape(-1)) & (t < far_flat) & (s.abs() <= 0.1 * h)
    coverage = torch.where(hit, torch.ones_like(t), (0.5 - closest).clamp(0.0, 1.0))
    return t.reshape(b, n), hit.reshape(b, n), coverage.reshape(b, n)


def soft_shadow(sdf: torch.Tensor, points: torch.Tensor, light: torch.Tensor, steps: int) -> torch.Tensor:
    """Visibility [B, N] in [0, 1] of a directional light [B, 3] from surface points [B, N, 3]."""
    if steps <= 0:
        return torch.ones(points.shape[:2], device=points.device)
    h = voxel(sdf.shape[-1])
    dirs = light[:, None, :].expand_as(points)
    _, far = _box_interval(points, dirs, GRID_LIMIT)
    t = torch.full(points.shape[:2], 3 * h, device=points.device)
    vis = torch.ones_like(t)
    for _ in range(steps):
        s = grid_lookup(sdf, points + t[..., None] * dirs)[:, 0].float()
        vis = torch.where(t < far, torch.minimum(vis, (8.0 * s / t).clamp(0.0, 1.0)), vis)
        t = t + s.clamp(h, 0.1)
    return vis


def render_views(shapes: dict[str, torch.Tensor], config: ViewConfig, gen: torch.Generator,
                 cameras: tuple[Cameras, torch.Tensor] | None = None, size: int | None = None) -> Views:
    """Clean renders of ``shapes`` (one per view, as `gather_shapes` gives them) from random
    (``size`` pixels) or given cameras."""
    sdf = shapes["sdf"]
    device, b = sdf.device, len(sdf)
    outline = shapes["surface"][:, :OUTLINE_POINTS] if "surface" in shapes else None
    cams, viewpoint = cameras if cameras is not None else random_cameras(b, config, gen, device, outline, size)
    size = cams.height
    origins, dirs = cams.generate_rays()
    origins, dirs = origins.reshape(b, -1, 3).float(), dirs.reshape(b, -1, 3).float()
    pixel_angle = 1.0 / cams.focal[:, 0].float()
    t, hit, coverage = trace(sdf, origins, dirs, config.trace_steps, pixel_angle)
    points = origins + t[..., None] * dirs
    _, grad = grid_sdf_and_gradient(sdf, points)
    normals = F.normalize(grad, dim=-1)
    normals = torch.where((normals * dirs).sum(-1, keepdim=True) > 0.3, -normals, normals)

    material = grid_lookup(shapes["materials"], points, mode="nearest")[:, 0].long()
    props = torch.gather(shapes["palette"], 1, material[..., None].expand(-1, -1, 5))
    base, rough, metal = props[..., :3], props[..., 3:4], props[..., 4:5]
    texture = grid_lookup((torch.rand(b, 1, 6, 6, 6, generator=gen, device=gen.device) * 2 - 1).to(device), points)[:, 0]
    plain = (torch.rand(b, generator=gen, device=gen.device) < config.plain_share).to(device)
    grey = _uniform(gen, b, 0.55, 0.95, device)[:, None] * (1.0 + 0.06 * (torch.rand(
        b, 3, generator=gen, device=gen.device).to(device) - 0.5))
    base = torch.where(plain[:, None, None], grey[:, None, :].expand_as(base), base)
    amp = _uniform(gen, b, 0.0, config.texture_amplitude, device)
    base = (base * (1.0 + amp[:, None, None] * texture[..., None])).clamp(0.0, 1.0)

    light = _random_light(cams, gen, device)
    lit = shade(srgb_to_linear(base), rough, metal, normals, -dirs, light,
                soft_shadow(sdf, points + normals * voxel(sdf.shape[-1]), light, config.shadow_steps), gen)
    colour = linear_to_srgb(lit)
    a = coverage[..., None]
    clean = torch.where(hit[..., None], colour, torch.ones_like(colour))
    clean = clean * a + (1.0 - a)
    return Views(
        cameras=cams, viewpoint=viewpoint, clean=clean.reshape(b, size, size, 3),
        alpha=coverage.reshape(b, size, size), depth=torch.where(hit, t, torch.zeros_like(t)).reshape(b, size, size),
        normals=torch.where(hit[..., None], normals, torch.zeros_like(normals)).reshape(b, size, size, 3),
    )


def _random_light(cams: Cameras, gen: torch.Generator, device) -> torch.Tensor:
    """Key light direction [B, 3] (towards the light): from the camera's side, above the horizon."""
    b = len(cams)
    centre = cams.centers.float()
    cam_az = torch.atan2(centre[:, 0], -centre[:, 1])
    az = cam_az + _uniform(gen, b, -2.2, 2.2, device)
    el = _uniform(gen, b, 0.25, 1.35, device)
    return torch.stack([torch.cos(el) * torch.sin(az), -torch.cos(el) * torch.cos(az), torch.sin(el)], dim=-1)


def shade(base: torch.Tensor, rough: torch.Tensor, metal: torch.Tensor, normals: torch.Tensor,
          to_eye: torch.Tensor, light: torch.Tensor, visibility: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Linear radiance [B, N, 3]: key light (Lambert + Blinn-Phong, shadowed) plus sky/ground ambient."""
    b, device = len(base), base.device
    key = _uniform(gen, b, 1.6, 3.2, device)[:, None, None]
    ambient = _uniform(gen, b, 0.15, 0.55, device)[:, None, None]
    sky_tint = 1.0 + (torch.rand(b, 1, 3, generator=gen, device=gen.device).to(device) - 0.5) * 0.25
    l = light[:, None, :]
    n_dot_l = (normals * l).sum(-1, keepdim=True).clamp_min(0.0)
    half = F.normalize(l + to_eye, dim=-1)
    n_dot_h = (normals * half).sum(-1, keepdim=True).clamp_min(0.0)
    shininess = 2.0 ** (1.0 + 9.0 * (1.0 - rough))
    spec_colour = 0.04 * (1.0 - metal) + base * metal
    specular = spec_colour * (shininess + 8.0) / (8.0 * math.pi) * n_dot_h ** shininess
    up = 0.5 + 0.5 * normals[..., 2:3]
    amb = ambient * sky_tint * (0.6 * up + 0.4)
    diffuse = base * (1.0 - metal) / math.pi
    vis = visibility[..., None]
    return amb * (base * (1.0 - 0.6 * metal) + 0.3 * metal * spec_colour) + key * vis * n_dot_l * (diffuse + specular)


# ---------------------------------------------------------------------------------- photos
def photograph(views: Views, config: ViewConfig, gen: torch.Generator, crop_size: int) -> Views:
    """Add ``photo``, ``seg_mask`` and ``crops`` to clean ``views`` (see the module doc)."""
    b, size = views.alpha.shape[:2]
    device = views.alpha.device
    background = random_backgrounds(b, size, config, gen, device)
    a = views.alpha[..., None]
    object_rgb = (views.clean - (1.0 - a)) / a.clamp_min(1e-4)  # undo the white composite
    photo = object_rgb * a + background * (1.0 - a)
    photo = degrade(photo.permute(0, 3, 1, 2), config, gen).permute(0, 2, 3, 1)
    seg = simulated_segmentation(views.alpha, round(config.mask_grow * size), round(config.mask_shrink * size), gen,
                                 config.mask_exact)
    views.photo, views.seg_mask = photo, seg
    views.crops = crop_over_white(photo, seg, crop_size)
    return views


def random_backgrounds(b: int, size: int, config: ViewConfig, gen: torch.Generator, device) -> torch.Tensor:
    """[B, H, W, 3] backgrounds, each one of `BACKGROUNDS`."""
    weights = torch.tensor(config.background_weights, dtype=torch.float, device=gen.device)
    kind = torch.multinomial(weights, b, replacement=True, generator=gen)
    c1 = torch.rand(b, 1, 1, 3, generator=gen, device=gen.device)
    c2 = torch.rand(b, 1, 1, 3, generator=gen, device=gen.device)
    axis = torch.linspace(-1, 1, size, device=gen.device)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    angle = torch.rand(b, generator=gen, device=gen.device) * 2 * math.pi
    ramp = (xx[None] * torch.cos(angle)[:, None, None] + yy[None] * torch.sin(angle)[:, None, None]) * 0.5 + 0.5
    gradient = c1 + (c2 - c1) * ramp[..., None]
    coarse = torch.rand(b, 3, 5, 5, generator=gen, device=gen.device)
    noise = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    noise = (0.6 * noise + 0.4 * c1 + 0.08 * torch.randn(b, size, size, 3, generator=gen, device=gen.device)).clamp(0, 1)
    clutter = gradient.clone()
    for _ in range(7):
        cx, cy = torch.rand(b, 1, 1, generator=gen, device=gen.device) * 2 - 1, torch.rand(b, 1, 1, generator=gen, device=gen.device) * 2 - 1
        rx, ry = torch.rand(b, 1, 1, generator=gen, device=gen.device) * 0.5 + 0.05, torch.rand(b, 1, 1, generator=gen, device=gen.device) * 0.5 + 0.05
        square = torch.rand(b, 1, 1, generator=gen, device=gen.device) < 0.5
        dx, dy = (xx[None] - cx) / rx, (yy[None] - cy) / ry
        inside = torch.where(square, torch.maximum(dx.abs(), dy.abs()) < 1, dx * dx + dy * dy < 1)
        clutter = torch.where(inside[..., None], torch.rand(b, 1, 1, 3, generator=gen, device=gen.device), clutter)
    white = torch.ones(b, size, size, 3, device=gen.device)
    plain = c1.expand(b, size, size, 3)
    stack = torch.stack([white, plain, gradient, noise, clutter])
    return stack[kind, torch.arange(b, device=gen.device)].to(device)


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur [B, C, H, W] with a per-image sigma [B] (pixels; 0 = unchanged)."""
    radius = 3
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    k = torch.exp(-0.5 * (x[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    k = k / k.sum(-1, keepdim=True)  # [B, K]
    b, c, h, w = images.shape
    flat = images.reshape(1, b * c, h, w)
    kx = k.repeat_interleave(c, 0)[:, None, None, :]
    ky = k.repeat_interleave(c, 0)[:, None, :, None]
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kx, groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), ky, groups=b * c)
    return flat.reshape(b, c, h, w)


def _dct_matrix(n: int, device, dtype) -> torch.Tensor:
    k = torch.arange(n, device=device, dtype=dtype)
    m = torch.cos(math.pi * (2 * k[None] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


def jpeg_like(images: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Quantise 8x8 block DCT coefficients of [B, 3, H, W] (H, W multiples of 8 after padding)
    with a per-image step [B] growing with frequency: the blocking and ringing of JPEG."""
    b, c, h, w = images.shape
    ph, pw = (-h) % 8, (-w) % 8
    x = F.pad(images, (0, pw, 0, ph), mode="replicate")
    hh, ww = x.shape[-2:]
    d = _dct_matrix(8, images.device, images.dtype)
    blocks = x.reshape(b, c, hh // 8, 8, ww // 8, 8).permute(0, 1, 2, 4, 3, 5)
    coef = d @ blocks @ d.T
    freq = torch.arange(8, device=images.device, dtype=images.dtype)
    q = step[:, None, None, None, None, None] * (1.0 + 0.5 * (freq[:, None] + freq[None, :]))
    coef = torch.round(coef / q) * q
    out = (d.T @ coef @ d).permute(0, 1, 2, 4, 3, 5).reshape(b, c, hh, ww)
    return out[..., :h, :w]


def degrade(images: torch.Tensor, config: ViewConfig, gen: torch.Generator) -> torch.Tensor:
    """Exposure, white balance, blur, resampling, noise and JPEG-like artefacts on [B, 3, H, W]."""
    b, _, h, w = images.shape
    device = images.device
    p = config.degrade
    exposure = 2.0 ** _uniform(gen, b, -0.35, 0.5, device)
    balance = 1.0 + (torch.rand(b, 3, generator=gen, device=gen.device).to(device) - 0.5) * 0.16
    x = linear_to_srgb(srgb_to_linear(images) * (exposure[:, None] * balance)[..., None, None])
    on = lambda: (torch.rand(b, generator=gen, device=gen.device) < p).to(device)  # noqa: E731
    sigma = torch.where(on(), _uniform(gen, b, 0.2, 1.3, device), torch.zeros(b, device=device))
    x = _gaussian_blur(x, sigma)
    if bool((torch.rand(1, generator=gen, device=gen.device) < 0.3).item()):
        small = F.interpolate(x, scale_factor=0.6, mode="bilinear", align_corners=False, antialias=True)
        x = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    noise = torch.where(on(), _uniform(gen, b, 0.005, 0.035, device), torch.zeros(b, device=device))
    x = x + noise[:, None, None, None] * torch.randn(x.shape, generator=gen, device=gen.device).to(device)
    step = torch.where(on(), _uniform(gen, b, 0.01, 0.05, device), torch.full((b,), 1e-4, device=device))
    return jpeg_like(x.clamp(0, 1), step).clamp(0.0, 1.0)


def simulated_segmentation(alpha: torch.Tensor, grow_px: int, shrink_px: int, gen: torch.Generator,
                           exact: float = 0.0) -> torch.Tensor:
    """[B, H, W] soft masks as a segmentation might return them: with chance ``exact`` the true
    mask, else grown by up to ``grow_px`` or shrunk by up to ``shrink_px`` pixels (each image its
    own amount); softened at the edge."""
    b = alpha.shape[0]
    hard = (alpha > 0.5).float()[:, None]
    shift = torch.randint(-shrink_px, grow_px + 1, (b,), generator=gen, device=gen.device)
    shift = torch.where(torch.rand(b, generator=gen, device=gen.device) < exact, 0, shift).to(alpha.device)
    grown, shrunk = [hard], [hard]
    for _ in range(grow_px):
        grown.append(F.max_pool2d(grown[-1], 3, 1, 1))
    for _ in range(shrink_px):
        shrunk.append(-F.max_pool2d(-shrunk[-1], 3, 1, 1))
    options = torch.stack(shrunk[::-1] + grown[1:])  # index e + shrink_px: grown by e pixels
    mask = options[shift + shrink_px, torch.arange(b, device=alpha.device)]
    empty = mask.flatten(1).sum(1) == 0  # never shrink a thin object away
    mask = torch.where(empty[:, None, None, None], hard, mask)
    return _gaussian_blur(mask, torch.full((b,), 0.6, device=alpha.device))[:, 0]


def crop_grid(mask: torch.Tensor, size: int, margin: float = CROP_MARGIN) -> tuple[torch.Tensor, torch.Tensor]:
    """Where `crop_over_white` samples each photo: ``(grid [B, size, size, 2]`` for `grid_sample`
    (align_corners=False), the crop's side in the photo's pixels ``[B]``)."""
    b, h, w = mask.shape
    solid = mask > 0.5
    rows, cols = solid.any(2), solid.any(1)
    idx_h = torch.arange(h, device=mask.device)
    idx_w = torch.arange(w, device=mask.device)
    big = torch.tensor(10**6, device=mask.device)
    y0 = torch.where(rows, idx_h, big).amin(1).float()
    y1 = torch.where(rows, idx_h, -big).amax(1).float() + 1
    x0 = torch.where(cols, idx_w, big).amin(1).float()
    x1 = torch.where(cols, idx_w, -big).amax(1).float() + 1
    side = torch.ceil(torch.maximum(y1 - y0, x1 - x0) * (1 + 2 * margin))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    # affine_grid maps output [-1, 1] to input [-1, 1] (align_corners=False: pixel edges)
    theta = torch.zeros(b, 2, 3, device=mask.device)
    theta[:, 0, 0] = side / w
    theta[:, 1, 1] = side / h
    theta[:, 0, 2] = 2 * cx / w - 1
    theta[:, 1, 2] = 2 * cy / h - 1
    return F.affine_grid(theta, [b, 1, size, size], align_corners=False), side


def crop_over_white(photo: torch.Tensor, mask: torch.Tensor, size: int, margin: float = CROP_MARGIN) -> torch.Tensor:
    """The encoder input of each photo [B, H, W, 3] with soft mask [B, H, W]: `object_crop`'s rule
    (square around the mask's box, ``margin`` each side, over white), resampled to ``size``."""
    grid, side = crop_grid(mask, size, margin)
    over_white = photo * mask[..., None] + (1.0 - mask[..., None])
    src = 1.0 - over_white.permute(0, 3, 1, 2)  # zero padding = white
    scale = (side / size).clamp_min(1.0)
    src = _gaussian_blur(src, (scale - 1.0) / 2.0)  # the anti-aliasing of skimage's resize
    return 1.0 - F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
