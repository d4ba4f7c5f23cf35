"""The mining benchmark's collections keep validation apart from scoring
(scripts/render_mining_split.py; docs/mining.md)."""

import json
from pathlib import Path

from script_modules import load_script

ROOT = Path(__file__).resolve().parents[1]
VALIDATION = {"tune", "check"}


def collections() -> dict:
    return load_script("render_mining_split").COLLECTIONS


def test_validation_collections_share_no_object_with_the_scored_ones():
    spec = collections()
    assert VALIDATION < set(spec)
    scored = {name for c, s in spec.items() if c not in VALIDATION for name in [*s["objects"], *s["distractors"]]}
    for collection in VALIDATION:
        assert not scored & set(spec[collection]["objects"]), collection


def test_an_object_is_a_distractor_everywhere_or_nowhere():
    # an object's photos are rendered once into one folder: photographed as a distractor (one
    # photo) in one collection and as an object (several) in another, each run would overwrite them
    spec = collections()
    objects = {name for s in spec.values() for name in s["objects"]}
    distractors = {name for s in spec.values() for name in s["distractors"]}
    assert not objects & distractors
    assert len(objects) == sum(len(s["objects"]) for s in spec.values())


def test_collection_objects_are_real_split_objects_and_never_held_out():
    known = {entry["name"] for entry in json.loads((ROOT / "scripts" / "real_objects.json").read_text())}
    for spec in collections().values():
        assert set(spec["objects"]) | set(spec["distractors"]) <= known
