r"""Raw LaTeX -> the canonical space-tokenised form of the CROHME/CoMER captions.

`normalize("$-\frac1{192}$") == "- \frac { 1 } { 1 9 2 }"`. pylatexenc's LatexWalker lexes
the input (commands, characters, braces, comments, `$`); a small recursive-descent parser
then applies the caption conventions measured on the CROHME 2014/2016/2019 test ground
truths (tests/test_latex.py prints the agreement figure):

- one token per character (digits and letters included) and per command;
- every argument of `\frac`, `\sqrt`, accents and every `^` / `_` script is braced, a
  subscript comes before a superscript, and `\sum \int \lim` with scripts get `\limits`;
- a `{...}` group that is nobody's argument is unwrapped (`\log{y}` -> `\log y`,
  `{v_1}^2` -> `v _ { 1 } ^ { 2 }`) unless that would change the meaning (`{x^2}^3`);
- sizing and spacing (`\left`, `\Bigg`, `\!`, `~`), `$` and the `\mathrm` / `\mbox` wrappers
  disappear; aliases take the captions' spelling (`\lt` -> `<`, `\ne` -> `\neq`, `\dots` ->
  `\ldots`, `\lbrace` -> `\{`); common Unicode symbols become commands (`×` -> `\times`);
- `'` is a prime superscript (`f'` -> `f ^ { \prime }`), a bare `\prime` where it has no base;
- spelled-out `log` and `lim` become `\log` and `\lim`;
- environments become `\begin {env}` ... `\end {env}` (two tokens each), the form of the official
  Uni-MuMER examples and of the Tree-CoT rule (DESIGN §3).

The output is a fixed point: normalize(normalize(x)) == normalize(x).
"""
from __future__ import annotations

import re

from pylatexenc import latexwalker

__all__ = ["LatexError", "normalize", "tokenize"]


class LatexError(ValueError):
    """Raised by `normalize` for LaTeX it cannot parse; str(e) is one sentence."""


def tokenize(text: str) -> list[str]:
    """Tokens of already-tokenised text (the captions split on any whitespace)."""
    return text.split()


ALIASES = {
    r"\lt": "<", r"\gt": ">", r"\le": r"\leq", r"\leqslant": r"\leq", r"\ge": r"\geq",
    r"\geqslant": r"\geq", r"\ne": r"\neq", r"\to": r"\rightarrow", r"\gets": r"\leftarrow",
    r"\lbrack": "[", r"\rbrack": "]", r"\lbrace": r"\{", r"\rbrace": r"\}",
    r"\vert": "|", r"\lvert": "|", r"\rvert": "|", r"\Vert": r"\|", r"\lVert": r"\|", r"\rVert": r"\|",
    r"\dots": r"\ldots", r"\dotsc": r"\ldots", r"\dotsb": r"\cdots", r"\dotsm": r"\cdots",
    r"\land": r"\wedge", r"\lor": r"\vee", r"\lnot": r"\neg", r"\dfrac": r"\frac", r"\tfrac": r"\frac",
    r"\cfrac": r"\frac", r"\dbinom": r"\binom", r"\tbinom": r"\binom", r"\slash": "/", r"\colon": ":",
}
# Pasted text often carries Unicode symbols; map the common ones to their commands.
UNICODE = {
    "×": r"\times", "÷": r"\div", "±": r"\pm", "∓": r"\mp", "·": r"\cdot", "≤": r"\leq", "≥": r"\geq",
    "≠": r"\neq", "≈": r"\approx", "≡": r"\equiv", "→": r"\rightarrow", "←": r"\leftarrow",
    "∞": r"\infty", "∑": r"\sum", "∏": r"\prod", "∫": r"\int", "√": r"\sqrt", "∂": r"\partial",
    "∈": r"\in", "∀": r"\forall", "∃": r"\exists", "…": r"\ldots", "⋯": r"\cdots", "−": "-", "′": "'",
    "α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "δ": r"\delta", "θ": r"\theta", "λ": r"\lambda",
    "μ": r"\mu", "π": r"\pi", "σ": r"\sigma", "φ": r"\phi", "ω": r"\omega", "Δ": r"\Delta", "Π": r"\Pi",
}
# Commands that vanish with nothing in their place (spacing, sizing, style switches).
DROPPED = {
    r"\!", r"\,", r"\;", r"\:", r"\>", r"\quad", r"\qquad", r"\displaystyle", r"\textstyle",
    r"\scriptstyle", r"\nolimits", r"\big", r"\Big", r"\bigg", r"\Bigg", r"\bigl", r"\Bigl",
    r"\biggl", r"\Biggl", r"\bigr", r"\Bigr", r"\biggr", r"\Biggr", r"\bigm", r"\Bigm", r"\limits",
    r"\rm", r"\it",
}
# Wrappers whose content is written out bare (`\mathrm{Im}` -> `I m`), as in the captions.
UNWRAPPED = {r"\mathrm", r"\mbox", r"\text", r"\textrm", r"\textit", r"\mathit", r"\operatorname",
             r"\hbox"}
