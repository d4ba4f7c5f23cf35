"""Tokenizer, vocabulary and prompt check of the offline text model (stdlib only, no torch).

The vocabulary is every word training captions can produce: the model learns an embedding for
each. Words only held-out captions use (settee, automobile, timber...) would keep untrained
embeddings, so they are never looked up: `synonyms` maps each to the training words of its own
group (settee -> sofa) before lookup, a thesaurus the model relies on, not something it learned.
A prompt is checked against the vocabulary before encoding, so a user learns which words were
ignored, and a prompt the model cannot understand at all is refused by name instead of
producing an arbitrary shape.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from backend.errors import InputError
from backend.protocol import ErrorCode

from .captions import caption_phrases, heldout_phrases
from .colours import BASIC_COLOURS, SHADES
from .lexicon import CATEGORY_NOUNS, FEATURES, KIND_NOUNS, MATERIAL_WORDS, NUMBER_WORDS, PROPORTION_AXES, ROLES

# Function words: never looked up, never warned about. Includes the template glue of captions
# ("made of", "which is", "3d model") and what people put around an object name ("make me a ...").
STOP_WORDS: frozenset[str] = frozenset(
    """a an the with and or of in on at to for from by as is are be has have having featuring
    that which this it its made coloured i would like want need me my make create generate give
    show please some very really quite kind sort type 3d model object thing shape""".split()
)

_SPELLINGS = {"gray": "grey", "color": "colour", "colored": "coloured", "aeroplane": "airplane"}
_IRREGULAR_PLURALS = {
    "leaves": "leaf", "shelves": "shelf", "bookshelves": "bookshelf", "people": "person", "men": "man",
    "women": "woman", "children": "child", "feet": "foot", "wolves": "wolf",
}
# Words outside the vocabulary that name something it covers: an unknown "zebra" is answered
# with the known animal words instead of nothing.
RELATED_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "animals": (("quadruped", "dog", "animal"), (
        "zebra", "horse", "cat", "cow", "lion", "tiger", "deer", "wolf", "fox", "bear", "pig", "sheep", "goat",
        "giraffe", "elephant", "pony", "puppy", "kitten", "rabbit", "camel")),
    "people": (("person", "humanoid", "figure"), (
        "man", "woman", "boy", "girl", "child", "kid", "robot", "doll", "soldier", "knight", "statue")),
    "vehicles": (("car", "van", "pickup"), ("bus", "jeep", "taxi", "lorry", "motorcycle", "bike", "tractor")),
    "aircraft": (("airplane", "jet", "plane"), ("helicopter", "glider", "drone", "rocket", "spaceship")),
    "boats": (("boat", "sailboat", "rowboat"), ("canoe", "kayak", "ferry", "submarine", "raft")),
    "seats": (("chair", "stool", "bench", "sofa"), ("recliner", "ottoman", "pouf", "throne")),
    "tables": (("table", "desk"), ("workbench", "nightstand", "worktop")),
    "furniture for storage": (("cabinet", "bookshelf", "wardrobe"), ("locker", "closet", "crate", "box")),
    "lights": (("lamp",), ("lantern", "chandelier", "candle", "torch", "bulb")),
    "containers": (("vase", "bottle", "mug", "bowl"), ("jar", "jug", "pitcher", "teapot", "kettle", "can", "bucket")),
    "plants": (("tree", "plant", "mushroom"), ("palm", "oak", "grass", "fern", "bamboo")),
    "fruit": (("fruit", "apple", "pear", "orange", "lemon", "banana"), (
        "grape", "cherry", "peach", "strawberry", "melon", "pineapple", "mango", "plum", "tomato")),
    "rocks": (("rock", "stone"), ("pebble", "crystal", "gem", "mountain", "cliff")),
    "colours": (BASIC_COLOURS, (
        "crimson", "scarlet", "navy", "cyan", "magenta", "violet", "lime", "olive", "maroon", "turquoise",
        "gold", "golden", "silver", "tan", "cream", "ivory", "indigo", "lavender", "amber", "khaki")),
    "materials": (("wooden", "metal", "glass", "ceramic", "fabric", "plastic", "stone"), (
        "iron", "brass", "bronze", "copper", "aluminium", "aluminum", "marble", "granite", "concrete", "leather",
        "velvet", "wicker", "paper", "cardboard")),
}
_RELATED_GROUP = {word: group for group, (_, words) in RELATED_WORDS.items() for word in words}

_COUNTABLE = frozenset(
    """leg arm armrest seat back shelf book drawer door knob handle wheel tyre engine wing pillow post bedpost
    slat trestle stretcher rail cushion tier branch leaf ear tail cap shoe sleeve bench facet edge side panel
    plant mushroom proportion""".split()
)
_NOUNS = (
    _COUNTABLE
    | frozenset(_RELATED_GROUP)
    | frozenset(w for n in CATEGORY_NOUNS.values() for p in n.train + n.heldout for w in re.findall(r"[a-z]+", p))
    | frozenset(
        w for kinds in KIND_NOUNS.values() for n in kinds.values() for p in n.train + n.heldout
        for w in re.findall(r"[a-z]+", p)
    )
)


def _singular(word: str) -> str:
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if word.endswith("ies") and word[:-3] + "y" in _NOUNS:
        return word[:-3] + "y"
    if word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")) and word[:-2] in _NOUNS:
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and word[:-1] in _NOUNS:
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Lower-case words of letters and digits; "gray" -> "grey", "3" -> "three", known plurals
    -> singular ("legs" -> "leg"); hyphenated words split ("three-legged" -> "three", "legged")."""
    text = re.sub(r"['\u2019]s\b", "", text.lower())
    tokens = []
    for word in re.findall(r"[^\W_]+", text):
        if word.isdigit() and int(word) < len(NUMBER_WORDS):
            word = NUMBER_WORDS[int(word)]
        tokens.append(_singular(_SPELLINGS.get(word, word)))
    return tokens


