"""CDM of a predictions file: colour, render (in parallel, cached), match, and sum up.

`cdm_score(records)` gives the per-sample recall / precision / F1 and the summary: mean CDM F1 (a
fraction, as UniMERNet and the Uni-MuMER tables print it), ExpRate@CDM (percent of samples whose
F1 is 1) and, per reason, how many samples scored 0 because one side could not be drawn.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable

from unimumer.cdm.cache import RenderCache, default_cache_dir
from unimumer.cdm.colour import ColourError, coloured
from unimumer.cdm.match import match
from unimumer.cdm.render import Rendering, check_tools, render_batch
from unimumer.latex import LatexError, normalize, tokenize

__all__ = ["CDM_KEYS", "cdm_score", "prepare"]

CDM_KEYS = ("cdm_f1", "exprate_cdm", "cdm_failed")
IN_PROCESS_BELOW = 24  # formulas: fewer than this are not worth starting worker processes
FORMULAS_PER_DOCUMENT = 400  # per pdflatex run; small enough to share the work out evenly


def prepare(latex: str) -> tuple[str, list[str]] | str:
    """(coloured LaTeX, visible tokens) of one side, or the reason it cannot be drawn."""
    try:
        tokens = tokenize(normalize(latex))
    except LatexError:
        tokens = tokenize(latex)  # TeX may still draw what the canonical parser rejects
    if not tokens:
        return "empty"
    try:
        return coloured(tokens)
    except ColourError as exc:
        return exc.reason


def _boxed(visible: list[str], rendering: Rendering) -> list[tuple[str, list[int]]]:
    return [(token, box) for token, box in zip(visible, rendering.boxes) if box]


def _sample(gt: tuple, pred: tuple) -> dict:
    """Scores of one sample from its two (prepared, rendering) sides."""
    sides = {}
    for name, (prepared, rendering) in (("gt", gt), ("pred", pred)):
        reason = prepared if isinstance(prepared, str) else rendering.error
        boxes = [] if reason else _boxed(prepared[1], rendering)
        if not reason and not boxes:
            reason = "renders nothing"
        if reason:
            return {"recall": 0.0, "precision": 0.0, "f1": 0.0, "reason": f"{name} {reason}"}
        sides[name] = (boxes, rendering.size)
    scores = match(sides["gt"][0], sides["pred"][0], sides["gt"][1], sides["pred"][1])
    return {"recall": scores.recall, "precision": scores.precision, "f1": scores.f1}


def _samples(pairs: list[tuple[tuple, tuple]]) -> list[dict]:
    return [_sample(gt, pred) for gt, pred in pairs]


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _render_all(formulas: list[tuple[str, int]], workers: int) -> list[Rendering]:
    if len(formulas) < IN_PROCESS_BELOW or workers == 1:
        return [r for chunk in _chunks(formulas, FORMULAS_PER_DOCUMENT) for r in render_batch(chunk)]
    size = min(FORMULAS_PER_DOCUMENT, math.ceil(len(formulas) / workers))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [r for part in pool.map(render_batch, _chunks(formulas, size)) for r in part]


def cdm_score(records: Iterable[dict], workers: int | None = None,
              cache_dir: Path | None | bool = True) -> tuple[dict, list[dict]]:
    """(summary, per-sample scores) of `{gt, pred}` records.

    summary: n, cdm_f1 (mean F1, 0..1), exprate_cdm (percent with F1 = 1), cdm_failed (samples scored 0
    because a side could not be drawn) and cdm_failures ({reason: count}). Each sample: recall,
    precision, f1 and, when it failed, reason. `workers` defaults to the CPU count; `cache_dir` True is
    `default_cache_dir()`, None or False caches nothing. Raises RendererMissing without TeX Live.
    """
    check_tools()
    records = list(records)
    if not records:
        raise ValueError("There are no predictions to score.")
    workers = max(1, workers or os.cpu_count() or 1)
    cache = RenderCache(default_cache_dir() if cache_dir is True else (cache_dir or None))
    prepared = {latex: prepare(latex) for r in records for latex in (r["gt"], r["pred"])}
    renderings: dict[str, Rendering] = {}
    todo: dict[str, int] = {}
    for item in prepared.values():
        if isinstance(item, str) or item[0] in renderings or item[0] in todo:
            continue
        cached = cache.get(item[0])
        if cached is None:
            todo[item[0]] = len(item[1])
        else:
            renderings[item[0]] = cached
    for (latex, _), rendering in zip(todo.items(), _render_all(list(todo.items()), workers)):
        renderings[latex] = rendering
        cache.put(latex, rendering)

    def side(latex: str) -> tuple:
        item = prepared[latex]
        return item, (None if isinstance(item, str) else renderings[item[0]])

    pairs = [(side(r["gt"]), side(r["pred"])) for r in records]
    if len(pairs) < IN_PROCESS_BELOW or workers == 1:
        samples = _samples(pairs)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = pool.map(_samples, _chunks(pairs, math.ceil(len(pairs) / (4 * workers))))
            samples = [s for part in parts for s in part]
    failures = Counter(s["reason"] for s in samples if "reason" in s)
    summary = {
        "n": len(samples),
        "cdm_f1": sum(s["f1"] for s in samples) / len(samples),
        "exprate_cdm": 100 * sum(s["f1"] == 1.0 for s in samples) / len(samples),
        "cdm_failed": sum(failures.values()),
        "cdm_failures": dict(failures.most_common()),
    }
    return summary, samples
