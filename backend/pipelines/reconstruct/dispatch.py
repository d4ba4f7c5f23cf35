"""The "reconstruct" task as the server runs it: the outline solid, the learned model or the
silhouette baseline, per request and by what is installed and what comes out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.errors import PipelineError
from backend.geometry.outline import PLAIN, is_frame, long_side_share, see_through
from backend.geometry.surface_quality import surface_quality
from backend.pipelines.base import JobContext, Pipeline, PipelineOutput
from backend.pipelines.reconstruct.model import ModelReconstructPipeline
from backend.pipelines.reconstruct.silhouette import (
    OutlineReconstructPipeline,
    SilhouetteReconstructPipeline,
    SolidShape,
)
from backend.pipelines.reconstruct.weights import DEFAULT_WEIGHTS, WeightsUnavailable
from backend.protocol import ErrorCode
from backend.requests import ReconstructRequest

MAX_PIECES = 2
"""A model result in more pieces than this is shredded (a handle may come apart from its body
once; fins and scraps make dozens)."""

MAX_SHARP_EDGES = 0.05
"""A model result sharp along more than this share of its edges is shredded (clean results: under
0.01; the committed weights on photos unlike their training data: 0.2-0.3)."""

MAX_RIPPLES = 0.10
"""A model result rippled over more than this share of its area is ribbed (docs/reconstruction.md,
"Ripples": every result that looked ribbed or finned in the review sheets was over 0.10, and those
under it smooth or faintly striped)."""

MAX_UNBLURRED_RIPPLES = 0.15
"""Served results are smoothed by the encoding blur (`weights.ENCODING_BLUR`), which hides the
ribs and closes the cracks of the network's own field but not what they say: that the photo is
unlike the model's training renders. So the same code's field without the blur is judged too, by
the limits above (its large pieces: crumbs the blur closes do not count) and by this share of
rippled area: looser than `MAX_RIPPLES`, since its ribs are not what the user gets
(docs/reconstruction.md, "Ripples": on the real split the results this keeps that 0.10 did not
beat the outline solid; the cat's, at 0.19, lost to it by 0.3 F@5%)."""

FRAME_MAX_RIPPLES = 0.20
"""The ripple limit for a photo whose outline is an open frame (`backend.geometry.outline.is_frame`:
a chair, a stool, a shelf seen through in several places). There the outline solid is a flat
cut-out with holes, as poor a guess of the depth as a ribbed surface is of the shape, so the
model's result is kept unless it is in pieces, finned or ribbed over more than this, and the
field without the blur is not judged (real split: the oak chair's three photos, rippled over
8-17 % and in 8 large pieces unblurred on one, F@5% 0.80-0.87 against the cut-out's 0.46-0.61)."""

FRAME_REASON = ("the outline is an open frame ({holes} holes seen through, {share:.0%} of it): the outline solid "
                "would be a flat cut-out, and the shape model's surface is clean enough")
"""Why `auto` keeps a frame's model result that the usual limits would turn away."""

PLAIN_REASON = ("the outline is plain, {share:.0%} of it along long sides: inflated, it would be a pillow where a "
                "sofa, a table or a cabinet is flat and square, and the shape model's surface is clean enough")
"""Why `auto` keeps the model's result for a plain outline (`backend.geometry.outline.PLAIN`) by the
limits of a frame's (`FRAME_MAX_RIPPLES`, the served surface only): on the catalogue, held-in and
real splits, 18 of the 19 photos whose result this kept and the usual limits turned away were
closer to the object than the inflation, by 0.02-0.56 F@5%, and a bath 0.17 further (default
preset, 2026-12-08)."""


RIM_REASON = ("the outline shows the rim of a turned object seen from {elevation:.0f} degrees above: the outline "
              "solid is that whole object")
"""Why `auto` keeps the outline solid without running the model. A vessel, a can, a gear or a nut
photographed from above shows its rim's ellipse; then the surface of revolution about the axis
tilted by the rim's elevation is the object, and the model only guesses (real split: the nut's and
the gear's rim photos, F@5% 0.65 and 0.97 against the model's 0.53 and 0.48; on the held-in
procedural split the model was never kept on a rim photo)."""

BOX_REASON = ("the outline and its creases are a box's, seen from {elevation:.0f} degrees above: the outline solid "
              "is that whole box")
"""Why `auto` keeps a box without running the model: a box's hexagonal outline and the creases
between its three visible faces fix every side of it (`backend.geometry.cuboid`), where the model
only guesses (`scripts/render_box_split.py`, 30 photos of 10 boxes rendered like the real split:
the 10 found as boxes score F@5% 1.0, F@2% 1.0 but one view from 8° at 0.63, where `auto` had
kept the model's result at F@2% 0.31-0.75 or the outline solid at 0.14-0.38)."""

SQUARE_ON_REASON = ("the outline is a box's seen square-on to a face that the photo shows flat{parts}: the outline "
                    "solid is that box, as deep as it is wide")
"""Why `auto` keeps a box seen square-on: no creases show and its depth is guessed, but the model
guesses too (the real split's lego brick seen so, with its studs: F@5% 0.82 as the box)."""


ROUNDED_REASON = ("the outline is an ellipse (IoU {rounded:.2f} with its own): a rounded body's, a fruit's or a "
                  "pebble's, which the outline solid inflates")
"""Why `auto` keeps the inflation of a rounded outline
(`backend.pipelines.reconstruct.silhouette.ROUNDED_OUTLINE`) without running the model: the model's
guess of such a body's depth was the worse one on the real split (the lemon's photos 0.87-0.88
F@5% against the inflation's 1.0; default preset, 2026-12-08), and right only on the held-in
split's procedural rocks, slabs of its own generator (0.64-0.97 against 0.41-0.67)."""


def box_reason(box: dict) -> str:
    """`BOX_REASON` or, for a box seen square-on (its depth guessed), `SQUARE_ON_REASON`."""
    if "depth" not in box:
        return BOX_REASON.format(**box)
    parts = box.get("parts", 0)
    return SQUARE_ON_REASON.format(parts=f", with {parts} part{'s' if parts > 1 else ''} on its top" if parts else "")


class ReconstructPipeline(Pipeline):
    """The "reconstruct" task.

    ``method="auto"`` (the default) builds the outline solid of a single photo first, and keeps it
    when the photo shows a turned object's rim (`RIM_REASON`), a box (`box_reason`) or an ellipse
    (`ROUNDED_REASON`); otherwise it runs the learned model when its weights load and keeps its
    result when the surface is clean (`backend.geometry.surface_quality`; judged more loosely where
    the outline solid is a poor guess: `poor_outline_solid`); a shredded or ribbed result, or no model, gives the
    outline solid instead (stood up by the elevation of the camera the model fitted, when it
    ran: `estimated_elevation`), and ``metadata["auto"]`` says which ran and why.
    ``"model"`` insists on the model (PIPELINE_UNAVAILABLE without it, its result whatever it
    looks like); ``"outline"`` and ``"silhouette"`` (the baseline) always run those.
    """

    task = "reconstruct"

    def __init__(self, device: str, weights: str | Path = DEFAULT_WEIGHTS):
        super().__init__(device)
        self.silhouette = SilhouetteReconstructPipeline(device)
        self.outline = OutlineReconstructPipeline(device)
        weights = Path(weights)
        try:
            self.model: ModelReconstructPipeline | None = ModelReconstructPipeline(device, weights)
            self.model_problem: str | None = None
        except (WeightsUnavailable, OSError) as exc:
            self.model = None
            self.model_problem = f"shape model weights {weights.name} could not be loaded: {exc}"

    def warm_up(self) -> None:
        if self.model is not None:
            self.model.warm_up()

    def run(self, request: ReconstructRequest, ctx: JobContext) -> PipelineOutput:
        if request.method == "silhouette":
            return self.silhouette.run(request, ctx)
        if request.method == "outline":
            return self.outline.run(request, ctx)
        if request.method == "model":
            if self.model is None:
                raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE,
                                    f"{self.model_problem}. Train or restore the weights (docs/training.md), "
                                    "or ask for method 'outline'.")
            return self.model.run(request, ctx)
        return self._auto(request, ctx)

    def _auto(self, request: ReconstructRequest, ctx: JobContext) -> PipelineOutput:
        if self.model is None:
            output = self.outline.run(request, ctx)
            output.metadata["auto"] = {"chose": "outline", "reason": self.model_problem}
            return output
        before = len(ctx.warnings)
        # One photo: the outline solid first (half a second). When the photo shows a turned
        # object's rim, it knows the whole object, its hidden side by symmetry and its elevation by
        # the rim; a box's outline and creases fix the whole box; an ellipse is a rounded body's,
        # whose depth the inflation guesses better than the model. Several photos are the model's to
        # fit together (the outline solid sees only the first), so theirs is built only if the
        # model's result is turned away.
        single = len(request.images) == 1
        outlined, outline_error = (self._outline_shape(request, _Squeezed(ctx, OUTLINE_FIRST_SHARE)) if single
                                   else (None, None))
        solid = outlined.solid_metadata if outlined is not None else {}
        reason = outline_is_the_object(solid)
        if reason is not None:
            output = self.outline.finish(outlined, request, ctx)
            output.metadata["auto"] = {"chose": "outline", "reason": reason}
            return output
        outline_warnings = ctx.warnings[before:]
        del ctx.warnings[before:]
        loose = poor_outline_solid(outlined)
        # judged before texturing: a discarded surface costs no UV unwrap or bake
        shaped = self.model.shape(request, ctx)
        problem, surface = judge_model_result(self.model, shaped, ctx, poor_outline=loose is not None)
        if problem is None:
            modelled = self.model.finish(shaped, request, ctx)
            modelled.metadata["auto"] = {"chose": "model", "surface": surface}
            if loose is not None:
                modelled.metadata["auto"]["reason"] = loose
            return modelled
        # the discarded result's warnings are about a mesh the user never gets
        model_warnings = ctx.warnings[before:]
        ctx.warnings[before:] = outline_warnings
        ctx.progress("outline", 0.8, f"the shape model's surface is {problem}: the outline solid instead")
        if not single:
            outlined, outline_error = self._outline_shape(request, ctx)
        if outline_error is not None:
            raise outline_error
        elevation = estimated_elevation(shaped)
        if elevation and not outlined.elevation:
            outlined = self.outline.lifted(outlined, request, ctx, elevation, ELEVATION_SOURCE)
        output = self.outline.finish(outlined, request, ctx)
        model_timings = {f"model_{k}": round(v, 3) for k, v in shaped.timings.items()}
        timings = {**model_timings, **output.metadata["timings_s"]}
        timings["total_s"] = round(sum(v for k, v in timings.items() if k != "total_s"), 3)
        output.metadata["timings_s"] = timings
        output.metadata["auto"] = {"chose": "outline", "reason": f"the shape model's surface is {problem}",
                                   "model_surface": surface, "model_warnings": model_warnings}
        return output

    def _outline_shape(self, request: ReconstructRequest, ctx) -> tuple[SolidShape | None, PipelineError | None]:
        """(the outline solid's shape or None, the error that stopped it or None): an outline too
        thin to fill has no solid, and the model may still do."""
        try:
            return self.outline.shape(request, ctx), None
        except PipelineError as exc:
            return None, exc


