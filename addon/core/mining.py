"""Mining a folder of photos for shapes (the backend's ``mine`` task), without bpy.

The operator lists and reads the folder here and builds the job's params; when the result arrives,
its one combined mesh is split into one import plan per mined object (its mesh packed for Blender
and placed on a grid, its name and the cluster's provenance as custom properties), and the outcome
is put into one line for the user. The bpy layer only turns the plans into datablocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import placement
from .backend_api import protocol
from .images import IMAGE_SUFFIXES, ImageSourceError, folder_hint, read_image_file
from .mesh_arrays import MeshArrays, MeshImportError, pack_mesh

MeshPayload = protocol.MeshPayload

MAX_PHOTOS = 60
"""Photos per mine job: the backend's ``backend.requests.MAX_MINE_IMAGES`` (one message carries at
most 64 binary frames). The add-on may only import the backend's protocol and client, so the
number is repeated here; tests/test_addon_mine.py keeps the two equal."""
MIN_PHOTOS_LIMITS = (2, MAX_PHOTOS)
"""What the backend takes as ``min_photos`` (a group of fewer photos is set apart as outliers)."""
DEFAULT_MIN_PHOTOS = 2
MESSAGE_MARGIN_BYTES = 64 * 1024
"""Room left in the backend's message limit for the header (names, params) next to the photos."""
LISTED_NAMES = 5
"""Outliers and rejected photos named in the report; the rest are counted (all are on the collection)."""
MINED_PREFIX = "stepstone_mined_"


class MineInputError(ValueError):
    """A folder that cannot become a mine job (missing, empty, too many or too large photos)."""


# ------------------------------------------------------------------------------------ the folder
def folder_label(folder: str | Path) -> str:
    """The folder's own name (Blender's folder paths end with a separator)."""
    text = str(folder).rstrip("/\\")
    return Path(text).name or text or "photos"


def collection_name(folder: str) -> str:
    return f"Mined: {folder}"


def object_name(folder: str, cluster: str) -> str:
    return f"{folder} {cluster}"


