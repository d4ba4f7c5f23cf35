import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from backend import protocol
from backend.protocol import ErrorCode, Limits, MeshPayload, Message, ProtocolError


def roundtrip(message: Message) -> Message:
    frames = [bytes(f) for f in protocol.encode(message)]
    return protocol.decode(frames)


def textured_mesh(n_vertices=50, n_faces=40):
    rng = np.random.default_rng(0)
    return MeshPayload(
        vertices=rng.normal(size=(n_vertices, 3)).astype(np.float32),
        faces=rng.integers(0, n_vertices, size=(n_faces, 3)).astype(np.int32),
        normals=rng.normal(size=(n_vertices, 3)).astype(np.float32),
        uvs=rng.random((n_vertices, 2)).astype(np.float32),
        colors=rng.integers(0, 255, size=(n_vertices, 4)).astype(np.uint8),
        texture_png=b"\x89PNG\r\n\x1a\n" + b"rest",
        shading="flat",
    )


def test_result_roundtrip_keeps_every_array_and_field():
    mesh = textured_mesh()
    back = roundtrip(protocol.result("job-1", mesh, {"timings": {"run_s": 1.5}, "seed": 3}))
    assert back.type == "result" and back.job == "job-1"
    assert back.get("metadata") == {"timings": {"run_s": 1.5}, "seed": 3}
    got = protocol.result_mesh(back)
    for name in ("vertices", "faces", "normals", "uvs", "colors"):
        np.testing.assert_array_equal(getattr(got, name), getattr(mesh, name))
        assert getattr(got, name).dtype == getattr(mesh, name).dtype
    assert got.texture_png == mesh.texture_png
    assert got.shading == "flat"


@pytest.mark.parametrize("message", [
    protocol.submit_reconstruct("a", [b"img0", b"img1"], {"quality": "preview"}),
    protocol.submit_generate("b", "a wooden chair ü", {"seed": 4}),
    protocol.submit_stylize("c", textured_mesh(), "marble", {"mode": "texture"}),
    protocol.cancel("d"),
    protocol.status("e", resend=True),
    protocol.ping(12.5),
    protocol.accepted("f", 2, "0123abcd", "instance-1"),
    protocol.progress("g", "refine", 0.5, "half way", 3.0),
    protocol.preview_mesh("h", textured_mesh(), step=2),
    protocol.preview_points("i", np.zeros((10, 3), np.float32), np.zeros((10, 4), np.uint8)),
    protocol.job_status("j", "running", None, "refine", 0.25),
    protocol.pong({"version": "0"}, 1.0),
    protocol.error(ErrorCode.TIMED_OUT, "too slow", "k", "timed_out"),
])
def test_every_message_type_roundtrips(message):
    back = roundtrip(message)
    assert (back.type, back.job) == (message.type, message.job)
    assert back.fields == json.loads(json.dumps(message.fields))
    assert list(back.blobs) == list(message.blobs)
    for name, blob in message.blobs.items():
        if isinstance(blob, bytes):
            assert back.blobs[name] == blob
        else:
            np.testing.assert_array_equal(back.blobs[name], blob)


def test_progress_fraction_is_clamped():
    assert protocol.progress("j", "s", 1.7).get("fraction") == 1.0


def header(**fields):
    base = {"v": protocol.PROTOCOL_VERSION, "type": "ping", "job": None, "frames": []}
    base.update(fields)
    return json.dumps(base).encode()


@pytest.mark.parametrize("frames, code", [
    ([], ErrorCode.BAD_MESSAGE),
    ([b"\xff\xfe"], ErrorCode.BAD_MESSAGE),
    ([b"[1,2]"], ErrorCode.BAD_MESSAGE),
    ([header(v=2)], ErrorCode.VERSION_MISMATCH),
    ([header(v=None)], ErrorCode.VERSION_MISMATCH),
    ([header(type="explode")], ErrorCode.UNKNOWN_TYPE),
    ([header(type=7)], ErrorCode.BAD_MESSAGE),
    ([header(type="cancel")], ErrorCode.INVALID_FIELD),
    ([header(type="cancel", job="../etc/passwd")], ErrorCode.INVALID_FIELD),
    ([header(type="submit", job="x", task="dance")], ErrorCode.INVALID_FIELD),
    ([header(type="submit", job="x")], ErrorCode.INVALID_FIELD),
    ([header(type="status", job="x", resend="yes")], ErrorCode.INVALID_FIELD),
    ([header(type="ping", bogus=1)], ErrorCode.INVALID_FIELD),
    ([header(frames=[{"name": "a", "dtype": "bytes"}])], ErrorCode.BAD_MESSAGE),
    ([header(frames=[{"name": "a", "dtype": "float32", "shape": [2, 3]}]), b"\0" * 23], ErrorCode.BAD_MESSAGE),
    ([header(frames=[{"name": "a", "dtype": "float64", "shape": [1]}]), b"\0" * 8], ErrorCode.BAD_MESSAGE),
    ([header(frames=[{"name": "a", "dtype": "int32", "shape": [-1]}]), b""], ErrorCode.BAD_MESSAGE),
    ([header(frames=[{"name": "a", "dtype": "bytes"}, {"name": "a", "dtype": "bytes"}]), b"1", b"2"],
     ErrorCode.BAD_MESSAGE),
    ([header(frames="nope")], ErrorCode.BAD_MESSAGE),
])
def test_malformed_messages_get_named_errors(frames, code):
    with pytest.raises(ProtocolError) as info:
        protocol.decode(frames)
    assert info.value.code == code


def test_version_mismatch_message_says_what_to_do():
    with pytest.raises(ProtocolError, match="Update the Stepstone add-on and backend"):
        protocol.decode([header(v=99)])


