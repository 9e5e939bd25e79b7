"""Error-driven learning: marks, correction logs and their round trip on the released model's mistakes."""
import json

import pytest
from conftest import shared_path
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from unimumer.tasks import (
    DELETED,
    ERROR_END,
    ERROR_START,
    CorrectionError,
    MalformedLatexError,
    apply_corrections,
    correction_log,
    human_prompt,
    mark_errors,
    parse_output,
    prompt_task,
    task_target,
)

TAGS = (ERROR_START, ERROR_END, DELETED)


def check_pair(candidate: str, truth: str) -> None:
    """Every promise of the EDL format for one (candidate, truth) pair."""
    marked = mark_errors(candidate, truth)
    target = correction_log(candidate, truth)
    *operations, last = target.split("\n")
    assert last == " ".join(truth.split())
    assert [tok for tok in marked.split() if tok not in TAGS] == candidate.split()
    assert apply_corrections(marked, operations) == last
    assert apply_corrections(marked, "\n".join(operations)) == last
    inside, marked_tokens, deleted_tags, places = False, 0, 0, 0
    for tok in marked.split():
        if tok == ERROR_START:
            inside, places = True, places + 1
        elif tok == ERROR_END:
            inside = False
        elif tok == DELETED:
            deleted_tags, places = deleted_tags + 1, places + 1
        elif inside:
            marked_tokens += 1
    assert places == len(operations)
    assert marked_tokens + deleted_tags <= Levenshtein.distance(candidate.split(), truth.split())


@pytest.fixture(scope="module")
def wrong_predictions() -> list[tuple[str, str]]:
    files = sorted(shared_path("reference_preds").glob("*_pred.json"))
    records = [record for path in files for record in json.loads(path.read_text())]
    return [(r["pred"], r["gt"]) for r in records if r["pred"].split() != r["gt"].split()]


@pytest.mark.shared_data
def test_round_trip_on_every_real_mistake(wrong_predictions):
    print(f"\nwrong predictions in the reference files: {len(wrong_predictions)}")
    assert len(wrong_predictions) == 6960
    for candidate, truth in wrong_predictions:
        check_pair(candidate, truth)


def test_worked_example():
    candidate, truth = "z ^ { 2 } + + 1 = x", "2 ^ { 2 } + 1 = ( x )"
    assert mark_errors(candidate, truth) == (
        f"{ERROR_START} z {ERROR_END} ^ {{ 2 }} {ERROR_START} + {ERROR_END} + 1 = {DELETED} x {DELETED}"
    )  # the backtrace runs from the end and prefers matches, so the later + is the kept one
    assert correction_log(candidate, truth) == "\n".join(
        ["REPLACE:z -> 2", "DELETE:+", "INSERT:( after =", "INSERT:) after x", truth]
    )
    check_pair(candidate, truth)


def test_missing_start_and_adjacent_runs():
    assert mark_errors("b c", "a b c") == f"{DELETED} b c"
    assert correction_log("b c", "a b c") == "INSERT:a at start\na b c"
    # a substitution next to a missing token is one place, not two
    assert mark_errors("a b c", "a x y c") == f"a {ERROR_START} b {ERROR_END} c"
    assert correction_log("a b c", "a x y c") == "REPLACE:b -> x y\na x y c"
    assert mark_errors("", "a") == DELETED
    assert mark_errors("a", "") == f"{ERROR_START} a {ERROR_END}"
    check_pair("", "a")
    check_pair("a", "")


def test_correct_prediction_stays_unmarked_and_its_log_is_the_truth():
    latex = r"\frac { a } { b } \\ - > ; , :"
    assert mark_errors(latex, latex) == latex
    assert correction_log(latex, latex) == latex
    assert apply_corrections(latex, "") == latex
    assert apply_corrections(latex, []) == latex


def test_punctuation_tokens_stay_unambiguous():
    # tokens that look like the log's own syntax: -> after at start : REPLACE: ...
    candidate = "-> > - : ; | , \\\\ after at start REPLACE:x DELETE: INSERT:y"
    truth = "-> - > : , | ; \\\\ start at after INSERT:y -> REPLACE:x"
    check_pair(candidate, truth)
    check_pair("a -> b", "a -> -> b")
    check_pair("x after y", "x after after y")


def test_reserved_tags_in_input_are_refused():
    with pytest.raises(MalformedLatexError):
        mark_errors(f"a {DELETED}", "a")
    with pytest.raises(MalformedLatexError):
        correction_log("a", f"{ERROR_START} a")


