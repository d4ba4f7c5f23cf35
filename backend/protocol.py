"""Stepstone wire protocol: message schema, encoding, decoding and validation.

Imports only the standard library and numpy, so the Blender add-on can use it too.
Every message is a ZeroMQ multipart message:

    frame 0   UTF-8 JSON header {"v": 1, "type": ..., "job": ..., <fields>, "frames": [<descriptor>, ...]}
    frame 1.. binary payloads, one per descriptor, in the same order

A descriptor is ``{"name": str, "dtype": "float32"|"int32"|"uint8"|"bytes", "shape": [..]}``
(``shape`` only for arrays). Arrays are raw little-endian, C order. The full reference with
every message type and error code is docs/protocol.md.

Nothing a peer sends is trusted: ``decode`` raises ``ProtocolError`` with a named code for
every malformed input, and never ``assert``s.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, Mapping

import numpy as np

PROTOCOL_VERSION = 1

# Job ids are chosen by clients; keep them printable and short so they are safe in logs and file names.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}\Z")

MAX_JSON_DEPTH = 32
"""Deepest nesting of objects and lists a header may have (the deepest real one has 4)."""
MAX_INT_DIGITS = 20
"""Longest integer a header may hold (more than any count, size or seed needs)."""
MAX_DIMENSION = 2**31 - 1
"""Largest extent of one axis of a binary frame's array."""

TASKS = ("reconstruct", "generate", "stylize", "mine")
QUALITIES = ("preview", "default", "high")
TEXTURE_MODES = ("uv", "vertex", "none")
RECONSTRUCT_METHODS = ("auto", "outline", "model", "silhouette")
RECONSTRUCT_OUTPUTS = ("mesh", "points")
STYLIZE_MODES = ("texture", "texture_shape")
PREVIEW_KINDS = ("mesh", "points")
SHADINGS = ("smooth", "flat")
JOB_STATES = ("queued", "running", "done", "failed", "cancelled", "timed_out", "unknown")

_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "uint8": np.dtype("u1")}


class ErrorCode(str, Enum):
    """Named error codes; docs/protocol.md explains each one."""

    BAD_MESSAGE = "BAD_MESSAGE"
    VERSION_MISMATCH = "VERSION_MISMATCH"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    TOO_LARGE = "TOO_LARGE"
    INVALID_FIELD = "INVALID_FIELD"
    INVALID_IMAGE = "INVALID_IMAGE"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    NO_OBJECT = "NO_OBJECT"
    EMPTY_PROMPT = "EMPTY_PROMPT"
    INVALID_PROMPT = "INVALID_PROMPT"
    PROMPT_TOO_LONG = "PROMPT_TOO_LONG"
    INVALID_MESH = "INVALID_MESH"
    MESH_TOO_LARGE = "MESH_TOO_LARGE"
    PIPELINE_UNAVAILABLE = "PIPELINE_UNAVAILABLE"
    DUPLICATE_JOB = "DUPLICATE_JOB"
    UNKNOWN_JOB = "UNKNOWN_JOB"
    QUEUE_FULL = "QUEUE_FULL"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    INVALID_RESULT = "INVALID_RESULT"
    PIPELINE_FAILED = "PIPELINE_FAILED"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    NOT_OWNER = "NOT_OWNER"
    JOB_LOST = "JOB_LOST"


