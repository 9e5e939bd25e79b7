"""Handwriting-like ink for a tokenised LaTeX label: glyph skeletons, a small math layout, and jitter.

Glyphs: the outline of a character in a font is rasterised, thinned to a one-pixel skeleton
(scikit-image) and traced into polylines, so every symbol becomes pen strokes like a CROHME ink
(cached per font and character). Letters, digits and brackets come from handwriting fonts (Debian's
fonts-dkg-handwriting, fonts-breip, fonts-klee, fonts-comic-neue; matplotlib's DejaVu when those are
absent), Greek and big operators from Klee One or DejaVu Sans; lines, arrows, dots, the fraction bar
and the root sign are drawn as strokes directly, the way people write them.

Layout: a box model for the CROHME structures (rows, sub/superscripts, fractions, roots with an
index, \\sum / \\int / \\lim with limits, functions, brackets that stretch to their content) instead of
a TeX engine, so the label and the drawing can never disagree. Coordinates are in units of about a
capital's height / 0.7, y up, while laying out; the ink is y-down like InkML.

Style: every sample draws a writer (fonts, spacing, script size, slant, jitter amounts), then every
glyph and stroke gets its own small rotation / shear / scale / offset, points get smooth noise, and
the whole line gets slant, rotation, a stretch and a smooth warp (wavy baseline).
"""
from __future__ import annotations

import functools
import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unimumer.ink import Ink

