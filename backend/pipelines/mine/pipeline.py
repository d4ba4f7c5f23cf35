"""The "mine" task: a collection of photos -> one textured mesh per object found in it.

Stages (each streamed as progress, cancel checked throughout):

1. **features**: each photo is decoded (one at a time: only its crops are kept), its object found
   (`backend.segmentation`; a photo without one is rejected with the reason), embedded
   (`backend.models.photo_embedding`) and its colours histogrammed (`clusters`).
2. **clustering**: photos of one object grouped (`clusters.group_photos`); small groups are outliers.
3. **reconstruction**, per cluster: cameras and shape fitted to all its photos together
   (`shape.pool_cluster`), meshed, textured from the photos that see each point (`colour`).

The result is one message: every cluster's mesh, moved side by side along X, in one mesh; its
metadata lists the clusters (their photos, vertex and face ranges, offsets, per-photo cameras and
how well each photo's outline is explained), the outliers and the rejected photos
(`backend.protocol.split_mined` takes it apart again).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.errors import PipelineError
from backend.pipelines.base import JobContext, Pipeline, PipelineOutput
from backend.pipelines.mine.clusters import (
    EMBEDDING_WEIGHT,
    ENCODER_WEIGHT,
    colour_histogram,
    group_photos,
    photo_distances,
)
from backend.pipelines.mine.photos import crop_photo
from backend.pipelines.mine.pooled import CARVE_CONFIDENCE
from backend.pipelines.reconstruct.model import ModelReconstructPipeline
from backend.pipelines.reconstruct.weights import WEIGHTS_DIR, WeightsUnavailable, check_weights
from backend.protocol import ErrorCode, MeshPayload
from backend.requests import MineRequest

DEFAULT_EMBEDDING = WEIGHTS_DIR / "photo_embedding"
"""The committed photo embedding (scripts/train_photo_embedding.py)."""


@dataclass(frozen=True)
class MinePreset:
    grid: int
    """Marching-cubes grid of each cluster's shape."""
    max_faces: int
    texture_size: int
    """Side of each cluster's texture (the atlas holds one tile per cluster)."""


PRESETS = {
    "preview": MinePreset(grid=48, max_faces=4_000, texture_size=320),
    "default": MinePreset(grid=96, max_faces=10_000, texture_size=640),
    "high": MinePreset(grid=144, max_faces=40_000, texture_size=1280),
}

MAX_ATLAS = 4096
"""Largest side of the texture atlas: tiles shrink to fit when there are many clusters."""

MODEL_CANDIDATES = 3
"""Photos per cluster (the most confident) that the learned shape model also reconstructs as
candidates: it knows what the outline solid cannot (a chair's legs, open backs), and its clean
results compete with the outline solids on how well they explain every photo."""

MODEL_BOUND = 0.55
"""The shape model's field is trusted inside this box (its training volume)."""

CLUSTER_SPACING = 1.5
"""Distance along X between neighbouring clusters' centres in the combined mesh (unit-size meshes)."""


