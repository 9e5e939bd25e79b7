"""The small offline model shipped in unimumer/bundled: present, small, documented, and really reading.

Its scores on the 986 CROHME 2014 expressions are in its model card; here a fixed slice of them (the
first 100 inks, rendered as `train.build_data` does) checks that the shipped weights read real
handwriting far better than an untrained model, and the app's example images check every mode.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT, shared_path
from unimumer.hub import BUNDLED_MODEL_DIR, bundled_available
from unimumer.recognizer import Recognizer

EXAMPLES = ROOT / "examples"
CROHME_2014_SLICE = 100
EDIT_SCORE_FLOOR = 52.0  # % on the slice; the shipped model scores 60.6 there


def example_labels() -> dict[Path, str]:
    """examples/README.md lines like "- `sum.png` (writer seed 1): `\\sum ...`"."""
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    return {EXAMPLES / name: latex for name, latex in re.findall(r"^- `([^`]+\.png)`[^:]*: `([^`]+)`", text, re.M)}


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.from_pretrained("bundled")


def test_the_repository_ships_the_bundled_model():
    assert bundled_available(), f"no model in {BUNDLED_MODEL_DIR}"
    weights = BUNDLED_MODEL_DIR / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 25 * 1024 * 1024
    for name in ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json",
                 "chat_template.jinja", "learning_curve.png", "learning_curve.jsonl"):
        assert (BUNDLED_MODEL_DIR / name).is_file(), name
    card = (BUNDLED_MODEL_DIR / "README.md").read_text(encoding="utf-8")
    for needed in ("CC BY-NC-SA 3.0", "ExpRate", "python -m train.finetune", "CROHME 2014", "learning_curve.png",
                   "2 CPU cores"):
        assert needed in card, needed


def test_bundled_on_request_says_so(recognizer):
    assert recognizer.is_bundled and recognizer.model_name == "bundled"
    assert recognizer.notice and "small offline model" in recognizer.notice
    assert recognizer.device == "cpu" and recognizer.max_pixels == 80000  # its training resolution


def crohme_2014_samples(n: int) -> list:
    """The first `n` CROHME 2014 test inks with their tokenised ground truth (skips without ../shared)."""
    from train.readers import Sample, read_source, resolve

    inks = shared_path("crohme", "inkml", "2014")
    labels = shared_path("reference_preds", "crohme_2014_pred.json")
    samples = []
    for item in read_source("crohme", inks, labels=labels):
        item = resolve(item) if isinstance(item, Sample) else item
        if isinstance(item, Sample):
            samples.append(item)
        if len(samples) == n:
            break
    return samples


def slice_metrics(recognizer: Recognizer, n: int) -> dict:
    """Scores of `recognizer` on the first `n` CROHME 2014 inks, rendered as train.build_data does."""
    from unimumer.ink import render_ink
    from unimumer.metrics import score

    samples = crohme_2014_samples(n)
    results = recognizer.recognize_batch([render_ink(s.ink) for s in samples], batch_size=16)
    return score({"gt": s.latex, "pred": r.latex} for s, r in zip(samples, results))


@pytest.mark.shared_data
def test_reads_real_crohme_2014_handwriting(recognizer):
    metrics = slice_metrics(recognizer, CROHME_2014_SLICE)
    assert metrics["edit_score"] >= EDIT_SCORE_FLOOR, metrics


# Of the 10 examples, how many answers must parse (the shipped model: tree 9, count 10, correct 10). The
# card reports the shares on CROHME 2014: counts and the self-check parse almost always, Tree-CoT 87 %.
PARSED_AT_LEAST = {"tree": 7, "count": 8, "correct": 8}


@pytest.mark.parametrize("mode", sorted(PARSED_AT_LEAST))
def test_every_mode_answers(recognizer, mode):
    labels = example_labels()
    assert len(labels) == 10
    results = recognizer.recognize_batch(list(labels), mode=mode, batch_size=len(labels))
    assert all(r.latex and not r.error for r in results), [r.raw for r in results]
    assert sum(r.structured for r in results) >= PARSED_AT_LEAST[mode], [r.raw for r in results]
