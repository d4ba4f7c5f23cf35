"""Photo-like Blender renders of a third-party mesh, for the real-object benchmark split.

Unlike the training renders (`render_blender`), these are meant to look like an artist's
reference photos: the object keeps its own textures and materials (imported from glTF), the
focal length, elevation and lighting vary per view, and some objects stand on a floor in front
of a plain or textured backdrop with no alpha, so finding the object is part of the test.
Each view also gets the object's true mask (the object-index pass), for scoring and for the
camera-fidelity checks; the pipeline never sees it for views without alpha.

Run it in a worker process (bpy keeps global state). Import bpy only inside functions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .cameras import blender_to_world_to_cam, look_at_blender, spherical
from .exr import read_exr
from .render_blender import add_camera_and_sun, cycles_scene, linear_to_srgb, straight_srgb

BACKGROUNDS = ("alpha", "plain", "textured")
"""``alpha``: transparent film (the PNG's alpha is the object); ``plain``: a uniform studio colour
behind the object; ``textured``: the object on a patterned floor in front of a gradient sky."""


@dataclass(frozen=True)
class PhotoView:
    """One camera and light set-up; angles in degrees, the object centred with longest side 1."""

    azimuth: float
    """0 looks from -Y at the object's front (Blender's front view), 90 from +X."""
    elevation: float
    fov: float
    """Horizontal = vertical field of view (square images)."""
    distance: float
    sun_azimuth: float
    sun_elevation: float
    sun_strength: float
    world_strength: float
    world_color: tuple[float, float, float]
    background: str
    backdrop_color: tuple[float, float, float] = (0.8, 0.8, 0.8)
    """sRGB colour of the plain backdrop or the floor pattern's first colour."""
    floor_color: tuple[float, float, float] = (0.4, 0.35, 0.3)
    """sRGB colour of the floor pattern's second colour."""


@dataclass(frozen=True)
class PhotoConfig:
    resolution: int = 384
    samples: int = 24
    threads: int = 0
    """Cycles threads (0: all cores)."""
    denoise: bool = True


def sample_views(rng: np.random.Generator, count: int, background: str) -> list[PhotoView]:
    """``count`` views spread in azimuth and elevation (low, middle, high), varied lenses and light."""
    start = rng.uniform(0, 360)
    elevations = np.linspace(5, 40, count) + rng.uniform(-4, 4, count)
    views = []
    for k in range(count):
        fov = float(rng.uniform(18, 50))  # ~40 mm to ~110 mm on a full-frame camera
        # the object's bounding sphere (radius <= 0.87) fills 70-90 % of the frame
        fill = rng.uniform(0.7, 0.9)
        radius = 0.6
        distance = radius / math.sin(math.radians(fov) / 2) / fill
        tint = rng.uniform(0.85, 1.0, 3)
        views.append(PhotoView(
            azimuth=float((start + k * 360 / count + rng.uniform(-30, 30)) % 360),
            elevation=float(elevations[k]), fov=fov, distance=float(distance),
            sun_azimuth=float(rng.uniform(0, 360)), sun_elevation=float(rng.uniform(25, 75)),
            sun_strength=float(rng.uniform(2.0, 5.0)), world_strength=float(rng.uniform(0.3, 0.9)),
            world_color=tuple(float(c) for c in tint / tint.max()),
            background=background,
            backdrop_color=tuple(float(c) for c in rng.uniform(0.15, 0.95, 3)),
            floor_color=tuple(float(c) for c in rng.uniform(0.1, 0.8, 3)),
        ))
    return views


