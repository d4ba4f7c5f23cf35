"""Batch inputs: prompt lists (text block, .txt, .csv) and folders of images → one item per job.

Bad input is reported with the line or row it came from; nothing is silently skipped except blank
lines and ``#`` comments in plain prompt lists.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from .images import IMAGE_SUFFIXES, folder_hint


class BatchInputError(ValueError):
    """A prompt list or image folder that cannot become a batch."""


@dataclass(frozen=True)
class PromptItem:
    prompt: str
    negative_prompt: str | None = None
    seed: int | None = None
    """None = use the panel's seed."""
    name: str | None = None
    """Object name for the result; None = derived from the prompt."""


def parse_prompt_lines(text: str, source: str = "text") -> list[PromptItem]:
    """One prompt per non-empty line; lines starting with ``#`` are comments."""
    items = [PromptItem(line.strip()) for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if not items:
        raise BatchInputError(f"{source} holds no prompts (one prompt per line; '#' starts a comment)")
    return items


_CSV_COLUMNS = ("prompt", "negative_prompt", "seed", "name")


def parse_prompt_csv(text: str, source: str = "CSV") -> list[PromptItem]:
    """CSV with a header naming a ``prompt`` column (optional ``negative_prompt``, ``seed``,
    ``name``); without such a header, the first column of every row is the prompt."""
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        raise BatchInputError(f"{source} holds no rows")
    header = [cell.strip().lower() for cell in rows[0]]
    if "prompt" not in header:
        items = [PromptItem(row[0].strip()) for row in rows if row and row[0].strip()]
        if not items:
            raise BatchInputError(f"{source}: the first column is empty in every row")
        return items
    unknown = [h for h in header if h and h not in _CSV_COLUMNS]
    if unknown:
        raise BatchInputError(f"{source}: unknown column(s) {unknown}; known columns are {list(_CSV_COLUMNS)}")
    col = {name: header.index(name) for name in _CSV_COLUMNS if name in header}
    items = []
    for number, row in enumerate(rows[1:], start=2):
        def cell(name: str) -> str:
            index = col.get(name)
            return row[index].strip() if index is not None and index < len(row) else ""

        prompt = cell("prompt")
        if not prompt:
            raise BatchInputError(f"{source} row {number}: the prompt is empty")
        seed_text = cell("seed")
        seed = None
        if seed_text:
            try:
                seed = int(seed_text)
            except ValueError:
                raise BatchInputError(f"{source} row {number}: seed {seed_text!r} is not a whole number") from None
            if not 0 <= seed < 2**31:
                raise BatchInputError(f"{source} row {number}: seed {seed} is outside [0, 2^31)")
        items.append(PromptItem(prompt, cell("negative_prompt") or None, seed, cell("name") or None))
    if not items:
        raise BatchInputError(f"{source} has a header but no prompts")
    return items


def read_prompt_file(path: str | Path) -> list[PromptItem]:
    """A .txt (one prompt per line) or .csv prompt list."""
    path = Path(path)
    if not path.is_file():
        raise BatchInputError(f"prompt file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise BatchInputError(f"prompt file {path.name!r} is not UTF-8 text") from None
    except OSError as exc:
        raise BatchInputError(f"prompt file {path.name!r} could not be read ({exc.strerror})") from None
    if path.suffix.lower() == ".csv":
        return parse_prompt_csv(text, path.name)
    if path.suffix.lower() in (".txt", ""):
        return parse_prompt_lines(text, path.name)
    raise BatchInputError(f"prompt file {path.name!r} must be .txt or .csv")


def list_image_folder(path: str | Path) -> list[Path]:
    """Image files (PNG, JPEG, WebP) directly in ``path``, sorted by name."""
    folder = Path(path)
    if not folder.is_dir():
        raise BatchInputError(f"image folder {str(folder)!r} does not exist")
    files = [p for p in folder.iterdir() if p.is_file()]
    images = sorted((p for p in files if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name.lower())
    if not images:
        raise BatchInputError(f"image folder {folder.name!r} holds no PNG, JPEG or WebP files{folder_hint(files)}")
    return images


def object_name_for(prompt: str, limit: int = 40) -> str:
    """A readable object name from a prompt (Blender names are limited to 63 bytes)."""
    words = " ".join(prompt.split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"
