"""Captions of procedural shapes and the offline text model's vocabulary (backend/text)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from string import Formatter

import numpy as np
import pytest

from backend.data.procedural import CATEGORIES, builder, category_rng
from backend.data.procedural.materials import Material, material
from backend.errors import InputError
from backend.protocol import ErrorCode
from backend.text.captions import (
    DESCRIBED_CATEGORIES,
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    attributes_for,
    captions,
    heldout_phrases,
)
from backend.text.colours import name_colour
from backend.text.lexicon import CATEGORY_NOUNS, KIND_NOUNS
from backend.text.vocab import (
    RELATED_WORDS,
    STOP_WORDS,
    UnknownPromptError,
    Vocabulary,
    analyse,
    build_vocabulary,
    describe_vocabulary,
    tokenize,
)

ROOT = Path(__file__).resolve().parents[1]
SEEDS = range(6)


def spec(category: str, seed: int):
    return builder(category)(category_rng(category, seed))


def first_seed(category: str, accept) -> tuple[int, object]:
    """The first seed whose spec params satisfy ``accept`` (so the test knows what to expect)."""
    for seed in range(200):
        s = spec(category, seed)
        if accept(s.params):
            return seed, s
    raise AssertionError(f"no {category} seed in 0..199 matches")


def contains(tokens: list[str], phrase: str) -> bool:
    words = tokenize(phrase)
    return any(tokens[i : i + len(words)] == words for i in range(len(tokens) - len(words) + 1))


@pytest.fixture(scope="module")
def all_captions() -> dict[str, list[tuple[str, str]]]:
    """(category, caption) pairs of both splits for several seeds of every category."""
    out: dict[str, list[tuple[str, str]]] = {"train": [], "heldout": []}
    for category in CATEGORIES:
        for seed in SEEDS:
            attrs = attributes_for(category, spec(category, seed))
            for split in out:
                rng = np.random.default_rng(seed)
                out[split] += [(category, c) for c in captions(attrs, rng, 40, split)]
    return out


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return build_vocabulary()


# ------------------------------------------------------------------------------ attributes


def test_every_generator_category_has_caption_rules():
    assert set(DESCRIBED_CATEGORIES) == set(CATEGORIES) == set(CATEGORY_NOUNS)


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_caption_names_the_object(category, all_captions):
    nouns = list(CATEGORY_NOUNS[category].train + CATEGORY_NOUNS[category].heldout)
    nouns += [w for n in KIND_NOUNS.get(category, {}).values() for w in n.train + n.heldout]
    for split in ("train", "heldout"):
        texts = [c for cat, c in all_captions[split] if cat == category]
        assert len(texts) == 40 * len(SEEDS)
        for text in texts:
            assert text.strip() and "  " not in text and "{" not in text
            assert any(contains(tokenize(text), noun) for noun in nouns), (category, text)


def test_captions_mention_colour_material_and_features():
    seed, vase = first_seed("vase", lambda p: p["neck"] and not p["handles"])
    attrs = attributes_for("vase", vase)
    texts = captions(attrs, np.random.default_rng(0), 200)
    assert any(attrs.main.colour.base in t for t in texts)
    assert any(w in t for t in texts for w in attrs.main.material_words.train)
    assert any("neck" in t for t in texts)
    assert not any("handle" in t for t in texts)
    assert "vase" in texts  # the bare noun is one of the phrasings


def test_attributes_follow_the_builder_params():
    _, chair = first_seed("chair", lambda p: p["arms"] and p["leg_style"] == "tapered")
    attrs = attributes_for("chair", chair)
    assert "armchair" in attrs.nouns.train
    phrases = {p for f in attrs.features for p in f.phrases}
    assert {"arms", "tapered legs"} <= phrases and "no arms" not in phrases

    _, stool = first_seed("stool", lambda p: p["legs"] == 3 and not p["pedestal"] and p["leg_splay"] > 0.04)
    attrs = attributes_for("stool", stool)
    assert "three splayed legs" in {p for f in attrs.features for p in f.phrases}
    assert "round" in attrs.proportions

    _, lamp = first_seed("lamp", lambda p: p["floor"] and p["shade"] == "cone")
    attrs = attributes_for("lamp", lamp)
    assert "floor lamp" in attrs.nouns.train and "desk lamp" not in attrs.nouns.train
    assert "a cone shade" in {p for f in attrs.features for p in f.phrases}

    _, car = first_seed("car", lambda p: p["kind"] == "van")
    assert "van" in attributes_for("car", car).nouns.train

    _, table = first_seed("table", lambda p: p["top_shape"] == "round" and p["support"] == "pedestal")
    attrs = attributes_for("table", table)
    assert "round" in attrs.proportions and "a pedestal base" in {p for f in attrs.features for p in f.phrases}


def test_materials_name_their_family():
    _, stool = first_seed("stool", lambda p: True)
    families = {m.family for m in stool.materials}
    assert families and families <= {"wood", "fabric", "plastic", "metal"}
    wooden = attributes_for("stool", stool).main
    assert wooden.family == stool.materials[0].family
    assert material(np.random.default_rng(0), "metal").to_json()["family"] == "metal"
    assert "family" not in Material((0.5, 0.5, 0.5)).to_json()


def test_extents_add_proportions_only_where_params_are_silent():
    _, lamp = first_seed("lamp", lambda p: True)
    assert "tall" in attributes_for("lamp", lamp, (0.2, 0.2, 1.0)).proportions
    assert "tall" not in attributes_for("lamp", lamp, (0.8, 0.8, 1.0)).proportions
    _, short_vase = first_seed("vase", lambda p: p["height"] / (2 * max(p["radii"])) < 1.3)
    props = attributes_for("vase", short_vase, (0.2, 0.2, 1.0)).proportions
    assert "short" in props and "tall" not in props  # the params decide the height axis
    _, car = first_seed("car", lambda p: p["kind"] == "sedan")
    assert attributes_for("car", car, (0.4, 1.0, 0.3)).proportions == ()


def test_unknown_category_is_refused():
    with pytest.raises(ValueError, match="composition"):
        attributes_for("composition", spec("chair", 0))


# ------------------------------------------------------------------------------ colours


@pytest.mark.parametrize(
    "rgb, base, text",
    [
        ((1.0, 0.0, 0.0), "red", "red"),
        ((0.5, 0.5, 0.5), "grey", "grey"),
        ((0.36, 0.22, 0.12), "brown", "brown"),  # dark wood
        ((0.2, 0.12, 0.06), "brown", "dark brown"),
        ((0.75, 0.5, 0.3), "brown", "light brown"),
        ((1.0, 0.5, 0.0), "orange", "orange"),
        ((1.0, 1.0, 0.0), "yellow", "yellow"),
        ((0.1, 0.6, 0.1), "green", "green"),
        ((0.0, 0.5, 0.5), "teal", "teal"),
        ((0.0, 0.0, 1.0), "blue", "blue"),
        ((0.6, 0.8, 1.0), "blue", "light blue"),
        ((0.5, 0.0, 0.5), "purple", "purple"),
        ((1.0, 0.7, 0.75), "pink", "pink"),
        ((0.95, 0.9, 0.8), "beige", "beige"),
        ((0.05, 0.05, 0.05), "black", "black"),
        ((0.95, 0.95, 0.95), "white", "white"),
        ((0.25, 0.25, 0.25), "grey", "dark grey"),
        ((0.3, 0.02, 0.02), "red", "dark red"),
    ],
)
def test_colour_names(rgb, base, text):
    name = name_colour(rgb)
    assert (name.base, name.text) == (base, text)


# ------------------------------------------------------------------------------ splits


def test_train_and_heldout_share_no_template():
    assert TRAIN_TEMPLATES and HELDOUT_TEMPLATES
    assert not set(TRAIN_TEMPLATES) & set(HELDOUT_TEMPLATES)


def test_train_captions_never_use_a_reserved_word(all_captions):
    reserved = heldout_phrases()
    assert {"automobile", "boulder", "settee", "timber"} <= reserved
    train_tokens = [tokenize(c) for _, c in all_captions["train"]]
    for phrase in reserved:
        assert not any(contains(tokens, phrase) for tokens in train_tokens), phrase
    heldout_tokens = [tokenize(c) for _, c in all_captions["heldout"]]
    used = {p for p in reserved if any(contains(tokens, p) for tokens in heldout_tokens)}
    assert len(used) > len(reserved) // 2, sorted(reserved - used)


def test_heldout_template_wording_appears_only_in_heldout(all_captions):
    def literal_words(templates):
        return {w for t in templates for literal, _, _, _ in Formatter().parse(t) for w in tokenize(literal)}

    glue = {"which", "i", "would", "featuring", "coloured", "having"}  # "like" is also in "dog-like"
    assert glue <= literal_words(HELDOUT_TEMPLATES) - literal_words(TRAIN_TEMPLATES)
    assert not any(set(tokenize(c)) & glue for _, c in all_captions["train"])
    assert any(set(tokenize(c)) & glue for _, c in all_captions["heldout"])


def test_captions_are_deterministic_given_the_rng():
    attrs = attributes_for("chair", spec("chair", 3))
    first = captions(attrs, np.random.default_rng(7), 30)
    assert first == captions(attrs, np.random.default_rng(7), 30)
    assert first != captions(attrs, np.random.default_rng(8), 30)
    assert len(set(first)) > 10


def test_captions_validate_arguments():
    attrs = attributes_for("mug", spec("mug", 0))
    with pytest.raises(ValueError, match="split"):
        captions(attrs, np.random.default_rng(0), 3, split="test")
    assert captions(attrs, np.random.default_rng(0), 0) == []


# ------------------------------------------------------------------------------ tokenizer and vocabulary


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("A Gray Chair", ["a", "grey", "chair"]),
        ("three-legged stools", ["three", "legged", "stool"]),
        ("3 legs, 2 SHELVES!", ["three", "leg", "two", "shelf"]),
        ("benches and couches", ["bench", "and", "couch"]),
        ("the dog's leaves", ["the", "dog", "leaf"]),
        ("a glass vase", ["a", "glass", "vase"]),
        ("coloured/colored", ["coloured", "coloured"]),
        ("  ", []),
    ],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


def test_every_caption_word_is_in_the_vocabulary_or_reaches_it_through_a_synonym(all_captions, vocab):
    from backend.text.vocab import STOP_WORDS, synonyms

    table = synonyms()
    train_missing = {t for _, c in all_captions["train"] for t in tokenize(c) if t not in vocab}
    assert not train_missing, sorted(train_missing)
    heldout = {t for _, c in all_captions["heldout"] for t in tokenize(c) if t not in vocab and t not in STOP_WORDS}
    assert heldout and heldout <= set(table), sorted(heldout - set(table))  # held-out words only via the table
    assert all(word in vocab for targets in table.values() for word in targets)
    assert table["settee"] == ("sofa",) and table["automobile"] == ("car",)


def test_vocabulary_round_trips_through_json(vocab):
    again = Vocabulary.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again == vocab and len(again) == len(vocab) > 300
    assert again.index("chair") == vocab.index("chair") != vocab.unk_id
    assert vocab.index("zebra") == vocab.unk_id and "zebra" not in vocab and Vocabulary.UNK not in vocab
    assert vocab.encode("a zebra chair") == [vocab.index("a"), vocab.unk_id, vocab.index("chair")]
    with pytest.raises(ValueError):
        Vocabulary.from_json({"format": "something else", "version": 1, "words": list(vocab.words)})
    with pytest.raises(ValueError):
        Vocabulary(("chair", "table"))


def test_related_words_are_outside_the_vocabulary_and_point_inside_it(vocab):
    for group, (known, unknown) in RELATED_WORDS.items():
        assert all(tokenize(w)[0] in vocab for w in known), group
        assert not [w for w in unknown if w in vocab], group


def test_analyse_warns_about_ignored_words(vocab):
    result = analyse("a tall blue zebra chair, chiar", vocab)
    assert result.known == ("tall", "blue", "chair")
    assert result.unknown == ("zebra", "chiar")
    assert "quadruped" in result.suggestions["zebra"] and "chair" in result.suggestions["chiar"]
    assert "'zebra'" in result.warning and "animals" in result.warning and "quadruped" in result.warning
    assert "'chiar'" in result.warning and "chair" in result.warning
    assert "\n" not in result.warning
    assert analyse("the red car", vocab).warning == ""


@pytest.mark.parametrize("prompt, named", [("zebra qwerty", ["'zebra'", "'qwerty'"]), ("make me a thing", [])])
def test_a_prompt_without_known_words_is_refused(vocab, prompt, named):
    with pytest.raises(UnknownPromptError) as caught:
        analyse(prompt, vocab)
    error = caught.value
    assert isinstance(error, InputError) and error.code is ErrorCode.INVALID_PROMPT
    for word in named:
        assert word in error.message
    assert "chair" in error.message and "table" in error.message


def test_stop_words_are_not_content(vocab):
    assert {"a", "the", "with", "and", "of"} <= STOP_WORDS
    assert not STOP_WORDS & {"chair", "red", "tall", "no", "one", "back", "light"}


def test_describe_vocabulary_lists_the_groups():
    groups = describe_vocabulary()
    assert {"objects", "colours", "materials", "proportions", "features"} <= set(groups)
    assert "armchair" in groups["objects"] and "teal" in groups["colours"] and "wooden" in groups["materials"]


def test_text_modules_load_without_training_code_or_torch():
    code = (
        "import sys, backend.text.vocab, backend.text.captions; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('backend.data', 'backend.train'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
