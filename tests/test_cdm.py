"""unimumer.cdm: per-token colours, TeX rendering to boxes, matching, the `evaluate --cdm` command."""
from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import shared_path
from unimumer import cli
from unimumer.cdm import RendererMissing, cdm_score
from unimumer.cdm import render as render_module
from unimumer.cdm import score as score_module
from unimumer.cdm.colour import MAX_TOKENS, ColourError, colour_of, coloured, index_of
from unimumer.cdm.match import glyph, match

needs_tex = pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("gs") is None,
                               reason="pdflatex and gs (texlive-latex-base, ghostscript) are not installed")

# The released 3B's CDM F1 as upstream's README gives it, and the tolerance.
PUBLISHED_F1 = {"crohme_2014": 0.9660, "crohme_2016": 0.9620, "crohme_2019": 0.9710, "mathwriting_test": 0.9550}
TOLERANCE = 0.005


# ---- colours ---------------------------------------------------------------------------------------


@given(st.integers(0, MAX_TOKENS - 1))
def test_colour_codes_round_trip_and_are_never_white_or_black(index):
    rgb = colour_of(index)
    assert index_of(*rgb) == index
    assert rgb != (0, 0, 0) and max(rgb) < 255


def test_visible_tokens_are_the_drawn_ones_and_commands_wrap_their_arguments():
    latex, visible = coloured(r"\frac { 1 } { x ^ { 2 } } + \sqrt [ 3 ] { y }".split())
    assert visible == [r"\frac", "1", "x", "2", "+", r"\sqrt", "3", "y"]
    assert latex.startswith(r"\mathcolor[RGB]{0,0,15}{\frac{")  # the bar has the \frac's colour
    assert r"\sqrt[{" in latex  # the optional argument is braced: a `]` in its colour cannot end it


def test_operator_names_and_dots_are_compared_glyph_by_glyph():
    assert coloured([r"\sin", "x"])[1] == ["s", "i", "n", "x"]
    latex, visible = coloured(r"\lim _ { x }".split())
    assert visible == ["l", "i", "m", "x"] and r"\limits" in latex  # the x stays underneath
    assert coloured([r"\cdots"])[1] == coloured([r"\ldots"])[1] == [".", ".", "."]


def test_structure_gets_no_colour_but_what_it_draws_does():
    _, visible = coloured(r"\begin {bmatrix} a & b \\ c & d \end {bmatrix} \sum \limits _ { i } \mathrm { d }".split())
    assert visible == ["[", "a", "b", "c", "d", "]", r"\sum", "i", "d"]  # bmatrix draws its brackets
    assert coloured(r"a \over b".split()) == coloured(r"\frac { a } { b }".split())  # the bar has a colour


@pytest.mark.parametrize("latex, reason", [
    ("x ^ { 2", "unbalanced braces"), ("} x {", "unbalanced braces"), (r"\frac { 1 }", "missing argument"),
    ("x ^", "missing argument"), (r"\begin {matrix} 1", "unbalanced environments"),
    (r"\begin {pmatrix} 1 \end {bmatrix}", "mismatched environments"),
])
def test_uncolourable_structure_raises_with_a_reason(latex, reason):
    with pytest.raises(ColourError) as error:
        coloured(latex.split())
    assert error.value.reason == reason and str(error.value).endswith(".")


# ---- matching --------------------------------------------------------------------------------------

BOXES = [("x", [10, 40, 30, 70]), ("=", [40, 50, 60, 60]), ("1", [70, 40, 85, 70]), ("+", [95, 45, 115, 65]),
         ("y", [125, 40, 145, 75])]


def test_identical_boxes_match_fully():
    assert match(BOXES, BOXES, (160, 90), (160, 90)).f1 == 1.0


def test_a_shifted_and_scaled_layout_still_matches():
    moved = [(t, [2 * x0 + 7, 2 * y0 + 3, 2 * x1 + 7, 2 * y1 + 3]) for t, (x0, y0, x1, y1) in BOXES]
    assert match(BOXES, moved, (160, 90), (327, 183)).f1 == 1.0


def test_a_wrong_token_is_no_match_and_a_same_glyph_token_is():
    wrong = [("z" if t == "y" else t, b) for t, b in BOXES]
    scores = match(BOXES, wrong, (160, 90), (160, 90))
    assert scores.recall == scores.precision == scores.f1 == pytest.approx(4 / 5)
    dotted = [(r"\cdot" if t == "+" else t, b) for t, b in BOXES]
    assert match([(("." if t == "+" else t), b) for t, b in BOXES], dotted, (160, 90), (160, 90)).f1 == 1.0