def outline_is_the_object(solid: dict) -> str | None:
    """Why the outline solid (its ``solid_metadata``) is kept without running the model, or None:
    a turned object's rim, a box, a rounded body."""
    if solid.get("rim") is not None:
        return RIM_REASON.format(**solid["rim"])
    if solid.get("solid") == "box":
        return box_reason(solid["box"])
    if "rounded" in solid:
        return ROUNDED_REASON.format(rounded=solid["rounded"])
    return None


def poor_outline_solid(outlined: SolidShape | None) -> str | None:
    """Why the outline solid is a poor guess of the object's depth, so that the model's result is
    judged by the limits of `FRAME_MAX_RIPPLES` (`FRAME_REASON`, `PLAIN_REASON`), or None: an
    open frame would be a flat cut-out, and a plain outline inflated a pillow (a surface of
    revolution is the outline solid's own reading of the depth, and stands)."""
    if outlined is None:
        return None
    holes, share = see_through(outlined.mask >= 0.5)
    if is_frame(holes, share):
        return FRAME_REASON.format(holes=holes, share=share)
    if outlined.solid_metadata.get("solid") == "inflation":
        share = long_side_share(outlined.mask)
        if share >= PLAIN:
            return PLAIN_REASON.format(share=share)
    return None


ELEVATION_SOURCE = "the shape model's fitted camera (its surface was not kept)"

