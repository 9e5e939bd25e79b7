"""Online handwriting (InkML) -> Ink -> rendered image.

Reads the InkML of CROHME (channels X Y, sometimes T; LaTeX in `<annotation type="truth">`, symbol
segmentation in nested `<traceGroup>`s) and of MathWriting (channels X Y T; `label` / `normalizedLabel`).
Rendering is the hot path of the training-data build (MathWriting alone has 230K inks), so it is plain
PIL drawing at a small supersampling factor followed by a box downsample: crisp anti-aliased strokes
at about a millisecond per ink.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
STROKE_RATIO = 0.025  # default stroke width as a share of the rendered expression height (3.2 px at 128)
MAX_WIDTH = 2048  # longer expressions are scaled down to fit
SUPERSAMPLE = 3  # draw at 3x, then box-downsample: the anti-aliasing
# The app's sketchpad: an 800 x 300 page; Gradio's brush of size 5 paints strokes 10 px wide without
# anti-aliasing (measured on a replayed CROHME ink in headless Chromium).
SKETCH_PAGE = (800, 300)
SKETCH_STROKE = 10.0
SKETCH_SYMBOL = 60.0  # typical symbol height in pixels of a drawing on that page
SKETCH_MARGIN = 16

# Anything besides numbers, separators and signs means InkML's qualified notation (' " ! prefixes).
_PLAIN = re.compile(r"[^0-9eE.,+\-\s]")
_VALUE = re.compile(r"\s*([!'\"]?)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


class InkError(ValueError):
    """Unreadable InkML; str(e) is one user-facing sentence."""


@dataclass
class Ink:
    traces: list[np.ndarray]  # each (N, 2) float x, y
    annotations: dict[str, str] = field(default_factory=dict)  # e.g. truth, UI, label, normalizedLabel
    groups: list[tuple[str, list[int]]] = field(default_factory=list)  # (symbol label, trace indices), CROHME


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _read_xml(source) -> tuple[bytes | str, str]:
    """The XML text of `source` (path, XML string or bytes) and a name for messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "The InkML data"
    if isinstance(source, str) and source.lstrip().startswith("<"):
        return source, "The InkML text"
    if not isinstance(source, (str, Path)):
        raise InkError(f"Expected an InkML path, XML string or bytes, got {type(source).__name__}.")
    path = Path(source)
    name = f"The InkML file '{path.name}'"
    try:
        return path.read_bytes(), name
    except FileNotFoundError:
        raise InkError(f"{name} does not exist.") from None
    except OSError as e:
        raise InkError(f"{name} cannot be read ({e.strerror or e}).") from None


def _plain_points(text: str) -> np.ndarray:
    """'x y, x y, ...' (any number of channels) -> (N, C) array; ValueError when not numeric."""
    rows = [p.split() for p in text.split(",") if p.strip()]
    if len({len(r) for r in rows}) != 1:
        raise ValueError("points have different numbers of values")
    return np.array(rows, dtype=np.float64)


def _qualified_points(text: str) -> np.ndarray:
    """InkML values with ! (explicit), ' (first difference) and " (second difference) prefixes.

    A prefix stays in force for its channel until another one is given (InkML 1.0, section 3.2.3).
    """
    rows: list[list[float]] = []
    kinds: list[str] = []
    velocity: list[float] = []
    for point in text.split(","):
        if not point.strip():
            continue
        tokens, end = [], 0
        for m in _VALUE.finditer(point):
            if m.start() != end:
                break
            tokens.append((m.group(1), float(m.group(2))))
            end = m.end()
        if not tokens or point[end:].strip():
            raise ValueError(f"bad point {point.strip()!r}")
        if not rows:
            kinds, velocity = ["!"] * len(tokens), [0.0] * len(tokens)
        if len(tokens) != len(kinds):
            raise ValueError("points have different numbers of values")
        row = []
        for c, (prefix, value) in enumerate(tokens):
            kinds[c] = prefix or kinds[c]
            prev = rows[-1][c] if rows else 0.0
            if kinds[c] == "'":
                velocity[c] = value
            elif kinds[c] == '"':
                velocity[c] += value
            else:
                velocity[c] = value - prev
                row.append(value)
                continue
            row.append(prev + velocity[c])
        rows.append(row)
    return np.array(rows, dtype=np.float64)


