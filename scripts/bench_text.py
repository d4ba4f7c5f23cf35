#!/usr/bin/env python
"""Text → shape quality of the generate pipeline, judged from its meshes by a separate scorer.

    .venv/bin/python -m backend.train.shape_classifier      # once: trains the scorer (data_cache/)
    .venv/bin/python scripts/bench_text.py                  # all prompts, cpu "preview"
    .venv/bin/python scripts/bench_text.py --limit 8 --quality default

A fixed prompt set (`prompt_set`): per category a plain prompt, a colour prompt, a "tall" and a
"wide" prompt, all in phrasings of the caption generator's held-out split (templates, and the
category's held-out synonym where it has one), so none was seen in training. Each result mesh is
scored with what it looks like, by models that share nothing with the text model:

- **category top-1**: the shape classifier (`backend/train/shape_classifier.py`, trained on its own
  procedural shapes) names the prompt's category first.
- **colour accuracy** (colour prompts): the area-weighted mean of the mesh's vertex colours, named by
  `backend.text.colours.name_colour`, has the prompt's basic colour (shade ignored).
- **size accuracy** ("tall"/"wide" prompts): height / width (Z / X extent) of the result is above
  ("tall") or below ("wide") that of the same category's plain prompt.
- **R-precision**: every result ranks all prompts by the classifier's probability of the prompt's
  category (a matching colour breaks ties); a hit is its own prompt within the top R, R = the number
  of prompts of its category (text-to-shape R-precision with category-level relevance). With this
  scorer it equals category top-1 up to ties; a finer one needs a joint text-shape scorer.

A prompt the pipeline refuses or fails counts as wrong on every metric. Writes
bench_results/text_to_shape.json (or --out) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLOURS = ("red", "blue", "green", "yellow", "white", "black", "orange", "purple", "pink", "grey", "brown")
"""Colour words of the colour prompts, cycled over the categories."""
TIE_BREAK = 1e-3
"""Weight of a colour match in the R-precision scores: below any real difference in probability."""


@dataclass(frozen=True)
class Prompt:
    text: str
    category: str
    noun: str
    heldout_noun: bool
    """The noun is one of the category's held-out synonyms (never in a training caption)."""
    colour: str | None = None
    size: str | None = None
    """"tall" or "wide"."""


def prompt_set() -> list[Prompt]:
    """Four prompts per category (plain, colour, tall, wide) in held-out caption templates
    (`backend.text.captions.HELDOUT_TEMPLATES`)."""
    from backend.data.procedural import CATEGORIES
    from backend.text.lexicon import CATEGORY_NOUNS

    prompts = []
    for i, category in enumerate(CATEGORIES):
        nouns = CATEGORY_NOUNS[category]
        noun = (nouns.heldout or nouns.train)[0]
        held = bool(nouns.heldout)
        colour = COLOURS[i % len(COLOURS)]
        prompts += [
            Prompt(f"i would like {article(noun)} {noun}", category, noun, held),
            Prompt(f"{article(colour)} {colour} coloured {noun}", category, noun, held, colour=colour),
            Prompt(f"i would like a tall {noun}", category, noun, held, size="tall"),
            Prompt(f"i would like a wide {noun}", category, noun, held, size="wide"),
        ]
    return prompts


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# ------------------------------------------------------------------------------------ measures
def surface_colour(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Mean sRGB colour [3] in 0..1 over the surface: faces weighted by area, each the mean of its
    vertices' colours (a mesh's vertices are not spread evenly over it)."""
    tri = np.asarray(vertices, np.float64)[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face_colour = np.asarray(colors, np.float64)[faces][..., :3].mean(1) / 255.0
    return (face_colour * area[:, None]).sum(0) / max(area.sum(), 1e-12)


def colour_name(rgb: np.ndarray) -> str:
    """The basic colour word of an sRGB colour (shade dropped: "dark red" is red)."""
    from backend.text.colours import name_colour

    return name_colour(tuple(float(c) for c in rgb)).base


def aspect(vertices: np.ndarray) -> float:
    """Height over width: Z extent / X extent (front is −Y, so X runs left to right)."""
    extent = np.ptp(np.asarray(vertices, np.float64), axis=0)
    return float(extent[2] / max(extent[0], 1e-9))


def size_correct(size: str, result_aspect: float, plain_aspect: float) -> bool:
    return result_aspect > plain_aspect if size == "tall" else result_aspect < plain_aspect


def match_scores(probabilities: np.ndarray, colour_names: list[str | None], prompts: list[Prompt],
                 categories: tuple[str, ...]) -> np.ndarray:
    """[results, prompts]: the classifier's probability of each prompt's category for each result,
    plus `TIE_BREAK` where the prompt names the result's colour. A failed result (a row of NaN
    probabilities) scores -inf everywhere."""
    column = np.array([categories.index(p.category) for p in prompts])
    scores = probabilities[:, column].astype(np.float64)
    for i, name in enumerate(colour_names):
        scores[i] += TIE_BREAK * np.array([p.colour is not None and p.colour == name for p in prompts])
    return np.where(np.isnan(scores), -np.inf, scores)


def r_precision(scores: np.ndarray, own: np.ndarray, relevant: np.ndarray) -> float:
    """Share of rows whose own column (``own`` [S]) ranks within the top R_s of ``scores`` [S, P],
    R_s = ``relevant[s].sum()`` ([S, P] bool). Ties count by expectation over a random order, so a
    constant score gives the chance level R / P, not a hit."""
    hits = []
    for s in range(len(scores)):
        mine = scores[s, own[s]]
        if not np.isfinite(mine):
            hits.append(0.0)
            continue
        above = int((scores[s] > mine).sum())
        tied = int((scores[s] == mine).sum())
        hits.append(float(np.clip((relevant[s].sum() - above) / tied, 0.0, 1.0)))
    return float(np.mean(hits)) if hits else float("nan")


# ------------------------------------------------------------------------------------ running
@dataclass
class Result:
    prompt: str
    seconds: float
    error: str | None = None
    predicted: str | None = None
    probability: float | None = None
    """The classifier's probability of the prompt's category."""
    named_colour: str | None = None
    """The basic colour name of the result's mean surface colour."""
    rgb: list[float] | None = None
    aspect: float | None = None


