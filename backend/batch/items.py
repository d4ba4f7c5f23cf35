"""A batch's inputs as items: image files, folders of images, prompt lists (.txt, .csv).

Prompt lists and image folders are read by the same code as the Blender add-on's Batch panel
(``addon.core.batch``), so a list that works in one works in the other. Each item gets a key that
stays the same across runs (what it is made from: the image's bytes, or the prompt with its seed,
plus which occurrence of it this is) and a file name unique within the batch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from addon.core.batch import BatchInputError, PromptItem, list_image_folder, read_prompt_file
from addon.core.images import IMAGE_SUFFIXES
from backend.errors import UsageError

PROMPT_SUFFIXES = (".txt", ".csv")


@dataclass(frozen=True)
class BatchItem:
    key: str
    """Identity across runs: a re-run skips items whose key is done."""
    name: str
    """Output file stem, unique within the batch."""
    task: str
    """``reconstruct`` (an image) or ``generate`` (a prompt)."""
    source: str
    """Where it came from, for messages: the image path, or the prompt list and its line."""
    image: Path | None = None
    prompt: PromptItem | None = None


def expand_inputs(inputs: list[str]) -> list[BatchItem]:
    """Every input, in order: an image, a folder of images (sorted by name), or a prompt list.
    Raises ``UsageError`` naming the input that cannot be used; nothing runs then."""
    drafts: list[tuple[str, str, str, str, Path | None, PromptItem | None]] = []
    for text in inputs:
        path = Path(text)
        try:
            if path.is_dir():
                drafts += [_image_draft(image) for image in list_image_folder(path)]
            elif not path.exists():
                raise UsageError(f"input {text} does not exist")
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                drafts.append(_image_draft(path))
            elif path.suffix.lower() in PROMPT_SUFFIXES:
                drafts += [_prompt_draft(prompt, path, number)
                           for number, prompt in enumerate(read_prompt_file(path), start=1)]
            else:
                raise UsageError(f"input {text} is neither an image ({', '.join(IMAGE_SUFFIXES)}), "
                                 f"a folder of images, nor a prompt list ({', '.join(PROMPT_SUFFIXES)})")
        except BatchInputError as exc:
            raise UsageError(str(exc)) from None
    if not drafts:
        raise UsageError("the inputs hold no items")
    return _with_unique_keys_and_names(drafts)


def _image_draft(path: Path):
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:32]
    except OSError as exc:
        raise UsageError(f"cannot read image {path}: {exc.strerror}") from None
    return ("reconstruct", f"image:{digest}", path.stem, str(path), path, None)


def _prompt_draft(prompt: PromptItem, source: Path, number: int):
    identity = "\x1f".join([prompt.prompt, prompt.negative_prompt or "", str(prompt.seed)])
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]
    return ("generate", f"prompt:{digest}", prompt.name or _slug(prompt.prompt), f"{source} item {number}",
            None, prompt)


def _with_unique_keys_and_names(drafts) -> list[BatchItem]:
    seen_keys: dict[str, int] = {}
    seen_names: set[str] = set()
    items = []
    for task, key, stem, source, image, prompt in drafts:
        # the same image or prompt twice is asked for twice: the n-th occurrence has its own key
        seen_keys[key] = seen_keys.get(key, 0) + 1
        if seen_keys[key] > 1:
            key = f"{key}#{seen_keys[key]}"
        name, n = _safe_name(stem), 1
        while name.lower() in seen_names:
            n += 1
            name = f"{_safe_name(stem)}-{n}"
        seen_names.add(name.lower())
        items.append(BatchItem(key, name, task, source, image, prompt))
    return items


def _slug(prompt: str, limit: int = 40) -> str:
    words = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")
    return words[:limit].rstrip("_") or "prompt"


def _safe_name(stem: str) -> str:
    """A file stem that is safe on every file system (no separators, no leading dot)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).lstrip(".")[:80] or "item"
