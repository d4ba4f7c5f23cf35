"""Print what the Stepstone sidebar shows, at the default sidebar width and at a wide one.

    .venv/bin/python scripts/dump_panel_layout.py [--widths 300 600] [--ui-scale 1.0] [--out FILE]

Headless Blender (the ``bpy`` module) cannot draw its UI, so the panels' ``draw`` functions are
called with a recording layout (``RecordingLayout``) and a context whose region has the chosen
width. The recording is printed as text: boxes as frames, rows side by side, labels with their icon
(``(ERROR)``), operators as ``[Button]``, properties as ``<Name: value>``, progress bars as
``[####      ] text``, red (alert) text marked ``!``. A label longer than the room Blender would
give it is shown cut in its middle (``start…end``), the way Blender cuts it, estimated with the
add-on's own character width (addon/core/text_layout.py).

The sidebar is staged (a fresh add-on session: a backend status, messages, running, queued and
failed jobs, a batch, a missing pipeline); no backend runs. tests/test_addon_panel_text.py uses
the same recorder and staging.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

REPO_MODULE = "stepstone_dump"
SIDEBAR = ("STEPSTONE_PT_main", "STEPSTONE_PT_reconstruct", "STEPSTONE_PT_text", "STEPSTONE_PT_stylize",
           "STEPSTONE_PT_batch", "STEPSTONE_PT_jobs")
ICON_ONLY_CHARS = 4
"""An icon-only button's share of a row, in characters (~24 px, as panels.DISMISS_PX)."""
LIST_FRAME_CHARS = 4
"""What the UI list's frame and scroll bar take from its rows."""
ICON_BUTTONS = {"X": "✕", "FILE_REFRESH": "⟳", "IMPORT": "⤓"}
"""Icon-only buttons as one character, so a row keeps its width in the dump."""


# ------------------------------------------------------------------------------------ recording
class OperatorArgs:
    """What ``layout.operator`` returns: only the operator's real properties may be set."""

    def __init__(self, idname: str):
        import bpy

        category, name = idname.split(".")
        self._rna = getattr(getattr(bpy.ops, category), name).get_rna_type()

    def __setattr__(self, key, value):
        if not key.startswith("_"):
            assert key in self._rna.properties, f"operator {self._rna.identifier} has no property {key!r}"
        object.__setattr__(self, key, value)


@dataclass
class Item:
    kind: str
    """``label``, ``operator``, ``prop`` or ``progress``."""
    text: str
    icon: str = "NONE"
    name: str = ""
    """The operator's idname or the property's identifier."""
    alert: bool = False
    args: OperatorArgs | None = None
    factor: float = 0.0


