"""Turning a decoded ``submit`` message into a validated job request.

The server and the CLI both go through ``parse_submit``, so a file run from the terminal is checked
exactly like one sent from Blender.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Union

from backend.config import ServiceLimits
from backend.errors import InputError
from backend.images import InputImage, decode_image
from backend.prompts import validate_prompt
from backend.protocol import (
    QUALITIES,
    RECONSTRUCT_METHODS,
    RECONSTRUCT_OUTPUTS,
    STYLIZE_MODES,
    TEXTURE_MODES,
    ErrorCode,
    Limits,
    MeshPayload,
    Message,
    ProtocolError,
    decode,
    encode,
    mesh_from_blobs,
)


@dataclass
class CommonParams:
    quality: str = "default"
    """``preview`` (fast, coarse), ``default`` or ``high``."""
    seed: int = 0
    timeout_s: float | None = None
    """Per-job deadline asked for by the client; None = the server's default."""


@dataclass(frozen=True)
class EncodedImage:
    """An input image as it arrived, already checked to decode within the limits."""

    data: bytes
    name: str
    max_pixels: int
    min_side: int

    def decode(self) -> InputImage:
        return decode_image(self.data, max_pixels=self.max_pixels, min_side=self.min_side, name=self.name)


@dataclass
class ReconstructRequest:
    images: list[InputImage]
    common: CommonParams = field(default_factory=CommonParams)
    multiview: bool = True
    """Several images are views of one object (one mesh); otherwise the client sends separate jobs."""
    texture: str = "uv"
    """``uv`` (baked texture), ``vertex`` (vertex colours) or ``none``."""
    face_budget: int | None = None
    """Decimate the result to at most this many triangles."""
    method: str = "auto"
    """``auto`` (the learned shape model when installed and its surface is clean, else the outline
    solid), ``outline``, ``model`` or ``silhouette`` (the inflation baseline)."""
    output: str = "mesh"
    """``mesh`` or ``points``: a coloured point cloud sampled on the same surface (no UV unwrap,
    no bake; ``texture`` then only decides whether the points are coloured)."""
    encoded: list[EncodedImage] = field(default_factory=list)
    """The images of a request that waits in the queue, instead of ``images``: a decoded 36 MP
    photo takes 137 MB, its file often under 1 MB. ``decode_inputs`` fills ``images`` from them."""
    task: str = "reconstruct"

    def decode_inputs(self) -> None:
        """Called where the job runs, just before the pipeline gets the request."""
        if self.encoded:
            self.images, self.encoded = [image.decode() for image in self.encoded], []


@dataclass
class GenerateRequest:
    prompt: str
    common: CommonParams = field(default_factory=CommonParams)
    negative_prompt: str | None = None
    stylize: bool = False
    """Also run text-guided texture stylization on the generated shape."""
    candidates: int = 1
    """Shapes generated per prompt (ISS diversity); the best-scoring one is returned."""
    texture: str = "uv"
    face_budget: int | None = None
    task: str = "generate"

    def decode_inputs(self) -> None:
        """Nothing to decode: a prompt (and a mesh) arrive as they are used."""


@dataclass
class StylizeRequest:
    mesh: MeshPayload
    prompt: str
    common: CommonParams = field(default_factory=CommonParams)
    mode: str = "texture"
    """``texture`` (geometry frozen) or ``texture_shape`` (geometry may move near the original)."""
    texture: str = "uv"
    face_budget: int | None = None
    task: str = "stylize"

    def decode_inputs(self) -> None:
        """Nothing to decode: a prompt (and a mesh) arrive as they are used."""


MAX_MINE_IMAGES = 60
"""Photos per mine job (a message carries at most 64 binary frames)."""


