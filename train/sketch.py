"""Training images that look like what the app sends: ink drawn on the sketchpad, varied as people vary.

An `.inkml` training record (train.build_data --ink) is drawn afresh at every use: the ink is slanted,
rotated, stretched and gently warped, each stroke nudged, then rendered on the app's 800 x 300 page by
`unimumer.ink.render_sketch` at a random symbol size, mostly with the brush's 10-px binary strokes and
sometimes with thinner smooth pen strokes (uploads). The dataset then prepares it exactly as the app does
(`prepare_image(..., crop=True)`): crop to the ink, cap the area.
"""
from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image

from unimumer.ink import SKETCH_STROKE, Ink, render_sketch

SYMBOL_SIZES = (36.0, 110.0)  # pixels, drawn log-uniformly: careful writing to big mouse strokes
PEN_SHARE = 0.4  # share of images drawn with smooth pen strokes (uploads, rendered ink) instead of the brush
BRUSH_WIDTHS = (0.7 * SKETCH_STROKE, 1.2 * SKETCH_STROKE)
PEN_WIDTHS = (0.03, 0.12)  # pen stroke width as a share of the symbol size


def augment_ink(traces: list[np.ndarray], rng: random.Random) -> list[np.ndarray]:
    """A plausible other writing of the same ink: affine (slant, rotation, aspect), a smooth warp of the
    page and a small shift of each stroke. Sizes are relative to the ink's typical symbol."""
    points = np.concatenate(traces)
    low, high = points.min(0), points.max(0)
    centre = (low + high) / 2
    size = max(float(np.median([np.ptp(t, axis=0).max() for t in traces])), 1e-6)
    angle = math.radians(rng.uniform(-4, 4))
    slant = rng.uniform(-0.25, 0.25)
    aspect = math.exp(rng.uniform(-0.15, 0.15))
    cos, sin = math.cos(angle), math.sin(angle)
    matrix = np.array([[cos, -sin], [sin, cos]]) @ np.array([[aspect, slant], [0.0, 1.0]])
    # a smooth warp: two random sine waves per axis, amplitude up to 8 % of a symbol
    waves = [(rng.uniform(-0.08, 0.08) * size, rng.uniform(0.3, 1.2) / size, rng.uniform(0, 2 * math.pi))
             for _ in range(4)]
    out = []
    for trace in traces:
        xy = (trace[:, :2] - centre) @ matrix.T
        x, y = xy[:, 0].copy(), xy[:, 1].copy()
        for k, (amp, freq, phase) in enumerate(waves):
            if k % 2:
                xy[:, 0] += amp * np.sin(freq * y + phase)
            else:
                xy[:, 1] += amp * np.sin(freq * x + phase)
        xy += np.array([rng.gauss(0, 0.04), rng.gauss(0, 0.04)]) * size
        out.append(xy)
    return out


def sketch_image(ink: Ink, rng: random.Random, augment: bool = True) -> Image.Image:
    """The app's page with this ink drawn on it (varied when `augment`; else as `render_sketch` draws it)."""
    if not augment:
        return render_sketch(ink)
    traces = augment_ink(ink.traces, rng)
    symbol = math.exp(rng.uniform(*map(math.log, SYMBOL_SIZES)))
    if rng.random() < PEN_SHARE:
        width = max(1.5, symbol * rng.uniform(*PEN_WIDTHS))
        return render_sketch(traces, symbol_size=symbol, stroke_width=width, antialias=True)
    return render_sketch(traces, symbol_size=symbol, stroke_width=rng.uniform(*BRUSH_WIDTHS))
