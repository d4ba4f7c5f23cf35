"""Blender (bpy, Cycles CPU) side of the dataset renderer. Import bpy only inside functions.

One call renders all views of one mesh: RGBA (transparent film, so alpha is the mask), world-
space normals and z-depth from the view layer's Normal and Depth passes, read back from a
multilayer EXR. Run it in a worker process: bpy is heavy and keeps global state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .exr import read_exr


@dataclass(frozen=True)
class RenderConfig:
    """Cycles settings for dataset renders."""

    samples: int = 16
    """Path-tracing samples per pixel (no denoising)."""
    threads: int = 0
    """CPU threads for Cycles; 0 lets Blender use all cores."""
    filter_width: float = 1.5
    """Pixel filter width in pixels (anti-aliasing; depth comes from one sample per pixel)."""
    max_bounces: int = 4
    """Total light bounces."""
    material_jitter: float = 0.12
    """Random +- offset applied to each material's roughness and metallic per shape."""


class RenderError(RuntimeError):
    """Blender failed to produce the expected render passes."""


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)


def straight_srgb(rgba: np.ndarray) -> np.ndarray:
    """Blender's Combined pass (premultiplied, scene-linear) [H,W,4] -> straight-alpha sRGB
    [H,W,4] in 0..1 (the 'Standard' view transform), as an ordinary PNG holds it."""
    alpha = np.clip(rgba[..., 3], 0.0, 1.0)
    straight = np.where(alpha[..., None] > 1e-6, rgba[..., :3] / np.maximum(alpha[..., None], 1e-6), 0.0)
    return np.concatenate([linear_to_srgb(straight), alpha[..., None]], axis=-1)


def add_camera_and_sun(scene):
    """A camera (the scene's) and a sun lamp, linked into ``scene`` -> (camera, sun, sun data)."""
    import bpy

    cam = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    sun_data = bpy.data.lights.new("sun", "SUN")
    sun = bpy.data.objects.new("sun", sun_data)
    scene.collection.objects.link(sun)
    return cam, sun, sun_data


