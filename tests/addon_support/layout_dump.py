"""scripts/dump_panel_layout.py as a module: its recording layout stands in for Blender's UI
layout in tests (headless Blender cannot draw)."""

from __future__ import annotations

import importlib.util
import sys

from .package import ROOT


def load():
    module = sys.modules.get("dump_panel_layout")
    if module is None:
        spec = importlib.util.spec_from_file_location("dump_panel_layout", ROOT / "scripts" / "dump_panel_layout.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    return module
