"""Parsing model output: total on any text, exact on well-formed output, and the cross-checks."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unimumer.tasks import (
    DELETED,
    ERROR_END,
    ERROR_START,
    TASKS,
    ParsedOutput,
    consistency_warnings,
    correction_log,
    count_target,
    mark_errors,
    parse_output,
    task_target,
    tree_target,
    tree_to_latex,
)
from unimumer.tasks.count import parse_counts

LATEX = r"y = \frac { a ^ { 2 } + 1 } { b } \\ \sqrt [ 3 ] { x } , : ; - >"

# Adversarial material: pieces of every task's structure, broken and mixed.
FRAGMENTS = st.sampled_from([
    "x", "\\frac", "{", "}", "^", "_", "\\\\", "\\begin", "\\end", "{cases}", "(right)", "(sup)", "(above)",
    "(begin_cases)", "(end_cases)", "(nextline)", "(", ")", "\t", "\t\t", " ", "  ", ":", ": 3", ", ", "x: 1",
    ",: 2", "REPLACE:", "DELETE:", "INSERT:", " -> ", " after ", "at start", ERROR_START, ERROR_END, DELETED,
    "\n", "\r\n", "\r", "\x00", "\u2028", "\x0b", "é", "😀", "<|im_end|>", "$", "\\text { hi }",
])
LINES = st.lists(FRAGMENTS, max_size=8).map("".join)
ADVERSARIAL = st.one_of(
    st.text(max_size=200),
    st.lists(LINES, max_size=12).map("\n".join),
    st.sampled_from([tree_target(LATEX), count_target(LATEX), correction_log("x + 1", "x + 2")]).flatmap(
        lambda good: st.tuples(st.integers(0, len(good)), st.integers(0, len(good)), LINES).map(
            lambda cut: good[: cut[0]] + cut[2] + good[cut[1]:])),  # a valid output, spliced
)


@settings(max_examples=1000, deadline=None)
@given(text=ADVERSARIAL)
def test_parse_output_never_raises(text):
    for task in TASKS:  # every task reads each of the 1,000 strings
        parsed = parse_output(task, text, marked="x <error_start> + <error_end> 1" if task == "error_fix" else None)
        assert isinstance(parsed, ParsedOutput) and parsed.raw == text
        assert isinstance(parsed.latex, str) and "\n" not in parsed.latex
        assert all(isinstance(sentence, str) and sentence.endswith(".") for sentence in consistency_warnings(parsed))
        if parsed.structured and task == "tree":
            tree_to_latex(parsed.tree)
        if parsed.structured and task == "count":
            assert parsed.counts
        if not parsed.structured and task in ("vanilla", "count", "error_fix"):
            assert parsed.latex == " ".join(text.split())


@pytest.mark.parametrize("task", TASKS)
def test_well_formed_outputs(task):
    candidate = r"y = \frac { a ^ { 3 } + 1 } { b } \\ \sqrt [ 3 ] { x } , : ;"
    text = task_target(task, LATEX, candidate=candidate if task.startswith("error") else None)
    marked = mark_errors(candidate, LATEX)
    parsed = parse_output(task, text, marked=marked if task == "error_fix" else None)
    assert parsed.structured and parsed.raw == text
    assert parsed.latex == (candidate if task == "error_find" else LATEX)
    assert consistency_warnings(parsed) == []
    if task == "tree":
        assert parsed.tree == text.rsplit("\n", 1)[0]
    if task == "count":
        assert parsed.counts == parse_counts(text.split("\n")[0])
    if task == "error_find":
        assert parsed.marked == marked and ERROR_START in marked
    if task == "error_fix":
        assert parsed.operations == ["REPLACE:3 -> 2", "INSERT:- > after ;"] and parsed.marked == marked


def test_output_noise_is_tolerated():
    text = "\r\n  " + tree_target(LATEX).replace("\n", "\r\n") + "  \n\n"
    parsed = parse_output("tree", text)
    assert parsed.structured and parsed.latex == LATEX
    assert parse_output("vanilla", "  x  +\t1 ").latex == "x + 1"
    assert parse_output("error_fix", "x + 1").operations == []  # a correct candidate needs no operation


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("garbage", ["", "   ", "hello world, this is not math", "The answer is: 42 (I think)"])
def test_garbage_is_raw_text_and_flagged(task, garbage):
    parsed = parse_output(task, garbage)
    assert parsed.latex == " ".join(garbage.split())
    assert parsed.tree is None and parsed.counts is None
    # For vanilla, error_find (nothing marked) and error_fix (nothing to do) one line is the whole shape.
    assert parsed.structured is (task in ("vanilla", "error_find", "error_fix") and bool(garbage.strip()))


def test_multi_line_garbage():
    for task in TASKS:
        parsed = parse_output(task, "first line\nsecond line\nthird")
        assert not parsed.structured and parsed.latex == "first line second line third"


def test_truncated_tree_is_not_structured():
    text = tree_target(LATEX).rsplit("\n", 3)[0]  # generation stopped inside the tree
    parsed = parse_output("tree", text)
    assert not parsed.structured and parsed.tree is None


def test_misshapen_tree_keeps_the_latex_line():
    parsed = parse_output("tree", "x\n\ty (above)\nx ^ { y }")  # an ordinary token has no 'above'
    assert not parsed.structured and parsed.latex == "x ^ { y }" and parsed.tree is None
    assert consistency_warnings(parsed) == [
        "The model gave no readable syntax tree, so its LaTeX could not be cross-checked."]


def test_tree_that_disagrees_with_its_latex_is_reported():
    tree = tree_target("a + b").rsplit("\n", 1)[0]
    parsed = parse_output("tree", tree + "\na - b")
    assert parsed.structured
    assert consistency_warnings(parsed) == ["The syntax tree reads `a + b`, which differs from the final LaTeX."]


def test_counts_that_disagree_are_reported_in_one_sentence():
    parsed = parse_output("count", "a: 2, +: 1, c: 1\na - a")
    assert parsed.structured
    assert consistency_warnings(parsed) == [
        "The symbol counts disagree with the final LaTeX (+ counted 1, found 0; c counted 1, found 0; "
        "- counted 0, found 1)."]
    many = parse_output("count", "a: 9, b: 9, c: 9, d: 9, e: 9, f: 9\nx")
    (sentence,) = consistency_warnings(many)
    assert sentence.endswith("; ...).")
    assert consistency_warnings(parse_output("count", "x y")) == [
        "The model gave no readable symbol counts, so its LaTeX could not be cross-checked."]


def test_correction_log_that_disagrees_is_reported():
    marked = mark_errors("x + 1", "x + 2")
    wrong = parse_output("error_fix", "REPLACE:1 -> 3\nx + 2", marked=marked)
    assert consistency_warnings(wrong) == [
        "Applying the correction log gives `x + 3`, which differs from the final LaTeX."]
    unfit = parse_output("error_fix", "DELETE:+\nx + 2", marked=marked)
    assert consistency_warnings(unfit) == [
        "The correction log does not fit the marked formula, so the corrected LaTeX could not be checked."]
    assert consistency_warnings(parse_output("error_fix", "REPLACE:1 -> 2\nx + 2")) == []  # no marked formula given


def test_error_find_output():
    parsed = parse_output("error_find", f"x {ERROR_START} + {ERROR_END} 1 {DELETED}")
    assert parsed.structured and parsed.latex == "x + 1"
    broken = parse_output("error_find", f"x {ERROR_START} + 1")
    assert not broken.structured and broken.latex == "x + 1" and broken.marked is None


def test_unknown_task_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_output("poetry", "x")


def test_hand_built_result_with_a_bad_tree_gets_a_sentence():
    parsed = ParsedOutput(task="tree", latex="x", structured=True, raw="", tree="x\n\ty (above)")
    assert consistency_warnings(parsed) == [
        "The model gave no readable syntax tree, so its LaTeX could not be cross-checked."]
