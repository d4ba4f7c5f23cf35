"""Enable this checkout as a Blender extension inside the ``bpy`` module (for headless scripts and tests).

Blender imports installed extensions as ``bl_ext.<repository>.<id>``. A temporary extension
repository gives the same package layout without installing anything, so relative imports,
preferences and ``extension_path_user`` behave as in a real install. Its ``stepstone`` folder
links to the checkout's ``__init__.py``, ``addon/`` and ``backend/`` and holds a copy of the
manifest without the ``wheels`` list: the development environment already has pyzmq, and
enabling an extension that lists wheels makes Blender install them into the user's shared
``extensions/.local`` folder (and remove them again on disable, under other running processes).
"""

from __future__ import annotations

import importlib
import re
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def checkout_repository(repo_dir: Path) -> Path:
    """Lay out ``repo_dir/stepstone`` as an extension that points back at this checkout."""
    package = repo_dir / "stepstone"
    package.mkdir(parents=True)
    for name in ("__init__.py", "addon", "backend"):
        (package / name).symlink_to(ROOT / name, target_is_directory=(ROOT / name).is_dir())
    manifest = (ROOT / "blender_manifest.toml").read_text(encoding="utf-8")
    (package / "blender_manifest.toml").write_text(re.sub(r"(?ms)^wheels\s*=\s*\[.*?^\]\n", "", manifest),
                                                   encoding="utf-8")
    return package


def enable_checkout_extension(repo_module: str) -> str:
    """Register the extension from this checkout; returns its package name."""
    import addon_utils
    import bpy

    package = f"bl_ext.{repo_module}.stepstone"
    repo = Path(tempfile.mkdtemp(prefix=f"{repo_module}-"))
    checkout_repository(repo)
    bpy.context.preferences.extensions.repos.new(name=repo_module, module=repo_module, custom_directory=str(repo),
                                                 source="USER")
    errors: list[BaseException] = []
    addon_utils.enable(package, default_set=True, handle_error=errors.append)
    if errors:
        raise RuntimeError(f"could not enable the extension: {errors[0]}")
    return package


def disable_extension(package: str) -> None:
    """Unregister (this also stops a backend the add-on started)."""
    import addon_utils

    addon_utils.disable(package, default_set=True)


def addon_module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.addon.{name}")