def test_a_token_out_of_place_fails_the_consistency_check():
    misplaced = [(t, [b[0], b[1] + 60, b[2], b[3] + 60] if t == "y" else b) for t, b in BOXES]
    assert match(BOXES, misplaced, (160, 90), (160, 150)).f1 == pytest.approx(4 / 5)


def test_an_empty_side_scores_zero():
    assert match(BOXES, [], (160, 90), (0, 0)).f1 == 0.0


def test_glyph_classes():
    assert glyph(r"\varepsilon") == glyph(r"\epsilon") and glyph(r"\widehat") == r"\hat"
    assert glyph(r"\left(") == glyph(r"\Big(") == "(" and glyph(r"\leftarrow") == r"\leftarrow"


# ---- rendering and scoring (TeX Live) --------------------------------------------------------------


@needs_tex
def test_cdm_credits_what_renders_the_same_and_fails_what_cannot_be_drawn(tmp_path):
    records = [
        {"gt": "x _ { i } ^ { 2 }", "pred": "x ^ { 2 } _ { i }"},  # different strings, same picture
        {"gt": r"a \leq b", "pred": r"a \le b"},
        {"gt": r"( \begin{matrix} { a } \\ { b } \\ \end{matrix} )", "pred": r"\begin {pmatrix} a \\ b \end {pmatrix}"},
        {"gt": r"\frac { 1 } { 2 }", "pred": r"\frac { 1 } { 3 }"},
        {"gt": r"\frac { a } { b } + c", "pred": r"\frac { b } { a } + c"},  # same tokens, another layout
        {"gt": "x + 1", "pred": r"\frac { x"},
        {"gt": "x + 1", "pred": ""},
        {"gt": "y", "pred": r"\stop y"},  # TeX gives up on this one; the others keep their pages
    ]
    summary, samples = cdm_score(records, workers=1, cache_dir=tmp_path)
    f1 = [s["f1"] for s in samples]
    assert f1[:3] == [1.0, 1.0, 1.0]
    assert f1[3] == pytest.approx(2 * 2 / 6) and f1[4] == pytest.approx(3 / 5)
    assert f1[5:] == [0.0, 0.0, 0.0]
    assert [s.get("reason") for s in samples[5:]] == ["pred unbalanced braces", "pred empty", "pred TeX stopped on it"]
    assert summary["cdm_failed"] == 3 and summary["exprate_cdm"] == pytest.approx(300 / 8)

    def no_rendering(_):
        raise AssertionError("rendered again despite the cache")

    monkey = pytest.MonkeyPatch()
    monkey.setattr(score_module, "render_batch", no_rendering)
    try:
        assert cdm_score(records, workers=1, cache_dir=tmp_path)[1] == samples
    finally:
        monkey.undo()


@needs_tex
def test_evaluate_cdm_prints_beside_the_text_metrics(tmp_path, capsys):
    path = tmp_path / "preds.json"
    path.write_text(json.dumps([{"gt": r"\sqrt { x }", "pred": r"\sqrt { x }"}, {"gt": "a b", "pred": "a"}]))
    assert cli.main(["evaluate", str(path), "--cdm", "--cdm-cache", str(tmp_path / "cache")]) == 0
    table = capsys.readouterr().out
    assert "ExpRate       50.0000 %" in table and "CDM F1         0.8333" in table and "ExpRate@CDM   50.0000 %" in table
    assert cli.main(["evaluate", str(path), "--cdm", "--no-cdm-cache", "--json", "--cdm-workers", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cdm_f1"] == 0.8333 and out["exprate_cdm"] == 50.0 and out["cdm_failed"] == 0


def test_evaluate_cdm_without_tex_says_what_to_install(tmp_path, capsys, monkeypatch):
    path = tmp_path / "preds.json"
    path.write_text(json.dumps([{"gt": "x", "pred": "x"}]))
    monkeypatch.setattr(render_module.shutil, "which", lambda tool: None)
    assert cli.main(["evaluate", str(path), "--cdm"]) == 1
    assert "texlive-latex-base" in capsys.readouterr().err
    with pytest.raises(RendererMissing):
        cdm_score([{"gt": "x", "pred": "x"}])


@needs_tex
@pytest.mark.shared_data
def test_crohme_2014_matches_the_published_cdm(tmp_path):
    from unimumer.metrics import load_predictions

    records = load_predictions(shared_path("reference_preds", "crohme_2014_pred.json"))
    summary, _ = cdm_score(records, workers=2, cache_dir=tmp_path)
    assert summary["n"] == 986 and summary["cdm_failed"] == 0
    assert abs(summary["cdm_f1"] - PUBLISHED_F1["crohme_2014"]) <= TOLERANCE
    assert summary["exprate_cdm"] >= 82.6572  # what renders the same includes what reads the same
