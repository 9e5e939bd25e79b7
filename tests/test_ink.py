"""unimumer.ink: InkML parsing (CROHME, MathWriting, malformed files) and ink rendering."""
import functools
import random

import numpy as np
import pytest
from conftest import shared_path

from unimumer.ink import Ink, InkError, parse_inkml, render_ink

CROHME_FOLDERS = ("HAMEX", "KAIST", "MathBrush", "MfrDB", "expressmatch", "extension")


def one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and "Traceback" not in message


def inkml(traces: list[str], channels=("X", "Y"), extra: str = "", ns=True) -> str:
    fmt = "".join(f'<channel name="{c}" type="decimal"/>' for c in channels)
    body = "".join(f'<trace id="{i}">{t}</trace>' for i, t in enumerate(traces))
    xmlns = ' xmlns="http://www.w3.org/2003/InkML"' if ns else ""
    return f'<ink{xmlns}><traceFormat>{fmt}</traceFormat><annotation type="truth">$x$</annotation>{extra}{body}</ink>'


def sample_crohme(folder: str, n: int = 3) -> list:
    files = sorted(shared_path("crohme", "inkml", "train", folder).glob("*.inkml"))
    return random.Random(folder).sample(files, n)


# ---------------------------------------------------------------- parsing real files


@pytest.mark.parametrize("folder", CROHME_FOLDERS)
def test_crohme_train_inks_parse(folder):
    for path in sample_crohme(folder):
        if path.stat().st_size == 0:
            continue
        ink = parse_inkml(path)
        assert ink.traces and all(t.ndim == 2 and t.shape[1] == 2 and t.dtype == np.float64 for t in ink.traces)
        assert ink.annotations["truth"], path
        assert ink.groups and all(0 <= i < len(ink.traces) for _, ids in ink.groups for i in ids)
        assert sum(len(ids) for _, ids in ink.groups) <= len(ink.traces)


def test_crohme_details():
    ink = parse_inkml(shared_path("crohme", "inkml", "train", "HAMEX", "formulaire001-equation001.inkml"))
    assert ink.annotations["truth"] == "$\\phi(x)$" and ink.annotations["UI"] == "2011_IVC_DEPART_F001_E001"
    assert [label for label, _ in ink.groups] == ["\\phi", "(", "x", ")"]
    assert ink.groups[0][1] == [0, 1]
    assert np.allclose(ink.traces[0][0], [11.7004, 15.5288])
    # X Y T channels: the time column is dropped.
    timed = parse_inkml(shared_path("crohme", "inkml", "train", "MfrDB", "MfrDB3175.inkml"))
    assert all(t.shape[1] == 2 for t in timed.traces)


def test_crohme_test_sets_parse():
    for year in ("2014", "2016", "2019"):
        files = sorted(shared_path("crohme", "inkml", year).glob("*.inkml"))
        for path in random.Random(year).sample(files, 5):
            assert parse_inkml(path).traces


def test_real_malformed_crohme_files():
    empty = shared_path("crohme", "inkml", "train", "MfrDB", "MfrDB3088.inkml")  # 0 bytes in the release
    with pytest.raises(InkError, match="is empty"):
        parse_inkml(empty)
    # A non-UTF-8 byte inside the MathML annotation: the ink itself is fine and is kept.
    ink = parse_inkml(shared_path("crohme", "inkml", "train", "MfrDB", "MfrDB0104.inkml"))
    assert len(ink.traces) == 23 and "sqrt" in ink.annotations["truth"]


def test_mathwriting_inks_parse():
    files = sorted(shared_path("mathwriting_excerpt").rglob("*.inkml"))
    assert len(files) == 11
    for path in files:
        ink = parse_inkml(path)
        assert ink.annotations["label"] and ink.annotations["normalizedLabel"]
        assert ink.annotations["sampleId"] == path.stem
        assert all(t.shape[1] == 2 for t in ink.traces)
    matrix = parse_inkml(shared_path("mathwriting_excerpt", "train", "059225965e1e5dd6.inkml"))
    assert "&amp;" not in matrix.annotations["normalizedLabel"]  # XML escapes are undone
    assert "\\begin{matrix}" in matrix.annotations["normalizedLabel"]