def _trace_points(body: str) -> np.ndarray:
    """One trace's text -> (N, channels) array; ValueError when it is not numeric."""
    return _qualified_points(body) if _PLAIN.search(body) else _plain_points(body)


def _fast_points(bodies: list[str]) -> list[np.ndarray] | None:
    """All traces of a plain ink converted in one numpy call; None when that does not apply."""
    bodies = [b.strip().strip(",") for b in bodies]
    joined = ",".join(bodies)
    channels = len(joined.split(",", 1)[0].split())
    counts = [b.count(",") + 1 for b in bodies]
    values = joined.replace(",", " ").split()
    if not channels or len(values) != sum(counts) * channels:
        return None
    try:
        flat = np.array(values, dtype=np.float64)
    except ValueError:
        return None
    return np.split(flat.reshape(-1, channels), np.cumsum(counts)[:-1])


def _parse_xml(text: bytes | str, name: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as error:
        line = getattr(error, "position", (0, 0))[0]
    if isinstance(text, bytes):  # a stray non-UTF-8 byte (one CROHME file has one in its MathML) is forgiven
        try:
            return ET.fromstring(text.decode("utf-8", errors="replace"))
        except ET.ParseError:
            pass
    raise InkError(f"{name} is not valid XML (error at line {line}).")


def parse_inkml(source) -> Ink:
    """Parse CROHME or MathWriting InkML from a path, an XML string or bytes.

    Raises InkError (one sentence) for unreadable or invalid XML, no traces, or non-numeric points.
    """
    text, name = _read_xml(source)
    if not text.strip():
        raise InkError(f"{name} is empty.")
    root = _parse_xml(text, name)
    ns = root.tag[: root.tag.find("}") + 1]  # "{http://www.w3.org/2003/InkML}", or "" without a namespace
    if _local(root.tag) != "ink":
        raise InkError(f"{name} is XML but not InkML (its root element is <{_local(root.tag)}>).")

    annotations = {
        a.get("type"): (a.text or "").strip() for a in root.findall(f"{ns}annotation") if a.get("type")
    }
    # Channel order from <traceFormat>; X and Y are the first two unless named otherwise.
    channels = [c.get("name", "") for c in root.iter(f"{ns}channel")]
    ix = channels.index("X") if "X" in channels else 0
    iy = channels.index("Y") if "Y" in channels else 1

    elements = [(n, e) for n, e in enumerate(root.iter(f"{ns}trace")) if e.text and e.text.strip()]
    if not elements:
        raise InkError(f"{name} contains no traces.")
    arrays = _fast_points([e.text for _, e in elements])
    if arrays is None:  # qualified notation, mixed channel counts, or an error to locate
        arrays = []
        for number, element in elements:
            try:
                arrays.append(_trace_points(element.text))
            except ValueError:
                raise InkError(f"{name} has a non-numeric or malformed point in trace {number}.") from None
    for (number, _), points in zip(elements, arrays):
        if points.shape[1] <= max(ix, iy, 1):
            raise InkError(f"{name} has points with too few coordinates in trace {number}.")
    if not all(np.isfinite(points).all() for points in arrays):
        raise InkError(f"{name} has a non-finite coordinate.")
    traces = [points[:, [ix, iy]] for points in arrays]
    index_of = {e.get("id") or e.get(XML_ID) or str(n): i for i, (n, e) in enumerate(elements)}

    groups = []
    for group in root.iter(f"{ns}traceGroup"):
        refs = [v.get("traceDataRef", "").lstrip("#") for v in group.findall(f"{ns}traceView")]
        if refs:
            label = group.find(f"{ns}annotation")
            ids = [index_of[r] for r in refs if r in index_of]
            groups.append(((label.text or "").strip() if label is not None else "", ids))
    return Ink(traces=traces, annotations=annotations, groups=groups)


def write_inkml(ink_or_traces, truth: str | None = None) -> bytes:
    """Minimal InkML (X Y channels, two decimals) that `parse_inkml` reads back; `truth` as its LaTeX."""
    traces = _checked_traces(ink_or_traces)
    lines = ['<ink xmlns="http://www.w3.org/2003/InkML">']
    if truth is not None:
        lines.append(f'<annotation type="truth">{escape(truth)}</annotation>')
    for i, trace in enumerate(traces):
        points = ", ".join(f"{x:.2f} {y:.2f}" for x, y in trace.tolist())
        lines.append(f'<trace id="{i}">{points}</trace>')
    lines.append("</ink>\n")
    return "\n".join(lines).encode("utf-8")


def render_ink(
    ink_or_traces,
    height: int = 128,
    stroke_width: float | None = None,
    margin: int = 8,
    max_width: int = MAX_WIDTH,
    mode: str = "RGB",
) -> Image.Image:
    """Draw ink as dark anti-aliased strokes on white.

    The expression is scaled so its height is `height` pixels (any coordinate scale gives the same
    picture), plus `margin` (and half a stroke) on every side. The default stroke width is
    STROKE_RATIO of the rendered height; inks wider than `max_width` are scaled down, strokes included.
    A flat ink (a lone '-') is sized by its strokes instead of its height; a single point becomes a dot.
    `mode` is "RGB" or "L".
    """
    traces = _checked_traces(ink_or_traces)
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")

    points = np.concatenate(traces)
    lengths = np.fromiter(map(len, traces), dtype=np.intp, count=len(traces))
    low = points.min(0)
    ink_w, ink_h = points.max(0) - low
    # The typical symbol size only matters when the ink is flatter than a symbol (a lone '-').
    reference = max(float(ink_h), _symbol_extent(points, lengths))
    scale = height / reference
    stroke = float(stroke_width) if stroke_width is not None else max(1.0, STROKE_RATIO * height)
    pad = margin + stroke / 2
    if ink_w * scale + 2 * pad > max_width:  # too long: shrink everything, strokes too
        shrink = max(max_width - 2 * pad, 1.0) / (ink_w * scale)
        scale *= shrink
        if stroke_width is None:
            stroke = max(1.0, stroke * shrink)
        pad = margin + stroke / 2

    size = (math.ceil(ink_w * scale + 2 * pad), math.ceil(ink_h * scale + 2 * pad))
    image = _draw(points * scale + (pad - low * scale), lengths, size, stroke, SUPERSAMPLE)
    return image.convert("RGB") if mode == "RGB" else image


def sketch_traces(
    ink_or_traces, symbol_size: float = SKETCH_SYMBOL, stroke_width: float = SKETCH_STROKE
) -> list[np.ndarray]:
    """The ink placed on the app's 800 x 300 page as a person draws it there: each trace in page pixels.

    Symbols are about `symbol_size` pixels tall (the median stroke extent); the expression is shrunk to
    fit the page with SKETCH_MARGIN and half a `stroke_width` to spare, and centred on it.
    """
    traces = _checked_traces(ink_or_traces)
    points = np.concatenate(traces)
    lengths = np.fromiter(map(len, traces), dtype=np.intp, count=len(traces))
    low, high = points.min(0), points.max(0)
    page_w, page_h = SKETCH_PAGE
    room = np.array([page_w, page_h], dtype=np.float64) - 2 * SKETCH_MARGIN - stroke_width
    scale = symbol_size / _symbol_extent(points, lengths)
    spans = high - low
    scale = min([scale] + [room[i] / spans[i] for i in (0, 1) if spans[i] > 0])
    centre, middle = (low + high) / 2, np.array([page_w / 2, page_h / 2])
    return [(trace - centre) * scale + middle for trace in traces]


def render_sketch(
    ink_or_traces,
    symbol_size: float = SKETCH_SYMBOL,
    stroke_width: float = SKETCH_STROKE,
    antialias: bool = False,
) -> Image.Image:
    """The ink as a person draws it on the app's sketchpad: the white 800 x 300 page the app receives.

    Placed by `sketch_traces`, strokes `stroke_width` wide. Gradio's brush paints without anti-aliasing;
    `antialias=True` draws smooth strokes instead (pen-like images).
    """
    traces = sketch_traces(ink_or_traces, symbol_size, stroke_width)
    lengths = np.fromiter(map(len, traces), dtype=np.intp, count=len(traces))
    return _draw(np.concatenate(traces), lengths, SKETCH_PAGE, stroke_width,
                 SUPERSAMPLE if antialias else 1).convert("RGB")


def _checked_traces(ink_or_traces) -> list[np.ndarray]:
    """The (N, 2) point arrays of an Ink or a list of traces; InkError when there is nothing finite to draw."""
    traces = ink_or_traces.traces if isinstance(ink_or_traces, Ink) else ink_or_traces
    traces = [np.atleast_2d(np.asarray(t, dtype=np.float64))[:, :2] for t in traces]
    traces = [t for t in traces if len(t)]
    if not traces:
        raise InkError("The ink has no points to draw.")
    if not all(np.isfinite(t).all() for t in traces):
        raise InkError("The ink has non-finite coordinates.")
    return traces


def _symbol_extent(points: np.ndarray, lengths: np.ndarray) -> float:
    """Typical symbol size: the median extent of the strokes (1.0 for a single point)."""
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    spans = np.maximum.reduceat(points, starts) - np.minimum.reduceat(points, starts)
    return float(np.median(spans.max(1))) or 1.0


def _draw(xy: np.ndarray, lengths: np.ndarray, size: tuple[int, int], stroke: float, supersample: int) -> Image.Image:
    """Dark strokes through `xy` (output pixels, traces concatenated) on a white "L" image of `size`,
    drawn at `supersample` times the size and box-downsampled (1: no anti-aliasing)."""
    s = supersample
    canvas = Image.new("L", (size[0] * s, size[1] * s), 255)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(stroke * s))
    xy, lengths = _thin(xy * s, lengths, step=s)
    for part in np.split(xy, np.cumsum(lengths)[:-1]):
        if len(part) > 1:
            draw.line(part.ravel().tolist(), fill=0, width=width, joint="curve")
    # Round caps, and round joints where a stroke turns sharply (elsewhere the gap is invisible).
    r = width / 2
    for x, y in xy[_corners(xy, lengths)].tolist():
        draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
    return canvas.reduce(s) if s > 1 else canvas