def cycles_scene(resolution: int, samples: int, threads: int):
    """A fresh, empty Blender scene rendered by Cycles on the CPU into a 32-bit multilayer EXR
    (the passes are read back with `read_exr`), with a world of its own -> (scene, world)."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.render.resolution_x = scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    if threads > 0:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = threads
    st = scene.render.image_settings
    st.media_type = "MULTI_LAYER_IMAGE"
    st.file_format = "OPEN_EXR_MULTILAYER"
    st.color_depth = "32"
    st.exr_codec = "ZIP"
    world = bpy.data.worlds.new("world")
    scene.world = world
    return scene, world


def _setup_scene(resolution: int, cfg: RenderConfig):
    scene, world = cycles_scene(resolution, cfg.samples, cfg.threads)
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.max_bounces = cfg.max_bounces
    scene.cycles.filter_width = cfg.filter_width
    scene.render.film_transparent = True
    layer = scene.view_layers[0]
    layer.use_pass_normal = True
    layer.use_pass_z = True
    return scene, world


def _build_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_material: np.ndarray,
    materials: list[dict],
    rng: np.random.Generator,
    jitter: float,
):
    import bpy

    mesh = bpy.data.meshes.new("shape")
    nv, nf = len(vertices), len(faces)
    mesh.vertices.add(nv)
    mesh.vertices.foreach_set("co", np.ascontiguousarray(vertices, dtype=np.float32).ravel())
    mesh.loops.add(3 * nf)
    mesh.loops.foreach_set("vertex_index", np.ascontiguousarray(faces, dtype=np.int32).ravel())
    mesh.polygons.add(nf)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * nf, 3, dtype=np.int32))
    mesh.polygons.foreach_set("material_index", np.ascontiguousarray(face_material, dtype=np.int32))
    mesh.update()
    if mesh.validate():
        raise RenderError("Blender had to repair the mesh: the input faces are invalid")
    mesh.shade_smooth()
    used = []
    for i, m in enumerate(materials):
        mat = bpy.data.materials.new(f"part{i}")
        bsdf = mat.node_tree.nodes["Principled BSDF"]
        bsdf.inputs["Base Color"].default_value = (*srgb_to_linear(m["base_color"]).tolist(), 1.0)
        rough = float(np.clip(m["roughness"] + rng.uniform(-jitter, jitter), 0.02, 1.0))
        metal = float(np.clip(m["metallic"] + rng.uniform(-jitter, jitter), 0.0, 1.0))
        bsdf.inputs["Roughness"].default_value = rough
        bsdf.inputs["Metallic"].default_value = metal
        mesh.materials.append(mat)
        used.append({"roughness": rough, "metallic": metal})
    obj = bpy.data.objects.new("shape", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return used


def render_views(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_material: np.ndarray,
    materials: list[dict],
    views: list[dict],
    resolution: int,
    out_dir: str | Path,
    cfg: RenderConfig = RenderConfig(),
    seed: int = 0,
) -> dict:
    """Render every view; write ``rgba_XXXX.png`` per view and ``normal.npz``/``depth.npz`` into out_dir.

    vertices float[V,3], faces int[F,3], face_material int[F] (index into materials), materials:
    dicts with base_color (sRGB), roughness, metallic; views: dicts from cameras.sample_views.
    Returns the per-shape material values actually used (after jitter).
    """
    import bpy
    from mathutils import Matrix
    from PIL import Image

    from .cameras import look_at_blender

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scene, world = _setup_scene(resolution, cfg)
    used = _build_mesh(vertices, faces, face_material, materials, rng, cfg.material_jitter)
    cam, sun, sun_data = add_camera_and_sun(scene)
    bg = world.node_tree.nodes["Background"]
    n = len(views)
    depth = np.zeros((n, resolution, resolution), dtype=np.float32)
    normal = np.zeros((n, resolution, resolution, 3), dtype=np.float16)
    exr_path = out / ".pass.exr"
    for k, v in enumerate(views):
        fov = 2 * np.arctan(0.5 * resolution / v["K"][0][0])
        cam.data.lens_unit = "FOV"
        cam.data.sensor_fit = "HORIZONTAL"
        cam.data.angle = float(fov)
        cam.matrix_world = Matrix(v["cam_to_world_blender"])
        light = v["light"]
        sun.matrix_world = Matrix(look_at_blender(np.asarray(light["sun_direction"]) * 10.0).tolist())
        sun_data.energy = light["sun_strength"]
        sun_data.angle = np.deg2rad(light["sun_angle_deg"])
        sun_data.color = light["sun_color"]
        bg.inputs["Color"].default_value = (*light["world_color"], 1.0)
        bg.inputs["Strength"].default_value = light["world_strength"]
        scene.cycles.seed = int(seed * 1000 + k) % (2**31)
        bpy.ops.render.render(write_still=False)
        bpy.data.images["Render Result"].save_render(str(exr_path), scene=scene)
        passes = read_exr(exr_path)
        try:
            rgba = np.stack([passes[f"ViewLayer.Combined.{c}"] for c in "RGBA"], axis=-1)
            z = passes["ViewLayer.Depth.Z"]
            nrm = np.stack([passes[f"ViewLayer.Normal.{c}"] for c in "XYZ"], axis=-1)
        except KeyError as e:
            raise RenderError(f"render pass {e} missing; got {sorted(passes)}") from None
        png = straight_srgb(rgba)
        Image.fromarray(np.round(png * 255).astype(np.uint8), "RGBA").save(out / f"rgba_{k:04d}.png")
        hit = z < 1e9
        depth[k] = np.where(hit, z, 0.0)
        norm = np.linalg.norm(nrm, axis=-1, keepdims=True)
        normal[k] = np.where((norm > 1e-6) & hit[..., None], nrm / np.maximum(norm, 1e-6), 0.0)
    exr_path.unlink(missing_ok=True)
    np.savez_compressed(out / "depth.npz", depth=depth)
    np.savez_compressed(out / "normal.npz", normal=normal)
    return {"materials": used}


def quiet_stdout() -> None:
    """Send this process's C-level stdout to /dev/null (Cycles prints progress lines there)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
