r"""Token LaTeX -> LaTeX in which every visible token has its own colour, and the list of those tokens.

CDM (UniMERNet's Character Detection Matching) needs to know which glyphs on the rendered page
belong to which token. Each visible token `t` becomes `\mathcolor[RGB]{r,g,b}{t}` with a colour
that encodes its index (`colour_of` / `index_of`); structure tokens (braces, `^`, `_`, `&`, `\\`,
spacing, `\limits`, environments, `\mathrm`-style wrappers) stay uncoloured and get no box.
Commands with arguments are coloured as a whole (`\frac`: the bar, `\sqrt`: the radical, `\hat`:
the accent) while the tokens of their arguments get colours of their own, nested inside.

Multi-letter operator names (`\sin`, `\log`, `\lim`, ...) are spelled out letter by letter under `\mathrm`
and dots (`\ldots`, `\cdots`) become three `.`, as UniMERNet does, so that `\sin` and `s i n` or
`\cdots` and `\ldots` are compared glyph by glyph. What structure draws is a token too: the delimiters
of `pmatrix`-like environments (so `\begin{pmatrix}` and `( \begin{matrix}` agree, as after UniMERNet's
KaTeX pass) and the bar of an infix `\over`.
"""
from __future__ import annotations

__all__ = ["ColourError", "MAX_TOKENS", "colour_of", "coloured", "index_of"]

STEP = 15  # channel values 0, 15, ..., 240: 17 levels per channel, never 255 (the white page)
LEVELS = 17
MAX_TOKENS = LEVELS ** 3 - 1  # code 0 is black: the uncoloured structure

SPELLED = {r"\sin", r"\cos", r"\tan", r"\cot", r"\sec", r"\csc", r"\sinh", r"\cosh", r"\tanh", r"\coth",
           r"\arcsin", r"\arccos", r"\arctan", r"\log", r"\ln", r"\lg", r"\exp", r"\ker",
           r"\hom", r"\deg", r"\arg", r"\dim", r"\mod", r"\bmod", r"\pmod"}
# Operator names that take limits below in display style: spelled too (UniMERNet's KaTeX pass writes them
# as `\operatorname*` letters), kept an operator so that `\lim _ { x }` still sets its x underneath.
SPELLED_WITH_LIMITS = {r"\lim", r"\liminf", r"\limsup", r"\sup", r"\inf", r"\min", r"\max", r"\det", r"\gcd",
                       r"\Pr"}
# Infix fractions: `a \over b` sets what its group holds as `\frac { a } { b }`; drawn the same, and only a
# command that takes arguments can give the bar a colour of its own.
INFIX = {r"\over": r"\frac", r"\choose": r"\binom"}
DOTS = {r"\ldots", r"\cdots", r"\dots", r"\hdots", r"\dotsc", r"\dotsb", r"\dotsm", r"\dotso", r"\mathellipsis"}
TWO_ARGS = {r"\frac", r"\binom", r"\dfrac", r"\tfrac", r"\cfrac", r"\dbinom", r"\tbinom"}
TWO_ARGS_HIDDEN = {r"\overset", r"\underset", r"\stackrel"}  # only the arguments are drawn
OPTIONAL_THEN_ONE = {r"\sqrt", r"\xrightarrow", r"\xleftarrow"}
ACCENTS = {r"\hat", r"\bar", r"\vec", r"\dot", r"\ddot", r"\dddot", r"\tilde", r"\widehat", r"\widetilde",
           r"\overline", r"\underline", r"\overbrace", r"\underbrace", r"\overrightarrow", r"\overleftarrow",
           r"\check", r"\breve", r"\acute", r"\grave", r"\mathring", r"\boxed"}
MATH_WRAPPERS = {r"\mathrm", r"\mathbf", r"\mathbb", r"\mathcal", r"\mathfrak", r"\mathsf", r"\mathtt",
                 r"\mathit", r"\boldsymbol", r"\bm", r"\pmb", r"\operatorname", r"\mathop", r"\mathbin"}
TEXT_WRAPPERS = {r"\text", r"\mbox", r"\hbox", r"\textrm", r"\textit", r"\textbf", r"\textsf", r"\texttt",
                 r"\textnormal", r"\textup", r"\emph"}
UNDRAWN = {"&", r"\\", r"\,", r"\;", r"\:", r"\!", r"\ ", "~", r"\quad", r"\qquad", r"\limits", r"\nolimits",
           r"\displaystyle", r"\textstyle", r"\scriptstyle", r"\left", r"\right", r"\middle", r"\over",
           r"\choose", r"\atop", r"\hline", r"\big", r"\Big", r"\bigg", r"\Bigg", r"\bigl", r"\bigr",
           r"\Bigl", r"\Bigr", r"\biggl", r"\biggr", r"\Biggl", r"\Biggr"}
