"""Reading and writing meshes as .glb, .obj or .ply files.

Meshes travel Z-up (Blender's convention). glTF and OBJ are Y-up by convention, so those writers
rotate (x, y, z) → (x, z, −y); importers (Blender's included) rotate back. PLY has no axis
convention and is written Z-up as is.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from backend.protocol import MeshPayload

FORMATS = (".glb", ".obj", ".ply")


class MeshFileError(ValueError):
    pass


def _z_up_to_y_up(points: np.ndarray) -> np.ndarray:
    return np.stack([points[:, 0], points[:, 2], -points[:, 1]], axis=1)


def _y_up_to_z_up(points: np.ndarray) -> np.ndarray:
    return np.stack([points[:, 0], -points[:, 2], points[:, 1]], axis=1)


def _trimesh(mesh: MeshPayload, y_up: bool, simple_material: bool = False):
    import trimesh
    from PIL import Image

    vertices = _z_up_to_y_up(mesh.vertices) if y_up else mesh.vertices
    normals = None
    # without normals a glTF viewer shades each face flat, as the payload asks (a box's faces)
    if mesh.normals is not None and mesh.shading != "flat":
        normals = _z_up_to_y_up(mesh.normals) if y_up else mesh.normals
    visual = None
    if mesh.texture_png is not None and mesh.uvs is not None:
        image = Image.open(io.BytesIO(mesh.texture_png))
        if simple_material:  # OBJ/MTL: white diffuse so the texture is not darkened
            material = trimesh.visual.material.SimpleMaterial(image=image, diffuse=(255, 255, 255, 255),
                                                              ambient=(255, 255, 255, 255), specular=(0, 0, 0, 255))
        else:
            material = trimesh.visual.material.PBRMaterial(baseColorTexture=image, metallicFactor=0.0,
                                                           roughnessFactor=0.8)
        visual = trimesh.visual.TextureVisuals(uv=mesh.uvs, material=material)
    elif mesh.colors is not None:
        visual = trimesh.visual.ColorVisuals(vertex_colors=mesh.colors)
    return trimesh.Trimesh(vertices=vertices, faces=mesh.faces, vertex_normals=normals, visual=visual,
                           process=False)


def _write_point_ply(mesh: MeshPayload, path: Path) -> None:
    """Binary PLY: x y z, nx ny nz and red green blue alpha when present, no faces; Z up as the
    wire has it (what Blender's, MeshLab's and CloudCompare's PLY readers expect)."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if mesh.normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if mesh.colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
    rows = np.zeros(len(mesh.vertices), dtype=fields)
    for index, axis in enumerate("xyz"):
        rows[axis] = mesh.vertices[:, index]
        if mesh.normals is not None:
            rows[f"n{axis}"] = mesh.normals[:, index]
    if mesh.colors is not None:
        for index, channel in enumerate(("red", "green", "blue", "alpha")):
            rows[channel] = mesh.colors[:, index]
    types = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", "comment Stepstone point cloud",
              f"element vertex {len(rows)}", *(f"property {types[kind]} {name}" for name, kind in fields),
              "end_header"]
    with open(path, "wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        handle.write(rows.tobytes())


def export_mesh(mesh: MeshPayload, path: Path) -> Path:
    """Write ``mesh`` to ``path``; the suffix picks the format. OBJ also writes .mtl and texture PNG.
    A point cloud (no faces) is written as PLY only."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise MeshFileError(f"unsupported output format {suffix or '(none)'!r}; use one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if mesh.is_points:
        if suffix != ".ply":
            raise MeshFileError(f"a point cloud is written as .ply, not {suffix}")
        _write_point_ply(mesh, path)
        return path
    if suffix == ".glb":
        _trimesh(mesh, y_up=True).export(path, file_type="glb")
    elif suffix == ".obj":
        exported = _trimesh(mesh, y_up=True, simple_material=True).export(
            file_type="obj", mtl_name=f"{path.stem}.mtl", return_texture=True)
        text, extra = exported if isinstance(exported, tuple) else (exported, {})
        # trimesh names textures material_N.png: prefix them so several exports can share a folder
        renames = {name: f"{path.stem}_{name}" for name in extra if name.endswith(".png")}
        for name, data in extra.items():
            if name.endswith(".mtl"):
                data = data.decode("utf-8")
                for old_name, new_name in renames.items():
                    data = data.replace(old_name, new_name)
                data = data.encode("utf-8")
            (path.parent / renames.get(name, name)).write_bytes(data)
        path.write_text(text)
    else:
        _trimesh(mesh, y_up=False).export(path, file_type="ply")
    return path


def load_mesh(path: Path, max_triangles: int) -> MeshPayload:
    """Read a mesh file (geometry only; several objects are merged) as a Z-up ``MeshPayload``."""
    import trimesh

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise MeshFileError(f"cannot read {suffix or 'extension-less'} files; use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise MeshFileError(f"{path} does not exist")
    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many kinds on broken files
        raise MeshFileError(f"{path} could not be read as a mesh ({exc})") from None
    faces = np.asarray(loaded.faces)
    if len(faces) == 0:
        raise MeshFileError(f"{path} holds no triangles")
    if len(faces) > max_triangles:
        raise MeshFileError(f"{path} has {len(faces)} triangles; the limit is {max_triangles}")
    vertices = np.asarray(loaded.vertices, dtype=np.float32)
    if suffix in (".glb", ".obj"):
        vertices = _y_up_to_z_up(vertices)
    return MeshPayload(np.ascontiguousarray(vertices, dtype=np.float32), faces.astype(np.int32))
