"""train.synth: CROHME-like labels, handwriting-like inks, and the build it writes."""
import json
import random
import statistics
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, shared_path
from train import synth, synth_ink
from train.synth_grammar import VOCAB
from unimumer.ink import render_ink
from unimumer.latex import normalize
from unimumer.tasks import count_target, tree_target


@pytest.fixture(scope="module")
def labels() -> list[str]:
    return list(synth.synth_labels(400, seed=11))


def test_labels_are_canonical_crohme(labels):
    for latex in labels:
        tokens = latex.split()
        assert set(tokens) <= VOCAB, latex
        assert tree_target(latex).endswith("\n" + latex)  # well-formed for the tree walk
        assert count_target(latex).endswith("\n" + latex)
        assert normalize(latex) == latex  # already in the project's canonical form
    assert len(set(labels)) == len(labels)


def test_labels_cover_the_crohme_structures(labels):
    tokens = [t for latex in labels for t in latex.split()]
    for needed in (r"\frac", r"\sqrt", "^", "_", r"\sum", r"\int", r"\lim", r"\limits", "(", "=", r"\sin"):
        assert needed in tokens, needed
    lengths = [len(latex.split()) for latex in labels]
    assert 8 <= statistics.median(lengths) <= 20  # CROHME's median is 13 tokens
    assert max(lengths) <= 60
    assert sum(5 <= n <= 30 for n in lengths) / len(lengths) > 0.55


def test_vocabulary_is_crohme_training_vocabulary():
    captions = shared_path("crohme", "train_caption.txt").read_text(encoding="utf-8")
    crohme = {t for line in captions.splitlines() for t in line.split("\t", 1)[1].split()}
    assert VOCAB <= crohme


def test_same_seed_same_data():
    assert list(synth.synth_labels(30, seed=5)) == list(synth.synth_labels(30, seed=5))
    assert list(synth.synth_labels(30, seed=5)) != list(synth.synth_labels(30, seed=6))
    latex = r"\frac { 1 } { x ^ { 2 } } + \sqrt [ 3 ] { y }"
    a, b = synth.synth_ink(latex, 5, 7), synth.synth_ink(latex, 5, 7)
    assert all(np.array_equal(p, q) for p, q in zip(a.traces, b.traces))
    c = synth.synth_ink(latex, 5, 8)
    assert len(a.traces) != len(c.traces) or any(not np.array_equal(p, q) for p, q in zip(a.traces, c.traces))


def test_inks_are_drawn_and_render(labels):
    for i, latex in enumerate(labels[:40]):
        ink = synth.synth_ink(latex, 0, i)
        assert ink.traces and all(len(t) and np.isfinite(t).all() for t in ink.traces), latex
        assert ink.annotations["truth"] == latex
        image = np.asarray(render_ink(ink, mode="L"))
        assert image.shape[0] >= 128
        assert (image < 128).mean() > 0.005, latex  # visible strokes


def test_layout_puts_scripts_and_fractions_in_place():
    style = synth_ink.Style.draw(random.Random(0), synth_ink.available_fonts())
    style.slant = style.rotation = style.warp = 0.0
    style.alt_font = style.text_font

    def traces(latex):  # same seed and style: a glyph's strokes come first and in the same number
        return synth_ink.latex_to_ink(latex, random.Random(1), style).traces

    n = len(traces("x"))
    drawn = traces("x ^ { 2 }")
    x, two = np.concatenate(drawn[:n]), np.concatenate(drawn[n:])
    assert two[:, 1].max() < x[:, 1].mean()  # y grows downwards: the exponent sits high
    assert two[:, 0].min() > x[:, 0].mean()  # and to the right
    assert np.ptp(two[:, 1]) < np.ptp(x[:, 1]) * 1.6  # and is small
    n = len(traces("a"))
    drawn = traces(r"\frac { a } { b }")
    top, bottom, bar = np.concatenate(drawn[:n]), np.concatenate(drawn[n:-1]), drawn[-1]
    assert len(bar) == 2 and abs(bar[0, 1] - bar[1, 1]) < 0.1 * abs(bar[0, 0] - bar[1, 0])  # a flat bar
    assert top[:, 1].max() < bar[:, 1].min() and bar[:, 1].max() < bottom[:, 1].min()


