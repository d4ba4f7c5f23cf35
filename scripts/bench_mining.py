#!/usr/bin/env python
"""Benchmark of shape mining on photo collections of real objects (docs/mining.md).

    .venv/bin/python scripts/render_mining_split.py     # the collections (once)
    .venv/bin/python scripts/bench_mining.py            # -> bench_results/mining.{json,md}

For each collection of `data_cache/mining_split` (several real objects photographed 6-12 times
each, shuffled with distractor photos): the mining pipeline runs on the whole folder, as
`python -m backend mine` does, and is scored on

- **clusters**: how many it found against the number of objects; **purity** (the share of the
  clustered photos that show their cluster's majority object); distractors that were set apart;
- **per cluster**: the pooled shape against the reference mesh of its majority object, beside the
  mean over the same photos of single-image reconstructions (the default ``auto`` method, one
  photo each), both pose-free: best of 48 axis rotations and mirrorings, then ICP with scale,
  in a unit bounding box; F-score at 2 % and 5 % of the unit size
  (`backend.geometry.metrics.compare_meshes_pose_free`);
- **cameras**: each photo's reported camera against the true one it was rendered from, over the
  photos of the cluster's majority object (`camera_errors`): azimuths compared up to one turn of
  the whole set about the vertical and its mirror image (the result's frame is its own, and a
  symmetric object's mirror image looks the same), elevations as they are.

Single-image scores are cached in ``bench_results/mining_single.json`` (they do not depend on
mining); ``--fresh`` recomputes them.
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

POINTS = 20_000
"""Surface samples per mesh when scoring."""


def context(device: str = "cpu"):
    from backend.pipelines.base import JobContext

    return JobContext("bench", device, emit_progress=lambda *a: None, emit_preview_mesh=lambda *a: None,
                      emit_preview_points=lambda *a: None, is_cancelled=lambda: False, deadline=float("inf"))


def score(vertices: np.ndarray, faces: np.ndarray, reference: Path) -> dict[str, float]:
    from backend.geometry.metrics import compare_meshes_pose_free

    with np.load(reference) as ref:
        scores = compare_meshes_pose_free(vertices, faces, ref["vertices"], ref["faces"], n_points=POINTS)
    return {"f@2": round(scores.fscore[0.02], 4), "f@5": round(scores.fscore[0.05], 4)}


def camera_errors(reported: dict[str, dict], true: dict[str, dict]) -> dict[str, float] | None:
    """Errors of the ``reported`` cameras ({photo: {"azimuth", "elevation"}}, degrees) against the
    ``true`` ones, for the photos in both: the azimuths after the one turn of the whole set (or of
    its mirror image) that fits them best (least total error), the elevations as they are ->
    {"photos", "azimuth_median", "azimuth_within_30", "elevation_median"}; None for fewer than two
    photos (one photo's azimuth says nothing: the frame is its own)."""
    names = sorted(set(reported) & set(true))
    if len(names) < 2:
        return None
    got = np.array([reported[n]["azimuth"] for n in names], dtype=np.float64)
    want = np.array([true[n]["azimuth"] for n in names], dtype=np.float64)
    best = None
    for sign in (1.0, -1.0):
        # the least total error is reached with one photo exactly aligned (an L1 fit on the circle)
        for offset in want - sign * got:
            error = np.abs((sign * got + offset - want + 180.0) % 360.0 - 180.0)
            if best is None or error.sum() < best.sum():
                best = error
    elevation = np.abs(np.array([reported[n]["elevation"] - true[n]["elevation"] for n in names]))
    return {"photos": len(names), "azimuth_median": round(float(np.median(best)), 1),
            "azimuth_within_30": round(float(np.mean(best <= 30.0)), 3),
            "elevation_median": round(float(np.median(elevation)), 1)}


def single_image_scores(folder: Path, truth: dict, cache: dict, device: str) -> dict[str, dict]:
    """Per photo of an object: the default single-image reconstruction's scores (cached)."""
    from backend.images import decode_image
    from backend.pipelines.reconstruct.dispatch import ReconstructPipeline
    from backend.requests import CommonParams, ReconstructRequest

    pipeline = None
    out = {}
    for name, entry in sorted(truth["photos"].items()):
        if entry["object"] is None:
            continue
        key = f"{folder.name}/{name}"
        if key not in cache:
            pipeline = pipeline or ReconstructPipeline(device)
            image = decode_image((folder / "photos" / name).read_bytes(), max_pixels=64_000_000, name=name)
            t0 = time.perf_counter()
            try:
                result = pipeline.run(ReconstructRequest([image], CommonParams(), texture="none"), context(device))
            except Exception as exc:  # a photo the single-image path cannot do scores 0
                cache[key] = {"f@2": 0.0, "f@5": 0.0, "error": str(exc)}
            else:
                cache[key] = {**score(result.mesh.vertices, result.mesh.faces,
                                      folder / truth["objects"][entry["object"]]["reference"]),
                              "chose": result.metadata.get("auto", {}).get("chose", "?"),
                              "seconds": round(time.perf_counter() - t0, 2)}
            print(f"  single {key}: {cache[key]}", flush=True)
        out[name] = cache[key]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data_cache" / "mining_split"))
    parser.add_argument("--out", default=str(ROOT / "bench_results"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="+", help="these collections only")
    parser.add_argument("--embedding", help="photo embedding checkpoint NAME (default: the shipped one)")
    parser.add_argument("--single-only", action="store_true", help="only fill the single-image cache")
    parser.add_argument("--fresh", action="store_true", help="recompute the cached single-image scores")
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_path = out / "mining_single.json"
    cache = {} if args.fresh or not cache_path.exists() else json.loads(cache_path.read_text())
    folders = sorted(p.parent for p in data.glob("*/truth.json"))
    if args.only:
        folders = [f for f in folders if f.name in args.only]
    if not folders:
        print(f"no collections in {data} (run scripts/render_mining_split.py)", file=sys.stderr)
        return 1
    for folder in folders:
        truth = json.loads((folder / "truth.json").read_text())
        single_image_scores(folder, truth, cache, args.device)
        cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True))
    if args.single_only:
        return 0
    rows = [mine_collection(folder, json.loads((folder / "truth.json").read_text()), cache, args.device,
                            args.embedding) for folder in folders]
    record = {"date": time.strftime("%Y-%m-%d"), "device": args.device, "collections": rows,
              "embedding": args.embedding or "backend/weights/photo_embedding"}
    (out / "mining.json").write_text(json.dumps(record, indent=1))
    (out / "mining.md").write_text(markdown(record))
    print(markdown(record))
    return 0


