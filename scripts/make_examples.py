"""Render the example images shipped in examples/ with Blender (bpy), reproducibly.

    .venv/bin/python scripts/make_examples.py

mug.png: a glazed mug with a handle, transparent background (RGBA).
vase_on_grey.jpg: a terracotta vase on a plain grey studio backdrop, no alpha (exercises automatic segmentation).
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy

OUT = Path(__file__).resolve().parent.parent / "examples"


def reset() -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 32
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = 384
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    scene.world = world
    return scene


def material(name: str, rgb: tuple[float, float, float], roughness: float = 0.35) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    return mat


def camera_and_light(scene: bpy.types.Scene, distance: float, height: float) -> None:
    cam_data = bpy.data.cameras.new("camera")
    cam_data.lens = 50
    cam = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(cam)
    cam.location = (0.0, -distance, height)
    cam.rotation_euler = (math.radians(80), 0.0, 0.0)  # looking along +Y, slightly down
    scene.camera = cam
    sun_data = bpy.data.lights.new("sun", "SUN")
    sun_data.energy = 3.0
    sun_data.angle = math.radians(40)  # soft shadows, like a studio product shot
    sun = bpy.data.objects.new("sun", sun_data)
    sun.rotation_euler = (math.radians(40), math.radians(-25), math.radians(-30))
    scene.collection.objects.link(sun)


def mug(scene: bpy.types.Scene) -> None:
    bpy.ops.mesh.primitive_cylinder_add(vertices=64, radius=0.4, depth=0.9, location=(0, 0, 0.45))
    body = bpy.context.object
    bpy.ops.mesh.primitive_cylinder_add(vertices=64, radius=0.34, depth=0.9, location=(0, 0, 0.55))
    hole = bpy.context.object
    cut = body.modifiers.new("hollow", "BOOLEAN")
    cut.operation, cut.object = "DIFFERENCE", hole
    bpy.context.view_layer.objects.active = body
    bpy.ops.object.modifier_apply(modifier="hollow")
    bpy.data.objects.remove(hole)
    bpy.ops.mesh.primitive_torus_add(major_radius=0.22, minor_radius=0.06, location=(0.44, 0, 0.45),
                                     rotation=(math.radians(90), 0, 0))
    handle = bpy.context.object
    for obj in (body, handle):
        obj.data.materials.append(material("glaze", (0.05, 0.25, 0.6)))
        bpy.ops.object.select_all(action="DESELECT")
        obj.select_set(True)
        bpy.context.view_layer.objects.active = obj
        bpy.ops.object.shade_smooth()


def vase(scene: bpy.types.Scene) -> None:
    profile = [(0.0, 0.0), (0.25, 0.0), (0.35, 0.25), (0.3, 0.6), (0.15, 0.85), (0.17, 1.0), (0.0, 1.0)]
    verts, faces, n = [], [], 64
    for k in range(n):
        a = 2 * math.pi * k / n
        verts += [(r * math.cos(a), r * math.sin(a), z) for r, z in profile]
    m = len(profile)
    for k in range(n):
        for j in range(m - 1):
            a0, a1 = k * m + j, ((k + 1) % n) * m + j
            faces.append((a0, a1, a1 + 1, a0 + 1))
    mesh = bpy.data.meshes.new("vase")
    mesh.from_pydata(verts, [], faces)
    mesh.update()
    obj = bpy.data.objects.new("vase", mesh)
    scene.collection.objects.link(obj)
    obj.data.materials.append(material("terracotta", (0.7, 0.3, 0.12), 0.6))
    for poly in mesh.polygons:
        poly.use_smooth = True
    bpy.ops.mesh.primitive_plane_add(size=12, location=(0, 3, 0))
    backdrop = bpy.context.object
    backdrop.rotation_euler.x = math.radians(90)
    backdrop.data.materials.append(material("backdrop", (0.5, 0.5, 0.5), 0.9))
    bpy.ops.mesh.primitive_plane_add(size=12, location=(0, 0, 0))
    bpy.context.object.data.materials.append(material("floor", (0.5, 0.5, 0.5), 0.9))


def main() -> None:
    OUT.mkdir(exist_ok=True)
    scene = reset()
    mug(scene)
    camera_and_light(scene, 3.2, 1.0)
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.filepath = str(OUT / "mug.png")
    bpy.ops.render.render(write_still=True)

    scene = reset()
    vase(scene)
    camera_and_light(scene, 3.0, 1.0)
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "JPEG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.filepath = str(OUT / "vase_on_grey.jpg")
    bpy.ops.render.render(write_still=True)


if __name__ == "__main__":
    main()