def test_sources_str_bytes_and_no_namespace(tmp_path):
    text = inkml(["0 0, 10 10", "5 0, 5 10"])
    path = tmp_path / "a.inkml"
    path.write_text(text)
    for source in (text, text.encode(), path, str(path), inkml(["0 0, 10 10", "5 0, 5 10"], ns=False)):
        ink = parse_inkml(source)
        assert len(ink.traces) == 2 and ink.annotations == {"truth": "$x$"}
        assert np.array_equal(ink.traces[1], [[5, 0], [5, 10]])


def test_channel_order_and_extra_channels():
    ink = parse_inkml(inkml(["1 10 100, 2 20 200"], channels=("T", "X", "Y")))
    assert np.array_equal(ink.traces[0], [[10, 100], [20, 200]])
    mixed = parse_inkml(inkml(["1 2, 3 4", "5 6 7, 8 9 10"], channels=("X", "Y", "T")))  # one trace lacks T
    assert np.array_equal(mixed.traces[1], [[5, 6], [8, 9]])


def test_difference_notation_matches_explicit_values():
    ink = parse_inkml(sample_crohme("KAIST", 1)[0])
    points = ink.traces[0][:40]
    explicit = ", ".join(f"{x:g} {y:g}" for x, y in points)
    first = [f"{points[0][0]:g} {points[0][1]:g}"]
    first += [f"'{dx:g} '{dy:g}" if i == 0 else f"{dx:g} {dy:g}" for i, (dx, dy) in enumerate(np.diff(points, axis=0))]
    velocity = np.diff(points, axis=0)
    second = [f"{points[0][0]:g} {points[0][1]:g}", f"'{velocity[0][0]:g} '{velocity[0][1]:g}"]
    second += [f'"{ax:g} "{ay:g}' for ax, ay in np.diff(velocity, axis=0)]
    parsed = [parse_inkml(inkml([body])).traces[0] for body in (explicit, ", ".join(first), ",".join(second))]
    for trace in parsed:
        assert np.allclose(trace, points)
    # Explicit '!' switches back; compact form without spaces after a qualifier.
    compact = parse_inkml(inkml(["10 10, '1'2, 1 1, !5 !5"])).traces[0]
    assert np.allclose(compact, [[10, 10], [11, 12], [12, 13], [5, 5]])


# ---------------------------------------------------------------- malformed InkML


@pytest.mark.parametrize(
    "content, words",
    [
        ("", "is empty"),
        ("   \n", "is empty"),
        ("<ink><trace>1 2, 3 4</ink>", "not valid XML"),
        ("this is not xml", "not valid XML"),
        ("<svg><trace>1 2</trace></svg>", "not InkML"),
        (inkml([]), "contains no traces"),
        (inkml(["  "]), "contains no traces"),
        (inkml(["0 0, 1 1", "1 2, x 4"]), "non-numeric or malformed point in trace 1"),
        (inkml(["1 2, 3 4, 5"]), "malformed point"),
        (inkml(["1, 2, 3"]), "too few coordinates"),
        (inkml(["1 2, nan 4"]), "non-finite"),
        (inkml(["1 2, 1e999 4"]), "non-finite"),
        (inkml(["'1 '2, ?3 4"]), "malformed point"),
    ],
)
def test_malformed_inkml_gets_one_sentence(tmp_path, content, words):
    path = tmp_path / "bad.inkml"
    path.write_text(content)
    for source in (path, content.encode()):
        with pytest.raises(InkError) as e:
            parse_inkml(source)
        assert words in str(e.value) and one_sentence(str(e.value))


def test_missing_file_and_wrong_type(tmp_path):
    with pytest.raises(InkError, match="does not exist"):
        parse_inkml(tmp_path / "nope.inkml")
    with pytest.raises(InkError, match="cannot be read"):
        parse_inkml(tmp_path)
    with pytest.raises(InkError, match="got int"):
        parse_inkml(3)


# ---------------------------------------------------------------- rendering


@functools.lru_cache
def crohme_train_files() -> list:
    return sorted(shared_path("crohme", "inkml", "train").rglob("*.inkml"))


def crohme_inks(n: int) -> list[Ink]:
    picked = random.Random(0).sample(crohme_train_files(), n + 2)
    return [parse_inkml(f) for f in picked if f.stat().st_size][:n]


