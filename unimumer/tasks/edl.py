"""Error-driven learning: mark a wrong candidate's errors, write and apply the correction log.

Alignment: token Levenshtein from candidate to truth, backtraced from the end preferring a
match, then substitution, then deletion (an extra candidate token), then insertion (a missing
truth token). Each maximal run of non-matching steps is one marked place:
- it holds candidate tokens -> `<error_start> tokens <error_end>`, logged as
  `REPLACE:old -> new` (truth tokens of the run) or `DELETE:old` (no truth tokens);
- it holds only missing truth tokens -> `<deleted>`, logged as `INSERT:new after prev`
  (prev: the nearest candidate token before the tag) or `INSERT:new at start`.
One operation per line, in the order of the places. Tokens never contain whitespace, so
with the marked formula at hand every line has exactly one reading, whatever the tokens.
"""
from __future__ import annotations

from unimumer.tasks.errors import CorrectionError, MalformedLatexError

ERROR_START, ERROR_END, DELETED = "<error_start>", "<error_end>", "<deleted>"
TAGS = (ERROR_START, ERROR_END, DELETED)
_AT_START = ["at", "start"]


def _tokens(text: str, what: str) -> list[str]:
    tokens = text.split()
    for tag in TAGS:
        if tag in tokens:
            raise MalformedLatexError(f"The {what} contains the reserved tag {tag}.")
    return tokens


def _steps(candidate: list[str], truth: list[str]) -> list[tuple[str | None, str | None]]:
    """The alignment as (candidate token | None, truth token | None) pairs, in order."""
    # A common suffix is always matched by a backtrace that prefers matches, so trimming it
    # leaves the result unchanged and keeps the quadratic table small.
    n, m = len(candidate), len(truth)
    suffix = 0
    while suffix < n and suffix < m and candidate[n - 1 - suffix] == truth[m - 1 - suffix]:
        suffix += 1
    a, b = candidate[: n - suffix], truth[: m - suffix]
    n, m = len(a), len(b)
    table = [list(range(m + 1))]
    for i, ai in enumerate(a, 1):
        prev, row, left = table[-1], [i], i
        for bj, diagonal, up in zip(b, prev, prev[1:]):
            left = min(diagonal + (ai != bj), up + 1, left + 1)
            row.append(left)
        table.append(row)
    steps: list[tuple[str | None, str | None]] = []
    i, j = n, m
    while i or j:
        here = table[i][j]
        if i and j and here == table[i - 1][j - 1] + (a[i - 1] != b[j - 1]):
            i, j = i - 1, j - 1
            steps.append((a[i], b[j]))
        elif i and here == table[i - 1][j] + 1:
            i -= 1
            steps.append((a[i], None))
        else:
            j -= 1
            steps.append((None, b[j]))
    steps.reverse()
    return steps + [(tok, tok) for tok in candidate[len(candidate) - suffix:]]


def _edits(candidate: str, truth: str) -> tuple[list[str], list[str]]:
    """The marked candidate tokens and the operation lines."""
    marked: list[str] = []
    operations: list[str] = []
    old: list[str] = []
    new: list[str] = []

    def close_run() -> None:
        if old:
            marked.extend((ERROR_START, *old, ERROR_END))
            operations.append(f"REPLACE:{' '.join(old)} -> {' '.join(new)}" if new else f"DELETE:{' '.join(old)}")
        elif new:
            where = f"after {marked[-1]}" if marked else "at start"
            marked.append(DELETED)
            operations.append(f"INSERT:{' '.join(new)} {where}")
        old.clear()
        new.clear()

    for cand, true in _steps(_tokens(candidate, "candidate"), _tokens(truth, "truth")):
        if cand is not None and cand == true:
            close_run()
            marked.append(cand)
            continue
        if cand is not None:
            old.append(cand)
        if true is not None:
            new.append(true)
    close_run()
    return marked, operations


def mark_errors(candidate: str, truth: str) -> str:
    """The error_find target: the candidate's tokens with <error_start> <error_end> <deleted> tags."""
    return " ".join(_edits(candidate, truth)[0])


def correction_log(candidate: str, truth: str) -> str:
    """The error_fix target: one operation per marked place, then the truth as the last line.

    A correct candidate has no marked place, so its log is the truth alone."""
    operations = _edits(candidate, truth)[1]
    return "\n".join([*operations, " ".join(truth.split())])


