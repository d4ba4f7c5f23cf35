"""The pipelines this backend ships, by task name."""

from __future__ import annotations

from backend.pipelines.base import PipelineRegistry


def default_registry() -> PipelineRegistry:
    from backend.pipelines.reconstruct_model import reconstruct_pipeline

    registry = PipelineRegistry()
    # the learned shape model when its weights load, else the silhouette baseline with a warning
    registry.register("reconstruct", reconstruct_pipeline)
    registry.register("generate", lambda device: __import__("backend.pipelines.generate", fromlist=["GeneratePipeline"]).GeneratePipeline(device))
    registry.register("stylize", lambda device: __import__("backend.pipelines.stylize", fromlist=["StylizePipeline"]).StylizePipeline(device))
    return registry