# --------------------------------------------------------------------------------------- fonts
_DEBIAN = Path("/usr/share/fonts")
HANDWRITING_FONTS = {  # name -> (Debian package, file); all OFL
    "dkg": ("fonts-dkg-handwriting", _DEBIAN / "truetype/fifthhorseman/dkg.ttf"),
    "breip": ("fonts-breip", _DEBIAN / "truetype/breip/Breip.ttf"),
    "klee": ("fonts-klee", _DEBIAN / "truetype/klee/KleeOne-Regular.ttf"),
    "comic": ("fonts-comic-neue", _DEBIAN / "opentype/comic-neue/ComicNeue-Regular.otf"),
}
# Characters a font draws poorly, taken from another: dkg's capitals are hollow brush strokes, its digits
# small raised figures.
POOR = {"dkg": frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789g!")}
TEXT_WEIGHTS = {"dkg": 2.0, "breip": 2.0, "klee": 3.0, "comic": 2.0, "sans": 1.5}
# Fonts that hold Greek and the big operators, best first.
SYMBOL_FONTS = ("klee", "sans")
RASTER = 96  # pixels per unit when skeletonising: fine enough for smooth traces, ~1 ms per glyph


def _bundled(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path(), "fonts", "ttf", name)


@functools.lru_cache(maxsize=None)
def available_fonts() -> dict[str, Path]:
    """Font name -> file. Warns once when the Debian handwriting fonts are missing."""
    fonts = {name: path for name, (_, path) in HANDWRITING_FONTS.items() if path.exists()}
    missing = [pkg for name, (pkg, _) in HANDWRITING_FONTS.items() if name not in fonts]
    if missing:
        warnings.warn(
            f"Handwriting fonts missing ({', '.join(missing)}); synthetic ink falls back to matplotlib's "
            "DejaVu fonts and looks less handwritten. Install them with: apt-get install " + " ".join(missing),
            stacklevel=2,
        )
    fonts["sans"] = _bundled("DejaVuSans.ttf")
    return fonts


@functools.lru_cache(maxsize=None)
def _charmap(font: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(str(available_fonts()[font]), lazy=True).getBestCmap())


@functools.lru_cache(maxsize=None)
def _font_scale(font: str) -> float:
    """Units per em so that a capital H is 0.7 units tall in every font."""
    polys = _outline(font, "H")
    return 0.7 / max(np.ptp(np.concatenate(polys)[:, 1]), 1e-6)


def _outline(font: str, char: str) -> list[np.ndarray]:
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    path = TextPath((0, 0), char, size=1, prop=FontProperties(fname=str(available_fonts()[font])))
    return [p for p in path.to_polygons() if len(p) > 2]


# ------------------------------------------------------------------------- skeleton tracing
_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _graph(pixels: set[tuple[int, int]]) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """8-connected pixel graph without the diagonal shortcuts of staircase corners."""
    graph = {}
    for y, x in pixels:
        near = []
        for dy, dx in _NEIGHBOURS:
            q = (y + dy, x + dx)
            if q not in pixels:
                continue
            if dy and dx and ((y + dy, x) in pixels or (y, x + dx) in pixels):
                continue  # a 4-connected route exists: the diagonal would make a false junction
            near.append(q)
        graph[(y, x)] = near
    return graph


def _walk(graph, start, first, used) -> list[tuple[int, int]]:
    path, prev, cur = [start], start, first
    used.add((start, first))
    used.add((first, start))
    while True:
        path.append(cur)
        if len(graph[cur]) != 2:
            return path
        nxt = graph[cur][0] if graph[cur][1] == prev else graph[cur][1]
        if (cur, nxt) in used:
            return path
        used.add((cur, nxt))
        used.add((nxt, cur))
        prev, cur = cur, nxt


def _trace(pixels: set[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Skeleton pixels -> polylines between endpoints/junctions, plus closed loops and lone dots."""
    graph = _graph(pixels)
    used: set = set()
    paths = []
    for node, near in graph.items():
        if len(near) != 2:
            for q in near:
                if (node, q) not in used:
                    path = _walk(graph, node, q, used)
                    if len(path) > 2 or len(graph[path[-1]]) < 3 or len(near) < 3:
                        paths.append(path)  # (not a one-step link inside a junction cluster)
            if not near:
                paths.append([node])
    for node, near in graph.items():  # what is left are loops (o, 0, the bowl of a closed 4 ...)
        for q in near:
            if (node, q) not in used:
                paths.append(_walk(graph, node, q, used))
    return paths


def _prune(pixels: set, spur: float) -> set:
    """Drop short branches hanging off a junction (serif and corner artefacts of thinning)."""
    for _ in range(2):
        graph = _graph(pixels)
        removed = False
        for path in _trace(pixels):
            ends = [len(graph[path[0]]), len(graph[path[-1]])]
            if len(path) < spur and min(ends) == 1 and max(ends) >= 3:
                inner = path[1:] if ends[0] > 2 else path[:-1]
                pixels -= set(inner)
                removed = True
        if not removed:
            break
    return pixels


def _smooth(points: np.ndarray, closed: bool) -> np.ndarray:
    if len(points) < 5:
        return points
    kernel = np.array([1, 2, 3, 2, 1], float) / 9
    if closed:
        padded = np.concatenate([points[-2:], points, points[:2]])
        return np.stack([np.convolve(padded[:, i], kernel, "valid") for i in range(2)], 1)
    padded = np.concatenate([points[:1].repeat(2, 0), points, points[-1:].repeat(2, 0)])
    out = np.stack([np.convolve(padded[:, i], kernel, "valid") for i in range(2)], 1)
    out[0], out[-1] = points[0], points[-1]
    return out


@dataclass(frozen=True)
class Glyph:
    points: np.ndarray  # (N, 2) the strokes one after another, y up, baseline at 0, left edge at 0
    lengths: tuple[int, ...]  # points per stroke
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the strokes
    drawn: bool = False  # strokes are whole pen strokes (not skeleton pieces that meet at junctions)
    xheight: float = 0.0  # height of an x in the glyph's font (0: not a font glyph)


def _make_glyph(strokes: list[np.ndarray], drawn: bool = False, xheight: float = 0.0) -> Glyph:
    points = np.concatenate(strokes)
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    box = (0.0, float(y0), float(x1 - x0), float(y1))
    return Glyph(points - (x0, 0), tuple(len(s) for s in strokes), box, drawn, xheight)


@functools.lru_cache(maxsize=None)
def font_glyph(font: str, char: str) -> Glyph | None:
    """The skeleton strokes of `char` in `font`, or None when the font has no such character."""
    from PIL import Image, ImageDraw
    from skimage.morphology import skeletonize

    if ord(char) not in _charmap(font) or char in POOR.get(font, ()):
        return None
    polys = _outline(font, char)
    if not polys:
        return None
    scale = _font_scale(font)
    polys = [p * scale for p in polys]
    low = np.concatenate(polys).min(0) - 0.05
    high = np.concatenate(polys).max(0) + 0.05
    w, h = (np.ceil((high - low) * RASTER)).astype(int) + 1
    winding = np.zeros((h, w), np.int16)
    for poly in polys:  # non-zero winding, as TrueType: overlapping strokes merge, reversed contours are holes
        canvas = Image.new("1", (int(w), int(h)), 0)
        xy = (poly - low) * RASTER
        xy[:, 1] = h - xy[:, 1]
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in xy], fill=1)
        area = np.sum(poly[:-1, 0] * poly[1:, 1] - poly[1:, 0] * poly[:-1, 1])
        winding += np.asarray(canvas).astype(np.int16) * (1 if area > 0 else -1)
    skeleton = skeletonize(winding != 0)
    pixels = set(zip(*np.nonzero(skeleton)))
    pixels = _prune(pixels, spur=0.07 * RASTER)
    strokes = []
    for path in _trace(pixels):
        yx = np.array(path, float)
        closed = len(path) > 3 and path[0] == path[-1]
        xy = np.stack([yx[:, 1], h - yx[:, 0]], 1) / RASTER + low
        xy = _smooth(xy, closed)[:: 2 if len(xy) > 6 else 1]
        strokes.append(xy)
    if not strokes:
        return None
    if char == "x":
        xheight = max(float(s[:, 1].max()) for s in strokes)
    else:
        x = font_glyph(font, "x")
        xheight = x.xheight if x is not None else 0.5
    return _make_glyph(strokes, xheight=xheight)


# --------------------------------------------------------------------- hand-drawn symbols
def _line(*points) -> np.ndarray:
    return np.array(points, float)


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 12) -> np.ndarray:
    t = np.linspace(start, end, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _lemniscate() -> np.ndarray:
    t = np.linspace(0.5 * math.pi, 2.5 * math.pi, 40)
    d = 1 + np.sin(t) ** 2
    return np.stack([0.36 * np.cos(t) / d + 0.36, 0.32 * np.sin(t) * np.cos(t) / d + 0.3], 1)


AXIS = 0.3  # height of the math axis (minus sign, fraction bar)
DRAWN: dict[str, list[np.ndarray]] = {
    "-": [_line((0, AXIS), (0.42, AXIS))],
    "+": [_line((0, AXIS), (0.46, AXIS)), _line((0.23, AXIS + 0.23), (0.23, AXIS - 0.23))],
    "=": [_line((0, AXIS + 0.1), (0.46, AXIS + 0.1)), _line((0, AXIS - 0.1), (0.46, AXIS - 0.1))],
    r"\times": [_line((0, AXIS + 0.17), (0.34, AXIS - 0.17)), _line((0.34, AXIS + 0.17), (0, AXIS - 0.17))],
    r"\div": [_line((0, AXIS), (0.44, AXIS)), _line((0.22, AXIS + 0.16)), _line((0.22, AXIS - 0.16))],
    r"\pm": [_line((0, AXIS + 0.08), (0.44, AXIS + 0.08)), _line((0.22, AXIS + 0.3), (0.22, AXIS - 0.14)),
             _line((0, AXIS - 0.24), (0.44, AXIS - 0.24))],
    "<": [_line((0.38, AXIS + 0.22), (0, AXIS), (0.38, AXIS - 0.22))],
    ">": [_line((0, AXIS + 0.22), (0.38, AXIS), (0, AXIS - 0.22))],
    r"\leq": [_line((0.38, AXIS + 0.28), (0, AXIS + 0.1), (0.38, AXIS - 0.08)),
              _line((0, AXIS - 0.22), (0.4, AXIS - 0.3))],
    r"\geq": [_line((0, AXIS + 0.28), (0.38, AXIS + 0.1), (0, AXIS - 0.08)),
              _line((0, AXIS - 0.3), (0.4, AXIS - 0.22))],
    r"\neq": [_line((0, AXIS + 0.1), (0.46, AXIS + 0.1)), _line((0, AXIS - 0.1), (0.46, AXIS - 0.1)),
              _line((0.12, AXIS - 0.3), (0.34, AXIS + 0.3))],
    r"\rightarrow": [_line((0, AXIS), (0.7, AXIS)), _line((0.56, AXIS + 0.13), (0.71, AXIS), (0.56, AXIS - 0.13))],
    "/": [_line((0, -0.12), (0.36, 0.78))],
    "|": [_line((0, -0.12), (0, 0.8))],
    ".": [_line((0, 0.01))],
    r"\cdot": [_line((0, AXIS))],
    r"\ldots": [_line((0, 0.01)), _line((0.2, 0.01)), _line((0.4, 0.01))],
    r"\cdots": [_line((0, AXIS)), _line((0.2, AXIS)), _line((0.4, AXIS))],
    r"\prime": [_line((0.1, 0.72), (0, 0.42))],
    "'": [_line((0.05, 0.75), (0, 0.5))],
    "!": [_line((0.04, 0.72), (0, 0.2)), _line((0, 0.01))],
    r"\infty": [_lemniscate()],
}
# Hand forms no font here has, used by some writers: the x of two arcs, the 1 with a long flag.
ALLOGRAPHS: dict[str, list[np.ndarray]] = {
    "x": [_arc(0.0, 0.24, 0.17, 0.24, 0.5 * math.pi, -0.5 * math.pi),
          _arc(0.35, 0.24, 0.17, 0.24, 0.5 * math.pi, 1.5 * math.pi)],
    "1": [_line((0.0, 0.5), (0.22, 0.7), (0.22, 0.0))],
    "z": [_line((0.0, 0.45), (0.34, 0.45), (0.0, 0.0), (0.36, 0.0)), _line((0.06, 0.22), (0.3, 0.22))],
}
SYMBOLS = {  # tokens drawn from a symbol font's glyph
    r"\alpha": "α", r"\beta": "β", r"\gamma": "γ", r"\theta": "θ", r"\pi": "π", r"\phi": "φ",
    r"\sigma": "σ", r"\mu": "μ", r"\lambda": "λ", r"\Delta": "Δ", r"\sum": "Σ", r"\int": "∫",
    r"\in": "∈", r"\forall": "∀", r"\exists": "∃",
}
BRACES = {r"\{": "{", r"\}": "}"}  # drawn in the writer's hand like ( and [
SMALL = set("acemnorsuvwxz") | {r"\alpha", r"\gamma", r"\pi", r"\sigma", r"\mu"}  # x-height letters
FUNCTIONS = {r"\sin": "sin", r"\cos": "cos", r"\tan": "tan", r"\log": "log", r"\lim": "lim"}
FENCES = {"(": ")", "[": "]", r"\{": r"\}", "|": "|"}
CLOSERS = {")", "]", r"\}"}
RELATIONS = {"=", r"\leq", r"\geq", r"\neq", "<", ">", r"\rightarrow", r"\in"}
BINARY = {"+", "-", r"\times", r"\div", r"\pm", r"\cdot", "/"}
DRAWN_GLYPHS = {token: _make_glyph(strokes, drawn=True) for token, strokes in DRAWN.items()}
ALLOGRAPH_GLYPHS = {token: _make_glyph(strokes, drawn=True, xheight=0.48) for token, strokes in ALLOGRAPHS.items()}


# ----------------------------------------------------------------------------------- style
@dataclass
class Style:
    """One writer's habits, drawn per sample."""

    text_font: str
    alt_font: str
    symbol_font: str
    gap: float  # space between symbols
    op_gap: float  # extra space around + = ...
    script_scale: float
    frac_scale: float
    glyph_rotation: float  # standard deviations of per-glyph distortions
    glyph_shear: float
    glyph_scale: float
    baseline: float
    stroke_jitter: float  # per-stroke offset / size change (the two bars of '=' differ)
    point_noise: float
    slant: float
    rotation: float
    stretch: float
    warp: float
    root_hook: bool
    xheight: float  # of small letters (a capital is 0.7)
    allographs: frozenset[str]  # tokens this writer draws with a hand form from ALLOGRAPHS
    limits_beside: bool  # \int limits written beside the sign rather than above/below

    @classmethod
    def draw(cls, rng: random.Random, fonts: dict[str, Path]) -> "Style":
        names = [f for f in TEXT_WEIGHTS if f in fonts]
        weights = [TEXT_WEIGHTS[f] for f in names]
        text = rng.choices(names, weights)[0]
        return cls(
            text_font=text,
            alt_font=rng.choices(names, weights)[0],
            symbol_font=next(f for f in SYMBOL_FONTS if f in fonts) if rng.random() < 0.7 else "sans",
            gap=0.05 + 0.35 * rng.random() ** 1.5,
            op_gap=0.03 + 0.4 * rng.random() ** 1.5,
            script_scale=rng.uniform(0.5, 0.75),
            frac_scale=rng.uniform(0.75, 1.0),
            glyph_rotation=rng.uniform(0.02, 0.09),
            glyph_shear=rng.uniform(0.03, 0.15),
            glyph_scale=rng.uniform(0.04, 0.12),
            baseline=rng.uniform(0.01, 0.05),
            stroke_jitter=rng.uniform(0.01, 0.04),
            point_noise=rng.uniform(0.003, 0.014),
            slant=rng.gauss(0.1, 0.12),
            rotation=rng.gauss(0.0, 0.025),
            stretch=rng.uniform(0.85, 1.2),
            warp=rng.uniform(0.0, 0.06),
            root_hook=rng.random() < 0.6,
            xheight=rng.uniform(0.4, 0.5),
            allographs=frozenset(t for t in ALLOGRAPHS if rng.random() < 0.3),
            limits_beside=rng.random() < 0.8,
        )


# ---------------------------------------------------------------------------------- layout
@dataclass
class Box:
    width: float
    ascent: float  # above the baseline
    descent: float  # below the baseline (positive)
    pieces: list[tuple[np.ndarray, tuple[int, ...]]] = field(default_factory=list)  # (points, stroke lengths)

    def add(self, other: "Box", dx: float, dy: float) -> None:
        """Draw `other` with its origin at (dx, dy) of this box."""
        self.pieces += [(p + (dx, dy), lengths) for p, lengths in other.pieces]

    def stroke(self, points) -> None:
        points = np.asarray(points, float)
        self.pieces.append((points, (len(points),)))


class Writer:
    """Lays out one parsed label as strokes, with one writer's style and randomness."""

    def __init__(self, rng: random.Random, style: Style):
        self.rng = rng
        self.np = np.random.default_rng(rng.getrandbits(32))
        self.style = style

    # -- glyphs -------------------------------------------------------------------------------
    def glyph(self, token: str) -> Glyph:
        s = self.style
        if token in DRAWN_GLYPHS:
            return DRAWN_GLYPHS[token]
        if token in s.allographs:
            return ALLOGRAPH_GLYPHS[token]
        if token in SYMBOLS:
            char, order = SYMBOLS[token], (s.symbol_font, *SYMBOL_FONTS)
        else:
            char = BRACES.get(token, token)
            order = (s.alt_font if self.rng.random() < 0.15 else s.text_font, s.text_font, "klee", "sans")
        for font in order:
            if font in available_fonts():
                g = font_glyph(font, char)
                if g is not None:
                    return g
        raise ValueError(f"No font can draw {token!r}.")

    def letter(self, token: str, size: float) -> Box:
        """A symbol; small letters are scaled to the writer's x-height (fonts differ a lot there)."""
        glyph = self.glyph(token)
        if glyph.xheight and (token in SMALL or token.isalpha() and token.islower()):
            boost = min(1.5, max(0.8, self.style.xheight / glyph.xheight))
            size *= boost if token in SMALL else boost**0.5
        return self.place(glyph, size)

    def place(self, glyph: Glyph, size: float, stretch_to: tuple[float, float] | None = None) -> Box:
        """A glyph as a box: jittered per glyph and per stroke; `stretch_to` = (bottom, top) for fences."""
        s, rng = self.style, self.rng
        x0, y0, x1, y1 = glyph.box
        sx = sy = size * (1 + rng.gauss(0, s.glyph_scale))
        shift = 0.0
        if stretch_to is not None:
            bottom, top = stretch_to
            sy = (top - bottom) / max(y1 - y0, 1e-6)
            sx = size * min(1.6, 0.8 + 0.25 * sy / size)
            shift = bottom - y0 * sy
        angle = rng.gauss(0, s.glyph_rotation)
        shear = rng.gauss(0, s.glyph_shear)
        c, si = math.cos(angle), math.sin(angle)
        # rotate + shear about the glyph centre
        m = np.array([[c, -si], [si, c]]) @ np.array([[1, shear], [0, 1]]) @ np.diag([sx, sy])
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        dy = rng.gauss(0, s.baseline) * size + shift
        pts = self.wobble((glyph.points - centre) @ m.T, size)
        if glyph.drawn and len(glyph.lengths) > 1:  # each pen stroke of '=' or '+' lands a little differently
            j = s.stroke_jitter * size
            start = 0
            for n in glyph.lengths:
                part = pts[start : start + n]
                part *= 1 + rng.gauss(0, 0.06)
                part += (rng.gauss(0, j), rng.gauss(0, j))
                start += n
        low, high = pts.min(0), pts.max(0)
        cy = centre[1] * sy + dy
        pts += (-low[0], cy)
        return Box(float(high[0] - low[0]), float(high[1] + cy), float(-(low[1] + cy)), [(pts, glyph.lengths)])

    def wobble(self, points: np.ndarray, size: float) -> np.ndarray:
        """Add a smooth random displacement field: the tremor of a hand, the same for touching strokes."""
        k = self.np.uniform(5.0, 14.0, (2, 2)) / size  # wave numbers per unit
        phase = self.np.uniform(0, 2 * math.pi, (2, 2))
        amp = self.np.normal(0, self.style.point_noise * size, (2, 2))
        x, y = points[:, :1], points[:, 1:]
        w = np.sin(np.concatenate([y, x, x, y], 1) * k.ravel() + phase.ravel()) * amp.ravel()
        return points + np.concatenate([w[:, :1] + w[:, 1:2], w[:, 2:3] + w[:, 3:]], 1)

    # -- structures -----------------------------------------------------------------------------
    def row(self, items: list, size: float) -> Box:
        """Left to right, with handwriting gaps; fences stretch over what they enclose."""
        s, rng = self.style, self.rng
        fence = [isinstance(it, str) and (it in FENCES or it in CLOSERS) for it in items]
        boxes: list[Box | None] = [None if f else self.node(it, size) for it, f in zip(items, fence)]
        # Pair fences and size them to the tallest thing between them.
        stack: list[int] = []
        pairs: dict[int, int] = {}
        for i, it in enumerate(items):
            if not fence[i]:
                continue
            if it == "|" and stack and items[stack[-1]] == "|":
                pairs[stack.pop()] = i
            elif it in FENCES:
                stack.append(i)
            elif stack and FENCES[items[stack[-1]]] == it:
                pairs[stack.pop()] = i
        spans = {}
        for a, b in pairs.items():
            inner = [bx for bx in boxes[a + 1 : b] if bx is not None]
            top = max([bx.ascent for bx in inner], default=0.7 * size)
            bottom = max([bx.descent for bx in inner], default=0.0)
            spans[a] = spans[b] = (-max(bottom, 0.12 * size) - 0.06 * size, max(top, 0.72 * size) + 0.06 * size)
        for i, it in enumerate(items):
            if boxes[i] is None:
                span = spans.get(i, (-0.15 * size, 0.78 * size))
                boxes[i] = self.place(self.glyph(it), size, stretch_to=span)
        out = Box(0.0, 0.0, 0.0)
        x = 0.0
        for i, (it, box) in enumerate(zip(items, boxes)):
            spaced = isinstance(it, str) and (it in RELATIONS or it in BINARY and i > 0)
            if i:
                x += max(0.02, s.gap * rng.uniform(0.5, 1.5)) * size + (s.op_gap * size if spaced else 0)
            out.add(box, x, 0)
            x += box.width
            if spaced:
                x += s.op_gap * size
            out.ascent, out.descent = max(out.ascent, box.ascent), max(out.descent, box.descent)
        out.width = x
        return out

    def node(self, item, size: float) -> Box:
        if isinstance(item, str):
            if item in FUNCTIONS:
                return self.word(FUNCTIONS[item], size)
            return self.letter(item, size)
        kind = item[0]
        return getattr(self, kind)(*item[1:], size=size)

    def word(self, letters: str, size: float) -> Box:
        """sin, cos, log, lim: letters written closer than separate symbols."""
        out = Box(0.0, 0.0, 0.0)
        x = 0.0
        for i, ch in enumerate(letters):
            box = self.letter(ch, size)
            x += self.rng.uniform(0.02, 0.08) * size if i else 0
            out.add(box, x, 0)
            x += box.width
            out.ascent, out.descent = max(out.ascent, box.ascent), max(out.descent, box.descent)
        out.width = x
        return out

    def group(self, items: list, size: float) -> Box:
        return self.row(items, size)

    def script(self, base, sub, sup, size: float) -> Box:
        s, rng = self.style, self.rng
        b = self.node(base, size)
        small = size * s.script_scale
        out = Box(b.width, b.ascent, b.descent, list(b.pieces))
        x = b.width + rng.uniform(0.02, 0.1) * size
        width = b.width
        sup_box = self.row(sup, small) if sup else None
        sub_box = self.row(sub, small) if sub else None
        if sup_box:
            up = max(0.45 * size, b.ascent - 0.25 * sup_box.ascent) + rng.gauss(0, 0.04) * size
            if sub_box is None and rng.random() < 0.2:
                up += 0.1 * size
            out.add(sup_box, x, up)
            out.ascent = max(out.ascent, up + sup_box.ascent)
            width = max(width, x + sup_box.width)
        if sub_box:
            down = max(0.22 * size, b.descent + 0.08 * size) + rng.gauss(0, 0.03) * size
            if sup_box:  # keep the two scripts apart
                down = max(down, sub_box.ascent - (up - sup_box.descent) + 0.12 * size)
            lean = max(s.slant, 0.0) * down  # the line's slant will pull the low index left
            out.add(sub_box, x + lean + rng.uniform(-0.03, 0.0) * size, -down)
            out.descent = max(out.descent, down + sub_box.descent)
            width = max(width, x + sub_box.width)
        out.width = width
        return out

    def frac(self, num, den, size: float) -> Box:
        s, rng = self.style, self.rng
        inner = max(size * s.frac_scale, 0.5)
        n, d = self.row(num, inner), self.row(den, inner)
        over = rng.uniform(0.03, 0.15) * size
        width = max(n.width, d.width) + 2 * over
        axis = AXIS * size + rng.gauss(0, 0.03) * size
        gap_n, gap_d = (rng.uniform(0.08, 0.2) * size for _ in range(2))
        out = Box(width, axis + gap_n + n.descent + n.ascent, -(axis - gap_d - d.ascent) + d.descent)
        out.add(n, (width - n.width) / 2 + rng.gauss(0, 0.04) * size, axis + gap_n + n.descent)
        out.add(d, (width - d.width) / 2 + rng.gauss(0, 0.04) * size, axis - gap_d - d.ascent)
        out.stroke([[0.0, axis], [width, axis + rng.gauss(0, 0.025) * size]])
        return out

    def sqrt(self, index, body, size: float) -> Box:
        s, rng = self.style, self.rng
        b = self.row(body, size)
        top = b.ascent + rng.uniform(0.06, 0.16) * size
        bottom = -b.descent - rng.uniform(0.0, 0.06) * size
        height = top - bottom
        v = (0.26 + 0.12 * height) * rng.uniform(0.8, 1.2)  # width of the check mark
        mid = bottom + min(height * rng.uniform(0.35, 0.55), 0.5 * size)
        dx = 0.0
        idx = None
        if index:
            idx = self.row(index, size * 0.55)
            dx = max(0.0, idx.width - 0.45 * v)
        pts = [(dx + 0.35 * v, bottom), (dx + v, top), (dx + v + 0.1 * size + b.width + rng.uniform(0.02, 0.12) * size,
                                                         top + rng.gauss(0, 0.02) * size)]
        hook = [(dx, mid - 0.04 * size)] if s.root_hook else []
        start = hook + [(dx + 0.12 * v, mid + 0.02 * size)]
        out = Box(pts[-1][0], top, -bottom)
        out.stroke(start + pts)
        out.add(b, dx + v + 0.08 * size, 0)
        if idx is not None:
            out.add(idx, 0, mid + 0.08 * size + idx.descent)
            out.ascent = max(out.ascent, mid + 0.08 * size + idx.descent + idx.ascent)
        return out

    def bigop(self, name, sub, sup, size: float) -> Box:
        s, rng = self.style, self.rng
        small = size * s.script_scale * rng.uniform(0.85, 1.0)
        if name == r"\lim":
            op = self.word("lim", size)
        elif name == r"\sum":  # a big Σ, centred on the axis
            g = self.glyph(name)
            op = self.place(g, rng.uniform(0.9, 1.3) * size / max(g.box[3] - g.box[1], 1e-6))
            shift = AXIS * size - (op.ascent - op.descent) / 2
            moved = Box(op.width, op.ascent + shift, op.descent - shift)
            moved.add(op, 0, shift)
            op = moved
        else:  # ∫ stretched to about two lines
            tall = 1.8 * rng.uniform(0.85, 1.15) * size
            centre = AXIS * size + rng.gauss(0, 0.03) * size
            op = self.place(self.glyph(name), size, stretch_to=(centre - tall / 2, centre + tall / 2))
        sub_box = self.row(sub, small) if sub else None
        sup_box = self.row(sup, small) if sup else None
        if name == r"\int" and s.limits_beside:
            return self.script_boxes(op, sub_box, sup_box, size)
        width = max(op.width, sub_box.width if sub_box else 0, sup_box.width if sup_box else 0)
        out = Box(width, op.ascent, op.descent)
        out.add(op, (width - op.width) / 2, 0)
        if sub_box:
            y = -op.descent - rng.uniform(0.05, 0.15) * size - sub_box.ascent
            out.add(sub_box, (width - sub_box.width) / 2 + rng.gauss(0, 0.03) * size, y)
            out.descent = -y + sub_box.descent
        if sup_box:
            y = op.ascent + rng.uniform(0.05, 0.15) * size + sup_box.descent
            out.add(sup_box, (width - sup_box.width) / 2 + rng.gauss(0, 0.03) * size, y)
            out.ascent = y + sup_box.ascent
        return out

    def script_boxes(self, op: Box, sub: Box | None, sup: Box | None, size: float) -> Box:
        """Integral limits beside the sign: low one at its foot, high one at its top."""
        rng = self.rng
        out = Box(op.width, op.ascent, op.descent, list(op.pieces))
        if sup:  # right of the top hook
            x = op.width + rng.uniform(0.03, 0.12) * size
            y = op.ascent - sup.ascent * rng.uniform(0.4, 1.0)
            out.add(sup, x, y)
            out.ascent = max(out.ascent, y + sup.ascent)
            out.width = max(out.width, x + sup.width)
        if sub:  # right of the foot, which curls to the left
            x = op.width * rng.uniform(0.55, 0.9)
            y = -op.descent + sub.descent - rng.uniform(0.0, 0.12) * size
            out.add(sub, x, y)
            out.descent = max(out.descent, -y + sub.descent)
            out.width = max(out.width, x + sub.width)
        return out


def warm_glyphs() -> None:
    """Trace every glyph the layout can ask for, in every font (~2 s). A big run does this before forking
    its workers, so they share the traced glyphs instead of each tracing them again."""
    chars = {t for t in set(FENCES) | CLOSERS if len(t) == 1} | set(SYMBOLS.values()) | set(BRACES.values())
    chars |= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,")
    for font in available_fonts():
        for char in sorted(chars):
            font_glyph(font, char)


# ----------------------------------------------------------------------------------- parsing
def parse(tokens: list[str]) -> list:
    """Canonical tokens -> nested items: a token string, or ("frac", num, den), ("sqrt", index, body),
    ("bigop", name, sub, sup), ("script", base, sub, sup), ("group", items). ValueError when malformed."""
    pos = 0

    def group() -> list:
        nonlocal pos
        if pos >= len(tokens) or tokens[pos] != "{":
            raise ValueError(f"expected '{{' at token {pos}")
        pos += 1
        items = row("}")
        pos += 1
        return items

    def row(end: str | None) -> list:
        nonlocal pos
        items: list = []
        while pos < len(tokens) and tokens[pos] != end:
            tok = tokens[pos]
            pos += 1
            if tok == "}":
                raise ValueError("unbalanced '}'")
            if tok == r"\frac":
                items.append(("frac", group(), group()))
            elif tok == r"\sqrt":
                index = None
                if pos < len(tokens) and tokens[pos] == "[":
                    pos += 1
                    index = row("]")
                    pos += 1
                items.append(("sqrt", index, group()))
            elif tok in (r"\sum", r"\int", r"\lim"):
                if pos < len(tokens) and tokens[pos] == r"\limits":
                    pos += 1
                items.append(["bigop", tok, None, None])
            elif tok == "{":
                pos -= 1
                items.append(("group", group()))
            elif tok in ("^", "_"):
                if not items:
                    raise ValueError(f"'{tok}' with nothing before it")
                script = group()
                last = items[-1]
                if isinstance(last, list):  # a big operator or a scripted base: fill its slot
                    slot = 2 if tok == "_" else 3
                    if last[slot] is not None:
                        raise ValueError(f"double '{tok}'")
                    last[slot] = script
                else:
                    items[-1] = ["script", last, script if tok == "_" else None, script if tok == "^" else None]
            else:
                items.append(tok)
        if end is not None and pos >= len(tokens):
            raise ValueError(f"missing '{end}'")
        return items

    items = row(None)
    return items


# ------------------------------------------------------------------------------ whole inks
def latex_to_ink(latex: str, rng: random.Random, style: Style | None = None) -> Ink:
    """Draw a tokenised LaTeX label as handwriting-like ink (InkML-like coordinates, y down)."""
    tokens = latex.split()
    items = parse(tokens)
    style = style or Style.draw(rng, available_fonts())
    writer = Writer(rng, style)
    box = writer.row(items, 1.0)
    if not box.pieces:
        raise ValueError("nothing to draw")
    points = np.concatenate([p for p, _ in box.pieces])
    lengths = [n for _, ls in box.pieces for n in ls]
    # Global: stretch, slant, rotation, and a smooth warp of the line (wavy baseline, uneven size).
    c, si = math.cos(style.rotation), math.sin(style.rotation)
    m = np.array([[c, -si], [si, c]]) @ np.array([[style.stretch, style.slant], [0, 1]])
    p = points @ m.T
    phase = writer.np.uniform(0, 2 * math.pi, 2)
    wave = writer.np.uniform(4.0, 10.0, 2)
    p[:, 1] += style.warp * np.sin(p[:, 0] * (2 * math.pi / wave[0]) + phase[0])
    p[:, 0] += 0.5 * style.warp * np.sin(p[:, 1] * (2 * math.pi / wave[1]) + phase[1])
    p[:, 1] *= -1  # InkML: y grows downwards
    out = np.split(np.round(p * 100, 2), np.cumsum(lengths)[:-1])
    return Ink(traces=out, annotations={"truth": latex, "UI": "synthetic"})