def majority_object(objects: list[str]) -> str | None:
    """The object most photos of a cluster show; of a tie, the first by name (a set's order
    changes from run to run with the string hash)."""
    return max(sorted(set(objects)), key=objects.count) if objects else None


def mine_collection(folder: Path, truth: dict, single: dict, device: str, embedding: str | None = None) -> dict:
    """Mine the whole folder and score its clusters."""
    from backend import protocol
    from backend.pipelines.mine.pipeline import MinePipeline
    from backend.requests import CommonParams, EncodedImage, MineRequest

    names = sorted(truth["photos"])
    request = MineRequest(names=names, common=CommonParams(), texture="none", encoded=[
        EncodedImage((folder / "photos" / n).read_bytes(), n, 64_000_000, 16) for n in names])
    t0 = time.perf_counter()
    pipeline = MinePipeline(device) if embedding is None else MinePipeline(device, embedding)
    output = pipeline.run(request, context(device))
    seconds = time.perf_counter() - t0
    meta = output.metadata
    shows = {n: e["object"] for n, e in truth["photos"].items()}
    clusters = []
    clustered = 0
    majority_total = 0
    for cluster, mesh in protocol.split_mined(output.mesh, meta):
        members = [shows[n] for n in cluster["images"]]
        objects = [m for m in members if m is not None]
        majority = majority_object(objects)
        clustered += len(members)
        majority_total += objects.count(majority) if majority else 0
        row = {"name": cluster["name"], "photos": len(members), "object": majority,
               "of_object": objects.count(majority) if majority else 0, "shape_from": cluster["shape_from"]}
        if majority is not None:
            row.update({f"pooled_{k}": v for k, v in
                        score(mesh.vertices, mesh.faces, folder / truth["objects"][majority]["reference"]).items()})
            same = [n for n in cluster["images"] if shows[n] == majority]
            for key in ("f@2", "f@5"):
                row[f"single_{key}"] = round(float(np.mean([single[f"{folder.name}/{n}"][key] for n in same])), 4)
            row["beats_single"] = row["pooled_f@5"] > row["single_f@5"]
            row["cameras"] = camera_errors({n: cluster["cameras"][n] for n in same},
                                           {n: truth["photos"][n] for n in same})
        clusters.append(row)
    set_apart = [e["image"] for e in meta["outliers"] + meta["rejected"]]
    distractors = [n for n, e in truth["photos"].items() if e["object"] is None]
    return {
        "collection": folder.name, "photos": len(names), "objects": len(truth["objects"]),
        "clusters_found": len(clusters), "purity": round(majority_total / max(clustered, 1), 4),
        "clustered_photos": clustered, "object_photos": len(names) - len(distractors),
        "distractors_set_apart": f"{sum(n in set_apart for n in distractors)}/{len(distractors)}",
        "objects_found": len({c["object"] for c in clusters if c["object"]}),
        "seconds": round(seconds, 1), "timings_s": meta["timings_s"], "clusters": clusters,
    }


