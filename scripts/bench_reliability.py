"""Reliability benchmark: cancel and timeout latency in every stage of the real reconstruct
pipeline, ping round trips while a high-quality job runs, and what queued jobs cost in memory.

A real ``Server`` (shipped pipelines, CPU) on loopback and a real ``BackendClient``:

- **cancel latency**: for each quality and stage, a job is started, cancelled ``--into`` seconds
  after the stage's first progress message, and timed from the cancel to the job's final message.
  Then the pipeline process is checked: killed, or idle (no CPU time over the next 0.5 s);
- **timeout latency**: a job whose deadline falls mid-run, timed from the deadline to the final message;
- **pings**: round trips every 50 ms through a whole high-quality job;
- **memory**: the server's resident memory with 10 queued jobs of one 36-megapixel PNG each,
  and after they were cancelled.

    .venv/bin/python scripts/bench_reliability.py [--qualities default,high]

Writes bench_results/reliability.json and prints a table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend import protocol  # noqa: E402
from backend.client import BackendClient  # noqa: E402
from backend.config import ServerConfig  # noqa: E402
from backend.pipelines.registry import default_registry  # noqa: E402
from backend.server import Server  # noqa: E402

STAGES = ("queued", "segment", "encode", "refine", "mesh", "texture")
MUG = ROOT / "examples" / "mug.png"


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    if fields[0] == "Z":
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_after(pid: int) -> str:
    """'killed' when the pipeline process is gone, 'idle' when it spends no CPU, else 'busy'."""
    before = cpu_seconds(pid)
    time.sleep(0.5)
    after = cpu_seconds(pid)
    if before is None or after is None:
        return "killed"
    return "idle" if after - before < 0.05 else f"busy ({after - before:.2f} s CPU in 0.5 s)"


class Bench:
    def __init__(self) -> None:
        self.server = Server(ServerConfig(port=0, job_timeout_s=900), default_registry(), ["cpu"])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.client = BackendClient(self.server.address, server_timeout_s=120)
        self.image = MUG.read_bytes()
        self.count = 0
        self.wait_until_ready()

    def wait_until_ready(self) -> None:
        while self.client.request_pong(30).get("server")["pipelines"].get("reconstruct") == "checking":
            time.sleep(0.5)

    def pipeline_pid(self) -> int:
        return self.server.engine._workers[0].process.process.pid

    def submit(self, params: dict) -> str:
        self.count += 1
        job = f"bench-{self.count}"
        self.client.send(protocol.submit_reconstruct(job, [self.image], {"method": "model", **params}))
        return job

    def final(self, job: str, timeout_s: float = 600):
        return self.client.wait_for(lambda m: m.job == job and m.type in ("result", "error")
                                    and (m.type == "result" or m.get("state")), timeout_s)

    def cancel_in(self, quality: str, stage: str, into_s: float) -> dict:
        self.wait_until_ready()
        if stage == "queued":
            blocker = self.submit({"quality": quality})
            self.client.wait_for(lambda m: m.job == blocker and m.type == "progress", 600)
            job = self.submit({"quality": quality})
            self.client.wait_for(lambda m: m.job == job and m.type == "accepted", 60)
        else:
            job = self.submit({"quality": quality})
            self.client.wait_for(lambda m: m.job == job and m.type == "progress" and m.get("stage") == stage, 600)
        time.sleep(into_s)
        pid = self.pipeline_pid()
        sent = time.monotonic()
        self.client.send(protocol.cancel(job))
        final = self.final(job)
        latency = time.monotonic() - sent
        after = process_after(pid) if stage != "queued" else "-"
        if stage == "queued":
            self.client.send(protocol.cancel(blocker))
            self.final(blocker)
        return {"quality": quality, "stage": stage, "state": final.get("state"), "latency_s": round(latency, 3),
                "process": after}

    def warm(self) -> None:
        """A whole preview job: after a kill, the replacement process has loaded its model."""
        self.wait_until_ready()
        self.final(self.submit({"quality": "preview"}))

    def timeout_at(self, quality: str, timeout_s: float) -> dict:
        self.warm()
        job = self.submit({"quality": quality, "timeout_s": timeout_s})
        started = None
        stage = None
        while True:
            for m in self.client.poll(20):
                if m.job != job:
                    continue
                if m.type == "accepted":  # nothing else is queued: the job starts now
                    started = time.monotonic()
                    pid = self.pipeline_pid()  # (after a kill, the pid of the replacement is another)
                if m.type == "progress":
                    stage = m.get("stage")
                if m.type == "error" and m.get("state"):
                    late = time.monotonic() - started - timeout_s
                    return {"quality": quality, "timeout_s": timeout_s, "state": m.get("state"),
                            "stage_at_deadline": stage or "loading the pipeline", "after_deadline_s": round(late, 3),
                            "process": process_after(pid)}
                if m.type == "result":
                    return {"quality": quality, "timeout_s": timeout_s, "state": "done (deadline not reached)"}

    def pings_during(self, quality: str) -> dict:
        self.warm()
        job = self.submit({"quality": quality})
        round_trips = []
        ended = False
        stages: dict[str, float] = {}
        while not ended:
            sent = time.monotonic()
            self.client.ping()
            got_pong = False
            while not got_pong:
                for m in self.client.poll(1000):
                    if m.type == "pong":
                        got_pong = True
                        round_trips.append(time.monotonic() - sent)
                    elif m.job == job and m.type == "progress":
                        stages.setdefault(m.get("stage"), time.monotonic())
                    elif m.job == job and m.type in ("result", "error") and (m.type == "result" or m.get("state")):
                        ended = True
            time.sleep(0.05)
        return {"quality": quality, "pings": len(round_trips), "max_ms": round(1000 * max(round_trips), 1),
                "median_ms": round(1000 * statistics.median(round_trips), 2)}

    def queued_memory(self, jobs: int = 10) -> dict:
        from PIL import Image

        self.wait_until_ready()
        big = io.BytesIO()
        Image.fromarray(np.full((6000, 6000, 3), 180, np.uint8)).save(big, format="PNG")
        blocker = self.submit({"quality": "high"})
        self.client.wait_for(lambda m: m.job == blocker and m.type == "progress", 600)
        before = rss_mb()
        names = []
        for _ in range(jobs):
            self.count += 1
            names.append(f"bench-{self.count}")
            self.client.send(protocol.submit_reconstruct(names[-1], [big.getvalue()], {"method": "model"}))
        for name in names:
            self.client.wait_for(lambda m, name=name: m.job == name and m.type in ("accepted", "error"), 300)
        queued = rss_mb()
        for name in [*names, blocker]:
            self.client.send(protocol.cancel(name))
            self.final(name)
        time.sleep(1.0)
        return {"png_bytes": len(big.getvalue()), "megapixels": 36, "jobs": jobs,
                "rss_before_mb": round(before), "rss_queued_mb": round(queued),
                "per_queued_job_mb": round((queued - before) / jobs, 1), "rss_after_cancel_mb": round(rss_mb())}

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.thread.join(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qualities", default="default,high")
    parser.add_argument("--into", type=float, default=0.3, help="seconds into a stage before cancelling")
    parser.add_argument("--out", type=Path, default=ROOT / "bench_results" / "reliability.json")
    args = parser.parse_args()
    bench = Bench()
    report: dict = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                    "cancel": [], "timeout": [], "pings": []}
    try:
        for quality in args.qualities.split(","):
            for stage in STAGES:
                report["cancel"].append(row := bench.cancel_in(quality, stage, args.into))
                print(row, flush=True)
        for timeout_s in (2.0, 6.0):
            report["timeout"].append(row := bench.timeout_at(args.qualities.split(",")[-1], timeout_s))
            print(row, flush=True)
        report["pings"].append(row := bench.pings_during(args.qualities.split(",")[-1]))
        print(row, flush=True)
        report["memory"] = bench.queued_memory()
        print(report["memory"], flush=True)
    finally:
        bench.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    worst = max(report["cancel"], key=lambda r: r["latency_s"])
    print(f"\nworst cancel: {worst['latency_s']} s ({worst['quality']}, {worst['stage']}); "
          f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
