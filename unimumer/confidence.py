"""Confidence from the model's own token probabilities: per LaTeX token, and one score per reading.

A model token (byte-level BPE) can hold part of a LaTeX token, or parts of two; a LaTeX token is as
sure as its least likely model token. A reading's score is the geometric mean of its token
probabilities (end token included), so short and long readings compare fairly; it is what beam search
ranks by with the default length penalty.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

REPLACEMENT = "\ufffd"  # what decoding part of a multi-byte character gives
MAX_ALTERNATIVES = 5
UNSURE, DOUBTFUL = 0.5, 0.8  # token probabilities under these are shaded strongly / lightly in the app


@dataclass
class Reading:
    """One decoded sequence: its text, its model tokens' (text, probability) and its score."""

    text: str
    pieces: list[tuple[str, float]] = field(default_factory=list)
    score: float = 1.0


def sequence_score(logprobs: list[float]) -> float:
    """The geometric mean probability of a sequence's tokens (1.0 for no tokens)."""
    return math.exp(sum(logprobs) / len(logprobs)) if logprobs else 1.0


def decode_pieces(tokenizer, ids: list[int], logprobs: list[float]) -> list[tuple[str, float]]:
    """The text of each model token with its probability; tokens that only decode together (a multi-byte
    character split over several) become one piece with their lowest probability."""
    pieces: list[tuple[str, float]] = []
    group: list[int] = []
    low = 1.0
    for i, (token, logprob) in enumerate(zip(ids, logprobs)):
        group.append(token)
        low = min(low, math.exp(logprob))
        text = tokenizer.decode(group, skip_special_tokens=True)
        if not text.endswith(REPLACEMENT) or i == len(ids) - 1:
            pieces.append((text, low))
            group, low = [], 1.0
    return pieces


def word_confidence(pieces: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The whitespace-separated words of the pieces' text, each with the lowest probability of the pieces
    that write part of it."""
    words: list[tuple[str, float]] = []
    word, low = "", 1.0
    for text, probability in pieces:
        for char in text:
            if char.isspace():
                if word:
                    words.append((word, low))
                word, low = "", 1.0
            else:
                word += char
                low = min(low, probability)
    if word:
        words.append((word, low))
    return words


def latex_confidence(pieces: list[tuple[str, float]], latex: str) -> list[tuple[str, float]] | None:
    """(token, probability) for each token of `latex`, the last line the pieces wrote (a reading's
    LaTeX follows its tree, counts or log); None when the pieces did not write it."""
    tokens = latex.split()
    words = word_confidence(pieces)[-len(tokens):] if tokens else []
    if [w for w, _ in words] != tokens:
        return None
    return [(token, round(p, 4)) for token, p in words]
