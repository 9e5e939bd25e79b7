"""The errors of the task formats: each message is one sentence a user can read."""
from __future__ import annotations


class MalformedLatexError(ValueError):
    """Tokenised LaTeX that a task target cannot be built from (unbalanced braces, a group
    that does not open with `{`, an environment without its end, nothing to count, ...)."""


class MalformedTreeError(ValueError):
    """Tree text that is not a tree of the Tree-CoT format (so it has no LaTeX reading)."""


class CorrectionError(ValueError):
    """A marked formula and a correction log that do not fit each other."""
