"""Symbol counting: the official examples byte for byte and every reference ground truth."""
import json

import pytest
from conftest import shared_path

from unimumer.tasks import MalformedLatexError, count_symbols, count_target, human_prompt, task_target
from unimumer.tasks.count import parse_counts


@pytest.mark.shared_data
def test_official_examples_byte_for_byte():
    for record in json.loads(shared_path("format_examples", "sample_can.json").read_text()):
        human, gpt = record["messages"]
        latex = gpt["value"].split("\n")[-1]
        assert human["value"] == "<image>" + human_prompt("count")
        assert count_target(latex) == task_target("count", latex) == gpt["value"]


def test_counts_keep_first_seen_order_and_drop_only_braces():
    latex = r"y = \begin {cases} 1 & x \\ 2 & x \end {cases} , : ;"
    assert count_symbols(latex) == [
        ("y", 1), ("=", 1), (r"\begin", 1), ("{cases}", 2), ("1", 1), ("&", 2), ("x", 2), ("\\\\", 1),
        ("2", 1), (r"\end", 1), (",", 1), (":", 1), (";", 1),
    ]
    assert count_symbols(r"\frac { } { }") == [(r"\frac", 1)]
    assert count_target("a  +\ta") == "a: 2, +: 1\na + a"  # the LaTeX line is re-spaced


@pytest.mark.parametrize("latex", ["", "  \n ", "{ }", "{ { } }"])
def test_nothing_to_count_raises(latex):
    with pytest.raises(MalformedLatexError):
        count_target(latex)


def test_counts_line_reads_back_even_with_punctuation_tokens():
    latex = ", : , ; - > | \\\\ :: 1, x"
    line = count_target(latex).split("\n")[0]
    assert line == ",: 2, :: 1, ;: 1, -: 1, >: 1, |: 1, \\\\: 1, ::: 1, 1,: 1, x: 1"
    assert parse_counts(line) == count_symbols(latex)
    for bad in ["", "x", "x:1", "x: 1,", "x: 1,, y: 2", "x: one", "x: 1 y: 2", " x: 1"]:
        assert parse_counts(bad) is None, bad


@pytest.mark.shared_data
def test_every_reference_ground_truth():
    files = sorted(shared_path("reference_preds").glob("*_pred.json"))
    gts = [record["gt"] for path in files for record in json.loads(path.read_text())]
    for gt in gts:
        tokens = gt.split()
        kept = [tok for tok in tokens if tok not in ("{", "}")]
        firsts = [tok for k, tok in enumerate(kept) if tok not in kept[:k]]
        expected = ", ".join(f"{tok}: {kept.count(tok)}" for tok in firsts)
        target = count_target(gt)
        assert target == f"{expected}\n{gt}"
        assert parse_counts(target.split("\n")[0]) == [(tok, kept.count(tok)) for tok in firsts]
    assert len(gts) == 16919
