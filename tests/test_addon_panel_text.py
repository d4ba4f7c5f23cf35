"""Sidebar text: wrapped to the region's width, the ETA kept, messages dismissable and cleared once
fixed, and a clear refusal from a Blender too old for extensions.

The wrapping itself is plain Python (addon/core/text_layout.py). The panels are drawn into the
recording layout of scripts/dump_panel_layout.py (headless Blender cannot draw) with a context whose
region has a chosen width, from a fresh, staged add-on session: no backend runs here.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from addon.core.text_layout import TextWidth, wrap_lines, wrap_to_chars

ROOT = Path(__file__).resolve().parents[1]

PATH = "/home/artist/projects/stepstone/.venv/lib/python3.11/site-packages/torch/lib/libtorch_cuda.so"
URL = "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/open_clip_pytorch_model.bin"
SENTENCE = ("the backend stopped 4 times; not restarting it again (press Start Backend to try again). "
            "Last problem: the backend was killed by signal 9")


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ------------------------------------------------------------------------------------ wrapping
def test_lines_break_between_words_and_fit_the_width():
    lines = wrap_to_chars(SENTENCE, 30)
    assert len(lines) > 3 and all(len(line) <= 30 for line in lines)
    assert " ".join(lines) == SENTENCE  # only the spaces at the breaks are gone: no word was cut
    assert wrap_to_chars("short", 30) == ["short"]


def test_a_path_or_url_longer_than_a_line_breaks_after_separators_and_is_kept_whole():
    windows = r"C:\Users\artist\AppData\Roaming\Blender Foundation\Blender\4.2\logs\backend.log"
    for token in (PATH, URL, windows.split(" ")[1]):
        lines = wrap_to_chars(token, 30)
        assert len(lines) >= 2 and all(len(line) <= 30 for line in lines), lines
        assert "".join(lines) == token
        assert all(line[-1] in "/\\.-_" for line in lines[:-1]), lines
    for text in (f"see {PATH} now", f"see {URL} now", windows):
        lines = wrap_to_chars(text, 30)
        assert all(len(line) <= 30 for line in lines) and squeeze("".join(lines)) == squeeze(text), lines
    # a long token starts on the current line when a break fits there, but never inside "//"
    assert wrap_to_chars("see " + URL, 30)[0] == "see https://huggingface.co/"
    assert wrap_to_chars("v" * 22 + " " + URL, 30)[:2] == ["v" * 22, "https://huggingface.co/laion/"]
    # no separator at all: cut at the line's end, nothing lost
    assert wrap_to_chars("x" * 70, 30) == ["x" * 30, "x" * 30, "x" * 10]


def test_newlines_indentation_and_every_character_are_kept():
    text = ("internal error in the Stepstone timer:\nTraceback (most recent call last):\n"
            f'  File "{PATH}", line 12, in tick\n\nValueError: boom')
    lines = wrap_to_chars(text, 36)
    assert lines[:2] == ["internal error in the Stepstone", "timer:"]
    assert "Traceback (most recent call last):" in lines
    assert any(line.startswith('  File "/') for line in lines)  # the traceback's indentation
    assert "" in lines  # the blank line
    assert squeeze("".join(lines)) == squeeze(text)
    assert wrap_to_chars("", 36) == [""]


def test_the_width_comes_from_the_region_and_the_ui_scale():
    narrow, wide = wrap_lines(SENTENCE, 300), wrap_lines(SENTENCE, 600)
    assert len(narrow) > len(wide) >= 2
    assert max(map(len, narrow)) <= TextWidth(300).chars() < TextWidth(600).chars()
    # a doubled UI scale doubles the region's pixels and the font: the same lines
    assert wrap_lines(SENTENCE, 600, 2.0) == narrow
    # a button beside the text takes its room
    assert TextWidth(300, reserved_px=24).chars() < TextWidth(300).chars()
    # a sidebar squeezed to nothing still gets readable lines
    assert TextWidth(40).chars() >= 12


# ------------------------------------------------------------------------------------ Blender < 4.2
def legacy_bl_info(path: Path) -> dict:
    """``bl_info`` read the way Blender's legacy add-on list reads it (addon_utils' "speedy" read):
    the lines from the one starting with ``bl_info`` to the next blank line, as a literal."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("bl_info"))
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    assignment = ast.parse("\n".join(lines[start:end])).body[0]
    return ast.literal_eval(assignment.value)