def test_render_real_inks_white_page_dark_antialiased_strokes():
    heights = []
    for ink in crohme_inks(40):
        image = render_ink(ink)
        assert image.mode == "RGB"
        a = np.asarray(image.convert("L"))
        w, h = image.size
        heights.append(h)
        assert w <= 2048
        assert (a[0] == 255).all() and (a[-1] == 255).all() and (a[:, 0] == 255).all() and (a[:, -1] == 255).all()
        assert a.min() == 0, "strokes are fully dark in their middle"
        edges = ((a > 0) & (a < 255)).sum()
        assert edges > 0.2 * (a == 0).sum(), "stroke edges are anti-aliased"
    # Expression height 128, plus a margin of 8 and half a 3.2-px stroke on each side; only very
    # long inks (shrunk to the width cap) come out smaller.
    assert max(heights) == 148 and heights.count(148) >= 0.9 * len(heights)


def test_render_is_scale_invariant():
    ink = crohme_inks(1)[0]
    moved = Ink([t * 37.5 + [1000.0, -500.0] for t in ink.traces])
    assert np.array_equal(np.asarray(render_ink(ink)), np.asarray(render_ink(moved)))


def test_strokes_are_continuous():
    # A zig-zag polyline with sharp turns: every column it spans must have ink in it.
    x = np.linspace(0, 300, 31)
    zigzag = np.stack([x, np.where(np.arange(31) % 2, 0.0, 100.0)], axis=1)
    a = np.asarray(render_ink([zigzag], mode="L"))
    cols = np.nonzero((a < 128).any(axis=0))[0]
    assert len(cols) == cols[-1] - cols[0] + 1
    # Along a diagonal segment, consecutive rows are connected.
    for row in range(20, a.shape[0] - 20):
        assert (a[row] < 128).sum() >= 2


def test_render_options():
    ink = crohme_inks(1)[0]
    small = render_ink(ink, height=64, margin=2)
    big = render_ink(ink, height=256)
    assert small.height < 64 + 2 * 2 + 4 and big.height > 256
    thin = np.asarray(render_ink(ink, stroke_width=1.0, mode="L"))
    thick = np.asarray(render_ink(ink, stroke_width=8.0, mode="L"))
    assert (thick < 128).sum() > 3 * (thin < 128).sum()
    assert render_ink(ink, mode="L").mode == "L"
    with pytest.raises(ValueError):
        render_ink(ink, mode="CMYK")


def test_long_inks_are_capped_in_width():
    long = [np.array([[i * 100.0, 0.0], [i * 100.0 + 50, 100.0]]) for i in range(200)]  # 200 slashes
    image = render_ink(long)
    assert image.width <= 2048 and image.height < 40
    assert render_ink(long, max_width=1000).width <= 1000
    assert np.asarray(image.convert("L")).min() < 64, "strokes survive the shrink"


def test_degenerate_inks():
    dot = render_ink([np.array([[5.0, 5.0]])])
    assert 8 <= dot.width <= 40 and np.asarray(dot.convert("L")).min() == 0
    minus = render_ink(Ink([np.array([[0.0, 3.0], [40.0, 3.0]])]))  # a lone '-': zero height
    assert minus.width > 100 and minus.height < 40
    divide = render_ink([np.array([[0.0, 0.0], [50.0, 1.0]]), np.array([[25.0, -20.0]]), np.array([[25.0, 20.0]])])
    assert divide.height > divide.width / 2
    repeated = render_ink([np.array([[1.0, 1.0]] * 50 + [[1.0, 40.0]] * 50)])  # duplicates only
    assert np.asarray(repeated.convert("L")).min() == 0
    with pytest.raises(InkError, match="no points"):
        render_ink([])
    with pytest.raises(InkError, match="no points"):
        render_ink([np.zeros((0, 2))])
    with pytest.raises(InkError, match="non-finite"):
        render_ink([np.array([[0.0, 0.0], [np.nan, 1.0]])])
    timed = render_ink([np.array([[0.0, 0.0, 10.0], [0.0, 50.0, 20.0]])])  # extra channels are ignored
    assert timed.height == 148 and timed.width < 40


# ---------------------------------------------------------------- the sketchpad page and InkML out