def render_object(mesh_glb: str | Path, views: list[PhotoView], out_dir: str | Path,
                  cfg: PhotoConfig = PhotoConfig(), seed: int = 0) -> dict:
    """Render every view of the glTF object; write ``view_K.png`` (RGBA for ``alpha`` views, RGB
    otherwise), ``mask_K.png`` and ``reference.npz`` (the triangles as rendered: Z up, centred,
    longest side 1) into ``out_dir``. Returns the per-view camera records."""
    import bpy
    from mathutils import Matrix
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scene = _setup_scene(cfg)
    objects = _import_object(mesh_glb)
    vertices, faces = _triangles(objects)
    lo, hi = vertices.min(0), vertices.max(0)
    scene_offset = -(lo + hi) / 2
    scale = 1.0 / float((hi - lo).max())
    normalise = Matrix.Diagonal((scale, scale, scale, 1.0)) @ Matrix.Translation(scene_offset.tolist())
    for obj in objects:
        if obj.parent is None:
            obj.matrix_world = normalise @ obj.matrix_world
    vertices = (vertices + scene_offset) * scale
    np.savez_compressed(out / "reference.npz", vertices=vertices.astype(np.float32), faces=faces.astype(np.int32))
    floor_z = float(vertices[:, 2].min())

    cam, sun, sun_data = add_camera_and_sun(scene)
    records = []
    exr_path = out / ".pass.exr"
    for k, view in enumerate(views):
        backdrop = _set_background(scene, view, floor_z)
        cam.data.lens_unit = "FOV"
        cam.data.sensor_fit = "HORIZONTAL"
        cam.data.angle = math.radians(view.fov)
        eye = spherical(view.azimuth, view.elevation, view.distance)
        cam_to_world = look_at_blender(eye)
        cam.matrix_world = Matrix(cam_to_world.tolist())
        sun.matrix_world = Matrix(look_at_blender(spherical(view.sun_azimuth, view.sun_elevation, 10.0)).tolist())
        sun_data.energy = view.sun_strength
        sun_data.angle = math.radians(3.0)
        scene.cycles.seed = int(seed * 1000 + k) % (2 ** 31)
        bpy.ops.render.render(write_still=False)
        bpy.data.images["Render Result"].save_render(str(exr_path), scene=scene)
        passes = read_exr(exr_path)
        rgba = np.stack([passes[f"ViewLayer.Combined.{c}"] for c in "RGBA"], axis=-1)
        mask = np.abs(passes["ViewLayer.Object Index.X"] - 1.0) < 0.5
        if view.background == "alpha":
            pixels = straight_srgb(rgba)
            Image.fromarray(np.round(pixels * 255).astype(np.uint8), "RGBA").save(out / f"view_{k}.png")
        else:
            pixels = linear_to_srgb(rgba[..., :3])
            Image.fromarray(np.round(pixels * 255).astype(np.uint8), "RGB").save(out / f"view_{k}.png")
        Image.fromarray((mask * 255).astype(np.uint8), "L").save(out / f"mask_{k}.png")
        for item in backdrop:
            bpy.data.objects.remove(item, do_unlink=True)
        records.append({"index": k, "image": f"view_{k}.png", "mask": f"mask_{k}.png", **asdict(view),
                        "world_to_cam": blender_to_world_to_cam(cam_to_world).tolist()})
    exr_path.unlink(missing_ok=True)
    return {"views": records, "vertices": int(len(vertices)), "faces": int(len(faces))}


def _setup_scene(cfg: PhotoConfig):
    scene, _ = cycles_scene(cfg.resolution, cfg.samples, cfg.threads)
    scene.cycles.use_denoising = cfg.denoise
    scene.cycles.max_bounces = 6
    scene.view_settings.view_transform = "Standard"
    scene.view_layers[0].use_pass_object_index = True
    return scene


def _import_object(path: str | Path) -> list:
    import bpy

    before = set(bpy.data.objects)
    bpy.ops.import_scene.gltf(filepath=str(path))
    objects = [o for o in bpy.data.objects if o not in before]
    meshes = [o for o in objects if o.type == "MESH"]
    if not meshes:
        raise ValueError(f"{path}: no mesh object in the file")
    for o in meshes:
        o.pass_index = 1
    return objects