@dataclass
class RecordingLayout:
    """Stands in for ``bpy.types.UILayout``: records what a panel draws, and checks what Blender
    would check (every prop names a real property, every operator is registered)."""

    kind: str = "panel"
    context: object = field(default=None, repr=False)
    """What a UI list's ``draw_item`` is given (the panel's context)."""
    parent_alert: bool = False
    children: list = field(default_factory=list)
    alert: bool = False
    enabled: bool = True

    def _nested(self, kind: str) -> RecordingLayout:
        child = RecordingLayout(kind, self.context, self.alert or self.parent_alert)
        self.children.append(child)
        return child

    def row(self, **_kwargs):
        return self._nested("row")

    def column(self, **_kwargs):
        return self._nested("column")

    def box(self):
        return self._nested("box")

    def split(self, **_kwargs):
        return self._nested("row")

    def _add(self, item: Item) -> Item:
        item.alert = self.alert or self.parent_alert
        self.children.append(item)
        return item

    def label(self, text="", icon="NONE", **_kwargs):
        self._add(Item("label", text, icon))

    def operator(self, idname, text=None, icon="NONE", **_kwargs):
        import bpy

        category, name = idname.split(".")
        assert name in dir(getattr(bpy.ops, category)), f"no operator {idname}"
        args = OperatorArgs(idname)
        if text is None:
            text = args._rna.name
        return self._add(Item("operator", text, icon, idname, args=args)).args

    def prop(self, data, name, text=None, **_kwargs):
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        rna = data.bl_rna.properties[name]
        value = getattr(data, name)
        if rna.type == "ENUM" and value in rna.enum_items:
            value = rna.enum_items[value].name
        elif rna.type == "BOOLEAN":
            value = "on" if value else "off"
        value = getattr(value, "name", value)  # a pointer shows its datablock's name
        self._add(Item("prop", f"{text or rna.name}: {value}", name=name))

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0
        self._add(Item("progress", text, factor=factor))

    def template_list(self, list_type, list_id, data, prop, active_data, active_prop, rows=5, **_kwargs):
        import bpy

        assert hasattr(bpy.types, list_type)
        ui_list = getattr(bpy.types, list_type)  # a UIList cannot be instantiated outside a drawn region
        frame = self._nested("list")
        for index, item in enumerate(getattr(data, prop)):
            ui_list.draw_item(ui_list, self.context, frame._nested("row"), data, item, 0, active_data, active_prop,
                              index)

    # ---------------------------------------------------------------------------- reading back
    def items(self):
        for child in self.children:
            if isinstance(child, Item):
                yield child
            else:
                yield from child.items()

    def layouts(self):
        """Every nested layout (rows, columns, boxes...), depth first."""
        for child in self.children:
            if not isinstance(child, Item):
                yield child
                yield from child.layouts()

    def texts(self, kind: str = "label") -> list[str]:
        return [item.text for item in self.items() if item.kind == kind]

    def operators(self) -> list[str]:
        return [item.name for item in self.items() if item.kind == "operator"]


class SizedContext:
    """``bpy.context`` as seen from a sidebar region ``width`` pixels wide."""

    def __init__(self, width: float, ui_scale: float = 1.0):
        import bpy

        self.region = SimpleNamespace(width=width, type="UI")
        self.preferences = SimpleNamespace(view=SimpleNamespace(ui_scale=ui_scale),
                                           addons=bpy.context.preferences.addons)
        self._context = bpy.context

    def __getattr__(self, name):
        return getattr(self._context, name)


def draw_panel(panel_name: str, context) -> RecordingLayout:
    import bpy

    layout = RecordingLayout(context=context)
    panel = getattr(bpy.types, panel_name)
    panel.draw(SimpleNamespace(layout=layout), context)
    return layout


# ------------------------------------------------------------------------------------ rendering
def clip_middle(text: str, room: int) -> tuple[str, bool]:
    """Blender's cut of a text that does not fit: the start and the end, joined by an ellipsis."""
    if len(text) <= room:
        return text, False
    room = max(room, 3)
    head = room // 2
    return text[:head] + "…" + text[len(text) - (room - 1 - head):], True


def _item_lines(item: Item, room: int, icon_indent: str) -> tuple[list[str], bool]:
    mark = "!" if item.alert else ""
    if item.kind == "label":
        if item.icon == "BLANK1":
            prefix = icon_indent
        else:
            prefix = f"({item.icon}) " if item.icon != "NONE" else ""
        text, clipped = clip_middle(item.text, room)
        return [f"{mark}{prefix}{text}"], clipped
    if item.kind == "operator":
        if not item.text:
            return [f"[{ICON_BUTTONS.get(item.icon, item.icon)}]"], False
        text, clipped = clip_middle(item.text, room)
        return [f"[{text}]"], clipped
    if item.kind == "progress":
        filled = round(item.factor * 10)
        text, clipped = clip_middle(item.text, room)
        return [f"[{'#' * filled}{' ' * (10 - filled)}] {text}"], clipped
    text, clipped = clip_middle(item.text, room)
    return [f"<{text}>"], clipped


def _icon_only(child) -> bool:
    return isinstance(child, Item) and child.kind == "operator" and not child.text


