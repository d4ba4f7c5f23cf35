"""The main job, inside Blender: the extension reconstructs an example image and runs a text prompt.

Runs headless with the ``bpy`` module of the project environment:

    .venv/bin/python scripts/demo_blender.py [--image examples/mug.png] [--prompt "a wooden chair"]
                                            [--out out/blender] [--resolution 480] [--samples 16]

The extension is enabled the way Blender enables an installed one (as ``bl_ext.<repo>.stepstone``
from an extension repository pointing at this checkout). Its supervisor starts the embedded CPU
backend from the project environment; the script only presses the add-on's buttons (operators),
drives its timer, then saves ``demo.blend``, renders ``demo.png`` (Cycles, CPU) and writes
``summary.json`` into the output folder. A workflow the backend cannot run yet (no text-to-shape
model) is reported with the backend's own reason and the rest still completes. Exit code 0 when the
image reconstruction worked.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from blender_checkout import ROOT, addon_module, disable_extension, enable_checkout_extension


def pump(session_module, until, timeout_s: float) -> bool:
    """Run the add-on's timer (Blender's event loop does this in the UI) until ``until()``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        session_module.timer()
        if until():
            return True
        time.sleep(0.02)
    return False


def build_stage(bpy) -> None:
    """A floor, a sun and a soft world so the render reads well."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    floor = bpy.data.objects.new("Floor", bpy.data.meshes.new("Floor"))
    floor.data.from_pydata([(-6, -6, 0), (6, -6, 0), (6, 6, 0), (-6, 6, 0)], [], [(0, 1, 2, 3)])
    floor_material = bpy.data.materials.new("Floor")
    bsdf = next(n for n in floor_material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Base Color"].default_value = (0.55, 0.55, 0.58, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.9
    floor.data.materials.append(floor_material)
    scene.collection.objects.link(floor)
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(50), math.radians(10), math.radians(30))
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("World")
    scene.world = world
    background = world.node_tree.nodes.get("Background")
    background.inputs["Color"].default_value = (0.8, 0.85, 0.9, 1.0)
    background.inputs["Strength"].default_value = 0.8


def frame_camera(bpy, objects, resolution: int, samples: int) -> None:
    from mathutils import Vector

    scene = bpy.context.scene
    points = [o.matrix_world @ Vector(c) for o in objects for c in o.bound_box] or [Vector((0, 0, 0))]
    lo = Vector(tuple(min(p[i] for p in points) for i in range(3)))
    hi = Vector(tuple(max(p[i] for p in points) for i in range(3)))
    centre, radius = (lo + hi) / 2, max((hi - lo).length / 2, 0.5)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.lens = 50
    direction = Vector((0.35, -1.0, 0.45)).normalized()  # in front (−Y), a little to the side, from above
    camera.location = centre + direction * radius * 3.4
    camera.rotation_euler = (centre - camera.location).to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x = resolution
    scene.render.resolution_y = int(resolution * 0.75)
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"


def run_job(bpy, session_module, operator, timeout_s: float, **kwargs):
    session = session_module.get_session()
    before = set(session.tracker.jobs)
    try:
        operator(**kwargs)
    except RuntimeError as exc:  # an operator's error report
        return None, str(exc)
    jobs = [j for j in session.tracker.jobs.values() if j.id not in before]
    if not pump(session_module, lambda: all(j.final or j.state.value == "held" for j in jobs), timeout_s):
        return jobs[0] if jobs else None, f"no result within {timeout_s:g} s ({session.status().text})"
    return jobs[0], None


def describe(job, error) -> dict:
    if job is None:
        return {"ok": False, "error": error}
    info = {"ok": job.state.value == "done", "state": job.state.value, "label": job.label}
    if job.state.value == "done":
        import bpy

        obj = bpy.data.objects[job.target["object"]]
        info.update(object=obj.name, vertices=len(obj.data.vertices), triangles=len(obj.data.polygons),
                    method=obj.get("stepstone_method"), timings=dict(obj.get("stepstone_timings", {})),
                    import_s=obj.get("stepstone_import_s"))
    else:
        info.update(code=job.error_code, error=job.error_message or error)
    return info


def report(what: str, info: dict) -> None:
    """One readable line (the full record goes to summary.json)."""
    if info.get("ok"):
        print(f"  → {info['object']}: {info['triangles']} triangles, method: {info['method']}, "
              f"{info['timings'].get('run_s', 0):.1f} s in the backend, import {info['import_s'] * 1000:.0f} ms",
              flush=True)
    else:
        print(f"  → {what} did not run ({info.get('code') or info.get('state', 'no result')}): {info.get('error')}",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(ROOT / "examples" / "mug.png"))
    parser.add_argument("--prompt", default="a wooden chair")
    parser.add_argument("--out", default=str(ROOT / "out" / "blender"))
    parser.add_argument("--quality", default="default", choices=["preview", "default", "high"])
    parser.add_argument("--resolution", type=int, default=480, help="render width in pixels")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per job")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    import bpy

    package = enable_checkout_extension("stepstone_demo")
    session_module = addon_module(package, "blender.session")
    build_stage(bpy)
    prefs = bpy.context.preferences.addons[package].preferences
    prefs.backend_mode, prefs.device, prefs.quality, prefs.target_size = "LOCAL", "cpu", args.quality, 1.0
    session = session_module.get_session()
    settings = bpy.context.scene.stepstone
    print(f"Stepstone demo: backend {session.status().text}", flush=True)

    bpy.context.scene.cursor.location = (-0.75, 0.0, 0.0)
    image = bpy.data.images.load(str(Path(args.image).resolve()))
    reference = bpy.data.objects.new(f"Reference {image.name}", None)
    reference.empty_display_type, reference.data = "IMAGE", image
    reference.location, reference.rotation_euler = (-0.75, 1.5, 1.0), (math.radians(90), 0, 0)
    bpy.context.scene.collection.objects.link(reference)
    reference.select_set(True)
    print(f"reconstructing {args.image} …", flush=True)
    recon_job, recon_error = run_job(bpy, session_module, bpy.ops.stepstone.reconstruct_selected, args.timeout)
    reconstruct = describe(recon_job, recon_error)
    report("reconstruction", reconstruct)

    bpy.context.scene.cursor.location = (0.75, 0.0, 0.0)
    settings.prompt, settings.seed = args.prompt, 0
    print(f"text to shape: {args.prompt!r} …", flush=True)
    text_job, text_error = run_job(bpy, session_module, bpy.ops.stepstone.text_to_shape, args.timeout)
    text = describe(text_job, text_error)
    report("text to shape", text)

    backend_status = session.status().text  # before the render blocks the timer
    results = [o for o in bpy.context.scene.objects if o.get("stepstone_job")]
    frame_camera(bpy, results, args.resolution, args.samples)
    blend, png = out / "demo.blend", out / "demo.png"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=True)
    bpy.context.scene.render.filepath = str(png)
    render_started = time.monotonic()
    bpy.ops.render.render(write_still=True)
    summary = {
        "blend": str(blend), "render": str(png), "render_s": round(time.monotonic() - render_started, 2),
        "reconstruct": reconstruct, "text_to_shape": text, "backend": backend_status,
        "torch_imported_in_blender": "torch" in sys.modules, "total_s": round(time.monotonic() - started, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    disable_extension(package)  # stops the backend it started
    print(f"saved {blend}\nrendered {png}\nsummary {out / 'summary.json'}", flush=True)
    return 0 if reconstruct["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
