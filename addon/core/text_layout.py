"""Wrapping sidebar text to the region's width, so Blender never cuts a message in the middle.

Blender draws a label that does not fit as ``start…end``: the middle of an error, usually the part
that says what went wrong, is lost. The add-on cannot measure the UI font while drawing a panel, so
lines are sized from an average character width instead; erring wide only wraps a few characters
early, erring narrow brings the cut back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CHAR_WIDTH_PX = 6.0
"""Average width of one character of Blender's UI font (Inter, 11 pt) at UI scale 1. Measured with
``blf.dimensions`` in Blender 5.0 on the add-on's own messages: 5.0–5.6 px a character; 6.0 leaves
room for lines rich in capitals and wide letters (m, w, —)."""
DEFAULT_REGION_WIDTH_PX = 300
"""The 3D Viewport sidebar at its default width (``UI_SIDEBAR_PANEL_WIDTH`` 280 px plus the
category tabs), used when there is no region to ask (background mode, tests)."""
MARGIN_PX = 80
"""What a label inside a box does not get of the region's width: the category tabs (20 px), the
panel's and the box's margins (~30 px), the icon (20 px) and the label's own padding."""
MIN_CHARS = 12
"""Never narrower than this: a squeezed sidebar gets a few cut lines rather than a column of letters."""
BREAK_AFTER = ("/\\", ".-_")
"""A word too long for a line (a path, a URL) is broken after one of these when it can be; after a
folder separator first, so a path keeps its names (``…/stepstone/`` + ``.venv/bin``)."""


@dataclass(frozen=True)
class TextWidth:
    """The room a label has, in Blender's pixels (which grow with the UI scale)."""

    region_px: float = DEFAULT_REGION_WIDTH_PX
    ui_scale: float = 1.0
    reserved_px: float = 0.0
    """Taken by buttons beside the text (a dismiss ✕), at UI scale 1."""

    def chars(self) -> int:
        scale = self.ui_scale if self.ui_scale > 0 else 1.0
        usable = self.region_px - (MARGIN_PX + self.reserved_px) * scale
        return max(MIN_CHARS, int(usable // (CHAR_WIDTH_PX * scale)))


def wrap_lines(text: str, width_px: float = DEFAULT_REGION_WIDTH_PX, ui_scale: float = 1.0, *,
               reserved_px: float = 0.0) -> list[str]:
    """``text`` as the lines a label of a ``width_px`` wide region can show whole.

    Lines break between words; a word longer than a line is broken after ``/ \\ . - _`` when one
    falls in the second half of the line, otherwise at the line's end (it starts on the line before
    when a break fits there). Explicit newlines are kept, and every character but the spaces a line
    breaks at (and trailing ones) is kept, in order.
    """
    return wrap_to_chars(text, TextWidth(width_px, ui_scale, reserved_px).chars())


def wrap_to_chars(text: str, limit: int) -> list[str]:
    limit = max(1, limit)
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines += _wrap_paragraph(paragraph.rstrip(), limit)
    return lines


def _wrap_paragraph(paragraph: str, limit: int) -> list[str]:
    lines: list[str] = []
    current = ""
    # Leading spaces belong to the first word (a traceback's indentation); later runs of spaces are
    # kept inside a line and dropped where the line breaks.
    for match in re.finditer(r"(\s*)(\S+)", paragraph):
        gap, word = match.groups()
        joined = current + gap + word  # current is empty only at the paragraph's start
        if len(joined) <= limit:
            current = joined
            continue
        if current:
            if len(word) > limit:  # it gets lines of its own anyway: start it on this one
                end = _break_end(word, limit - len(current) - len(gap), 0)
                if end:
                    current, word = current + gap + word[:end], word[end:]
            lines.append(current)
        else:
            word = joined
        while len(word) > limit:
            end = _break_end(word, limit, limit // 2) or limit
            lines.append(word[:end])
            word = word[end:]
        current = word
    if current or not lines:
        lines.append(current)
    return lines


def _break_end(word: str, room: int, shortest: int) -> int:
    """Where to end the longest head of ``word`` that fits ``room`` and ends at a break character
    (0 if none is longer than ``shortest``: a hard split beats a line left mostly empty)."""
    for characters in BREAK_AFTER:
        for end in range(min(room, len(word) - 1), shortest, -1):
            if word[end - 1] in characters and word[end] not in characters:  # not inside "//"
                return end
    return 0
