"""Every word and phrase a caption can use, as tables (no code paths build phrases).

Keeping the language in tables is what lets the vocabulary list every word captions can emit
without generating shapes (`vocab.build_vocabulary`), and lets the held-out split be a fixed,
documented set: the ``heldout`` entries of `Nouns` (category and kind nouns, material words)
never appear in a ``split="train"`` caption.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Nouns:
    """Interchangeable words for one thing, split between training and held-out evaluation."""

    train: tuple[str, ...]
    heldout: tuple[str, ...] = ()


@dataclass(frozen=True)
class Feature:
    """A describable property: noun phrases that follow "with", adjectives that precede the noun."""

    phrases: tuple[str, ...]
    adjectives: tuple[str, ...] = ()


def _f(*phrases: str, adj: tuple[str, ...] = ()) -> Feature:
    return Feature(tuple(phrases), adj)


NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _counted(singular: str, plural: str, counts: range, adj: str = "") -> dict[str, Feature]:
    """``{"<plural>2": Feature("two <plural>"), ...}``; ``adj`` ("seater") adds "two-seater"."""
    out = {}
    for n in counts:
        word = NUMBER_WORDS[n]
        phrase = f"a {singular}" if n == 1 else f"{word} {plural}"
        out[f"{plural}{n}"] = _f(phrase, adj=(f"{word}-{adj}",) if adj else ())
    return out


CATEGORY_NOUNS: dict[str, Nouns] = {
    "chair": Nouns(("chair", "seat"), ("dining chair",)),
    "table": Nouns(("table",)),
    "stool": Nouns(("stool",)),
    "bench": Nouns(("bench",)),
    "sofa": Nouns(("sofa", "couch"), ("settee",)),
    "bed": Nouns(("bed",), ("bedstead",)),
    "bookshelf": Nouns(("bookshelf", "bookcase"), ("shelving unit",)),
    "cabinet": Nouns(("cabinet", "cupboard"), ("storage cabinet",)),
    "lamp": Nouns(("lamp",), ("light fixture",)),
    "vase": Nouns(("vase",), ("urn",)),
    "bottle": Nouns(("bottle",), ("flask",)),
    "mug": Nouns(("mug", "cup"), ("coffee mug",)),
    "bowl": Nouns(("bowl",), ("basin",)),
    "plant_pot": Nouns(("plant pot", "flower pot", "planter"), ("flowerpot",)),
    "car": Nouns(("car",), ("automobile",)),
    "airplane": Nouns(("airplane", "plane"), ("aircraft",)),
    "boat": Nouns(("boat", "ship"), ("vessel",)),
    "rock": Nouns(("rock", "stone"), ("boulder",)),
    "fruit": Nouns(("fruit",), ("piece of fruit",)),
    "tree": Nouns(("tree",)),
    "mushroom": Nouns(("mushroom",), ("toadstool",)),
    "quadruped": Nouns(("quadruped", "animal", "creature", "dog", "dog-like animal"), ("four-legged animal", "beast")),
    "humanoid": Nouns(("humanoid", "person", "figure", "character"), ("human", "figurine")),
}

# Nouns for a kind of the category (a floor lamp, a sedan): used alongside the category nouns.
KIND_NOUNS: dict[str, dict[str, Nouns]] = {
    "chair": {"arms": Nouns(("armchair",))},
    "table": {
        "coffee": Nouns(("coffee table",), ("cocktail table",)),
        "dining": Nouns((), ("dining table",)),
        "desk": Nouns(("desk",), ("writing desk",)),
        "trestle": Nouns(("trestle table",)),
    },
    "stool": {"bar": Nouns(("bar stool",), ("counter stool",)), "foot": Nouns((), ("footstool",))},
    "bench": {"garden": Nouns(("garden bench",), ("park bench",))},
    "sofa": {"loveseat": Nouns(("loveseat",)), "sectional": Nouns(("sectional sofa", "corner sofa"))},
    "bed": {"single": Nouns(("single bed",)), "double": Nouns(("double bed",), ("queen bed",))},
    "cabinet": {"chest": Nouns(("chest of drawers",), ("dresser",)), "wardrobe": Nouns(("wardrobe",))},
    "lamp": {
        "floor": Nouns(("floor lamp", "standard lamp"), ("standing lamp",)),
        "desk": Nouns(("desk lamp", "table lamp"), ("bedside lamp",)),
    },
    "car": {
        "sedan": Nouns(("sedan", "saloon car")),
        "hatchback": Nouns(("hatchback",)),
        "suv": Nouns(("suv",)),
        "pickup": Nouns(("pickup truck", "pickup")),
        "sports": Nouns(("sports car",), ("race car",)),
        "van": Nouns(("van", "minivan")),
    },
    "airplane": {
        "jet": Nouns(("jet", "airliner"), ("jetliner",)),
        "propeller": Nouns(("propeller plane",), ("prop plane",)),
    },
    "boat": {
        "rowboat": Nouns(("rowboat", "rowing boat"), ("dinghy",)),
        "motorboat": Nouns(("motorboat", "speedboat"), ("powerboat",)),
        "sailboat": Nouns(("sailboat", "sailing boat"), ("yacht",)),
    },
    "fruit": {kind: Nouns((kind,)) for kind in ("apple", "pear", "orange", "lemon", "banana")},
    "tree": {
        "conifer": Nouns(("pine tree", "conifer"), ("fir tree", "evergreen")),
        "broadleaf": Nouns(("leafy tree", "deciduous tree")),
        "bare": Nouns(("bare tree", "leafless tree"), ("dead tree",)),
        "round": Nouns(("round tree",), ("topiary tree",)),
    },
}

_LEGS = {
    "legs_round": _f("round legs", "cylindrical legs"),
    "legs_square": _f("square legs"),
    "legs_tapered": _f("tapered legs"),
    "splayed": _f("splayed legs"),
    "pedestal": _f("a pedestal base", "a central pedestal", adj=("pedestal",)),
}

FEATURES: dict[str, dict[str, Feature]] = {
    "chair": {
        **_LEGS,
        "arms": _f("arms", "armrests"),
        "no_arms": _f("no arms", adj=("armless",)),
        "back_panel": _f("a solid back", "a panel back"),
        "back_slats": _f("a slatted back", "vertical slats", adj=("slat-back",)),
        "back_rails": _f("a ladder back", "horizontal back rails", adj=("ladder-back",)),
        "back_low": _f("a very low back", adj=("low-backed",)),
        "back_high": _f("a tall back", "a high back", adj=("high-backed",)),
        "reclined": _f("a reclined back", "a tilted back"),
        "round_seat": _f("a round seat"),
        "stretchers": _f("stretchers", "leg stretchers"),
    },
    "table": {
        **_LEGS,
        "top_round": _f("a round top", "a circular top", adj=("round", "circular")),
        "top_rect": _f("a rectangular top", adj=("rectangular",)),
        "top_oval": _f("an oval top", adj=("oval",)),
        "four_legs": _f("four legs", adj=("four-legged",)),
        "trestle": _f("trestle legs", "two trestles"),
        "lower_shelf": _f("a lower shelf", "a shelf underneath"),
    },
    "stool": {
        **_LEGS,
        "legs3": _f("three legs", adj=("three-legged",)),
        "legs4": _f("four legs", adj=("four-legged",)),
        "splayed3": _f("three splayed legs", adj=("three-legged",)),
        "splayed4": _f("four splayed legs", adj=("four-legged",)),
        "footrest": _f("a footrest", "a foot ring"),
        "round_seat": _f("a round seat"),
        "square_seat": _f("a square seat"),
    },
    "bench": {
        "slatted": _f("a slatted seat", "slats", adj=("slatted",)),
        "backrest": _f("a backrest", "a back"),
        "backless": _f("no back", adj=("backless",)),
        "panels": _f("solid side panels", "panel legs"),
        "legs4": _f("four legs"),
        "legs6": _f("six legs"),
    },
    "sofa": {
        **_counted("seat", "seats", range(1, 5), adj="seater"),
        "arms": _f("arms", "armrests"),
        "wide_arms": _f("wide armrests", "chunky arms"),
        "no_arms": _f("no arms", adj=("armless",)),
        "chaise": _f("a chaise", "a chaise longue", adj=("l-shaped",)),
        "legs": _f("short legs", "legs"),
        "high_back": _f("a high back", adj=("high-backed",)),
    },
    "bed": {
        "head_panel": _f("a panel headboard", "a solid headboard"),
        "head_round": _f("a rounded headboard", "an arched headboard"),
        "head_posts": _f("corner posts", "bedposts"),
        "tall_head": _f("a tall headboard"),
        "footboard": _f("a footboard"),
        "pillows1": _f("a pillow", "one pillow"),
        "pillows2": _f("two pillows"),
        "blanket": _f("a blanket", "a duvet"),
    },
    "bookshelf": {
        **_counted("shelf", "shelves", range(1, 9)),
        "full": _f("books", "lots of books"),
        "few_books": _f("a few books"),
        "open_back": _f("an open back", "no back panel", adj=("open-backed",)),
    },
    "cabinet": {
        **_counted("drawer", "drawers", range(1, 5)),
        "doors1": _f("a door", "one door"),
        "doors2": _f("two doors", "double doors"),
        "legs": _f("legs", "short legs"),
        "plinth": _f("a plinth", "a plinth base"),
        "knobs": _f("knobs", "round knobs"),
        "bars": _f("bar handles", "handles"),
    },
    "lamp": {
        "shade_cone": _f("a cone shade", "a conical shade", "a tapered shade"),
        "shade_dome": _f("a dome shade", "a domed shade"),
        "shade_drum": _f("a drum shade", "a cylindrical shade"),
        "arm": _f("an angled arm", "a bent arm", adj=("angled",)),
        "stem": _f("a straight stem"),
        "base_disk": _f("a round base", "a disc base"),
        "base_square": _f("a square base"),
        "base_dome": _f("a domed base"),
    },
    "vase": {
        "neck": _f("a narrow neck", "a thin neck"),
        "handles": _f("handles", "two handles", adj=("two-handled",)),
        "bulbous": _f("a bulging body", "a round belly", adj=("bulbous",)),
    },
    "bottle": {
        "long_neck": _f("a long neck"),
        "short_neck": _f("a short neck"),
        "label": _f("a label"),
        "square": _f("a square body", adj=("square",)),
        "cap": _f("a cap", "a lid"),
    },
    "mug": {
        "handle_round": _f("a round handle", "a ring handle", "a handle"),
        "handle_tall": _f("a tall handle", "an oval handle", "a handle"),
        "handle_square": _f("a square handle", "a squared handle", "a handle"),
        "tapered": _f("a tapered body", adj=("tapered",)),
        "flared": _f("a flared rim", adj=("flared",)),
        "belly": _f("a rounded body", adj=("rounded",)),
    },
    "bowl": {
        "foot": _f("a foot", "a foot ring", adj=("footed",)),
        "rim": _f("a rolled rim", "a thick rim"),
    },
    "plant_pot": {
        "empty": _f("soil", "no plant", adj=("empty",)),
        "leaves": _f("a leafy plant", "long leaves"),
        "cactus": _f("a cactus"),
        "bush": _f("a bush", "a small shrub"),
        "lip": _f("a lip", "a rim at the top"),
        "tapered": _f("tapered sides", adj=("tapered",)),
    },
    "car": {
        "spoiler": _f("a spoiler", "a rear spoiler"),
        "big_wheels": _f("big wheels", "large wheels"),
    },
    "airplane": {
        "engines2": _f("two engines", adj=("twin-engine",)),
        "engines4": _f("four engines", adj=("four-engine",)),
        "propeller": _f("a propeller"),
        "swept": _f("swept wings", "swept-back wings", adj=("swept-wing",)),
        "straight": _f("straight wings"),
        "high_wing": _f("high wings", adj=("high-wing",)),
        "low_wing": _f("low wings", adj=("low-wing",)),
        "long_wings": _f("long wings", "a wide wingspan"),
        "short_wings": _f("short wings", "stubby wings"),
    },
    "boat": {
        "sail": _f("a sail", "a mast and a sail"),
        "cabin": _f("a cabin"),
        "motor": _f("an outboard motor", "a motor"),
        "thwarts": _f("rowing benches", "benches"),
    },
    "rock": {
        "angular": _f("flat facets", "sharp edges", adj=("angular", "faceted")),
        "smooth": _f("smooth sides", adj=("smooth",)),
    },
    "fruit": {
        "stem": _f("a stem", "a stalk"),
        "leaf": _f("a leaf"),
    },
    "tree": {
        **_counted("tier", "tiers", range(2, 6)),
        "crown_leafy": _f("a leafy crown", "several branches"),
        "bare": _f("bare branches", "no leaves", adj=("leafless",)),
        "crown_round": _f("a round crown", "a ball-shaped crown"),
    },
    "mushroom": {
        "cap_dome": _f("a domed cap", "a round cap"),
        "cap_flat": _f("a flat cap", "a wide flat cap"),
        "cap_cone": _f("a conical cap", "a pointed cap"),
        "cluster2": _f("a second smaller mushroom", adj=("clustered",)),
        "cluster3": _f("two smaller mushrooms", adj=("clustered",)),
    },
    "quadruped": {
        "long_legs": _f("long legs", adj=("long-legged",)),
        "short_legs": _f("short legs", adj=("short-legged",)),
        "long_neck": _f("a long neck"),
        "floppy_ears": _f("floppy ears"),
        "pointed_ears": _f("pointed ears", "upright ears"),
        "long_tail": _f("a long tail"),
        "short_tail": _f("a short tail"),
        "long_snout": _f("a long snout", "a long muzzle"),
        "short_snout": _f("a short snout", "a flat face"),
    },
    "humanoid": {
        "chibi": _f("a big head", "cartoon proportions", adj=("chibi", "cartoonish")),
        "realistic": _f("realistic proportions", "a small head"),
        "wide_stance": _f("legs apart", "a wide stance"),
        "arms_out": _f("arms outstretched", "arms spread out"),
        "arms_down": _f("arms down", "arms at the sides"),
        "short_sleeves": _f("short sleeves", "bare arms"),
    },
}

# What each material slot of a category's ShapeSpec is, by index; None: not worth describing
# (bookshelf books vary per shelf, a car's windows and a pot's soil look the same on every shape).
ROLES: dict[str, tuple[str | None, ...]] = {
    "chair": ("frame", "seat"),
    "table": ("top", "legs"),
    "stool": ("seat", "legs"),
    "bench": ("seat", "legs"),
    "sofa": ("upholstery", "legs"),
    "bed": ("frame", "bedding", "pillows"),
    "bookshelf": ("frame", None, None, None),
    "cabinet": ("body", "handles"),
    "lamp": ("base", "shade"),
    "vase": ("body",),
    "bottle": ("body", "cap", "label"),
    "mug": ("body", "handle"),
    "bowl": ("body",),
    "plant_pot": ("pot", None, "leaves"),
    "car": ("body", None, "tyres"),
    "airplane": ("fuselage", "tail"),
    "boat": ("hull", "deck", "sail"),
    "rock": ("surface",),
    "fruit": ("skin", None, None),
    "tree": ("trunk", "leaves"),
    "mushroom": ("cap", "stem"),
    "quadruped": ("fur", "legs"),
    "humanoid": ("skin", "shirt", "trousers", "shoes"),
}
# Plural and mass nouns: "with metal legs", "with grey fur", not "with a ...".
ROLES_WITHOUT_ARTICLE = frozenset(
    {"legs", "pillows", "handles", "leaves", "tyres", "trousers", "shoes", "skin", "fur", "upholstery", "bedding"}
)

# Which material slot gives the whole object its colour and material words ("a blue ceramic vase"):
# the first of these the shape's parts use.
MAIN_ROLE: dict[str, tuple[int, ...]] = {"tree": (1, 0), "humanoid": (1, 0)}

# Material words by material family; families with none ("dark", "skin", "soil", ...) are a
# colour, not a material anyone names.
MATERIAL_WORDS: dict[str, Nouns] = {
    "wood": Nouns(("wooden", "wood"), ("timber",)),
    "metal": Nouns(("metal", "metallic"), ("steel",)),
    "fabric": Nouns(("fabric",), ("cloth",)),
    "paint": Nouns(("painted",)),
    "ceramic": Nouns(("ceramic", "porcelain"), ("earthenware",)),
    "glass": Nouns(("glass",)),
    "plastic": Nouns(("plastic",)),
    "rubber": Nouns(("rubber",)),
    "stone": Nouns(("stone",)),
    "fur": Nouns(("furry",)),
}
# "made of ..." nouns, for the families where the phrase reads naturally.
MATERIAL_NOUNS: dict[str, str] = {
    family: family for family in ("wood", "metal", "fabric", "ceramic", "glass", "plastic", "rubber", "stone")
}

# Proportion words by the axis they describe; a shape gets at most one word per axis.
PROPORTION_AXES: dict[str, str] = {
    **dict.fromkeys(("tall", "short", "low", "flat", "shallow", "deep"), "height"),
    **dict.fromkeys(("wide", "narrow"), "width"),
    "long": "length",
    **dict.fromkeys(("slender", "chunky", "stocky", "squat"), "build"),
    **dict.fromkeys(("round", "square"), "outline"),
}