def list_photos(folder: str | Path) -> list[Path]:
    """The photos directly in ``folder`` (PNG, JPEG, WebP; hidden files left out), sorted by name.

    Refuses a folder the backend would refuse as a whole, before anything is read: missing, empty,
    or more photos than one job takes (the user has to split it; which photos go together is theirs
    to decide, so none are dropped silently)."""
    if not str(folder).strip():
        raise MineInputError("choose a folder of photos")
    path = Path(folder)
    if not path.exists():
        raise MineInputError(f"folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise MineInputError(f"{str(path)!r} is a file, not a folder of photos")
    try:
        entries = list(path.iterdir())
    except OSError as exc:
        raise MineInputError(f"folder {str(path)!r} could not be read ({exc.strerror})") from None
    photos = sorted((p for p in entries if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
                     and p.is_file()), key=lambda p: (p.name.lower(), p.name))
    name = folder_label(path)
    if not photos:
        raise MineInputError(f"folder {name!r} holds no photos (PNG, JPEG or WebP files){folder_hint(entries)}")
    if len(photos) > MAX_PHOTOS:
        raise MineInputError(f"folder {name!r} holds {len(photos)} photos; one mine job takes at most {MAX_PHOTOS}: "
                             f"split the folder into folders of at most {MAX_PHOTOS} photos")
    return photos


@dataclass
class PhotoSet:
    """The photos of one mine job, as the backend takes them."""

    folder: str
    """The folder's name: it names the collection and the objects."""
    images: list[bytes] = field(default_factory=list)
    """Encoded PNG/JPEG/WebP files, in ``names`` order."""
    names: list[str] = field(default_factory=list)
    """File names (distinct: one folder); the result's clusters list photos by these."""
    skipped: list[dict[str, str]] = field(default_factory=list)
    """``{"image", "reason"}`` for files that could not be read here; reported as rejected."""

    @property
    def listed(self) -> int:
        """Photos in the folder, sent or not."""
        return len(self.names) + len(self.skipped)


def check_total_size(paths: list[Path], max_message_bytes: int) -> None:
    """Refuse before reading when the photos cannot fit one message (the backend would refuse the
    whole job, after Blender had read and sent them all)."""
    sizes = []
    for path in paths:
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            sizes.append(0)  # read_photos names the file and why it cannot be read
    total, room = sum(sizes), max_message_bytes - MESSAGE_MARGIN_BYTES
    if total > room:
        raise MineInputError(f"the {len(paths)} photos add up to {total / 1e6:.1f} MB; the backend takes at most "
                             f"{room / 1e6:.1f} MB in one job: split the folder or use smaller photos")


def read_photos(folder: str | Path, max_message_bytes: int | None = None) -> PhotoSet:
    """The folder's photos read into memory: files that cannot be read (or are not images) are
    skipped with the reason, as the backend sets unreadable photos apart; none readable is an error.

    ``max_message_bytes``: the connected backend's limit (None: the default a local backend has)."""
    paths = list_photos(folder)
    check_total_size(paths, max_message_bytes or protocol.DEFAULT_LIMITS.max_message_bytes)
    photos = PhotoSet(folder_label(folder))
    for path in paths:
        try:
            data = read_image_file(path)
        except ImageSourceError as exc:
            photos.skipped.append({"image": path.name, "reason": str(exc)})
            continue
        photos.images.append(data)
        photos.names.append(path.name)
    if not photos.images:
        raise MineInputError(f"none of the {len(paths)} photos in {photos.folder!r} can be read: "
                             + "; ".join(s["reason"] for s in photos.skipped[:3]))
    return photos


def mine_params(common: Mapping[str, Any], quality: str, min_photos: int) -> dict[str, Any]:
    """The job's params: the ones every job takes, the quality asked for, and ``min_photos``
    (``names`` is added by ``protocol.submit_mine``)."""
    low, high = MIN_PHOTOS_LIMITS
    if not isinstance(min_photos, int) or isinstance(min_photos, bool) or not low <= min_photos <= high:
        raise MineInputError(f"minimum photos per object must be a whole number from {low} to {high}, "
                             f"got {min_photos!r}")
    if quality not in protocol.QUALITIES:
        raise MineInputError(f"quality must be one of {list(protocol.QUALITIES)}, got {quality!r}")
    return {**common, "quality": quality, "min_photos": min_photos}


# ------------------------------------------------------------------------------------ the result
@dataclass
class MinedObject:
    """One mined cluster, ready to become a Blender object."""

    name: str
    """Object name: ``<folder> <cluster>``."""
    cluster: str
    arrays: MeshArrays
    """Its mesh, in the object's local frame (longest side = target size, origin at the bottom centre)."""
    location: placement.Vec3
    properties: dict[str, Any]
    """``stepstone_mined_*`` custom properties (strings, numbers: what ID properties hold)."""


@dataclass
class MinedResult:
    """What a mine job made: the objects, and the photos that went into none of them."""

    folder: str
    objects: list[MinedObject]
    photos: int
    """Photos in the folder (sent to the backend or skipped here)."""
    outliers: list[dict[str, str]]
    """``{"image", "reason"}``: photos that looked like no other photo's object."""
    rejected: list[dict[str, str]]
    """``{"image", "reason"}``: photos without an object, or unreadable (here or in the backend)."""
    warnings: list[str]

    def summary(self) -> str:
        """E.g. ``Mined 3 objects from 24 photos; 2 outliers, 1 rejected``."""
        text = f"Mined {_count(len(self.objects), 'object')} from {_count(self.photos, 'photo')}"
        left_out = [part for part in (_count(len(self.outliers), "outlier") if self.outliers else "",
                                      f"{len(self.rejected)} rejected" if self.rejected else "") if part]
        return text + (f"; {', '.join(left_out)}" if left_out else "")

    def details(self) -> str:
        """The photos left out, by name, and the backend's warnings: what the user should look at."""
        parts = []
        if self.outliers:
            parts.append("outliers: " + _names(self.outliers, with_reason=False))
        if self.rejected:
            parts.append("rejected: " + _names(self.rejected, with_reason=True))
        return "; ".join(parts + self.warnings)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _names(entries: list[dict[str, str]], with_reason: bool) -> str:
    shown = [f"{e['image']} ({e['reason']})" if with_reason and e.get("reason") else e["image"]
             for e in entries[:LISTED_NAMES]]
    more = len(entries) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def left_out(entries: Any) -> list[dict[str, str]]:
    """``outliers`` / ``rejected`` of the metadata as ``{"image", "reason"}`` strings (whatever came)."""
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping) and entry.get("image") is not None:
            out.append({"image": str(entry["image"]), "reason": str(entry.get("reason") or "")})
    return out


