"""Validation of text prompts: reported, never silently changed or truncated."""

from __future__ import annotations

import unicodedata

from backend.errors import InputError
from backend.protocol import ErrorCode


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
        from backend.models.clip_tokens import ClipPromptTooLong, check_clip_prompt

        try:
            check_clip_prompt(stripped)
        except ClipPromptTooLong as exc:
            raise InputError(ErrorCode.PROMPT_TOO_LONG, f"the {what} is {exc.token_count} CLIP tokens long; "
                             f"CLIP reads at most {exc.limit} (start and end tokens included). "
                             "Shorten it: nothing is truncated silently.") from None
    return stripped
