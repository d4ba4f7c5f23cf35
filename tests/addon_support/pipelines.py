"""Test-double pipelines for the add-on tests: real meshes with UVs, textures and vertex colours.

They stand in for the text and stylize paths (which come from other issues) inside a real backend
process; the add-on cannot tell them from the real thing, which is the point.
"""

from __future__ import annotations

import io
import time

import numpy as np

from backend.errors import PipelineError
from backend.pipelines.base import JobContext, Pipeline, PipelineOutput
from backend.protocol import ErrorCode, MeshPayload


def png(width: int = 32, height: int = 32) -> bytes:
    from PIL import Image

    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 128)], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def box(size=(2.0, 1.0, 0.5), textured: bool = True) -> MeshPayload:
    """A box (8 corners duplicated per face: 24 vertices, 12 triangles) with UVs and colours."""
    sx, sy, sz = (s / 2 for s in size)
    faces_corners = [
        [(-1, -1, -1), (-1, 1, -1), (1, 1, -1), (1, -1, -1)],  # bottom (-z)
        [(-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)],      # top (+z)
        [(-1, -1, -1), (1, -1, -1), (1, -1, 1), (-1, -1, 1)],  # front (-y)
        [(1, 1, -1), (-1, 1, -1), (-1, 1, 1), (1, 1, 1)],      # back (+y)
        [(-1, 1, -1), (-1, -1, -1), (-1, -1, 1), (-1, 1, 1)],  # left (-x)
        [(1, -1, -1), (1, 1, -1), (1, 1, 1), (1, -1, 1)],      # right (+x)
    ]
    vertices, faces, uvs = [], [], []
    for quad in faces_corners:
        base = len(vertices)
        vertices += [(x * sx, y * sy, z * sz + sz) for x, y, z in quad]  # standing on z = 0
        uvs += [(0, 0), (1, 0), (1, 1), (0, 1)]
        faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    v = np.array(vertices, np.float32)
    colors = np.concatenate([(v - v.min(0)) / np.ptp(v, 0) * 255, np.full((len(v), 1), 255)], 1).astype(np.uint8)
    if textured:
        return MeshPayload(v, np.array(faces, np.int32), None, np.array(uvs, np.float32), None, png(), "flat")
    return MeshPayload(v, np.array(faces, np.int32), None, None, colors, None, "smooth")


class TexturedReconstruct(Pipeline):
    """A few steps with a mesh preview and a point preview; returns a textured box."""

    task = "reconstruct"
    steps = 6
    step_s = 0.05

    def run(self, request, ctx: JobContext) -> PipelineOutput:
        for step in range(self.steps):
            ctx.check()
            time.sleep(self.step_s)
            ctx.progress("refine", (step + 1) / self.steps, f"step {step + 1}", eta_s=(self.steps - step) * self.step_s)
            if step == 1:
                ctx.preview_points(np.random.default_rng(0).random((50, 3), dtype=np.float32))
            if step == 3:
                ctx.preview_mesh(box((1.0, 1.0, 1.0), textured=False))
        return PipelineOutput(box(), {"method": "test-double textured box", "images": len(getattr(request, "images", []))})


class SlowReconstruct(TexturedReconstruct):
    """Long enough to cancel, or to kill the backend under it."""

    steps = 600


class EchoGenerate(TexturedReconstruct):
    task = "generate"
    steps = 3

    def run(self, request, ctx: JobContext) -> PipelineOutput:
        output = super().run(request, ctx)
        if request.texture == "vertex":
            output.mesh = box(textured=False)
        output.metadata.update(method="test-double generate", prompt=request.prompt)
        return output


class EchoStylize(Pipeline):
    """Returns the mesh it was sent, painted with vertex colours, so geometry round-trips are testable."""

    task = "stylize"

    def run(self, request, ctx: JobContext) -> PipelineOutput:
        ctx.progress("paint", 0.5)
        mesh = request.mesh
        colors = np.full((len(mesh.vertices), 4), 200, np.uint8)
        out = MeshPayload(mesh.vertices, mesh.faces, None, mesh.uvs, colors, None, mesh.shading)
        return PipelineOutput(out, {"method": "test-double stylize", "prompt": request.prompt,
                                    "mode": request.mode, "triangles_in": int(len(mesh.faces))})


class MissingModel(Pipeline):
    """Like a real pipeline whose weights are not installed."""

    task = "generate"

    def unavailable_reason(self) -> str | None:
        return "no text-to-shape weights: run scripts/train_text (see docs/text.md)"

    def run(self, request, ctx):
        raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE, self.unavailable_reason())