@pytest.mark.parametrize("marked, operations", [
    (f"{ERROR_START} a {ERROR_END}", ""),  # too few operations
    ("a b", "DELETE:a"),  # too many
    (f"{ERROR_START} a {ERROR_END}", "REPLACE:b -> c"),  # wrong old text
    (f"{ERROR_START} a {ERROR_END}", "INSERT:c after a"),  # wrong kind
    (f"a {DELETED}", "INSERT:c after b"),  # wrong position
    (f"{DELETED} a", "INSERT:c after a"),  # the start is 'at start'
    (f"a {DELETED}", "INSERT: after a"),  # nothing to insert
    (f"{ERROR_START} a", "DELETE:a"),  # unclosed tag
    (f"a {ERROR_END}", "DELETE:a"),
    (f"{ERROR_START} {ERROR_END}", "DELETE:"),
    (f"{ERROR_START} a {ERROR_START} b {ERROR_END}", "DELETE:a b"),
    (f"{ERROR_START} a {DELETED} {ERROR_END}", "DELETE:a"),
])
def test_logs_that_do_not_fit_are_refused(marked, operations):
    with pytest.raises(CorrectionError):
        apply_corrections(marked, operations)


def test_prompts_and_targets():
    candidate, truth = "x + 1", "x + 2"
    marked = mark_errors(candidate, truth)
    find = human_prompt("error_find", candidate=candidate)
    assert not find.startswith("I have an image of a handwritten mathematical expression. ")
    assert find.endswith(f"\n\nerroneous formula: {candidate}\nMarked formula: ")
    fix = human_prompt("error_fix", marked=marked)
    assert fix.endswith(f"\n\nMarked formula: {marked}\nCorrection log: ")
    assert task_target("error_find", truth, candidate=candidate) == marked
    assert task_target("error_fix", truth, candidate=candidate) == correction_log(candidate, truth)
    with pytest.raises(ValueError):
        human_prompt("error_find")
    with pytest.raises(ValueError):
        human_prompt("vanilla", candidate="x")
    with pytest.raises(ValueError):
        task_target("error_fix", truth)
    with pytest.raises(ValueError):
        task_target("tree", truth, candidate=candidate)
    with pytest.raises(ValueError):
        task_target("nonsense", truth)


def test_every_prompt_names_its_task():
    # train.finetune records which tasks a model learned from its examples' prompts (the model card's
    # "Not trained" list); file names such as `edl6_error_find` are not reliable for that.
    assert prompt_task(human_prompt("error_find", candidate="x + 1")) == "error_find"
    assert prompt_task(human_prompt("error_fix", marked=mark_errors("x + 1", "x + 2"))) == "error_fix"
    assert [prompt_task(human_prompt(task)) for task in ("vanilla", "tree", "count")] == ["vanilla", "tree", "count"]
    assert prompt_task("Describe the image.") is None
    assert prompt_task(human_prompt("vanilla") + " Be brief.") is None


TOKENS = st.sampled_from("a b x 1 2 { } ^ _ -> - > : ; | , \\\\ after at start & ( ) \\frac".split())


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=12), st.lists(TOKENS, max_size=12))
def test_arbitrary_pairs_round_trip(candidate, truth):
    candidate, truth = " ".join(candidate), " ".join(truth)
    check_pair(candidate, truth)
    if truth:  # an empty truth leaves no last line to read
        parsed = parse_output("error_fix", correction_log(candidate, truth), marked=mark_errors(candidate, truth))
        assert parsed.structured and parsed.latex == truth and parsed.operations is not None


def test_mark_tokens_writes_the_marks_a_person_points_at():
    from unimumer.tasks import mark_tokens

    assert mark_tokens("x ^ { z } + 1", [(3, 4)]) == "x ^ { <error_start> z <error_end> } + 1"
    assert mark_tokens("x ^ { z } + 1", [[4, 5], (3, 4), (7, 7)]) == "x ^ { <error_start> z } <error_end> + 1 <deleted>"
    assert mark_tokens("x + 1", [(0, 0), (0, 0)]) == "<deleted> x + 1"
    assert mark_tokens("x + 1", [(1, 1), (1, 2)]) == "x <error_start> + <error_end> 1"  # a gap next to an error


def test_mark_tokens_refuses_in_one_sentence():
    from unimumer.tasks import CorrectionError, mark_tokens

    for latex, spans, message in (("", [(0, 1)], "no reading"), ("x + 1", [], "Select the wrong part"),
                                  ("x + 1", [(2, 4)], "outside the reading, which has 3 tokens"),
                                  ("x", ["a"], "two token positions")):
        with pytest.raises(CorrectionError, match=message):
            mark_tokens(latex, spans)