def _triangles(objects) -> tuple[np.ndarray, np.ndarray]:
    """World-space triangles of every mesh object (Blender's evaluated geometry)."""
    import bpy

    depsgraph = bpy.context.evaluated_depsgraph_get()
    all_v, all_f, offset = [], [], 0
    for obj in objects:
        if obj.type != "MESH":
            continue
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        mesh.calc_loop_triangles()
        co = np.empty(3 * len(mesh.vertices), dtype=np.float64)
        mesh.vertices.foreach_get("co", co)
        tris = np.empty(3 * len(mesh.loop_triangles), dtype=np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
        matrix = np.array(obj.matrix_world)
        co = co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
        all_v.append(co)
        all_f.append(tris.reshape(-1, 3) + offset)
        offset += len(co)
        evaluated.to_mesh_clear()
    return np.concatenate(all_v), np.concatenate(all_f)


def _set_background(scene, view: PhotoView, floor_z: float) -> list:
    """World light and, for backgrounds without alpha, what the camera sees behind the object.
    Returns the objects to remove after the view."""
    import bpy

    from .render_blender import srgb_to_linear

    scene.render.film_transparent = view.background == "alpha"
    world = scene.world
    world.use_nodes = True
    nodes, links = world.node_tree.nodes, world.node_tree.links
    for node in list(nodes):
        if node.type not in ("BACKGROUND", "OUTPUT_WORLD"):
            nodes.remove(node)
    background = nodes["Background"]
    background.inputs["Color"].default_value = (*view.world_color, 1.0)
    background.inputs["Strength"].default_value = view.world_strength
    if view.background != "alpha":
        # what the camera sees behind the object is a backdrop; what lights it stays the neutral
        # world, so a coloured backdrop does not tint the object as a coloured sky would
        seen = nodes.new("ShaderNodeBackground")
        seen.inputs["Strength"].default_value = 1.0
        seen.inputs["Color"].default_value = (*srgb_to_linear(view.backdrop_color).tolist(), 1.0)
        if view.background == "textured":  # a sky gradient: the backdrop colour at the horizon
            coord = nodes.new("ShaderNodeTexCoord")
            split = nodes.new("ShaderNodeSeparateXYZ")
            ramp = nodes.new("ShaderNodeValToRGB")
            links.new(coord.outputs["Generated"], split.inputs[0])
            links.new(split.outputs["Z"], ramp.inputs["Fac"])
            ramp.color_ramp.elements[0].color = (*srgb_to_linear(view.backdrop_color).tolist(), 1.0)
            ramp.color_ramp.elements[1].color = (*view.world_color, 1.0)
            links.new(ramp.outputs["Color"], seen.inputs["Color"])
        path = nodes.new("ShaderNodeLightPath")
        mix = nodes.new("ShaderNodeMixShader")
        links.new(path.outputs["Is Camera Ray"], mix.inputs["Fac"])
        links.new(background.outputs["Background"], mix.inputs[1])
        links.new(seen.outputs["Background"], mix.inputs[2])
        links.new(mix.outputs["Shader"], nodes["World Output"].inputs["Surface"])
    if view.background != "textured":
        return []
    bpy.ops.mesh.primitive_plane_add(size=40.0, location=(0.0, 0.0, floor_z - 1e-3))
    floor = bpy.context.active_object
    floor.pass_index = 0
    material = bpy.data.materials.new("floor")
    tree = material.node_tree
    bsdf = tree.nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = 0.6
    noise = tree.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 40.0
    noise.inputs["Detail"].default_value = 8.0
    checker = tree.nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 60.0
    checker.inputs["Color1"].default_value = (*srgb_to_linear(view.backdrop_color).tolist(), 1.0)
    checker.inputs["Color2"].default_value = (*srgb_to_linear(view.floor_color).tolist(), 1.0)
    mix = tree.nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    mix.inputs["Factor"].default_value = 0.35
    tree.links.new(checker.outputs["Color"], mix.inputs[6])
    tree.links.new(noise.outputs["Color"], mix.inputs[7])
    tree.links.new(mix.outputs[2], bsdf.inputs["Base Color"])
    floor.data.materials.append(material)
    return [floor]


@dataclass(frozen=True)
class ResultCamera:
    """A camera looking at ``target`` from (azimuth, elevation, distance), degrees and object units;
    ``principal_offset`` as in `backend.geometry.fidelity` (where the camera's axis meets the
    image, in fractions of its side from the centre, x right and y down)."""

    azimuth: float
    elevation: float
    fov: float
    distance: float
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    principal_offset: tuple[float, float] = (0.0, 0.0)


def render_result(mesh_glb: str | Path, cameras: list[ResultCamera], resolution: int = 256,
                  samples: int = 12) -> list[np.ndarray]:
    """Neutral studio renders of a reconstruction (as written by the backend, in its own frame:
    no re-centring) from each camera -> RGBA float images [R,R,4] (straight alpha, sRGB)."""
    import bpy
    from mathutils import Matrix

    scene = _setup_scene(PhotoConfig(resolution=resolution, samples=samples))
    scene.render.film_transparent = True
    scene.world.use_nodes = True
    background = scene.world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    background.inputs["Strength"].default_value = 0.6
    _import_object(mesh_glb)
    cam, sun, sun_data = add_camera_and_sun(scene)
    sun_data.energy = 3.0
    images = []
    exr_path = Path(bpy.app.tempdir or "/tmp") / f"stepstone_review_{id(images)}.exr"
    for camera in cameras:
        target = np.asarray(camera.target, dtype=np.float64)
        eye = target + spherical(camera.azimuth, camera.elevation, camera.distance)
        cam.data.lens_unit = "FOV"
        cam.data.sensor_fit = "HORIZONTAL"
        cam.data.angle = math.radians(camera.fov)
        # Blender shifts the image window, which is the opposite of moving the axis's point in it
        cam.data.shift_x, cam.data.shift_y = -camera.principal_offset[0], camera.principal_offset[1]
        cam.data.clip_end = max(100.0, 2.0 * camera.distance)  # the outline solids' long lenses stand far off
        cam.matrix_world = Matrix(look_at_blender(eye, target).tolist())
        # key light over the camera's left shoulder, so the visible side is lit
        sun.matrix_world = Matrix(look_at_blender(spherical(camera.azimuth - 40, 50, 10.0)).tolist())
        bpy.ops.render.render(write_still=False)
        bpy.data.images["Render Result"].save_render(str(exr_path), scene=scene)
        passes = read_exr(exr_path)
        rgba = np.stack([passes[f"ViewLayer.Combined.{c}"] for c in "RGBA"], axis=-1)
        images.append(straight_srgb(rgba))
    exr_path.unlink(missing_ok=True)
    return images