def split_clusters(payload: MeshPayload, metadata: Mapping[str, Any]) -> list[tuple[dict[str, Any], MeshPayload]]:
    """``protocol.split_mined``, its every failure a ``MeshImportError`` (nothing is imported then)."""
    clusters = metadata.get("clusters")
    if not isinstance(clusters, list) or not clusters:
        raise MeshImportError("the mine result lists no clusters")
    try:
        return protocol.split_mined(payload, metadata)
    except protocol.ProtocolError as exc:
        raise MeshImportError(exc.message) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise MeshImportError(f"the mine result's cluster list is malformed ({type(exc).__name__}: {exc})") from None


def cluster_properties(cluster: Mapping[str, Any], frame: placement.VertexTransform) -> dict[str, Any]:
    """The cluster's provenance as custom properties: photo lists one name a line, nested data as JSON.

    ``frame`` is how the object's vertices relate to the cluster's own frame (unit size, centred),
    which its ``cameras`` are given in: local = frame vertex × scale + offset."""
    def names(key: str) -> str:
        value = cluster.get(key)
        return "\n".join(str(v) for v in value) if isinstance(value, list) else ""

    props: dict[str, Any] = {
        "cluster": str(cluster.get("name", "")),
        "images": names("images"),
        "reference": str(cluster.get("reference") or ""),
        "cameras": json.dumps(cluster.get("cameras") or {}, sort_keys=True),
        "fidelity": json.dumps(cluster.get("fidelity") or {}, sort_keys=True),
        "shape_from": str(cluster.get("shape_from") or ""),
        "judged_by": names("judged_by"),
        "cut_by": names("cut_by"),
        "frame": json.dumps({"scale": round(frame.scale, 6), "offset": [round(float(o), 6) for o in frame.offset]}),
    }
    iou = cluster.get("self_check_iou")
    if isinstance(iou, (int, float)) and not isinstance(iou, bool):
        props["self_check_iou"] = float(iou)
    return {MINED_PREFIX + key: value for key, value in props.items()}


def plan_mined(payload: MeshPayload, metadata: Mapping[str, Any], *, folder: str, target_size: float,
               origin: placement.Vec3 = (0.0, 0.0, 0.0), photos: int | None = None,
               skipped: Iterable[Mapping[str, str]] = ()) -> MinedResult:
    """A validated mine result → one object per cluster, each at the target size on a grid around
    ``origin`` (the 3D cursor), as the results of a multi-image reconstruct are laid out.

    ``photos``: how many the folder held (default: every photo the metadata names); ``skipped``: photos
    the add-on could not read, reported with the backend's rejected ones."""
    parts = split_clusters(payload, metadata)
    spots = placement.grid_positions(len(parts), placement.grid_spacing(target_size), origin)
    objects = []
    for (cluster, mesh), spot in zip(parts, spots):
        name = str(cluster.get("name") or f"cluster_{len(objects) + 1:02d}")
        frame = placement.normalize_to_size(placement.Bounds.of_points(mesh.vertices), target_size)
        objects.append(MinedObject(object_name(folder, name), name, pack_mesh(mesh, frame), spot,
                                   cluster_properties(cluster, frame)))
    outliers = left_out(metadata.get("outliers"))
    rejected = left_out(list(skipped)) + left_out(metadata.get("rejected"))
    if photos is None:  # every photo is in a cluster, an outlier or rejected
        seen = {str(n) for cluster, _ in parts for n in cluster.get("images") or []}
        photos = len(seen | {e["image"] for e in outliers + rejected})
    warnings = [str(w) for w in metadata.get("warnings") or []]
    return MinedResult(folder, objects, photos, outliers, rejected, warnings)