def marked_places(marked: str) -> list[tuple[str, list[str]]]:
    """Split a marked formula into ("token", [tok]), ("error", [old tokens]) and ("deleted", [])
    pieces; CorrectionError when the tags do not pair up."""
    pieces: list[tuple[str, list[str]]] = []
    span: list[str] | None = None
    for tok in marked.split():
        if tok == ERROR_START:
            if span is not None:
                raise CorrectionError("An <error_start> tag opens inside another marked error.")
            span = []
        elif tok == ERROR_END:
            if not span:
                raise CorrectionError("An <error_end> tag closes no marked tokens.")
            pieces.append(("error", span))
            span = None
        elif span is not None:
            if tok == DELETED:
                raise CorrectionError("A <deleted> tag sits inside a marked error.")
            span.append(tok)
        else:
            pieces.append(("deleted", []) if tok == DELETED else ("token", [tok]))
    if span is not None:
        raise CorrectionError("An <error_start> tag is never closed.")
    return pieces


def _apply_one(kind: str, old: list[str], previous: str | None, line: str, number: int) -> list[str]:
    """The truth tokens that operation `line` puts at a marked place."""
    keyword, _, rest = line.strip().partition(":")
    words = rest.split()
    if kind == "error":
        k = len(old)
        if keyword == "DELETE" and words == old:
            return []
        if keyword == "REPLACE" and words[:k] == old and words[k:k + 1] == ["->"]:
            return words[k + 1:]
        expected = f"REPLACE:{' '.join(old)} -> ... or DELETE:{' '.join(old)}"
    else:
        where = ["after", previous] if previous is not None else _AT_START
        if keyword == "INSERT" and len(words) > 2 and words[-2:] == where:
            return words[:-2]
        expected = f"INSERT:... {' '.join(where)}"
    raise CorrectionError(f"Operation {number} ({line.strip()!r}) does not fit its marked place; expected {expected}.")


def apply_corrections(marked: str, operations: str | list[str]) -> str:
    """Apply a correction log (lines, or a list of them) to a marked formula, in order."""
    lines = operations.split("\n") if isinstance(operations, str) else list(operations)
    lines = [line for line in lines if line.strip()]
    out: list[str] = []
    used = 0
    previous: str | None = None
    for kind, toks in marked_places(marked):
        if kind == "token":
            out.append(toks[0])
            previous = toks[0]
            continue
        if used == len(lines):
            raise CorrectionError(f"The log has {len(lines)} operations but the formula has more marked places.")
        out.extend(_apply_one(kind, toks, previous, lines[used], used + 1))
        used += 1
        if kind == "error":
            previous = toks[-1]
    if used != len(lines):
        raise CorrectionError(f"The log has {len(lines)} operations but the formula has only {used} marked places.")
    return " ".join(out)


BLANK_READING = "There is no reading to fix; recognise an expression first."
EMPTY_SELECTION = "Select the wrong part of the LaTeX first (or the place where something is missing)."


def mark_tokens(latex: str, spans) -> str:
    """Write error marks into a reading from token spans, as a person points at its errors.

    Each (start, end) span of token indices (end exclusive) is a wrong part: `<error_start> … <error_end>`;
    an empty span (start == end) is a missing part: `<deleted>` before token `start` (at the end when start
    is the token count). Overlapping or touching spans merge into one marked place, as error_find writes
    them. CorrectionError (one sentence) for a blank reading, no spans, or a span outside the reading.
    """
    tokens = _tokens(latex or "", "reading")
    if not tokens:
        raise CorrectionError(BLANK_READING)
    places: list[list[int]] = []
    for span in sorted(_checked_span(span, len(tokens)) for span in spans or []):
        if places and span[0] <= places[-1][1] and (span[0] < span[1] or places[-1][0] < places[-1][1]):
            places[-1][1] = max(places[-1][1], span[1])  # overlapping, touching, or a gap next to an error
        elif not places or span != tuple(places[-1]):
            places.append(list(span))
    if not places:
        raise CorrectionError(EMPTY_SELECTION)
    out: list[str] = []
    position = 0
    for start, end in places:
        out.extend(tokens[position:start])
        out.extend([ERROR_START, *tokens[start:end], ERROR_END] if end > start else [DELETED])
        position = end
    return " ".join(out + tokens[position:])


def _checked_span(span, count: int) -> tuple[int, int]:
    try:
        start, end = (int(v) for v in span)
    except (TypeError, ValueError):
        raise CorrectionError(f"A marked span must be two token positions [start, end], not {span!r}.") from None
    if not 0 <= start <= end <= count:
        tokens = f"{count} token{'s' * (count != 1)}"
        raise CorrectionError(f"The span [{start}, {end}] is outside the reading, which has {tokens}.")
    return start, end