def run_prompts(pipeline, prompts: list[Prompt], quality: str, classifier, log=print
                ) -> tuple[list[Result], np.ndarray, dict]:
    """Generate every prompt with ``pipeline`` (a `GeneratePipeline`, loaded on its first run) and
    measure it. Returns the results, the classifier's probabilities [prompts, categories] (NaN rows
    for failures) and the pipeline's metadata of the first success."""
    from backend.errors import PipelineError
    from backend.pipelines.base import JobContext
    from backend.requests import CommonParams, GenerateRequest
    from backend.train.shape_classifier import classify_mesh

    categories = classifier.config.categories
    results, probabilities, metadata = [], np.full((len(prompts), len(categories)), np.nan), {}
    for i, prompt in enumerate(prompts):
        ctx = JobContext("bench", "cpu", emit_progress=lambda *a: None, emit_preview_mesh=lambda *a: None,
                         emit_preview_points=lambda *a: None, is_cancelled=lambda: False,
                         deadline=time.monotonic() + 3600)
        started = time.monotonic()
        try:
            out = pipeline.run(GenerateRequest(prompt=prompt.text, common=CommonParams(quality=quality),
                                               texture="vertex"), ctx)
        except PipelineError as exc:
            results.append(Result(prompt.text, round(time.monotonic() - started, 2), error=str(exc)))
            log(f"{prompt.text!r}: failed: {exc}")
            continue
        seconds = time.monotonic() - started
        mesh = out.mesh
        probs = classify_mesh(classifier, mesh.vertices, mesh.faces)
        probabilities[i] = probs
        rgb = surface_colour(mesh.vertices, mesh.faces, mesh.colors)
        metadata = metadata or {k: v for k, v in out.metadata.items() if isinstance(v, (str, int, float))}
        results.append(Result(prompt.text, round(seconds, 2), predicted=categories[int(np.argmax(probs))],
                              probability=round(float(probs[categories.index(prompt.category)]), 4),
                              named_colour=colour_name(rgb), rgb=[round(float(c), 3) for c in rgb],
                              aspect=round(aspect(mesh.vertices), 4)))
        log(f"{prompt.text!r}: {results[-1].predicted} ({results[-1].probability:.2f} for {prompt.category}), "
            f"{results[-1].named_colour}, aspect {results[-1].aspect:.2f}, {seconds:.1f} s")
    return results, probabilities, metadata


