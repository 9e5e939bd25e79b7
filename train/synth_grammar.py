"""A random grammar of handwritten-math expressions shaped like CROHME.

The weights below were read off the CROHME 2016 training captions (8,835 expressions) at development
time: symbol frequencies per class, how often fractions, roots, scripts, big operators and functions
appear, and the length distribution (median 13 tokens, mostly 5-30). Nothing is read at run time.
Labels come out in the canonical space-tokenised CROHME form (`\\frac { 1 } { x ^ { 2 } }`) and use
only the CROHME vocabulary. Big operators with limits carry `\\limits` (`\\sum \\limits _ { i = 1 } ^ { n }`),
the convention of the CROHME 2014/2016/2019 ground truth the paper scores against (and of
`unimumer.latex.normalize`).
"""
from __future__ import annotations

import bisect
import itertools
import random


def _table(spec: str) -> tuple[list[str], list[float]]:
    """'tok:weight tok:weight ...' -> (tokens, cumulative weights) for fast weighted choice."""
    pairs = [item.rsplit(":", 1) for item in spec.split()]
    return [t for t, _ in pairs], list(itertools.accumulate(float(w) for _, w in pairs))


# Symbol frequencies in the CROHME training captions.
LOWER = _table(
    "x:5031 a:2474 n:2238 y:1765 b:1599 z:1074 d:1063 i:958 c:942 t:690 f:676 k:619 p:565 r:487 m:476 "
    "e:463 u:321 g:316 q:309 j:301 v:285 h:270 s:234 w:139 l:119 o:112"
)
UPPER = _table(
    "X:279 A:277 C:258 B:239 R:187 F:168 E:145 L:136 N:135 S:117 Y:117 P:106 V:106 H:100 M:99 T:97 G:88 I:69"
)
DIGIT = _table("1:6207 2:6193 3:2457 0:1772 4:1635 5:1003 6:795 7:749 8:728 9:728")
GREEK = _table(
    r"\theta:544 \pi:498 \alpha:383 \beta:295 \gamma:90 \phi:83 \sigma:52 \mu:46 \Delta:35 \lambda:27"
)
BINOP = _table(r"+:5400 -:4300 \times:600 /:200 \pm:150 \div:150 \cdot:150")
RELATION = _table(r"=:3600 \leq:220 \geq:150 \neq:110 <:105 >:56 \rightarrow:90 \in:14")
FUNCTION = _table(r"\sin:783 \cos:575 \tan:286 \log:297")
INDEX = _table("i:5 j:2 k:3 n:4 m:1")
SUP_SIMPLE = _table("2:2520 3:513 n:310 x:270 4:165 1:87 5:79 p:79 b:76 y:70 t:64 d:58 k:50 0:45 m:43 6:34 8:30")
SUB_SIMPLE = _table("1:674 2:598 0:491 n:417 i:224 3:208 4:154 k:143 a:108 c:69 x:51 z:50 j:46 y:43 p:37 m:32")
# Number of tokens per expression, in buckets of 5 (0-4, 5-9, ..., 55-59), CROHME training captions.
LENGTH_BUCKETS = _table(
    "0:1600 5:1955 10:1335 15:1111 20:1078 25:609 30:442 35:303 40:138 45:114 50:80 55:70"
)

# The CROHME training vocabulary (110 tokens). Every label uses only these.
VOCAB = frozenset(
    "{ } ( ) [ ] | , . / ! ' < > = + - ^ _ 0 1 2 3 4 5 6 7 8 9 "
    "a b c d e f g h i j k l m n o p q r s t u v w x y z A B C E F G H I L M N P R S T V X Y "
    r"\{ \} \frac \sqrt \sum \int \lim \limits \sin \cos \tan \log \times \div \pm \cdot \cdots \ldots "
    r"\theta \pi \alpha \beta \gamma \phi \sigma \mu \Delta \lambda \infty \rightarrow \leq \geq \neq "
    r"\in \forall \exists \prime".split()
)


def pick(rng: random.Random, table: tuple[list[str], list[float]]) -> str:
    tokens, cumulative = table
    return tokens[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]


