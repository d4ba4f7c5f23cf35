"""``python -m backend batch`` with test-double pipelines (tests only): the same command and code,
with ``doubles.StepPipeline`` for images and ``doubles.BatchGeneratePipeline`` for prompts."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from backend.cli import EXIT_USAGE, build_parser, cmd_batch  # noqa: E402
from backend.errors import UsageError  # noqa: E402

from doubles import BatchGeneratePipeline, StepPipeline, registry_with  # noqa: E402

if __name__ == "__main__":
    args = build_parser().parse_args(["batch", *sys.argv[1:]])
    try:
        sys.exit(cmd_batch(args, registry_with(reconstruct=StepPipeline, generate=BatchGeneratePipeline)))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