@dataclass(frozen=True)
class Vocabulary:
    """Word <-> id. Id 0 pads sequences in a batch, id 1 stands for any unknown word."""

    words: tuple[str, ...]
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    PAD = "<pad>"
    UNK = "<unk>"
    FORMAT = "stepstone-text-vocabulary"

    def __post_init__(self):
        if self.words[:2] != (self.PAD, self.UNK):
            raise ValueError(f"a vocabulary starts with {self.PAD!r}, {self.UNK!r}; got {list(self.words[:2])}")
        if len(set(self.words)) != len(self.words):
            raise ValueError("the vocabulary lists a word twice")
        object.__setattr__(self, "_ids", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def from_words(cls, words: Iterable[str]) -> "Vocabulary":
        return cls((cls.PAD, cls.UNK, *sorted(set(words) - {cls.PAD, cls.UNK})))

    @property
    def unk_id(self) -> int:
        return 1

    def index(self, word: str) -> int:
        return self._ids.get(word, self.unk_id)

    def encode(self, text: str) -> list[int]:
        return [self.index(token) for token in tokenize(text)]

    def __contains__(self, word: object) -> bool:
        return word in self._ids and word not in (self.PAD, self.UNK)

    def __len__(self) -> int:
        return len(self.words)

    def to_json(self) -> dict[str, Any]:
        return {"format": self.FORMAT, "version": 1, "words": list(self.words)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Vocabulary":
        if data.get("format") != cls.FORMAT or data.get("version") != 1:
            raise ValueError(f"not a version-1 {cls.FORMAT} document: {str(data)[:80]}")
        return cls(tuple(data["words"]))


def _train_tokens() -> set[str]:
    """Tokens of every phrase a training caption can contain (held-out words excluded)."""
    reserved = heldout_phrases()
    return {token for phrase in caption_phrases() if phrase not in reserved for token in tokenize(phrase)}


def build_vocabulary() -> Vocabulary:
    """Every token a training caption can contain."""
    return Vocabulary.from_words(_train_tokens())


_synonyms: dict[str, tuple[str, ...]] | None = None


def synonyms() -> dict[str, tuple[str, ...]]:
    """Each held-out-only token -> the content tokens of its group's first training word."""
    global _synonyms
    if _synonyms is None:
        trained = _train_tokens()
        # (words, the training word they stand for): a kind with no training word of its own
        # (a footstool) stands for its category's.
        groups = [(n, n.train[0]) for n in CATEGORY_NOUNS.values() if n.train]
        groups += [(n, n.train[0] if n.train else CATEGORY_NOUNS[category].train[0])
                   for category, kinds in KIND_NOUNS.items() for n in kinds.values()]
        groups += [(n, n.train[0]) for n in MATERIAL_WORDS.values() if n.train]
        table: dict[str, tuple[str, ...]] = {}
        for nouns, word in groups:
            target = tuple(t for t in tokenize(word) if t not in STOP_WORDS)
            for phrase in nouns.heldout:
                for token in tokenize(phrase):
                    if token not in trained and token not in STOP_WORDS:
                        table.setdefault(token, target)
        _synonyms = table
    return _synonyms


class UnknownPromptError(InputError):
    """A prompt with no word the offline text model knows."""

    def __init__(self, message: str, unknown: tuple[str, ...]):
        super().__init__(ErrorCode.INVALID_PROMPT, message)
        self.unknown = unknown


@dataclass(frozen=True)
class PromptAnalysis:
    tokens: tuple[str, ...]
    known: tuple[str, ...]
    """Content words in the vocabulary, in prompt order, each once."""
    unknown: tuple[str, ...]
    """Content words not in the vocabulary (the model ignores them), each once."""
    suggestions: dict[str, tuple[str, ...]]
    """Known words near each unknown one: related words first, then similar spellings."""
    warning: str
    """One sentence naming the ignored words and their suggestions; "" when none was ignored."""


def _suggest(word: str, content_words: list[str]) -> tuple[str, ...]:
    related = RELATED_WORDS[_RELATED_GROUP[word]][0] if word in _RELATED_GROUP else ()
    similar = difflib.get_close_matches(word, content_words, n=3, cutoff=0.75)
    return tuple(dict.fromkeys([*related, *similar]))[:5]


def _clause(word: str, suggestions: tuple[str, ...]) -> str:
    if word in _RELATED_GROUP:
        return f"'{word}' (unknown; known {_RELATED_GROUP[word]}: {', '.join(suggestions)})"
    if suggestions:
        return f"'{word}' (unknown; did you mean {' or '.join(suggestions)}?)"
    return f"'{word}' (unknown)"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _some_categories() -> str:
    names = [nouns.train[0] for nouns in CATEGORY_NOUNS.values()]
    return f"{', '.join(names[:8])} ({len(names)} kinds of object in all)"


def analyse(prompt: str, vocab: Vocabulary) -> PromptAnalysis:
    """Split a prompt into known and unknown content words; raise `UnknownPromptError` when no
    content word is known."""
    tokens = tuple(tokenize(prompt))
    table = synonyms()
    content = list(dict.fromkeys(w for t in tokens if t not in STOP_WORDS for w in table.get(t, (t,))))
    known = tuple(t for t in content if t in vocab)
    unknown = tuple(t for t in content if t not in vocab)
    vocab_content = [w for w in vocab.words[2:] if w not in STOP_WORDS]
    suggestions = {word: _suggest(word, vocab_content) for word in unknown}
    clauses = [_clause(word, suggestions[word]) for word in unknown]
    if not known:
        if not unknown:
            raise UnknownPromptError(
                f"the prompt {prompt!r} names nothing to make; name an object such as {_some_categories()}", ()
            )
        raise UnknownPromptError(
            f"the offline text model knows no word of the prompt: {_join(clauses)}; "
            f"it knows objects such as {_some_categories()}",
            unknown,
        )
    warning = f"ignored {_join(clauses)}" if clauses else ""
    return PromptAnalysis(tokens, known, unknown, suggestions, warning)


def describe_vocabulary() -> dict[str, tuple[str, ...]]:
    """What the offline text model understands, by group (for docs and help texts)."""
    objects = [w for n in CATEGORY_NOUNS.values() for w in n.train + n.heldout]
    objects += [w for kinds in KIND_NOUNS.values() for n in kinds.values() for w in n.train + n.heldout]
    features = [p for table in FEATURES.values() for f in table.values() for p in f.adjectives + f.phrases]
    return {
        "objects": tuple(sorted(set(objects))),
        "colours": tuple(BASIC_COLOURS) + tuple(f"{shade} (modifier)" for shade in SHADES),
        "materials": tuple(sorted({w for n in MATERIAL_WORDS.values() for w in n.train + n.heldout})),
        "proportions": tuple(PROPORTION_AXES),
        "parts": tuple(sorted({role for roles in ROLES.values() for role in roles if role})),
        "features": tuple(sorted(set(features))),
    }
