"""The pipelines this backend ships, by task name. Factories import lazily: torch and the models
load in the worker, not when the server starts."""

from __future__ import annotations

from backend.pipelines.base import Pipeline, PipelineRegistry


def _reconstruct(device: str) -> Pipeline:
    # the learned shape model or the silhouette baseline, per request (see ReconstructPipeline)
    from backend.pipelines.reconstruct.dispatch import ReconstructPipeline

    return ReconstructPipeline(device)


def _generate(device: str) -> Pipeline:
    from backend.pipelines.generate import GeneratePipeline

    return GeneratePipeline(device)


def _stylize(device: str) -> Pipeline:
    from backend.pipelines.stylize import StylizePipeline

    return StylizePipeline(device)


def default_registry() -> PipelineRegistry:
    registry = PipelineRegistry()
    registry.register("reconstruct", _reconstruct)
    registry.register("generate", _generate)
    registry.register("stylize", _stylize)
    return registry