TWO_ARGS = {r"\frac", r"\binom", r"\overset", r"\underset", r"\stackrel"}
OPTIONAL_THEN_ONE = {r"\sqrt", r"\xrightarrow", r"\xleftarrow"}
ONE_ARG = {
    r"\hat", r"\bar", r"\vec", r"\dot", r"\ddot", r"\tilde", r"\widehat", r"\widetilde", r"\overline",
    r"\underline", r"\overbrace", r"\underbrace", r"\overleftarrow", r"\overrightarrow", r"\check",
    r"\grave", r"\acute", r"\breve", r"\mathbf", r"\mathbb", r"\mathcal", r"\mathfrak", r"\mathsf",
    r"\mathtt", r"\boldsymbol", r"\bm", r"\pmb", r"\boxed",
}
LIMITS = {r"\sum", r"\int", r"\lim"}  # the captions write these with `\limits` before scripts
INFIX = {r"\over", r"\choose", r"\atop"}  # a group holding one of these keeps its braces
WORDS = {"log": r"\log", "lim": r"\lim"}  # spelled-out names the captions write as commands
SCRIPTS = ("^", "_", "'")
DELIMITERS = {r"\{", r"\}", r"\|", r"\langle", r"\rangle", r"\lfloor", r"\rfloor", r"\lceil", r"\rceil",
              r"\uparrow", r"\downarrow", r"\updownarrow", r"\Uparrow", r"\Downarrow", r"\backslash"}
OPEN, CLOSE = "{", "}"  # brace tokens; literal braces are the commands `\{` and `\}`
ENV_NAME = re.compile(r"[A-Za-z]+\*?")


_CONTEXT = latexwalker.get_default_latex_context_db()  # built once, not per string


def _lex(raw: str) -> list[str]:
    r"""Tokens of raw LaTeX via pylatexenc: `\name`, single characters, the brace tokens.

    Aliases and Unicode symbols are replaced here, so `√` and `\sqrt` parse alike.
    """
    walker = latexwalker.LatexWalker(raw, latex_context=_CONTEXT, tolerant_parsing=False)
    state = walker.make_parsing_state()  # made once: pylatexenc would make one per token
    tokens: list[str] = []
    pos = 0
    while True:
        try:
            tok = walker.get_token(pos, environments=False, parsing_state=state)
        except latexwalker.LatexWalkerEndOfStream:
            return tokens
        except latexwalker.LatexWalkerError as exc:
            raise LatexError(f"Cannot read the LaTeX at position {pos}: {exc.msg}.") from None
        pos = tok.pos + tok.len
        if tok.tok == "macro" and not tok.arg.isspace():  # `\ ` and `\<newline>` are spaces
            tokens.append(ALIASES.get("\\" + tok.arg, "\\" + tok.arg))
        elif tok.tok in ("brace_open", "brace_close"):
            tokens.append(OPEN if tok.tok == "brace_open" else CLOSE)
        elif tok.tok == "char" and not tok.arg.isspace():
            tokens.append(UNICODE.get(tok.arg, tok.arg))
        elif tok.tok == "specials":  # `''`, `--`, `&`: keep the characters, not the ligature; `~` is a space
            tokens.extend(c for c in tok.arg.specials_chars if c != "~")
        # comments and the `$`, `\(`, `\[` math-mode switches carry nothing


