"""The formula in the forms people paste elsewhere (unimumer.export)."""
import pytest

from unimumer.export import ExportError, delimited, render_formula, to_mathml


def test_delimited_latex():
    assert delimited(" x ^ { 2 }\n") == {"raw": "x ^ { 2 }", "inline": "$x ^ { 2 }$", "display": "\\[ x ^ { 2 } \\]"}
    assert delimited("") == {"raw": "", "inline": "", "display": ""}


def test_mathml_of_a_fraction():
    mathml = to_mathml(r"\frac { x ^ { 2 } } { 2 }")
    assert mathml.startswith("<math") and "<mfrac>" in mathml and "<msup>" in mathml and 'display="block"' in mathml


def test_png_and_svg():
    assert render_formula(r"\sqrt { x } + 1", "png").startswith(b"\x89PNG")
    assert b"<svg" in render_formula(r"\sqrt { x } + 1", "svg")


@pytest.mark.parametrize("latex, message", [("", "no formula"), (r"\frac { a", "does not parse"),
                                            (r"\begin{matrix} a & b \end{matrix}", "cannot draw")])
def test_what_cannot_be_exported_is_one_sentence(latex, message):
    with pytest.raises(ExportError, match=message):
        render_formula(latex)
