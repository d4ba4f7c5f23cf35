"""Packaging: the manifest, the built zip, and the zip installed into a (sandboxed) Blender."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("build_extension", ROOT / "scripts" / "build_extension.py")
build_extension = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_extension)

MANIFEST = tomllib.loads((ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))


def test_manifest_fields_and_version_match_the_backend():
    import backend

    assert MANIFEST["schema_version"] == "1.0.0" and MANIFEST["id"] == "stepstone"
    assert MANIFEST["version"] == backend.__version__
    assert MANIFEST["blender_version_min"] == "4.2.0" and MANIFEST["type"] == "add-on"
    assert MANIFEST["license"] == ["SPDX:GPL-3.0-or-later"]
    permissions = MANIFEST["permissions"]
    assert set(permissions) == {"network", "files"} and all(len(reason) > 10 for reason in permissions.values())
    excluded = MANIFEST["build"]["paths_exclude_pattern"]
    for folder in ("/tests/", "/scripts/", "/docs/", "/.*", "/backend/train/", "/backend/data/"):
        assert folder in excluded


def test_manifest_wheels_cover_every_platform_with_the_pinned_pyzmq():
    pinned = next(line.strip() for line in (ROOT / "backend" / "requirements.txt").read_text().splitlines()
                  if line.startswith("pyzmq=="))
    names = [Path(w).name for w in MANIFEST["wheels"]]
    assert all(w.startswith("./wheels/") for w in MANIFEST["wheels"])
    for name in names:
        match = build_extension.WHEEL_NAME.match(name)
        assert match and f"pyzmq=={match['version']}" == pinned and match["python"] == "cp311", name
    platforms = " ".join(names)
    assert "win_amd64" in platforms and "manylinux" in platforms and "x86_64" in platforms
    assert "universal2" in platforms or ("macosx" in platforms and "arm64" in platforms)
    declared = set(MANIFEST["platforms"])
    assert {"windows-x64", "macos-arm64", "macos-x64", "linux-x64"} == declared


def stand_in_source(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the extension sources, and stand-in wheel files (valid zips, named as listed)."""
    source = tmp_path / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("__init__.py", "blender_manifest.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("addon", "backend"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    (source / "tests").mkdir()
    (source / "tests" / "test_x.py").write_text("")
    (source / "scripts").mkdir()
    (source / "scripts" / "x.py").write_text("")
    wheels = tmp_path / "stand-in-wheels"
    wheels.mkdir()
    for entry in MANIFEST["wheels"]:
        with zipfile.ZipFile(wheels / Path(entry).name, "w") as archive:
            archive.writestr("zmq/__init__.py", "")
    return source, wheels


def test_build_zip_contains_addon_backend_and_wheels_but_no_tests(tmp_path):
    pytest.importorskip("bpy")  # Blender's own builder ships with the bpy module
    source, wheels = stand_in_source(tmp_path)
    code = build_extension.main(["--source-dir", str(source), "--output-dir", str(tmp_path / "dist"),
                                 "--wheels-from", str(wheels)])
    assert code == 0
    archive = tmp_path / "dist" / f"stepstone-{MANIFEST['version']}.zip"
    nested = zipfile.ZipFile(archive).namelist()
    # One top-level folder: Blender 4.2+ installs it the same, and an older Blender's legacy
    # installer finds an add-on in it that refuses with "needs Blender 4.2" (issue 20, finding 8).
    assert {n.split("/", 1)[0] for n in nested} == {"stepstone"}
    names = [n.removeprefix("stepstone/") for n in nested]
    assert "__init__.py" in names and "blender_manifest.toml" in names
    for wheel in MANIFEST["wheels"]:
        assert wheel.removeprefix("./") in names
    assert "backend/protocol.py" in names and "addon/blender/registration.py" in names
    assert "backend/pipelines/reconstruct/dispatch.py" in names and "backend/geometry/finish.py" in names
    assert not [n for n in names if n.startswith(("tests/", "scripts/")) or "__pycache__" in n]
    assert not [n for n in names if n.startswith(("backend/train/", "backend/data/"))]  # serving only


def test_build_refuses_a_version_mismatch_and_missing_wheels(tmp_path, capsys):
    pytest.importorskip("bpy")
    source, wheels = stand_in_source(tmp_path)
    manifest = (source / "blender_manifest.toml").read_text()
    (source / "blender_manifest.toml").write_text(manifest.replace('version = "0.1.0"', 'version = "9.9.9"', 1))
    assert build_extension.main(["--source-dir", str(source), "--wheels-from", str(wheels)]) == 1
    assert "says version '9.9.9'" in capsys.readouterr().err
    (source / "blender_manifest.toml").write_text(manifest)
    assert build_extension.main(["--source-dir", str(source), "--skip-download",
                                 "--output-dir", str(tmp_path / "d")]) == 1
    assert "is missing" in capsys.readouterr().err


def test_check_zip_catches_leaks_and_missing_wheels(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("blender_manifest.toml", (ROOT / "blender_manifest.toml").read_text())
        for member in build_extension.REQUIRED_MEMBERS[2:]:
            archive.writestr(member, "")
        archive.writestr("__init__.py", "")
        archive.writestr("tests/test_x.py", "")
    with pytest.raises(build_extension.BuildError, match="lacks .*pyzmq"):
        build_extension.check_zip(bad)


def test_check_zip_refuses_training_code(tmp_path):
    leaky = tmp_path / "leaky.zip"
    with zipfile.ZipFile(leaky, "w") as archive:
        archive.writestr("blender_manifest.toml", (ROOT / "blender_manifest.toml").read_text())
        for member in (*build_extension.REQUIRED_MEMBERS[2:], "__init__.py"):
            archive.writestr(member, "")
        for wheel in MANIFEST["wheels"]:
            archive.writestr(wheel.removeprefix("./"), "")
        archive.writestr("backend/train/losses.py", "")
    with pytest.raises(build_extension.BuildError, match=r"\['backend/train'\]"):
        build_extension.check_zip(leaky)


@pytest.mark.slow
def test_installed_zip_runs_a_job_in_a_sandboxed_blender(tmp_path):
    """Install the real zip (real wheels) with Blender's extension API and reconstruct an image."""
    pytest.importorskip("bpy")
    wheel_dir = ROOT / "wheels"
    if not all((wheel_dir / Path(w).name).is_file() for w in MANIFEST["wheels"]):
        pytest.skip("run scripts/build_extension.py once to fetch the pyzmq wheels")
    assert build_extension.main(["--skip-download", "--output-dir", str(tmp_path / "dist")]) == 0
    archive = tmp_path / "dist" / f"stepstone-{MANIFEST['version']}.zip"
    script = tmp_path / "install.py"
    script.write_text(textwrap.dedent(f"""
        import importlib, json, os, sys, time
        import bpy
        result = bpy.ops.extensions.package_install_files(filepath={str(archive)!r}, repo="user_default",
                                                          enable_on_install=True)
        package = "bl_ext.user_default.stepstone"
        prefs = bpy.context.preferences.addons[package].preferences
        prefs.python_path, prefs.device, prefs.quality = {str(ROOT / ".venv/bin/python")!r}, "cpu", "preview"
        session_module = importlib.import_module(package + ".addon.blender.session")
        bpy.ops.stepstone.reconstruct_files(filepath={str(ROOT / "examples" / "mug.png")!r})
        session = session_module.get_session()
        end = time.monotonic() + 120
        while time.monotonic() < end and not all(j.final for j in session.tracker.jobs.values()):
            session_module.timer()
            time.sleep(0.02)
        job = list(session.tracker.jobs.values())[0]
        obj = bpy.data.objects.get(job.target.get("object", ""))
        out = {{"installed": sorted(result), "state": job.state.value, "error": job.error_message,
               "triangles": len(obj.data.polygons) if obj else 0,
               "backend_cwd": str(session.link.supervisor.config.backend_root),
               "cache": bpy.utils.extension_path_user(package, path="cache", create=True),
               "torch": "torch" in sys.modules,
               "site_zmq": os.path.isdir(bpy.utils.user_resource("EXTENSIONS",
                                                                  path=".local/lib/python3.11/site-packages/zmq"))}}
        import addon_utils
        addon_utils.disable(package, default_set=True)
        print("RESULT " + json.dumps(out))
    """))
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender-user")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert line, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(line[len("RESULT "):])
    assert out["installed"] == ["FINISHED"] and out["state"] == "done", out
    assert out["triangles"] > 100 and not out["torch"]
    installed_root = tmp_path / "blender-user" / "extensions" / "user_default" / "stepstone"
    assert Path(out["backend_cwd"]) == installed_root  # the backend ran from the bundled source
    assert out["cache"].startswith(str(tmp_path / "blender-user"))
    assert out["site_zmq"]  # Blender installed this platform's bundled pyzmq wheel