def summarise(prompts: list[Prompt], results: list[Result], probabilities: np.ndarray,
              categories: tuple[str, ...]) -> dict:
    """The metrics of the module doc over ``results`` (one per prompt, in order)."""
    ok = [r.error is None for r in results]
    top1 = [ok[i] and results[i].predicted == p.category for i, p in enumerate(prompts)]
    colour = [ok[i] and results[i].named_colour == p.colour for i, p in enumerate(prompts) if p.colour]
    plain = {p.category: results[i] for i, p in enumerate(prompts) if p.colour is None and p.size is None}
    size = []
    for i, p in enumerate(prompts):
        base = plain.get(p.category)
        if p.size and base is not None and base.error is None:
            size.append(ok[i] and size_correct(p.size, results[i].aspect, base.aspect))
    scores = match_scores(probabilities, [r.named_colour for r in results], prompts, categories)
    relevant = np.array([[q.category == p.category for q in prompts] for p in prompts])
    held = [i for i, p in enumerate(prompts) if p.heldout_noun]
    seconds = [r.seconds for r in results if r.error is None]

    def share(flags: list[bool]) -> float | None:
        return round(float(np.mean(flags)), 4) if flags else None

    return {
        "prompts": len(prompts),
        "failed": len(prompts) - sum(ok),
        "category_top1": share(top1),
        "category_top1_heldout_nouns": share([top1[i] for i in held]),
        "category_top1_train_nouns": share([top1[i] for i in range(len(prompts)) if i not in held]),
        "colour_accuracy": share(colour),
        "colour_prompts": len(colour),
        "size_accuracy": share(size),
        "size_prompts": len(size),
        "r_precision": round(r_precision(scores, np.arange(len(prompts)), relevant), 4),
        "seconds_median": round(statistics.median(seconds), 2) if seconds else None,
        "seconds_first": results[0].seconds if results else None,
    }


def markdown(summary: dict, quality: str) -> str:
    s = summary
    rows = [
        ("category top-1", s["category_top1"], f"{s['prompts']} prompts: the classifier names the prompt's category"),
        ("… held-out nouns", s["category_top1_heldout_nouns"], "prompts whose noun is a held-out synonym"),
        ("… training nouns", s["category_top1_train_nouns"], "categories without a held-out synonym"),
        ("colour accuracy", s["colour_accuracy"],
         f"{s['colour_prompts']} colour prompts: the mean surface colour has the prompt's colour name"),
        ("size accuracy", s["size_accuracy"],
         f"{s['size_prompts']} tall/wide prompts: height/width above/below the plain prompt's"),
        ("R-precision", s["r_precision"],
         "own prompt in the top R (R = prompts per category) by category probability, colour breaking ties"),
    ]
    lines = [f"Text → shape, cpu {quality}, {s['prompts']} prompts ({s['failed']} failed); {s['seconds_median']} s "
             f"per prompt (median; the first, with loading: {s['seconds_first']} s)",
             "", "| metric | value | meaning |", "|---|---|---|"]
    lines += [f"| {name} | {'–' if value is None else f'{value:.3f}'} | {meaning} |" for name, value, meaning in rows]
    return "\n".join(lines)


def main() -> None:
    import torch

    from backend.pipelines.generate import GeneratePipeline
    from backend.train.shape_classifier import WEIGHTS, load_classifier

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", default="preview", choices=("preview", "default", "high"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    parser.add_argument("--out", default=str(ROOT / "bench_results" / "text_to_shape.json"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not WEIGHTS.is_file():
        raise SystemExit(f"no shape classifier at {WEIGHTS}: train it with "
                         ".venv/bin/python -m backend.train.shape_classifier")
    classifier, classifier_meta = load_classifier()
    pipeline = GeneratePipeline("cpu")
    reason = pipeline.unavailable_reason()
    if reason:
        raise SystemExit(f"the generate pipeline cannot run: {reason}")
    prompts = prompt_set()[: args.limit]
    results, probabilities, pipeline_meta = run_prompts(pipeline, prompts, args.quality, classifier)
    summary = summarise(prompts, results, probabilities, classifier.config.categories)
    out = {"date": datetime.date.today().isoformat(), "quality": args.quality, "device": "cpu",
           "threads": args.threads, "summary": summary, "pipeline": pipeline_meta,
           "classifier": {k: v for k, v in classifier_meta.items() if k != "losses"},
           "prompts": [{**asdict(p), **asdict(r)} for p, r in zip(prompts, results)]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(markdown(summary, args.quality))


if __name__ == "__main__":
    main()
