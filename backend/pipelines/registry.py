"""The pipelines this backend ships, by task name. Factories import lazily: torch and the models
load in the worker, not when the server starts."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from backend.pipelines.base import Pipeline, PipelineRegistry


def _reconstruct(device: str, weights: Path | None = None) -> Pipeline:
    # the learned shape model or the silhouette baseline, per request (see ReconstructPipeline)
    from backend.pipelines.reconstruct.dispatch import ReconstructPipeline

    return ReconstructPipeline(device) if weights is None else ReconstructPipeline(device, weights)


def _generate(device: str) -> Pipeline:
    from backend.pipelines.generate import GeneratePipeline

    return GeneratePipeline(device)


def _stylize(device: str) -> Pipeline:
    from backend.pipelines.stylize import StylizePipeline

    return StylizePipeline(device)


def _mine(device: str) -> Pipeline:
    from backend.pipelines.mine.pipeline import MinePipeline

    return MinePipeline(device)


def default_registry(shape_weights: str | Path | None = None) -> PipelineRegistry:
    """The shipped pipelines; ``shape_weights`` replaces the reconstruct model's default checkpoint
    (a checkpoint ``NAME`` or a folder holding one, e.g. what scripts/train.py exports)."""
    registry = PipelineRegistry()
    registry.register("reconstruct", partial(_reconstruct, weights=Path(shape_weights)) if shape_weights else _reconstruct)
    registry.register("generate", _generate)
    registry.register("stylize", _stylize)
    registry.register("mine", _mine)
    return registry