def _starts(lengths: np.ndarray, total: int) -> np.ndarray:
    """Mask of the first point of every trace in the concatenated points."""
    first = np.zeros(total, dtype=bool)
    first[np.cumsum(lengths)[:-1]] = True
    first[0] = True
    return first


def _thin(xy: np.ndarray, lengths: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep about one point per `step` of arc length, and every trace's first and last point.

    Works on all traces at once (concatenated, with their lengths): per-trace numpy calls would cost
    more than the drawing.
    """
    first = _starts(lengths, len(xy))
    last = np.roll(first, -1)
    arc = np.hypot(*np.diff(xy, axis=0).T)
    arc[first[1:]] = 0.0  # no arc length across trace boundaries
    bucket = np.floor(np.concatenate(([0.0], np.cumsum(arc))) / step)
    keep = first | last
    keep[1:] |= bucket[1:] != bucket[:-1]
    trace_of = np.repeat(np.arange(len(lengths)), lengths)
    return xy[keep], np.bincount(trace_of[keep], minlength=len(lengths))


def _corners(xy: np.ndarray, lengths: np.ndarray, min_turn_degrees: float = 30.0) -> np.ndarray:
    """Mask of every trace's ends and of the vertices where a stroke turns by more than the limit."""
    first = _starts(lengths, len(xy))
    ends = first | np.roll(first, -1)
    d = np.diff(xy, axis=0)
    dot = (d[:-1] * d[1:]).sum(1)
    norms = np.hypot(*d[:-1].T) * np.hypot(*d[1:].T)
    ends[1:-1] |= dot < np.cos(np.radians(min_turn_degrees)) * norms
    return ends
