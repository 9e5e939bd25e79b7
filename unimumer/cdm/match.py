r"""Match the token boxes of two renderings and count the matches that are consistent in layout.

UniMERNet's two steps, written for this package:

1. Hungarian assignment (scipy's linear_sum_assignment) on a cost that adds a token term (0 for the
   same token, 0.005 for tokens drawn with the same glyph such as `\cdot` and `.`, else 1), 0.05 times
   the L1 distance of the boxes (corners as fractions of the image size) and 0.15 times the distance
   of the tokens' reading-order positions.
2. A consistency check of the matched pairs: the box centres of one image must map onto the other's
   by a shift and a scale. A RANSAC search (pairs of matches as samples, 20-pixel tolerance, at most
   50 samples, each of 5 rounds run again on the pairs the previous rounds left out) keeps the
   consistent pairs; a kept pair whose tokens differ is still no match.

recall = matches / ground-truth boxes, precision = matches / predicted boxes, F1 = 2 matches / both.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

__all__ = ["Scores", "glyph", "match"]

TOKEN_WEIGHT, POSITION_WEIGHT, ORDER_WEIGHT = 1.0, 0.05, 0.15
SAME_GLYPH_COST = 0.005
TOLERANCE_PX = 20.0
SAMPLES_PER_ROUND = 50
ROUNDS = 5
SEED = 42

# Tokens that TeX draws with the same (or an indistinguishable) glyph, mapped to one spelling.
SAME_GLYPH = {
    r"\cdot": ".", r"\cdotp": ".", r"\ldotp": ".", r"\dot": ".", r"\prime": "'", r"\ast": "*", r"\mid": "|",
    r"\vert": "|", r"\lvert": "|", r"\rvert": "|", r"\Vert": r"\|", r"\lVert": r"\|", r"\rVert": r"\|",
    r"\parallel": r"\|", r"\to": r"\rightarrow", r"\le": r"\leq", r"\ge": r"\geq", r"\ne": r"\neq",
    r"\lbrace": r"\{", r"\rbrace": r"\}", r"\lbrack": "[", r"\rbrack": "]", r"\top": "T", r"\colon": ":",
    r"\lnot": r"\neg", r"\dag": r"\dagger", r"\ddag": r"\ddagger", r"\slash": "/", r"\lt": "<", r"\gt": ">",
    r"\tfrac": r"\frac", r"\dfrac": r"\frac", r"\cfrac": r"\frac", r"\tbinom": r"\binom", r"\dbinom": r"\binom",
}


def glyph(token: str) -> str:
    r"""A token's glyph class: `\varepsilon` and `\epsilon`, `\widehat` and `\hat`, `\Big(` and `(` agree."""
    for size in (r"\left", r"\right", r"\Biggl", r"\Biggr", r"\biggl", r"\biggr", r"\Bigl", r"\Bigr", r"\bigl",
                 r"\bigr", r"\Bigg", r"\bigg", r"\Big", r"\big"):
        if token.startswith(size) and len(token) > len(size) and not token[len(size)].isalpha():
            token = token[len(size):]
            break
    token = SAME_GLYPH.get(token, token)
    if token.startswith((r"\var", r"\wide")) and len(token) > 5:
        token = "\\" + token[4 if token.startswith(r"\var") else 5:]
    return token


@dataclass(frozen=True)
class Scores:
    recall: float
    precision: float
    f1: float


