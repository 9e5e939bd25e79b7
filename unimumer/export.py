"""A recognised formula in the forms people paste elsewhere: delimited LaTeX, MathML, PNG and SVG.

MathML comes from latex2mathml, the pictures from matplotlib's mathtext (its own TeX subset, no TeX
installation): what mathtext cannot draw (matrices, for one) gets a one-sentence ExportError.
"""
from __future__ import annotations

import io

from unimumer.latex import LatexError, normalize

IMAGE_FORMATS = ("png", "svg")
IMAGE_DPI = 200


class ExportError(ValueError):
    """A formula that cannot be exported in a form; str(e) is one user-facing sentence."""


def canonical(latex: str) -> str:
    """The canonical tokenised LaTeX the exports start from; ExportError when it does not parse."""
    if not (latex or "").split():
        raise ExportError("There is no formula to export.")
    try:
        return normalize(" ".join(latex.split()))
    except LatexError as error:
        raise ExportError(f"The LaTeX does not parse, so it cannot be exported: {error}") from None


def delimited(latex: str) -> dict[str, str]:
    """The LaTeX raw, inline (`$…$`) and display (`\\[…\\]`), as written (no parse needed)."""
    raw = " ".join((latex or "").split())
    return {"raw": raw, "inline": f"${raw}$" if raw else "", "display": f"\\[ {raw} \\]" if raw else ""}


def to_mathml(latex: str, display: bool = True) -> str:
    """Presentation MathML of the formula (a `<math>` element)."""
    from latex2mathml.converter import convert

    try:
        return convert(canonical(latex), display="block" if display else "inline")
    except ExportError:
        raise
    except Exception as error:  # the converter's own errors name the construct it stopped at
        raise ExportError(f"MathML conversion failed: {str(error).strip() or type(error).__name__}.") from None


def render_formula(latex: str, fmt: str = "png") -> bytes:
    """The typeset formula as PNG or SVG bytes (dark on transparent)."""
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(IMAGE_FORMATS)}, not {fmt!r}.")
    text = canonical(latex)
    import matplotlib

    matplotlib.use("Agg")  # no display: the app and tests run headless
    from matplotlib.mathtext import math_to_image

    out = io.BytesIO()
    try:
        math_to_image(f"${text}$", out, dpi=IMAGE_DPI, format=fmt)
    except ValueError as error:  # mathtext's parse error: the first line says where
        first = (str(error).strip().splitlines() or [""])[0]
        raise ExportError(f"The image export cannot draw this formula ({first or 'unsupported LaTeX'}).") from None
    return out.getvalue()
