"""Build the installable Stepstone extension zip.

    .venv/bin/python scripts/build_extension.py [--output-dir dist] [--wheels-from DIR | --skip-download]

1. Fetches the unmodified pyzmq wheels listed in ``blender_manifest.toml`` from PyPI into
   ``wheels/`` (``pip download``; the platform tags come from each listed file name), unless they
   are there already, or copies them from ``--wheels-from``.
2. Checks the manifest: its version must equal ``backend.__version__``.
3. Builds the zip with Blender's own extension builder (``blender_ext.py build`` from the bpy
   module, the code behind ``blender --command extension build``), which validates the manifest
   and applies ``paths_exclude_pattern``.
4. Moves every member into one top-level folder named by the extension id. Blender 4.2+ installs
   such a zip the same way (one folder holding the manifest), and an older Blender's legacy add-on
   installer then finds an add-on it can list and refuse clearly ("needs Blender 4.2"), instead of
   a zip it cannot use.
5. Opens the zip and checks it: manifest version, every listed wheel inside, the add-on and the
   backend's serving code inside (protocol, client, server, the pipelines with the ``reconstruct``
   package, the one mesh-finishing path), no tests/scripts/docs and no training code
   (``backend/train``, ``backend/data``: serving never imports it, tests/test_package_boundary.py).

Prints the path of the zip. Exits non-zero with a readable message on any problem.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-(?P<python>cp\d+)-(?P<abi>[^-]+)-(?P<platform>.+)\.whl$")
REQUIRED_MEMBERS = ("__init__.py", "blender_manifest.toml", "addon/__init__.py", "addon/blender/registration.py",
                    "backend/__init__.py", "backend/protocol.py", "backend/client.py", "backend/server.py",
                    "backend/pipelines/registry.py", "backend/pipelines/reconstruct/__init__.py",
                    "backend/pipelines/reconstruct/dispatch.py", "backend/pipelines/reconstruct/model.py",
                    "backend/geometry/finish.py")
FORBIDDEN_PREFIXES = ("tests/", "scripts/", "docs/", ".venv/", ".git/", ".ci/", "out/", "bench_results/",
                      "backend/train/", "backend/data/")


class BuildError(RuntimeError):
    pass


def read_manifest(root: Path = ROOT) -> dict:
    with open(root / "blender_manifest.toml", "rb") as handle:
        return tomllib.load(handle)


def backend_version(root: Path = ROOT) -> str:
    text = (root / "backend" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not match:
        raise BuildError("backend/__init__.py has no __version__")
    return match.group(1)


def check_version(manifest: dict, root: Path = ROOT) -> None:
    if manifest.get("version") != backend_version(root):
        raise BuildError(f"blender_manifest.toml says version {manifest.get('version')!r} but the backend is "
                         f"{backend_version(root)!r}; they are released together, make them equal")


def fetch_wheels(manifest: dict, wheel_dir: Path, wheels_from: Path | None, download: bool) -> list[Path]:
    """Every wheel the manifest lists, present in ``wheel_dir``."""
    wanted = [Path(w).name for w in manifest.get("wheels", [])]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        target = wheel_dir / name
        if target.is_file():
            continue
        if wheels_from is not None:
            source = wheels_from / name
            if not source.is_file():
                raise BuildError(f"{name} is not in {wheels_from}")
            shutil.copy2(source, target)
            continue
        if not download:
            raise BuildError(f"{target} is missing (run without --skip-download to fetch it from PyPI)")
        _pip_download(name, wheel_dir)
        if not target.is_file():
            raise BuildError(f"pip did not produce {name}; files in {wheel_dir}: "
                             f"{sorted(p.name for p in wheel_dir.glob('*.whl'))}")
    return [wheel_dir / name for name in wanted]


def _pip_download(name: str, wheel_dir: Path) -> None:
    match = WHEEL_NAME.match(name)
    if match is None:
        raise BuildError(f"cannot read the wheel file name {name!r}")
    python = match["python"]  # e.g. cp311
    platforms = [arg for tag in match["platform"].split(".") for arg in ("--platform", tag)]
    command = [sys.executable, "-m", "pip", "download", f"{match['name']}=={match['version']}", "--no-deps",
               "--only-binary=:all:", "--implementation", "cp", "--python-version", f"{python[2]}.{python[3:]}",
               "--abi", match["abi"], *platforms, "--dest", str(wheel_dir), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"pip could not download {name}:\n{done.stderr.strip()[-2000:]}")


def blender_ext_script() -> Path:
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise BuildError("the bpy module is needed to build the extension (pip install bpy==5.0.1)")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise BuildError(f"blender_ext.py not found in {Path(spec.origin).parent}")
    return found[-1]


def build_zip(root: Path, output_dir: Path) -> Path:
    manifest = read_manifest(root)
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    if output.exists():
        output.unlink()
    done = subprocess.run([sys.executable, str(blender_ext_script()), "build", "--source-dir", str(root),
                           "--output-filepath", str(output)], capture_output=True, text=True)
    if done.returncode != 0 or not output.is_file():
        raise BuildError(f"Blender's extension builder failed:\n{(done.stdout + done.stderr).strip()[-3000:]}")
    nest_in_folder(output, manifest["id"])
    return output


def nest_in_folder(path: Path, folder: str) -> None:
    """Rewrite the zip with every member under ``folder/`` (dates and compression kept)."""
    nested = path.with_suffix(".nesting")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(nested, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            moved = zipfile.ZipInfo(f"{folder}/{info.filename}", date_time=info.date_time)
            moved.compress_type, moved.external_attr = info.compress_type, info.external_attr
            target.writestr(moved, source.read(info))
    nested.replace(path)


def _top_folder(names: list[str]) -> str:
    """``stepstone/`` when every member sits in that one folder, else ""."""
    tops = {name.split("/", 1)[0] for name in names}
    return f"{tops.pop()}/" if len(tops) == 1 and all("/" in name for name in names) else ""


def check_zip(path: Path, root: Path = ROOT) -> list[str]:
    """The zip's members, after checking what must and must not be inside."""
    with zipfile.ZipFile(path) as archive:
        top = _top_folder(archive.namelist())
        names = [name.removeprefix(top) for name in archive.namelist()]
        if "blender_manifest.toml" not in names:
            raise BuildError(f"{path.name} has no blender_manifest.toml at its top or in one folder")
        manifest = tomllib.loads(archive.read(top + "blender_manifest.toml").decode("utf-8"))
    check_version(manifest, root)
    missing = [m for m in REQUIRED_MEMBERS if m not in names]
    missing += [w.removeprefix("./") for w in manifest.get("wheels", []) if w.removeprefix("./") not in names]
    if missing:
        raise BuildError(f"{path.name} lacks {missing}")
    leaked = sorted({next((p.rstrip("/") for p in FORBIDDEN_PREFIXES if n.startswith(p)), n.split("/")[0])
                     for n in names if n.startswith(FORBIDDEN_PREFIXES) or n.startswith(".")})
    if leaked:
        raise BuildError(f"{path.name} contains folders that paths_exclude_pattern should keep out: {leaked}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", default=str(ROOT), help="extension root (default: this checkout)")
    parser.add_argument("--output-dir", default=str(ROOT / "dist"))
    parser.add_argument("--wheels-from", help="copy the listed wheels from this folder instead of downloading")
    parser.add_argument("--skip-download", action="store_true", help="use only wheels already in wheels/")
    args = parser.parse_args(argv)
    root = Path(args.source_dir).resolve()
    try:
        manifest = read_manifest(root)
        check_version(manifest, root)
        wheels = fetch_wheels(manifest, root / "wheels", Path(args.wheels_from) if args.wheels_from else None,
                              download=not args.skip_download)
        output = build_zip(root, Path(args.output_dir).resolve())
        names = check_zip(output, root)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = output.stat().st_size / 1e6
    print(f"built {output} ({size:.1f} MB, {len(names)} files, {len(wheels)} wheels, version {manifest['version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
