"""The pipelines this backend ships, by task name."""

from __future__ import annotations

from backend.pipelines.base import PipelineRegistry


def default_registry() -> PipelineRegistry:
    from backend.pipelines.reconstruct_silhouette import SilhouetteReconstructPipeline

    registry = PipelineRegistry()
    registry.register("reconstruct", SilhouetteReconstructPipeline)
    return registry