def test_size_limit_is_checked_before_parsing():
    limits = Limits(max_message_bytes=100)
    with pytest.raises(ProtocolError) as info:
        protocol.decode([header(), b"x" * 200], limits)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_encode_refuses_nan_fields_and_odd_dtypes():
    with pytest.raises(ProtocolError):
        protocol.encode(Message("progress", "j", {"stage": "s", "fraction": float("nan")}))
    with pytest.raises(ProtocolError):
        protocol.encode(Message("preview", "j", {"kind": "points"}, {"points": np.zeros(3, np.float64)}))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=0, max_size=5))
def test_random_bytes_never_escape_as_anything_but_protocol_error(frames):
    try:
        protocol.decode(frames)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "type", "job", "frames", "task", "params", "stage", "fraction", "t"]),
                       st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=10), st.booleans(),
                                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                       st.integers(), max_size=2))),
       st.lists(st.binary(max_size=16), max_size=3))
def test_random_headers_never_escape_as_anything_but_protocol_error(fields, blobs):
    try:
        protocol.decode([json.dumps(fields).encode(), *blobs])
    except ProtocolError:
        pass


@pytest.mark.parametrize("mutate, code", [
    (lambda b: b.update(vertices=np.zeros((4, 3), np.float64)), ErrorCode.INVALID_MESH),
    (lambda b: b["vertices"].__setitem__((0, 0), np.nan), ErrorCode.INVALID_MESH),
    (lambda b: b.update(faces=np.array([[0, 1, 9]], np.int32)), ErrorCode.INVALID_MESH),
    (lambda b: b.update(faces=np.array([[0, 1, -1]], np.int32)), ErrorCode.INVALID_MESH),
    (lambda b: b.update(uvs=np.zeros((3, 2), np.float32)), ErrorCode.INVALID_MESH),
    (lambda b: b.update(texture=b"GIF89a"), ErrorCode.INVALID_MESH),
    (lambda b: b.pop("faces"), ErrorCode.INVALID_MESH),
])
def test_mesh_validation(mutate, code):
    blobs = {"vertices": np.zeros((4, 3), np.float32), "faces": np.array([[0, 1, 2], [0, 2, 3]], np.int32),
             "uvs": np.zeros((4, 2), np.float32)}
    mutate(blobs)
    with pytest.raises(ProtocolError) as info:
        protocol.mesh_from_blobs(blobs)
    assert info.value.code == code


def test_mesh_triangle_limit():
    blobs = protocol.mesh_blobs(textured_mesh(n_faces=40))
    with pytest.raises(ProtocolError) as info:
        protocol.mesh_from_blobs(blobs, max_triangles=39)
    assert info.value.code == ErrorCode.MESH_TOO_LARGE


def test_hostile_headers_are_refused_by_name_and_nothing_else_escapes():
    from backend.protocol import MAX_JSON_DEPTH, ProtocolError, decode

    def code_of(frames):
        with pytest.raises(ProtocolError) as info:
            decode(frames)
        return info.value.code.value

    deep = {"v": 1, "type": "ping", "job": None}
    node = deep
    for _ in range(MAX_JSON_DEPTH):  # within Python's recursion limit, beyond the protocol's depth
        node["x"] = {}
        node = node["x"]
    assert code_of([json.dumps(deep).encode()]) == "BAD_MESSAGE"
    assert code_of([b'{"v":1,"type":"ping","job":null,"t":-' + b"9" * 30 + b"}"]) == "BAD_MESSAGE"
    assert code_of([b'{"v":1,"type":"ping","job":null,"t":Infinity}']) == "BAD_MESSAGE"
    assert code_of([b"[" * 100_000]) == "BAD_MESSAGE"
    big = json.dumps({"v": 1, "type": "ping", "job": None,
                      "frames": [{"name": "a", "dtype": "float32", "shape": [2**31, 0]}]}).encode()
    assert code_of([big, b""]) == "BAD_MESSAGE"
    # the limits leave real messages alone
    ok = json.dumps({"v": 1, "type": "ping", "job": None,
                     "frames": [{"name": "a", "dtype": "uint8", "shape": [2**31 - 1, 0]}]}).encode()
    assert decode([ok, b""]).blobs["a"].shape == (2**31 - 1, 0)


def test_a_point_cloud_result_says_so_and_is_validated_as_one():
    rng = np.random.default_rng(1)
    cloud = MeshPayload(rng.normal(size=(20, 3)).astype(np.float32), np.zeros((0, 3), np.int32),
                        colors=rng.integers(0, 255, size=(20, 4)).astype(np.uint8))
    message = roundtrip(protocol.result("j", cloud, {"method": "m"}))
    assert message.get("kind") == "points"
    back = protocol.result_mesh(message)
    assert back.is_points and np.array_equal(back.vertices, cloud.vertices) and np.array_equal(back.colors, cloud.colors)
    assert roundtrip(protocol.result("j", textured_mesh(), {})).get("kind") is None  # as before point results
    # a mesh result with no faces, or a "points" result with faces or a texture, is refused
    with pytest.raises(ProtocolError, match="no faces"):
        protocol.mesh_from_blobs(protocol.mesh_blobs(cloud))
    with pytest.raises(ProtocolError, match="a point cloud has no faces"):
        protocol.mesh_from_blobs(protocol.mesh_blobs(textured_mesh()), points=True)
    textured = MeshPayload(cloud.vertices, cloud.faces, uvs=np.zeros((20, 2), np.float32))
    with pytest.raises(ProtocolError, match="no UVs or texture"):
        protocol.mesh_from_blobs(protocol.mesh_blobs(textured), points=True)
