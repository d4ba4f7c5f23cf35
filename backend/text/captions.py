"""Captions for procedural shapes, generated from what their parameters say they are.

``captions(attributes_for(category, spec, extents), rng, count)`` gives many varied phrasings of
one shape: full descriptions ("a tall slender blue ceramic vase with a narrow neck"), partial
ones ("blue vase", "ceramic vase, tall") and the bare noun, with synonyms.

Held-out split: ``HELDOUT_TEMPLATES`` and the ``heldout`` words of `lexicon.Nouns` (category and
kind nouns, material words; see ``heldout_phrases``) appear only in ``split="heldout"`` captions,
so an evaluation on them measures phrasings the text model never saw in training.
"""

from __future__ import annotations

from string import Formatter
from typing import Sequence, TypeVar

import numpy as np

from .attributes import DESCRIBED_CATEGORIES, PartLook, ShapeAttributes, attributes_for
from .colours import BASIC_COLOURS, SHADES
from .lexicon import CATEGORY_NOUNS, FEATURES, KIND_NOUNS, MATERIAL_NOUNS, MATERIAL_WORDS, PROPORTION_AXES, ROLES

__all__ = [
    "DESCRIBED_CATEGORIES",
    "HELDOUT_TEMPLATES",
    "SPLITS",
    "TRAIN_TEMPLATES",
    "ShapeAttributes",
    "attributes_for",
    "caption_phrases",
    "captions",
    "heldout_phrases",
]

# Slots: {a} an article for the next word; {adjs} and {with} may come out empty; every other
# slot must have something to say or the template is skipped for that shape.
TRAIN_TEMPLATES: tuple[str, ...] = (
    "{a} {adjs} {noun} {with}",
    "{adjs} {noun} {with}",
    "{a} {noun}",
    "{noun}",
    "{colour} {noun}",
    "{material} {noun}, {prop}",
    "{adjs} {noun}, {features}",
    "{a} {noun} with {features}",
    "{a} {noun} made of {material_noun}",
    "{a} {noun} in {colour}",
    "{noun}: {attribute_list}",
    "{a} {colour} {noun} with {part_looks}",
    "3d model of {a} {adjs} {noun}",
    "{a} {prop} {noun} that is {colour}",
    "{colour} and {second_colour} {noun}",
    "{a} {noun}, {prop} and {colour}",
)
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "{a} {noun} which is {colour} and {prop}",
    "{noun} with {features}, {colour}",
    "i would like {a} {adjs} {noun}",
    "{a} {noun} featuring {features}",
    "{a} {colour} coloured {noun}",
    "{adjs} {noun} having {features}",
)
SPLITS = ("train", "heldout")

_T = TypeVar("_T")
_OPTIONAL_SLOTS = frozenset({"a", "adjs", "with"})
_ARTICLE = "\x01"
# Spelled with a vowel but said with a consonant sound, or the reverse.
_A_PREFIXES = ("one", "uni", "use", "eu")
_AN_WORDS = frozenset({"suv", "l-shaped"})


def _slots(template: str) -> list[str]:
    return [name for _, name, _, _ in Formatter().parse(template) if name]


def _literal_words(template: str) -> str:
    return " ".join(literal for literal, _, _, _ in Formatter().parse(template))


