#!/usr/bin/env python
"""Batch throughput: items per minute of ``python -m backend batch`` in-process and on a local Ray
cluster with 1 and 2 workers (and GPU workers with --gpu when a GPU is present).

    .venv/bin/python scripts/bench_batch.py                    # 8 real-split photos, default quality
    .venv/bin/python scripts/bench_batch.py --items 4 --quality preview

Each configuration is the real command in its own process, on the same photos (the first view of
each real-split object, scripts/render_real_split.py; examples/ when that split is absent), into a
fresh folder. Reported: the command's wall time (process start, Ray cluster start, model loads
included) and items per minute as the batch reports it (from its engine's start). Writes
bench_results/batch.json (or --out) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CPU_CONFIGS = {
    "in-process (no Ray), 2 torch threads": [],
    "Ray local, 1 worker x 2 CPUs": ["--ray", "local", "--workers", "1", "--cpus-per-worker", "2"],
    "Ray local, 2 workers x 1 CPU": ["--ray", "local", "--workers", "2", "--cpus-per-worker", "1"],
}
GPU_CONFIGS = {
    "Ray local, 1 GPU worker": ["--ray", "local", "--workers", "1", "--gpus-per-worker", "1", "--cpus-per-worker", "4"],
    "Ray local, 2 workers sharing 1 GPU": ["--ray", "local", "--workers", "2", "--gpus-per-worker", "0.5",
                                           "--cpus-per-worker", "4"],
}


def photos(count: int, folder: Path) -> list[Path]:
    real = ROOT / "data_cache" / "real_split"
    sources = sorted(real.glob("*/view_0.png")) if real.is_dir() else []
    sources = sources or sorted((ROOT / "examples").glob("*.*"))
    chosen = [sources[i % len(sources)] for i in range(count)]
    folder.mkdir(parents=True)
    for index, source in enumerate(chosen):
        shutil.copy(source, folder / f"{index:02d}_{source.parent.name}{source.suffix}")
    return chosen


def run(config: list[str], inputs: Path, out: Path, quality: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    command = [sys.executable, "-m", "backend", "batch", str(inputs), "--out", str(out), "--quality", quality, *config]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    summary = re.search(r"(\d+) done, (\d+) failed.* in ([\d.]+) s \(([\d.]+) items/min\)", done.stdout)
    seconds = [json.loads(p.read_text())["timings"]["run_s"] for p in out.glob("*.json") if p.name != "manifest.json"]
    return {"done": int(summary[1]), "failed": int(summary[2]), "batch_s": float(summary[3]),
            "items_per_minute": float(summary[4]), "wall_s": round(wall, 1),
            "mean_item_s": round(sum(seconds) / len(seconds), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--quality", default="default", choices=("preview", "default", "high"))
    parser.add_argument("--gpu", action="store_true", help="also GPU workers (needs CUDA)")
    parser.add_argument("--out", default=str(ROOT / "bench_results" / "batch.json"))
    args = parser.parse_args(argv)
    configs = {**CPU_CONFIGS, **(GPU_CONFIGS if args.gpu else {})}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "photos"
        sources = photos(args.items, inputs)
        for index, (name, config) in enumerate(configs.items()):
            row = {"configuration": name, **run(config, inputs, Path(tmp) / f"out{index}", args.quality)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    report = {"date": datetime.date.today().isoformat(), "machine": f"{os.cpu_count()} CPUs", "items": args.items,
              "quality": args.quality, "inputs": sorted({str(s.relative_to(ROOT)) for s in sources}), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"\n{args.items} photos, {args.quality} quality, {report['machine']}, {report['date']}\n")
    print("| configuration | items/min | wall time of the command | mean time per item |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['configuration']} | {row['items_per_minute']:.1f} | {row['wall_s']:.0f} s | "
              f"{row['mean_item_s']:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