MAX_ESTIMATED_ELEVATION = 60.0
"""Degrees: the model is trained on cameras from 10 below to 60 above; an estimate is clamped to this."""


def estimated_elevation(shaped) -> float:
    """Degrees by which the model's fitted camera of the first photo looks down on the object, for
    the outline solid when the model's surface is turned away: its surface may be shredded, its
    camera is still the best guess there is (real split: 11 degrees off on average, where level,
    the outline solid's guess without a rim, is 22 off). A camera looking up is taken as level:
    photographed objects stand on something, and on the real split the estimates below 0 were 4-48
    degrees low."""
    if shaped.elevation is None:
        return 0.0
    return float(np.clip(shaped.elevation, 0.0, MAX_ESTIMATED_ELEVATION))


OUTLINE_FIRST_SHARE = 0.02
"""The share of the progress bar that the outline solid `auto` builds first reports into, so
that the model's own progress, which starts there, does not run backwards."""


class _Squeezed:
    """The job's context with its progress fractions squeezed into [0, ``share``]; cancel, the
    deadline, warnings and previews pass through."""

    def __init__(self, ctx: JobContext, share: float):
        self.ctx, self.share = ctx, share

    def progress(self, stage: str, fraction: float, message: str = "", eta_s: float | None = None) -> None:
        self.ctx.progress(stage, self.share * fraction, message, eta_s)

    def __getattr__(self, name: str):
        return getattr(self.ctx, name)