def _article(word: str) -> str:
    if word in _AN_WORDS:
        return "an"
    return "an" if word[:1] in "aeiou" and not word.startswith(_A_PREFIXES) else "a"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class _Phrasing:
    """The random choices of one caption: which noun, which words for colour and material.

    ``slot_<name>`` fills the template slot ``{name}``.
    """

    def __init__(self, attrs: ShapeAttributes, rng: np.random.Generator, split: str):
        self.attrs, self.rng, self.split = attrs, rng, split
        self.noun = self._pick(attrs.nouns.train, attrs.nouns.heldout)
        self._used_features: set[int] = set()

    def _pick(self, train: tuple[str, ...], heldout: tuple[str, ...]) -> str:
        """A train word, or (held-out split, half the time when there are any) a held-out one."""
        pool = heldout if self.split == "heldout" and heldout and self.rng.random() < 0.5 else train
        return self._one(pool) if pool else ""

    def _one(self, items: Sequence[_T]) -> _T:
        return items[int(self.rng.integers(len(items)))]

    def _chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def _colour_of(self, look: PartLook) -> str:
        return look.colour.base if look.colour.shade and self._chance(0.3) else look.colour.text

    def _material_of(self, look: PartLook) -> str:
        return self._pick(look.material_words.train, look.material_words.heldout)

    def _part_look(self, look: PartLook) -> str:
        material = self._material_of(look)
        choice = int(self.rng.integers(3)) if material else 0  # colour, material, or both
        words = [self._colour_of(look)] if choice != 1 else []
        words += [material] if choice != 0 else []
        text = " ".join(words + [look.role])
        return f"{_article(text)} {text}" if look.takes_article else text

    def _feature_phrases(self, most: int) -> list[str]:
        """Up to ``most`` feature phrases, not repeating one already said as an adjective."""
        n = len(self.attrs.features)
        free = [i for i in range(n) if i not in self._used_features] or list(range(n))
        order = self.rng.permutation(free)[: int(self.rng.integers(1, most + 1))]
        return [self._one(self.attrs.features[int(i)].phrases) for i in order]

    def slot_a(self) -> str:
        return _ARTICLE

    def slot_noun(self) -> str:
        return self.noun

    def slot_colour(self) -> str:
        return self._colour_of(self.attrs.main)

    def slot_material(self) -> str:
        return self._material_of(self.attrs.main)

    def slot_material_noun(self) -> str:
        return self.attrs.main.material_noun

    def slot_prop(self) -> str:
        return self._one(self.attrs.proportions)

    def slot_adjs(self) -> str:
        """Proportion, feature, colour and material adjectives, each maybe, in English order."""
        attrs = self.attrs
        words = [w for w in attrs.proportions if self._chance(0.5)][:2]
        with_adjective = [i for i, f in enumerate(attrs.features) if f.adjectives]
        if with_adjective and self._chance(0.4):
            i = self._one(with_adjective)
            self._used_features.add(i)
            adjective = self._one(attrs.features[i].adjectives)
            words += [] if adjective in words else [adjective]
        words += [self._colour_of(attrs.main)] if self._chance(0.6) else []
        words += [self._material_of(attrs.main)] if self._chance(0.5) else []
        return " ".join(w for w in words if w)

    def slot_with(self) -> str:
        items = self._feature_phrases(2) if self.attrs.features and self._chance(0.7) else []
        if self.attrs.parts and self._chance(0.3):
            items.append(self._part_look(self._one(self.attrs.parts)))
        return f"with {_join(items)}" if items else ""

    def slot_features(self) -> str:
        return _join(self._feature_phrases(2))

    def slot_part_looks(self) -> str:
        parts = self.attrs.parts
        order = self.rng.permutation(len(parts))[: int(self.rng.integers(1, min(2, len(parts)) + 1))]
        return _join([self._part_look(parts[int(i)]) for i in order])

    def slot_second_colour(self) -> str:
        main = self.attrs.main.colour.base
        return self._colour_of(self._one([look for look in self.attrs.parts if look.colour.base != main]))

    def slot_attribute_list(self) -> str:
        items = [self.slot_colour(), self.slot_material()]
        items += [self.slot_prop()] if self.attrs.proportions else []
        return ", ".join(items[int(i)] for i in self.rng.permutation(len(items)) if items[int(i)])


def _can_say(attrs: ShapeAttributes, slot: str) -> bool:
    """Whether a required slot has something true to say about this shape."""
    main = attrs.main
    return {
        "noun": True,
        "colour": True,
        "material": bool(main.material_words.train),
        "material_noun": bool(main.material_noun),
        "prop": bool(attrs.proportions),
        "features": bool(attrs.features),
        "part_looks": bool(attrs.parts),
        "second_colour": any(look.colour.base != main.colour.base for look in attrs.parts),
        "attribute_list": bool(main.material_words.train or attrs.proportions),
    }[slot]


def _render(template: str, phrasing: _Phrasing) -> str:
    text = template.format(**{slot: getattr(phrasing, f"slot_{slot}")() for slot in _slots(template)})
    words = text.replace(" ,", ",").split()
    out: list[str] = []
    for i, word in enumerate(words):
        word = _article(words[i + 1].strip(",:")) if word == _ARTICLE else word
        # a noun that is also the colour or material word ("orange orange", "stone stone,")
        if out and word.rstrip(",:") == out[-1]:
            out[-1] = word
        else:
            out.append(word)
    return " ".join(out).replace(" ,", ",")


def captions(attrs: ShapeAttributes, rng: np.random.Generator, count: int, split: str = "train") -> list[str]:
    """``count`` captions of one shape (repeats possible), deterministic given ``rng``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    pool = TRAIN_TEMPLATES if split == "train" else HELDOUT_TEMPLATES
    usable = [t for t in pool if all(s in _OPTIONAL_SLOTS or _can_say(attrs, s) for s in _slots(t))]
    out = []
    for _ in range(count):
        template = usable[int(rng.integers(len(usable)))]
        out.append(_render(template, _Phrasing(attrs, rng, split)))
    return out


def heldout_phrases() -> frozenset[str]:
    """Every noun and material word reserved for the held-out split."""
    nouns = [CATEGORY_NOUNS[c] for c in CATEGORY_NOUNS] + [n for kinds in KIND_NOUNS.values() for n in kinds.values()]
    return frozenset(w for n in nouns + list(MATERIAL_WORDS.values()) for w in n.heldout)


def caption_phrases() -> list[str]:
    """Every word and phrase a caption of either split can contain (for the vocabulary)."""
    phrases = [_literal_words(t) for t in TRAIN_TEMPLATES + HELDOUT_TEMPLATES]
    phrases += ["a", "an", "and", "with", *BASIC_COLOURS, *SHADES, *PROPORTION_AXES, *MATERIAL_NOUNS.values()]
    nouns = list(CATEGORY_NOUNS.values()) + [n for kinds in KIND_NOUNS.values() for n in kinds.values()]
    phrases += [w for n in nouns + list(MATERIAL_WORDS.values()) for w in n.train + n.heldout]
    phrases += [p for table in FEATURES.values() for f in table.values() for p in f.phrases + f.adjectives]
    phrases += [role for roles in ROLES.values() for role in roles if role]
    return phrases