class _Parser:
    """Recursive descent over lexed tokens, emitting canonical tokens."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.i = 0
        # The last item of the sequence just parsed, as (offset, base, sub, sup): a group such
        # as `{v_1}` followed by `^2` continues that item's scripts (`v _ { 1 } ^ { 2 }`).
        self.last: tuple[int, list[str], list[str] | None, list[str] | None] = (0, [], None, None)
        self.carry: tuple[list[str] | None, list[str] | None] = (None, None)
        self.in_index = 0  # inside `\sqrt[...]`, where a bare `]` would end the index
        self.memo: dict[tuple[int, int], tuple[list[str], int]] = {}

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise LatexError("The LaTeX ends where an argument was expected.")
        self.i += 1
        return tok

    def sequence(self, stop: str | None) -> list[str]:
        """Items up to `stop` (consumed): `}`, `]`, an environment's name, or None for the end."""
        out: list[str] = []
        last: tuple[int, list[str], list[str] | None, list[str] | None] = (0, [], None, None)
        while True:
            tok = self.peek()
            if tok is None:
                if stop is None:
                    break
                if stop == CLOSE:
                    raise LatexError("Unbalanced braces: a '{' is never closed.")
                if stop == "]":
                    raise LatexError(r"The optional argument of \sqrt is never closed with ']'.")
                raise LatexError(rf"\begin{{{stop}}} is never closed with \end{{{stop}}}.")
            if tok == stop and stop in (CLOSE, "]"):
                self.i += 1
                break
            if tok == CLOSE:
                raise LatexError("Unbalanced braces: a '}' closes nothing.")
            if tok == r"\end":
                self.i += 1
                name = self.env_name()
                if name != stop:
                    raise LatexError(rf"\end{{{name}}} has no matching \begin{{{name}}}.")
                break
            base = self.item()
            sub, sup = self.carry
            self.carry = (None, None)
            if not base and out and self.peek() in SCRIPTS:  # scripts after `\!`, `{}`, `\left.`
                offset, prev, prev_sub, prev_sup = last
                if self.continues_scripts(prev_sub, prev_sup):  # `x\!^2` -> `x ^ { 2 }`
                    del out[offset:]
                    base, sub, sup = prev, prev_sub, prev_sup
                else:  # `x^2{}^3`: an explicit empty base keeps the two superscripts apart
                    base = [OPEN, CLOSE]
            piece, sub, sup = self.scripted(base, sub, sup)
            if piece:
                last = (len(out), base, sub, sup)
                out += piece
        self.last = last
        return out

    def env_name(self) -> str:
        name = "".join(self.braced()[1:-1])
        if not ENV_NAME.fullmatch(name):
            raise LatexError(f"{name!r} is not an environment name.")
        return name

    def group_or_item(self) -> list[str]:
        """An argument: the contents of `{...}`, or else the next single item.

        Memoised by position: `continues_scripts` parses scripts twice, which would otherwise
        cost time exponential in the nesting depth of `{v_1}^{...}` patterns.
        """
        key = (self.i, self.in_index)
        if key not in self.memo:
            arg = self._group_or_item()
            self.memo[key] = (arg, self.i)
        arg, self.i = self.memo[key]
        return list(arg)

    def _group_or_item(self) -> list[str]:
        tok = self.peek()
        if tok is None or tok in (*SCRIPTS, CLOSE, "&", r"\\", r"\end"):
            where = "the end of the input" if tok is None else repr(tok)
            raise LatexError(f"An argument is missing before {where}.")
        if tok == OPEN:
            self.i += 1
            return self.sequence(CLOSE)
        return self.item()

    def braced(self) -> list[str]:
        return [OPEN, *self.group_or_item(), CLOSE]

    def item(self) -> list[str]:
        """One base: a character, a command with its arguments, or an unwrapped group."""
        tok = self.take()
        if tok == OPEN:
            inner = self.sequence(CLOSE)
            offset, base, sub, sup = self.last
            if (INFIX.intersection(inner) or (self.in_index and "]" in inner)
                    or inner[:1] in (["^"], ["_"])):
                return [OPEN, *inner, CLOSE]  # unwrapping would change the meaning
            if (sub or sup) and self.peek() in SCRIPTS:
                if not self.continues_scripts(sub, sup):
                    return [OPEN, *inner, CLOSE]  # `{x^2}^3`: unwrapping would double a script
                self.carry = (sub, sup)
                return inner[:offset] + base
            return inner
        if tok in ("^", "_"):  # a script with no base, e.g. `{}^{14}C`
            self.i -= 1
            return []
        if tok == "'":  # a prime with no base, e.g. `m^{'}`
            return [r"\prime"]
        if tok in DROPPED:
            return []
        if tok in (r"\left", r"\right", r"\middle"):
            delim = self.peek()
            if delim not in DELIMITERS and (delim is None or len(delim) > 1 or delim.isalnum()
                                            or delim in (OPEN, CLOSE, *SCRIPTS, "&")):
                raise LatexError(rf"{tok} must be followed by a delimiter such as ( or \{{.")
            self.i += 1
            return [] if delim == "." else [delim]
        if tok in UNWRAPPED:
            return self.group_or_item()
        if tok in TWO_ARGS:
            return [tok, *self.braced(), *self.braced()]
        if tok in OPTIONAL_THEN_ONE:
            out = [tok]
            if self.peek() == "[":
                self.i += 1
                self.in_index += 1
                index = self.sequence("]")
                self.in_index -= 1
                out += ["[", *index, "]"] if index else []
            return out + self.braced()
        if tok in ONE_ARG:
            return [tok, *self.braced()]
        if tok == r"\begin":
            name = self.env_name()
            out = [r"\begin", f"{{{name}}}"]
            if name == "array" and self.peek() == OPEN:  # the column specification
                out += self.braced()
            return out + self.sequence(name) + [r"\end", f"{{{name}}}"]
        if tok == r"\end":
            raise LatexError(r"An \end has no matching \begin.")
        return [tok]

    def continues_scripts(self, sub: list[str] | None, sup: list[str] | None) -> bool:
        """Can the scripts ahead join an item that already has `sub` / `sup`? (a dry run)"""
        start = self.i
        try:
            self.scripted([], sub, sup)
            return True
        except LatexError:
            return False
        finally:
            self.i = start

    def scripted(self, base: list[str], sub: list[str] | None = None, sup: list[str] | None = None
                 ) -> tuple[list[str], list[str] | None, list[str] | None]:
        """`base` and the scripts that follow it, as (tokens, sub, sup); `_ {..}` before `^ {..}`."""
        while self.peek() in (*SCRIPTS, r"\limits", r"\nolimits"):
            tok = self.take()
            if tok in (r"\limits", r"\nolimits"):  # re-added where the captions have it
                continue
            if tok == "'":  # f'' -> f ^ { \prime \prime }; f'^2 -> f ^ { \prime 2 } as in TeX
                sup = (sup or []) + [r"\prime"]
                continue
            arg = self.group_or_item()
            if tok == "_":
                if sub is not None:
                    raise LatexError("Double subscript: add braces, e.g. x_{1_2}.")
                sub = arg
            elif sup is None or all(t == r"\prime" for t in sup):
                sup = (sup or []) + arg
            else:
                raise LatexError("Double superscript: add braces, e.g. x^{2^3}.")
        out = list(base)
        if sub:  # an empty script (`x _ { }`) is dropped
            out += ["_", OPEN, *sub, CLOSE]
        if sup:
            out += ["^", OPEN, *sup, CLOSE]
        return out, sub or None, sup or None