def _prefix_len(layout: RecordingLayout) -> int:
    """Characters before the text on a layout's first label line: the alert mark and the icon."""
    first = next((item for item in layout.items() if item.kind == "label"), None)
    if first is None:
        return 0
    return int(first.alert) + (len(f"({first.icon}) ") if first.icon not in ("NONE", "BLANK1") else 0)


def render(layout: RecordingLayout, room: int) -> tuple[list[str], int]:
    """The layout as text lines, and how many texts Blender would cut; ``room`` is the number of
    characters a label has at this level."""
    clipped = 0
    if layout.kind == "row":
        children = layout.children
        icon_only = sum(1 for child in children if _icon_only(child))
        others = max(1, len(children) - icon_only)
        share = max(3, (room - ICON_ONLY_CHARS * icon_only) // others)
        blocks = []
        for child in children:
            width = ICON_ONLY_CHARS if _icon_only(child) else share
            lines, cut = (_item_lines(child, width, "") if isinstance(child, Item) else render(child, width))
            clipped += cut
            blocks.append(lines or [""])
        height = max((len(b) for b in blocks), default=0)
        # A text block takes its whole share, so the buttons after it line up at the right edge.
        widths = [max(len(line) for line in block) if isinstance(child, Item) else
                  max(max(len(line) for line in block), share + _prefix_len(child))
                  for child, block in zip(children, blocks)]
        rows = []
        for index in range(height):
            parts = [(block[index] if index < len(block) else "").ljust(w) for block, w in zip(blocks, widths)]
            rows.append("  ".join(parts).rstrip())
        return rows, clipped
    # The add-on's margin estimate already counts a box's padding; a list's frame comes on top.
    inner = room - (LIST_FRAME_CHARS if layout.kind == "list" else 0)
    lines: list[str] = []
    icon_indent = ""
    for child in layout.children:
        if isinstance(child, Item):
            if child.kind == "label" and child.icon not in ("NONE", "BLANK1"):
                icon_indent = " " * len(f"({child.icon}) ")
            child_lines, cut = _item_lines(child, inner, icon_indent)
        else:
            child_lines, cut = render(child, inner)
        lines += child_lines
        clipped += cut
    if layout.kind == "box":
        width = max([len(line) for line in lines] + [inner])
        lines = ["┌" + "─" * (width + 2) + "┐"] + [f"│ {line.ljust(width)} │" for line in lines] + \
                ["└" + "─" * (width + 2) + "┘"]
    elif layout.kind == "list":
        lines = ["╭ jobs list"] + [f"│ {line}" for line in lines] + ["╰"]
    return lines, clipped


def addon_core(name: str):
    """A core module of the enabled extension (``bl_ext.<repo>.stepstone.addon.core.<name>``): the
    same module objects the add-on uses, not a second copy imported from the checkout."""
    import importlib

    import bpy

    panels = bpy.types.STEPSTONE_PT_main.__module__
    return importlib.import_module(panels.rsplit(".blender.", 1)[0] + f".core.{name}")


def dump_sidebar(width: float, ui_scale: float = 1.0, panels=SIDEBAR) -> tuple[str, int]:
    """The staged sidebar at ``width`` pixels as text, and how many texts Blender would cut."""
    import bpy

    room = addon_core("text_layout").TextWidth(width, ui_scale).chars()
    context = SizedContext(width, ui_scale)
    out = [f"Sidebar {width:g} px wide, UI scale {ui_scale:g} (~{room} characters a line)"]
    cut_total = 0
    for name in panels:
        panel = getattr(bpy.types, name)
        lines, cut = render(draw_panel(name, context), room)
        cut_total += cut
        out.append(f"▾ {panel.bl_label}")
        out += [f"  {line}" for line in lines]
    out.append(f"({cut_total} text{'s' if cut_total != 1 else ''} cut by Blender)")
    return "\n".join(out), cut_total


# ------------------------------------------------------------------------------------ staging
BUSY = ("busy", "busy: 1 running, 1 queued · cuda:0 · v0.1.0")
FAILED = ("failed", "not running — the backend Python /home/artist/stepstone/.venv/bin/python has no module "
                    "'torch': install the backend's packages into it, or choose another Backend Python in the "
                    "add-on's preferences")


def stage(session_module, status=BUSY):
    """A fresh session with something in every part of the sidebar; returns (session, restore)."""
    import contextlib
    import io

    import bpy

    JobSpec, JobState, LinkStatus = session_module.JobSpec, session_module.JobState, session_module.LinkStatus
    previous = session_module._session
    session = session_module.Session()
    session_module._session = session
    session.status = lambda: LinkStatus(*status)
    session.server_info = lambda: {"pipelines": {
        "reconstruct": "available", "stylize": "available",
        "generate": "no text-to-shape weights: download them from "
                    "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K into ~/.cache/stepstone"}}
    tracker = session.tracker
    now = time.monotonic()
    batch = tracker.add_batch("Stepstone Batch 1 · chairs.txt")
    failed = tracker.add(JobSpec("generate", prompt="a chair"), "a carved oak chair", batch=batch.id)
    failed.state, failed.error_code = JobState.FAILED, "PIPELINE_FAILED"
    failed.error_message = ("the generate pipeline failed: CUDA out of memory while allocating 2.00 GiB "
                            "(free 1.12 GiB); lower the quality or close other GPU programs")
    done = tracker.add(JobSpec("generate", prompt="a stool"), "a three-legged stool", batch=batch.id)
    done.state = JobState.DONE
    queued = tracker.add(JobSpec("reconstruct"), "mug.png")
    queued.state, queued.queue_position = JobState.QUEUED, 1
    running = tracker.add(JobSpec("generate", prompt="a lamp"), "a brass desk lamp with a green shade")
    running.state, running.stage, running.fraction = JobState.RUNNING, "refine", 0.42
    running.message, running.eta_s, running.eta_at = "texturing the surface (pass 2 of 3)", 38.0, now
    tracker.version += 1
    quiet = contextlib.redirect_stdout(io.StringIO())  # notify also prints each message
    quiet.__enter__()
    if status[0] in session_module.HEALTHY_STATES:
        # (a backend problem would have been cleared when it came back)
        session.notify("WARNING", "teapot.png: result kept for later — the scene “Shot 12” it was made for "
                                  "is gone; Place Here puts it into the scene you are looking at")
    else:
        session.notify("ERROR", "Backend: the backend stopped 4 times; not restarting it again (press Start "
                                "Backend to try again). Last problem: the backend was killed by signal 9\n"
                                "full log: /home/artist/.config/blender/5.0/extensions/.user/stepstone_dump/"
                                "stepstone/logs/backend.log", topic=session_module.BACKEND_TOPIC)
    session.notify("ERROR", f"{failed.label}: failed — {failed.error_message}")
    session.notify("WARNING", "a brass desk lamp: preview skipped (the preview has 48,000 triangles, more "
                              "than the 20,000 a preview may have)")
    quiet.__exit__(None, None, None)
    session._sync_ui()
    bpy.context.window_manager.stepstone_jobs_index = 0

    def restore() -> None:
        session_module._session = previous
        session_module.get_session()._synced_version = -1

    return session, restore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=float, nargs="+", default=[300, 600])
    parser.add_argument("--ui-scale", type=float, default=1.0)
    parser.add_argument("--panels", nargs="+", default=list(SIDEBAR), help="panel class names, top to bottom")
    parser.add_argument("--backend-failed", action="store_true",
                        help="stage a backend that could not start instead of a busy one")
    parser.add_argument("--out", type=Path, help="also write the dump to this file")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from blender_checkout import addon_module, disable_extension, enable_checkout_extension

    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    package = enable_checkout_extension(REPO_MODULE)
    try:
        session_module = addon_module(package, "blender.session")
        _session, restore = stage(session_module, FAILED if args.backend_failed else BUSY)
        try:
            dumps = [dump_sidebar(width, args.ui_scale, args.panels)[0] for width in args.widths]
        finally:
            restore()
    finally:
        disable_extension(package)
    text = "\n\n".join(dumps) + "\n"
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