def test_an_old_blender_lists_the_folder_as_needing_blender_4_2():
    info = legacy_bl_info(ROOT / "__init__.py")
    assert info["name"] == "Stepstone" and info["blender"] == (4, 2, 0)
    assert "4.2" in info["warning"] and "extension" in info["warning"]


def test_registering_in_blender_older_than_4_2_refuses_with_what_to_do(monkeypatch):
    # As a legacy add-on folder, with an old Blender's bpy. (Under a name of its own: other tests
    # in this process load the repository as ``stepstone`` with its add-on imported.)
    spec = importlib.util.spec_from_file_location("stepstone_legacy", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    root = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "stepstone_legacy", root)
    spec.loader.exec_module(root)
    monkeypatch.setitem(sys.modules, "bpy", SimpleNamespace(app=SimpleNamespace(version=(4, 1, 1))))
    with pytest.raises(RuntimeError) as refused:
        root.register()
    message = str(refused.value)
    assert "Stepstone needs Blender 4.2 or newer" in message and "Blender 4.1.1" in message
    assert "Get Extensions → Install from Disk" in message
    assert "stepstone_legacy.addon" not in sys.modules  # refused before the add-on's own imports
    assert root.version_refusal((4, 2, 0)) == "" and root.version_refusal((5, 0, 1)) == ""


# ------------------------------------------------------------------------------------ panels
@pytest.fixture(scope="module")
def blender():
    bpy = pytest.importorskip("bpy")
    from addon_support import blender_env as env

    env.enable_extension()
    from addon_support import layout_dump

    return SimpleNamespace(bpy=bpy, env=env, dump=layout_dump.load(), session_module=env.addon_module("blender.session"))


@pytest.fixture
def staged(blender):
    """A fresh add-on session with a long status, messages, jobs and a batch (see the dump script)."""
    session, restore = blender.dump.stage(blender.session_module)
    yield session
    restore()


def draw(blender, panel: str, width: float):
    return blender.dump.draw_panel(panel, blender.dump.SizedContext(width))


def notice_rows(record) -> dict:
    """The labels drawn for each message, by the id its dismiss button carries."""
    rows = {}
    for node in (record, *record.layouts()):
        buttons = [c for c in node.children if getattr(c, "name", "") == "stepstone.dismiss_notice"]
        if node.kind == "row" and buttons:
            rows[buttons[0].args.notice_id] = node.texts()
    return rows


def test_the_status_line_and_messages_wrap_to_the_sidebar_and_nothing_is_cut(blender, staged):
    status = ("failed", "not running — the backend could not start: the backend exited with code 1; "
                        f"full log: {PATH}")
    staged.status = lambda: blender.session_module.LinkStatus(*status)
    labels = {}
    for width in (300, 600):
        record = draw(blender, "STEPSTONE_PT_main", width)
        labels[width] = record.texts()
        status_lines = record.children[0].children[0].texts()  # the box's first column
        assert len(status_lines) > 1 and status_lines[0].startswith("Backend: not running")
        assert squeeze("".join(status_lines)) == squeeze(f"Backend: {status[1]}")  # whole, in order
        limit = TextWidth(width).chars()
        assert all(len(text) <= limit for text in labels[width]), labels[width]
        lines, cut = blender.dump.render(record, limit)
        assert cut == 0, "\n".join(lines)
    assert len(labels[300]) > len(labels[600]) > 4
    notice = next(n for n in staged.notices if n.text.startswith("a carved oak chair"))
    shown = notice_rows(draw(blender, "STEPSTONE_PT_main", 300))[notice.id]
    assert squeeze("".join(shown)) == squeeze(notice.text) and len(shown) >= 4


