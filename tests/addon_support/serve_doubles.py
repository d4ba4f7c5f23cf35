"""A real backend process whose pipelines are test doubles (tests only).

Takes the same options as ``python -m backend serve`` and prints the same ready line, so the
add-on's supervisor can run it through a stand-in "backend Python" (see ``blender_env.py``).
``STEPSTONE_TEST_PIPELINES`` picks the registry: ``full`` (default), ``slow`` or ``no-generate``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent)]

from backend.config import ServerConfig  # noqa: E402
from backend.pipelines.base import PipelineRegistry  # noqa: E402
from backend.server import Server  # noqa: E402

from addon_support import pipelines  # noqa: E402

REGISTRIES = {
    "full": {"reconstruct": pipelines.TexturedReconstruct, "generate": pipelines.EchoGenerate,
             "stylize": pipelines.EchoStylize},
    "slow": {"reconstruct": pipelines.SlowReconstruct, "generate": pipelines.EchoGenerate,
             "stylize": pipelines.EchoStylize},
    "no-generate": {"reconstruct": pipelines.TexturedReconstruct, "generate": pipelines.MissingModel},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    registry = PipelineRegistry()
    for task, cls in REGISTRIES[os.environ.get("STEPSTONE_TEST_PIPELINES", "full")].items():
        registry.register(task, cls)
    server = Server(ServerConfig(host=args.host, port=args.port), registry, ["cpu"])
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    print(f"STEPSTONE READY {server.address}", flush=True)
    # The server checks prompts with CLIP's tokenizer (importing open_clip and torch takes seconds);
    # load it while the first jobs are being set up instead of inside the first text job.
    threading.Thread(target=_warm_tokenizer, daemon=True).start()
    server.serve_forever()


def _warm_tokenizer() -> None:
    from backend.prompts import validate_prompt

    validate_prompt("warm up", max_chars=100)


if __name__ == "__main__":
    main()
