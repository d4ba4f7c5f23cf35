"""The "reconstruct" task as the server runs it: the learned model or the silhouette baseline,
per request and by what is installed."""

from __future__ import annotations

from pathlib import Path

from backend.errors import PipelineError
from backend.pipelines.base import JobContext, Pipeline, PipelineOutput
from backend.pipelines.reconstruct.model import ModelReconstructPipeline
from backend.pipelines.reconstruct.silhouette import SilhouetteReconstructPipeline
from backend.pipelines.reconstruct.weights import DEFAULT_WEIGHTS, WeightsUnavailable
from backend.protocol import ErrorCode
from backend.requests import ReconstructRequest


class ReconstructPipeline(Pipeline):
    """The "reconstruct" task: per request, the learned shape model or the silhouette baseline.

    ``method="auto"`` (the default) uses the model when its weights load and otherwise the
    baseline, with a warning and ``fallback`` in the metadata naming what is missing;
    ``"model"`` insists on the model (PIPELINE_UNAVAILABLE without it); ``"silhouette"`` always
    runs the baseline, which can look better than an undertrained model on photos far from the
    training data.
    """

    task = "reconstruct"

    def __init__(self, device: str, weights: str | Path = DEFAULT_WEIGHTS):
        super().__init__(device)
        self.silhouette = SilhouetteReconstructPipeline(device)
        weights = Path(weights)
        try:
            self.model: ModelReconstructPipeline | None = ModelReconstructPipeline(device, weights)
            self.model_problem: str | None = None
        except (WeightsUnavailable, OSError) as exc:
            self.model = None
            self.model_problem = f"shape model weights {weights.name} could not be loaded: {exc}"

    def run(self, request: ReconstructRequest, ctx: JobContext) -> PipelineOutput:
        if request.method == "silhouette":
            return self.silhouette.run(request, ctx)
        if self.model is not None:
            return self.model.run(request, ctx)
        if request.method == "model":
            raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE,
                                f"{self.model_problem}. Train or restore the weights (docs/training.md), "
                                "or ask for method 'silhouette'.")
        ctx.warn(f"the learned shape model is not available ({self.model_problem}); used the silhouette-inflation "
                 "baseline instead. Train or restore the weights (docs/training.md).")
        output = self.silhouette.run(request, ctx)
        output.metadata["fallback"] = {"from": ModelReconstructPipeline.method, "reason": self.model_problem}
        return output