def _cost(gt: list[tuple[str, list[int]]], pred: list[tuple[str, list[int]]],
          gt_size: tuple[int, int], pred_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    gt_tokens, pred_tokens = [t for t, _ in gt], [t for t, _ in pred]
    same = np.equal.outer(np.array(gt_tokens, dtype=object), np.array(pred_tokens, dtype=object))
    similar = np.equal.outer(np.array([glyph(t) for t in gt_tokens], dtype=object),
                             np.array([glyph(t) for t in pred_tokens], dtype=object))
    token = np.where(same, 0.0, np.where(similar, SAME_GLYPH_COST, 1.0))
    scale_gt = np.array(gt_size * 2, dtype=float)
    scale_pred = np.array(pred_size * 2, dtype=float)
    boxes_gt = np.array([b for _, b in gt], dtype=float) / scale_gt
    boxes_pred = np.array([b for _, b in pred], dtype=float) / scale_pred
    position = np.abs(boxes_gt[:, None, :] - boxes_pred[None, :, :]).sum(-1) / 4
    longest = max(len(gt), len(pred))
    order = np.abs(np.arange(len(gt))[:, None] - np.arange(len(pred))[None, :]) / longest
    cost = TOKEN_WEIGHT * token + POSITION_WEIGHT * position + ORDER_WEIGHT * order
    return np.nan_to_num(cost, nan=100.0, posinf=100.0), token


def _centres(boxes: list[list[int]]) -> np.ndarray:
    b = np.array(boxes, dtype=float)
    return np.stack([(b[:, 1] + b[:, 3]) / 2, (b[:, 0] + b[:, 2]) / 2], axis=1)  # (y, x)


def _residuals(src: np.ndarray, dst: np.ndarray, sample: tuple[int, int]) -> np.ndarray:
    """Distances after the shift-and-scale fitted to the two matches in `sample`, the scale taken about
    the centroid of all of `src` (as UniMERNet's model applies it)."""
    s_src, s_dst = src[list(sample)], dst[list(sample)]
    shift = s_dst.mean(0) - s_src.mean(0)
    spread_src = np.linalg.norm(s_src - s_src.mean(0), axis=1).mean()
    spread_dst = np.linalg.norm(s_dst - s_dst.mean(0), axis=1).mean()
    scale = spread_dst / (spread_src + 1e-10)
    centre = src.mean(0)
    return np.linalg.norm(scale * (src - centre) + centre + shift - dst, axis=1)


def _consensus(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Inliers of the best sampled model: most inliers, then the smallest sum of squared residuals.
    Every pair is tried when there are at most 50, else 50 seeded random ones: the result is reproducible."""
    n = len(src)
    pairs = list(combinations(range(n), 2))
    if len(pairs) > SAMPLES_PER_ROUND:
        rng = np.random.default_rng(SEED)
        pairs = [tuple(rng.choice(n, 2, replace=False)) for _ in range(SAMPLES_PER_ROUND)]
    best, best_count, best_sum = np.zeros(n, dtype=bool), 0, np.inf
    for sample in pairs:
        residuals = _residuals(src, dst, sample)
        inliers = residuals < TOLERANCE_PX
        count, total = int(inliers.sum()), float(residuals @ residuals)
        if count > best_count or (count == best_count and total < best_sum):
            best, best_count, best_sum = inliers, count, total
    return best


def _consistent(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    kept = np.zeros(len(src), dtype=bool)
    if len(src) <= 2:
        return ~kept
    for _ in range(ROUNDS):
        rest = np.flatnonzero(~kept)
        if len(rest) <= 2:
            break
        found = _consensus(src[rest], dst[rest])
        if not found.any():
            break
        kept[rest[found]] = True
        if kept.all():
            break
    return kept


def match(gt: list[tuple[str, list[int]]], pred: list[tuple[str, list[int]]],
          gt_size: tuple[int, int], pred_size: tuple[int, int]) -> Scores:
    """Scores of predicted token boxes against ground-truth ones: (token, [x0, y0, x1, y1]) lists, each in
    its own image of the given (width, height). Either list empty gives all zeros."""
    from scipy.optimize import linear_sum_assignment

    if not gt or not pred:
        return Scores(0.0, 0.0, 0.0)
    cost, token = _cost(gt, pred, gt_size, pred_size)
    rows, cols = linear_sum_assignment(cost)
    kept = _consistent(_centres([gt[i][1] for i in rows]), _centres([pred[j][1] for j in cols]))
    matches = int((kept & (token[rows, cols] < 1.0)).sum())
    return Scores(matches / len(gt), matches / len(pred), 2 * matches / (len(gt) + len(pred)))
