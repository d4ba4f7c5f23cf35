"""The Text to Shape panel says how far the backend is in preparing its CLIP text path (issue 19:
the mapper trained on first use, in the background), from the backend's info."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

RUNNING = {"state": "running", "progress": 0.25, "eta_s": 180.0,
           "describe": "the CLIP text path is being prepared in the background (photographing procedural shape 92 "
                       "of 368: 25%, about 3 min left)"}


@pytest.fixture(scope="module")
def blender():
    bpy = pytest.importorskip("bpy")
    from addon_support import blender_env as env
    from addon_support import layout_dump

    env.enable_extension()
    return SimpleNamespace(bpy=bpy, env=env, dump=layout_dump.load(),
                           session_module=env.addon_module("blender.session"))


@pytest.fixture
def staged(blender):
    session, restore = blender.dump.stage(blender.session_module)
    yield session
    restore()


def panel_lines(blender, width: float = 300) -> list[tuple[str, str, bool]]:
    """(text, icon, alert) of each wrapped note above the prompt field (labels of one note joined)."""
    record = blender.dump.draw_panel("STEPSTONE_PT_text", blender.dump.SizedContext(width))
    notes = []
    for node in [record, *record.layouts()]:
        labels = [item for item in node.children if getattr(item, "kind", "") == "label"]
        if labels and node is not record:
            notes.append((" ".join(item.text for item in labels), labels[0].icon, bool(getattr(node, "alert", False))))
    return notes


def test_the_text_panel_shows_the_preparation_while_it_runs_and_when_it_fails(blender, staged):
    info = {"pipelines": {"generate": "available"}, "devices": ["cpu"]}
    staged.server_info = lambda: info
    assert not any("CLIP" in text for text, _, _ in panel_lines(blender))  # never started: nothing to say
    info["text_path"] = RUNNING
    (line,) = [note for note in panel_lines(blender) if "CLIP" in note[0]]
    assert line[0] == ("The CLIP text path is being prepared in the background (photographing procedural shape 92 "
                       "of 368: 25%, about 3 min left)")
    assert line[1] == "TIME" and not line[2]
    record = blender.dump.draw_panel("STEPSTONE_PT_text", blender.dump.SizedContext(300))
    limit = blender.dump.addon_core("text_layout").TextWidth(300).chars()
    assert blender.dump.render(record, limit)[1] == 0  # wrapped, never cut by Blender

    info["text_path"] = {"state": "failed", "describe": "preparing the CLIP text path failed: RuntimeError: out of "
                                                         "memory (log: /tmp/x/train.log)"}
    (line,) = [note for note in panel_lines(blender) if "CLIP" in note[0]]
    assert line[0].startswith("Preparing the CLIP text path failed: RuntimeError") and line[1] == "ERROR"
    info["text_path"] = {"state": "done", "describe": "the CLIP text path is ready"}
    assert not any("CLIP" in text for text, _, _ in panel_lines(blender))