class MinePipeline(Pipeline):
    task = "mine"
    method = "photo clustering + pooled multi-view reconstruction (3DMiner-style)"

    def __init__(self, device: str, embedding: str | Path = DEFAULT_EMBEDDING):
        super().__init__(device)
        self.embedding_path = Path(embedding)
        try:
            self.embedding_id: str | None = check_weights(self.embedding_path, "photo_embedding")
            self.problem: str | None = None
        except WeightsUnavailable as exc:
            self.embedding_id = None
            self.problem = (f"the photo embedding mining groups photos with cannot be loaded ({exc}); train it with "
                            "scripts/train_photo_embedding.py (docs/mining.md)")
        self._lock = threading.Lock()
        self._model = None
        try:
            self.shape_model: ModelReconstructPipeline | None = ModelReconstructPipeline(device)
        except (WeightsUnavailable, OSError):
            self.shape_model = None  # the outline solids alone are the candidates

    def unavailable_reason(self) -> str | None:
        return self.problem

    def warm_up(self) -> None:
        self.model()

    def model(self):
        from backend.models.photo_embedding import load_photo_embedding
        from backend.pipelines.reconstruct.weights import torch_device

        if self.problem is not None:
            raise PipelineError(ErrorCode.PIPELINE_UNAVAILABLE, self.problem)
        with self._lock:
            if self._model is None:
                self._model = load_photo_embedding(self.embedding_path, torch_device(self.device))[0]
            return self._model

    def run(self, request: MineRequest, ctx: JobContext) -> PipelineOutput:
        preset = PRESETS[request.common.quality]
        started = time.perf_counter()
        photos, sources, descriptors, histograms, rejected = self._features(request, ctx)
        rejected = {**{name: f"cannot be read: {why}" for name, why in request.unreadable.items()}, **rejected}
        total = len(request.names) + len(request.unreadable)
        if not photos:
            raise PipelineError(ErrorCode.NO_OBJECT, f"no object was found in any of the {total} photos: "
                                + "; ".join(f"{n}: {why}" for n, why in list(rejected.items())[:3]))
        features_s = time.perf_counter() - started

        ctx.progress("cluster", 0.3, f"grouping {len(photos)} photos")
        unsure_members: set[int] = set()
        if len(photos) == 1:
            grouping_clusters, outliers = [[0]], []
            ctx.warn(f"only one photo ({photos[0].name}) shows an object: it is reconstructed on its own, nothing "
                     "was pooled")
        else:
            weights = (EMBEDDING_WEIGHT, ENCODER_WEIGHT)  # the encoder's when the shape model is installed
            per_kind = [(np.stack([d[k] for d in descriptors]), weights[k]) for k in range(len(descriptors[0]))]
            grouping = group_photos(photo_distances(per_kind, np.stack(histograms)), request.min_photos)
            grouping_clusters, outliers = grouping.clusters, grouping.outliers
            # a group in which no photo's outline can be trusted (`pooled.CARVE_CONFIDENCE`) would
            # get a shape made from failed segmentations (a floor, a shadow, half the object)
            unsure_groups = [c for c in grouping_clusters if max(photos[i].confidence for i in c) < CARVE_CONFIDENCE]
            grouping_clusters = [c for c in grouping_clusters if c not in unsure_groups]
            unsure_members = {i for c in unsure_groups for i in c}
            outliers = sorted([*outliers, *unsure_members])
        cluster_s = time.perf_counter() - started - features_s

        meshes, entries = [], []
        for number, members in enumerate(grouping_clusters):
            ctx.check()
            span = (0.35 + 0.6 * number / len(grouping_clusters), 0.35 + 0.6 * (number + 1) / len(grouping_clusters))
            mesh, entry = self._cluster(number, [photos[i] for i in members], [sources[i] for i in members], request,
                                        preset, span, ctx)
            meshes.append(mesh)
            entries.append(entry)
        if not meshes:
            why = (f"no {request.min_photos} photos look like the same object"
                   + ("; the groups that were found have no clearly segmented photo (a plain or transparent "
                      "background works best)" if unsure_members else ""))
            raise PipelineError(ErrorCode.NO_OBJECT, f"no shape was mined: {why}; outliers: "
                                + ", ".join(photos[i].name for i in outliers))
        ctx.progress("assemble", 0.97, f"{len(meshes)} object(s)")
        combined = combine(meshes, entries, request.texture)
        total_s = time.perf_counter() - started
        metadata = {
            "method": self.method,
            "photos": total,
            "clusters": entries,
            "outliers": [{"image": photos[i].name,
                          "reason": ("grouped only with photos in which the object was not found clearly "
                                     "(a busy background): no outline to shape it by"
                                     if i in unsure_members else "looks like no other photo's object")}
                         for i in outliers],
            "rejected": [{"image": name, "reason": why} for name, why in rejected.items()],
            "embedding": {"id": self.embedding_id, "path": self.embedding_path.name},
            "timings_s": {"features_s": round(features_s, 3), "cluster_s": round(cluster_s, 3),
                          "reconstruct_s": round(total_s - features_s - cluster_s, 3), "total_s": round(total_s, 3)},
        }
        return PipelineOutput(combined, metadata)

    # ------------------------------------------------------------------ stages

    def _features(self, request: MineRequest, ctx: JobContext):
        import torch

        from backend.pipelines.reconstruct.inputs import object_crop

        model = self.model()
        photos, sources, descriptors, histograms, rejected = [], [], [], [], {}
        unsure = _Unsure(ctx)
        for index, encoded in enumerate(request.encoded):
            ctx.check()
            ctx.progress("features", 0.02 + 0.25 * index / len(request.encoded),
                         f"photo {index + 1}/{len(request.encoded)}: {encoded.name}")
            image = encoded.decode()
            unsure.current = encoded.name
            try:
                photo = crop_photo(image, encoded.name, unsure)
            except PipelineError as exc:
                if exc.code != ErrorCode.NO_OBJECT:
                    raise
                rejected[encoded.name] = exc.message
                continue
            crop, _ = object_crop(image.rgba, image.segmentation.mask, model.config.image_size)
            with torch.no_grad():
                descriptor = [model.embed(torch.from_numpy(crop.transpose(2, 0, 1)[None].copy()).to(
                    next(model.parameters()).device))[0].cpu().numpy()]
                if self.shape_model is not None:
                    encoder = self.shape_model.model.encoder
                    crop, _ = object_crop(image.rgba, image.segmentation.mask, encoder.config.image_size)
                    x = torch.from_numpy(crop.transpose(2, 0, 1)[None].copy()).to(self.shape_model.torch_device)
                    descriptor.append((encoder.features(x) + encoder.features(x.flip(-1)))[0].float().cpu().numpy())
            photos.append(photo)
            sources.append(encoded)
            descriptors.append(descriptor)
            histograms.append(colour_histogram(photo.rgb, photo.colour_mask))
        if unsure.names:
            ctx.warn(f"the object was found with low confidence in {len(unsure.names)} photo(s) "
                     f"({', '.join(unsure.names[:5])}{', ...' if len(unsure.names) > 5 else ''}): they are grouped "
                     "and get cameras, but do not judge the shape. Photos on a plain or transparent background "
                     "work best.")
        return photos, sources, descriptors, histograms, rejected

    def _cluster(self, number: int, photos, sources, request: MineRequest, preset: MinePreset, span,
                 ctx: JobContext):
        from backend.geometry.fidelity import silhouette_fidelity
        from backend.geometry.finish import finish_mesh
        from backend.geometry.mesh_ops import normalise_unit
        from backend.pipelines.mine.colour import cluster_colour
        from backend.pipelines.mine.pooled import carving_photos, outline_candidates, pool_cluster

        name = f"cluster_{number + 1:02d}"
        lo, hi = span
        confident = carving_photos(photos)
        candidates = outline_candidates(photos, confident)
        if self.shape_model is not None:
            ctx.progress("reconstruct", lo, f"{name}: the shape model's candidates")
            candidates += self._model_candidates(photos, sources, confident, request, ctx)
        ctx.progress("reconstruct", lo, f"{name}: fitting {len(photos)} photos")
        def on_step(share: float, text: str) -> None:
            ctx.progress("reconstruct", lo + (hi - lo) * 0.8 * share, f"{name}: {text}")

        pooled = pool_cluster(photos, candidates, confident, preset.grid, request.face_budget or preset.max_faces,
                              ctx, on_step=on_step)
        ctx.progress("texture", lo + (hi - lo) * 0.85, f"{name}: texture")
        colour = cluster_colour(pooled.vertices, pooled.faces, pooled.fit.views, photos, pooled.colour_weights)
        mesh = finish_mesh(pooled.vertices, pooled.faces, colour, texture=request.texture,
                           texture_size=preset.texture_size)
        mesh.vertices, scale, centre = normalise_unit(mesh.vertices)
        cameras, fidelity = {}, {}
        for photo, view in zip(photos, pooled.fit.views):
            camera = view.metadata(scale, centre)
            cameras[photo.name] = camera
            fidelity[photo.name] = silhouette_fidelity(mesh.vertices, mesh.faces, camera,
                                                       photo.carve_mask)["silhouette_iou"]
        reference = photos[pooled.fit.reference].name
        entry = {
            "name": name,
            "images": [p.name for p in photos],
            "reference": reference,
            "cameras": cameras,
            "fidelity": fidelity,
            "shape_from": pooled.shape_from,
            "judged_by": [photos[i].name for i in confident],
            "cut_by": [photos[i].name for i in np.nonzero(pooled.fit.used)[0]],
            "self_check_iou": round(pooled.fit.score, 4),
        }
        return mesh, entry


    def _model_candidates(self, photos, sources, confident: list[int], request: MineRequest, ctx: JobContext):
        """The shape model's reconstructions of the most confident photos whose surfaces are clean
        (the rule `auto` keeps them by, an open frame's included; a plain outline's is not: the
        photo's outline solid is not built here), as candidates."""
        from backend.geometry.outline import is_frame, see_through
        from backend.pipelines.mine.pooled import Candidate
        from backend.pipelines.reconstruct.dispatch import judge_model_result
        from backend.requests import CommonParams, ReconstructRequest

        ranked = sorted(confident, key=lambda i: -photos[i].confidence)[:MODEL_CANDIDATES]
        candidates = []
        quiet = _Quiet(ctx)
        for index in ranked:
            ctx.check()
            image = sources[index].decode()
            single = ReconstructRequest([image], CommonParams(quality=request.common.quality, seed=request.common.seed),
                                        texture="none")
            shaped = self.shape_model.shape(single, quiet)
            frame = is_frame(*see_through(photos[index].solid_mask >= 0.5))
            if judge_model_result(self.shape_model, shaped, quiet, poor_outline=frame)[0] is not None:
                continue
            candidates.append(Candidate(index, shaped.elevation,
                                        model_field(self.shape_model.model, shaped.refined),
                                        f"the shape model's reconstruction of {photos[index].name}"))
        return candidates