class ProtocolError(ValueError):
    """A message (or a part of one) that breaks the protocol; carries the code to reply with."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------------
# Message schema
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Field:
    kind: type | tuple[type, ...]
    required: bool = False
    choices: tuple[Any, ...] | None = None


_CLIENT_TYPES = ("submit", "cancel", "status", "ping")
_SERVER_TYPES = ("accepted", "progress", "preview", "result", "job_status", "pong", "error")

# Fields besides v/type/job/frames. Unknown extra fields are rejected so that typos surface.
_SCHEMA: dict[str, dict[str, _Field]] = {
    "submit": {
        "task": _Field(str, True, TASKS),
        "params": _Field(dict, False),
    },
    "cancel": {"token": _Field(str, False)},
    "status": {"resend": _Field(bool, False), "token": _Field(str, False)},
    "ping": {"t": _Field((int, float), False), "client": _Field(str, False)},
    "accepted": {"queue_position": _Field(int, True), "token": _Field(str, True), "instance": _Field(str, True)},
    "progress": {
        "stage": _Field(str, True),
        "fraction": _Field((int, float), True),
        "message": _Field(str, False),
        "eta_s": _Field((int, float, type(None)), False),
    },
    "preview": {"kind": _Field(str, True, PREVIEW_KINDS), "step": _Field(int, False)},
    "result": {"metadata": _Field(dict, True), "shading": _Field(str, False, SHADINGS),
               "kind": _Field(str, False, ("mesh", "points"))},
    "job_status": {
        "state": _Field(str, True, JOB_STATES),
        "queue_position": _Field((int, type(None)), False),
        "stage": _Field((str, type(None)), False),
        "fraction": _Field((int, float, type(None)), False),
        "error": _Field((dict, type(None)), False),
    },
    "pong": {
        "t": _Field((int, float, type(None)), False),
        "server": _Field(dict, True),
    },
    "error": {
        "code": _Field(str, True),
        "message": _Field(str, True),
        "state": _Field((str, type(None)), False),
    },
}

# Message types whose "job" field must be a valid job id (others may carry null).
_JOB_REQUIRED = {"submit", "cancel", "status", "accepted", "progress", "preview", "result", "job_status"}


@dataclass
class Message:
    """One protocol message: a type, an optional job id, JSON fields and named binary blobs.

    ``blobs`` maps a name to a numpy array (float32/int32/uint8) or raw ``bytes``; order is kept.
    """

    type: str
    job: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    blobs: dict[str, np.ndarray | bytes] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


@dataclass(frozen=True)
class Limits:
    """Size limits applied while decoding (the server's config supplies its own values)."""

    max_message_bytes: int = 256 * 1024 * 1024
    """Sum of all frames of one message."""
    max_frames: int = 64
    """Number of binary frames after the header."""
    max_header_bytes: int = 256 * 1024
    """The JSON header frame."""


DEFAULT_LIMITS = Limits()


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

def _jsonable(value: Any, path: str) -> None:
    """Reject values JSON cannot carry faithfully (NaN/Inf, numpy scalars, non-string keys)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{path} is not a finite number")
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ProtocolError(ErrorCode.INVALID_FIELD, f"{path} has a non-string key")
            _jsonable(v, f"{path}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _jsonable(v, f"{path}[{i}]")
    elif value is not None and not isinstance(value, (str, int, bool)):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{path} has unsupported type {type(value).__name__}")


def encode(message: Message) -> list[bytes | memoryview]:
    """Message → list of frames. Arrays are sent without copying when already contiguous."""
    if message.type not in _SCHEMA:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {message.type!r}")
    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": message.type, "job": message.job}
    for key, value in message.fields.items():
        if key in ("v", "type", "job", "frames"):
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"field name {key!r} is reserved")
        _jsonable(value, key)
        header[key] = value
    descriptors = []
    payloads: list[bytes | memoryview] = []
    for name, blob in message.blobs.items():
        if isinstance(blob, (bytes, bytearray, memoryview)):
            descriptors.append({"name": name, "dtype": "bytes"})
            payloads.append(blob if isinstance(blob, (bytes, memoryview)) else bytes(blob))
            continue
        arr = np.asarray(blob)
        dtype_name = next((k for k, d in _DTYPES.items() if arr.dtype == d or arr.dtype == d.newbyteorder("=")), None)
        if dtype_name is None:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"blob {name!r} has unsupported dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=_DTYPES[dtype_name])
        descriptors.append({"name": name, "dtype": dtype_name, "shape": list(arr.shape)})
        payloads.append(memoryview(arr).cast("B") if arr.size else b"")
    header["frames"] = descriptors
    return [json.dumps(header, ensure_ascii=False, allow_nan=False).encode("utf-8"), *payloads]


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------

def _frame_len(frame: Any) -> int:
    if isinstance(frame, (bytes, bytearray)):
        return len(frame)
    if isinstance(frame, memoryview):
        return frame.nbytes
    buffer = getattr(frame, "buffer", None)  # zmq.Frame
    if buffer is not None:
        return memoryview(buffer).nbytes
    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame of unsupported type {type(frame).__name__}")


def _frame_bytes(frame: Any) -> bytes | memoryview:
    if isinstance(frame, (bytes, memoryview)):
        return frame
    if isinstance(frame, bytearray):
        return bytes(frame)
    return memoryview(frame.buffer)


def message_size(frames: Iterable[Any]) -> int:
    return sum(_frame_len(f) for f in frames)


def peek_header(frames: list[Any]) -> dict[str, Any] | None:
    """Best-effort header parse used to address an error reply (job id) for a bad message."""
    try:
        return parse_header(_frame_bytes(frames[0]))
    except ProtocolError:  # garbage means "no usable header"
        return None


def _check_field(mtype: str, name: str, spec: _Field, value: Any) -> None:
    # bool is an int subclass in Python; a bool where a number is expected is a mistake.
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{mtype}.{name} must be {_kind_names(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"{mtype}.{name} must be {_kind_names(kinds)}, got {type(value).__name__}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{mtype}.{name} is not a finite number")
    if spec.choices is not None and value not in spec.choices:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"{mtype}.{name} must be one of {list(spec.choices)}, got {value!r}")


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {"NoneType": "null", "str": "a string", "int": "an integer", "float": "a number",
             "dict": "an object", "bool": "a boolean", "list": "a list"}
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)


def _decode_blob(desc: Any, frame: Any, index: int) -> tuple[str, np.ndarray | bytes]:
    if not isinstance(desc, dict) or not isinstance(desc.get("name"), str) or not desc["name"]:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame descriptor {index} needs a non-empty name")
    name, dtype = desc["name"], desc.get("dtype")
    data = _frame_bytes(frame)
    if dtype == "bytes":
        if "shape" in desc:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"bytes frame {name!r} must not have a shape")
        return name, bytes(data)
    if dtype not in _DTYPES:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame {name!r} has unknown dtype {dtype!r}")
    shape = desc.get("shape")
    if (not isinstance(shape, list) or len(shape) > 4
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_DIMENSION for s in shape)):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame {name!r} needs a shape of at most 4 integers "
                                                   f"from 0 to {MAX_DIMENSION}")
    expected = math.prod(shape) * _DTYPES[dtype].itemsize
    actual = memoryview(data).nbytes
    if expected != actual:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"frame {name!r}: shape {shape} of {dtype} needs {expected} bytes, got {actual}"
        )
    return name, np.frombuffer(data, dtype=_DTYPES[dtype]).reshape(shape)


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"header holds an integer of {len(text)} digits "
                                                   f"(at most {MAX_INT_DIGITS})")
    return int(text)


def _refuse_constant(name: str) -> None:
    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"header holds {name}, which JSON does not allow")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_header(data: Any) -> dict[str, Any]:
    """The header frame as a JSON object, or a `ProtocolError`: whatever a peer sends, nothing
    else escapes (huge integers, deep nesting, NaN and the like are refused by name)."""
    try:
        header = json.loads(bytes(data).decode("utf-8"), parse_int=_parse_int, parse_constant=_refuse_constant)
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"header nests deeper than {MAX_JSON_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"header is not UTF-8 JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "header must be a JSON object")
    if _depth(header) > MAX_JSON_DEPTH:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"header nests deeper than {MAX_JSON_DEPTH} levels")
    return header


def decode(frames: list[Any], limits: Limits = DEFAULT_LIMITS) -> Message:
    """Frames → validated ``Message``; raises ``ProtocolError`` naming what is wrong."""
    if not frames:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "empty message")
    total = message_size(frames)
    if total > limits.max_message_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"message of {total} bytes exceeds the limit of {limits.max_message_bytes} bytes"
        )
    if len(frames) - 1 > limits.max_frames:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"{len(frames) - 1} binary frames exceed the limit of {limits.max_frames}")
    if _frame_len(frames[0]) > limits.max_header_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"header exceeds {limits.max_header_bytes} bytes")
    header = parse_header(_frame_bytes(frames[0]))
    version = header.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:  # true and 1.0 equal 1 in Python
        raise ProtocolError(
            ErrorCode.VERSION_MISMATCH,
            f"protocol version {version!r} is not supported; this peer speaks version {PROTOCOL_VERSION}. "
            "Update the Stepstone add-on and backend to the same release.",
        )
    mtype = header.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "header needs a string 'type'")
    if mtype not in _SCHEMA:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {mtype[:64]!r}")
    job = header.get("job")
    if mtype in _JOB_REQUIRED or job is not None:
        if not isinstance(job, str) or not JOB_ID_PATTERN.match(job):  # \Z: no trailing newline
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, "job id must be 1-64 characters of letters, digits, '_', '.', '-'"
            )
    schema = _SCHEMA[mtype]
    fields: dict[str, Any] = {}
    for key, value in header.items():
        if key in ("v", "type", "job", "frames"):
            continue
        if key not in schema:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{mtype} has no field {key[:64]!r}")
        _check_field(mtype, key, schema[key], value)
        fields[key] = value
    for key, spec in schema.items():
        if spec.required and key not in fields:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{mtype} needs the field {key!r}")
    descriptors = header.get("frames", [])
    if not isinstance(descriptors, list):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'frames' must be a list of descriptors")
    if len(descriptors) != len(frames) - 1:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"header describes {len(descriptors)} frames but {len(frames) - 1} were sent"
        )
    blobs: dict[str, np.ndarray | bytes] = {}
    for index, (desc, frame) in enumerate(zip(descriptors, frames[1:])):
        name, blob = _decode_blob(desc, frame, index)
        if name in blobs:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame name {name!r} appears twice")
        blobs[name] = blob
    return Message(mtype, job, fields, blobs)


# ---------------------------------------------------------------------------------------------
# Mesh and point payloads
# ---------------------------------------------------------------------------------------------

@dataclass
class MeshPayload:
    """A triangle mesh as it travels: Z-up, front facing −Y, metres (or unit size from pipelines).

    Per-vertex attributes share the vertex count; seams are expressed by duplicated vertices.
    With no faces it is a point cloud (a result asked for with ``output="points"``): positions,
    normals and colours, no UVs or texture.
    """

    vertices: np.ndarray
    """[N,3] float32 positions."""
    faces: np.ndarray
    """[M,3] int32 vertex indices, counter-clockwise seen from outside."""
    normals: np.ndarray | None = None
    """[N,3] float32 unit vertex normals, optional."""
    uvs: np.ndarray | None = None
    """[N,2] float32 texture coordinates (origin bottom-left, like Blender), optional."""
    colors: np.ndarray | None = None
    """[N,4] uint8 RGBA vertex colours (sRGB), optional."""
    texture_png: bytes | None = None
    """PNG bytes of the base-colour texture addressed by ``uvs``, optional."""
    shading: str = "smooth"

    @property
    def n_triangles(self) -> int:
        return int(self.faces.shape[0])

    @property
    def is_points(self) -> bool:
        return self.n_triangles == 0


def mesh_blobs(mesh: MeshPayload, prefix: str = "") -> dict[str, np.ndarray | bytes]:
    blobs: dict[str, np.ndarray | bytes] = {
        f"{prefix}vertices": mesh.vertices,
        f"{prefix}faces": mesh.faces,
    }
    for name in ("normals", "uvs", "colors"):
        value = getattr(mesh, name)
        if value is not None:
            blobs[f"{prefix}{name}"] = value
    if mesh.texture_png is not None:
        blobs[f"{prefix}texture"] = mesh.texture_png
    return blobs


def mesh_from_blobs(
    blobs: Mapping[str, np.ndarray | bytes], *, max_triangles: int | None = None, prefix: str = "", shading: str = "smooth",
    points: bool = False,
) -> MeshPayload:
    """Rebuild and validate a mesh: dtypes, shapes, index range and finiteness (INVALID_MESH / MESH_TOO_LARGE).
    ``points``: a point cloud is expected (no faces, no UVs or texture)."""

    def array(name: str, dtype: str, width: int, required: bool) -> np.ndarray | None:
        value = blobs.get(prefix + name)
        if value is None:
            if required:
                raise ProtocolError(ErrorCode.INVALID_MESH, f"mesh needs a '{prefix}{name}' frame")
            return None
        if not isinstance(value, np.ndarray) or value.dtype != _DTYPES[dtype] or value.ndim != 2 or value.shape[1] != width:
            raise ProtocolError(ErrorCode.INVALID_MESH, f"'{prefix}{name}' must be a {dtype} array of shape [n,{width}]")
        return value

    vertices = array("vertices", "float32", 3, True)
    faces = array("faces", "int32", 3, True)
    assert vertices is not None and faces is not None  # required=True guarantees it; for type checkers
    if max_triangles is not None and faces.shape[0] > max_triangles:
        raise ProtocolError(
            ErrorCode.MESH_TOO_LARGE, f"mesh has {faces.shape[0]} triangles; the limit is {max_triangles}"
        )
    if vertices.shape[0] == 0:
        raise ProtocolError(ErrorCode.INVALID_MESH, "mesh has no vertices")
    if points and faces.shape[0] != 0:
        raise ProtocolError(ErrorCode.INVALID_MESH, "a point cloud has no faces")
    if not points and faces.shape[0] == 0:
        raise ProtocolError(ErrorCode.INVALID_MESH, "mesh has no faces")
    if not np.isfinite(vertices).all():
        raise ProtocolError(ErrorCode.INVALID_MESH, "mesh vertices contain NaN or infinity")
    if faces.shape[0] and (faces.min() < 0 or faces.max() >= vertices.shape[0]):
        raise ProtocolError(
            ErrorCode.INVALID_MESH, f"face indices must lie in [0, {vertices.shape[0] - 1}]"
        )
    n = vertices.shape[0]
    normals = array("normals", "float32", 3, False)
    uvs = array("uvs", "float32", 2, False)
    colors = array("colors", "uint8", 4, False)
    for name, value in (("normals", normals), ("uvs", uvs), ("colors", colors)):
        if value is not None and value.shape[0] != n:
            raise ProtocolError(ErrorCode.INVALID_MESH, f"'{prefix}{name}' has {value.shape[0]} rows for {n} vertices")
        if value is not None and value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ProtocolError(ErrorCode.INVALID_MESH, f"'{prefix}{name}' contains NaN or infinity")
    texture = blobs.get(prefix + "texture")
    if texture is not None and not isinstance(texture, bytes):
        raise ProtocolError(ErrorCode.INVALID_MESH, "texture must be a bytes frame holding a PNG")
    if texture is not None and not texture.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ProtocolError(ErrorCode.INVALID_MESH, "texture frame is not a PNG")
    if texture is not None and uvs is None:
        raise ProtocolError(ErrorCode.INVALID_MESH, "a texture needs 'uvs'")
    if points and (uvs is not None or texture is not None):
        raise ProtocolError(ErrorCode.INVALID_MESH, "a point cloud carries no UVs or texture")
    if shading not in SHADINGS:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"shading must be one of {list(SHADINGS)}")
    return MeshPayload(vertices, faces, normals, uvs, colors, texture, shading)


# ---------------------------------------------------------------------------------------------
# Builders: one per message type, so callers never spell headers by hand
# ---------------------------------------------------------------------------------------------

def submit_reconstruct(job: str, images: list[bytes], params: dict[str, Any] | None = None) -> Message:
    """``images``: encoded PNG/JPEG/WebP files. Several images = several views of one object."""
    return Message("submit", job, {"task": "reconstruct", "params": dict(params or {})},
                   {f"image{i}": data for i, data in enumerate(images)})


def submit_mine(job: str, images: list[bytes], names: list[str] | None = None,
                params: dict[str, Any] | None = None) -> Message:
    """``images``: encoded photos of a collection; ``names``: their file names (reported back in
    the result's clusters), default ``image0``...; see `split_mined`."""
    extra = {"names": list(names)} if names is not None else {}
    return Message("submit", job, {"task": "mine", "params": {**extra, **(params or {})}},
                   {f"image{i}": data for i, data in enumerate(images)})


def submit_generate(job: str, prompt: str, params: dict[str, Any] | None = None) -> Message:
    return Message("submit", job, {"task": "generate", "params": {"prompt": prompt, **(params or {})}})


def submit_stylize(job: str, mesh: MeshPayload, prompt: str, params: dict[str, Any] | None = None) -> Message:
    return Message("submit", job, {"task": "stylize", "params": {"prompt": prompt, **(params or {})}},
                   mesh_blobs(mesh))


def cancel(job: str, token: str | None = None) -> Message:
    """``token``: the one the job's ``accepted`` carried; needed when the client reconnected since."""
    return Message("cancel", job, {} if token is None else {"token": token})


def status(job: str, resend: bool = False, token: str | None = None) -> Message:
    """``resend`` with the job's ``token`` makes this client the job's owner (after a reconnect)."""
    return Message("status", job, {"resend": resend, **({} if token is None else {"token": token})})


def ping(t: float | None = None, client: str | None = None) -> Message:
    fields: dict[str, Any] = {}
    if t is not None:
        fields["t"] = t
    if client is not None:
        fields["client"] = client
    return Message("ping", None, fields)


def accepted(job: str, queue_position: int, token: str, instance: str) -> Message:
    """``token`` proves ownership of the job later; ``instance`` names this run of the server."""
    return Message("accepted", job, {"queue_position": queue_position, "token": token, "instance": instance})


def progress(job: str, stage: str, fraction: float, message: str = "", eta_s: float | None = None) -> Message:
    return Message("progress", job, {"stage": stage, "fraction": min(1.0, max(0.0, float(fraction))),
                                     "message": message, "eta_s": eta_s})


def preview_mesh(job: str, mesh: MeshPayload, step: int = 0) -> Message:
    return Message("preview", job, {"kind": "mesh", "step": step}, mesh_blobs(mesh))


def preview_points(job: str, points: np.ndarray, colors: np.ndarray | None = None, step: int = 0) -> Message:
    blobs: dict[str, np.ndarray | bytes] = {"points": np.asarray(points, dtype=np.float32)}
    if colors is not None:
        blobs["colors"] = np.asarray(colors, dtype=np.uint8)
    return Message("preview", job, {"kind": "points", "step": step}, blobs)


def result(job: str, mesh: MeshPayload, metadata: dict[str, Any]) -> Message:
    """A point cloud (a mesh with no faces) is marked ``kind: "points"``; a mesh result carries no
    ``kind`` (so peers that predate point results read it as before)."""
    fields: dict[str, Any] = {"metadata": metadata, "shading": mesh.shading}
    if mesh.is_points:
        fields["kind"] = "points"
    return Message("result", job, fields, mesh_blobs(mesh))


def job_status(job: str, state: str, queue_position: int | None = None, stage: str | None = None,
               fraction: float | None = None, error: dict[str, Any] | None = None) -> Message:
    return Message("job_status", job, {"state": state, "queue_position": queue_position, "stage": stage,
                                       "fraction": fraction, "error": error})


def pong(server: dict[str, Any], t: float | None = None) -> Message:
    return Message("pong", None, {"t": t, "server": server})


def error(code: ErrorCode, message: str, job: str | None = None, state: str | None = None) -> Message:
    """``state`` names the job's final state when the error ends (or rejects) a job."""
    return Message("error", job, {"code": code.value, "message": message, "state": state})


def split_mined(mesh: MeshPayload, metadata: Mapping[str, Any]) -> list[tuple[dict[str, Any], MeshPayload]]:
    """The objects of a ``mine`` result: its mesh holds every cluster's mesh one after the other,
    side by side; ``metadata["clusters"][k]`` says which ``vertices`` and ``faces`` (``[start,
    end)``) are cluster k's and the ``offset`` it was moved by. Returns (cluster metadata, its mesh
    moved back to its own frame) per cluster. A texture is one atlas shared by every cluster,
    each cluster's UVs inside its ``uv_tile`` ``[u0, v0, u1, v1]``."""
    out = []
    for cluster in metadata.get("clusters") or []:
        (v0, v1), (f0, f1) = cluster["vertices"], cluster["faces"]
        if not (0 <= v0 < v1 <= len(mesh.vertices) and 0 <= f0 < f1 <= len(mesh.faces)):
            raise ProtocolError(ErrorCode.INVALID_MESH, f"cluster {cluster.get('name')!r} has ranges outside the mesh")
        faces = mesh.faces[f0:f1] - v0
        if faces.min() < 0 or faces.max() >= v1 - v0:
            raise ProtocolError(ErrorCode.INVALID_MESH, f"cluster {cluster.get('name')!r} has faces outside its vertices")
        part = MeshPayload(
            mesh.vertices[v0:v1] - np.asarray(cluster.get("offset", (0.0, 0.0, 0.0)), np.float32), faces,
            *(None if a is None else a[v0:v1] for a in (mesh.normals, mesh.uvs, mesh.colors)),
            mesh.texture_png, mesh.shading)
        out.append((dict(cluster), part))
    return out


def result_mesh(message: Message, max_triangles: int | None = None) -> MeshPayload:
    """The mesh (or, for a result of kind ``points``, the point cloud) carried by a result or mesh
    preview message, validated."""
    return mesh_from_blobs(message.blobs, max_triangles=max_triangles, shading=message.get("shading", "smooth"),
                           points=message.type == "result" and message.get("kind") == "points")
