"""The main job in Blender (scripts/demo_blender.py) in a fresh process, against the real backend.

A fresh process also proves what the add-on imports: after registering the extension and running
its workflows, Blender's Python must not have imported torch (the backend runs in its own process).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_reconstructs_the_example_reports_text_to_shape_and_renders(tmp_path):
    pytest.importorskip("bpy")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo_blender.py"), "--out", str(tmp_path),
                           "--quality", "preview", "--resolution", "160", "--samples", "4", "--timeout", "120"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["torch_imported_in_blender"] is False
    recon = summary["reconstruct"]
    assert recon["ok"] and recon["triangles"] > 100 and recon["method"]
    text = summary["text_to_shape"]
    # Until the text pipeline lands the backend says so; once it exists the job must simply work.
    # without CLIP weights (none can be downloaded here) the backend's reason is passed on verbatim
    assert text["ok"] or (text["code"] == "PIPELINE_UNAVAILABLE" and "CLIP" in text["error"])
    assert text["ok"] or "text to shape did not run (PIPELINE_UNAVAILABLE)" in done.stdout
    assert f"saved {tmp_path / 'demo.blend'}" in done.stdout
    from PIL import Image

    render = np.asarray(Image.open(tmp_path / "demo.png").convert("RGB"), dtype=np.float32)
    assert render.shape == (120, 160, 3) and render.std() > 5.0  # an object on a floor, not a blank frame
    assert (tmp_path / "demo.blend").stat().st_size > 10_000