def _spelled_and_limits(tokens: list[str]) -> list[str]:
    r"""`l o g` -> `\log` (and `lim`) unless the letters continue a word, and `\limits` before
    the scripts of `\sum \int \lim`.

    Applied to the parsed tokens rather than the input, so that `{l}og` and `log` agree and a
    second normalisation finds nothing left to change.
    """
    out: list[str] = []
    i = 0
    while i < len(tokens):
        word = WORDS.get("".join(tokens[i:i + 3]))
        after_letter = bool(out) and len(out[-1]) == 1 and out[-1].isalpha()
        if word and not after_letter and all(len(t) == 1 for t in tokens[i:i + 3]):
            out.append(word)
            i += 3
        else:
            out.append(tokens[i])
            i += 1
        if out[-1] in LIMITS and i < len(tokens) and tokens[i] in ("_", "^"):
            out.append(r"\limits")
    return out


def normalize(raw: str) -> str:
    """Raw LaTeX (InkML truth, MathWriting label, pasted text) -> canonical tokenised LaTeX.

    Raises LatexError for input that cannot be parsed: unbalanced braces, a missing argument,
    an unclosed or mismatched environment, a double subscript or superscript.
    """
    if not isinstance(raw, str):
        raise LatexError(f"Expected LaTeX text, got {type(raw).__name__}.")
    try:
        tokens = _Parser(_lex(raw)).sequence(None)
    except RecursionError:
        raise LatexError("The LaTeX is nested too deeply to read.") from None
    return " ".join(_spelled_and_limits(tokens))
