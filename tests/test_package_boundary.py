"""Serving code never imports the training side (`backend.train`, `backend.data`): the extension
ships without it (docs/reconstruction.md, ARCHITECTURE.md). Checked twice: by importing the
serving entry points in a fresh interpreter, and statically over every serving source file."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKEND = ROOT / "backend"
TRAINING = ("backend.train", "backend.data")
TRAINING_DIRS = tuple(BACKEND / name for name in ("train", "data"))

IMPORT_SERVING = """
import importlib, json, pkgutil, sys

import backend.pipelines
import backend.pipelines.reconstruct as reconstruct
from backend.pipelines.registry import default_registry

modules = ["backend.server", "backend.jobs", "backend.cli", "backend.pipelines.registry"]
modules += [f"{reconstruct.__name__}.{m.name}" for m in pkgutil.iter_modules(reconstruct.__path__)]
for name in modules:
    importlib.import_module(name)
registry = default_registry()
built = {task: type(registry.create(task, "cpu")).__name__ for task in registry.tasks()}
leaked = sorted(m for m in sys.modules if m.split(".")[:2] in (["backend", "train"], ["backend", "data"]))
print(json.dumps({"modules": modules, "built": built, "leaked": leaked}))
"""


def test_serving_entry_points_load_no_training_module():
    done = subprocess.run([sys.executable, "-c", IMPORT_SERVING], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "backend.pipelines.reconstruct.dispatch" in report["modules"]
    assert report["built"]["reconstruct"] == "ReconstructPipeline"
    assert report["leaked"] == []


def serving_files() -> list[Path]:
    return sorted(p for p in BACKEND.rglob("*.py")
                  if not any(p.is_relative_to(d) for d in TRAINING_DIRS) and "__pycache__" not in p.parts)


def imported_modules(source: str, package: str) -> list[str]:
    """Every module an import statement in ``source`` names, module-level or inside a function,
    with relative imports resolved against ``package`` (the file's package)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def training_imports(source: str, package: str) -> list[str]:
    return [n for n in imported_modules(source, package)
            if n in TRAINING or n.startswith(tuple(t + "." for t in TRAINING))]


def test_no_serving_source_file_imports_training_code():
    files = serving_files()
    assert BACKEND / "pipelines" / "reconstruct" / "model.py" in files and BACKEND / "server.py" in files
    offenders = {}
    for path in files:
        package = ".".join(path.relative_to(ROOT).parts[:-1])
        if found := training_imports(path.read_text(encoding="utf-8"), package):
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}


@pytest.mark.parametrize("source", [
    "from backend.train.losses import soft_iou_loss",
    "def f():\n    import backend.data.records\n",
    "from backend import train",
    "from ...train import inputs",
])
def test_the_static_check_sees_every_form_of_import(source):
    assert training_imports(source, "backend.pipelines.reconstruct")
    assert not training_imports(source.replace("train", "render").replace("data", "geometry"),
                                "backend.pipelines.reconstruct")
