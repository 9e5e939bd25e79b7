"""Reading model output back: one total parser per task, and the cross-checks the app shows.

The final LaTeX is the last line whenever the task's structure (tree lines, a counts line,
operation lines) is found above it; otherwise the whole text, whitespace collapsed, is the
LaTeX and `structured` is False. Nothing here raises on any text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from unimumer.tasks.count import count_symbols, parse_counts
from unimumer.tasks.edl import TAGS, apply_corrections, marked_places
from unimumer.tasks.errors import CorrectionError, MalformedTreeError
from unimumer.tasks.prompts import PROMPTS, TASKS
from unimumer.tasks.tree import tree_to_latex

_ROOT_LINE = re.compile(r"\S+")
_TREE_LINE = re.compile(r"\t*\S+ \(\S+\)")
_MAX_LISTED = 5


@dataclass
class ParsedOutput:
    task: str
    latex: str  # the final LaTeX, space-tokenised (error_find: the candidate without its tags)
    structured: bool  # the task's structure was found and is well-formed
    raw: str  # the text as given
    tree: str | None = None  # tree: the tree lines
    counts: list[tuple[str, int]] | None = None  # count: the claimed (token, n) pairs
    marked: str | None = None  # error_find: the marked formula; error_fix: the one it corrects, if given
    operations: list[str] | None = None  # error_fix: the correction log, one operation per item


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _is_operation(line: str) -> bool:
    keyword, colon, rest = line.partition(":")
    words = rest.split()
    if keyword == "REPLACE":
        return "->" in words[1:]
    if keyword == "DELETE":
        return bool(words)
    if keyword == "INSERT":
        return len(words) > 2 and (words[-2] == "after" or words[-2:] == ["at", "start"])
    return False


def _parse_tree(result: ParsedOutput, lines: list[str]) -> None:
    body, last = lines[:-1], lines[-1] if lines else ""
    if not body or not _ROOT_LINE.fullmatch(body[0]) or _TREE_LINE.fullmatch(last) or last.startswith("\t"):
        return
    if not all(_TREE_LINE.fullmatch(line) for line in body[1:]):
        return
    result.latex = _collapse(last)
    tree = "\n".join(body)
    try:
        tree_to_latex(tree)
    except MalformedTreeError:
        return  # the shape is there but it is no tree: keep the LaTeX line, flag it
    result.tree, result.structured = tree, True


def _parse_count(result: ParsedOutput, lines: list[str]) -> None:
    counts = parse_counts(lines[0].strip()) if len(lines) == 2 else None
    if counts is not None:
        result.counts, result.latex, result.structured = counts, _collapse(lines[1]), True


def _parse_error_find(result: ParsedOutput, lines: list[str]) -> None:
    result.latex = " ".join(tok for tok in result.raw.split() if tok not in TAGS)
    if len(lines) != 1:
        return
    try:
        marked_places(lines[0])
    except CorrectionError:
        return
    result.marked, result.structured = _collapse(lines[0]), True


def _parse_error_fix(result: ParsedOutput, lines: list[str]) -> None:
    if lines and all(map(_is_operation, lines[:-1])) and not _is_operation(lines[-1]):
        result.operations = [line.strip() for line in lines[:-1]]
        result.latex, result.structured = _collapse(lines[-1]), True


def parse_output(task: str, text: str, *, marked: str | None = None) -> ParsedOutput:
    """Read a model's output for `task`; never raises for any text (ValueError for an unknown task).

    `marked`: for error_fix, the marked formula the log corrects (enables a consistency check)."""
    if task not in PROMPTS:
        raise ValueError(f"Unknown task {task!r}; expected one of {', '.join(TASKS)}.")
    raw = text if isinstance(text, str) else ("" if text is None else str(text))
    text = raw.strip().replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n") if line.strip()]
    result = ParsedOutput(task=task, latex=_collapse(raw), structured=False, raw=raw)
    if task == "vanilla":
        result.structured = len(lines) == 1
    elif task == "tree":
        _parse_tree(result, lines)
    elif task == "count":
        _parse_count(result, lines)
    elif task == "error_find":
        _parse_error_find(result, lines)
    else:
        result.marked = None if marked is None else _collapse(marked)
        _parse_error_fix(result, lines)
    return result


def _count_warning(claimed: list[tuple[str, int]], latex: str) -> str | None:
    said: dict[str, int] = {}
    for token, n in claimed:
        said[token] = said.get(token, 0) + n
    found = dict(count_symbols(latex))
    wrong = [f"{tok} counted {said.get(tok, 0)}, found {found.get(tok, 0)}"
             for tok in dict.fromkeys([*said, *found]) if said.get(tok, 0) != found.get(tok, 0)]
    if not wrong:
        return None
    listed = "; ".join(wrong[:_MAX_LISTED]) + ("; ..." if len(wrong) > _MAX_LISTED else "")
    return f"The symbol counts disagree with the final LaTeX ({listed})."


def consistency_warnings(parsed: ParsedOutput) -> list[str]:
    """Sentences for each way the model's tree, counts or log disagree with its final LaTeX."""
    warnings: list[str] = []
    if parsed.task == "tree":
        try:
            reading = None if parsed.tree is None else tree_to_latex(parsed.tree)
        except MalformedTreeError:  # a hand-built ParsedOutput; parse_output keeps readable trees only
            reading = None
        if reading is None:
            warnings.append("The model gave no readable syntax tree, so its LaTeX could not be cross-checked.")
        elif reading.split() != parsed.latex.split():
            warnings.append(f"The syntax tree reads `{reading}`, which differs from the final LaTeX.")
    elif parsed.task == "count":
        if parsed.counts is None:
            warnings.append("The model gave no readable symbol counts, so its LaTeX could not be cross-checked.")
        else:
            warning = _count_warning(parsed.counts, parsed.latex)
            if warning:
                warnings.append(warning)
    elif parsed.task == "error_fix" and parsed.marked is not None and parsed.operations is not None:
        try:
            corrected = apply_corrections(parsed.marked, parsed.operations)
        except CorrectionError:
            warnings.append("The correction log does not fit the marked formula, so the corrected LaTeX could not be checked.")
        else:
            if corrected.split() != parsed.latex.split():
                warnings.append(f"Applying the correction log gives `{corrected}`, which differs from the final LaTeX.")
    return warnings
