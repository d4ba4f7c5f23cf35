"""Load the repository as the extension's root package, the way Blender imports an extension.

Blender imports an installed extension as ``bl_ext.<repo>.<id>`` and the add-on reaches the
bundled backend through relative imports. The bpy-free core tests load the repository under the
package name ``stepstone`` (no bpy needed); the bpy tests register it through a real extension
repository (see ``blender_env.py``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_stepstone() -> ModuleType:
    """The repository as package ``stepstone`` (imports nothing heavy: the root __init__ is lazy)."""
    module = sys.modules.get("stepstone")
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location("stepstone", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["stepstone"] = module
    spec.loader.exec_module(module)
    return module


def core(name: str) -> ModuleType:
    """``stepstone.addon.core.<name>``."""
    load_stepstone()
    return importlib.import_module(f"stepstone.addon.core.{name}")