class _Quiet:
    """The job's context for work whose progress, previews and warnings are not the user's (a
    candidate shape that may be thrown away): only cancel and the deadline pass through."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx

    def check(self) -> None:
        self.ctx.check()

    def warn(self, text: str) -> None:
        pass

    def progress(self, *args, **kwargs) -> None:
        pass

    def preview_mesh(self, mesh) -> None:
        pass

    def preview_points(self, points, colors=None) -> None:
        pass


class _Unsure(_Quiet):
    """The job's context for finding the object in one photo after another: its warnings about an
    unsure segmentation become one line naming the photos, not one line per photo."""

    def __init__(self, ctx: JobContext):
        super().__init__(ctx)
        self.names: list[str] = []
        self.current = ""

    def warn(self, text: str) -> None:
        if self.current not in self.names:
            self.names.append(self.current)


def model_field(model, refined: dict):
    """The refined shape model's field in the mining frame (upright, its photo's camera at azimuth
    0), shrunk like the outline solids: points [N, 3] -> [N] inside-positive."""
    import torch

    from backend.pipelines.mine.pooled import GUESS_SCALE

    azimuth = float(refined["angles"][0, 0])
    c, s = math.cos(azimuth), math.sin(azimuth)
    rotation = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    sdf = model.sdf_field(refined["shape"])
    device = refined["shape"].device

    def field(points):
        local = points @ rotation.T / GUESS_SCALE
        with torch.no_grad():
            values = -sdf(local.to(device)).float().cpu()
        outside = (local.abs() - MODEL_BOUND).clamp_min(0).norm(dim=-1)
        # beyond the trusted box nothing is inside; within it the network's field stands
        return torch.where(outside > 0, torch.minimum(values, -outside), values) * GUESS_SCALE

    return field


def combine(meshes: list[MeshPayload], entries: list[dict], texture: str) -> MeshPayload:
    """One mesh of every cluster's, side by side along X; fills each entry's ``vertices``,
    ``faces``, ``offset`` and (with textures) ``uv_tile``."""
    from PIL import Image

    from backend.images import encode_png

    count = len(meshes)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    tile = None
    if texture == "uv" and all(m.texture_png for m in meshes):
        import io

        tiles = [Image.open(io.BytesIO(m.texture_png)).convert("RGB") for m in meshes]
        tile = min(min(t.size[0] for t in tiles), MAX_ATLAS // max(columns, rows))
        atlas = Image.new("RGB", (columns * tile, rows * tile), (255, 255, 255))
    vertices, faces, normals, uvs, colours = [], [], [], [], []
    start_v = start_f = 0
    for k, (mesh, entry) in enumerate(zip(meshes, entries)):
        offset = np.array([CLUSTER_SPACING * (k - (count - 1) / 2), 0.0, 0.0], np.float32)
        vertices.append(mesh.vertices + offset)
        faces.append(mesh.faces + start_v)
        normals.append(mesh.normals)
        entry.update(vertices=[start_v, start_v + len(mesh.vertices)], faces=[start_f, start_f + len(mesh.faces)],
                     offset=[round(float(o), 6) for o in offset])
        if tile is not None:
            column, row = k % columns, k // columns
            atlas.paste(tiles[k].resize((tile, tile), Image.LANCZOS), (column * tile, row * tile))
            # UVs count up from the bottom; the atlas' rows from the top
            u0, v0 = column / columns, 1.0 - (row + 1) / rows
            uvs.append(mesh.uvs * np.array([1 / columns, 1 / rows], np.float32) + np.array([u0, v0], np.float32))
            entry["uv_tile"] = [round(u0, 6), round(v0, 6), round(u0 + 1 / columns, 6), round(v0 + 1 / rows, 6)]
        if mesh.colors is not None:
            colours.append(mesh.colors)
        start_v += len(mesh.vertices)
        start_f += len(mesh.faces)
    return MeshPayload(
        np.concatenate(vertices).astype(np.float32), np.concatenate(faces).astype(np.int32),
        np.concatenate(normals).astype(np.float32),
        np.concatenate(uvs).astype(np.float32) if tile is not None else None,
        np.concatenate(colours) if len(colours) == count else None,
        encode_png(np.asarray(atlas)) if tile is not None else None,
    )
