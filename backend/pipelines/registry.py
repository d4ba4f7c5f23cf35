"""The pipelines this backend ships, by task name."""

from __future__ import annotations

from backend.pipelines.base import PipelineRegistry


def default_registry() -> PipelineRegistry:
    from backend.pipelines.reconstruct_silhouette import SilhouetteReconstructPipeline

    registry = PipelineRegistry()
    registry.register("reconstruct", SilhouetteReconstructPipeline)
    registry.register("generate", lambda device: __import__("backend.pipelines.generate", fromlist=["GeneratePipeline"]).GeneratePipeline(device))
    registry.register("stylize", lambda device: __import__("backend.pipelines.stylize", fromlist=["StylizePipeline"]).StylizePipeline(device))
    return registry
