#!/usr/bin/env python
"""Review sheets: what reconstruction makes of each example and of a sample of the real split.

    scripts/review_reconstruct                       # examples + 4 real-split objects -> out/review/
    scripts/review_reconstruct --real 8 --method silhouette --quality preview
    scripts/review_reconstruct --images photo.jpg other.png

One PNG per case: the input photo | the result from the fitted camera (the camera the result's
metadata reports; the front view lifted 15 degrees when it reports none) | the result from three
other sides (its right, its back, and its left from above). Results are rendered by Blender (Cycles) from the
.glb the backend wrote, so the sheet shows what an artist would import. Look at every sheet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.protocol import RECONSTRUCT_METHODS  # noqa: E402

EXAMPLES = ("mug.png", "vase_on_grey.jpg")
PANEL = 256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", nargs="*", default=None, help="review these photos instead of the examples")
    parser.add_argument("--real", type=int, default=4, help="objects sampled from the real split (view 0 each)")
    parser.add_argument("--real-data", default=str(ROOT / "data_cache" / "real_split"))
    parser.add_argument("--method", default="auto", choices=RECONSTRUCT_METHODS)
    parser.add_argument("--quality", default="default", choices=("preview", "default", "high"))
    parser.add_argument("--out", default=str(ROOT / "out" / "review"))
    args = parser.parse_args(argv)
    cases = review_cases(args)
    if not cases:
        parser.error("nothing to review: no images given, no examples, no real split")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline()
    for name, image_path in cases:
        t0 = time.perf_counter()
        glb, metadata = reconstruct(pipeline, image_path, args, out / f"{name}.glb")
        seconds = time.perf_counter() - t0
        sheet = compose_sheet(image_path, glb, metadata, f"{name}: {metadata.get('method', '?')}, {seconds:.1f} s")
        sheet.save(out / f"{name}.png")
        print(f"{out / (name + '.png')}  ({metadata.get('method')}, {seconds:.1f} s"
              + (f"; warnings: {'; '.join(metadata['warnings'])}" if metadata.get("warnings") else "") + ")", flush=True)
    return 0


def review_cases(args) -> list[tuple[str, Path]]:
    if args.images is not None and args.images:
        paths = [Path(p) for p in args.images]
        stems = [p.stem for p in paths]
        # photos of one name from several folders (view_0.png, ...) each get their own sheet
        return [(f"{p.parent.name}_{p.stem}" if stems.count(p.stem) > 1 else p.stem, p) for p in paths]
    cases = [(Path(e).stem, ROOT / "examples" / e) for e in EXAMPLES]
    records = sorted(Path(args.real_data).glob("*/views.json"))
    if records and args.real > 0:
        # an even spread over the split, so alpha and backdrop photos both appear
        for index in np.linspace(0, len(records) - 1, min(args.real, len(records))).round().astype(int):
            record = json.loads(records[index].read_text())
            cases.append((f"real_{record['name']}", records[index].parent / record["views"][0]["image"]))
    return cases


def build_pipeline():
    from backend.pipelines.registry import default_registry

    return default_registry().create("reconstruct", "cpu")


def reconstruct(pipeline, image_path: Path, args, glb_path: Path) -> tuple[Path, dict]:
    from backend.config import ServiceLimits
    from backend.geometry.mesh_files import export_mesh
    from backend.images import decode_image
    from backend.pipelines.base import JobContext
    from backend.requests import CommonParams, ReconstructRequest

    ctx = JobContext("review", "cpu", emit_progress=lambda *a: None, emit_preview_mesh=lambda *a: None,
                     emit_preview_points=lambda *a: None, is_cancelled=lambda: False,
                     deadline=time.monotonic() + 3600)
    image = decode_image(image_path.read_bytes(), max_pixels=ServiceLimits().max_image_pixels)
    request = ReconstructRequest([image], CommonParams(quality=args.quality), texture="uv", method=args.method)
    output = pipeline.run(request, ctx)
    export_mesh(output.mesh, glb_path)
    metadata = dict(output.metadata, warnings=ctx.warnings)
    glb_path.with_suffix(".json").write_text(json.dumps(metadata, indent=1, default=str))
    return glb_path, metadata


def review_cameras(metadata: dict):
    """The fitted camera, then the object's right side, back and left side from above."""
    from backend.data.render_photos import ResultCamera

    fitted = metadata.get("camera")
    if fitted:
        first = ResultCamera(fitted["azimuth"], fitted["elevation"], fitted["fov"], fitted["distance"],
                             tuple(fitted.get("target", (0.0, 0.0, 0.0))),
                             tuple(fitted.get("principal_offset", (0.0, 0.0))))
    else:
        first = ResultCamera(0.0, 15.0, 30.0, 2.2)
    others = [ResultCamera(first.azimuth + da, el, 30.0, 2.4) for da, el in ((90, 15), (180, 15), (270, 45))]
    return [first] + others


def compose_sheet(image_path: Path, glb: Path, metadata: dict, title: str):
    from PIL import Image, ImageDraw

    cameras = review_cameras(metadata)
    renders = render_in_blender(glb, cameras)
    photo = Image.open(image_path)
    photo = on_grey(np.asarray(photo.convert("RGBA"), dtype=np.float32) / 255.0) if photo.mode in ("RGBA", "LA", "P") \
        else photo.convert("RGB")
    photo.thumbnail((PANEL, PANEL))
    labels = ["input", "fitted camera" if metadata.get("camera") else "front (no fitted camera)",
              "right side", "back", "left side, from above"]
    panels = [photo] + [on_grey(r) for r in renders]
    sheet = Image.new("RGB", (PANEL * len(panels), PANEL + 40), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 4), title, fill=(0, 0, 0))
    for k, (panel, label) in enumerate(zip(panels, labels)):
        sheet.paste(panel, (k * PANEL + (PANEL - panel.width) // 2, 22 + (PANEL - panel.height) // 2))
        draw.text((k * PANEL + 6, PANEL + 24), label, fill=(60, 60, 60))
    return sheet


def on_grey(rgba: np.ndarray):
    from PIL import Image

    alpha = rgba[..., 3:4]
    rgb = rgba[..., :3] * alpha + 0.82 * (1 - alpha)
    return Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")


def render_in_blender(glb: Path, cameras) -> list[np.ndarray]:
    """Render in a child process: bpy keeps global state, and the backend's torch should not
    share a process with Blender's libraries."""
    import subprocess
    import tempfile
    from dataclasses import asdict

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"glb": str(glb), "cameras": [asdict(c) for c in cameras], "out": tmp}))
        subprocess.run([sys.executable, __file__, "--render-child", str(spec)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with np.load(Path(tmp) / "renders.npz") as data:
            return list(data["renders"])


def render_child(spec_path: str) -> int:
    from backend.data.render_photos import ResultCamera, render_result

    spec = json.loads(Path(spec_path).read_text())
    cameras = [ResultCamera(**{**c, "target": tuple(c["target"]), "principal_offset": tuple(c["principal_offset"])})
               for c in spec["cameras"]]
    renders = render_result(spec["glb"], cameras, resolution=PANEL)
    np.savez(Path(spec["out"]) / "renders.npz", renders=np.stack(renders).astype(np.float32))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--render-child":
        raise SystemExit(render_child(sys.argv[2]))
    raise SystemExit(main())
