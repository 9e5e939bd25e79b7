"""Opt-in (UNIMUMER_REPLAY=1): three CROHME training inks replayed on the sketchpad in headless Chromium.

The mechanics of tests/benchmarks/bench_sketch_replay.py with the random tiny model: each ink is drawn
at the page's scale, the model sees it alone (its ink box has the drawn ink's aspect ratio), an answer
comes back for every ink and the answers can be scored. About a minute; skipped without the shared data.
"""
from __future__ import annotations

import os

import pytest

from browser import CHROMIUM, open_page
from conftest import shared_path
from replay import replay, training_inks
from test_app import serve_app
from unimumer.ink import parse_inkml
from unimumer.metrics import score

if not os.environ.get("UNIMUMER_REPLAY"):
    pytest.skip("replaying inks in the browser is opt-in: UNIMUMER_REPLAY=1", allow_module_level=True)
if not CHROMIUM.exists():
    pytest.skip("Debian chromium is not installed (make test installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser


def test_replayed_training_inks_reach_the_model_one_at_a_time(tiny_model_dir, tmp_path):
    inks = training_inks(3, seed=0, data=shared_path("crohme").parent)
    records, seen = [], None
    with serve_app(tiny_model_dir, tmp_path / "app.log") as (url, _), open_page(url, sync_api) as page:
        for ink in inks:
            strokes = parse_inkml(ink.path)
            result = replay(page, strokes, seen)  # also checks that the model's view changed
            seen = result.seen
            assert result.intact, (ink.name, result.seen_aspect, result.drawn_aspect)  # no stroke lost
            assert result.latex.strip(), f"{ink.name}: no answer"
            records.append({"gt": ink.gt, "pred": result.latex})
    metrics = score(records)
    assert metrics["n"] == 3 and 0 <= metrics["exprate"] <= metrics["le1"] <= metrics["le2"] <= 100
