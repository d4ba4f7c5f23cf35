"""A real backend process whose pipelines are test doubles (tests only).

Takes the options of ``python -m backend serve`` and serves through the same code, so the
add-on's supervisor can run it through a stand-in "backend Python" (see ``blender_env.py``).
``STEPSTONE_TEST_PIPELINES`` picks the registry: ``full`` (default), ``slow`` or ``no-generate``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent)]

from backend.cli import build_parser, run_server  # noqa: E402
from backend.pipelines.base import PipelineRegistry  # noqa: E402

from addon_support import pipelines  # noqa: E402

REGISTRIES = {
    "full": {"reconstruct": pipelines.TexturedReconstruct, "generate": pipelines.EchoGenerate,
             "stylize": pipelines.EchoStylize},
    "slow": {"reconstruct": pipelines.SlowReconstruct, "generate": pipelines.EchoGenerate,
             "stylize": pipelines.EchoStylize},
    "no-generate": {"reconstruct": pipelines.TexturedReconstruct, "generate": pipelines.MissingModel},
}


def main() -> int:
    args = build_parser().parse_args(["serve", *sys.argv[1:]])
    registry = PipelineRegistry()
    for task, cls in REGISTRIES[os.environ.get("STEPSTONE_TEST_PIPELINES", "full")].items():
        registry.register(task, cls)
    return run_server(args, registry)


if __name__ == "__main__":
    sys.exit(main())