def judge_model_result(model: ModelReconstructPipeline, shaped, ctx: JobContext,
                       poor_outline: bool = False) -> tuple[str | None, dict]:
    """(what is wrong with the model's result or None, its surface figures): the rule `auto` and
    mining keep the model's results by. The unblurred field is only meshed for a result that
    passes the cheaper checks; for a photo whose outline solid is a ``poor_outline`` guess (an open
    frame's, a plain outline's: `poor_outline_solid`), only the served surface is judged, by
    `FRAME_MAX_RIPPLES`."""
    quality = surface_quality(shaped.vertices, shaped.faces)
    surface = quality.as_dict()
    problem = shredded(quality, max_ripples=FRAME_MAX_RIPPLES if poor_outline else MAX_RIPPLES)
    if problem is None and not poor_outline:
        unblurred = surface_quality(*model.unblurred_surface(shaped, ctx))
        surface["unblurred"] = unblurred.as_dict()
        problem = shredded(unblurred, unblurred=True)
    return problem, surface


def shredded(quality, unblurred: bool = False, max_ripples: float = MAX_RIPPLES) -> str | None:
    """What is wrong with a surface, or None when it is clean. ``unblurred``: the model's field
    without the encoding blur, judged by its large pieces and the looser ripple limit."""
    pieces, what = (quality.large_pieces, "large pieces") if unblurred else (quality.pieces, "pieces")
    max_ripples = MAX_UNBLURRED_RIPPLES if unblurred else max_ripples
    where = " before the encoding blur" if unblurred else ""
    if pieces > MAX_PIECES:
        return f"in {pieces} {what}{where}"
    if quality.sharp_edge_share > MAX_SHARP_EDGES:
        return f"sharp along {quality.sharp_edge_share:.0%} of its edges{where}"
    if quality.ripple_share > max_ripples:
        return f"rippled over {quality.ripple_share:.0%} of its area{where}"
    return None