@dataclass
class MineRequest:
    """A photo collection to mine for shapes (`backend.pipelines.mine`)."""

    names: list[str]
    """The photos' file names, in frame order."""
    common: CommonParams = field(default_factory=CommonParams)
    texture: str = "uv"
    face_budget: int | None = None
    """Triangles per cluster's mesh (default: the preset's)."""
    min_photos: int = 2
    """A cluster of fewer photos is set apart as outliers."""
    encoded: list[EncodedImage] = field(default_factory=list)
    """The photos as they arrived; the pipeline decodes one at a time and keeps only its crops (60
    decoded 36 MP photos would take 8 GB)."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """Photos that could not be decoded: name -> why (rejected, the others are mined)."""
    task: str = "mine"

    def decode_inputs(self) -> None:
        """Nothing to decode up front (see ``encoded``)."""


JobRequest = Union[ReconstructRequest, GenerateRequest, StylizeRequest, MineRequest]


class _Params:
    """Typed access to ``submit.params`` that rejects unknown keys and wrong types."""

    def __init__(self, params: dict[str, Any], task: str):
        self._params = params
        self._task = task
        self._used: set[str] = set()

    def get(self, name: str, kind: type | tuple[type, ...], default: Any,
            check: Callable[[Any], bool] | None = None, expected: str = "") -> Any:
        self._used.add(name)
        if name not in self._params or self._params[name] is None:
            return default
        value = self._params[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds) or (check and not check(value)):
            raise InputError(ErrorCode.INVALID_FIELD, f"{self._task} parameter {name!r} must be {expected}, got {value!r}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self._params) - self._used)
        if unknown:
            raise InputError(ErrorCode.INVALID_FIELD, f"{self._task} has no parameter(s) {unknown}")


def _common(p: _Params, limits: ServiceLimits) -> CommonParams:
    return CommonParams(
        quality=p.get("quality", str, "default", lambda v: v in QUALITIES, f"one of {list(QUALITIES)}"),
        seed=p.get("seed", int, 0, lambda v: 0 <= v < 2**31, "an integer in [0, 2^31)"),
        timeout_s=p.get("timeout_s", (int, float), None, lambda v: 0 < v <= limits.max_job_timeout_s,
                        f"a number of seconds in (0, {limits.max_job_timeout_s}]"),
    )


def _texture(p: _Params) -> str:
    return p.get("texture", str, "uv", lambda v: v in TEXTURE_MODES, f"one of {list(TEXTURE_MODES)}")


def _face_budget(p: _Params) -> int | None:
    return p.get("face_budget", int, None, lambda v: 100 <= v <= 10_000_000, "an integer in [100, 10^7]")


def parse_local_submit(message: Message, limits: ServiceLimits) -> JobRequest:
    """A submit built in this process (the CLI, a batch), checked exactly as the server checks one
    that arrived on the wire: encoded, decoded within the limits, then parsed."""
    frames = [bytes(frame) for frame in encode(message)]
    decoded = decode(frames, Limits(max_message_bytes=limits.max_message_bytes))
    return parse_submit(decoded, limits)


def parse_submit(message: Message, limits: ServiceLimits) -> JobRequest:
    """Validate a ``submit`` message; raises ``ProtocolError``/``InputError`` naming the problem."""
    task = message.get("task")
    p = _Params(dict(message.get("params") or {}), task)
    if task == "reconstruct":
        return _reconstruct(message, p, limits)
    if task == "mine":
        return _mine(message, p, limits)
    if task == "generate":
        if message.blobs:
            raise ProtocolError(ErrorCode.INVALID_FIELD, "generate takes no binary frames")
        request = GenerateRequest(
            prompt=_prompt(p, "prompt", limits, required=True),
            common=_common(p, limits),
            negative_prompt=_prompt(p, "negative_prompt", limits, required=False),
            stylize=p.get("stylize", bool, False, expected="a boolean"),
            candidates=p.get("candidates", int, 1, lambda v: 1 <= v <= 8, "an integer in [1, 8]"),
            texture=_texture(p),
            face_budget=_face_budget(p),
        )
        p.finish()
        return request
    if task == "stylize":
        mesh = mesh_from_blobs(message.blobs, max_triangles=limits.max_mesh_triangles)
        extra = set(message.blobs) - {"vertices", "faces", "normals", "uvs", "colors", "texture"}
        if extra:
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"stylize got unexpected frames {sorted(extra)}")
        request = StylizeRequest(
            mesh=mesh,
            prompt=_prompt(p, "prompt", limits, required=True),
            common=_common(p, limits),
            mode=p.get("mode", str, "texture", lambda v: v in STYLIZE_MODES, f"one of {list(STYLIZE_MODES)}"),
            texture=_texture(p),
            face_budget=_face_budget(p),
        )
        p.finish()
        return request
    raise ProtocolError(ErrorCode.INVALID_FIELD, f"unknown task {task!r}")


def _prompt(p: _Params, name: str, limits: ServiceLimits, required: bool) -> str | None:
    text = p.get(name, str, None, expected="a string")
    if text is None:
        if required:
            raise InputError(ErrorCode.EMPTY_PROMPT, f"the {name} is missing")
        return None
    return validate_prompt(text, max_chars=limits.max_prompt_chars, what=name.replace("_", " "))


def _reconstruct(message: Message, p: _Params, limits: ServiceLimits) -> ReconstructRequest:
    names = list(message.blobs)
    expected = [f"image{i}" for i in range(len(names))]
    if names != expected:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"reconstruct frames must be named image0..imageN-1, got {names}")
    if not names:
        raise InputError(ErrorCode.INVALID_IMAGE, "reconstruct needs at least one image")
    if len(names) > limits.max_images:
        raise InputError(ErrorCode.INVALID_FIELD, f"{len(names)} images exceed the limit of {limits.max_images}")
    encoded = []
    for name in names:
        data = message.blobs[name]
        if not isinstance(data, bytes):
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{name} must be a bytes frame holding an encoded image")
        image = EncodedImage(data, name, limits.max_image_pixels, limits.min_image_side)
        image.decode()  # refused now, by name, if it cannot be used; the pixels are not kept
        encoded.append(image)
    request = ReconstructRequest(
        images=[],
        encoded=encoded,
        common=_common(p, limits),
        multiview=p.get("multiview", bool, True, expected="a boolean"),
        texture=_texture(p),
        face_budget=_face_budget(p),
        method=p.get("method", str, "auto", lambda v: v in RECONSTRUCT_METHODS,
                     f"one of {list(RECONSTRUCT_METHODS)}"),
        output=p.get("output", str, "mesh", lambda v: v in RECONSTRUCT_OUTPUTS, f"one of {list(RECONSTRUCT_OUTPUTS)}"),
    )
    p.finish()
    return request


def _mine(message: Message, p: _Params, limits: ServiceLimits) -> MineRequest:
    frames = list(message.blobs)
    if frames != [f"image{i}" for i in range(len(frames))]:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"mine frames must be named image0..imageN-1, got {frames}")
    if not frames:
        raise InputError(ErrorCode.INVALID_IMAGE, "mine needs at least one photo")
    if len(frames) > MAX_MINE_IMAGES:
        raise InputError(ErrorCode.INVALID_FIELD, f"{len(frames)} photos exceed the limit of {MAX_MINE_IMAGES} per "
                                                  "mine job")
    names = p.get("names", list, [f"image{i}" for i in range(len(frames))],
                  lambda v: len(v) == len(frames) and all(isinstance(n, str) and 0 < len(n) <= 255 for n in v)
                  and len(set(v)) == len(v),
                  f"a list of {len(frames)} distinct file names (1-255 characters), one per photo")
    encoded, unreadable = [], {}
    for frame, name in zip(frames, names):
        data = message.blobs[frame]
        if not isinstance(data, bytes):
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"{frame} must be a bytes frame holding an encoded image")
        image = EncodedImage(data, name, limits.max_image_pixels, limits.min_image_side)
        try:
            image.decode()  # one unusable photo is set apart; the rest of the collection is mined
        except InputError as exc:
            unreadable[name] = exc.message
            continue
        encoded.append(image)
    if not encoded:
        raise InputError(ErrorCode.INVALID_IMAGE, f"none of the {len(frames)} photos can be read: "
                         + "; ".join(f"{n}: {why}" for n, why in list(unreadable.items())[:3]))
    request = MineRequest(
        names=[image.name for image in encoded],
        common=_common(p, limits),
        texture=_texture(p),
        face_budget=_face_budget(p),
        min_photos=p.get("min_photos", int, 2, lambda v: 2 <= v <= MAX_MINE_IMAGES,
                         f"an integer in [2, {MAX_MINE_IMAGES}]"),
        encoded=encoded,
        unreadable=unreadable,
    )
    p.finish()
    return request
