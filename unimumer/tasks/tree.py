"""Tree-CoT: the abstract syntax tree of tokenised LaTeX, in the released text format.

`tree_text` walks the whitespace tokens by recursive descent (DESIGN §3): a node is a token,
its children are its arguments (relations below) and the rest of the expression (`right`, or
`nextline` after a `\\\\`). Depth-first, one node per line, `right` children keep their parent's
indent and every other relation is one tab deeper. `tree_to_latex` reads such text back.

Two constructs are dropped by the released format and so cannot come back: an empty optional
group (`x ^ { }`, `\\sum _ { }`, `\\sqrt [ ] { x }`) and a `\\\\` that ends a group or the formula.
"""
from __future__ import annotations

import re

from unimumer.tasks.errors import MalformedLatexError, MalformedTreeError

TWO_ARGS = frozenset(("\\frac", "\\cfrac", "\\dfrac", "\\tfrac", "\\binom", "\\dbinom", "\\tbinom"))
ONE_ARG = frozenset((
    "\\hat", "\\bar", "\\vec", "\\dot", "\\ddot", "\\tilde", "\\widehat", "\\widetilde",
    "\\overline", "\\underline", "\\overbrace", "\\underbrace", "\\overleftarrow",
    "\\overrightarrow", "\\check", "\\grave", "\\acute", "\\breve", "\\choose",
))
OPTIONAL_ARG = frozenset(("\\sqrt", "\\xrightarrow", "\\xleftarrow"))  # [below] {above}
BIG_OPERATORS = frozenset(("\\sum", "\\lim", "\\int", "\\iint", "\\oint", "\\prod", "\\coprod"))
BEGIN, END, NEWLINE = "\\begin", "\\end", "\\\\"
TAB = "\t"
CHAIN_RELATIONS = ("right", "nextline")

_ENV_TOKEN = re.compile(r"\{([^{}\s]+)\}")


def _matches(tokens: list[str], opening: str, closing: str) -> list[int]:
    """For each `opening` token the index of its closing partner (-1: none, or not an opener).

    Stack matching finds the same partner as counting forward from the opener, which is
    what the released generator does, also when other brackets are unbalanced (intervals)."""
    partner = [-1] * len(tokens)
    stack: list[int] = []
    for i, tok in enumerate(tokens):
        if tok == opening:
            stack.append(i)
        elif tok == closing and stack:
            partner[stack.pop()] = i
    return partner


class _TreeWriter:
    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.brace = _matches(tokens, "{", "}")
        self.square = _matches(tokens, "[", "]")
        self.lines: list[str] = []

    def chain(self, i: int, end: int, level: int, relation: str | None) -> None:
        """Write tokens[i:end]: the first node with `relation`, the rest as its right/nextline chain."""
        tokens = self.tokens
        while i < end:
            token = tokens[i]
            self.lines.append(f"{TAB * level}{token} ({relation})" if relation else token)
            i = self.arguments(token, i + 1, end, level)
            if i < end and tokens[i] == NEWLINE:
                i, level, relation = i + 1, level + 1, "nextline"
            else:
                relation = "right"

    def arguments(self, token: str, i: int, end: int, level: int) -> int:
        """Write the argument subtrees of `token` (whose arguments start at i); return the next index."""
        if token == BEGIN:
            return self.environment(i, end, level)
        if token in BIG_OPERATORS:
            i = self.script(i, end, level, "_", "below", token)
            return self.script(i, end, level, "^", "above", token)
        if token in ONE_ARG:
            return self.group(i, end, level, "above", token)
        if token in OPTIONAL_ARG:
            if i < end and self.tokens[i] == "[":
                close = self.square[i]
                if close < 0 or close >= end:
                    raise MalformedLatexError(f"The optional argument of {token} has no closing ].")
                self.chain(i + 1, close, level + 1, "below")
                i = close + 1
            return self.group(i, end, level, "above", token)
        if token in TWO_ARGS:
            i = self.group(i, end, level, "above", token)
            return self.group(i, end, level, "below", token)
        i = self.script(i, end, level, "_", "sub", token)
        return self.script(i, end, level, "^", "sup", token)

    def script(self, i: int, end: int, level: int, mark: str, relation: str, owner: str) -> int:
        if i < end and self.tokens[i] == mark:
            return self.group(i + 1, end, level, relation, f"{owner} {mark}")
        return i

    def group(self, i: int, end: int, level: int, relation: str, owner: str) -> int:
        if i >= end or self.tokens[i] != "{":
            raise MalformedLatexError(f"Expected a {{ ... }} group after {owner}.")
        close = self.brace[i]
        if close < 0 or close >= end:
            raise MalformedLatexError(f"The {{ ... }} group after {owner} is not closed where it should be.")
        self.chain(i + 1, close, level + 1, relation)
        return close + 1

    def environment(self, i: int, end: int, level: int) -> int:
        tokens = self.tokens
        match = _ENV_TOKEN.fullmatch(tokens[i]) if i < end else None
        if match is None:
            raise MalformedLatexError("\\begin must be followed by an environment token like {cases}.")
        name, env = match.group(1), tokens[i]
        depth, j = 1, i + 1
        while j < end:  # the matching `\end {env}`, counting nested environments of the same name
            if tokens[j] in (BEGIN, END) and j + 1 < end and tokens[j + 1] == env:
                depth += 1 if tokens[j] == BEGIN else -1
                if depth == 0:
                    break
                j += 2
            else:
                j += 1
        else:
            raise MalformedLatexError(f"\\begin {env} has no matching \\end {env}.")
        self.chain(i + 1, j, level + 1, f"begin_{name}")
        self.lines.append(f"{TAB * (level + 1)}{END} (end_{name})")
        return j + 2