SCRIPTS = ("^", "_")
# Environments that draw delimiters around their cells: (left, right or "." for none, the environment that
# sets the cells). The delimiters are tokens like any `(` (UniMERNet's KaTeX pass writes `\left(` ...
# `\right)` around a plain array), so `\begin{pmatrix}` and `( \begin{matrix}` draw the same boxes.
DELIMITED = {
    "{pmatrix}": ("(", ")", "{matrix}"), "{bmatrix}": ("[", "]", "{matrix}"), "{Bmatrix}": (r"\{", r"\}", "{matrix}"),
    "{vmatrix}": ("|", "|", "{matrix}"), "{Vmatrix}": (r"\|", r"\|", "{matrix}"),
    "{cases}": (r"\{", ".", r"{array}{@{}l@{\quad}l@{}}"),
}


class ColourError(ValueError):
    """LaTeX whose structure cannot be coloured; str(e) is one sentence, `reason` a short label to count."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def colour_of(index: int) -> tuple[int, int, int]:
    """RGB of visible token `index` (0-based): index + 1 written in base 17, each digit times 15."""
    code = index + 1
    return (code // LEVELS ** 2 * STEP, code // LEVELS % LEVELS * STEP, code % LEVELS * STEP)


def index_of(r: int, g: int, b: int) -> int:
    """Inverse of `colour_of`; -1 for black (uncoloured)."""
    return (r // STEP) * LEVELS ** 2 + (g // STEP) * LEVELS + b // STEP - 1


def _expand(tokens: list[str]) -> list[str]:
    out: list[str] = []
    for i, token in enumerate(tokens):
        if token in SPELLED:
            out += [r"\mathrm", "{", *token[1:], "}"]
        elif token in SPELLED_WITH_LIMITS:
            given = i + 1 < len(tokens) and tokens[i + 1] in (r"\limits", r"\nolimits")
            out += [r"\mathop", "{", r"\mathrm", "{", *token[1:], "}", "}", *([] if given else [r"\limits"])]
        elif token in DOTS:
            out += [".", ".", "."]
        else:
            out.append(token)
    return out


class _Colourer:
    """One pass over the tokens; `visible` collects the coloured tokens in colour order."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.visible: list[str] = []
        self.close = self._pairs("{", "}", "braces")
        self.environments: list[str] = []  # names of the open ones, innermost last

    def _pairs(self, left: str, right: str, what: str) -> dict[int, int]:
        stack, pairs = [], {}
        for i, token in enumerate(self.tokens):
            if token == left:
                stack.append(i)
            elif token == right:
                if not stack:
                    raise ColourError(f"unbalanced {what}", f"The LaTeX has unbalanced {what}.")
                pairs[stack.pop()] = i
        if stack:
            raise ColourError(f"unbalanced {what}", f"The LaTeX has unbalanced {what}.")
        return pairs

    def colour(self, token: str, text_mode: bool) -> str:
        if len(self.visible) >= MAX_TOKENS:
            raise ColourError("too long", f"The LaTeX has more than {MAX_TOKENS} visible tokens.")
        r, g, b = colour_of(len(self.visible))
        self.visible.append(token)
        return rf"\{'textcolor' if text_mode else 'mathcolor'}[RGB]{{{r},{g},{b}}}"

    def _infix_at(self, start: int, stop: int) -> int | None:
        r"""Where a group's `\over` / `\choose` is, unless the group is a table (its cells are groups of their own)."""
        i = start
        while i < stop:
            token = self.tokens[i]
            if token in INFIX:
                return i
            if token in ("&", r"\\") or token.startswith(r"\begin"):
                return None
            i = self.close[i] + 1 if token == "{" else i + 1
        return None

    def sequence(self, start: int, stop: int, text_mode: bool = False) -> str:
        infix = self._infix_at(start, stop)
        if infix is not None:
            command = INFIX[self.tokens[infix]]
            head = self.colour(command, text_mode)
            over = self.sequence(start, infix, text_mode)
            under = self.sequence(infix + 1, stop, text_mode)
            return f"{head}{{{command}{{{over}}}{{{under}}}}}"
        parts, i = [], start
        while i < stop:
            token = self.tokens[i]
            if token in SCRIPTS:
                if i + 1 >= stop:
                    raise ColourError("missing argument", f"The LaTeX ends with {token} and no script after it.")
                script, i = self.argument(i + 1, stop, text_mode)
                parts.append(f"{token}{script}")
            else:
                part, i = self.atom(i, stop, text_mode)
                parts.append(part)
        return " ".join(parts)

    def argument(self, i: int, stop: int, text_mode: bool) -> tuple[str, int]:
        """A braced argument at i: the group itself, or the single atom there wrapped in braces."""
        if i >= stop:
            raise ColourError("missing argument",
                              f"A command lacks its argument: {' '.join(self.tokens[max(0, i - 3):i])}.")
        if self.tokens[i] == "{":
            end = self.close[i]
            return "{" + self.sequence(i + 1, end, text_mode) + "}", end + 1
        part, after = self.atom(i, stop, text_mode)
        return "{" + part + "}", after

    def optional(self, i: int, stop: int) -> tuple[str, int]:
        """`[ ... ]` at i (brace depth counted), its content braced so a `]` in it cannot end it early."""
        if i >= stop or self.tokens[i] != "[":
            return "", i
        depth, j = 0, i
        while j < stop:
            token = self.tokens[j]
            if token == "{":
                j = self.close[j]
            elif token == "[":
                depth += 1
            elif token == "]":
                depth -= 1
                if depth == 0:
                    return "[{" + self.sequence(i + 1, j) + "}]", j + 1
            j += 1
        return "", i  # a lone `[` is a drawn bracket, not an optional argument

    def environment(self, i: int, stop: int) -> tuple[str, int]:
        r"""`\begin {name}` / `\begin{name}` (and an array's column spec) or the matching `\end`."""
        token = self.tokens[i]
        command, name = (token[:6] if token.startswith(r"\begin") else token[:4]), ""
        if token in (r"\begin", r"\end"):
            if i + 1 >= stop:
                raise ColourError("missing argument", f"{token} has no environment name.")
            name, i = self.tokens[i + 1], i + 2
            if name == "{":  # `\begin { matrix }` spelled as three tokens
                end = self.close[i - 1]
                name, i = "{" + "".join(self.tokens[i:end]) + "}", end + 1
        else:
            name, i = token[len(command):], i + 1
        if command == r"\begin":
            self.environments.append(name)
            if name == "{array}" and i < stop and self.tokens[i] == "{":
                end = self.close[i]
                return r"\begin{array}{" + "".join(self.tokens[i + 1:end]) + "}", end + 1
            return self._delimited_begin(name), i
        if not self.environments:
            raise ColourError("unbalanced environments", r"The LaTeX has an \end without its \begin.")
        opened = self.environments.pop()
        if opened != name:
            raise ColourError("mismatched environments",
                              rf"The LaTeX closes \begin{opened} with \end{name}.")
        return self._delimited_end(name), i

    def _delimited_begin(self, name: str) -> str:
        r"""`\begin{name}`, or for an environment with delimiters its left one coloured before the cells.

        A delimiter of `\left ... \right` cannot be wrapped in `\mathcolor`, so the colour is switched on
        before `\left` and back to black (uncoloured) after it, in a group that `_delimited_end` closes."""
        if name not in DELIMITED:
            return r"\begin" + name
        left, _, inner = DELIMITED[name]
        return rf"{{{self._switch(left)}\left{left}\color{{black}}\begin{inner}"

    def _delimited_end(self, name: str) -> str:
        if name not in DELIMITED:
            return r"\end" + name
        _, right, inner = DELIMITED[name]
        inner_name = inner[:inner.index("}") + 1]
        shown = "" if right == "." else self._switch(right)
        return rf"\end{inner_name}{shown}\right{right}}}"

    def _switch(self, token: str) -> str:
        r"""`\color[RGB]{r,g,b}` of the next visible token, for glyphs that cannot take an argument."""
        return self.colour(token, False).replace(r"\mathcolor", r"\color", 1)

    def atom(self, i: int, stop: int, text_mode: bool) -> tuple[str, int]:
        token = self.tokens[i]
        if token == "{":
            end = self.close[i]
            return "{" + self.sequence(i + 1, end, text_mode) + "}", end + 1
        if token in (r"\begin", r"\end") or token.startswith((r"\begin{", r"\end{")):
            return self.environment(i, stop)
        if token == r"\\" and not self.environments:
            return "", i + 1  # a line break outside an environment: the formula is drawn on one line
        if token in UNDRAWN:
            return token, i + 1
        if token in TWO_ARGS:
            head = self.colour(token, text_mode)
            first, after = self.argument(i + 1, stop, text_mode)
            second, after = self.argument(after, stop, text_mode)
            return f"{head}{{{token}{first}{second}}}", after
        if token in TWO_ARGS_HIDDEN:
            first, after = self.argument(i + 1, stop, text_mode)
            second, after = self.argument(after, stop, text_mode)
            return f"{token}{first}{second}", after
        if token in OPTIONAL_THEN_ONE:
            head = self.colour(token, text_mode)
            option, after = self.optional(i + 1, stop)
            body, after = self.argument(after, stop, text_mode)
            return f"{head}{{{token}{option}{body}}}", after
        if token in ACCENTS:
            head = self.colour(token, text_mode)
            body, after = self.argument(i + 1, stop, text_mode)
            return f"{head}{{{token}{body}}}", after
        if token in MATH_WRAPPERS or token in TEXT_WRAPPERS:
            body, after = self.argument(i + 1, stop, text_mode or token in TEXT_WRAPPERS)
            return f"{token}{body}", after
        return f"{self.colour(token, text_mode)}{{{token}}}", i + 1


def coloured(tokens: list[str]) -> tuple[str, list[str]]:
    """(LaTeX with one colour per visible token, the visible tokens in colour order).

    Raises ColourError for structure that cannot be coloured; str(e) is one sentence.
    """
    colourer = _Colourer(_expand(tokens))
    latex = colourer.sequence(0, len(colourer.tokens))
    if colourer.environments:
        raise ColourError("unbalanced environments", r"The LaTeX has a \begin without its \end.")
    return latex, colourer.visible