class Grammar:
    """Draws one expression at a time; `size` (0 = tiny, ~1 = typical, 3 = long) steers its length."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        # Real expressions reuse a few variables (x ^ { 2 } + 2 x + 1): draw them once per expression.
        self.pool = [pick(rng, LOWER) for _ in range(rng.randint(1, 3))]

    # -- leaves ---------------------------------------------------------------------------------
    def variable(self) -> list[str]:
        r = self.rng.random()
        if r < 0.5:
            return [self.rng.choice(self.pool)]
        if r < 0.84:
            return [pick(self.rng, LOWER)]
        if r < 0.94:
            return [pick(self.rng, UPPER)]
        return [pick(self.rng, GREEK)]

    def number(self, max_digits: int = 4) -> list[str]:
        rng = self.rng
        n = min(max_digits, 1 + int(rng.expovariate(1.2)))
        digits = [pick(rng, DIGIT)]
        while digits[0] == "0" and n > 1:
            digits[0] = pick(rng, DIGIT)
        digits += [pick(rng, DIGIT) for _ in range(n - 1)]
        if rng.random() < 0.025:  # a decimal: 7 1 . 0 8
            digits += ["."] + [pick(rng, DIGIT) for _ in range(rng.randint(1, 2))]
        return digits

    def atom(self) -> list[str]:
        r = self.rng.random()
        if r < 0.66:
            return self.variable()
        if r < 0.985:
            return self.number(3)
        return [r"\infty"] if r < 0.99 else [r"\pi"]

    @staticmethod
    def group(tokens: list[str]) -> list[str]:
        return ["{", *tokens, "}"]

    # -- scripts --------------------------------------------------------------------------------
    def sup(self, size: float) -> list[str]:
        rng = self.rng
        r = rng.random()
        if r < 0.72 or size < 0.5:
            return [pick(rng, SUP_SIMPLE)]
        if r < 0.80:
            return ["-", pick(rng, SUP_SIMPLE)]
        if r < 0.88:
            return [pick(rng, INDEX), rng.choice("+-"), pick(rng, DIGIT)]
        if r < 0.91:
            return [r"\prime"]
        if r < 0.96:
            return self.side(size * 0.4, max_terms=2)
        return [r"\frac", *self.group([pick(rng, DIGIT)]), *self.group([pick(rng, SUP_SIMPLE)])]

    def sub(self, size: float) -> list[str]:
        rng = self.rng
        r = rng.random()
        if r < 0.78 or size < 0.5:
            return [pick(rng, SUB_SIMPLE)]
        if r < 0.90:
            return [pick(rng, INDEX), rng.choice("+-"), pick(rng, DIGIT)]
        if r < 0.95:
            return [pick(rng, INDEX), pick(rng, INDEX)]
        return [pick(rng, INDEX), ",", pick(rng, INDEX)]

    def scripted(self, base: list[str], size: float, p_sup: float = 0.2, p_sub: float = 0.11) -> list[str]:
        rng = self.rng
        out = list(base)
        if base[-1][0].isdigit():  # numbers take a power now and then (2 ^ { n }), an index almost never
            p_sup, p_sub = p_sup * 0.3, 0.0
        elif base[-1] == r"\infty":
            return out
        if rng.random() < p_sub:
            out += ["_", *self.group(self.sub(size))]
        if rng.random() < p_sup:
            out += ["^", *self.group(self.sup(size))]
        return out

    # -- structures -----------------------------------------------------------------------------
    def fenced(self, size: float) -> list[str]:
        rng = self.rng
        left, right = rng.choices([("(", ")"), ("[", "]"), ("|", "|"), (r"\{", r"\}")], [40, 4, 4, 1])[0]
        body = self.side(size * 0.6, max_terms=3)
        out = [left, *body, right]
        if rng.random() < 0.3:
            out += ["^", *self.group(self.sup(size * 0.5))]
        return out

    def fraction(self, size: float) -> list[str]:
        inner = size * 0.45
        return [r"\frac", *self.group(self.side(inner, max_terms=3)), *self.group(self.side(inner, max_terms=3))]

    def root(self, size: float) -> list[str]:
        rng = self.rng
        out = [r"\sqrt"]
        if rng.random() < 0.12:
            out += ["[", rng.choice(["3", "3", "n", "4", pick(rng, LOWER)]), "]"]
        return out + self.group(self.side(size * 0.5, max_terms=3))

    def function(self, size: float) -> list[str]:
        rng = self.rng
        name = pick(rng, FUNCTION)
        out = [name]
        if name == r"\log" and rng.random() < 0.6:
            out += ["_", *self.group(rng.choice(["2", "2", "3", "4", "1 0", "a", "b", "e"]).split())]
        elif rng.random() < 0.15:
            out += ["^", *self.group(rng.choice(["2", "2", "2", "3", "- 1", "n"]).split())]
        r = rng.random()
        if r < 0.4:
            out += ["(", *self.side(size * 0.5, max_terms=2), ")"]
        elif r < 0.75:
            out += [rng.choice([r"\theta", r"\alpha", r"\beta", "x", "x", "y", "t", "A", "B", "C"])]
        elif r < 0.9:
            out += [pick(rng, DIGIT), rng.choice(["x", r"\theta", "t"])]
        else:
            out += self.fraction(size * 0.5)
        return out

    def applied(self, size: float) -> list[str]:
        """f ( x ), g ( x , y ), f ^ { \\prime } ( x )."""
        rng = self.rng
        name = rng.choice(["f", "f", "f", "g", "h", "F", "P", "u", "y"])
        out = [name]
        if rng.random() < 0.12:
            out += ["^", "{", r"\prime", "}"]
        args = [self.side(size * 0.35, max_terms=2) for _ in range(rng.choices([1, 2, 3], [8, 2, 1])[0])]
        out.append("(")
        for i, arg in enumerate(args):
            out += ([","] if i else []) + arg
        return out + [")"]

    def big_operator(self, size: float) -> list[str]:
        rng = self.rng
        limits = [r"\limits"]
        r = rng.random()
        if r < 0.42:  # \sum \limits _ { i = 1 } ^ { n } body
            i = pick(rng, INDEX)
            out = [r"\sum"]
            if rng.random() < 0.9:
                out += limits + ["_", *self.group([i, "=", rng.choice("0111")])]
                out += ["^", *self.group(rng.choice(["n", "n", "N", r"\infty", "k", "1 0"]).split())]
            body = self.scripted([pick(rng, LOWER)], size, p_sub=0.7, p_sup=0.3)
            if rng.random() < 0.3:
                body = self.term(size * 0.5)
            return out + body
        if r < 0.80:  # \int \limits _ { a } ^ { b } f ( x ) d x
            var = rng.choice(["x", "x", "x", "t", "y", "u"])
            out = [r"\int"]
            if rng.random() < 0.55:
                lo, hi = rng.choice([("0", "1"), ("a", "b"), ("0", r"\infty"), ("1", "2"), ("0", "x"),
                                     (pick(rng, DIGIT), pick(rng, DIGIT)), ("- \\infty", "\\infty")])
                out += limits + ["_", *self.group(lo.split()), "^", *self.group(hi.split())]
            if rng.random() < 0.4:
                body = self.fraction(size * 0.5)
            elif rng.random() < 0.5:
                body = ["f", "(", var, ")"]
            else:
                body = self.side(size * 0.4, max_terms=2, var=var)
            return out + body + ["d", var]
        # \lim \limits _ { x \rightarrow 0 } body
        var = rng.choice(["x", "x", "n", "n", "h", "t"])
        target = rng.choice([["0"], [r"\infty"], [r"\infty"], ["1"], ["a"], ["-", "1"], ["+", r"\infty"]])
        body = self.fraction(size * 0.7) if rng.random() < 0.55 else self.term(size * 0.6)
        return [r"\lim", *limits, "_", *self.group([var, r"\rightarrow", *target]), *body]

    def factor(self, size: float, var: str | None = None) -> list[str]:
        """One multiplicative piece: a scripted atom, a fraction, a root, a function, a group."""
        rng = self.rng
        if size < 0.35:
            return self.scripted([var] if var and rng.random() < 0.5 else self.atom(), size)
        weights = [56, 15 * size, 8 * size, 5, 4, 8 * min(size, 1.5), 3 * size]
        kind = rng.choices(range(7), weights)[0]
        if kind == 0:
            base = [var] if var and rng.random() < 0.5 else self.atom()
            return self.scripted(base, size)
        return [self.fraction, self.root, self.function, self.applied, self.fenced, self.big_operator][kind - 1](size)

    def term(self, size: float, var: str | None = None) -> list[str]:
        """Implicit products: 2 x y ^ { 2 }, 3 \\sqrt { x }, n !"""
        rng = self.rng
        out: list[str] = []
        if rng.random() < 0.25:
            out += self.number(2)
            while out[0] == "0":
                out[0] = pick(rng, DIGIT)
            if rng.random() < 0.5:  # 2 x, not 2 5
                return out + self.scripted([var or self.rng.choice(self.pool)], size)
        out += self.factor(size, var)
        while rng.random() < 0.22 * min(size, 2.0):
            out += self.factor(size * 0.7, var)
        if rng.random() < 0.005:
            out.append("!")
        return out

    def side(self, size: float, max_terms: int = 8, var: str | None = None) -> list[str]:
        """Terms joined by + - \\times ...; an optional leading minus."""
        rng = self.rng
        n = max(1, min(max_terms, 1 + int(rng.expovariate(1.0 / max(size * 1.5, 0.1)))))
        out = ["-"] if rng.random() < 0.08 else []
        for i in range(n):
            if i:
                out.append(pick(rng, BINOP))
            out += self.term(size / (1 + 0.35 * i), var)
        return out

    # -- whole expressions ----------------------------------------------------------------------
    def polynomial(self, size: float) -> list[str]:
        """x ^ { 3 } - 3 x ^ { 2 } + 2 x - 1"""
        rng = self.rng
        x = rng.choice(self.pool)
        degree = max(1, min(5, int(1 + size * rng.uniform(0.5, 1.5))))
        out: list[str] = []
        for k in range(degree, -1, -1):
            if k < degree and rng.random() < 0.3:
                continue
            if out:
                out.append(rng.choice("++-"))
            if k == 0 or rng.random() < 0.5:
                out += self.number(2)
                while out[-1] == "0" and k == 0:
                    out[-1] = pick(rng, DIGIT)
            if k:
                out.append(x)
                if k > 1:
                    out += ["^", "{", str(k), "}"]
        return out

    def sequence(self, size: float) -> list[str]:
        """a _ { 1 } , a _ { 2 } , \\ldots , a _ { n }  or  x _ { 1 } + \\cdots + x _ { n }"""
        rng = self.rng
        name = pick(rng, LOWER)
        sep = rng.choice([",", ",", "+", r"\times"])
        dots = r"\ldots" if sep == "," or rng.random() < 0.5 else r"\cdots"
        items = [[name, "_", "{", str(k), "}"] for k in range(1, rng.randint(2, 4))]
        items += [[dots], [name, "_", "{", rng.choice(["n", "k", "m"]), "}"]]
        out = list(items[0])
        for item in items[1:]:
            out += [sep, *item]
        if rng.random() < 0.3:
            out = ["(", *out, ")"]
        return out

    def logic(self) -> list[str]:
        rng = self.rng
        q = rng.choice([r"\forall", r"\forall", r"\exists"])
        v = pick(rng, LOWER)
        out = [q, v, r"\in", pick(rng, UPPER)]
        if rng.random() < 0.5:
            out += [",", v, rng.choice(["<", ">", r"\leq", r"\geq", r"\neq"]), self.atom()[0]]
        return out

    def expression(self, size: float) -> list[str]:
        rng = self.rng
        if size < 0.12:
            return self.scripted(self.atom(), 0.0, p_sup=0.15, p_sub=0.1)
        r = rng.random()
        if r < 0.03:
            return self.sequence(size)
        if r < 0.04:
            return self.logic()
        if r < 0.13 and size > 0.6:  # \sum, \int or \lim first, then maybe = something
            out = self.big_operator(size)
            if rng.random() < 0.5:
                out += ["=", *self.side(size * 0.4, max_terms=3)]
            return out
        if r < 0.20:
            out = self.polynomial(size)
            if rng.random() < 0.4:
                out += [pick(rng, RELATION), *rng.choice([["0"], self.polynomial(size * 0.5)])]
            return out
        if r < 0.53:
            out = self.side(size * 0.6)
            out += [pick(rng, RELATION), *self.side(size * 0.5)]
            if rng.random() < 0.06:  # a chain: a = b = c
                out += ["=", *self.side(size * 0.3)]
            return out
        return self.side(size)


def sample_latex(rng: random.Random, max_len: int = 60) -> str:
    """One CROHME-like label. Its length follows the CROHME length distribution (capped at max_len)."""
    grammar = Grammar(rng)
    while True:
        low = int(pick(rng, LENGTH_BUCKETS))
        if low < max_len:
            break
    high = min(low + 5, max_len + 1)
    # The size that lands in each length bucket most often (tuned against this grammar).
    size = 0.05 + low / 11.0
    best: list[str] | None = None
    for _ in range(40):
        tokens = grammar.expression(size * rng.uniform(0.7, 1.3))
        if low <= len(tokens) < high:
            return " ".join(tokens)
        if len(tokens) <= max_len and (best is None or abs(len(tokens) - low) < abs(len(best) - low)):
            best = tokens
        size *= 1.08 if len(tokens) < low else 0.92
    return " ".join(best) if best else "x"
