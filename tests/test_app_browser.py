"""The app in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

Draws on the sketchpad with the mouse, recognises with each toggle, checks the LaTeX box and the
KaTeX preview. With UNIMUMER_SCREENSHOT set, the page after a full recognition is saved as
docs/screenshot.png (the README's picture); UNIMUMER_MODEL then picks the model that answers
(e.g. `UNIMUMER_SCREENSHOT=1 UNIMUMER_MODEL=bundled`), else the random tiny model does.
"""
from __future__ import annotations

import os

import pytest

from browser import (
    CHROMIUM, MODE_STATS, clear, draw, model_input_size, open_page, recognize, set_toggles, shown_toggles,
)
from test_app import ROOT, serve_app

if not CHROMIUM.exists():
    pytest.skip("Debian chromium is not installed (make test installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.browser
SCREENSHOT = ROOT / "docs" / "screenshot.png"


@pytest.fixture(scope="module")
def page(tiny_model_dir, tmp_path_factory):
    model = os.environ.get("UNIMUMER_MODEL") if os.environ.get("UNIMUMER_SCREENSHOT") else None
    with serve_app(model or tiny_model_dir, tmp_path_factory.mktemp("browser") / "app.log") as (url, _):
        with open_page(url, sync_api) as page:
            yield page


X_PLUS_ONE = [  # x^2 + 1
    [(0.05, 0.3), (0.25, 0.95)], [(0.25, 0.3), (0.05, 0.95)],
    [(0.29, 0.15), (0.33, 0.02), (0.38, 0.12), (0.29, 0.35), (0.4, 0.35)],
    [(0.5, 0.62), (0.66, 0.62)], [(0.58, 0.42), (0.58, 0.82)],
    [(0.8, 0.42), (0.85, 0.3), (0.85, 0.95)],
]


def test_draw_and_recognize_with_each_toggle(page):
    draw(page, X_PLUS_ONE)
    runs = [({}, "plain")] + [({name: True}, MODE_STATS[name]) for name in shown_toggles(page)]
    for toggles, modes in runs:
        set_toggles(page, **toggles)
        latex = recognize(page, modes)
        assert latex.strip(), f"no LaTeX with {modes}"
        page.wait_for_selector("#rendered .katex")  # KaTeX typesets after the answer lands (loaded on first use)
        assert page.locator("#rendered .katex-error").count() == 0


def test_all_toggles_together_and_the_screenshot(page):
    shown = shown_toggles(page)  # all three, unless UNIMUMER_MODEL never learned some
    set_toggles(page, **dict.fromkeys(shown, True))
    latex = recognize(page, " \\+ ".join(MODE_STATS[name] for name in shown))
    assert latex.strip()
    assert page.locator("#rendered .katex").count() >= 1
    if os.environ.get("UNIMUMER_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.wait_for_timeout(500)  # let KaTeX fonts settle
        page.screenshot(path=str(SCREENSHOT), full_page=True)


def type_latex(page, text: str) -> None:
    """Replace the LaTeX box's text as a user would (Playwright's fill alone fires no Gradio input event)."""
    box = page.locator("#latex textarea")
    box.fill(text[:-1])
    box.press_sequentially(text[-1])


def test_editing_the_latex_updates_the_preview(page):
    type_latex(page, r"\frac { a ^ { 2 } + 1 } { b }")
    page.wait_for_selector("#rendered .katex .mfrac")
    assert page.locator("#rendered .katex .msupsub").count() == 1
    type_latex(page, r"\frac { a")  # unbalanced: typeset verbatim with a note, never KaTeX's red error
    page.wait_for_function("document.querySelector('#rendered').innerText.includes('Not valid LaTeX')"
                           " && document.querySelector('#rendered .katex') !== null")
    assert page.locator("#rendered .katex-error").count() == 0


def test_clear_then_recognize_gets_a_friendly_message(page):
    page.click("#clear")
    page.wait_for_function("document.querySelector('#latex textarea').value === ''")
    set_toggles(page)
    page.click("#recognize")
    page.wait_for_function("document.querySelector('#rendered').innerText.includes('Draw an expression')")
    assert page.get_by_text("Draw an expression on the pad or choose an image first.").first.is_visible()
    assert page.inner_text("#stats").strip() == ""  # no model call


def test_an_example_opens_in_the_image_tab_and_is_recognised(page):
    if page.locator("#examples").count() == 0:
        pytest.skip("examples/ holds no images")
    set_toggles(page)
    page.locator("#examples button").first.click()
    page.wait_for_selector("#upload img")
    assert page.get_by_role("tab", name="Image").get_attribute("aria-selected") == "true"
    assert recognize(page, "plain").strip()
    page.wait_for_selector("#rendered .katex")


VERTICAL = [[(0.5, 0.05), (0.5, 0.95)]]  # one tall stroke: its crop is taller than wide


def test_clear_empties_the_pad_so_only_the_next_drawing_is_sent(page):
    """Draw, Clear, draw again, twice over: each time the model sees the new drawing alone."""
    set_toggles(page)
    clear(page)
    draw(page, X_PLUS_ONE[:2])  # an x: about as wide as tall
    recognize(page, "plain")
    x_size = model_input_size(page)
    assert 0.7 < x_size[0] / x_size[1] < 1.4
    for strokes, tall in ((VERTICAL, True), (X_PLUS_ONE[:2], False)):
        clear(page)
        draw(page, strokes)
        set_toggles(page, count=tall)  # a different timing line, so the wait sees the new run
        recognize(page, "counting" if tall else "plain")
        width, height = model_input_size(page)
        if tall:
            assert height > 2 * width, (width, height)  # the x of the first drawing is gone
        else:
            assert (width, height) == x_size  # the stroke before the Clear is gone


def test_undo_takes_back_the_last_strokes(page):
    set_toggles(page)
    clear(page)
    draw(page, VERTICAL + X_PLUS_ONE[:2])
    page.click("#undo")
    page.click("#undo")
    recognize(page, "plain")
    width, height = model_input_size(page)
    assert height > 2 * width, (width, height)  # only the first stroke is left


def test_live_recognition_after_the_pen_pauses(page):
    set_toggles(page)
    clear(page)
    page.get_by_label("Live").set_checked(True)
    try:
        draw(page, X_PLUS_ONE[:2])
        # no click on Recognize: the pause after the last stroke starts the run
        page.wait_for_function("/^[0-9.]+ s · [0-9]+ visual tokens · plain$/"
                               ".test(document.querySelector('#stats').innerText.trim())")
        assert page.input_value("#latex textarea").strip()
    finally:
        page.get_by_label("Live").set_checked(False)


def test_choosing_an_alternative_replaces_the_answer(page):
    set_toggles(page)
    clear(page)
    # Clear empties the list in a second event: wait for it, so the list below is this reading's
    page.wait_for_function("document.querySelectorAll('#alternatives label').length === 0")
    draw(page, X_PLUS_ONE)
    recognize(page, "plain")  # three alternatives by default
    options = page.locator("#alternatives label")
    # The list, too, arrives after the answer: wait until it is there with the best reading chosen
    page.wait_for_function("document.querySelectorAll('#alternatives label').length >= 2"
                           " && document.querySelector('#alternatives input').checked")
    second = options.nth(1).inner_text().split(" · ", 1)[1].strip()
    options.nth(1).click()
    page.wait_for_function("text => document.querySelector('#latex textarea').value === text", arg=second)
    page.wait_for_function("n => document.querySelectorAll('#tokens .token').length === n", arg=len(second.split()))


def test_marking_a_token_and_fixing_it(page):
    tokens = page.locator("#tokens .token")
    assert tokens.count() >= 1
    before = page.inner_text("#stats")
    tokens.first.click()
    page.wait_for_function(  # the marked colour
        "document.querySelector('#tokens .token').style.backgroundColor === 'rgba(239, 68, 68, 0.5)'")
    page.click("#fix")
    page.wait_for_function("/ · fix$/.test(document.querySelector('#stats').innerText.trim())")
    assert page.inner_text("#stats") != before
    assert page.input_value("#marked textarea").startswith("<error_start>")  # the first token was marked
    assert page.locator("#marked").is_visible()


def test_fixing_without_a_selection_says_what_to_do(page):
    page.click("#unmark")
    page.click("#fix")
    page.get_by_text("Select the wrong part of the LaTeX first").first.wait_for()


def test_copying_the_mathml(page):
    type_latex(page, r"\frac { a } { b }")
    page.wait_for_function("document.querySelector('#mathml textarea').value.includes('<mfrac>')")
    page.locator("#mathml button[aria-label='Copy']").first.click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("<math") and "<mfrac>" in copied
    assert page.input_value("#latex-inline textarea") == r"$\frac { a } { b }$"


def test_the_history_reopens_an_earlier_recognition(page):
    entries = page.locator("#history .thumbnail-item")
    assert entries.count() >= 2
    oldest = page.locator("#history .thumbnail-item").last
    oldest.click()  # the first recognition of this session
    page.wait_for_function("document.querySelector('#latex textarea').value !== ''")
