"""Symbol counting: every whitespace token except `{` and `}`, in first-seen order."""
from __future__ import annotations

import re

from unimumer.tasks.errors import MalformedLatexError

_COUNTS_LINE = re.compile(r"\S+: \d+(?:, \S+: \d+)*")


def count_symbols(latex: str) -> list[tuple[str, int]]:
    """(token, count) pairs in first-seen order, braces dropped."""
    counts: dict[str, int] = {}
    for token in latex.split():
        counts[token] = counts.get(token, 0) + 1
    counts.pop("{", None)
    counts.pop("}", None)
    return list(counts.items())


def format_counts(counts: list[tuple[str, int]]) -> str:
    return ", ".join(f"{token}: {n}" for token, n in counts)


def parse_counts(line: str) -> list[tuple[str, int]] | None:
    """Read a `tok: n, tok: n` line back; None when it is not one.

    Tokens never contain spaces, so splitting on spaces is unambiguous even for the tokens
    `,` and `:` (`,: 2` is the comma counted twice)."""
    if not _COUNTS_LINE.fullmatch(line):
        return None
    words = line.split(" ")
    return [(words[k][:-1], int(words[k + 1].rstrip(","))) for k in range(0, len(words), 2)]


def count_target(latex: str) -> str:
    """The gpt value of the count task: the counts line, a newline, the LaTeX."""
    counts = count_symbols(latex)
    if not counts:
        raise MalformedLatexError("The LaTeX has no symbols to count.")
    return f"{format_counts(counts)}\n{' '.join(latex.split())}"
