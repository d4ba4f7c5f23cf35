"""Validation of text prompts: reported, never silently changed or truncated."""

from __future__ import annotations

import functools
import unicodedata

from backend.errors import InputError
from backend.protocol import ErrorCode

CLIP_CONTEXT_LENGTH = 77
"""CLIP's text context, start and end tokens included."""


def count_clip_tokens(text: str) -> int:
    """Tokens CLIP's tokenizer makes of ``text``, start and end tokens included (no weights needed)."""
    return len(_tokenizer().encode(text)) + 2


@functools.lru_cache(maxsize=1)
def _tokenizer():
    # The BPE vocabulary takes a moment to load: once per process is enough.
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def validate_prompt(text: str, *, max_chars: int, what: str = "prompt", check_tokens: bool = True) -> str:
    """Return the prompt with surrounding whitespace removed, or raise ``InputError``.

    EMPTY_PROMPT: nothing but whitespace. INVALID_PROMPT: control characters (other than tab and
    newline). PROMPT_TOO_LONG: more than ``max_chars`` characters, or more than CLIP's 77 tokens.
    """
    stripped = text.strip()
    if not stripped:
        raise InputError(ErrorCode.EMPTY_PROMPT, f"the {what} is empty")
    if len(stripped) > max_chars:
        raise InputError(
            ErrorCode.PROMPT_TOO_LONG, f"the {what} has {len(stripped)} characters; the limit is {max_chars}"
        )
    for index, char in enumerate(stripped):
        if char not in "\t\n" and unicodedata.category(char) in ("Cc", "Cs", "Co"):
            raise InputError(
                ErrorCode.INVALID_PROMPT,
                f"the {what} contains a control character U+{ord(char):04X} at position {index}",
            )
    if check_tokens:
        tokens = count_clip_tokens(stripped)
        if tokens > CLIP_CONTEXT_LENGTH:
            raise InputError(
                ErrorCode.PROMPT_TOO_LONG,
                f"the {what} is {tokens} CLIP tokens long; CLIP reads at most {CLIP_CONTEXT_LENGTH} "
                "(start and end tokens included). Shorten it: nothing is truncated silently.",
            )
    return stripped