def _tokens(latex: str) -> list[str]:
    tokens = latex.split()
    if not tokens:
        raise MalformedLatexError("The LaTeX is empty.")
    depth = 0
    for tok in tokens:
        depth += (tok == "{") - (tok == "}")
        if depth < 0:
            break
    if depth:
        raise MalformedLatexError("The LaTeX has unbalanced { } braces.")
    return tokens


def tree_text(latex: str) -> str:
    """The Tree-CoT lines of space-tokenised LaTeX; MalformedLatexError when it is malformed."""
    writer = _TreeWriter(_tokens(latex))
    try:
        writer.chain(0, len(writer.tokens), 0, None)
    except RecursionError:
        raise MalformedLatexError("The LaTeX is nested too deeply to build its tree.") from None
    return "\n".join(writer.lines)


def tree_target(latex: str) -> str:
    """The gpt value of the tree task: the tree lines, a newline, the LaTeX."""
    return f"{tree_text(latex)}\n{' '.join(latex.split())}"


def _rows(tree: str) -> list[tuple[int, str, str | None]]:
    """(indent, token, relation) per line; the root line alone has no relation."""
    rows: list[tuple[int, str, str | None]] = []
    for number, line in enumerate(tree.rstrip("\n").split("\n"), 1):
        body = line.lstrip("\t")
        level = len(line) - len(body)
        token, space, relation = body.partition(" ")
        if number == 1:
            if level or len(body.split()) != 1 or body != body.strip():
                raise MalformedTreeError("The first tree line must be the bare root token.")
            rows.append((0, token, None))
            continue
        if (not token or not space or len(relation) < 3 or relation[0] != "(" or relation[-1] != ")"
                or len(relation.split()) != 1 or len(token.split()) != 1):
            raise MalformedTreeError(f"Tree line {number} is not of the form 'token (relation)'.")
        rows.append((level, token, relation[1:-1]))
    return rows


class _TreeReader:
    def __init__(self, rows: list[tuple[int, str, str | None]]):
        self.rows = rows
        self.pos = 0

    def chain(self, level: int) -> list[str]:
        """Read a node and its right/nextline successors, starting at the current row."""
        out: list[str] = []
        rows = self.rows
        while True:
            token = rows[self.pos][1]
            self.pos += 1
            out.extend(self.node(token, level))
            if self.pos < len(rows):
                next_level, _, relation = rows[self.pos]
                if relation == "nextline" and next_level == level + 1:
                    out.append(NEWLINE)
                    level += 1
                    continue
                if relation == "right" and next_level == level:
                    continue
            return out

    def node(self, token: str, level: int) -> list[str]:
        args: dict[str, list[str]] = {}
        rows = self.rows
        while self.pos < len(rows) and rows[self.pos][0] == level + 1 and rows[self.pos][2] not in CHAIN_RELATIONS:
            relation = rows[self.pos][2]
            if relation in args:
                raise MalformedTreeError(f"{token} has two '{relation}' children.")
            args[relation] = self.chain(level + 1)
        return _latex_of(token, args)


def _braced(tokens: list[str]) -> list[str]:
    return ["{", *tokens, "}"]


def _latex_of(token: str, args: dict[str, list[str]]) -> list[str]:
    """The LaTeX tokens of one node with its argument subtrees (the inverse of `_TreeWriter.arguments`)."""
    if token == BEGIN:
        ends = [relation[4:] for relation in args if relation.startswith("end_")]
        name = ends[0] if len(ends) == 1 else ""
        if not name or args[f"end_{name}"] != [END] or set(args) - {f"begin_{name}", f"end_{name}"}:
            raise MalformedTreeError("A \\begin node needs one \\end (end_<env>) leaf and at most a begin_<env> body.")
        env = f"{{{name}}}"
        return [BEGIN, env, *args.get(f"begin_{name}", []), END, env]
    if token in BIG_OPERATORS:
        allowed, layout = ("below", "above"), (("below", "_", False), ("above", "^", False))
    elif token in ONE_ARG:
        allowed, layout = ("above",), (("above", "", True),)
    elif token in OPTIONAL_ARG:
        allowed, layout = ("below", "above"), (("below", "[", False), ("above", "", True))
    elif token in TWO_ARGS:
        allowed, layout = ("above", "below"), (("above", "", True), ("below", "", True))
    else:
        allowed, layout = ("sub", "sup"), (("sub", "_", False), ("sup", "^", False))
    for relation in args:
        if relation not in allowed:
            raise MalformedTreeError(f"{token} cannot have a '{relation}' child.")
    out = [token]
    for relation, mark, mandatory in layout:
        if relation in args or mandatory:
            inner = args.get(relation, [])
            if mark == "[":
                out += ["[", *inner, "]"]
            else:
                out += [mark, *_braced(inner)] if mark else _braced(inner)
    return out


def tree_to_latex(tree: str) -> str:
    """The space-tokenised LaTeX a tree stands for; MalformedTreeError when it is not a tree."""
    rows = _rows(tree)
    reader = _TreeReader(rows)
    try:
        tokens = reader.chain(0)
    except RecursionError:
        raise MalformedTreeError("The tree is nested too deeply to read.") from None
    if reader.pos != len(rows):
        raise MalformedTreeError(f"Tree line {reader.pos + 1} does not attach to the lines above it.")
    return " ".join(tokens)