def test_every_crohme_structure_draws():
    for latex in (r"\sqrt [ n ] { x + 1 }", r"\sum \limits _ { i = 1 } ^ { n } a _ { i }",
                  r"\int \limits _ { 0 } ^ { \infty } e ^ { - x } d x", r"\lim \limits _ { x \rightarrow 0 } x",
                  r"| x | \leq \{ 1 \} , [ 2 ]", r"f ^ { \prime } ( x ) \neq \alpha \beta \gamma \Delta",
                  r"\forall x \in X \exists y", r"a \times b \div c \pm d \cdot e", r"1 , 2 , \ldots , n ! \cdots",
                  r"\log _ { 2 } \sin \cos \tan \theta \pi \phi \sigma \mu \lambda \infty", "x ' < > / ."):
        ink = synth_ink.latex_to_ink(latex, random.Random(3))
        assert len(ink.traces) >= len(latex.split()) // 3, latex


@pytest.mark.parametrize("bad", [r"\frac { 1 }", "x ^", "{ x", "x }", r"\sqrt [ 3 { x }", "x ^ { 2 } ^ { 3 }"])
def test_malformed_labels_are_refused(bad):
    with pytest.raises(ValueError):
        synth_ink.latex_to_ink(bad, random.Random(0))


def test_falls_back_to_bundled_fonts(monkeypatch):
    caches = (synth_ink.available_fonts, synth_ink._charmap, synth_ink._font_scale, synth_ink.font_glyph)
    for cache in caches:
        cache.cache_clear()
    monkeypatch.setattr(synth_ink, "HANDWRITING_FONTS", {"dkg": ("fonts-dkg-handwriting", Path("/nonexistent.ttf"))})
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert list(synth_ink.available_fonts()) == ["sans"]
        assert any("fonts-dkg-handwriting" in str(w.message) for w in caught)
        ink = synth_ink.latex_to_ink(r"\frac { \alpha } { 2 } + \sum \limits _ { i } x", random.Random(0))
        assert len(ink.traces) > 5
    finally:
        for cache in caches:
            cache.cache_clear()


def test_cli_writes_a_build(tmp_path, capsys):
    out = tmp_path / "synth"
    args = ["--n", "20", "--out", str(out), "--seed", "1", "--workers", "2", "--no-progress"]
    assert synth.main(args) == 0
    records = {task: [json.loads(line) for line in (out / f"synth_{task}.jsonl").read_text().splitlines()]
               for task in ("vanilla", "tree", "count")}
    assert all(len(r) == 20 for r in records.values())
    latex = [r["messages"][1]["value"] for r in records["vanilla"]]
    assert latex == list(synth.synth_labels(20, seed=1))
    assert len(set(latex)) == 20
    for task in ("tree", "count"):
        assert [r["messages"][1]["value"].rsplit("\n", 1)[1] for r in records[task]] == latex
    for record in records["vanilla"]:
        with Image.open(out / record["images"][0]) as image:
            image.load()
            assert image.height >= 128 and image.width >= 16
    info = json.loads((out / "dataset_info.json").read_text())
    assert {"synth_vanilla", "synth_tree", "synth_count"} <= set(info)
    assert json.loads((out / "stats.json").read_text())["synth"]["kept"] == 20
    # A second run with the same command has nothing left to do and changes nothing.
    before = (out / "synth_tree.jsonl").read_bytes()
    assert synth.main(args) == 0
    assert (out / "synth_tree.jsonl").read_bytes() == before


def test_cli_refuses_missing_arguments(capsys):
    with pytest.raises(SystemExit):
        synth.main(["--n", "5"])
    assert "--out" in capsys.readouterr().err


def test_examples_are_made_by_synth_and_documented(tmp_path):
    paths = synth.write_examples(tmp_path)
    assert 8 <= len(paths) <= 12
    readme = (ROOT / "examples" / "README.md").read_text(encoding="utf-8")
    same_fonts = len(synth_ink.available_fonts()) == len(synth_ink.HANDWRITING_FONTS) + 1
    for (stem, latex, _), path in zip(synth.EXAMPLES, paths):
        assert f"{stem}.png" in readme and f"`{latex}`" in readme, stem
        with Image.open(path) as made, Image.open(ROOT / "examples" / f"{stem}.png") as shipped:
            assert made.mode == shipped.mode == "RGB"
            if same_fonts:  # the shipped images are exactly what the command makes
                assert made.size == shipped.size, stem
                assert np.abs(np.asarray(made, float) - np.asarray(shipped, float)).mean() < 2, stem
