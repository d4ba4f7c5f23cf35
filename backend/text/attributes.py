"""What can be said about one procedural shape, read from its builder parameters and materials.

Thresholds sit near the thirds of each builder's parameter ranges (backend/data/procedural/),
so a word like "tall" marks the taller third of that category, not an absolute size: shapes
are normalised to the unit box, so only proportions are visible.

This module does not import ``backend.data`` (serving code may not; tests/test_package_boundary.py):
it reads any object with ``params``, ``materials`` (each with ``base_color`` and ``family``) and
``parts`` (each with ``name`` and ``material``), i.e. a ``ShapeSpec`` or a ``ProceduralShape``.
Parameters that builders record only since captions exist (``leg_splay``, ``footrest``, ``neck``,
``spoiler``, ...) are read with ``.get``: metadata of data sets written before them still works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .colours import ColourName, name_colour
from .lexicon import (
    CATEGORY_NOUNS,
    FEATURES,
    KIND_NOUNS,
    MAIN_ROLE,
    MATERIAL_NOUNS,
    MATERIAL_WORDS,
    PROPORTION_AXES,
    ROLES,
    ROLES_WITHOUT_ARTICLE,
    Feature,
    Nouns,
)

Extents = tuple[float, float, float]

# Vehicles are always long and low, and a figure's box follows its arm pose: their box says
# nothing about this shape, so only their parameters give proportion words.
_NO_EXTENT_WORDS = frozenset({"car", "airplane", "boat", "humanoid"})


@dataclass(frozen=True)
class PartLook:
    """The colour and material of one described part ("seat", "legs")."""

    role: str
    colour: ColourName
    family: str
    """Material family ("wood", "metal", ...; "" when unknown)."""
    rgb: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """The sRGB base colour the name was given for (the text model's colour target)."""

    @property
    def takes_article(self) -> bool:
        return self.role not in ROLES_WITHOUT_ARTICLE

    @property
    def material_words(self) -> Nouns:
        return MATERIAL_WORDS.get(self.family, Nouns(()))

    @property
    def material_noun(self) -> str:
        return MATERIAL_NOUNS.get(self.family, "")


@dataclass(frozen=True)
class ShapeAttributes:
    """Everything a caption may say about one shape."""

    category: str
    nouns: Nouns
    """The category's nouns and its kind's ("chair", "armchair"), train and held-out."""
    main: PartLook
    """The part whose colour and material describe the whole object."""
    parts: tuple[PartLook, ...]
    """The other described parts."""
    proportions: tuple[str, ...]
    """At most one word per axis of ``lexicon.PROPORTION_AXES``."""
    features: tuple[Feature, ...]


@dataclass
class _Notes:
    kinds: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    proportions: list[str] = field(default_factory=list)


def _band(value: float, low: float, high: float, below: Sequence[str], above: Sequence[str]) -> list[str]:
    """``below`` when value < low, ``above`` when value > high, nothing in between."""
    return list(below) if value < low else list(above) if value > high else []


def _chair(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.kinds += ["arms"] if p["arms"] else []
    n.features.append("arms" if p["arms"] else "no_arms")
    back = {"panel": "back_panel", "slats": "back_slats", "rails": "back_rails", "none_low": "back_low"}
    n.features.append(back[p["back_style"]])
    if p["back_style"] != "none_low" and p["back_height"] > 0.48:
        n.features.append("back_high")
    n.features += ["reclined"] if p["back_tilt_deg"] > 11 else []
    if p["round_seat"]:
        n.features.append("round_seat")
        n.proportions.append("round")
    n.features.append("pedestal" if p["leg_style"] == "pedestal" else f"legs_{p['leg_style']}")
    n.features += ["splayed"] if p.get("leg_splay", 0.0) > 0.02 else []
    n.features += ["stretchers"] if p.get("stretchers") else []
    n.proportions += _band(p["width"], 0.43, 0.54, ["narrow"], ["wide"])
    return n


def _table(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    h, w, d = p["height"], p["width"], p["depth"]
    n.kinds += ["coffee"] if h < 0.5 else ["dining"] if h >= 0.65 else []
    n.kinds += ["desk"] if p["top_shape"] == "rect" and h >= 0.65 else []
    n.features.append(f"top_{p['top_shape']}")
    if p["support"] == "legs":
        n.features += ["four_legs"] + ([f"legs_{p['leg_style']}"] if p.get("leg_style") else [])
        n.features += ["splayed"] if p.get("leg_splay", 0.0) > 0.02 else []
        n.features += ["lower_shelf"] if p.get("lower_shelf") else []
    else:
        n.features.append(str(p["support"]))
        n.kinds += ["trestle"] if p["support"] == "trestle" else []
    n.proportions += _band(h / w, 0.4, 0.8, ["low"], ["tall"])
    if p["top_shape"] == "round":
        n.proportions.append("round")
    elif d / w < 0.6:
        n.proportions.append("long")
    elif p["top_shape"] == "rect" and d / w > 0.9:
        n.proportions.append("square")
    return n


def _stool(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.kinds += _band(p["height"], 0.45, 0.65, ["foot"], ["bar"])
    if p["pedestal"]:
        n.features.append("pedestal")
    else:
        n.features.append(f"{'splayed' if p.get('leg_splay', 0.0) > 0.04 else 'legs'}{p['legs']}")
        n.features += ["footrest"] if p.get("footrest") else []
    n.features.append("square_seat" if p["square"] else "round_seat")
    n.proportions.append("square" if p["square"] else "round")
    n.proportions += _band(p["height"] / (2 * p["radius"]), 1.2, 2.0, ["low"], ["tall"])
    return n


def _bench(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.kinds += ["garden"] if p["slatted"] and p["backrest"] else []
    n.features += ["slatted"] if p["slatted"] else []
    n.features.append("backrest" if p["backrest"] else "backless")
    if "side_panels" in p:
        n.features.append("panels" if p["side_panels"] else "legs4" if p["length"] < 1.5 else "legs6")
    n.proportions += _band(p["length"] / p["height"], 2.5, 4.0, ["short"], ["long"])
    return n


def _sofa(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.kinds += ["loveseat"] if p["seats"] == 2 else []
    n.kinds += ["sectional"] if p["chaise"] else []
    n.features.append(f"seats{p['seats']}")
    if p["arm_width"] > 0.03:
        n.features += ["arms"] + (["wide_arms"] if p["arm_width"] > 0.15 else [])
    else:
        n.features.append("no_arms")
    n.features += ["chaise"] if p["chaise"] else []
    n.features += ["legs"] if p["leg_height"] > 0.03 else []
    n.features += ["high_back"] if p["back_height"] > 0.48 else []
    n.proportions += ["long"] if p["seats"] >= 3 else []
    n.proportions += ["low"] if p["back_height"] < 0.35 else []
    return n


def _bed(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.kinds += _band(p["width"], 1.2, 1.5, ["single"], ["double"])
    n.features.append(f"head_{p['headboard']}")
    n.features += ["tall_head"] if p["headboard_height"] > 0.9 else []
    n.features += ["footboard"] if p.get("footboard") else []
    n.features.append(f"pillows{p['pillows']}")
    n.features += ["blanket"] if p.get("blanket") else []
    n.proportions += _band(p["width"] / p["length"], 0.6, 0.8, ["narrow"], ["wide"])
    return n


def _bookshelf(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.features.append(f"shelves{min(max(int(p['shelves']), 1), 8)}")
    n.features += _band(p["fill"], 0.2, 0.6, ["few_books"], ["full"])
    n.features += [] if p["back_panel"] else ["open_back"]
    ratio = p["height"] / p["width"]
    n.proportions += ["tall", "narrow"] if ratio > 2.2 else ["tall"] if ratio > 1.5 else []
    n.proportions += ["low", "wide"] if ratio < 0.8 else []
    return n


def _cabinet(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.kinds += ["chest"] if p["drawers"] >= 3 and p["doors"] == 0 else []
    n.kinds += ["wardrobe"] if p["height"] > 1.4 and p["doors"] > 0 else []
    n.features += [f"drawers{p['drawers']}"] if p["drawers"] else []
    n.features += [f"doors{p['doors']}"] if p["doors"] else []
    n.features += {"legs": ["legs"], "plinth": ["plinth"]}.get(p["foot"], [])
    n.features.append("knobs" if p["handle"] == "knob" else "bars")
    n.proportions += _band(p["height"] / p["width"], 0.7, 1.8, ["low", "wide"], ["tall"])
    return n


def _lamp(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.kinds.append("floor" if p["floor"] else "desk")
    n.features += [f"shade_{p['shade']}", "arm" if p["arm"] else "stem", f"base_{p['base']}"]
    return n


def _vase(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    radii = p["radii"]
    n.proportions += _band(p["height"] / (2 * max(radii)), 1.3, 2.6, ["short", "squat"], ["tall", "slender"])
    n.features += ["neck"] if p.get("neck") else []
    n.features += ["handles"] if p["handles"] else []
    n.features += ["bulbous"] if max(radii) > 2 * max(radii[0], radii[-1]) else []
    return n


def _bottle(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    total = p["body_height"] + p["shoulder"] + p["neck_length"]
    n.proportions += _band(total / (2 * p["radius"]), 3.0, 5.5, ["short", "squat"], ["tall", "slender"])
    n.features += _band(p["neck_length"], 0.035, 0.08, ["short_neck"], ["long_neck"])
    n.features += ["label"] if p.get("label") else []
    if p["square"]:
        n.features.append("square")
        n.proportions.append("square")
    n.features.append("cap")
    return n


def _mug(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.proportions += _band(p["height"] / (2 * p["radius"]), 0.85, 1.3, ["short"], ["tall"])
    n.features.append(f"handle_{p['handle']}")
    n.features += _band(p["taper"], 0.88, 1.08, ["tapered"], ["flared"])
    n.features += ["belly"] if p["belly"] > 0.1 else []
    return n


def _bowl(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.proportions += _band(p["height"] / p["radius"], 0.45, 0.75, ["shallow", "wide"], ["deep"])
    n.features += ["foot"] if p["foot"] else []
    n.features += ["rim"] if p.get("rim") else []
    return n


def _plant_pot(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.features.append({"none": "empty"}.get(p["plant"], p["plant"]))
    n.features += ["lip"] if p["lip"] else []
    n.features += ["tapered"] if p["bottom_radius"] / p["top_radius"] < 0.75 else []
    n.proportions += _band(p["height"] / (2 * p["top_radius"]), 0.5, 0.7, ["short", "wide"], ["tall"])
    return n


def _car(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes(kinds=[p["kind"]])
    n.features += ["spoiler"] if p.get("spoiler") else []
    n.features += ["big_wheels"] if p["wheel_radius"] > 0.4 else []
    n.proportions += {"sports": ["low"], "van": ["tall"], "suv": ["tall"]}.get(p["kind"], [])
    return n


def _airplane(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.kinds += ["jet"] if p["engines"] else ["propeller"] if p["propeller"] else []
    n.features += [f"engines{p['engines']}"] if p["engines"] else []
    n.features += ["propeller"] if p["propeller"] else []
    n.features += _band(p["sweep_deg"], 8, 25, ["straight"], ["swept"])
    n.features += {0.7: ["high_wing"], -0.6: ["low_wing"]}.get(round(p["wing_position"], 1), [])
    n.features += _band(p["span"] / p["length"], 0.85, 1.15, ["short_wings"], ["long_wings"])
    n.proportions += _band(p["fuselage_radius"] / p["length"], 0.045, 0.06, ["slender"], ["chunky"])
    return n


def _boat(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes(kinds=[p["kind"]])
    n.features += {"sailboat": ["sail", "cabin"], "motorboat": ["motor", "cabin"], "rowboat": ["thwarts"]}[p["kind"]]
    n.proportions += _band(p["beam"] / p["length"], 0.3, 0.36, ["narrow"], ["wide"])
    return n


def _rock(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    a, b, c = p["radii"]
    n.proportions += ["flat"] if c / max(a, b) < 0.45 else []
    n.proportions += ["long"] if min(a, b) / max(a, b) < 0.65 else []
    n.proportions += ["round"] if min(a, b, c) >= 0.75 else []
    n.features += ["angular"] if p["cuts"] >= 3 else ["smooth"] if p["cuts"] == 0 else []
    return n


def _fruit(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    return _Notes(kinds=[p["kind"]], features=[name for name in ("stem", "leaf") if name in parts])


def _tree(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    crown = {"broadleaf": "crown_leafy", "bare": "bare", "round": "crown_round"}
    feature = f"tiers{p['tiers']}" if p["kind"] == "conifer" else crown[p["kind"]]
    return _Notes(kinds=[p["kind"]], features=[feature])


def _mushroom(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes(features=[f"cap_{p['caps'][0]}"])
    n.features += [f"cluster{p['count']}"] if p["count"] > 1 else []
    return n


def _quadruped(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    body = p["body_length"]
    n.features += _band(p["leg_length"] / body, 0.55, 0.9, ["short_legs"], ["long_legs"])
    n.features += ["long_neck"] if p["neck_length"] / body > 0.5 else []
    n.features.append("floppy_ears" if p["floppy_ears"] else "pointed_ears")
    n.features += _band(p["tail_length"] / body, 0.2, 0.6, ["short_tail"], ["long_tail"])
    if "snout_length" in p:
        n.features += _band(p["snout_length"] / p["head_size"], 0.6, 1.1, ["short_snout"], ["long_snout"])
    n.proportions += _band(p["body_radius"] / body, 0.21, 0.28, ["slender"], ["stocky"])
    return n


def _humanoid(p: Mapping[str, Any], parts: set[str]) -> _Notes:
    n = _Notes()
    n.features += _band(p["head_heights"], 4.2, 6.3, ["chibi"], ["realistic"])
    n.features += ["wide_stance"] if p["stance"] > 0.25 else []
    arms = p.get("arm_raise_deg", [])
    n.features += ["arms_out"] if arms and min(arms) > 70 else ["arms_down"] if arms and max(arms) < 30 else []
    n.features += ["short_sleeves"] if p.get("bare_forearms") and all(p["bare_forearms"]) else []
    n.proportions += _band(p["build"], 0.95, 1.25, ["slender"], ["stocky"])
    return n


_RULES: dict[str, Callable[[Mapping[str, Any], set[str]], _Notes]] = {
    "chair": _chair, "table": _table, "stool": _stool, "bench": _bench, "sofa": _sofa, "bed": _bed,
    "bookshelf": _bookshelf, "cabinet": _cabinet, "lamp": _lamp, "vase": _vase, "bottle": _bottle,
    "mug": _mug, "bowl": _bowl, "plant_pot": _plant_pot, "car": _car, "airplane": _airplane,
    "boat": _boat, "rock": _rock, "fruit": _fruit, "tree": _tree, "mushroom": _mushroom,
    "quadruped": _quadruped, "humanoid": _humanoid,
}

DESCRIBED_CATEGORIES: tuple[str, ...] = tuple(_RULES)


def _extent_words(extents: Extents) -> dict[str, str]:
    x, y, z = (float(e) for e in extents)
    across, along = sorted((x, y))
    words = {}
    if z >= 1.8 * along:
        words["height"] = "tall"
    elif z <= 0.35 * along:
        words["height"] = "low"
    if along >= 2.5 * max(across, z, 1e-6):
        words["length"] = "long"
    return words


def _proportions(category: str, from_params: list[str], extents: Extents | None) -> tuple[str, ...]:
    by_axis: dict[str, str] = {}
    for word in from_params:
        by_axis.setdefault(PROPORTION_AXES[word], word)
    if extents is not None and category not in _NO_EXTENT_WORDS:
        for axis, word in _extent_words(extents).items():
            by_axis.setdefault(axis, word)
    return tuple(by_axis.values())


def _merge_nouns(category: str, kinds: list[str]) -> Nouns:
    sets = [CATEGORY_NOUNS[category]] + [KIND_NOUNS[category][k] for k in kinds]
    return Nouns(tuple(w for s in sets for w in s.train), tuple(w for s in sets for w in s.heldout))


def attributes_for(category: str, spec_or_shape: Any, extents: Extents | None = None) -> ShapeAttributes:
    """Attributes of one shape of ``category`` (a ``ShapeSpec`` or ``ProceduralShape``).

    ``extents``: the normalised bounding-box size (x, y, z) when the caller has it (from a mesh;
    not computed here because meshing is slow); it adds overall proportion words.
    """
    try:
        rule = _RULES[category]
    except KeyError:
        raise ValueError(f"no caption rules for category {category!r}; known: {', '.join(_RULES)}") from None
    used = {part.material for part in spec_or_shape.parts}
    materials = spec_or_shape.materials
    looks = {
        i: PartLook(role, name_colour(materials[i].base_color), getattr(materials[i], "family", ""),
                    tuple(float(c) for c in materials[i].base_color))
        for i, role in enumerate(ROLES[category])
        if role is not None and i in used and i < len(materials)
    }
    if not looks:
        raise ValueError(f"{category}: the shape has no part that captions can describe")
    main_index = next((i for i in MAIN_ROLE.get(category, ()) if i in looks), min(looks))
    notes = rule(spec_or_shape.params, {part.name for part in spec_or_shape.parts})
    features = FEATURES.get(category, {})
    return ShapeAttributes(
        category=category,
        nouns=_merge_nouns(category, notes.kinds),
        main=looks[main_index],
        parts=tuple(look for i, look in sorted(looks.items()) if i != main_index),
        proportions=_proportions(category, notes.proportions, extents),
        features=tuple(features[key] for key in notes.features),
    )