def test_the_eta_leads_the_progress_bar_and_the_main_panel_shows_the_jobs(blender, staged):
    jobs = draw(blender, "STEPSTONE_PT_jobs", 300)
    assert any(text.startswith("38 s left · refine 42%") for text in jobs.texts("progress"))
    summary = [t for t in draw(blender, "STEPSTONE_PT_main", 300).texts() if t.startswith("Jobs:")]
    assert summary and "1 running (38 s left)" in summary[0]
    # the active job's whole text is under the narrow list, wrapped
    under_list = "".join(jobs.children[-2].texts())
    assert squeeze(under_list) == squeeze("a brass desk lamp with a green shade: 38 s left · refine 42% · "
                                          "texturing the surface (pass 2 of 3)")
    # batch failures and a missing pipeline wrap too
    failed = next(job for job in staged.tracker.jobs.values() if job.error_message)
    batch = [item.text for item in draw(blender, "STEPSTONE_PT_batch", 300).items()
             if item.kind == "label" and item.alert]
    assert len(batch) >= 3 and squeeze("".join(batch)) == squeeze(f"{failed.label}: {failed.error_message}")
    note = draw(blender, "STEPSTONE_PT_text", 300).children[0].texts()
    assert note[0].startswith("Unavailable: no text-to-shape") and len(note) >= 3
    assert squeeze("".join(note)).endswith("~/.cache/stepstone")


def test_messages_are_dismissed_one_by_one_or_cleared(blender, staged):
    bpy = blender.bpy
    record = draw(blender, "STEPSTONE_PT_main", 300)
    buttons = [item.args for item in record.items() if item.name == "stepstone.dismiss_notice"]
    assert len(buttons) == 3 and "stepstone.clear_notices" in record.operators()
    target = next(n for n in staged.notices if n.text.startswith("a carved oak chair"))
    button = next(b for b in buttons if b.notice_id == target.id)
    assert bpy.ops.stepstone.dismiss_notice(notice_id=button.notice_id) == {"FINISHED"}
    assert target not in staged.notices and len(staged.notices) == 2
    assert bpy.ops.stepstone.dismiss_notice(notice_id=target.id) == {"CANCELLED"}  # already gone
    assert bpy.ops.stepstone.clear_notices() == {"FINISHED"}
    assert not staged.notices
    record = draw(blender, "STEPSTONE_PT_main", 300)
    assert "stepstone.clear_notices" not in record.operators()


@pytest.fixture
def check_result(blender):
    """The check writes its summary into the preferences: put back what was there."""
    prefs = blender.env.prefs()
    before = prefs.check_result
    yield
    prefs.check_result = before


def test_backend_problems_clear_themselves_once_it_is_connected_again(blender, staged, check_result):
    session_module = blender.session_module
    JobEvent, LinkStatus = session_module.JobEvent, session_module.LinkStatus
    staged.clear_notices()
    state = ["failed"]
    staged.status = lambda: LinkStatus(state[0], state[0])
    job = next(iter(staged.tracker.jobs.values()))
    staged.pending.extend([
        JobEvent("report", level="ERROR", text="Backend: the backend could not start: no module 'torch'"),
        JobEvent("report", level="ERROR", text="Backend stopped: killed by signal 9. Restarting in 1 s"),
        JobEvent("report", job, level="ERROR", text="Backend of a car: failed — out of memory"),
        JobEvent("report", level="ERROR", text="backend: the server rejected a message"),
    ])
    staged.check = SimpleNamespace(poll=lambda: SimpleNamespace(ok=False, summary="no module named torch"))
    staged.tick()
    texts = [n.text for n in staged.notices]
    assert len(texts) == 5 and "backend check: no module named torch" in texts
    state[0] = "starting"
    staged.tick()
    assert len(staged.notices) == 5  # not fixed yet
    state[0] = "connected"
    staged.tick()
    assert [n.text for n in staged.notices] == ["Backend of a car: failed — out of memory",
                                               "backend: the server rejected a message"]
    # A check that fails while a (previous) backend is connected is news: it stays.
    staged.check = SimpleNamespace(poll=lambda: SimpleNamespace(ok=False, summary="torch 1.x is too old"))
    staged.tick()
    state[0] = "busy"
    staged.tick()
    assert "backend check: torch 1.x is too old" in [n.text for n in staged.notices]
