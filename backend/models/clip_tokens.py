"""Counting CLIP tokens of a prompt, so an over-long prompt is reported instead of truncated.

open_clip's tokenizer cuts every prompt to the context length without a word; CLIP then sees a
different prompt from the one the user wrote. Everything that tokenizes prompts in Stepstone
goes through :func:`check_clip_prompt` first.
"""

from __future__ import annotations

import functools

DEFAULT_TOKENIZER_MODEL = "ViT-B-32"
"""open_clip model whose tokenizer counts when no model is named (every OpenAI-style CLIP shares it)."""


class ClipPromptTooLong(ValueError):
    """A prompt has more CLIP tokens than the text encoder reads."""

    def __init__(self, text: str, token_count: int, limit: int):
        preview = text if len(text) <= 60 else text[:57] + "..."
        super().__init__(
            f"the prompt {preview!r} is {token_count} CLIP tokens long (start and end tokens included); "
            f"CLIP reads at most {limit}. Shorten it: prompts are never truncated silently."
        )
        self.text = text
        self.token_count = token_count
        self.limit = limit


class ClipTokenizerUnsupported(ValueError):
    """The model's tokenizer is not the CLIP BPE tokenizer this module knows how to count with."""


@functools.lru_cache(maxsize=8)
def get_clip_tokenizer(model_name: str = DEFAULT_TOKENIZER_MODEL):
    """open_clip's tokenizer for ``model_name`` (cached: loading the BPE vocabulary takes a moment).

    Raises ``ClipTokenizerUnsupported`` for models with a Hugging Face tokenizer (SigLIP, XLM-R, ...).
    """
    import open_clip
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = open_clip.get_tokenizer(model_name)
    if not isinstance(tokenizer, SimpleTokenizer):
        raise ClipTokenizerUnsupported(
            f"open_clip model {model_name!r} uses {type(tokenizer).__name__}; Stepstone counts prompt "
            "tokens only for models with CLIP's BPE tokenizer (e.g. ViT-B-32, ViT-L-14)"
        )
    return tokenizer


def count_clip_tokens(text: str, model_name: str = DEFAULT_TOKENIZER_MODEL) -> int:
    """Number of tokens CLIP's text encoder gets for ``text``, start and end tokens included."""
    tokenizer = get_clip_tokenizer(model_name)
    return len(tokenizer.encode(text)) + 2


def clip_context_length(model_name: str = DEFAULT_TOKENIZER_MODEL) -> int:
    """Most tokens (start and end included) the text encoder of ``model_name`` reads."""
    return int(get_clip_tokenizer(model_name).context_length)


def check_clip_prompt(text: str, model_name: str = DEFAULT_TOKENIZER_MODEL) -> int:
    """Return the token count of ``text``, or raise ``ClipPromptTooLong`` when it exceeds the context."""
    count = count_clip_tokens(text, model_name)
    limit = clip_context_length(model_name)
    if count > limit:
        raise ClipPromptTooLong(text, count, limit)
    return count