def test_render_sketch_is_the_apps_page_with_binary_brush_strokes():
    from unimumer.ink import SKETCH_PAGE, SKETCH_STROKE, render_sketch

    ink = parse_inkml(sample_crohme("KAIST", 1)[0])
    page = render_sketch(ink)
    assert page.size == SKETCH_PAGE and page.mode == "RGB"
    values = np.asarray(page.convert("L"))
    assert set(np.unique(values)) <= {0, 255}  # Gradio's brush paints without anti-aliasing
    # a vertical cut through a stroke is about one brush wide
    dark = values < 128
    column = dark[:, dark.sum(0).argmax()]
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate(([0], column, [0])).astype(int))))[::2]
    assert SKETCH_STROKE - 2 <= np.median(runs) <= 3 * SKETCH_STROKE
    smooth = np.asarray(render_sketch(ink, stroke_width=3, antialias=True).convert("L"))
    assert len(np.unique(smooth)) > 2 and (smooth < 128).sum() < dark.sum()


def test_render_sketch_fits_long_inks_and_sizes_symbols():
    from unimumer.ink import SKETCH_MARGIN, SKETCH_PAGE, render_sketch

    long = [np.array([[x, 0.0], [x + 5, 10.0]]) for x in range(0, 2000, 10)]  # 200 strokes in a row
    dark = np.asarray(render_sketch(long).convert("L")) < 128
    columns = np.flatnonzero(dark.any(0))
    assert columns[0] >= SKETCH_MARGIN - 1 and columns[-1] <= SKETCH_PAGE[0] - SKETCH_MARGIN
    small = np.asarray(render_sketch([np.array([[0.0, 0.0], [0.0, 1.0]])], symbol_size=40).convert("L")) < 128
    rows = np.flatnonzero(small.any(1))
    assert 40 <= rows[-1] - rows[0] + 1 <= 40 + 12  # the symbol, plus the brush's round caps


def test_sketch_traces_place_the_ink_as_render_sketch_draws_it():
    from unimumer.ink import SKETCH_MARGIN, SKETCH_PAGE, SKETCH_STROKE, SKETCH_SYMBOL, render_sketch, sketch_traces

    ink = parse_inkml(sample_crohme("KAIST", 1)[0])
    traces = sketch_traces(ink)
    assert len(traces) == len(ink.traces) and all(t.shape == o.shape for t, o in zip(traces, ink.traces))
    points = np.concatenate(traces)
    assert (points >= 0).all() and (points <= SKETCH_PAGE).all()
    # this long ink is shrunk to fill the page's width (less the margins and half a brush each side)
    room = np.array(SKETCH_PAGE) - 2 * SKETCH_MARGIN - SKETCH_STROKE
    assert np.isclose((np.ptp(points, axis=0) / room).max(), 1.0)
    assert np.median([np.ptp(t, axis=0).max() for t in traces]) < SKETCH_SYMBOL
    short = sketch_traces([np.array([[0.0, 0.0], [0.0, 3.0]]), np.array([[2.0, 0.0], [3.0, 0.0]])] * 2)
    assert np.isclose(np.median([np.ptp(t, axis=0).max() for t in short]), SKETCH_SYMBOL)  # symbols at their size
    dark = np.asarray(render_sketch(ink).convert("L")) < 128  # the page's ink covers the placed points
    rows, columns = np.flatnonzero(dark.any(1)), np.flatnonzero(dark.any(0))
    half = SKETCH_STROKE / 2
    assert abs(columns[0] - (points[:, 0].min() - half)) <= 1.5
    assert abs(rows[-1] + 1 - (points[:, 1].max() + half)) <= 1.5


def test_write_inkml_round_trips(tmp_path):
    from unimumer.ink import write_inkml

    ink = parse_inkml(sample_crohme("MfrDB", 1)[0])
    data = write_inkml(ink, truth="$x < y & z$")
    (tmp_path / "a.inkml").write_bytes(data)
    again = parse_inkml(tmp_path / "a.inkml")
    assert again.annotations["truth"] == "$x < y & z$"
    assert len(again.traces) == len(ink.traces)
    assert all(np.allclose(a, b, atol=0.006) for a, b in zip(again.traces, ink.traces))
    with pytest.raises(InkError, match="no points"):
        write_inkml([])
