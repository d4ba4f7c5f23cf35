#!/usr/bin/env python
"""Text → shape and stylization benchmark: seconds per prompt per preset, peak memory, and CLIP
R-precision scored with a different CLIP from the one optimised against.

    .venv/bin/python scripts/bench_generate.py                 # timings (+ R-precision when possible)
    .venv/bin/python scripts/bench_generate.py --models tiny   # only the tiny test CLIP (seconds)

Which models run:

- ``trained``: the real pipeline (ViT-B-32 weights + the ISS folder from scripts/train_mapper.py),
  the only one whose *results* mean anything. R-precision needs it plus the weights of the scoring
  CLIP (``--score-clip``, default ViT-B-16 / openai). Skipped, with the reason, when missing.
- ``vitb32-random``: ViT-B-32 with **random** weights, a randomly initialised shape model of the
  device's preset and a random mapper of the real size: the same computation as the real pipeline,
  so the seconds and memory are representative, the shapes are not. Timing only.
- ``tiny``: the tiny CLIP of the tests (random weights). Timing of everything except CLIP.
- ``offline``: the shipped offline text model (no CLIP): what runs on a machine without CLIP.
  Its results are real; their quality is measured by scripts/bench_text.py.

Writes bench_results/generate.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "a wooden chair", "a round table", "a tall vase", "a red sports car", "an airplane",
    "a coffee mug", "a bookshelf", "a table lamp", "a sofa", "a mushroom",
]
"""Fixed prompt set for R-precision (each shape must be retrieved by its own prompt among these)."""


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_context():
    from backend.pipelines.base import JobContext

    return JobContext("bench", "bench", emit_progress=lambda *a: None, emit_preview_mesh=lambda *a: None,
                      emit_preview_points=lambda *a: None, is_cancelled=lambda: False,
                      deadline=time.monotonic() + 3600)


def random_assets(kind: str, device: str):
    """Architecture-matched random models (``vitb32-random``) or the tiny test models (``tiny``)."""
    import torch

    from backend.models.clip import ClipConfig, load_clip
    from backend.models.clip_testing import load_tiny_clip
    from backend.models.mapper import Clip2ShapeMapper, MapperConfig
    from backend.models.shape_model import ShapeModel, ShapeModelConfig
    from backend.pipelines.generate_assets import IssAssets

    torch.manual_seed(0)
    if kind == "tiny":
        clip = load_tiny_clip(device=device)
    else:
        clip = load_clip(ClipConfig(model_name="ViT-B-32", pretrained=None, allow_random_weights=True, device=device))
    shape = ShapeModel(ShapeModelConfig.preset("cpu" if device == "cpu" else "gpu")).to(device).eval()
    shape.requires_grad_(False)
    dims = shape.config.shape_dim + shape.config.color_dim
    mapper = Clip2ShapeMapper(MapperConfig(clip_dim=clip.embed_dim, code_dim=dims)).to(device)
    return IssAssets(clip=clip, shape_model=shape, mapper=mapper, shape_model_id=f"random:{kind}")


def time_generate(assets, device: str, quality: str, prompts: list[str], stylize: bool) -> dict:
    import torch

    from backend.pipelines.generate import generate_mesh, generate_preset
    from backend.requests import CommonParams, GenerateRequest

    preset = generate_preset(device, quality)
    seconds, meshes = [], []
    for i, prompt in enumerate(prompts):
        if device != "cpu":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        out = generate_mesh(GenerateRequest(prompt=prompt, common=CommonParams(quality=quality, seed=i), stylize=stylize),
                            assets, preset, make_context())
        if device != "cpu":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
        meshes.append(out)
    row = {
        "task": "generate" + (" + stylize" if stylize else ""), "quality": quality, "prompts": len(prompts),
        "steps": preset.align.steps, "views": preset.align.views, "resolution": preset.align.resolution,
        "seconds_per_prompt": round(sum(seconds) / len(seconds), 2), "seconds_each": [round(s, 2) for s in seconds],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if device != "cpu":
        row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return row, meshes


def time_offline(device: str, quality: str, prompts: list[str]) -> list[dict]:
    """Generate and stylize through the offline text model, as the server runs them."""
    import numpy as np
    import torch
    import trimesh

    from backend.pipelines.generate import GeneratePipeline
    from backend.pipelines.stylize import StylizePipeline
    from backend.protocol import MeshPayload
    from backend.requests import CommonParams, GenerateRequest, StylizeRequest

    generate, stylize = GeneratePipeline(device), StylizePipeline(device)
    sphere = trimesh.creation.icosphere(subdivisions=5)
    mesh = MeshPayload(sphere.vertices.astype(np.float32), sphere.faces.astype(np.int32))
    rows = []
    for task, run in (("generate (offline)", lambda i, p: generate.run(
            GenerateRequest(prompt=p, common=CommonParams(quality=quality, seed=i)), make_context())),
                      ("stylize (offline, 20k triangles)", lambda i, p: stylize.run(
            StylizeRequest(mesh=mesh, prompt=p, common=CommonParams(quality=quality)), make_context()))):
        run(0, prompts[0])  # loads the models: a server does it once
        seconds = []
        if device != "cpu":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        for i, prompt in enumerate(prompts):
            started = time.perf_counter()
            run(i, prompt)
            if device != "cpu":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - started)
        row = {"task": task, "quality": quality, "prompts": len(prompts),
               "seconds_per_prompt": round(sum(seconds) / len(seconds), 2), "seconds_each": [round(x, 2) for x in seconds],
               "peak_rss_mb": round(peak_rss_mb(), 1)}
        if device != "cpu":
            row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        rows.append(row)
    return rows


def time_stylize(clip, device: str, quality: str) -> dict:
    import numpy as np
    import torch
    import trimesh

    from backend.pipelines.stylize import stylize_mesh, stylize_preset
    from backend.protocol import MeshPayload

    sphere = trimesh.creation.icosphere(subdivisions=5)  # 20k triangles, like a typical prop
    mesh = MeshPayload(sphere.vertices.astype(np.float32), sphere.faces.astype(np.int32))
    preset = stylize_preset(device, quality)
    started = time.perf_counter()
    stylize_mesh(mesh, "a marble statue", clip, preset, make_context(), mode="texture")
    if device != "cpu":
        torch.cuda.synchronize()
    return {"task": "stylize (texture, 20k triangles)", "quality": quality, "steps": preset.config.steps,
            "views": preset.config.views, "resolution": preset.config.resolution,
            "seconds_per_prompt": round(time.perf_counter() - started, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["offline", "trained", "vitb32-random", "tiny"],
                        choices=["offline", "trained", "vitb32-random", "tiny"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--qualities", nargs="+", default=None, help="default: all three on tiny, default elsewhere")
    parser.add_argument("--prompts", type=int, default=2, help="prompts timed per preset")
    parser.add_argument("--score-clip", default="ViT-B-16", help="open_clip model scoring R-precision")
    parser.add_argument("--score-pretrained", default="openai", help="its pretrained tag")
    parser.add_argument("--out", default=str(ROOT / "bench_results" / "generate.json"))
    args = parser.parse_args(argv)

    import torch

    from backend.devices import resolve_device
    from backend.models.clip import ClipConfig
    from backend.pipelines.generate_assets import (
        TextAssetsConfig,
        clip_missing_reason,
        iss_missing_reason,
    )

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = {
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if device != "cpu" else f"CPU ({platform.processor() or 'unknown'})",
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    report = {"machine": machine, "runs": [], "r_precision": None, "notes": []}

    for kind in args.models:
        if kind == "offline":
            for quality in args.qualities or ["preview", "default", "high"]:
                for row in time_offline(device, quality, PROMPTS[: max(2, args.prompts)]):
                    report["runs"].append({"models": "offline text model (shipped)", **row})
                    print(_line(report["runs"][-1]), flush=True)
            continue
        if kind == "trained":
            reason = iss_missing_reason(TextAssetsConfig())
            if reason:
                report["notes"].append(f"trained pipeline not benchmarked: {reason}")
                continue
            from backend.pipelines.generate_assets import load_iss_assets

            assets = load_iss_assets(TextAssetsConfig(), device)
            score_config = ClipConfig(model_name=args.score_clip, pretrained=args.score_pretrained, allow_download=False,
                                      device=device)
            qualities = args.qualities or ["default"]
            for quality in qualities:
                row, outputs = time_generate(assets, device, quality, PROMPTS, stylize=False)
                report["runs"].append({"models": "trained (real CLIP + mapper)", **row})
                print(_line(report["runs"][-1]), flush=True)
            score_reason = clip_missing_reason(score_config)
            if score_reason:
                report["notes"].append(f"R-precision not computed: the scoring CLIP is missing: {score_reason}")
            else:
                report["r_precision"] = {"score_clip": f"{args.score_clip}/{args.score_pretrained}",
                                         "value": score_r_precision(outputs, score_config, PROMPTS)}
            continue
        assets = random_assets(kind, device)
        label = ("ViT-B-32 with RANDOM weights + random shape model/mapper of the real sizes (timing only)"
                 if kind == "vitb32-random" else "tiny test CLIP, random weights (timing only; CLIP cost not representative)")
        qualities = args.qualities or (["preview", "default", "high"] if kind == "tiny" else ["default"])
        prompts = PROMPTS[: args.prompts]
        for quality in qualities:
            row, _ = time_generate(assets, device, quality, prompts, stylize=False)
            report["runs"].append({"models": label, **row})
            print(_line(report["runs"][-1]), flush=True)
        if kind == "vitb32-random":
            row, _ = time_generate(assets, device, "default", prompts[:1], stylize=True)
            report["runs"].append({"models": label, **row})
            print(_line(report["runs"][-1]), flush=True)
        report["runs"].append({"models": label, **time_stylize(assets.clip, device, "default")})
        print(_line(report["runs"][-1]), flush=True)
    if report["r_precision"] is None and not any("R-precision" in n for n in report["notes"]):
        report["notes"].append(
            "R-precision not computed: it needs the trained pipeline (real CLIP weights + ISS mapper) and the "
            f"weights of the scoring CLIP {args.score_clip}/{args.score_pretrained}; none are on this machine."
        )
    for note in report["notes"]:
        print("note:", note)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def score_r_precision(outputs, score_config, prompts: list[str]) -> float:
    """R-precision@1 of the generated meshes under a different CLIP: each mesh's texture-mapped
    renders from 4 views (the stylization rasteriser, mid-grey background) are scored against all
    prompts; a hit when its own prompt scores highest."""
    import numpy as np
    import torch

    from backend.models.clip import load_clip
    from backend.pipelines.generate_align import ViewSampling, fixed_views
    from backend.pipelines.stylize_raster import interpolate, rasterize

    clip = load_clip(score_config)
    text = clip.encode_text(prompts)
    hits = 0
    for index, out in enumerate(outputs):
        mesh = out.mesh
        vertices = torch.as_tensor(mesh.vertices)
        faces = torch.as_tensor(mesh.faces.astype(np.int64))
        cameras = fixed_views(4, 224, ViewSampling())
        fragments = rasterize(vertices, mesh.faces, cameras)
        colors = _vertex_rgb(mesh)
        rgb = interpolate(torch.as_tensor(colors), faces, fragments)
        covered = fragments.mask.unsqueeze(-1).float()
        images = (rgb * covered + 0.5 * (1 - covered)).permute(0, 3, 1, 2)
        with torch.no_grad():
            scores = clip.encode_image(images.to(clip.device)).mean(0) @ text.T
        hits += int(int(scores.argmax()) == index)
    return hits / len(outputs)


def _vertex_rgb(mesh):
    """Per-vertex colour of a result: vertex colours, or the texture sampled at the UVs."""
    import io

    import numpy as np
    from PIL import Image

    if mesh.colors is not None:
        return mesh.colors[:, :3].astype(np.float32) / 255.0
    image = np.asarray(Image.open(io.BytesIO(mesh.texture_png)).convert("RGB"), dtype=np.float32) / 255.0
    size = image.shape[0]
    cols = np.clip((mesh.uvs[:, 0] * size).astype(int), 0, size - 1)
    rows = np.clip(((1.0 - mesh.uvs[:, 1]) * size).astype(int), 0, size - 1)
    return image[rows, cols]


def _line(row: dict) -> str:
    extra = f", cuda {row['peak_cuda_mb']} MB" if "peak_cuda_mb" in row else ""
    return (f"{row['models'][:40]:40s} | {row['task']:34s} | {row['quality']:8s} | {row['seconds_per_prompt']:7.2f} s "
            f"| rss {row['peak_rss_mb']} MB{extra}")


if __name__ == "__main__":
    sys.exit(main())
