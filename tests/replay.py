"""CROHME training inks replayed on the app's sketchpad, drawn as a person would draw them there.

Each ink is placed on the 800x300 page by `unimumer.ink.sketch_traces` (symbols about SKETCH_SYMBOL
pixels tall, the expression fitted and centred: the placement the training images of `train/sketch.py`
use), then drawn stroke by stroke with `browser.draw` and recognised with the app's Recognize button.
Shared by tests/test_sketch_replay.py and tests/benchmarks/bench_sketch_replay.py.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from browser import PAGE, clear, draw, model_input_ink_box, model_input_source, recognize
from unimumer.ink import SKETCH_STROKE, Ink, sketch_traces

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ASPECT_TOLERANCE = 0.05  # |log(seen / drawn)| of the ink box aspect ratios


@dataclass
class TrainingInk:
    name: str  # the InkML stem, the key of train_caption.txt
    path: Path
    gt: str  # tokenised LaTeX


@dataclass
class Replayed:
    latex: str  # the answer in the LaTeX box
    seen: str  # address of the "What the model saw" image
    seconds: float  # Clear, drawing and recognition, wall time
    seen_aspect: float  # width over height of the ink box of the image the model saw
    drawn_aspect: float  # the same of the ink as drawn (`drawn_aspect`): equal when no stroke was lost

    @property
    def intact(self) -> bool:
        """Whether the model saw the ink's extent as drawn (within a brush cap or a resampled pixel)."""
        return self.seen_aspect > 0 and abs(math.log(self.seen_aspect / self.drawn_aspect)) < ASPECT_TOLERANCE


def training_inks(n: int, seed: int = 0, data: Path = SHARED_DATA) -> list[TrainingInk]:
    """`n` CROHME training inks with a label, the same ones for the same seed (sampled from the sorted
    names). FileNotFoundError when the data is absent; ValueError when fewer than `n` are labelled."""
    crohme = data / "crohme"
    labels = {}
    for line in (crohme / "train_caption.txt").read_text(encoding="utf-8").splitlines():
        name, _, gt = line.partition("\t")
        if gt.strip():
            labels[name.strip()] = gt.strip()
    paths = {p.stem: p for p in (crohme / "inkml" / "train").rglob("*.inkml") if p.stem in labels}
    if len(paths) < n:
        raise ValueError(f"Only {len(paths)} labelled training inks under {crohme}, fewer than {n}.")
    names = random.Random(seed).sample(sorted(paths), n)
    return [TrainingInk(name, paths[name], labels[name]) for name in names]


def ink_strokes(ink: Ink) -> list[list[tuple[float, float]]]:
    """The ink's traces as `browser.draw` strokes: fractions of the drawing page."""
    return [[(x / PAGE[0], y / PAGE[1]) for x, y in trace.tolist()] for trace in sketch_traces(ink)]


def drawn_aspect(ink: Ink) -> float:
    """Width over height of the ink as drawn on the page, the brush's stroke width included."""
    points = np.concatenate(sketch_traces(ink))
    width, height = np.ptp(points, axis=0) + SKETCH_STROKE
    return float(width / height)


def replay(page, ink: Ink, previous_seen: str | None = None) -> Replayed:
    """Clear the pad, draw `ink`, press Recognize (plain, the page's other settings as they are).

    Raises AssertionError when the model's view did not change from `previous_seen` (the last ink's)."""
    start = time.perf_counter()
    clear(page)
    draw(page, ink_strokes(ink), dispatch=True)
    latex = recognize(page, "plain")
    seen = model_input_source(page)
    assert seen != previous_seen, "the model saw the previous drawing again"
    seconds = time.perf_counter() - start
    x0, y0, x1, y1 = model_input_ink_box(page)
    seen_aspect = (x1 - x0) / (y1 - y0) if x1 > x0 and y1 > y0 else 0.0
    return Replayed(latex, seen, seconds, seen_aspect, drawn_aspect(ink))
