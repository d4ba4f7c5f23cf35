"""A real backend process whose ``mine`` pipeline is a test double (tests/test_addon_mine.py).

The request is parsed by the real backend (``MineRequest``) and the result assembled by the real
``backend.pipelines.mine.pipeline.combine``; only the mining itself is faked, from the file names:
``<object>_<n>.png`` photos show ``<object>``, a name containing ``blank`` shows nothing (rejected).
Runs like ``python -m backend serve …`` (see ``blender_env.fake_backend_python``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent)]

from backend.cli import build_parser, run_server  # noqa: E402
from backend.errors import PipelineError  # noqa: E402
from backend.pipelines.base import JobContext, Pipeline, PipelineOutput, PipelineRegistry  # noqa: E402
from backend.protocol import ErrorCode, MeshPayload  # noqa: E402

from addon_support import pipelines  # noqa: E402

SIZES = {"mug": (0.6, 0.6, 1.0), "chair": (1.0, 0.8, 0.5), "lamp": (0.3, 0.3, 1.0)}


def unit_box(size) -> MeshPayload:
    """A textured box of ``size`` proportions, longest side 1, centred (a mined cluster's frame)."""
    box = pipelines.box(tuple(s / max(size) for s in size), textured=True)
    vertices = box.vertices - (box.vertices.min(0) + box.vertices.max(0)) / 2
    normals = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    colors = np.full((len(vertices), 4), 180, np.uint8)
    return MeshPayload(vertices.astype(np.float32), box.faces, normals.astype(np.float32), box.uvs, colors,
                       box.texture_png, "flat")


class FakeMine(Pipeline):
    """Groups photos by the part of their name before ``_``; streams the real stages."""

    task = "mine"

    def run(self, request, ctx: JobContext) -> PipelineOutput:
        from backend.pipelines.mine.pipeline import combine

        ctx.progress("features", 0.1, f"{len(request.names)} photos")
        rejected = {name: why for name, why in request.unreadable.items()}
        rejected.update({n: "no object was found in the photo" for n in request.names if "blank" in n})
        groups: dict[str, list[str]] = {}
        for name in request.names:
            if name not in rejected:
                groups.setdefault(name.split("_")[0].split(".")[0], []).append(name)
        ctx.progress("cluster", 0.3)
        clusters = {k: v for k, v in groups.items() if len(v) >= request.min_photos or len(request.names) == 1}
        outliers = [n for k, v in groups.items() if k not in clusters for n in v]
        if not clusters:
            raise PipelineError(ErrorCode.NO_OBJECT, "no shape was mined: no photos were grouped together (each "
                                f"group needs at least {request.min_photos}); outliers: " + ", ".join(outliers))
        meshes, entries = [], []
        for number, (key, names) in enumerate(sorted(clusters.items())):
            ctx.check()
            ctx.progress("reconstruct", 0.4 + 0.1 * number, f"cluster_{number + 1:02d}")
            meshes.append(unit_box(SIZES.get(key, (1.0, 1.0, 1.0))))
            cameras = {n: {"azimuth": 30.0 * i, "elevation": 10.0, "fov": 30.0, "distance": 3.0,
                           "target": [0.0, 0.0, 0.0]} for i, n in enumerate(names)}
            entries.append({"name": f"cluster_{number + 1:02d}", "images": names, "reference": names[0],
                            "cameras": cameras, "fidelity": {n: 0.9 for n in names}, "shape_from": "test double",
                            "judged_by": names, "cut_by": names[:1], "self_check_iou": 0.9})
        ctx.progress("texture", 0.9)
        ctx.progress("assemble", 0.97, f"{len(meshes)} object(s)")
        if len(request.names) == 1:
            ctx.warn(f"only one photo ({request.names[0]}) shows an object: it is reconstructed on its own")
        return PipelineOutput(combine(meshes, entries, request.texture), {
            "method": "test-double mine", "photos": len(request.names), "clusters": entries,
            "outliers": [{"image": n, "reason": "looks like no other photo's object"} for n in outliers],
            "rejected": [{"image": n, "reason": why} for n, why in rejected.items()],
            "min_photos": request.min_photos})


def main() -> int:
    args = build_parser().parse_args(["serve", *sys.argv[1:]])
    registry = PipelineRegistry()
    registry.register("mine", FakeMine)
    registry.register("reconstruct", pipelines.TexturedReconstruct)
    return run_server(args, registry)


if __name__ == "__main__":
    sys.exit(main())
