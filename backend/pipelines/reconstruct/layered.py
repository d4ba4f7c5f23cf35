"""The layered-depth solid: the object fills each viewing ray of its outline between the front and
back depth the layered-depth network (`backend.models.layered_depth`) predicts for that pixel
(`backend.geometry.layers`). An outline that is a surface of revolution still becomes one (the
outline solid's rule): for vessels, bottles and cans the symmetry says more than one view's depth.

The solid is built in the photo's camera frame with the photo's pixels, as the outline solid is,
and is finished, reported and judged by the same code (`silhouette.SilhouetteReconstructPipeline`).

Not offered to users yet: the benchmark runs it (`scripts/bench_reconstruct.py --methods layered`).
With the committed network (an hour of CPU training) it beats the outline solid on held-in
procedural shapes and not on the real-object split (docs/reconstruction.md, "Layered depth"), so
`auto` does not use it and the request's `method` does not name it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.errors import PipelineError
from backend.geometry.layers import layered_field
from backend.pipelines.reconstruct.silhouette import OutlineReading, OutlineReconstructPipeline, OutlineSolid
from backend.pipelines.reconstruct.weights import WEIGHTS_DIR, check_weights, torch_device
from backend.protocol import ErrorCode

DEFAULT_LAYERED_WEIGHTS = WEIGHTS_DIR / "layered_depth"
"""The committed layered-depth network (scripts/train_layered_depth.py)."""


class LayeredReconstructPipeline(OutlineReconstructPipeline):
    method = "layered depth (front and back depth from the photo)"

    def __init__(self, device: str, weights: str | Path = DEFAULT_LAYERED_WEIGHTS):
        """Checks the weights' files (`WeightsUnavailable` when they are missing or altered); the
        network itself is loaded on first use."""
        super().__init__(device)
        self.weights = Path(weights)
        self.weights_id = check_weights(self.weights, "layered_depth")
        self._network = None

    def network(self):
        if self._network is None:
            from backend.models.checkpoint import CheckpointError
            from backend.models.layered_depth import load_layered_depth

            try:
                self._network = load_layered_depth(self.weights, torch_device(self.device))[0]
            except CheckpointError as exc:
                raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE,
                                    f"the layered-depth weights {self.weights} cannot be used: {exc}. Retrain them "
                                    "with scripts/train_layered_depth.py (docs/reconstruction.md).") from exc
        return self._network

    def warm_up(self) -> None:
        self.network()

    def solid(self, rgb: np.ndarray, mask: np.ndarray, grid: int, thickness: float,
              principal: tuple[float, float] = (0.0, 0.0), elevation: float = 0.0,
              reading: OutlineReading | None = None) -> OutlineSolid:
        outlined = super().solid(rgb, mask, grid, thickness, principal, elevation, reading)
        if outlined.metadata["solid"] in ("surface of revolution", "box"):
            return outlined
        front, back = self.network().predict(rgb, mask)
        layers = layered_field(mask, front, back, grid)
        inside = mask >= 0.5
        metadata = {"solid": "layered depth", "depth_extent": round(float(back[inside].max() - front[inside].min()), 4),
                    "mean_thickness": round(float((back - front)[inside].mean()), 4)}
        return OutlineSolid(layers.field, metadata, mask, layers.lo, layers.hi)