def markdown(record: dict) -> str:
    lines = [f"Shape mining benchmark ({record['date']}, {record['device']}): scripts/bench_mining.py", ""]
    lines += ["| collection | photos | objects | clusters found | objects found | purity | clustered photos | "
              "distractors set apart | s |", "|---|---|---|---|---|---|---|---|---|"]
    for row in record["collections"]:
        lines.append(f"| {row['collection']} | {row['photos']} | {row['objects']} | {row['clusters_found']} | "
                     f"{row['objects_found']} | {row['purity']:.2f} | {row['clustered_photos']}/{row['object_photos']} | "
                     f"{row['distractors_set_apart']} | {row['seconds']:.0f} |")
    lines += ["", "Cameras (photos of a cluster's majority object, in clusters with two or more): reported "
                  "azimuth within 30° of the true one, up to a turn of the whole set and its mirror image:", ""]
    for row in record["collections"]:
        scored = [c["cameras"] for c in row["clusters"] if c.get("cameras")]
        photos = sum(e["photos"] for e in scored)
        within = sum(e["azimuth_within_30"] * e["photos"] for e in scored)
        lines.append(f"- {row['collection']}: {within:.0f} of {photos} photos" if photos else
                     f"- {row['collection']}: no cluster with two photos of its object")
    lines += ["", "| collection | cluster | object (photos of it / in cluster) | pooled F@2 / F@5 | "
                  "single-image mean F@2 / F@5 | pooled better | camera azimuth error (median °, within 30°) "
                  "/ elevation error (median °) |", "|---|---|---|---|---|---|---|"]
    for row in record["collections"]:
        for c in row["clusters"]:
            if c["object"] is None:
                lines.append(f"| {row['collection']} | {c['name']} | distractors only ({c['photos']}) | - | - | - | - |")
                continue
            cams = c.get("cameras")
            camera = (f"{cams['azimuth_median']:.0f}, {cams['azimuth_within_30']:.0%} / {cams['elevation_median']:.0f}"
                      if cams else "-")
            lines.append(f"| {row['collection']} | {c['name']} | {c['object']} ({c['of_object']}/{c['photos']}) | "
                         f"{c['pooled_f@2']:.3f} / {c['pooled_f@5']:.3f} | {c['single_f@2']:.3f} / "
                         f"{c['single_f@5']:.3f} | {'yes' if c['beats_single'] else 'no'} | {camera} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
